"""Stage 0 (align): which way up the page is, how much it is tilted, and where its lead labels are.

The lead labels are found by the keypoint UNet of DESIGN.md (`LabelNet`: a heatmap per lead
name, read on the straightened page). Which way up and how tilted are classical stand-ins
for its homography: the trace rows of a tilted page
are straightened by the rotation that makes their horizontal profile sharpest (perspective
is not corrected yet). An ECG's traces run along the page's long side, and calibration
pulses stand at the rows' left ends, so the upright candidate is the one whose rows read as
a known layout with pulses where they belong, and whose beats run forward in time (each
QRS followed by a T wave larger than the P wave before it).
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from functools import cached_property
from pathlib import Path

import cv2
import numpy as np
import torch
from scipy.ndimage import maximum_filter, median_filter
from scipy.signal import find_peaks

from cardioscan.grid import GridWarp
from cardioscan.models import LoadedUnet
from cardioscan.postprocess import SNAP_S, Calibration, infer_layout, row_leads
from cardioscan.record import LEAD_NAMES
from cardioscan.timing import PrintedSegment
from cardioscan.trace import WEIGHTS_DIR, RowTrace

LABEL_WEIGHTS = WEIGHTS_DIR / "align.safetensors"
LABEL_PX_PER_MM = 4.0  # labels are read at this scale: printed letters of 2.5-5 mm are 10-20 px tall
LABEL_SIGMA_MM = 1.0  # spread of a label's heatmap peak (training target)
LABEL_CHANNELS = len(LEAD_NAMES) + 1  # a heatmap per lead name, then one for a label of any lead


@dataclass
class LeadLabel:
    """A printed lead name found on the page: its centre (px), the lead it names, the network's
    confidence that a label is there (the "any lead" heatmap's peak, 0..1), and that it reads
    `lead` (that lead's heatmap there)."""

    lead: str
    x: float
    y: float
    confidence: float
    reading: float = 1.0


def _vertex(left: float, centre: float, right: float) -> float:
    """Offset (-0.5..0.5) of the top of the parabola through three neighbouring samples."""
    curve = left - 2 * centre + right
    return 0.0 if curve >= 0 else float(np.clip(0.5 * (left - right) / curve, -0.5, 0.5))


def label_peaks(heat: np.ndarray, threshold: float, radius: int) -> list[tuple[int, float, float, float, float]]:
    """(lead index, x, y, presence, reading) of each label in the (13, h, w) heatmaps (`LABEL_CHANNELS`): the
    local maxima (one within `radius` px) of the last, "a label of any lead", above `threshold`,
    named by the strongest of the twelve lead channels there (a label half read as V1 and half as
    V2 is still found, once, with that channel's value as its reading), placed to a fraction of a
    pixel by a parabola through its neighbours."""
    presence = heat[-1]
    top = maximum_filter(presence, size=2 * radius + 1, mode="constant")
    h, w = presence.shape
    peaks: list[tuple[int, float, float, float, float]] = []
    for y, x in zip(*np.nonzero((presence == top) & (presence > threshold)), strict=True):
        if any(abs(x - px) <= radius and abs(y - py) <= radius for _, px, py, _, _ in peaks):
            continue  # a plateau's second pixel (bf16 output ties), not a second label
        m = presence
        dx = _vertex(m[y, x - 1], m[y, x], m[y, x + 1]) if 0 < x < w - 1 else 0.0
        dy = _vertex(m[y - 1, x], m[y, x], m[y + 1, x]) if 0 < y < h - 1 else 0.0
        lead = int(heat[:-1, y, x].argmax())
        peaks.append((lead, x + dx, y + dy, float(m[y, x]), float(heat[lead, y, x])))
    return peaks


LABEL_MATCH_MM = 3.0  # a found label further than this from the true one of its lead is a miss


def match_labels(found: list[LeadLabel], truth: list[LeadLabel], px_per_mm: float) -> tuple[list[float], int]:
    """Distances (mm) from each true label to the nearest found label of the same lead (inf when
    none lies within LABEL_MATCH_MM), and how many found labels matched none."""
    errors, used = [], set()
    for t in truth:
        near = [(np.hypot(f.x - t.x, f.y - t.y) / px_per_mm, i) for i, f in enumerate(found)
                if f.lead == t.lead and i not in used]
        d, i = min(near, default=(np.inf, -1))
        if d <= LABEL_MATCH_MM:
            used.add(i)
            errors.append(float(d))
        else:
            errors.append(np.inf)
    return errors, len(found) - len(used)



def finite_median(errors: np.ndarray) -> float | None:
    """The median error, None when it is a miss (most labels missed) or there are none: JSON has no infinity."""
    median = float(np.median(errors)) if len(errors) else np.inf
    return round(median, 3) if np.isfinite(median) else None


def _baselines(rows: list[RowTrace]) -> np.ndarray:
    """Each row's median level (px; NaN for a row without ink): a label belongs to the nearest."""
    return np.array([np.nanmedian(r.y_px) if np.isfinite(r.y_px).any() else np.nan for r in rows])


def segment_starts(labels: list[LeadLabel], rows: list[RowTrace], columns: list[int]) -> list[tuple[int, int] | None]:
    """Per label, the printed segment (row, column) whose start it stands by, `columns[row]` segments
    printed in each row: a quarter of a column before it to a third after it, nearer its row's
    baseline than any other row's; None for the others. A rhythm strip's start is judged by the
    page's grid columns, not by its whole length."""
    baselines = _baselines(rows)
    if not any(columns) or np.isnan(baselines).all():
        return [None] * len(labels)
    pitch = float(np.median(np.diff(np.sort(baselines[np.isfinite(baselines)])))) if len(rows) > 1 else np.inf
    widest = max(columns)
    found: list[tuple[int, int] | None] = []
    for label in labels:
        row = int(np.nanargmin(np.abs(baselines - label.y)))
        if row >= len(columns) or not columns[row] or abs(label.y - baselines[row]) > 0.6 * pitch:
            found.append(None)
            continue
        trace = rows[row]
        width = (len(trace.y_px) - trace.start_offset_px) / widest
        place = (label.x - trace.x_start - trace.start_offset_px) / width  # in grid columns from the row's start
        span = widest // columns[row]  # grid columns per segment of this row: a rhythm strip spans them all
        column = int(np.floor(place + 0.25))
        inside = 0 <= column < widest and column % span == 0 and place - column <= 1 / 3
        found.append((row, column // span) if inside else None)
    return found


def _columns(segments: list[PrintedSegment], rows: int) -> list[int]:
    """How many segments each of the page's rows prints."""
    return [sum(s.row == r for s in segments) for r in range(rows)]


def name_by_layout(labels: list[LeadLabel], rows: list[RowTrace], segments: list[PrintedSegment]) -> list[LeadLabel]:
    """Each label that stands by a printed segment's start (`segment_starts`) renamed after that
    segment's lead: the layout, and the rhythm strips' identification, name it more surely than the
    network reads its letters (V1 and V2 differ by a digit). The others keep the network's reading."""
    leads = {(s.row, s.column): s.lead for s in segments}
    return [replace(label, lead=leads[place]) if place else label
            for label, place in zip(labels, segment_starts(labels, rows, _columns(segments, len(rows))), strict=True)]


LABEL_AFTER_START_MM = 10.0  # a column's printed label stands at most this far after the column's start (2-8 mm on the pages we know)


def place_lead_ins(rows: list[RowTrace], labels: list[LeadLabel], layout: str, calibration: Calibration,
                   duration_s: float = 10.0) -> list[RowTrace]:
    """Rows re-started at their end less the record, where the printer drew them from before the
    record's first second (real photos: 0.2-0.4 s of lead-in, which put every column that late).
    A row longer than the record may as well have picked up ink after its end, so the labels of
    the later columns decide: they stand by their columns' starts measured from the row's end,
    but too far after those measured from its start. Rows are left as they are without labels."""
    px_per_s = calibration.px_per_mm * calibration.mm_per_s
    record = duration_s * px_per_s
    lead_ins = [len(r.y_px) - r.start_offset_px - record for r in rows]
    longer = {i for i, lead_in in enumerate(lead_ins) if lead_in > SNAP_S * px_per_s}
    columns = [len(leads) for leads in row_leads(layout)]
    after_start, lead_in_of = [], []  # mm, per label of a later column in a longer row
    for label, place in zip(labels, segment_starts(labels, rows, columns), strict=True):
        if place is not None and place[0] in longer and place[1] >= 1:
            i, k = place
            after_start.append((label.x - rows[i].x_start - rows[i].start_offset_px - k * record / columns[i]) / calibration.px_per_mm)
            lead_in_of.append(lead_ins[i] / calibration.px_per_mm)
    if not after_start or np.median(after_start) <= LABEL_AFTER_START_MM:
        return rows
    if abs(np.median(np.subtract(after_start, lead_in_of))) > LABEL_AFTER_START_MM:
        return rows
    return [replace(r, start_offset_px=r.start_offset_px + lead_ins[i]) if i in longer else r for i, r in enumerate(rows)]


PRINTED_NAME_SURE = 0.5  # a lead heatmap this high reads a strip's label rightly (val96: 37 of 38 at or above, 15 of 27 below)


def printed_strip_leads(labels: list[LeadLabel], rows: list[RowTrace], segments: list[PrintedSegment]) -> list[str | None]:
    """Per rhythm strip (top first), the lead its printed label names, when one stands at its start
    and the network reads it surely; None otherwise."""
    at_start = {place: label for label, place in zip(labels, segment_starts(labels, rows, _columns(segments, len(rows))), strict=True) if place}
    named = []
    for strip in (s for s in segments if s.is_rhythm):
        label = at_start.get((strip.row, strip.column))
        named.append(label.lead if label is not None and label.reading >= PRINTED_NAME_SURE else None)
    return named


LABEL_COLUMN_GAP_MM = 25.0  # printed columns of names stand 62.5 mm apart or more; one column's names within a few mm
NAME_READ = 0.3  # a spot read as a lead's name this surely is a printed name (val96 #57: names 0.31-0.80, stains 0.08-0.24)


def label_columns(labels: list[LeadLabel], px_per_mm: float) -> int | None:
    """How many columns of lead names the page prints, when where they stand says so surely: 4 (a
    3x4 page), 2 (6x2: a second column of six names, where a 3x4 page's later columns hold three)
    or 1 (12x1: eight names or more in one column, where a 3x4 page's first holds at most six).
    Only spots read as names count (`NAME_READ`), and a lone name far from the others (a word of
    the header) is not a column. None otherwise."""
    xs = np.sort([label.x for label in labels if label.reading >= NAME_READ])
    if not len(xs):
        return None
    breaks = np.flatnonzero(np.diff(xs) > LABEL_COLUMN_GAP_MM * px_per_mm) + 1
    sizes = [len(column) for column in np.split(xs, breaks) if len(column) >= 2]
    if len(sizes) == 4 or (len(sizes) == 2 and sizes[1] >= 4) or (len(sizes) == 1 and sizes[0] >= 8):
        return len(sizes)
    return None


def heatmap_labels(heat: np.ndarray, threshold: float) -> list[LeadLabel]:
    """The labels of (LABEL_CHANNELS, h, w) heatmaps read at LABEL_PX_PER_MM, in their pixels (`label_peaks`)."""
    return [LeadLabel(LEAD_NAMES[c], x, y, v, r) for c, x, y, v, r in label_peaks(heat, threshold, round(2 * LABEL_PX_PER_MM))]


class LabelNet(LoadedUnet):
    """The lead-label network, loaded once: `find(rgb, px_per_mm)` is every lead name printed on an
    upright, straightened page."""

    THRESHOLD = 0.4  # presence below which a spot is not taken for a label (best F1 on 48 fresh pages: recall 0.94, precision 0.98)

    def __init__(self, path: Path = LABEL_WEIGHTS, device: str = "cpu") -> None:
        super().__init__(path, device)

    @torch.inference_mode()
    def heatmaps(self, rgb: np.ndarray) -> np.ndarray:
        """(LABEL_CHANNELS, h, w) chance of each lead's label centre (then of any lead's) at every
        pixel of `rgb` (read as given)."""
        h, w = rgb.shape[:2]
        image = cv2.copyMakeBorder(rgb, 0, -h % self.multiple, 0, -w % self.multiple, cv2.BORDER_REPLICATE)
        x = torch.from_numpy(image).to(self.device).permute(2, 0, 1)[None].float().div_(255.0)
        with torch.autocast("cpu", dtype=torch.bfloat16, enabled=self.bf16):
            logits = self.model(x.contiguous(memory_format=torch.channels_last))["maps"][0, :, :h, :w]
        return torch.sigmoid(logits.float()).cpu().numpy()

    def find(self, rgb: np.ndarray, px_per_mm: float) -> list[LeadLabel]:
        h, w = rgb.shape[:2]
        # Enlarged at most twice: a scale guessed from a photo of something else can be a
        # fraction of a px per mm, and enlarging to it took 24 GB (scikit-image's coffee photo).
        scale = LABEL_PX_PER_MM / max(px_per_mm, LABEL_PX_PER_MM / 2)
        size = (max(1, round(w * scale)), max(1, round(h * scale)))
        small = cv2.resize(rgb, size, interpolation=cv2.INTER_AREA if scale < 1 else cv2.INTER_LINEAR)
        sx, sy = size[0] / w, size[1] / h
        return [replace(label, x=(label.x + 0.5) / sx - 0.5, y=(label.y + 0.5) / sy - 0.5)
                for label in heatmap_labels(self.heatmaps(small), self.THRESHOLD)]


def candidate_turns(shape: tuple[int, int]) -> tuple[int, ...]:
    """Counter-clockwise quarter turns worth trying: a portrait image holds a landscape page sideways."""
    h, w = shape
    return (0, 2) if w >= h else (1, 3)


def upright(rgb: np.ndarray, turns: int) -> np.ndarray:
    return np.ascontiguousarray(np.rot90(rgb, turns))


def _unturn(points: np.ndarray, turned_shape: tuple[int, int], turns: int) -> np.ndarray:
    """Points in `np.rot90(a, turns)` (of shape `turned_shape`) back to the pixels of `a`."""
    pts = np.asarray(points, np.float64).copy()
    h, w = turned_shape
    for _ in range(turns % 4):  # rot90 once: b[y, x] = a[x, w_a - 1 - y], and w_a is b's height
        pts = np.stack([h - 1 - pts[:, 1], pts[:, 0]], axis=1)
        h, w = w, h
    return pts


@dataclass
class PageFrame:
    """How the input was turned to read it: enlarged `input_scale` times (`reading_scale`),
    turned `quarter_turns` counter-clockwise, then the
    small `skew_degrees` rotation and the grid's rectification (one homography onto a canvas
    of `shape`, then the grid's non-linear `warp` on that canvas), then `half_turn` if the page
    proved upside down. Maps what was read back onto the input's pixels."""

    input_shape: tuple[int, int]
    quarter_turns: int
    skew_degrees: float
    homography: np.ndarray
    shape: tuple[int, int]
    half_turn: bool = False
    warp: GridWarp | None = None
    input_scale: float = 1.0  # `input_shape` and everything after it are in pixels of the enlarged input

    @classmethod
    def fit(cls, mask: np.ndarray, input_scale: float = 1.0) -> PageFrame:
        """Turn so the trace runs along the long side, then straighten the rows. `mask` is
        the input enlarged `input_scale` times."""
        turns = candidate_turns(mask.shape[:2])[0]
        turned = upright(mask, turns)
        degrees = skew_degrees(turned)
        if abs(degrees) < 0.3:  # not worth a resampling
            return cls(mask.shape[:2], turns, 0.0, np.eye(3), turned.shape[:2], input_scale=input_scale)
        homography, shape = rotation_homography(turned.shape[:2], degrees)
        return cls(mask.shape[:2], turns, degrees, homography, shape, input_scale=input_scale)

    def then(self, homography: np.ndarray, shape: tuple[int, int]) -> PageFrame:
        """This frame followed by a further map (this frame's pixels to new ones, e.g. the
        grid's rectification) onto a canvas of `shape`."""
        return replace(self, homography=homography @ self.homography, shape=shape)

    def bent(self, warp: GridWarp) -> PageFrame:
        """This frame followed by the grid's non-linear warp of its canvas."""
        return replace(self, warp=warp)

    @property
    def turns(self) -> int:
        """Counter-clockwise quarter turns that made the page upright."""
        return (self.quarter_turns + 2 * self.half_turn) % 4

    def apply(self, image: np.ndarray, border: int | tuple[int, ...] = 0) -> np.ndarray:
        """The input (an image or a mask) as this frame sees it, before any half turn."""
        turned = upright(image, self.quarter_turns)
        if np.array_equal(self.homography, np.eye(3)) and self.warp is None:
            return turned
        source = turned.astype(np.uint8) * 255 if turned.dtype == bool else turned
        if self.warp is None:
            warped = cv2.warpPerspective(source, self.homography, self.shape[::-1], flags=cv2.INTER_LINEAR,
                                         borderMode=cv2.BORDER_CONSTANT, borderValue=border)
        else:
            src_x, src_y = self._input_maps
            warped = cv2.remap(source, src_x, src_y, cv2.INTER_LINEAR, borderMode=cv2.BORDER_CONSTANT,
                               borderValue=border)
        return warped > 127 if turned.dtype == bool else warped

    @cached_property
    def _input_maps(self) -> tuple[np.ndarray, np.ndarray]:
        """Homography and warp in one resampling: each canvas pixel's source in the turned input,
        through both (built once; the page and its trace mask are both read through it)."""
        map_x, map_y = self.warp.source_maps
        inverse = np.linalg.inv(self.homography).astype(np.float32)
        depth = inverse[2, 0] * map_x + inverse[2, 1] * map_y + inverse[2, 2]
        return ((inverse[0, 0] * map_x + inverse[0, 1] * map_y + inverse[0, 2]) / depth,
                (inverse[1, 0] * map_x + inverse[1, 1] * map_y + inverse[1, 2]) / depth)

    def to_input(self, points: np.ndarray) -> np.ndarray:
        """(n, 2) points (x, y) on the upright page back to the input's pixels."""
        pts = _unturn(points, self.shape, 2 if self.half_turn else 0)
        if self.warp is not None:
            pts = self.warp.displace(pts)
        pts = cv2.perspectiveTransform(pts.reshape(-1, 1, 2), np.linalg.inv(self.homography)).reshape(-1, 2)
        h, w = self.input_shape
        turned_shape = (h, w) if self.quarter_turns % 2 == 0 else (w, h)
        # Pixel centres: x in the enlarged input lies at (x + 0.5) / scale - 0.5 in the input.
        return (_unturn(pts, turned_shape, self.quarter_turns) + 0.5) / self.input_scale - 0.5


def orientation_score(rows: list[RowTrace], px_per_mm: float) -> float:
    """Higher when the rows form a known layout, start with calibration pulses and run
    forward in time (`waves_follow_beats`)."""
    if not rows:
        return 0.0
    pulses = sum(r.pulse_height_px is not None for r in rows) / len(rows)
    coverage = float(np.mean([r.coverage for r in rows]))
    return 2.0 * (infer_layout(rows) is not None) + 2.0 * pulses + coverage + 0.5 * waves_follow_beats(rows, px_per_mm)


def labels_read_score(labels: list[LeadLabel]) -> float:
    """In [0, 2]: how surely the printed lead names read as names, upright. Upside down the
    network still sees text there but cannot read it (val96 #33, no pulses: 14 labels read at
    0.71 one way, 12 at 0.1 the other), which tells the way up where the rows cannot."""
    return 2.0 * min(1.0, sum(label.reading for label in labels) / 12)


def waves_follow_beats(rows: list[RowTrace], px_per_mm: float) -> float:
    """In [-1, 1]: +1 when, beat after beat, the larger slow wave (by RMS) stands after the QRS
    rather than before it. A T wave is larger than a P wave in nearly every lead, and a page
    turned half a turn reads time backwards, so this tells upright from upside down without
    pulses (val96: 9 of 96 pages read upside down without it, 3 with it at weight 0.5)."""
    per_s = 25.0 * px_per_mm  # the usual paper speed; at 50 mm/s the windows still see T vs P
    votes = []
    for row in rows:
        finite = np.isfinite(row.y_px)
        if finite.sum() < 2 * per_s:
            continue
        x = np.arange(len(row.y_px))
        y = np.interp(x, x[finite], row.y_px[finite])
        level = y - median_filter(y, size=int(0.6 * per_s) | 1)
        sharp = np.abs(y - median_filter(y, size=int(0.06 * per_s) | 1))
        beats, _ = find_peaks(sharp, distance=int(0.3 * per_s), prominence=0.5 * sharp.max())
        for q in beats:
            after = level[q + int(0.12 * per_s) : q + int(0.35 * per_s)]
            before = level[max(0, q - int(0.25 * per_s)) : max(0, q - int(0.08 * per_s))]
            if len(after) and len(before):
                votes.append(np.sign(np.sqrt(np.mean(after**2)) - np.sqrt(np.mean(before**2))))
    return float(np.mean(votes)) if votes else 0.0


def skew_degrees(mask: np.ndarray, limit: float = 20.0) -> float:
    """The small rotation (degrees, counter-clockwise as cv2 counts) that makes the trace rows
    horizontal: the angle at which the mask's row profile is sharpest (coarse, then fine)."""
    scale = min(1.0, 700.0 / max(mask.shape))
    small = cv2.resize(mask.astype(np.float32), None, fx=scale, fy=scale, interpolation=cv2.INTER_AREA)
    h, w = small.shape
    pad = int(0.5 * np.hypot(h, w)) - min(h, w) // 2 + 2
    small = cv2.copyMakeBorder(small, pad, pad, pad, pad, cv2.BORDER_CONSTANT, value=0)
    centre = (small.shape[1] / 2, small.shape[0] / 2)

    def sharpness(angle: float) -> float:
        turned = cv2.warpAffine(small, cv2.getRotationMatrix2D(centre, angle, 1.0), small.shape[::-1])
        profile = turned.sum(axis=1)
        return float(np.square(profile).sum())

    best = max(np.arange(-limit, limit + 0.1, 1.0), key=sharpness)
    return float(max(np.arange(best - 1.0, best + 1.01, 0.1), key=sharpness))


def rotation_homography(shape: tuple[int, int], degrees: float) -> tuple[np.ndarray, tuple[int, int]]:
    """Rotation about the centre onto a canvas that holds the whole turned picture."""
    h, w = shape
    rad = np.deg2rad(degrees)
    out_w = int(np.ceil(abs(w * np.cos(rad)) + abs(h * np.sin(rad))))
    out_h = int(np.ceil(abs(w * np.sin(rad)) + abs(h * np.cos(rad))))
    m = cv2.getRotationMatrix2D((w / 2, h / 2), degrees, 1.0)
    m[:, 2] += [(out_w - w) / 2, (out_h - h) / 2]
    return np.vstack([m, [0, 0, 1]]), (out_h, out_w)


PAPER_ASPECTS = (279.4 / 215.9, 297.0 / 210.0)  # letter and A4: long side over short
OUTLINE_SIDE = 640  # the photo is searched for the sheet at this size (px, longest side)
FLAT_SHEET = 0.03  # opposite sides within 3 % of each other: the sheet was not seen at an angle
OUTLINE_FILL = (0.95, 1.07)  # the sheet's area over its four-corner polygon's: a clean quadrilateral
MIN_SOLIDITY = 0.95  # the sheet's area over its convex hull's (val96: flat sheets 0.97-1.0, a curled one 0.90)


@dataclass
class PageOutline:
    """The sheet's four corners (TL, TR, BR, BL) and the homography from a flat sheet of the
    paper's proportions (canvas `shape`) back onto the picture it was found in. Its scale is
    not used: the trace length pins it better (val96: 0.5 % against 1.2 % median error)."""

    corners: np.ndarray
    homography: np.ndarray
    shape: tuple[int, int]


def page_outline(rgb: np.ndarray) -> PageOutline | None:
    """The sheet against what it lies on, for pages whose grid is missing or too faint to
    rectify: a photographed sheet is the largest bright, colourless region; when its outline
    is a clean quadrilateral, mapping that onto a letter or A4 rectangle undoes the camera's
    perspective. None when the sheet does not stand out as four clear corners (it fills the
    picture, lies on a light background, is shadowed or curled)."""
    h, w = rgb.shape[:2]
    s = OUTLINE_SIDE / max(h, w)
    small = cv2.resize(rgb, (round(w * s), round(h * s)), interpolation=cv2.INTER_AREA)
    lab = cv2.cvtColor(small, cv2.COLOR_RGB2LAB).astype(np.float32)
    paper = cv2.GaussianBlur(lab[..., 0] - 2.0 * np.hypot(lab[..., 1] - 128, lab[..., 2] - 128), (0, 0), 2)
    level = cv2.normalize(paper, None, 0, 255, cv2.NORM_MINMAX).astype(np.uint8)
    _, sheet = cv2.threshold(level, 0, 255, cv2.THRESH_BINARY + cv2.THRESH_OTSU)
    k = OUTLINE_SIDE // 80 | 1  # closes over the ink on the sheet
    sheet = cv2.morphologyEx(sheet, cv2.MORPH_CLOSE, cv2.getStructuringElement(cv2.MORPH_RECT, (k, k)))
    n, labels, stats, _ = cv2.connectedComponentsWithStats(sheet)
    if n < 2:
        return None
    largest = 1 + int(np.argmax(stats[1:, cv2.CC_STAT_AREA]))
    region = (labels == largest).astype(np.uint8)
    if not 0.15 < region.mean() < 0.95:  # a sheet filling the frame shows no outline
        return None
    contours, _ = cv2.findContours(region, cv2.RETR_EXTERNAL, cv2.CHAIN_APPROX_SIMPLE)
    hull = cv2.convexHull(max(contours, key=cv2.contourArea))
    if region.sum() < MIN_SOLIDITY * cv2.contourArea(hull):
        return None  # a sheet that does not fill its hull is curled or cut into: not one plane
    quad = next((q for eps in (0.01, 0.02, 0.03, 0.04, 0.05)
                 if len(q := cv2.approxPolyDP(hull, eps * cv2.arcLength(hull, True), True)) == 4), None)
    if quad is None or not OUTLINE_FILL[0] < region.sum() / max(cv2.contourArea(quad), 1.0) < OUTLINE_FILL[1]:
        return None
    pts = quad.reshape(4, 2).astype(np.float64) / s
    total, diff = pts.sum(axis=1), pts[:, 1] - pts[:, 0]
    corners = pts[[np.argmin(total), np.argmin(diff), np.argmax(total), np.argmax(diff)]]
    tl, tr, br, bl = corners
    across = np.linalg.norm(tr - tl), np.linalg.norm(br - bl)
    down = np.linalg.norm(bl - tl), np.linalg.norm(br - tr)
    if max(abs(np.log(across[0] / across[1])), abs(np.log(down[0] / down[1]))) < FLAT_SHEET:
        return None  # opposite sides alike: a flat scan, with no perspective to undo
    width, height = max(across), max(down)
    # The seen proportions are foreshortened; the nearer paper size's are the sheet's.
    seen = max(width, height) / min(width, height)
    aspect = min(PAPER_ASPECTS, key=lambda a: abs(np.log(a / seen)))
    if width >= height:
        height = width / aspect
    else:
        width = height / aspect
    flat = np.array([[0, 0], [width, 0], [width, height], [0, height]])
    homography = cv2.getPerspectiveTransform(flat.astype(np.float32), corners.astype(np.float32))
    return PageOutline(corners, homography, (int(round(height)), int(round(width))))
