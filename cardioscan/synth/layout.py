"""Where every lead sits on the page, in millimetres: the printed ECG's geometry.

A `PageLayout` is the single description the renderer draws from and the ground truth
is written from, so the two cannot disagree.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field

import numpy as np

PAGE_SIZES_MM: dict[str, tuple[float, float]] = {"letter": (279.4, 215.9), "a4": (297.0, 210.0)}

LAYOUTS: tuple[str, ...] = ("3x4_r1", "3x4_r3", "3x4", "6x2", "12x1")
TIMINGS: tuple[str, ...] = ("sequential", "simultaneous")

_COLUMNS: dict[str, list[list[str]]] = {
    "3x4": [["I", "II", "III"], ["aVR", "aVL", "aVF"], ["V1", "V2", "V3"], ["V4", "V5", "V6"]],
    "6x2": [["I", "II", "III", "aVR", "aVL", "aVF"], ["V1", "V2", "V3", "V4", "V5", "V6"]],
    "12x1": [["I", "II", "III", "aVR", "aVL", "aVF", "V1", "V2", "V3", "V4", "V5", "V6"]],
}


@dataclass(frozen=True)
class Segment:
    """One lead's trace on paper: `t_start`..`t_end` seconds of the record drawn from `x_mm`."""

    lead: str
    row: int
    column: int
    t_start: float
    t_end: float
    x_mm: float
    baseline_mm: float
    is_rhythm: bool = False


@dataclass(frozen=True)
class LabelSpec:
    lead: str
    x_mm: float
    y_mm: float
    size_mm: float
    font: str


@dataclass
class PageLayout:
    """Everything about the printed page that is fixed before ink meets paper."""

    paper: str
    width_mm: float
    height_mm: float
    layout: str
    timing: str
    mm_per_s: float
    mm_per_mv: float
    grid_x0_mm: float
    grid_y0_mm: float
    grid_x1_mm: float
    grid_y1_mm: float
    header_mm: float
    row_baselines_mm: list[float]
    segments: list[Segment]
    labels: list[LabelSpec] = field(default_factory=list)
    calibration_pulses: bool = True
    pulse_x_mm: float = 0.0
    separators: bool = True
    connect_segments: bool = False
    pulse_joins_trace: bool = False  # the pulse's falling edge runs into the trace, no foot and no gap (ecg-image-kit)
    separator_mm: tuple[float, float] = (2.5, 2.5)  # a separator's reach above and below the baseline
    separator_width_mm: float = 0.0  # a separator's stroke, at least 1.5 traces wide

    @property
    def n_rows(self) -> int:
        return len(self.row_baselines_mm)

    def to_dict(self) -> dict:
        return asdict(self)


def _columns_and_rhythm(layout: str, rng: np.random.Generator) -> tuple[list[list[str]], list[str]]:
    if layout.startswith("3x4"):
        if layout == "3x4_r1":
            rhythm = [str(rng.choice(["II", "II", "II", "II", "V1", "V5"]))]
        elif layout == "3x4_r3":
            rhythm = [["V1", "II", "V5"], ["II", "V1", "V5"], ["II", "aVF", "V5"]][int(rng.integers(3))]
        else:
            rhythm = []
        return _COLUMNS["3x4"], rhythm
    return _COLUMNS[layout], []


