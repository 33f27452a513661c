import math

import numpy as np
import pytest

from cardioscan.metrics import (
    KAGGLE_PERFECT_SCORE,
    aggregate_kaggle,
    challenge2024_snr,
    kaggle2025_snr,
)

FS = 500.0
PERFECT_DB = 10 * math.log10(KAGGLE_PERFECT_SCORE)


def _smooth_noise(n_leads: int = 12, seconds: float = 10.0, seed: int = 0) -> np.ndarray:
    """Zero-mean band-limited random leads: a unique cross-correlation peak, unlike a pure tone."""
    rng = np.random.default_rng(seed)
    n = int(seconds * FS)
    white = rng.standard_normal((n_leads, n + 200))
    kernel = np.hanning(41)
    smooth = np.stack([np.convolve(w, kernel / kernel.sum(), mode="same") for w in white])[:, 100:-100]
    return smooth - smooth.mean(axis=1, keepdims=True)


def _tones(amplitude: float, cycles: int, n: int = 5000) -> np.ndarray:
    t = np.arange(n) / n
    return np.tile(amplitude * np.sin(2 * np.pi * cycles * t), (12, 1))


def test_identical_signals_score_high() -> None:
    true = _smooth_noise()
    assert np.all(np.isposinf(challenge2024_snr(true, true).per_lead_db))
    score = kaggle2025_snr(true, true, FS)
    assert score.snr_db == pytest.approx(PERFECT_DB)
    assert np.all(score.per_lead_shift == 0)


def test_noise_at_one_tenth_amplitude_is_20_db() -> None:
    true = _tones(1.0, cycles=7)
    est = true + _tones(0.1, cycles=23)  # orthogonal, zero-mean: neither shift nor offset helps
    chal = challenge2024_snr(true, est)
    np.testing.assert_allclose(chal.per_lead_db, 20.0, atol=1e-9)
    assert chal.mean_db == pytest.approx(20.0)
    kag = kaggle2025_snr(true, est, FS)
    assert kag.snr_db == pytest.approx(20.0, abs=1e-6)
    np.testing.assert_allclose(kag.per_lead_db, 20.0, atol=1e-6)


def test_shift_within_02_s_is_forgiven_by_kaggle_only() -> None:
    lag = int(0.1 * FS)
    longer = _smooth_noise(seconds=10.0 + 0.1)
    true, est = longer[:, lag:], longer[:, :-lag]  # est is the truth delayed by 0.1 s
    kag = kaggle2025_snr(true, est, FS)
    assert np.all(kag.per_lead_shift == -lag)
    # Only the 0.1 s of padding the shift leaves counts as noise: about 10 log10(10 s / 0.1 s).
    assert kag.snr_db == pytest.approx(20.0, abs=1.5)
    assert challenge2024_snr(true, est).mean_db < 1.0


def test_shift_beyond_02_s_is_not_searched() -> None:
    lag = int(0.3 * FS)
    longer = _smooth_noise(seconds=10.0 + 0.3)
    true, est = longer[:, lag:], longer[:, :-lag]
    kag = kaggle2025_snr(true, est, FS)
    assert np.all(np.abs(kag.per_lead_shift) <= int(0.2 * FS))
    assert kag.snr_db < 3.0


def test_constant_offset_is_removed_by_kaggle_only() -> None:
    true = _smooth_noise()
    est = true + 0.5
    kag = kaggle2025_snr(true, est, FS)
    assert kag.snr_db == pytest.approx(PERFECT_DB)
    np.testing.assert_allclose(kag.per_lead_offset, 0.5, atol=1e-12)
    assert challenge2024_snr(true, est).mean_db < 0.0


