"""Stage 0 (align): which way up the page is.

Classical stand-in for the keypoint UNet of DESIGN.md: an ECG's traces run along the
page's long side, and calibration pulses stand at the rows' left ends, so the upright
candidate is the one whose rows read as a known layout with pulses where they belong.
Without pulses a page upside down cannot be told from upright; the score then keeps the
page as given.
"""

from __future__ import annotations

import numpy as np

from cardioscan.postprocess import infer_layout
from cardioscan.trace import RowTrace


def candidate_turns(shape: tuple[int, int]) -> tuple[int, ...]:
    """Counter-clockwise quarter turns worth trying: a portrait image holds a landscape page sideways."""
    h, w = shape
    return (0, 2) if w >= h else (1, 3)


def upright(rgb: np.ndarray, turns: int) -> np.ndarray:
    return np.ascontiguousarray(np.rot90(rgb, turns))


def orientation_score(rows: list[RowTrace]) -> float:
    """Higher when the rows form a known layout and start with calibration pulses."""
    if not rows:
        return 0.0
    pulses = sum(r.pulse_height_px is not None for r in rows) / len(rows)
    coverage = float(np.mean([r.coverage for r in rows]))
    return 2.0 * (infer_layout(len(rows)) is not None) + 2.0 * pulses + coverage