def sample_layout(
    rng: np.random.Generator,
    layout: str | None = None,
    paper: str | None = None,
    mm_per_s: float | None = None,
    mm_per_mv: float | None = None,
    timing: str | None = None,
    duration_s: float = 10.0,
) -> PageLayout:
    """Draw a plausible printed layout; any argument given is used as is."""
    layout = layout or str(rng.choice(LAYOUTS, p=[0.45, 0.15, 0.1, 0.2, 0.1]))
    if layout not in LAYOUTS:
        raise ValueError(f"unknown layout {layout!r}; valid: {', '.join(LAYOUTS)}")
    paper = paper or str(rng.choice(["letter", "a4"]))
    width_mm, height_mm = PAGE_SIZES_MM[paper]
    mm_per_s = mm_per_s or float(rng.choice([25.0, 50.0], p=[0.88, 0.12]))
    if mm_per_mv is None:
        # 20 mm/mV only where rows are tall enough; 12 rows are printed at 5 or 10.
        p_gain = [0.3, 0.7, 0.0] if layout == "12x1" else [0.08, 0.84, 0.08]
        mm_per_mv = float(rng.choice([5.0, 10.0, 20.0], p=p_gain))
    if timing is None:
        # 3x4 is mostly sequential; 6x2 is printed both ways (see issue 8).
        p_seq = {"6x2": 0.5}.get(layout, 0.85)
        timing = "sequential" if rng.random() < p_seq else "simultaneous"
    if layout == "12x1":
        timing = "simultaneous"

    # The printed time is fixed by the machine: 10 s at 25 mm/s, 5 s at 50 mm/s (250 mm of
    # trace); margins, grid extent and the calibration pulse share what room is left.
    total_s = min(duration_s, 250.0 / mm_per_s)
    trace_mm = total_s * mm_per_s
    calibration_pulses = rng.random() < 0.85
    pulse_block = 0.2 * mm_per_s + float(rng.uniform(2, 5)) if calibration_pulses else 0.0
    grid_x0 = float(rng.uniform(2, 10))
    grid_x1 = grid_x0 + 5.0 * np.floor((width_mm - float(rng.uniform(2, 10)) - grid_x0) / 5.0)
    room = grid_x1 - grid_x0 - trace_mm - pulse_block
    if room < 2.0:
        grid_x0 = 2.0
        grid_x1 = grid_x0 + 5.0 * np.floor((width_mm - 4.0) / 5.0)
        room = grid_x1 - grid_x0 - trace_mm - pulse_block
    pulse_x = grid_x0 + float(rng.uniform(0.5, max(0.6, room - 0.5)))
    trace_x0 = pulse_x + pulse_block
    margin = float(rng.uniform(3, 12))
    header = float(rng.uniform(18, 45)) if rng.random() < 0.9 else float(rng.uniform(5, 12))
    grid_y0 = margin + (header if rng.random() < 0.3 else float(rng.uniform(0, 4)))
    footer = float(rng.uniform(6, 18))
    grid_y1 = height_mm - margin - float(rng.uniform(0, 4))
    grid_y1 = grid_y0 + 5.0 * np.floor((grid_y1 - grid_y0) / 5.0)

    columns, rhythm = _columns_and_rhythm(layout, rng)
    n_cols = len(columns)
    n_rows = len(columns[0]) + len(rhythm)
    col_s = total_s / n_cols
    col_mm = col_s * mm_per_s
    rhythm_s = total_s

    top = grid_y0 + (header if grid_y0 < margin + header else 0.0) + 8.0
    bottom = grid_y1 - footer
    row_pitch = (bottom - top) / n_rows
    baselines = [top + row_pitch * (r + 0.5) for r in range(n_rows)]

    segments: list[Segment] = []
    for c, leads in enumerate(columns):
        t0 = c * col_s if timing == "sequential" else 0.0
        for r, lead in enumerate(leads):
            segments.append(
                Segment(lead, r, c, t0, t0 + col_s, trace_x0 + c * col_mm, baselines[r])
            )
    for k, lead in enumerate(rhythm):
        r = len(columns[0]) + k
        segments.append(Segment(lead, r, 0, 0.0, rhythm_s, trace_x0, baselines[r], is_rhythm=True))

    labels: list[LabelSpec] = []
    if rng.random() < 0.93:
        size = float(rng.uniform(2.5, 5.0))
        font = str(rng.choice(["sans", "sans-bold", "serif", "mono", "condensed"]))
        dx = float(rng.uniform(0.5, 3.0))
        # Above the baseline or below it, as different machines do.
        dy = float(rng.choice([-1, 1])) * float(rng.uniform(3.0, max(3.5, 0.3 * row_pitch)))
        for s in segments:
            if rng.random() < 0.96:  # now and then one label is missing or unreadable
                labels.append(LabelSpec(s.lead, s.x_mm + dx + size, s.baseline_mm + dy, size, font))

    separators = rng.random() < 0.6
    connect_segments = rng.random() < 0.3
    # Some printers draw the trace on from the pulse's falling edge (ecg-image-kit, the real photos).
    # Drawn from a child generator, which leaves `rng`'s stream and so every seed's other choices as they were.
    pulse_joins_trace = calibration_pulses and rng.spawn(1)[0].random() < 0.35
    if pulse_joins_trace:
        pulse_x = trace_x0 - 0.2 * mm_per_s
    # Some printers mark a column's start with a bold bar (the real photos: 6-8 mm tall, 0.6-0.9 mm wide).
    bars = rng.spawn(1)[0]
    bold = bars.random() < 0.5
    separator_mm = (float(bars.uniform(2.5, 4.5)), float(bars.uniform(2.5, 4.5))) if bold else (2.5, 2.5)
    separator_width_mm = float(bars.uniform(0.5, 1.0)) if bold else 0.0
    return PageLayout(
        paper=paper,
        width_mm=width_mm,
        height_mm=height_mm,
        layout=layout,
        timing=timing,
        mm_per_s=mm_per_s,
        mm_per_mv=mm_per_mv,
        grid_x0_mm=grid_x0,
        grid_y0_mm=grid_y0,
        grid_x1_mm=float(grid_x1),
        grid_y1_mm=float(grid_y1),
        header_mm=header,
        row_baselines_mm=baselines,
        segments=segments,
        labels=labels,
        calibration_pulses=calibration_pulses,
        pulse_x_mm=pulse_x,
        separators=separators,
        connect_segments=connect_segments,
        pulse_joins_trace=pulse_joins_trace,
        separator_mm=separator_mm,
        separator_width_mm=separator_width_mm,
    )
