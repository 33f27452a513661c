"""The one Python API behind `digitize`, `eval` and (later) `batch`: image in, EcgRecord out.

The source classifier (when its weights are installed) names the page's capture and paper
damage and routes its preprocessing; stage 2 reads trace pixels with the trained network
when its weights are installed (the classical ink mask otherwise, flagged); the lead-label
network (stage 0) finds the printed lead names on the straightened page for the summary's
keypoints; orientation and the grid's rectification are classical stand-ins for the
networks of DESIGN.md, behind the same types. What the tool is unsure of is said in `flags`, never hidden.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field, replace
from pathlib import Path

import cv2
import numpy as np
import torch

from cardioscan import __version__
from cardioscan.align import (
    LABEL_WEIGHTS,
    LabelNet,
    LeadLabel,
    PageFrame,
    PageOutline,
    label_columns,
    labels_read_score,
    name_by_layout,
    orientation_score,
    page_outline,
    place_lead_ins,
    printed_strip_leads,
    upright,
)
from cardioscan.grid import PerspectiveFit, fit_warp, measure_grid, rectify_grid
from cardioscan.io.images import PDF_DPI, LoadedPage, load_page
from cardioscan.postprocess import (
    Calibration,
    assemble,
    gain_from_pulses,
    infer_layout,
    layout_by_names,
    lead_starts,
    speed_from_pulses,
    split_segments,
    without_stray_outer_rows,
)
from cardioscan.preprocess import branches_for, load_routing, preprocess
from cardioscan.record import LEAD_NAMES, EcgRecord
from cardioscan.source import SOURCE_WEIGHTS, SourceClassifier, SourceEstimate
from cardioscan.timing import (
    WEAK_EVIDENCE,
    PrintedSegment,
    TimingDecision,
    beat_regularity,
    check_timing_mode,
    infer_timing,
)
from cardioscan.trace import (
    TRACE_WEIGHTS,
    RowTrace,
    TraceNet,
    find_rows,
    follow_rows,
    ink_mask,
    refine_rows,
    rows_box,
    trace_and_pulse_edges,
    under_bars,
    with_vertical_strokes,
    without_lettering,
)

LOW_QUALITY = 0.5
NO_ECG = "no ECG found"  # the page flag (and its prefix) for an image that holds no readable ECG
PAPER_TRACE_MM = 250.0  # 10 s at 25 mm/s: the printed width of a full rhythm row
RESCALE = 0.25  # rows are read again when the final scale differs from the guess by more
ROW_MM = (150.0, 290.0)  # the longest row of every layout we know, pulse included, fits in here
READ_PX_PER_MM = 11.8  # pages are read at about 300 dpi, coarser ones enlarged: `reading_scale`


@dataclass
class DigitizeResult:
    record: EcgRecord
    page: LoadedPage
    layout: str | None
    calibration: Calibration
    segments: list[PrintedSegment]
    timing: TimingDecision | None
    rows: list[RowTrace]
    frame: PageFrame  # how the input was turned and straightened to read the rows
    grid_fit: PerspectiveFit | None  # the grid's rectification, when the grid was clear enough
    outline: PageOutline | None  # the sheet's outline, when it corrected the perspective instead
    source: SourceEstimate | None  # None without the classifier's weights
    preprocessing: list[str]  # the branches the page was repaired with, in order
    labels: list[LeadLabel]  # printed lead names found on the read page, like `rows` (none without the weights)
    flags: list[str] = field(default_factory=list)
    seconds: dict[str, float] = field(default_factory=dict)

    def summary(self, written: list[Path] | None = None) -> dict:
        """The documented `--json` contract (see README, "digitize --json")."""
        return {
            "input": str(self.page.path),
            "page": self.page.page,
            "layout": self.layout,
            "rotation": self.frame.turns * 90,  # clockwise degrees the page is turned in the input
            "skew_degrees": round(self.frame.skew_degrees, 2),  # and the further small tilt straightened
            "grid": {"rectified": self.grid_fit is not None,
                     "outline": self.outline is not None,  # the sheet's outline corrected the perspective instead
                     "tiles": self.grid_fit.tiles if self.grid_fit else 0,  # grid patches the rectification fits
                     "residual": round(self.grid_fit.residual, 4) if self.grid_fit else None,
                     # the non-linear straightening of curled or creased paper, when the lines bend
                     "warp_mm": round(self.frame.warp.rms_mm, 3) if self.frame.warp else None,
                     "warp_misfit_mm": round(self.frame.warp.misfit_mm, 3) if self.frame.warp else None},
            "source": ({"category": None, "probability": None} if self.source is None else self.source.summary()),
            "preprocessing": self.preprocessing,
            "read_scale": round(self.frame.input_scale, 3),  # the page was read this many times its size (`reading_scale`)
            # px per mm of the input as given (the rows were read at read_scale times as many)
            "calibration": {"px_per_mm": round(self.calibration.px_per_mm / self.frame.input_scale, 4),
                            "mm_per_s": self.calibration.mm_per_s, "mm_per_mv": self.calibration.mm_per_mv},
            "keypoints": [{"lead": label.lead, "xy": [round(label.x, 1), round(label.y, 1)],
                           "confidence": round(label.confidence, 3)} for label in self.labels_in_input],
            "timing": None if self.timing is None else {
                "convention": self.timing.convention, "evidence": self.timing.evidence,
                "margin": round(self.timing.margin, 3), "rhythm_lead": self.timing.rhythm_lead,
                "rhythm_leads": self.timing.rhythm_leads},
            "leads": {name: {"quality": round(float(self.record.quality[i]), 3),
                             **_span(self.record.signals[i], self.record.fs), **self._lead_timing(name)}
                      for i, name in enumerate(LEAD_NAMES)},
            "flags": self.flags,
            "seconds": {k: round(v, 3) for k, v in self.seconds.items()},
            "written": [str(p) for p in written or []],
            "version": __version__,
        }

    @property
    def labels_in_input(self) -> list[LeadLabel]:
        """The lead labels found, centres in the input's pixels."""
        if not self.labels:
            return []
        where = self.frame.to_input(np.array([[label.x, label.y] for label in self.labels]).reshape(-1, 2))
        return [replace(label, x=float(x), y=float(y)) for label, (x, y) in zip(self.labels, where, strict=True)]

    def _lead_timing(self, lead: str) -> dict[str, float | None]:
        """Offset (s) and confidence of the lead's segment in the grid (its rhythm strip if it has no other)."""
        if self.timing is None:
            return {"offset_s": None, "timing_confidence": None}
        placed = sorted((seg.is_rhythm, o, c) for seg, o, c in
                        zip(self.segments, self.timing.offsets_s, self.timing.confidence, strict=True) if seg.lead == lead)
        if not placed:
            return {"offset_s": None, "timing_confidence": None}
        _, offset, confidence = placed[0]
        return {"offset_s": round(offset, 3), "timing_confidence": round(confidence, 3)}


