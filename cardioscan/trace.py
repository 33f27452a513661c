"""Stage 2 (trace): which pixels are trace, then the printed rows and each row's trace
followed column by column.

`TraceNet`, the CoordConv UNet of DESIGN.md, gives each pixel's probability of being
trace ink (one map for all rows); `ink_mask` is the classical stand-in used when no
weights are installed (dark, unsaturated, not a long straight line). Either way, long
connected ink is trace (text is short) and rows are the peaks of the trace ink's vertical
profile on the upright page.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np
import torch
from scipy.ndimage import gaussian_filter1d
from scipy.signal import find_peaks

from cardioscan.models import LoadedUnet

WEIGHTS_DIR = Path(os.environ.get("CARDIOSCAN_WEIGHTS", Path(__file__).resolve().parents[1] / "weights"))
TRACE_WEIGHTS = WEIGHTS_DIR / "trace.safetensors"


@dataclass
class RowTrace:
    """One printed row: the trace's y (image px) at every column from `x_start`, NaN where no ink."""

    y_px: np.ndarray
    x_start: int
    zero_px: float | None  # the 0 mV level the calibration pulse stands on, when found
    pulse_height_px: float | None  # the 1 mV calibration pulse, when found at the row start
    start_offset_px: float = 0.0  # the signal's first sample lies this far right of y_px[0]
    pulse_width_px: float | None = None  # its width (0.2 s on the machines we know)
    line_px: float = 0.0  # the ink's line width: the last sample lies half of it left of the ink's end

    @property
    def signal_px(self) -> float:
        """The signal's span in columns, from its first sample to its last."""
        return len(self.y_px) - self.start_offset_px - 0.5 * self.line_px

    @property
    def coverage(self) -> float:
        return float(np.isfinite(self.y_px).mean()) if len(self.y_px) else 0.0


