"""Post-processing: rows of pixels become leads in millivolts on a common time axis.

Rows are split into printed segments by the inferred layout, pixels become mm through the
grid's px/mm, mm become mV through the calibration pulse (snapped to 5 / 10 / 20 mm/mV) and
seconds through the paper speed; `timing` places the segments, and the limb leads are then
made Einthoven-consistent.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass

import numpy as np
from scipy.signal import savgol_filter

from cardioscan.record import LEAD_INDEX, LEAD_NAMES, EcgRecord, limb_leads_from_i_ii
from cardioscan.timing import PrintedSegment
from cardioscan.trace import GAINS_MM_PER_MV, PULSE_FIT, RowTrace, gain_misfit, nearest_standard, pulse_speed

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


def infer_layout(rows: list[RowTrace]) -> str | None:
    """The layout from the number of rows; six rows are 6x2 unless the limb leads say 3x4
    with three rhythm strips."""
    layout = ROWS_TO_LAYOUT.get(len(rows))
    if layout == "6x2" and _second_column_is_augmented(rows[:3]):
        return "3x4_r3"
    return layout


def layout_by_names(layout: str | None, name_columns: int | None) -> str | None:
    """The rows' layout checked against the columns the printed lead names stand in
    (`label_columns`): six rows are 6x2 or 3x4 with three strips as the names say, and a layout
    the names contradict is None (rows were lost or merged: a faint 12x1 fax read as six rows)."""
    if layout is None or name_columns is None or len(row_leads(layout)[0]) == name_columns:
        return layout
    if layout in ("6x2", "3x4_r3") and name_columns in (2, 4):
        return "6x2" if name_columns == 2 else "3x4_r3"
    return None


def without_stray_outer_rows(rows: list[RowTrace]) -> list[RowTrace]:
    """The rows from the first with a calibration pulse to the last, when they make a known layout
    and all the rows do not: a row above or below every pulsed one, without a pulse, is writing
    on the page (real photo 02579: a handwritten "Normal ECG" above the rows read as a sixth row)."""
    pulsed = [i for i, row in enumerate(rows) if row.pulse_height_px is not None]
    if len(rows) in ROWS_TO_LAYOUT or len(pulsed) < 2 or (pulsed[-1] - pulsed[0] + 1) not in ROWS_TO_LAYOUT:
        return rows
    return rows[pulsed[0] : pulsed[-1] + 1]


def _second_column_is_augmented(rows: list[RowTrace]) -> bool:
    """Over the second quarter of the top three rows a 6x2 page shows I, II, III (so
    III = II - I) and a 3x4 page shows aVR, aVL, aVF (so they sum to zero): the smaller
    residual tells which."""
    x0 = max(r.x_start for r in rows)
    length = min(r.x_start + len(r.y_px) for r in rows) - x0
    if length < 100:
        return False
    a, b = x0 + int(0.3 * length), x0 + int(0.45 * length)
    windows = np.stack([r.y_px[a - r.x_start : b - r.x_start] for r in rows])
    both = np.isfinite(windows).all(axis=0)
    if both.sum() < 20:
        return False
    v0, v1, v2 = -(windows[:, both] - windows[:, both].mean(axis=1, keepdims=True))
    einthoven = np.mean(np.square(v2 - (v1 - v0)))
    goldberger = np.mean(np.square(v0 + v1 + v2))
    return bool(goldberger < einthoven)


def row_leads(layout: str) -> list[list[str]]:
    """Leads printed in each row, left to right (rhythm strips as their usual leads until identified)."""
    if layout == "3x4_r1":
        return _LAYOUT_LEADS["3x4"] + [["II"]]
    if layout == "3x4_r3":
        return _LAYOUT_LEADS["3x4"] + [["II"], ["V1"], ["V5"]]
    return _LAYOUT_LEADS[layout]


SNAP_S = 0.15  # a row's measured length may miss a printed whole half second by this much
SMOOTH_MM = 0.75  # the smoothing window on paper: 30 ms at 25 mm/s (`_smooth`)


def _standard_pulses(rows: list[RowTrace], px_per_mm: float) -> list[RowTrace]:
    """Rows whose pulse stands within 30 % of a standard 1 mV height: a speck or a wave read as a
    pulse rarely does (a speck 1.9 mm tall; a real photo's wave 11.5 mm wide and 3.75 mm tall)."""
    return [r for r in rows if r.pulse_height_px and nearest_standard(r.pulse_height_px / px_per_mm, GAINS_MM_PER_MV)]


def gain_from_pulses(rows: list[RowTrace], px_per_mm: float) -> float | None:
    """Gain from the tallest standard calibration pulse, 1 mV. A pulse is read shorter than
    printed where the network lost its top (a 20 mm/mV pulse stands beyond its row's band, and
    its edges' upper halves go with the top), hardly ever taller: val96 #80 read 20 mm pulses
    as 15.9, 11.7 and 12.5 mm. A lone pulse read more than 10 % off every standard says nothing:
    letters with serifs read as one (val96 #94: "III" beside a pulse the network missed, 4.2 mm,
    and the page was read at 5 mm/mV)."""
    heights = [r.pulse_height_px / px_per_mm for r in _standard_pulses(rows, px_per_mm)]
    if len(heights) == 1 and gain_misfit(heights[0]) > PULSE_FIT:
        return None
    return max((nearest_standard(h, GAINS_MM_PER_MV) for h in heights), default=None)


def speed_from_pulses(rows: list[RowTrace], px_per_mm: float) -> float | None:
    """Paper speed from the standard calibration pulses' width, 0.2 s: 5 mm at 25 mm/s, 10 mm at 50 mm/s.
    Each pulse votes for the speed its width reads; a tie says nothing (a pulse widened by a grid
    line at its top beside one read right: their median said 50 mm/s)."""
    speeds = [pulse_speed(r.pulse_width_px, px_per_mm) for r in _standard_pulses(rows, px_per_mm) if r.pulse_width_px]
    ranked = Counter(speed for speed in speeds if speed is not None).most_common(2)
    if not ranked or (len(ranked) == 2 and ranked[0][1] == ranked[1][1]):
        return None
    return ranked[0][0]


def _smooth(values: np.ndarray, fs: float, mm_per_s: float) -> np.ndarray:
    """Savitzky-Golay over `SMOOTH_MM` of paper, and at least 20 ms: removes the pixel
    staircase, keeps QRS peaks. The staircase is a pixel's, so the window is the paper's (val96:
    30 ms at 25 mm/s gained 0.17 dB a page over 20 ms; 15 ms at 50 mm/s lost 0.06, so 20 ms stays)."""
    window = max(5, int(max(0.02, SMOOTH_MM / mm_per_s) * fs) | 1)
    finite = np.isfinite(values)
    if finite.sum() <= window:
        return values
    out = values.copy()
    idx = np.arange(len(values))
    filled = np.interp(idx, idx[finite], values[finite])
    out[finite] = savgol_filter(filled, window, 2)[finite]
    return out


def _zero_level(row: RowTrace, calibration: Calibration) -> float:
    """The row's 0 mV: 1 mV below its calibration pulse's top when the pulse reads the page's gain
    (within 30 %), else where the pulse stands; without a pulse, the row's median (each segment's
    median is then taken off). The top is a long flat line, read surely; the foot is often not
    drawn (ecg-image-kit runs the falling edge into the trace, whose first value then passes for
    it) or lies on a grid line (real photos: feet 0.1-0.25 mV off in 03156 and 01067)."""
    if row.zero_px is None or row.pulse_height_px is None:
        return float(np.nanmedian(row.y_px))
    if nearest_standard(row.pulse_height_px / calibration.px_per_mm, (calibration.mm_per_mv,)):
        return row.zero_px - row.pulse_height_px + calibration.px_per_mm * calibration.mm_per_mv
    return row.zero_px


def _row_seconds(row: RowTrace, px_per_s: float, duration_s: float) -> float:
    """The time a row shows. Machines print whole seconds (10 s, 5 s): a row measured a few ink
    pixels long or short is snapped, so column boundaries fall where they were printed."""
    row_s = min(duration_s, len(row.y_px) / px_per_s)
    if abs(row_s - round(row_s * 2) / 2) < SNAP_S:
        row_s = round(row_s * 2) / 2
    return row_s


def lead_starts(rows: list[RowTrace], layout: str, calibration: Calibration, duration_s: float = 10.0) -> list[list[float]]:
    """Where each lead starts in each row, px from the row's first column (as `split_segments` cuts)."""
    px_per_s = calibration.px_per_mm * calibration.mm_per_s
    starts = []
    for row, leads in zip(rows, row_leads(layout), strict=False):
        col_px = _row_seconds(row, px_per_s, duration_s) / len(leads) * px_per_s
        starts.append([row.start_offset_px + k * col_px for k in range(len(leads))])
    return starts


def split_segments(rows: list[RowTrace], layout: str, calibration: Calibration, fs: float = 500.0,
                   duration_s: float = 10.0, hidden: list[np.ndarray] | None = None) -> list[PrintedSegment]:
    """Cut each row into its printed leads, in mV at `fs` on each segment's own time axis. Columns
    `hidden` (a bar covers them) take the nearest values read, yet count as printed."""
    segments: list[PrintedSegment] = []
    px_per_s = calibration.px_per_mm * calibration.mm_per_s
    leads_per_row = row_leads(layout)
    for r, (row, leads) in enumerate(zip(rows, leads_per_row, strict=False)):
        zero = _zero_level(row, calibration)
        mv = (zero - row.y_px) / (calibration.px_per_mm * calibration.mm_per_mv)
        t_row = (np.arange(len(mv)) - row.start_offset_px) / px_per_s
        col_s = _row_seconds(row, px_per_s, duration_s) / len(leads)
        is_rhythm = r >= len(_LAYOUT_LEADS["3x4"]) and layout.startswith("3x4")
        for k, lead in enumerate(leads):
            inside = (t_row >= k * col_s) & (t_row < (k + 1) * col_s)
            t_seg, v_seg = t_row[inside] - k * col_s, mv[inside]
            coverage = float(np.isfinite(v_seg).mean()) if len(v_seg) else 0.0
            finite = np.isfinite(v_seg) & ~(hidden[r][inside] if hidden else False)
            n = int(round(col_s * fs))
            values = np.full(n, np.nan)
            if finite.sum() >= 2:
                values = np.interp(np.arange(n) / fs, t_seg[finite], v_seg[finite])
                values = _smooth(values if row.zero_px is not None else values - np.median(values), fs, calibration.mm_per_s)
            segments.append(PrintedSegment(lead, r, k, values, coverage, is_rhythm))
    return segments


def assemble(segments: list[PrintedSegment], offsets_s: list[float], fs: float = 500.0,
             duration_s: float = 10.0) -> EcgRecord:
    """Place segments at their offsets; where a lead is printed twice (II in a column and as the
    rhythm strip) the better read wins where both exist and the longer one fills the rest, at the
    level of the one placed first: each row's 0 mV is read on its own (a pulse's foot or top,
    a row's median) and may be off by a few tenths of a mV, which would step the lead where its
    pieces meet (real photo 02579: II 0.2 mV high from 2.5 s on)."""
    n = int(round(duration_s * fs))
    signals = np.full((len(LEAD_NAMES), n), np.nan)
    quality = np.zeros(len(LEAD_NAMES))
    for seg, offset in zip(segments, offsets_s, strict=True):
        if not np.isfinite(seg.values).any():
            continue
        j = LEAD_INDEX[seg.lead]
        i0 = int(round(offset * fs))
        i1 = min(n, i0 + len(seg.values))
        target = signals[j, i0:i1]
        values = seg.values[: i1 - i0]
        both = np.isfinite(target) & np.isfinite(values)
        if both.any():
            values = values + np.median(target[both] - values[both])
        replace = np.isnan(target) | (seg.coverage > quality[j])
        target[replace] = values[replace]
        quality[j] = max(quality[j], seg.coverage)
    projected = einthoven_projection(signals[:6], quality[:6])
    quality[:6] *= einthoven_agreement(signals[:6], projected)
    signals[:6] = projected
    return EcgRecord(signals, fs=fs, quality=quality)


def einthoven_agreement(read: np.ndarray, projected: np.ndarray) -> np.ndarray:
    """Per limb lead in [0, 1]: how little the projection had to move what was read. Leads
    misread (a wrong row, a lost trace) break III = II - I and the like, and score low."""
    agreement = np.ones(read.shape[0])
    for j in range(read.shape[0]):
        ok = np.isfinite(read[j])
        if ok.sum() < 10:
            continue
        moved = np.sqrt(np.mean((projected[j, ok] - read[j, ok]) ** 2))
        size = np.sqrt(np.mean(read[j, ok] ** 2)) + 0.1  # mV: flat leads are not penalised for noise
        agreement[j] = float(np.clip(1.0 - moved / size, 0.0, 1.0))
    return agreement


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