def _span(values: np.ndarray, fs: float) -> dict[str, float | None]:
    idx = np.flatnonzero(np.isfinite(values))
    if len(idx) == 0:
        return {"start_s": None, "end_s": None}
    return {"start_s": round(idx[0] / fs, 3), "end_s": round((idx[-1] + 1) / fs, 3)}


def check_device(device: str) -> None:
    """Refuse a device this machine lacks before any model is loaded, in one sentence."""
    if device != "cpu" and not (device.split(":")[0] == "cuda" and torch.cuda.is_available()):
        raise ValueError(f"device {device!r} is not available here (use cpu"
                         f"{', cuda' if torch.cuda.is_available() else ''})")


def rough_px_per_mm(rgb: np.ndarray) -> float:
    """A scale for sizing filters before the grid is read: the page's long side (a letter page
    is 279 mm) filling the image."""
    return max(rgb.shape[:2]) / 280.0


def reading_scale(rgb: np.ndarray) -> float:
    """How many times larger than given a page is read: coarse pages are enlarged to about
    `READ_PX_PER_MM` (at most twice). The trace network finds a 1 mm QRS better in twice as
    many pixels, and rows, pulses and peaks are followed to a finer pixel (val96: the 30 pages
    below 6.5 px/mm read twice as large 8.0 -> 10.3 dB; the 39 at 200 dpi read 1.5 times as large
    11.1 -> 11.8 dB; enlarging the network's map instead of its input gains nothing). A bilevel
    page (a fax) is read as given: enlarging it adds no grey levels, only blocks, and its dotted
    grid lines then join the trace (two of eight val96 faxes lost 6-8 dB)."""
    rough = rough_px_per_mm(rgb)
    if rough >= 0.8 * READ_PX_PER_MM:
        return 1.0
    grey = rgb.max(axis=2)
    bilevel = np.count_nonzero((grey > 40) & (grey < 215)) < 1e-3 * grey.size
    return 1.0 if bilevel else min(2.0, READ_PX_PER_MM / rough)


