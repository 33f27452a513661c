"""The 12-lead simulator: lead algebra, rhythm, morphology and amplitudes a reader would accept."""

from __future__ import annotations

from dataclasses import replace

import numpy as np
import pytest
from scipy.signal import find_peaks

from cardioscan.record import LEAD_INDEX
from cardioscan.synth.simulate import SimulationParams, sample_params, simulate_12lead

FS = 500


def _clean(params: SimulationParams) -> SimulationParams:
    return replace(params, baseline_wander_mv=0.0, mains_mv=0.0, muscle_noise_mv=0.0)


def _r_peaks(signals: np.ndarray, heart_rate: float) -> np.ndarray:
    """R peaks on lead II, at least 60 % of an RR apart."""
    lead_ii = signals[LEAD_INDEX["II"]]
    peaks, _ = find_peaks(lead_ii, distance=int(0.6 * 60.0 / heart_rate * FS), height=0.5 * lead_ii.max())
    return peaks


def _rr_cv(signals: np.ndarray, heart_rate: float) -> float:
    rr = np.diff(_r_peaks(signals, heart_rate))
    return float(rr.std() / rr.mean())


def _spatial_qrs_ms(signals: np.ndarray) -> float:
    """Span around the record's largest complex where the spatial magnitude exceeds 25 % of its
    peak; the T wave stays below that within 120 ms of the peak."""
    magnitude = np.sqrt((signals**2).sum(axis=0))
    peak = int(np.argmax(magnitude[int(0.2 * FS) : -int(0.2 * FS)])) + int(0.2 * FS)
    window = magnitude[peak - int(0.1 * FS) : peak + int(0.12 * FS)]
    above = np.flatnonzero(window > 0.25 * magnitude[peak])
    return (above[-1] - above[0] + 1) / FS * 1000.0


def test_shape_and_finite() -> None:
    rng = np.random.default_rng(0)
    for _ in range(20):
        out = simulate_12lead(sample_params(rng), rng=rng)
        assert out.shape == (12, 5000)
        assert np.isfinite(out).all()
    assert simulate_12lead(SimulationParams(), fs=250, duration_s=2.5, rng=rng).shape == (12, 625)


def test_einthoven_goldberger_hold_with_noise() -> None:
    rng = np.random.default_rng(1)
    for _ in range(60):
        params = replace(sample_params(rng), baseline_wander_mv=0.3, mains_mv=0.05, muscle_noise_mv=0.05)
        i, ii, iii, avr, avl, avf = simulate_12lead(params, rng=rng)[:6]
        np.testing.assert_allclose(iii, ii - i, atol=1e-9, rtol=0)
        np.testing.assert_allclose(avr, -(i + ii) / 2.0, atol=1e-9, rtol=0)
        np.testing.assert_allclose(avl, i - ii / 2.0, atol=1e-9, rtol=0)
        np.testing.assert_allclose(avf, ii - i / 2.0, atol=1e-9, rtol=0)


def test_same_seed_same_record() -> None:
    params = sample_params(np.random.default_rng(7))
    noisy = replace(params, baseline_wander_mv=0.2, mains_mv=0.02, muscle_noise_mv=0.03)
    first = simulate_12lead(noisy, rng=np.random.default_rng(3))
    again = simulate_12lead(noisy, rng=np.random.default_rng(3))
    other = simulate_12lead(noisy, rng=np.random.default_rng(4))
    np.testing.assert_array_equal(first, again)
    assert not np.array_equal(first, other)
    assert sample_params(np.random.default_rng(7)) == params


@pytest.mark.parametrize("heart_rate", [50.0, 75.0, 150.0])
def test_sinus_heart_rate(heart_rate: float) -> None:
    out = simulate_12lead(SimulationParams(heart_rate=heart_rate), rng=np.random.default_rng(2))
    measured = 60.0 * FS / np.diff(_r_peaks(out, heart_rate)).mean()
    assert measured == pytest.approx(heart_rate, rel=0.10)


def test_af_is_irregular_and_sinus_is_not() -> None:
    sinus = SimulationParams(heart_rate=90.0)
    af = SimulationParams(heart_rate=90.0, rhythm="af", rr_variability=0.2, f_wave_mv=0.08)
    sinus_cv = [_rr_cv(simulate_12lead(sinus, rng=np.random.default_rng(s)), 90.0) for s in range(5)]
    af_cv = [_rr_cv(simulate_12lead(af, rng=np.random.default_rng(s)), 90.0) for s in range(5)]
    assert max(sinus_cv) < 0.06
    assert min(af_cv) > 2.0 * max(sinus_cv)


