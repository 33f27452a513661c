"""Post-processing: rows of pixels become leads in millivolts on a common time axis.

Rows are split into leads by the inferred layout, pixels become mm through the grid's
px/mm, mm become mV through the calibration pulse (snapped to 5 / 10 / 20 mm/mV) and
seconds through the paper speed; the limb leads are then made Einthoven-consistent.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from scipy.signal import savgol_filter

from cardioscan.record import LEAD_INDEX, LEAD_NAMES, EcgRecord, limb_leads_from_i_ii
from cardioscan.trace import RowTrace

GAINS_MM_PER_MV = (5.0, 10.0, 20.0)
ROWS_TO_LAYOUT = {3: "3x4", 4: "3x4_r1", 6: "6x2", 12: "12x1"}
_LAYOUT_LEADS: dict[str, list[list[str]]] = {
    "3x4": [["I", "aVR", "V1", "V4"], ["II", "aVL", "V2", "V5"], ["III", "aVF", "V3", "V6"]],
    "6x2": [["I", "V1"], ["II", "V2"], ["III", "V3"], ["aVR", "V4"], ["aVL", "V5"], ["aVF", "V6"]],
    "12x1": [[name] for name in LEAD_NAMES],
}


@dataclass
class Calibration:
    px_per_mm: float
    mm_per_s: float
    mm_per_mv: float


@dataclass
class LeadPlacement:
    lead: str
    start_s: float
    end_s: float
    quality: float


def infer_layout(n_rows: int) -> str | None:
    return ROWS_TO_LAYOUT.get(n_rows)


def row_leads(layout: str) -> list[list[str]]:
    """Leads printed in each row, left to right."""
    if layout == "3x4_r1":
        return _LAYOUT_LEADS["3x4"] + [["II"]]
    return _LAYOUT_LEADS[layout]


def gain_from_pulses(rows: list[RowTrace], px_per_mm: float) -> float | None:
    heights = [r.pulse_height_px for r in rows if r.pulse_height_px]
    if not heights:
        return None
    mm = float(np.median(heights)) / px_per_mm
    return min(GAINS_MM_PER_MV, key=lambda g: abs(np.log(g / mm)))


def _smooth(values: np.ndarray, fs: float) -> np.ndarray:
    """Savitzky-Golay over ~20 ms: removes pixel staircase, keeps QRS peaks."""
    window = max(5, int(0.02 * fs) | 1)
    finite = np.isfinite(values)
    if finite.sum() <= window:
        return values
    out = values.copy()
    idx = np.arange(len(values))
    filled = np.interp(idx, idx[finite], values[finite])
    out[finite] = savgol_filter(filled, window, 2)[finite]
    return out


def rows_to_record(rows: list[RowTrace], layout: str, calibration: Calibration, fs: float = 500.0,
                   duration_s: float = 10.0) -> tuple[EcgRecord, list[LeadPlacement]]:
    """Place every row's pieces as leads in time (columns one after the other), in mV."""
    n = int(round(duration_s * fs))
    signals = np.full((len(LEAD_NAMES), n), np.nan)
    quality = np.zeros(len(LEAD_NAMES))
    placements: list[LeadPlacement] = []
    px_per_s = calibration.px_per_mm * calibration.mm_per_s
    for row, leads in zip(rows, row_leads(layout), strict=False):
        mv = (row.baseline_px - row.y_px) / (calibration.px_per_mm * calibration.mm_per_mv)
        t_row = np.arange(len(mv)) / px_per_s
        row_s = min(duration_s, len(mv) / px_per_s)
        col_s = row_s / len(leads)
        for k, lead in enumerate(leads):
            t0, t1 = k * col_s, (k + 1) * col_s
            i0, i1 = int(round(t0 * fs)), min(n, int(round(t1 * fs)))
            inside = (t_row >= t0) & (t_row < t1)
            t_lead, v_lead = t_row[inside], mv[inside]
            finite = np.isfinite(v_lead)
            coverage = float(finite.mean()) if len(v_lead) else 0.0
            if finite.sum() < 2:
                continue
            grid_t = np.arange(i0, i1) / fs
            values = np.interp(grid_t, t_lead[finite], v_lead[finite])
            values -= np.median(values)
            j = LEAD_INDEX[lead]
            # A lead printed twice (II in a column and as rhythm strip): the better read
            # wins where both exist, and the longer one fills the rest.
            smoothed = _smooth(values, fs)
            target = signals[j, i0:i1]
            replace = np.isnan(target) | (coverage > quality[j])
            target[replace] = smoothed[replace]
            quality[j] = max(quality[j], coverage)
            placements.append(LeadPlacement(lead, t0, t1, coverage))
    signals[:6] = einthoven_projection(signals[:6], quality[:6])
    return EcgRecord(signals, fs=fs, quality=quality), placements


def einthoven_projection(limb: np.ndarray, quality: np.ndarray) -> np.ndarray:
    """Weighted least-squares projection of the six limb leads onto the two-dimensional
    space they really span (all six are combinations of I and II), sample by sample, using
    only the leads seen at that sample; a lone lead is left as read."""
    basis = limb_leads_from_i_ii(np.array([1.0, 0.0]), np.array([0.0, 1.0]))  # (6, 2)
    out = limb.copy()
    seen = np.isfinite(limb)
    weights = np.maximum(quality, 0.05)
    for pattern in {tuple(col) for col in seen.T}:
        rows = np.flatnonzero(pattern)
        if len(rows) < 3:
            continue
        cols = np.flatnonzero((seen.T == pattern).all(axis=1))
        w = np.sqrt(weights[rows])[:, None]
        coef, *_ = np.linalg.lstsq(basis[rows] * w, limb[np.ix_(rows, cols)] * w, rcond=None)
        out[np.ix_(rows, cols)] = basis[rows] @ coef
    return out