def read_rows(mask: np.ndarray, px_per_mm: float) -> list[RowTrace]:
    """Stage 2 on the trace pixels of an upright page: the rows and their traces."""
    trace, pulse_edges = trace_and_pulse_edges(mask, px_per_mm)
    return without_stray_outer_rows(follow_rows(trace, find_rows(trace, px_per_mm), px_per_mm, pulse_edges))


class Digitizer:
    """Load once, digitize many pages."""

    def __init__(self, fs: float = 500.0, mm_per_s: float | None = None, timing: str = "auto",
                 trace_weights: Path | None = TRACE_WEIGHTS, device: str = "cpu",
                 source_weights: Path | None = SOURCE_WEIGHTS, routing: dict[str, list[str]] | None = None,
                 label_weights: Path | None = LABEL_WEIGHTS) -> None:
        """`mm_per_s=None` reads the paper speed from the calibration pulses (25 mm/s when there
        are none, flagged); `trace_weights=None` (or a missing file) reads traces with the
        classical ink mask; `source_weights=None` (or a missing file) skips the source classifier
        and its preprocessing; `label_weights=None` (or a missing file) leaves the keypoints
        empty; `routing` overrides `configs/source.yaml`'s table; `device` runs
        the networks ("cpu", "cuda", "cuda:1")."""
        check_timing_mode(timing)  # before any page is read
        check_device(device)
        self.fs = fs
        self.mm_per_s = mm_per_s
        self.timing = timing
        self.trace_net = (TraceNet(trace_weights, device)
                          if trace_weights is not None and trace_weights.exists() else None)
        self.source_net = (SourceClassifier(source_weights, device)
                           if source_weights is not None and source_weights.exists() else None)
        self.label_net = LabelNet(label_weights, device) if label_weights is not None and label_weights.exists() else None
        self.routing = load_routing() if routing is None else routing

    def trace_mask(self, rgb: np.ndarray, max_side: int | None = None,
                   box: tuple[int, int, int, int] | None = None) -> np.ndarray:
        """Trace pixels of the page (only inside `box` when given; see `TraceNet.probability`)."""
        if self.trace_net is None:
            grid = measure_grid(rgb)
            return ink_mask(rgb, grid.px_per_mm if grid.found else rough_px_per_mm(rgb))
        x0, y0, x1, y1 = box or (0, 0, rgb.shape[1], rgb.shape[0])
        inside = self.trace_net.probability(rgb, max_side, box) > 0.5
        mask = np.zeros(rgb.shape[:2], bool)
        mask[y0:y1, x0:x1] = with_vertical_strokes(inside, rgb[y0:y1, x0:x1], rough_px_per_mm(rgb))
        return mask

    def digitize_file(self, path: Path, page: int = 1, pdf_dpi: float = PDF_DPI) -> DigitizeResult:
        start = time.perf_counter()
        loaded = load_page(path, page, pdf_dpi)
        result = self.digitize(loaded)
        result.seconds = {"load": time.perf_counter() - start - sum(result.seconds.values()), **result.seconds}
        return result

    def digitize(self, page: LoadedPage) -> DigitizeResult:
        seconds: dict[str, float] = {}
        flags: list[str] = []
        source, branches, prepared = None, [], page.rgb
        if self.source_net is not None:
            t = time.perf_counter()
            source = self.source_net.classify(page.rgb)
            branches = branches_for(source, self.routing)
            prepared = preprocess(page.rgb, branches)
            seconds["source"] = time.perf_counter() - t
        t = time.perf_counter()
        scale = reading_scale(prepared)
        if scale != 1.0:
            h, w = prepared.shape[:2]
            prepared = cv2.resize(prepared, (round(w * scale), round(h * scale)), interpolation=cv2.INTER_LINEAR)
        mask = self.trace_mask(prepared)
        seconds["trace"] = time.perf_counter() - t
        if self.trace_net is None:
            flags.append("trace network weights not installed: classical ink mask used")

        t = time.perf_counter()
        white = (255, 255, 255)
        frame = PageFrame.fit(mask, scale)
        rgb = frame.apply(prepared, border=white)
        seconds["align"] = time.perf_counter() - t

        t = time.perf_counter()
        fit, grid = rectify_grid(rgb)
        outline = None
        px_per_mm = grid.px_per_mm if grid is not None and grid.found else None  # None: no grid read
        if fit is not None:
            frame = frame.then(np.linalg.inv(fit.homography), fit.shape)
            rgb = frame.apply(prepared, border=white)
            # The page-wide period of the now even grid pins the scale more finely than the tiles.
            even = measure_grid(rgb)
            agrees = even.found and abs(even.px_per_mm / fit.px_per_mm - 1) < 0.02
            px_per_mm = even.px_per_mm if agrees else fit.px_per_mm
        # Searched with a black border round the tilted canvas: a white one would join the sheet.
        elif (outline := page_outline(frame.apply(prepared, border=(0, 0, 0)))) is not None:
            frame = frame.then(np.linalg.inv(outline.homography), outline.shape)
            rgb = frame.apply(prepared, border=white)
            flags.append("grid not rectified: perspective corrected from the sheet's outline")
            grid = measure_grid(rgb)  # a grid too faint for the tiles may show once the sheet is flat
            px_per_mm = grid.px_per_mm if grid.found else None
        elif px_per_mm is not None:
            flags.append("grid too faint to rectify: perspective not corrected")
        if (fit is not None or outline is not None) and px_per_mm is not None:
            # Once the page is a plane, the lines' bends (curl, creases, what the outline's
            # quadrilateral missed) are straightened by the lattice's local phase.
            warp = fit_warp(rgb, px_per_mm, ink=frame.apply(mask))
            if warp is not None and warp.explains_bending():
                frame = frame.bent(warp)
                rgb = frame.apply(prepared, border=white)
        mask = frame.apply(mask)
        guess = px_per_mm or rough_px_per_mm(rgb)
        masks = {half: upright(mask, 2 * half) for half in (False, True)}
        readings = {half: read_rows(masks[half], guess) for half in (False, True)}
        scores = {half: orientation_score(readings[half], guess) for half in (False, True)}
        labels_by_half: dict[bool, list[LeadLabel]] = {}
        if self.label_net is not None and abs(scores[True] - scores[False]) < 1.0:
            # The rows alone are unsure (no pulses, both ways a layout): the lead names read upright.
            for half in scores:
                labels_by_half[half] = self.label_net.find(upright(rgb, 2 * half), guess)
                scores[half] += labels_read_score(labels_by_half[half])
        frame.half_turn = max(scores, key=lambda k: scores[k])
        rows, coarse = readings[frame.half_turn], masks[frame.half_turn]
        seconds["grid+rows"] = time.perf_counter() - t
        if self.trace_net is not None and frame.turns != 0:
            # The network reads upright pages best: read a turned one again, the right way up.
            t = time.perf_counter()
            coarse = self.trace_mask(upright(rgb, 2 * frame.half_turn))
            rows = read_rows(coarse, guess)
            seconds["trace upright"] = time.perf_counter() - t
        labels = labels_by_half.get(frame.half_turn, [])
        names: list[tuple[float, float, int]] = []  # the lead names' ink is no trace
        baselines: list[float] = []
        if self.label_net is not None and rows:
            t = time.perf_counter()
            labels = labels or self.label_net.find(upright(rgb, 2 * frame.half_turn), guess)
            names = [(label.x, label.y, len(label.lead)) for label in labels]
            baselines = [float(np.nanmedian(row.y_px)) for row in rows if row.coverage > 0]
            lettered, coarse = coarse, without_lettering(coarse, names, baselines, guess)
            if (coarse != lettered).any():
                rows = read_rows(coarse, guess)
            seconds["labels"] = time.perf_counter() - t
        fine = None
        if self.trace_net is not None and rows and max(rgb.shape[:2]) > self.trace_net.MAX_SIDE:
            t = time.perf_counter()
            page_up = upright(rgb, 2 * frame.half_turn)
            fine = without_lettering(self.trace_mask(page_up, self.trace_net.FINE_SIDE, rows_box(rows, page_up.shape, guess)),
                                     names, baselines, guess)
            if infer_layout(rows) is None and infer_layout(found := read_rows(fine, guess)) is not None:
                rows = found  # the fine mask shows a layout the coarse one lost (a 300-dpi page is read coarse at half size)
            else:
                rows = refine_rows(rows, coarse, fine, guess)
            seconds["trace fine"] = time.perf_counter() - t

        t = time.perf_counter()
        longest = max((r.signal_px for r in rows), default=0)
        grid_found = px_per_mm is not None
        if px_per_mm is None:
            flags.append("grid not found: scale taken from the trace length, assuming 10 s at 25 mm/s")
            px_per_mm = longest / PAPER_TRACE_MM if longest else guess
        elif longest and not ROW_MM[0] <= longest / px_per_mm <= ROW_MM[1]:
            # A grid read at 10 or 15 mm for 5 mm (faint minor lines) makes rows implausibly short.
            flags.append(f"grid period ({px_per_mm:.2f} px/mm) disagrees with the trace length: "
                         "scale taken from the trace length, assuming 10 s at 25 mm/s")
            px_per_mm = longest / PAPER_TRACE_MM
        if rows and abs(px_per_mm / guess - 1) > RESCALE:
            # Rows were found at the scale guessed: closer than 7 of those mm, every other row was lost.
            rows = read_rows(coarse, px_per_mm)
            if fine is not None:
                rows = refine_rows(rows, coarse, fine, px_per_mm)
        layout = infer_layout(rows)
        if not rows:
            flags.append(NO_ECG)
        elif layout is None and not grid_found:  # neither paper nor lead rows: a photo of something else
            flags.append(f"{NO_ECG}: no grid and no lead layout ({len(rows)} trace-like rows)")
        elif layout is None:
            flags.append(f"layout not recognised ({len(rows)} rows found)")
        gain = gain_from_pulses(rows, px_per_mm)
        if gain is None:
            flags.append("calibration pulse not found: 10 mm/mV assumed")
            gain = 10.0
        speed = self.mm_per_s or speed_from_pulses(rows, px_per_mm)
        if speed is None:
            flags.append("paper speed not read from a calibration pulse: 25 mm/s assumed")
            speed = 25.0
        calibration = Calibration(px_per_mm, speed, gain)
        seconds["postprocess"] = time.perf_counter() - t
        if self.label_net is not None and rows and px_per_mm != guess:
            t = time.perf_counter()
            labels = self.label_net.find(upright(rgb, 2 * frame.half_turn), px_per_mm)
            seconds["labels"] += time.perf_counter() - t
        name_columns = label_columns(labels, px_per_mm)
        if (named := layout_by_names(layout, name_columns)) is None and layout is not None:
            flags.append(f"layout not recognised: {len(rows)} rows read ({layout}), but the lead names "
                         f"stand in {name_columns} column{'s' * (name_columns != 1)}")
        layout = named
        t = time.perf_counter()
        segments: list[PrintedSegment] = []
        timing: TimingDecision | None = None
        record: EcgRecord | None = None
        if layout is not None:
            rows = place_lead_ins(rows, labels, layout, calibration)
            hidden = under_bars(rows, fine if fine is not None else coarse, lead_starts(rows, layout, calibration), px_per_mm)
            segments = split_segments(rows, layout, calibration, self.fs, hidden=hidden)
            timing = infer_timing(segments, self.fs, self.timing)
            rhythm = [seg for seg in segments if seg.is_rhythm]
            printed = printed_strip_leads(labels, rows, segments)
            timing.rhythm_leads = [label or lead for label, lead in zip(printed, timing.rhythm_leads, strict=True)]
            for strip, lead in zip(rhythm, timing.rhythm_leads, strict=True):
                if lead:
                    strip.lead = lead
                else:
                    flags.append(f"rhythm strip lead not identified: {strip.lead} assumed")
            if timing.evidence != "user" and timing.margin < WEAK_EVIDENCE:
                flags.append(f"timing evidence weak ({timing.evidence}): columns placed {timing.convention}")
            record = assemble(segments, timing.offsets_s, self.fs)
            labels = name_by_layout(labels, rows, segments)
            if fit is None and (unlike := unlike_an_ecg(rows, record.quality, segments, self.fs)):
                flags.append(f"{NO_ECG}: {unlike}")
                layout, record = None, None
        if record is None:
            record = EcgRecord(np.full((12, int(10 * self.fs)), np.nan), fs=self.fs)
        low = [name for name, q in zip(LEAD_NAMES, record.quality, strict=True) if q < LOW_QUALITY]
        if low and layout is not None:
            flags.append("low confidence leads: " + ", ".join(low))
        record.provenance.update({"input": str(page.path), "page": str(page.page), "cardioscan": __version__,
                                  "layout": str(layout), "px_per_mm": f"{px_per_mm / scale:.4f}",
                                  "mm_per_mv": f"{gain:g}", "mm_per_s": f"{speed:g}",
                                  "trace_model": self.trace_net.version if self.trace_net else "classical ink mask",
                                  "preprocessing": ", ".join(branches) or "none"})
        if source is not None:
            record.provenance["source"] = f"{source.category} (p {source.probability:.2f}, {self.source_net.version})"
        if timing is not None:
            record.provenance["timing"] = f"{timing.convention} ({timing.evidence}, margin {timing.margin:.2f})"
            for seg, offset, confidence in zip(segments, timing.offsets_s, timing.confidence, strict=True):
                key = f"offset {seg.lead}{' rhythm' if seg.is_rhythm else ''}"
                record.provenance[key] = f"{offset:.3f} s (confidence {confidence:.2f})"
        seconds["postprocess"] += time.perf_counter() - t
        return DigitizeResult(record, page, layout, calibration, segments, timing, rows, frame, fit, outline, source,
                              branches, labels, flags, seconds)