def test_pvcs_are_premature_with_compensatory_pause() -> None:
    params = SimulationParams(heart_rate=60.0, rhythm="sinus_pvc", pvc_prob=0.2, pvc_coupling=0.6)
    out = simulate_12lead(params, rng=np.random.default_rng(5))
    magnitude = np.sqrt((out**2).sum(axis=0))
    peaks, _ = find_peaks(magnitude, distance=int(0.3 * FS), height=0.5 * magnitude.max())
    rr = np.diff(peaks) / FS
    short = np.flatnonzero(rr < 0.75)
    assert short.size >= 1
    short = short[short + 1 < rr.size]
    np.testing.assert_allclose(rr[short] + rr[short + 1], 2.0, atol=0.1)  # fully compensatory


def test_normal_axis_v1_negative_v6_positive() -> None:
    for axis in (0.0, 45.0, 90.0):
        for rotation in (-20.0, 0.0, 20.0):
            params = SimulationParams(axis_deg=axis, horizontal_rotation_deg=rotation)
            out = simulate_12lead(params, rng=np.random.default_rng(0))
            v1, v6 = out[LEAD_INDEX["V1"]], out[LEAD_INDEX["V6"]]
            assert -v1.min() > v1.max(), (axis, rotation)
            assert v6.max() > -v6.min(), (axis, rotation)


def test_frontal_axis_matches_request() -> None:
    """Axis from the net QRS deflection in I and aVF, the way a reader estimates it."""
    for axis in (-30.0, 0.0, 60.0, 100.0):
        out = simulate_12lead(
            SimulationParams(axis_deg=axis, t_amplitude_mv=0.0, p_amplitude_mv=0.0),
            rng=np.random.default_rng(0),
        )
        measured = np.rad2deg(np.arctan2(out[LEAD_INDEX["aVF"]].sum(), out[LEAD_INDEX["I"]].sum()))
        assert measured == pytest.approx(axis, abs=5.0)


def test_wide_qrs_for_bundle_branch_block_and_rbbb_r_prime() -> None:
    rng = np.random.default_rng(0)
    normal = _spatial_qrs_ms(simulate_12lead(SimulationParams(), rng=rng))
    for block in ("rbbb", "lbbb"):
        wide = _spatial_qrs_ms(simulate_12lead(SimulationParams(bundle_branch=block), rng=rng))
        assert wide > 1.4 * normal, block
    rbbb = simulate_12lead(SimulationParams(bundle_branch="rbbb"), rng=rng)
    v1 = rbbb[LEAD_INDEX["V1"]]
    first_s = int(np.argmin(v1[FS : 2 * FS])) + FS
    assert v1[first_s : first_s + int(0.08 * FS)].max() > 0.3  # R' right after the S


def test_wave_amplitudes_of_a_normal_beat() -> None:
    out = simulate_12lead(SimulationParams(), rng=np.random.default_rng(0))
    lead_ii = out[LEAD_INDEX["II"]]
    r = _r_peaks(out, 70.0)[1]
    p_wave = lead_ii[r - int(0.25 * FS) : r - int(0.06 * FS)].max()
    t_wave = np.abs(out[:, r + int(0.15 * FS) : r + int(0.45 * FS)]).max()
    assert 0.08 < p_wave < 0.3
    assert 0.1 < t_wave < 0.7


def test_sampled_amplitudes_are_realistic() -> None:
    rng = np.random.default_rng(11)
    limb, chest = [], []
    for _ in range(150):
        params = replace(_clean(sample_params(rng)), rhythm="sinus", bundle_branch="none", st_mv=0.0)
        out = simulate_12lead(params, rng=rng)
        limb.append(np.ptp(out[:6], axis=1).max())
        chest.append(np.ptp(out[6:], axis=1).max())
    limb_arr, chest_arr = np.array(limb), np.array(chest)
    assert np.mean((limb_arr > 0.5) & (limb_arr < 2.5)) > 0.95
    assert np.mean((chest_arr > 0.7) & (chest_arr < 3.5)) > 0.95


def test_sample_params_mixture() -> None:
    rng = np.random.default_rng(3)
    drawn = [sample_params(rng) for _ in range(2000)]
    rhythms = np.array([p.rhythm for p in drawn])
    rates = np.array([p.heart_rate for p in drawn])
    assert np.mean(rhythms == "sinus") == pytest.approx(0.70, abs=0.04)
    assert np.mean(rhythms == "af") == pytest.approx(0.15, abs=0.03)
    assert np.mean([p.bundle_branch != "none" for p in drawn]) == pytest.approx(0.15, abs=0.03)
    assert np.mean([p.st_mv != 0.0 for p in drawn]) == pytest.approx(0.15, abs=0.03)
    assert rates.min() >= 40.0 and rates.max() <= 180.0
    assert np.mean((rates >= 55.0) & (rates <= 100.0)) > 0.6
    assert all(p.mains_hz in (50.0, 60.0) for p in drawn)
