"""Limb-lead consistency: the projection restores Einthoven, the agreement finds misreads."""

from __future__ import annotations

import numpy as np

from cardioscan.postprocess import einthoven_agreement, einthoven_projection
from cardioscan.record import limb_leads_from_i_ii


def _limb(seed: int) -> np.ndarray:
    rng = np.random.default_rng(seed)
    t = np.arange(1250) / 500
    lead_i = 0.6 * np.sin(2 * np.pi * 1.2 * t) + 0.05 * rng.normal(size=t.size)
    lead_ii = 1.0 * np.sin(2 * np.pi * 1.2 * t + 0.4) + 0.05 * rng.normal(size=t.size)
    return limb_leads_from_i_ii(lead_i, lead_ii)


def test_consistent_leads_agree_and_stay() -> None:
    limb = _limb(0)
    projected = einthoven_projection(limb, np.ones(6))
    np.testing.assert_allclose(projected, limb, atol=1e-9)
    assert einthoven_agreement(limb, projected).min() > 0.99


def test_a_misread_lead_is_found_and_the_rest_made_consistent() -> None:
    limb = _limb(1)
    read = limb.copy()
    read[2] = np.roll(read[2], 200)  # lead III read from the wrong place
    projected = einthoven_projection(read, np.ones(6))
    agreement = einthoven_agreement(read, projected)
    assert agreement[2] < 0.6 < agreement[[0, 1]].min()
    np.testing.assert_allclose(projected[2], projected[1] - projected[0], atol=1e-9)
    np.testing.assert_allclose(projected[3], -(projected[0] + projected[1]) / 2, atol=1e-9)


def test_leads_seen_alone_are_left_as_read() -> None:
    limb = np.full((6, 100), np.nan)
    limb[0] = np.linspace(0, 1, 100)
    np.testing.assert_array_equal(einthoven_projection(limb, np.ones(6))[0], limb[0])
