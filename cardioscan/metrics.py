"""The two published scores for ECG-image digitization, so results compare with the literature.

- `challenge2024_snr`: George B. Moody PhysioNet Challenge 2024, digitization task. Matches
  `compute_snr` in physionetchallenges/evaluation-2024 `helper_code.py` and its use in
  `evaluate_model.py` (per record and channel, no alignment; the reported score is the mean).
- `kaggle2025_snr` / `aggregate_kaggle`: Kaggle "PhysioNet - Digitization of ECG Images" (2025).
  Matches the competition metric notebook ("physionet-ecg-signal-extraction-metric": `align_signals`,
  `compute_power`, `compute_snr`, `_calculate_image_score`, `score`), including its
  PERFECT_SCORE = 384 cap.

Signals are (leads, N) arrays in mV; NaN marks samples that are not there.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from typing import NamedTuple

import numpy as np
from scipy import signal as sps

KAGGLE_MAX_TIME_SHIFT_S = 0.2
KAGGLE_PERFECT_SCORE = 384.0  # linear SNR cap of the Kaggle metric (about 25.84 dB); also the dB floor


class Challenge2024Score(NamedTuple):
    per_lead_db: np.ndarray
    mean_db: float


@dataclass(frozen=True)
class Kaggle2025Score:
    """Per-lead details and the per-image result of the Kaggle 2025 metric."""

    per_lead_signal_power: np.ndarray  # sum(true^2) over the lead's reference samples, mV^2
    per_lead_noise_power: np.ndarray  # sum((true - aligned est)^2), mV^2
    per_lead_shift: np.ndarray  # best lag in samples (est moved right when positive)
    per_lead_offset: np.ndarray  # constant removed from est after the shift, mV
    per_lead_db: np.ndarray  # 10 log10 of the capped per-lead ratio; NaN for leads with no reference
    signal_power: float  # summed over leads: what `aggregate_kaggle` takes
    noise_power: float
    snr_db: float  # this image alone, as `aggregate_kaggle` would report it


def _as_pair(true: np.ndarray, est: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    true = np.array(true, dtype=np.float64, ndmin=2)
    est = np.array(est, dtype=np.float64, ndmin=2)
    if true.ndim != 2 or est.ndim != 2:
        raise ValueError(f"signals must be 2-D (leads, samples), got {true.shape} and {est.shape}")
    if true.shape[0] != est.shape[0]:
        raise ValueError(f"lead count differs: reference {true.shape[0]}, estimate {est.shape[0]}")
    return true, est


def challenge2024_snr(true: np.ndarray, est: np.ndarray) -> Challenge2024Score:
    """PhysioNet Challenge 2024 SNR: per lead 10 log10(sum(true^2) / sum((est - true)^2)), no alignment.

    As in the official `evaluate_model.py`, the estimate is zero-padded or truncated to the reference
    length and its NaNs become 0, so a missing lead scores as an all-zero one (0 dB). A perfect lead is
    +inf dB, a zero reference with any error -inf, exactly as upstream. The mean is taken over leads
    with `nanmean`, as upstream pools all (record, lead) values.

    One deliberate difference: samples where the *reference* is NaN are ignored here, whereas the
    official `compute_snr` sets them to 0 (so there the estimate at those samples counts as noise).
    Official references never hold NaN, so scores agree on Challenge data. A lead with no reference
    samples at all is NaN and left out of the mean.
    """
    true, est = _as_pair(true, est)
    n = true.shape[1]
    fitted = np.zeros_like(true)
    m = min(n, est.shape[1])
    fitted[:, :m] = np.nan_to_num(est[:, :m], nan=0.0, posinf=0.0, neginf=0.0)

    per_lead = np.full(true.shape[0], np.nan)
    for i in range(true.shape[0]):
        ok = np.isfinite(true[i])
        if not ok.any():
            continue
        x = float(np.sum(true[i, ok] ** 2))
        y = float(np.sum((fitted[i, ok] - true[i, ok]) ** 2))
        with np.errstate(divide="ignore"):
            per_lead[i] = 10.0 * np.log10(x / y) if y > 0 else np.inf
    scored = per_lead[~np.isnan(per_lead)]
    return Challenge2024Score(per_lead, float(scored.mean()) if scored.size else float("nan"))


def _kaggle_ratio(signal_power: float, noise_power: float) -> float:
    """Upstream `compute_snr`: linear ratio, capped at the perfect score."""
    if noise_power == 0:
        return KAGGLE_PERFECT_SCORE
    if signal_power == 0:
        return 0.0
    return min(signal_power / noise_power, KAGGLE_PERFECT_SCORE)


def _to_db(ratio: float) -> float:
    with np.errstate(divide="ignore"):
        return max(float(10.0 * np.log10(ratio)), -KAGGLE_PERFECT_SCORE)


def _align_kaggle(label: np.ndarray, pred: np.ndarray, max_shift: int) -> tuple[np.ndarray, int, float]:
    """Upstream `align_signals`: best lag by cross-correlation of the mean-removed signals within
    ±max_shift samples (ties go to the smallest |lag|), NaN padding where the shifted estimate does
    not reach, then removal of the constant offset that minimises the squared error over the overlap.

    Upstream finds that offset with Brent's method on the quadratic; its exact minimiser, the mean
    difference over the overlap, is used here.
    """
    n = label.size
    corr = sps.correlate(label - label.mean(), pred - pred.mean(), mode="full")
    lags = sps.correlation_lags(n, n, mode="full")
    valid = np.abs(lags) <= max_shift
    best = np.nanmax(corr[valid])
    candidates = np.flatnonzero(valid & (corr == best))
    shift = int(lags[candidates[np.argmin(np.abs(lags[candidates]))]])

    aligned = np.full(n, np.nan)
    if shift >= 0:
        aligned[shift:] = pred[: n - shift]
    else:
        aligned[:shift] = pred[-shift:]
    overlap = np.isfinite(aligned)
    offset = float(np.mean(aligned[overlap] - label[overlap])) if overlap.any() else 0.0
    return aligned - offset, shift, offset


def kaggle2025_snr(true: np.ndarray, est: np.ndarray, fs: float) -> Kaggle2025Score:
    """Kaggle 2025 per-image SNR: per lead, shift within ±0.2 s and offset removal, then powers summed
    over leads and one capped ratio per image.

    Each lead is scored over its finite reference samples only, which is what the Kaggle solution
    holds (e.g. 2.5 s for most leads of a 3x4 page, 10 s for the rhythm lead); if those are not one
    contiguous run they are scored as if concatenated. Estimate NaNs count as 0 (upstream forbids NaN
    in submissions; zero is what a missing lead amounts to), and so does padding left by the shift,
    exactly as upstream `compute_power`. The max shift is int(fs * 0.2) samples, as upstream.
    """
    true, est = _as_pair(true, est)
    if true.shape != est.shape:
        raise ValueError(f"reference and estimate shapes differ: {true.shape} vs {est.shape}")
    if fs <= 0:
        raise ValueError(f"sampling rate must be positive, got {fs}")
    max_shift = int(fs * KAGGLE_MAX_TIME_SHIFT_S)
    n_leads = true.shape[0]
    sig = np.zeros(n_leads)
    noise = np.zeros(n_leads)
    shifts = np.zeros(n_leads, dtype=int)
    offsets = np.zeros(n_leads)
    per_lead_db = np.full(n_leads, np.nan)
    for i in range(n_leads):
        ok = np.isfinite(true[i])
        if not ok.any():
            continue
        label = true[i, ok]
        pred = np.nan_to_num(est[i, ok], nan=0.0, posinf=0.0, neginf=0.0)
        aligned, shifts[i], offsets[i] = _align_kaggle(label, pred, max_shift)
        sig[i] = np.sum(label**2)
        noise[i] = np.sum((label - np.nan_to_num(aligned, nan=0.0)) ** 2)
        per_lead_db[i] = _to_db(_kaggle_ratio(sig[i], noise[i]))
    total_sig, total_noise = float(sig.sum()), float(noise.sum())
    return Kaggle2025Score(
        per_lead_signal_power=sig,
        per_lead_noise_power=noise,
        per_lead_shift=shifts,
        per_lead_offset=offsets,
        per_lead_db=per_lead_db,
        signal_power=total_sig,
        noise_power=total_noise,
        snr_db=aggregate_kaggle([(total_sig, total_noise)]),
    )


def aggregate_kaggle(images: Iterable[tuple[float, float]]) -> float:
    """Kaggle 2025 leaderboard score from per-image (signal_power, noise_power): the capped linear
    ratios are averaged over images, then converted to dB and floored at -384, as upstream `score`."""
    ratios = [_kaggle_ratio(float(s), float(n)) for s, n in images]
    if not ratios:
        raise ValueError("aggregate_kaggle needs at least one image")
    return _to_db(float(np.mean(ratios)))