def test_missing_lead_counts_as_zeros() -> None:
    true = _smooth_noise()
    est = true.copy()
    est[3] = np.nan
    chal = challenge2024_snr(true, est)
    assert chal.per_lead_db[3] == pytest.approx(0.0)
    assert np.isposinf(chal.per_lead_db[0])
    kag = kaggle2025_snr(true, est, FS)
    # Zeros are a constant; Kaggle's offset removal turns them into the lead mean.
    expected = np.sum((true[3] - true[3].mean()) ** 2)
    assert kag.per_lead_noise_power[3] == pytest.approx(expected)
    assert kag.noise_power == pytest.approx(expected)


def test_nan_reference_samples_are_ignored() -> None:
    true = _smooth_noise()
    true[:, :1000] = np.nan  # lead not shown there
    est = np.where(np.isnan(true), 5.0, true)
    assert np.all(np.isposinf(challenge2024_snr(true, est).per_lead_db))
    assert kaggle2025_snr(true, est, FS).snr_db == pytest.approx(PERFECT_DB)


def test_challenge_pads_short_estimate_with_zeros() -> None:
    true = _smooth_noise()
    est = true[:, : true.shape[1] // 2]
    per_lead = challenge2024_snr(true, est).per_lead_db
    expected = 10 * np.log10(np.sum(true**2, axis=1) / np.sum(true[:, true.shape[1] // 2 :] ** 2, axis=1))
    np.testing.assert_allclose(per_lead, expected)


def _kaggle_doc_example() -> np.ndarray:
    """The worked example in the Kaggle metric's docstring: fs = 1 Hz, 3 samples per lead, 12 for II."""
    short = {
        "I": [0.1, 0.3, 0.4], "III": [0.6, 0.6, 0.4], "aVR": [0.2, 0.3, 0.4], "aVL": [0.5, 0.2, 0.7],
        "aVF": [0.2, 0.3, 0.4], "V1": [0.8, 0.6, 0.7], "V2": [0.2, 0.3, -0.1], "V3": [0.5, 0.6, 0.7],
        "V4": [0.2, 0.9, 0.4], "V5": [0.5, 0.6, 0.7], "V6": [0.1, 0.3, 0.4],
    }  # fmt: skip
    order = ("I", "II", "III", "aVR", "aVL", "aVF", "V1", "V2", "V3", "V4", "V5", "V6")
    true = np.full((12, 12), np.nan)
    for i, name in enumerate(order):
        if name == "II":
            true[i] = [0.6, 0.6, 0.4, 0.2, 0.3, 0.4, 0.5, 0.2, 0.7, 0.2, 0.3, 0.4]
        else:
            true[i, :3] = short[name]
    return true


def test_matches_kaggle_docstring_values() -> None:
    true = _kaggle_doc_example()
    assert round(kaggle2025_snr(true, true, 1.0).snr_db, 4) == 25.8433
    est = true.copy()
    est[0, 0] = 0.9
    assert round(kaggle2025_snr(true, est, 1.0).snr_db, 4) == 13.6291
    est[2, 1] = 0.3
    assert round(kaggle2025_snr(true, est, 1.0).snr_db, 4) == 13.0576
    zeros = np.where(np.isnan(true), np.nan, 0.0)
    assert kaggle2025_snr(zeros, est, 1.0).snr_db == -384


def test_aggregate_averages_linear_ratios() -> None:
    # 100 (20 dB) and 1 (0 dB) average to 50.5 in linear scale, not 10 dB.
    assert aggregate_kaggle([(100.0, 1.0), (1.0, 1.0)]) == pytest.approx(10 * math.log10(50.5))
    assert aggregate_kaggle([(1.0, 0.0)]) == pytest.approx(PERFECT_DB)
    assert aggregate_kaggle([(1e9, 1.0)]) == pytest.approx(PERFECT_DB)
    with pytest.raises(ValueError):
        aggregate_kaggle([])


def test_bad_shapes_raise() -> None:
    with pytest.raises(ValueError):
        challenge2024_snr(np.zeros((12, 10)), np.zeros((11, 10)))
    with pytest.raises(ValueError):
        kaggle2025_snr(np.zeros((12, 10)), np.zeros((12, 9)), FS)