class TraceNet(LoadedUnet):
    """The trace network, loaded once: `probability(rgb)` is each pixel's chance of being trace ink."""

    MAX_SIDE = 1800  # larger inputs are read at reduced size (memory and time), then scaled back
    FINE_SIDE = 3400  # `refine_rows` reads at most this size: a 300-dpi page at its own resolution
    TILE_PIXELS = 4_000_000  # larger reads go through the network in strips of columns (memory)
    TILE_MARGIN = 128  # px each strip reads beyond the columns it keeps

    def __init__(self, path: Path = TRACE_WEIGHTS, device: str = "cpu") -> None:
        super().__init__(path, device)

    @torch.inference_mode()
    def probability(self, rgb: np.ndarray, max_side: int | None = None,
                    box: tuple[int, int, int, int] | None = None) -> np.ndarray:
        """Each pixel's chance of being trace, reading the page at most `max_side` (default
        `MAX_SIDE`) px on its long side. With `box` (x0, y0, x1, y1) only that part is read and
        returned, at the whole page's scale and with its page coordinates, as in training."""
        h, w = rgb.shape[:2]
        scale = min(1.0, (max_side or self.MAX_SIDE) / max(h, w))
        x0, y0, x1, y1 = box or (0, 0, w, h)
        sx, sy = round(w * scale) / w, round(h * scale) / h  # the whole page's read size, per axis
        crop = rgb[y0:y1, x0:x1]
        ch, cw = crop.shape[:2]
        image = cv2.resize(crop, (round(cw * sx), round(ch * sy)), interpolation=cv2.INTER_AREA) if scale < 1 else crop
        sh, sw = image.shape[:2]
        ph, pw = -sh % self.multiple, -sw % self.multiple
        image = cv2.copyMakeBorder(image, 0, ph, 0, pw, cv2.BORDER_REPLICATE)
        x = torch.from_numpy(image).to(self.device).permute(2, 0, 1)[None].float().div_(255.0)
        x = x.contiguous(memory_format=torch.channels_last)
        # Page coordinates as in training: pixel centres of the whole unpadded page span [-1, 1].
        xs = (x0 * sx + torch.arange(sw + pw) + 0.5) / (w * sx) * 2 - 1
        ys = (y0 * sy + torch.arange(sh + ph) + 0.5) / (h * sy) * 2 - 1
        coords = torch.stack(torch.meshgrid(xs, ys, indexing="xy"))[None].to(self.device)
        with torch.autocast("cpu", dtype=torch.bfloat16, enabled=self.bf16):
            logits = self._logits(x, coords)[:sh, :sw]
        prob = torch.sigmoid(logits.float()).cpu().numpy()
        return cv2.resize(prob, (cw, ch), interpolation=cv2.INTER_LINEAR) if scale < 1 else prob

    def _logits(self, x: torch.Tensor, coords: torch.Tensor) -> torch.Tensor:
        """The network's (H, W) map, read in strips of columns when the input is large: the
        full-resolution decoder maps of a 300-dpi page would take 1 GB more at once. Each strip
        reads `TILE_MARGIN` beyond the columns it keeps and knows its page position from
        `coords`, as the training crops did."""
        height, width = x.shape[2:]
        strips = -(-height * width // self.TILE_PIXELS)
        if strips <= 1:
            return self.model(x, coords)["maps"][0, 0]
        step = -(-width // (strips * self.multiple)) * self.multiple
        out = x.new_empty(height, width)  # on the network's device
        for start in range(0, width, step):
            stop = min(width, start + step)
            lo, hi = max(0, start - self.TILE_MARGIN), min(width, stop + self.TILE_MARGIN)
            part = self.model(x[..., lo:hi].contiguous(memory_format=torch.channels_last), coords[..., lo:hi])
            out[:, start:stop] = part["maps"][0, 0, :, start - lo : stop - lo]
        return out


def ink_mask(rgb: np.ndarray, px_per_mm: float) -> np.ndarray:
    """Dark, unsaturated pixels that are not part of long straight lines: trace and text,
    not grid lines (coloured ones fail the saturation test, grey and black ones the line test).
    A flat stretch of trace lost with the lines is bridged later by interpolation."""
    value = rgb.max(axis=2).astype(np.int16)
    saturation = value - rgb.min(axis=2)
    dark = ((value < int(np.percentile(value, 50)) - 60) & (saturation < 110)).astype(np.uint8)
    run = max(3, int(25 * px_per_mm))
    lines = cv2.morphologyEx(dark, cv2.MORPH_OPEN, np.ones((1, run), np.uint8))
    lines |= cv2.morphologyEx(dark, cv2.MORPH_OPEN, np.ones((run, 1), np.uint8))
    return (dark > 0) & (lines == 0)


def with_vertical_strokes(mask: np.ndarray, rgb: np.ndarray, px_per_mm: float) -> np.ndarray:
    """The trace mask plus the dark vertical strokes (of 2 mm or more) that touch it but that it
    mostly misses.

    The network misses thin vertical lines drawn with a steady hand: a calibration pulse's
    edges on real printouts, which it takes for grid lines. Without them the pulse's top is an
    island and its height is lost, and with it the gain. A stroke that joins the network's
    trace is trace ink; strokes the network already holds (QRS slopes) are left as it drew them."""
    ink = ink_mask(rgb, px_per_mm).astype(np.uint8)
    strokes = cv2.morphologyEx(ink, cv2.MORPH_OPEN, np.ones((max(3, int(2 * px_per_mm)), 1), np.uint8))
    n, labels = cv2.connectedComponents(strokes, connectivity=8)
    if n <= 1:
        return mask
    touching = cv2.dilate(mask.astype(np.uint8), np.ones((5, 5), np.uint8)) > 0
    size = np.bincount(labels.ravel(), minlength=n)
    held = np.bincount(labels[mask], minlength=n)
    joined = np.zeros(n, bool)
    joined[np.unique(labels[touching & (strokes > 0)])] = True
    joined &= held < 0.5 * size
    joined[0] = False
    return mask | joined[labels]


def _components(mask: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Labels and stats of the mask's connected strokes (1-px breaks bridged)."""
    joined = cv2.dilate(mask.astype(np.uint8), np.ones((3, 3), np.uint8))
    _, labels, stats, _ = cv2.connectedComponentsWithStats(joined, connectivity=8)
    return labels, stats


def _trace_strokes(stats: np.ndarray, px_per_mm: float) -> np.ndarray:
    """Components that are long connected strokes (traces) or tall ones (calibration pulses),
    not letters, words, specks or solid blocks."""
    width, height = stats[:, cv2.CC_STAT_WIDTH], stats[:, cv2.CC_STAT_HEIGHT]
    density = stats[:, cv2.CC_STAT_AREA] / np.maximum(width * height, 1)
    keep = (width >= 12 * px_per_mm) | ((width >= 4.5 * px_per_mm) & (height >= 4.5 * px_per_mm))
    keep |= (width >= 5 * px_per_mm) & (height < 3 * px_per_mm)  # a flat stretch the mask broke off both ends
    # A trace is a thin line in its box; a QR code or a sticker is not (a flat trace on a
    # straightened page is a flat box, hence the height condition).
    keep &= (density < 0.3) | (height < 8 * px_per_mm)
    keep[0] = False
    return keep


def trace_ink(mask: np.ndarray, px_per_mm: float) -> np.ndarray:
    """Keep the ink of traces and calibration pulses (see `_trace_strokes`)."""
    labels, stats = _components(mask)
    return _trace_strokes(stats, px_per_mm)[labels] & mask


def trace_and_pulse_edges(mask: np.ndarray, px_per_mm: float) -> tuple[np.ndarray, np.ndarray]:
    """`trace_ink`, and apart from it the ink of calibration pulses whose thin top the network
    dropped (a straight line, like the grid's), leaving two narrow strokes `trace_ink` drops.
    `follow_rows` tries those only where a row's start shows no pulse."""
    labels, stats = _components(mask)
    return _trace_strokes(stats, px_per_mm)[labels] & mask, _pulse_edges(stats, px_per_mm)[labels] & mask


def _pulse_edges(stats: np.ndarray, px_per_mm: float) -> np.ndarray:
    """Components that are a pulse's edges: narrow strokes 4.5-25 mm tall (a 5 to 20 mm/mV
    pulse), each standing on the same foot as another as tall, 3-12 mm apart; not a lone one (a
    lead separator). The other may be the rest of the pulse: where the mask broke one edge off,
    its top and other edge stay one stroke (val96 #38, a 20 mm/mV pulse: its rising edge's lower
    part was dropped, and the row started at the falling edge)."""
    left, top, width, height = (stats[:, k] for k in (cv2.CC_STAT_LEFT, cv2.CC_STAT_TOP,
                                                      cv2.CC_STAT_WIDTH, cv2.CC_STAT_HEIGHT))
    tall = (height >= 4.5 * px_per_mm) & (height <= 25 * px_per_mm)
    tall[0] = False
    narrow, partner = np.flatnonzero(tall & (width < 3 * px_per_mm)), np.flatnonzero(tall & (width < 15 * px_per_mm))
    centre, foot = left + width / 2, top + height
    apart = np.abs(centre[narrow, None] - centre[None, partner])
    paired = (np.abs(foot[narrow, None] - foot[None, partner]) <= px_per_mm) & (apart >= 3 * px_per_mm) & (apart <= 12 * px_per_mm)
    edges = np.zeros(len(stats), bool)
    edges[narrow[paired.any(axis=1)]] = True
    return edges


NAME_HALF_HEIGHT_MM = 2.0  # a lead name's box reaches this far above and below its centre...
LETTER_MM = 2.5  # ...and this far per letter across it
NEAR_BASELINE_MM = 2.5  # no box comes this near a row's baseline: what lies there is trace


def without_lettering(mask: np.ndarray, names: list[tuple[float, float, int]], baselines: list[float],
                      px_per_mm: float) -> np.ndarray:
    """The mask less the ink of printed lead names (centre x, y and number of letters each): in
    a box round each name, the vertical runs that lie wholly inside it. A name under a lead's
    bold start bar touches the bar in the mask, and the row's reading ran down the bar into its
    letters (real photos 03089 V4, 01336 V6: 0.3 s read at -0.6 mV). A wave that crosses the
    name runs beyond its box and is kept, so is a wave's tip between such strokes, and names
    within 4.5 mm of a baseline are left alone (val96 #0: a lead's first rising stroke, read
    inside the name's box above it, was cut off and the page read 150 ms late)."""
    out = mask.copy()
    h, w = mask.shape
    half_h = NAME_HALF_HEIGHT_MM * px_per_mm
    for x, y, letters in names:
        half_w = (0.5 * letters * LETTER_MM + 0.5) * px_per_mm
        y0, y1 = int(y - half_h), int(y + half_h) + 1
        x0, x1 = max(0, int(x - half_w)), min(w, int(x + half_w) + 1)
        near = any(abs(b - y) < half_h + NEAR_BASELINE_MM * px_per_mm for b in baselines)
        if near or y0 < 1 or y1 >= h or x1 <= x0:
            continue
        sub = mask[y0 - 1 : y1 + 1, x0:x1]  # with a row beyond each edge: runs there cross it
        starts = sub & ~np.vstack([np.zeros((1, sub.shape[1]), bool), sub[:-1]])  # unbridged, unlike `_column_runs`
        run = np.cumsum(starts, axis=0) * sub
        crossing = ((run == run[:1]) | (run == run[-1:])) & (run > 0)
        # Ink between crossing strokes on both sides is a wave's top (a QRS apex), not a letter.
        beside = crossing | np.roll(crossing, 1, axis=0) | np.roll(crossing, -1, axis=0)
        between = np.zeros_like(crossing)
        between[:, 1:-1] = beside[:, :-2] & beside[:, 2:]
        out[y0 - 1 : y1 + 1, x0:x1] &= ~(sub & ~crossing & ~between)
    return out


BAR_MM = 4.0  # a bar is at least this tall...
BAR_LINES = 1.3  # ...and this many trace lines wide
BAR_NEAR_MM = 1.5  # bars are looked for this near where a lead starts
THICKEST_LINE_MM = 0.6  # bars (0.6-1 mm) are not told from lines as thick as this in the mask


def line_thickness(row: RowTrace, mask: np.ndarray) -> float:
    """The trace line's height in the mask where the row runs flat (median, px)."""
    ys = row.y_px
    x = np.arange(len(ys)) + row.x_start
    with np.errstate(invalid="ignore"):
        flat = np.flatnonzero((np.abs(np.diff(ys, prepend=np.nan)) < 0.5) & (x >= 0) & (x < mask.shape[1]))
    heights = []
    for i in flat[:: max(1, len(flat) // 200)]:
        column, y = mask[:, x[i]], int(round(ys[i]))
        if 0 <= y < len(column) and column[y]:
            top, bottom = _ink_run(column, y, y)
            heights.append(bottom - top + 1)
    return float(np.median(heights)) if heights else 0.0


def _ink_run(column: np.ndarray, top: int, bottom: int) -> tuple[int, int]:
    """The inked rows `top`..`bottom` of a mask column, extended up and down while ink goes on."""
    while top > 0 and column[top - 1]:
        top -= 1
    while bottom + 1 < len(column) and column[bottom + 1]:
        bottom += 1
    return top, bottom


def _bar_columns(ink: np.ndarray, solid: np.ndarray, width: int) -> tuple[int, int] | None:
    """The first and last column of the bar among the tall `solid` parts of the `ink`: the longest
    run, `width` columns or more, of columns whose ink starts and ends level with their
    neighbours', widened to every column the ink spans from its top to its bottom. Where a wave's
    strokes merge (the V of a QRS, a narrow R) the ink is solid too, but its ends climb from
    column to column, or stay level only over its rounded tip."""
    columns = np.flatnonzero(solid.any(axis=0))
    if not len(columns):
        return None
    top, bottom = np.full(ink.shape[1], -9), np.full(ink.shape[1], -9)
    for x in columns:
        ys = np.flatnonzero(solid[:, x])
        top[x], bottom[x] = _ink_run(ink[:, x], ys[0], ys[-1])
    inside = (top > 0) & (bottom < len(ink) - 1)  # ink running on beyond the row's band is a stroke
    level = inside[:-1] & inside[1:] & (np.abs(np.diff(top)) <= 1) & (np.abs(np.diff(bottom)) <= 1)
    best, first = (0, 0, 0), None
    for i, linked in enumerate(np.append(level, False)):
        if linked and first is None:
            first = i
        elif not linked and first is not None:
            best, first = max(best, (i - first, first, i)), None
    if best[0] + 1 < width:
        return None
    first, last = best[1], best[2]
    # Out to where the ink no longer spans the bar's height: a stroke merged with its side is cut.
    spanned = ink[int(np.median(top[first : last + 1])) + 1 : int(np.median(bottom[first : last + 1])), :].all(axis=0)
    while first > 0 and spanned[first - 1]:
        first -= 1
    while last + 1 < len(spanned) and spanned[last + 1]:
        last += 1
    return first, last


def under_bars(rows: list[RowTrace], mask: np.ndarray, lead_starts: list[list[float]],
               px_per_mm: float) -> list[np.ndarray]:
    """Each row's columns a bold bar covers where a lead follows another (`lead_starts`: each
    row's lead starts, px from its first column). Printers mark each lead's start with a bar several trace
    lines wide; the trace under it is hidden and the reading ran along the bar or its end instead
    (val96 #60, real photo 03156: 0.3-0.7 mV off for 20 ms at a lead's start and the previous
    one's end)."""
    h, w = mask.shape
    near = round(BAR_NEAR_MM * px_per_mm)
    hidden = [np.zeros(len(row.y_px), bool) for row in rows]
    if any(row.coverage == 0 for row in rows):
        return hidden
    baselines = [float(np.nanmedian(row.y_px)) for row in rows]
    for i, (row, starts, under) in enumerate(zip(rows, lead_starts, hidden, strict=False)):
        thickness = line_thickness(row, mask)
        if not 0 < thickness < THICKEST_LINE_MM * px_per_mm:
            continue
        top, bottom = _band(baselines, i, h, px_per_mm)  # each row's bars alone
        kernel = np.ones((round(BAR_MM * px_per_mm), max(3, round(BAR_LINES * thickness))), np.uint8)
        for start in starts[1:]:
            x0 = max(0, row.x_start + round(start) - near)
            x1 = min(w, row.x_start + round(start) + near + 1)
            if x1 - x0 < kernel.shape[1]:
                continue
            ink = mask[top:bottom, x0:x1]
            bar = _bar_columns(ink, cv2.morphologyEx(ink.astype(np.uint8), cv2.MORPH_OPEN, kernel) > 0, kernel.shape[1])
            if bar is not None:
                margin = round(thickness / 2)  # the trace's line runs into the bar's edges
                first, last = bar[0] + x0 - row.x_start - margin, bar[1] + x0 - row.x_start + margin
                under[max(0, first) : max(0, last + 1)] = True
    return hidden


def find_rows(trace: np.ndarray, px_per_mm: float) -> list[float]:
    """Row baselines (image y) as peaks of the trace ink's vertical profile, with the rows that
    evenly spaced neighbours imply (`_evenly_spaced`)."""
    profile = gaussian_filter1d(trace.sum(axis=1).astype(np.float64), sigma=1.5 * px_per_mm)
    if profile.max() <= 0:
        return []
    peaks, found = find_peaks(profile, distance=max(1, int(7 * px_per_mm)), prominence=0.01 * profile.max())
    clear = found["prominences"] >= 0.2 * profile.max()
    return [float(p) for p in _evenly_spaced(peaks[clear], peaks[~clear])]


def _evenly_spaced(clear: np.ndarray, faint: np.ndarray) -> np.ndarray:
    """The clear rows plus those the rows' even spacing puts between two clear ones where a
    faint peak stands. Printed rows are evenly spaced; a row whose flat stretches the
    network took for grid lines (a thin trace on a photocopy or a stained page) keeps only its
    QRS complexes, and its profile peak is faint beside its neighbours'."""
    gaps = np.diff(clear)
    if len(gaps) < 2 or not len(faint):
        return clear
    close = gaps[gaps <= 1.3 * gaps.min()]
    if len(close) < 2:  # no common spacing to go by
        return clear
    spacing = float(np.median(close))
    rows = list(clear)
    for top, gap in zip(clear[:-1], gaps, strict=True):
        missing = round(gap / spacing) - 1
        if missing < 1 or abs(gap / (missing + 1) / spacing - 1) > 0.15:
            continue
        step = gap / (missing + 1)
        # A faint row's peak leans towards its complexes; the spacing places its baseline.
        rows += [top + k * step for k in range(1, missing + 1) if np.any(np.abs(faint - top - k * step) < 0.25 * step)]
    return np.sort(np.array(rows))


PULSE_ZONE_MM = 16  # a row's calibration pulse lies within its first 16 mm (10 mm wide at 50 mm/s)
PULSE_WIDTH_MM = 11  # the widest pulse: 0.2 s at 50 mm/s, and its line
PULSE_S = 0.2  # a calibration pulse's width in time
SPEEDS_MM_PER_S = (25.0, 50.0)
GAINS_MM_PER_MV = (5.0, 10.0, 20.0)
PULSE_FIT = 0.1  # a pulse read this far off every standard height is looked for again
START_MM = 40  # the pulse zone and the stretch after it that gives the row's level there
LONE_ROW_MM = 30  # the room taken above the top row and below the bottom one, which have no neighbour there
REFINE_MM = 2.0  # how far a finer reading may move a column's value (a QRS peak read 8 % low at 2 mV)


@dataclass
class Pulse:
    height_px: float
    width_px: float
    zero_px: float  # the row's 0 mV level: the pulse stands on it
    resume: int  # index into the row where the trace starts
    from_edge: bool  # the trace goes straight on from the pulse's falling edge, with no gap
    edge: float  # index into the row of the falling edge's centre


def _baseline_after_pulse(ys: np.ndarray, px_per_mm: float) -> float:
    """The row's level just after where a pulse would stand (its first 40 mm): a wandering
    baseline or a curled page can lift the row's start several mm off its overall median."""
    near = ys[int(PULSE_ZONE_MM * px_per_mm) : int(START_MM * px_per_mm)]
    return float(np.nanmedian(near)) if np.isfinite(near).sum() > 5 * px_per_mm else float(np.nanmedian(ys))


def _pulse(ys: np.ndarray, y_min: np.ndarray, y_max: np.ndarray, baseline: float, px_per_mm: float) -> Pulse | None:
    """A flat-topped step of 3+ mm at the row start, measured from its own foot; each column's
    ink (`y_min` to `y_max`) places the rising and the falling edge."""
    span = y_max - y_min
    zone = int(PULSE_ZONE_MM * px_per_mm)
    # A pulse starting near the zone's end is followed to its own end, not cut by the zone's.
    window = ys[: zone + int(PULSE_WIDTH_MM * px_per_mm)]
    rise = baseline - window
    high = np.isfinite(rise) & (rise > 3 * px_per_mm)
    if not high[:zone].any():
        return None
    idx = np.flatnonzero(high)
    # The pulse is the longest run of raised columns; a QRS may rise as high but is narrow.
    runs = np.split(idx, np.flatnonzero(np.diff(idx) > max(2, int(0.5 * px_per_mm))) + 1)
    idx = max((run for run in runs if run[0] < zone), key=len)
    if len(idx) < 3 * px_per_mm:
        return None
    top = float(np.median(window[idx]))
    if np.mean(np.abs(window[idx] - top) < 0.1 * (baseline - top)) < 0.7:  # not flat-topped: a wave
        return None
    # The rising edge: ink running most of the pulse's height, and no higher than its top. A grid
    # line taken for ink at the top's level (real photos: the top lies on a major line) draws the
    # run out to the left, to a vertical line that runs on above the top.
    rising = idx[(np.nan_to_num(span[idx]) >= 0.7 * (baseline - top)) & (y_min[idx] >= top - px_per_mm)]
    if len(rising) and idx[-1] - rising[0] >= 3 * px_per_mm:
        idx = idx[idx >= rising[0]]
    end = int(idx[-1]) + 1
    reach = int(3 * px_per_mm)
    feet = np.concatenate([ys[max(0, int(idx[0]) - reach) : max(0, int(idx[0]) - 1)], ys[end + 1 : end + reach]])
    feet = feet[np.isfinite(feet) & (np.abs(feet - baseline) < 2 * px_per_mm)]
    # Without a visible foot, the row's median: a row's level just after the pulse is the signal's
    # first value, not necessarily 0 mV.
    zero = float(np.median(feet)) if len(feet) else float(np.nanmedian(ys))
    if zero - top < 3 * px_per_mm:
        return None  # no taller than the rise asked of it above its own foot: the row's start lies above its later level
    # The trace starts after the pulse's falling edge, or after the blank gap that often follows it.
    after = np.isfinite(ys[end : end + int(8 * px_per_mm)])
    gap = np.flatnonzero(~after)
    resume = end + int(gap[0] + np.argmax(after[gap[0] :])) if len(gap) and after[gap[0] :].any() else end
    # The falling edge's centre: the middle of the columns whose ink runs most of the pulse's height.
    near = np.arange(max(0, end - int(2 * px_per_mm)), min(len(ys), end + int(px_per_mm)))
    tall = near[np.nan_to_num(span[near]) >= 0.7 * (zero - top)]
    edge = float(tall.mean()) if len(tall) else end - 0.5
    return Pulse(zero - top, float(idx[-1] - idx[0] + 1), zero, resume, bool(after.all()), edge)


def _bridge_pulse_top(ys: np.ndarray, y_min: np.ndarray, y_max: np.ndarray, px_per_mm: float) -> np.ndarray:
    """The pulse's top drawn back in where only its two edges were read (see `trace_and_pulse_edges`):
    two tall strokes standing on the same foot at the row start, 3-12 mm apart, with no ink between
    them. The taller stroke gives the top (the network may drop part of an edge too)."""
    zone = int(PULSE_ZONE_MM * px_per_mm)
    span = (y_max - y_min)[:zone]
    tall = np.flatnonzero(np.nan_to_num(span) >= 3 * px_per_mm)
    strokes = np.split(tall, np.flatnonzero(np.diff(tall) > 1) + 1) if len(tall) else []
    if len(strokes) < 2 or strokes[0][0] > 4 * px_per_mm:
        return ys
    rise, fall = strokes[0], strokes[1]
    between = np.arange(rise[-1] + 1, fall[0])
    if (abs(y_max[rise].max() - y_max[fall].max()) > px_per_mm
            or not 3 * px_per_mm <= len(between) <= 12 * px_per_mm or np.isfinite(ys[between]).mean() > 0.5):
        return ys
    top = min(y_min[rise].min(), y_min[fall].min()) + 0.5 * float(np.nanmedian(y_max - y_min))
    out = ys.copy()
    out[between] = np.where(np.isfinite(ys[between]), ys[between], top)
    return out


def _bidirectional(y_min: np.ndarray, y_max: np.ndarray) -> np.ndarray:
    """The trace's y per column from the ink's top and bottom edge.

    On slopes a column's ink spans the values the signal passes through, so its centre is
    the value at the column's centre; at a peak (top edge higher than both neighbours') the
    top edge is the value, less half the line width — likewise the bottom edge at a trough.
    This keeps narrow QRS peaks at their true height without widening them."""
    span = y_max - y_min
    half_width = 0.5 * float(np.nanmedian(span)) if np.isfinite(span).any() else 0.0
    ys = (y_min + y_max) / 2
    prev_min, next_min = np.roll(y_min, 1), np.roll(y_min, -1)
    prev_max, next_max = np.roll(y_max, 1), np.roll(y_max, -1)
    with np.errstate(invalid="ignore"):
        peak = (y_min <= prev_min) & (y_min <= next_min) & (span > 4 * half_width)
        trough = (y_max >= prev_max) & (y_max >= next_max) & (span > 4 * half_width)
    ys = np.where(peak & ~trough, y_min + half_width, ys)
    ys = np.where(trough & ~peak, y_max - half_width, ys)
    return ys


def _column_runs(sub: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Vertical ink runs per column (1-px gaps bridged): run starts, run ends (bool maps) and runs per column."""
    bridged = sub.copy()
    bridged[1:-1] |= sub[:-2] & sub[2:]
    starts = bridged.copy()
    starts[1:] &= ~bridged[:-1]
    ends = bridged.copy()
    ends[:-1] &= ~bridged[1:]
    return starts, ends, starts.sum(axis=0)


def _gap(lo: np.ndarray | float, hi: np.ndarray | float, other_lo: np.ndarray | float,
         other_hi: np.ndarray | float) -> np.ndarray:
    """Vertical distance between runs [lo, hi] and [other_lo, other_hi], broadcast; 0 where they touch."""
    return np.maximum(0, np.maximum(np.subtract(lo, other_hi), np.subtract(other_lo, hi)))


def _link(lo: np.ndarray | float, hi: np.ndarray | float, other_lo: np.ndarray | float,
          other_hi: np.ndarray | float, gap_weight: float) -> np.ndarray:
    """The cost of one run following another: their gap, weighted, less the rows they share."""
    overlap = np.maximum(0, np.minimum(hi, other_hi) - np.maximum(lo, other_lo) + 1)
    return gap_weight * _gap(lo, hi, other_lo, other_hi) - overlap


def _own_stroke(sub: np.ndarray, start_y: float) -> tuple[np.ndarray, np.ndarray]:
    """Top and bottom of the ink run in each column that continues the row's own stroke.

    Where a column holds several runs (a neighbour row's QRS, a label or handwriting poking into
    the band), the one kept is the path whose consecutive runs touch best (Viterbi, cost =
    vertical gap); of paths that touch equally, the one whose runs overlap most, so a QRS keeps
    its stroke where a grid line the mask took for ink crosses it (real photo 01067: V1's S
    waves were read along the line). Columns with a single run have no choice, so only the
    stretches of several-run columns are solved, each between its single-run neighbours."""
    starts, ends, count = _column_runs(sub)
    gap_weight = float(sub.size)  # above any path's total overlap: the gap decides, overlap breaks ties
    y_min = np.where(count > 0, starts.argmax(axis=0), np.nan).astype(np.float64)
    y_max = np.where(count > 0, sub.shape[0] - 1 - ends[::-1].argmax(axis=0), np.nan).astype(np.float64)
    inked = np.flatnonzero(count > 0)
    several = count[inked] > 1
    i = 0
    while i < len(inked):
        if not several[i]:
            i += 1
            continue
        j = i
        while j < len(inked) and several[j]:
            j += 1
        before = (np.array([y_min[inked[i - 1]]]), np.array([y_max[inked[i - 1]]])) if i > 0 else (
            np.array([start_y]), np.array([start_y]))
        cost, back, options = np.zeros(1), [], []
        for x in inked[i:j]:
            lo, hi = np.flatnonzero(starts[:, x]).astype(float), np.flatnonzero(ends[:, x]).astype(float)
            total = _link(lo[:, None], hi[:, None], *before, gap_weight) + cost[None, :]
            back.append(total.argmin(axis=1))
            cost = total.min(axis=1)
            options.append((lo, hi))
            before = (lo, hi)
        if j < len(inked):  # the next single-run column must be reached too
            x = inked[j]
            cost = cost + _link(y_min[x], y_max[x], *before, gap_weight)
        k = int(cost.argmin())
        for step in range(j - i - 1, -1, -1):
            lo, hi = options[step]
            y_min[inked[i + step]], y_max[inked[i + step]] = lo[k], hi[k]
            k = int(back[step][k])
        i = j
    return y_min, y_max


def _extend_past_edges(mask: np.ndarray, x0: int, y_min: np.ndarray, y_max: np.ndarray, top: int, bottom: int,
                       limits: tuple[int, int]) -> None:
    """A run cut by the band's edge is a peak taller than the band: follow its ink beyond the edge
    (up to `limits`, most of the way to the neighbouring baselines) instead of clipping it.
    Ink that reaches `limits` unbroken is the neighbour's own deflection as likely as this row's
    (a deep S wave of V1 runs into V2's row and through its QRS): the run stays cut at the edge."""
    for j in np.flatnonzero(y_min == top):
        column = mask[limits[0]:top, x0 + j][::-1]
        if not column.all():
            y_min[j] = top - int(column.argmin())
    for j in np.flatnonzero(y_max == bottom - 1):
        column = mask[bottom:limits[1], x0 + j]
        if not column.all():
            y_max[j] = bottom - 1 + int(column.argmin())


def _stay_on_stroke(mask: np.ndarray, x0: int, y_min: np.ndarray, y_max: np.ndarray, base: float,
                    band: tuple[int, int], limits: tuple[int, int], px_per_mm: float) -> None:
    """Where the row's stroke leaves the band whole, as a deep S wave does past the half-way line
    to the next row, a neighbour's wave reaching into the band may be all the band holds there,
    and the reading jumps to it, even before, where the stroke still lies in the band (val96 #74:
    V2's S waves, 1.9 mV deep, read as V1's, which reach down into V2's band, at +1.8 mV). So
    where the reading jumps away from ink within a millimetre of the band's edge or beyond it,
    ink that runs unbroken from the row's level `base`, the column takes the run within `limits`
    that continues that ink, while there is one, unless the ink the reading jumped to itself runs
    on unbroken to the row's level: that is the stroke coming back (val96 #45: aVR's S wave cut at
    the band's edge, where a stain went on from its tip). A run reaching `limits` unbroken may be
    the neighbour's own stroke (see `_extend_past_edges`) and is not taken."""
    top, bottom = band
    near = px_per_mm

    def at_edge(lo: np.ndarray | float, hi: np.ndarray | float) -> np.ndarray:
        return (lo < top + near) | (hi > bottom - 1 - near)  # NaN compares False: no ink is at no edge

    with np.errstate(invalid="ignore"):
        step = _gap(y_min[1:], y_max[1:], y_min[:-1], y_max[:-1])  # NaN: a column without ink continues nothing
        if not (at_edge(y_min[:-1], y_max[:-1]) & (step > 1)).any():
            return  # the reading never jumps away from the band's edges: nothing to follow (most rows)
        at_base = _gap(y_min, y_max, base, base) <= near
        touches = step <= 1
    to_base = at_base.copy()  # the reading runs on unbroken from here to the row's level
    for j in range(len(y_min) - 2, -1, -1):
        to_base[j] |= touches[j] and to_base[j + 1]
    from_base = bool(at_base[0])
    for j in range(1, len(y_min)):
        lo, hi = y_min[j - 1], y_max[j - 1]
        if from_base and at_edge(lo, hi) and not to_base[j] and _gap(y_min[j], y_max[j], lo, hi) > 1:
            starts, ends, _ = _column_runs(mask[limits[0] : limits[1], x0 + j][:, None])
            run_lo, run_hi = np.flatnonzero(starts[:, 0]) + limits[0], np.flatnonzero(ends[:, 0]) + limits[0]
            on = (_gap(run_lo, run_hi, lo, hi) <= 1) & (run_lo > limits[0]) & (run_hi < limits[1] - 1)
            if on.any():
                best = np.flatnonzero(on)[np.argmax((np.minimum(run_hi, hi) - np.maximum(run_lo, lo))[on])]
                y_min[j], y_max[j] = run_lo[best], run_hi[best]
        from_base = bool(_gap(y_min[j], y_max[j], base, base) <= near
                         or (from_base and _gap(y_min[j], y_max[j], lo, hi) <= 1))


def _read_band(mask: np.ndarray, base: float, band: tuple[int, int], columns: tuple[int, int],
               limits: tuple[int, int], px_per_mm: float, pulse_top: int | None = None
               ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """A row's own stroke in the band `mask[top:bottom, x0:x1]`: the ink's top and bottom per
    column and the trace's y (see `_own_stroke`, `_bidirectional`). Runs cut by the band's edges
    are followed beyond them up to `limits`. With `pulse_top`, the band reaches up to it over
    the columns where a calibration pulse may stand."""
    (top, bottom), (x0, x1) = band, columns
    upper = top if pulse_top is None else pulse_top
    sub = mask[upper:bottom, x0:x1]
    if pulse_top is not None:
        sub = sub.copy()
        sub[: top - upper, int(PULSE_ZONE_MM * px_per_mm):] = False
    y_min, y_max = _own_stroke(sub, base - upper)
    y_min, y_max = y_min + upper, y_max + upper
    _extend_past_edges(mask, x0, y_min, y_max, top, bottom, limits)
    _stay_on_stroke(mask, x0, y_min, y_max, base, band, limits, px_per_mm)
    return y_min, y_max, _bridge_pulse_top(_bidirectional(y_min, y_max), y_min, y_max, px_per_mm)


def gain_misfit(height_mm: float) -> float:
    """How far (log ratio) a pulse `height_mm` tall lies from the nearest standard 1 mV height."""
    return min(abs(float(np.log(height_mm / g))) for g in GAINS_MM_PER_MV)


def _misfit(pulse: Pulse, px_per_mm: float) -> float:
    return gain_misfit(pulse.height_px / px_per_mm)


def _pulse_retry(mask: np.ndarray, with_edges: np.ndarray | None, base: float, band: tuple[int, int],
                 limits: tuple[int, int], cut_at_top: bool, px_per_mm: float
                 ) -> tuple[int, np.ndarray, Pulse] | None:
    """A row's start read again the ways a pulse the first reading missed would show: taller
    than half the row spacing (a 20 mm/mV pulse's top lies beyond the band, which cut the ink
    at its top), or as two edges whose top the network dropped (`with_edges`: the mask plus
    `trace_and_pulse_edges`). Of the readings that find a pulse, the one nearest a standard height
    gives its first column, its trace and the pulse (val96 #79: a 20 mm pulse, whose edges' upper
    halves the network lost, was bridged at 11.8 mm from its edges alone, and 19 mm up to its top)."""
    top, bottom = band
    readings = [(mask, limits[0])] if cut_at_top else []
    if with_edges is not None:
        readings += [(with_edges, None)] + ([(with_edges, limits[0])] if cut_at_top else [])
    found = []
    for source, pulse_top in readings:
        cols = np.flatnonzero(source[top:bottom].any(axis=0))
        x0 = int(cols[0])
        columns = (x0, min(int(cols[-1]) + 1, x0 + int(START_MM * px_per_mm)))
        y_min, y_max, ys = _read_band(source, base, band, columns, limits, px_per_mm, pulse_top)
        pulse = _pulse(ys, y_min, y_max, _baseline_after_pulse(ys, px_per_mm), px_per_mm)
        if pulse is not None:
            found.append((x0, ys, pulse))
    return min(found, key=lambda f: _misfit(f[2], px_per_mm), default=None)


def _band(baselines: list[float], i: int, height: int, px_per_mm: float, share: float = 0.5) -> tuple[int, int]:
    """Row `i`'s band (top, bottom): `share` of the way to the neighbouring baselines (to
    `LONE_ROW_MM` beyond the outer rows); by default half way, where the neighbours' bands begin."""
    above = baselines[i] - baselines[i - 1] if i > 0 else LONE_ROW_MM * px_per_mm
    below = baselines[i + 1] - baselines[i] if i + 1 < len(baselines) else LONE_ROW_MM * px_per_mm
    return max(0, int(baselines[i] - share * above)), min(height, int(baselines[i] + share * below))


DETOUR_JUMP_MM = 3.0  # ink this far from where the row's stroke left off, and from where it goes on, is no part of it
DETOUR_MIN_MM = 4.0  # narrower islands are QRS tops whose thin strokes the mask lost (80 ms at 50 mm/s)


def _detours(y_min: np.ndarray, y_max: np.ndarray, base: float, first: int, px_per_mm: float) -> np.ndarray:
    """Columns (from `first` on) of a row's reading that leave its stroke and come back: an island
    of touching runs at least `DETOUR_MIN_MM` wide, apart by `DETOUR_JUMP_MM` from the ink before
    it and after it, where that ink lies near the row's baseline `base` and the island does not.
    Where the mask loses a stretch of faint trace, a column's only run is whatever else lies in the
    band (val96 #85: V4's flat start past a bold bar read as a red scribble 12 mm below for 0.35 s);
    a reading already astray must not drop the stroke it strays from (val96 #74: V2's deep S waves)."""
    detour = np.zeros(len(y_min), bool)
    inked = np.flatnonzero(np.isfinite(y_min))
    inked = inked[inked >= first]
    a, b = inked[:-1], inked[1:]
    step = _gap(y_min[b], y_max[b], y_min[a], y_max[a])
    cuts = np.flatnonzero((b - a > 1) | (step > 1)) + 1  # where a new island begins
    if len(cuts) < 2:
        return detour
    starts, ends = np.r_[0, cuts], np.r_[cuts, len(inked)]
    jump = DETOUR_JUMP_MM * px_per_mm
    off_base = _gap(y_min[inked], y_max[inked], base, base)
    inner = slice(1, -1)  # islands with ink on both sides
    leaves = ((inked[ends - 1] - inked[starts] + 1)[inner] >= DETOUR_MIN_MM * px_per_mm)
    leaves &= (step[cuts[:-1] - 1] > jump) & (step[cuts[1:] - 1] > jump)
    leaves &= (off_base[ends[:-2] - 1] <= jump) & (off_base[starts[2:]] <= jump)
    leaves &= np.minimum.reduceat(off_base, starts)[inner] > jump
    island = np.cumsum(np.isin(np.arange(len(inked)), cuts))
    detour[inked] = np.r_[False, leaves, False][island]
    return detour


def follow_rows(mask: np.ndarray, baselines: list[float], px_per_mm: float,
                pulse_edges: np.ndarray | None = None) -> list[RowTrace]:
    """Follow each row's own stroke column by column (see `_read_band`), then cut off the
    calibration pulse at its start (looked for again with `pulse_edges` where none is seen)."""
    rows: list[RowTrace] = []
    h = mask.shape[0]
    with_edges = mask | pulse_edges if pulse_edges is not None and pulse_edges.any() else None
    for i, base in enumerate(baselines):
        top, bottom = _band(baselines, i, h, px_per_mm)
        cols = np.flatnonzero(mask[top:bottom].any(axis=0))
        if len(cols) < 10 * px_per_mm:
            continue
        x0 = int(cols[0])
        limits = _band(baselines, i, h, px_per_mm, share=0.9)
        y_min, y_max, ys = _read_band(mask, base, (top, bottom), (x0, int(cols[-1]) + 1), limits, px_per_mm)
        ys[_detours(y_min, y_max, base, int(START_MM * px_per_mm), px_per_mm)] = np.nan  # past the pulse and its foot
        pulse = _pulse(ys, y_min, y_max, _baseline_after_pulse(ys, px_per_mm), px_per_mm)
        resume = pulse.resume if pulse else 0
        if pulse is None or _misfit(pulse, px_per_mm) > PULSE_FIT:
            # A pulse read off every standard height may be one whose top lies beyond the band
            # with the upper halves of its edges lost (val96 #79: 20 mm read as 11.8).
            cut_at_top = pulse is not None or bool((y_min[: int(PULSE_ZONE_MM * px_per_mm)] < top).any())
            retry = _pulse_retry(mask, with_edges, base, (top, bottom), limits, cut_at_top, px_per_mm)
            if retry is not None and (pulse is None or _misfit(retry[2], px_per_mm) < _misfit(pulse, px_per_mm)):
                # The row goes on from the pulse's end: the retry's values up to where the first
                # reading starts, the first reading's (of the whole row) after.
                retry_x0, head, pulse = retry
                resume_at = retry_x0 + pulse.resume
                ys = np.concatenate([head[pulse.resume : max(pulse.resume, x0 - retry_x0)],
                                     ys[max(0, resume_at - x0):]])
                x0, resume = resume_at, 0
        # Ink starts half a line width before the signal's first sample; a trace drawn on from the
        # pulse's falling edge starts at the edge's centre.
        line = float(np.nanmedian(y_max - y_min))
        offset = pulse.edge - pulse.resume if pulse is not None and pulse.from_edge else 0.5 * line
        rows.append(RowTrace(ys[resume:], x0 + resume, pulse.zero_px if pulse else None,
                             pulse.height_px if pulse else None, offset, pulse.width_px if pulse else None, line))
    return _common_start(rows, px_per_mm)


def refine_rows(rows: list[RowTrace], coarse: np.ndarray, fine: np.ndarray, px_per_mm: float) -> list[RowTrace]:
    """Each row's trace re-read from a finer mask, where it lies within `REFINE_MM` of the coarse reading.

    Everything discrete (rows, pulses, where a row starts) stays as the coarse reading decided;
    the fine mask only moves each column's value, which sharpens the narrow QRS complexes the
    coarse mask rounds off and widens. Columns the fine mask misses keep the coarse value.
    Columns where the coarse reading has no value, or one with no fine ink near it, are read
    from the fine mask across the row's band: the coarse mask loses faint stretches (a fold's
    shade on a photo), and its reading then strays onto whatever ink is left there. So are the
    columns up to where the longest row ends, near the coarse mask's ink: a row's coarse reading
    stops early where the coarse mask broke its last stroke off (`_ink_run_on` keeps what follows
    on from the row's end; a QR code's fine ink beside it is no part of it)."""
    reach = max(2, round(REFINE_MM * px_per_mm))
    square = np.ones((2 * reach + 1, 2 * reach + 1), np.uint8)
    fine_near = cv2.dilate(fine.astype(np.uint8), square) > 0
    rows_read = [row for row in rows if row.coverage > 0]
    unbacked = [_unbacked(row, fine_near) for row in rows_read]
    for i, row in enumerate(rows_read):
        end = _end_before_unbacked_strokes(row.y_px, unbacked[i], px_per_mm)
        row.y_px, unbacked[i] = row.y_px[:end], unbacked[i][:end]
    ends = [row.x_start + len(row.y_px) for row in rows_read]
    for i, (row, row_end) in enumerate(zip(rows_read, ends, strict=True)):
        pad = max(ends) - row_end  # no value there: unbacked
        row.y_px = np.concatenate([row.y_px, np.full(pad, np.nan)])
        unbacked[i] = np.concatenate([unbacked[i], np.ones(pad, bool)])
    beyond = [np.arange(len(row.y_px)) >= row_end - row.x_start for row, row_end in zip(rows_read, ends, strict=True)]
    coarse_trace = trace_ink(coarse, px_per_mm)
    near = cv2.dilate(coarse_trace.astype(np.uint8), np.ones((2 * reach + 1, 3), np.uint8)) > 0
    near |= _bands_over(rows_read, [lost & ~after for lost, after in zip(unbacked, beyond, strict=True)],
                        near.shape, px_per_mm)
    near |= _bands_over(rows_read, beyond, near.shape, px_per_mm) & (cv2.dilate(coarse.astype(np.uint8), square) > 0)
    fine_rows = [f for f in follow_rows(trace_ink(fine & near, px_per_mm), find_rows(coarse_trace, px_per_mm),
                                        px_per_mm) if f.coverage > 0]
    for row, lost in zip(rows_read, unbacked, strict=True):
        level = np.nanmedian(row.y_px)
        match = min(fine_rows, key=lambda f: abs(np.nanmedian(f.y_px) - level), default=None)
        if match is None or abs(np.nanmedian(match.y_px) - level) > reach:
            continue
        x = np.arange(len(row.y_px)) + row.x_start - match.x_start
        inside = (x >= 0) & (x < len(match.y_px))
        values = np.full(len(row.y_px), np.nan)
        values[inside] = match.y_px[x[inside]]
        with np.errstate(invalid="ignore"):
            use = (np.abs(values - row.y_px) <= reach) | (lost & np.isfinite(values))
        row.y_px[use] = values[use]
    for row, row_end in zip(rows_read, ends, strict=True):
        row.y_px = row.y_px[: _ink_run_on(row.y_px, row_end - row.x_start, px_per_mm)]
    return rows


UNBACKED_STROKE = 0.9  # a row's last stroke is dropped when the fine mask backs less than a tenth of it


def _end_before_unbacked_strokes(ys: np.ndarray, lost: np.ndarray, px_per_mm: float) -> int:
    """Where a row ends once the strokes after its last breaks of over 1 mm that fine ink hardly
    backs (`lost`) are dropped: the coarse mask takes the sheet's edge, or its shadow, for a stroke,
    and the row's reading jumps to it (real photo 02374: two rows read 12 mm on, down the edge)."""
    read = np.flatnonzero(np.isfinite(ys))
    breaks = np.flatnonzero(np.diff(read) > px_per_mm)
    end = len(ys)
    for last in breaks[::-1]:
        stroke = read[(read > read[last]) & (read < end)]
        if np.mean(lost[stroke]) < UNBACKED_STROKE:
            break
        end = int(read[last]) + 1
    return end


def _ink_run_on(ys: np.ndarray, end: int, px_per_mm: float) -> int:
    """Where a row read on past its earlier `end` stops: at the first break of over 1 mm after it,
    or its last value. What follows a break, or starts off the row's last value by more than
    `REFINE_MM`, belongs to something else (a label, a fold's shadow)."""
    read = np.flatnonzero(np.isfinite(ys[end:])) + end
    before = ys[:end][np.isfinite(ys[:end])]
    if (not len(read) or not len(before) or read[0] - end > px_per_mm
            or abs(ys[read[0]] - before[-1]) > REFINE_MM * px_per_mm):
        return end
    breaks = np.flatnonzero(np.diff(read) > px_per_mm)
    return int(read[breaks[0]] if len(breaks) else read[-1]) + 1


def _unbacked(row: RowTrace, fine_near: np.ndarray) -> np.ndarray:
    """The columns of a row whose coarse reading the fine mask does not back: no value, or
    no fine ink near it (`fine_near`: the fine mask widened by `REFINE_MM`)."""
    read = np.flatnonzero(np.isfinite(row.y_px))
    lost = np.ones(len(row.y_px), bool)
    lost[read] = ~fine_near[np.round(row.y_px[read]).astype(int), read + row.x_start]
    return lost


def _bands_over(rows: list[RowTrace], columns: list[np.ndarray], shape: tuple[int, ...], px_per_mm: float
                ) -> np.ndarray:
    """Each row's band (see `_band`) over its chosen `columns` (a bool per column of the row)."""
    out = np.zeros(shape[:2], bool)
    levels = [float(np.nanmedian(row.y_px)) for row in rows]
    for i, (row, chosen) in enumerate(zip(rows, columns, strict=True)):
        top, bottom = _band(levels, i, shape[0], px_per_mm)
        out[top:bottom, row.x_start + np.flatnonzero(chosen)] = True
    return out


def rows_box(rows: list[RowTrace], shape: tuple[int, ...], px_per_mm: float) -> tuple[int, int, int, int]:
    """The part of the page (x0, y0, x1, y1) that `refine_rows` needs read: the rows' span, the
    pulses before them, and room for the network's view around the ink."""
    margin = (REFINE_MM + 5.0) * px_per_mm
    x0 = min(r.x_start for r in rows) - 20 * px_per_mm  # the calibration pulses
    x1 = max(r.x_start + len(r.y_px) for r in rows) + margin
    y0 = min(np.nanmin(r.y_px) for r in rows) - margin
    y1 = max(np.nanmax(r.y_px) for r in rows) + margin
    h, w = shape[:2]
    return max(0, int(x0)), max(0, int(y0)), min(w, int(np.ceil(x1))), min(h, int(np.ceil(y1)))


def nearest_standard(value: float, standards: tuple[float, ...]) -> float | None:
    """The standard size `value` reads as, when within 30 % of one."""
    best = min(standards, key=lambda s: abs(np.log(s / value)))
    return best if abs(np.log(best / value)) < np.log(1.3) else None


def pulse_speed(width_px: float, px_per_mm: float) -> float | None:
    """The paper speed a pulse `width_px` wide was printed at, when it is a standard one."""
    return nearest_standard(width_px / px_per_mm / PULSE_S, SPEEDS_MM_PER_S)


def _agreeing_starts(rows: list[RowTrace], px_per_mm: float) -> list[RowTrace]:
    """The largest group of rows starting within 1 mm of each other, when no other group is as
    large; else all rows. A row's reading starts early where the tall pulse of the row below pokes
    into its band (val96 #38: 20 mm/mV pulses on rows 32 mm apart: starts 149, 196, 247, 246)."""
    starts = np.array([row.x_start for row in rows])
    agree = np.abs(starts[:, None] - starts[None, :]) <= px_per_mm
    largest = agree.sum(axis=1).max()
    groups = {tuple(np.flatnonzero(group)) for group in agree if group.sum() == largest}
    return [rows[i] for i in groups.pop()] if len(groups) == 1 else rows


def _common_start(rows: list[RowTrace], px_per_mm: float) -> list[RowTrace]:
    """Every row of a page starts at the same time and column. Where the calibration pulses
    place that column, a row whose own start is off (its first stretch lost under text, flat ink
    taken for the pulse's foot, or a pulse's edge read a few pixels early) is re-cut there. One
    pulse suffices (the rows whose pulse went unseen start at its rising edge or before) when it
    is of a standard width (0.2 s at 25 or 50 mm/s): alone, a misread one would place every row.
    Without pulses, three rows or more place it by the median start of those that agree
    (`_agreeing_starts`). Every row then takes the same signal start too (`start_offset_px`), so
    the leads of different rows stay in step."""
    anchors = [row for row in rows if row.pulse_width_px is not None]
    if len(anchors) == 1 and not pulse_speed(anchors[0].pulse_width_px, px_per_mm):
        anchors = []
    if not anchors and len(rows) >= 3:
        anchors = _agreeing_starts(rows, px_per_mm)
    if not anchors:
        return rows
    common = int(np.median([row.x_start for row in anchors]))
    offset = float(np.median([row.start_offset_px for row in anchors]))
    for row in rows:
        shift = common - row.x_start
        if shift:
            row.y_px = row.y_px[shift:] if shift > 0 else np.concatenate([np.full(-shift, np.nan), row.y_px])
            row.x_start = common
        row.start_offset_px = offset
    return rows