# Below all three, rows read on a page without a grid are taken for something else than an ECG.
# 11 of 11 pictures that passed the layout check met all three (scikit-image's sample photos, text,
# a logo). Of val96 and the real photos, no page without a grid did (a screen photo met two), but a
# badly read stained page with a grid did: the grid's absence is the fourth condition.
ECG_ROW_COVERAGE = 0.9
ECG_QUALITY = 0.7
ECG_BEAT_REGULARITY = 0.6


def unlike_an_ecg(rows: list[RowTrace], quality: np.ndarray, segments: list[PrintedSegment], fs: float) -> str | None:
    """Why rows that fit a lead layout are still not an ECG, or None. Edges in a photo of something
    else can line up as rows, but they break off, read unsurely and beat no rhythm; an ECG's rows
    run unbroken and its QRS complexes repeat. Asked only of pages without a grid."""
    coverage = float(np.mean([row.coverage for row in rows]))
    confidence = float(np.mean(quality))
    regularity = beat_regularity(segments, fs)
    if coverage < ECG_ROW_COVERAGE and confidence < ECG_QUALITY and regularity < ECG_BEAT_REGULARITY:
        return (f"no grid, and the {len(rows)} rows read are broken ({coverage:.0%} inked), unsure "
                f"(quality {confidence:.2f}) and beat no regular rhythm ({regularity:.2f})")
    return None


