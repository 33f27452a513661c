"""Stage 1 (grid): measure the printed grid, and so the page's pixels per millimetre.

This is the classical stand-in for the grid UNet of DESIGN.md: the 5 mm major lines make
the page's brightness periodic, and the autocorrelation of that profile finds the period.
It assumes an upright page seen roughly square-on; photos with strong perspective need
the align stage first.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from scipy.ndimage import gaussian_filter1d
from scipy.signal import find_peaks

MIN_PX_PER_MM, MAX_PX_PER_MM = 2.5, 16.0


@dataclass
class GridMeasurement:
    px_per_mm: float
    confidence: float  # in [0, 1]: autocorrelation strength of the 5 mm period
    found: bool


def grid_signal(rgb: np.ndarray) -> np.ndarray:
    """Where grid ink is, as a float image: coloured grids by their saturation, grey ones by darkness."""
    rgb = rgb.astype(np.float32)
    saturation = rgb.max(axis=2) - rgb.min(axis=2)
    darkness = 255.0 - rgb.mean(axis=2)
    return saturation if np.percentile(saturation, 90) > 25 else darkness


def _strip_autocorrelation(signal: np.ndarray, axis: int, strip: int = 128) -> np.ndarray:
    """Mean normalised autocorrelation of the profiles of short strips across `axis`.

    Autocorrelation ignores where the lines are, so strips of a skewed or curved page
    still agree on the period where one long profile would smear it out."""
    sig = signal if axis == 0 else signal.T
    h, w = sig.shape
    acs = []
    for top in range(int(h * 0.15), int(h * 0.85) - strip + 1, strip):
        # Thin lines at a non-integer period make needle-sharp peaks that integer lags miss:
        # a little blur keeps every period's peak visible.
        p = gaussian_filter1d(sig[top : top + strip, int(w * 0.1) : int(w * 0.9)].mean(axis=0), 1.2)
        p = p - p.mean()
        spectrum = np.fft.rfft(p, 2 * len(p))
        ac = np.fft.irfft(spectrum * np.conj(spectrum))[: len(p)]
        if ac[0] > 0:
            acs.append(ac / ac[0])
    return np.mean(acs, axis=0) if acs else np.zeros(1)


def _period(ac: np.ndarray, lo: float, hi: float) -> tuple[float, float]:
    """Best period (px) in [lo, hi] of an autocorrelation, and its strength."""
    n = len(ac)
    lo_i, hi_i = int(np.floor(lo)), min(int(np.ceil(hi)) + 1, n - 1)
    if hi_i - lo_i < 3:
        return float("nan"), 0.0
    peaks, props = find_peaks(ac[lo_i:hi_i], prominence=0.0)
    peaks = peaks + lo_i
    prominence = props["prominences"]
    if len(peaks) == 0:
        return float("nan"), 0.0
    # Major lines coincide with minor ones at 5 mm, so that lag stands out most (by
    # prominence: ECG rows and text add slow structure that inflates plain height); its
    # multiples stand out as much, so prefer an equally clear peak at a half or a third.
    best = int(np.argmax(prominence))
    for divisor in (2, 3):
        near = np.flatnonzero(np.abs(peaks - peaks[best] / divisor) <= 2)
        if len(near) and prominence[near].max() >= 0.8 * prominence[best]:
            best = int(near[np.argmax(prominence[near])])
            break
    k = int(peaks[best])
    # Refine on the farthest clear multiple of the period: m periods make the sub-pixel
    # peak position m times more precise (0.1 % of px/mm is 7 samples over 10 s).
    strength = float(prominence[best])
    period = float(k)
    for m in range(2, 13):
        lag = int(round(m * period))
        if lag + 2 >= n // 2:
            break
        window = ac[lag - 2 : lag + 3]
        j = lag - 2 + int(np.argmax(window))
        if ac[j] < 0.5 * strength or not 0 < j < n - 1:
            break
        a, b, c = ac[j - 1], ac[j], ac[j + 1]
        denom = a - 2 * b + c
        shift = 0.5 * (a - c) / denom if denom != 0 else 0.0
        period = (j + float(np.clip(shift, -0.5, 0.5))) / m
    return period, strength


def measure_grid(rgb: np.ndarray) -> GridMeasurement:
    """Pixels per mm from the 5 mm major-line period along both axes."""
    signal = grid_signal(rgb)
    estimates = []
    for axis in (0, 1):
        period, strength = _period(_strip_autocorrelation(signal, axis), 5 * MIN_PX_PER_MM, 5 * MAX_PX_PER_MM)
        if np.isfinite(period):
            estimates.append((period / 5.0, strength))
    if not estimates:
        return GridMeasurement(float("nan"), 0.0, False)
    values = np.array([e[0] for e in estimates])
    strengths = np.array([e[1] for e in estimates])
    px_per_mm = float(np.average(values, weights=np.maximum(strengths, 1e-3)))
    agree = len(values) == 2 and abs(values[0] - values[1]) / px_per_mm < 0.03
    confidence = float(np.clip(strengths.mean() * 2, 0, 1)) * (1.0 if agree else 0.5)
    return GridMeasurement(px_per_mm, confidence, confidence > 0.15)