def draw_overlay(result: DigitizeResult) -> np.ndarray:
    """The input with every followed trace drawn over it in green and every lead label found
    ringed in blue with the name it was read as, for a person to check."""
    out = cv2.cvtColor(result.page.rgb, cv2.COLOR_RGB2BGR)
    faded = cv2.addWeighted(out, 0.55, np.full_like(out, 255), 0.45, 0)
    thickness = max(2, round(max(out.shape[:2]) / 1200))
    for row in result.rows:
        xs = np.arange(len(row.y_px)) + row.x_start
        ok = np.isfinite(row.y_px)
        pts = result.frame.to_input(np.stack([xs[ok], row.y_px[ok]], axis=1))
        cv2.polylines(faded, [pts.astype(np.int32).reshape(-1, 1, 2)], False, (0, 170, 0), thickness, cv2.LINE_AA)
    for label in result.labels_in_input:
        centre = (round(label.x), round(label.y))
        cv2.circle(faded, centre, 4 * thickness, (200, 80, 0), thickness, cv2.LINE_AA)
        cv2.putText(faded, label.lead, (centre[0] + 5 * thickness, centre[1] - 5 * thickness), cv2.FONT_HERSHEY_SIMPLEX,
                    0.3 * thickness, (200, 80, 0), max(1, thickness // 2), cv2.LINE_AA)
    for i, flag in enumerate(result.flags):
        cv2.putText(faded, flag, (10, 30 + 28 * i), cv2.FONT_HERSHEY_SIMPLEX, 0.8, (0, 0, 200), 2, cv2.LINE_AA)
    return faded
