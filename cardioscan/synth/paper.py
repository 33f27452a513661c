"""Draw the undistorted page: paper, grid, text, calibration pulses and traces.

Coordinates are canonical page pixels, `px = mm * px_per_mm`, with pixel centres on whole
numbers as in OpenCV; every pixel coordinate in cardioscan follows that convention. Traces are drawn from the
very polylines that become the ground truth, with sub-pixel anti-aliasing, so reading
the ground truth back reproduces the signal.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import cache, lru_cache
from pathlib import Path

import cv2
import numpy as np
from PIL import Image, ImageDraw, ImageFont

from cardioscan.record import LEAD_INDEX
from cardioscan.synth.layout import PageLayout, Segment

GRID_COLOURS: dict[str, tuple[int, int, int]] = {
    "red": (225, 60, 60),
    "pink": (240, 150, 170),
    "orange": (240, 150, 70),
    "green": (90, 170, 110),
    "blue": (90, 140, 215),
    "grey": (150, 150, 150),
    "black": (40, 40, 40),
}
TRACE_COLOURS: dict[str, tuple[int, int, int]] = {"black": (15, 15, 15), "dark_blue": (20, 30, 110)}
_SUBPIXEL_SHIFT = 4  # cv2 drawing with 1/16-pixel precision


@dataclass
class PaperStyle:
    """Visual choices that do not change where anything is."""

    paper_rgb: tuple[int, int, int]
    grid: str | None  # key of GRID_COLOURS, or None for a page without a grid
    minor_lines: str  # "solid", "dotted" or "none"
    major_width_mm: float
    minor_width_mm: float
    grid_strength: float
    trace: str
    trace_width_px: float
    text_rgb: tuple[int, int, int]


def sample_style(rng: np.random.Generator, dpi: float) -> PaperStyle:
    grid = None if rng.random() < 0.06 else str(
        rng.choice(list(GRID_COLOURS), p=[0.4, 0.2, 0.12, 0.06, 0.06, 0.1, 0.06])
    )
    tint = rng.uniform(-12, 4, size=3) * (rng.random() < 0.4)
    paper = tuple(int(np.clip(250 + t, 0, 255)) for t in tint)
    trace = "black" if rng.random() < 0.8 else "dark_blue"
    return PaperStyle(
        paper_rgb=paper,
        grid=grid,
        minor_lines=str(rng.choice(["solid", "dotted", "none"], p=[0.65, 0.2, 0.15])),
        major_width_mm=float(rng.uniform(0.12, 0.35)),
        minor_width_mm=float(rng.uniform(0.05, 0.15)),
        grid_strength=float(rng.uniform(0.35, 1.0)),
        trace=trace,
        trace_width_px=float(rng.uniform(0.5, 3.0) * dpi / 200.0),
        text_rgb=TRACE_COLOURS[trace],
    )


@cache
def _font_files() -> dict[str, Path]:
    """TrueType fonts shipped inside matplotlib, so every machine renders the same text."""
    import matplotlib

    ttf = Path(matplotlib.get_data_path()) / "fonts" / "ttf"
    return {
        "sans": ttf / "DejaVuSans.ttf",
        "sans-bold": ttf / "DejaVuSans-Bold.ttf",
        "serif": ttf / "DejaVuSerif.ttf",
        "mono": ttf / "DejaVuSansMono.ttf",
        "condensed": ttf / "DejaVuSans-Oblique.ttf",
    }


@lru_cache(maxsize=256)
def font(name: str, size_px: int) -> ImageFont.FreeTypeFont:
    return ImageFont.truetype(str(_font_files()[name]), max(size_px, 6))


def _line_profile(n: int, positions: np.ndarray, half_width: float) -> np.ndarray:
    """Anti-aliased coverage along one axis of lines at sub-pixel `positions`."""
    centres = np.arange(n, dtype=np.float32)
    idx = np.searchsorted(positions, centres)
    left = positions[np.clip(idx - 1, 0, len(positions) - 1)]
    right = positions[np.clip(idx, 0, len(positions) - 1)]
    dist = np.minimum(np.abs(centres - left), np.abs(centres - right))
    return np.clip(half_width + 0.5 - dist, 0.0, 1.0).astype(np.float32)


def grid_alpha(layout: PageLayout, style: PaperStyle, px_per_mm: float, shape: tuple[int, int]) -> np.ndarray:
    """Coverage in [0, 1] of the printed grid, with majors every 5 mm and minors every 1 mm."""
    h, w = shape
    alpha = np.zeros(shape, np.float32)
    if style.grid is None:
        return alpha
    x0, x1 = layout.grid_x0_mm * px_per_mm, layout.grid_x1_mm * px_per_mm
    y0, y1 = layout.grid_y0_mm * px_per_mm, layout.grid_y1_mm * px_per_mm
    nx = int(round(layout.grid_x1_mm - layout.grid_x0_mm)) + 1
    ny = int(round(layout.grid_y1_mm - layout.grid_y0_mm)) + 1
    xs = (layout.grid_x0_mm + np.arange(nx)) * px_per_mm
    ys = (layout.grid_y0_mm + np.arange(ny)) * px_per_mm
    major_hw = max(style.major_width_mm * px_per_mm / 2, 0.35)
    minor_hw = max(style.minor_width_mm * px_per_mm / 2, 0.25)
    inside = np.zeros(shape, bool)
    inside[int(np.ceil(y0 - major_hw)) : int(np.floor(y1 + major_hw)) + 1,
           int(np.ceil(x0 - major_hw)) : int(np.floor(x1 + major_hw)) + 1] = True
    major_x = _line_profile(w, xs[::5], major_hw)
    major_y = _line_profile(h, ys[::5], major_hw)
    alpha = np.maximum(major_x[None, :], major_y[:, None])
    if style.minor_lines != "none":
        minor_x = _line_profile(w, xs, minor_hw) * 0.55
        minor_y = _line_profile(h, ys, minor_hw) * 0.55
        if style.minor_lines == "dotted":
            # Dots at every 1 mm crossing only, as on many thermal printers.
            alpha = np.maximum(alpha, minor_x[None, :] * minor_y[:, None] * 1.6)
        else:
            alpha = np.maximum(alpha, np.maximum(minor_x[None, :], minor_y[:, None]))
    return np.where(inside, alpha * style.grid_strength, 0.0).astype(np.float32)


def segment_polyline(
    segment: Segment, signals: np.ndarray, fs: float, layout: PageLayout, px_per_mm: float
) -> np.ndarray:
    """The (N, 2) canonical pixel polyline of one segment, one vertex per sample."""
    i0, i1 = int(round(segment.t_start * fs)), int(round(segment.t_end * fs))
    values = signals[LEAD_INDEX[segment.lead], i0:i1]
    t = np.arange(i0, i0 + len(values)) / fs
    x_mm = segment.x_mm + (t - segment.t_start) * layout.mm_per_s
    y_mm = segment.baseline_mm - values * layout.mm_per_mv
    return np.stack([x_mm, y_mm], axis=1) * px_per_mm


def pulse_polyline(layout: PageLayout, baseline_mm: float, px_per_mm: float) -> np.ndarray:
    """The 1 mV calibration pulse at a row start: 0.2 s wide, 1 mV tall, on a 1.5 mm foot each
    side, or with none where its falling edge runs into the trace (`pulse_joins_trace`)."""
    x0, w, h = layout.pulse_x_mm, 0.2 * layout.mm_per_s, layout.mm_per_mv
    pts_mm = [(x0, baseline_mm), (x0, baseline_mm - h), (x0 + w, baseline_mm - h), (x0 + w, baseline_mm)]
    if not layout.pulse_joins_trace:
        pts_mm = [(x0 - 1.5, baseline_mm), *pts_mm, (x0 + w + 1.5, baseline_mm)]
    return np.asarray(pts_mm, np.float64) * px_per_mm


def _draw_polyline(mask: np.ndarray, pts: np.ndarray, width_px: float) -> None:
    scale = 1 << _SUBPIXEL_SHIFT
    fixed = np.round(pts * scale).astype(np.int32).reshape(-1, 1, 2)
    thickness = max(1, int(round(width_px)))
    cv2.polylines(mask, [fixed], False, 255, thickness, cv2.LINE_AA, _SUBPIXEL_SHIFT)


def draw_ink(
    layout: PageLayout,
    style: PaperStyle,
    signals: np.ndarray,
    fs: float,
    px_per_mm: float,
    shape: tuple[int, int],
    header_lines: list[str],
    rng: np.random.Generator,
) -> tuple[np.ndarray, dict[str, list[float]], dict[str, np.ndarray]]:
    """Ink coverage (uint8) of traces, pulses, labels and text.

    Returns the mask, the centre of every drawn lead label, and every segment's polyline.
    """
    mask = np.zeros(shape, np.uint8)
    polylines: dict[str, np.ndarray] = {}
    for k, seg in enumerate(layout.segments):
        pts = segment_polyline(seg, signals, fs, layout, px_per_mm)
        polylines[f"{k}:{seg.lead}"] = pts
        _draw_polyline(mask, pts, style.trace_width_px)
    if layout.connect_segments:
        for a, b in zip(layout.segments, layout.segments[1:], strict=False):
            if a.row == b.row and not b.is_rhythm:
                pa = polylines[f"{layout.segments.index(a)}:{a.lead}"][-1]
                pb = polylines[f"{layout.segments.index(b)}:{b.lead}"][0]
                _draw_polyline(mask, np.stack([pa, pb]), style.trace_width_px)
    if layout.calibration_pulses:
        for baseline in layout.row_baselines_mm:
            _draw_polyline(mask, pulse_polyline(layout, baseline, px_per_mm), style.trace_width_px)
    if layout.pulse_joins_trace:  # from the pulse's foot to the row's first value
        for k, seg in enumerate(layout.segments):
            if seg.column == 0:
                foot = pulse_polyline(layout, seg.baseline_mm, px_per_mm)[-1]
                _draw_polyline(mask, np.stack([foot, polylines[f"{k}:{seg.lead}"][0]]), style.trace_width_px)
    if layout.separators:
        for seg in layout.segments:
            if seg.column > 0:
                x, y = seg.x_mm * px_per_mm, seg.baseline_mm * px_per_mm
                above, below = (reach * px_per_mm for reach in layout.separator_mm)
                _draw_polyline(mask, np.array([[x, y - above], [x, y + below]]),
                               max(1.5 * style.trace_width_px, layout.separator_width_mm * px_per_mm))

    image = Image.fromarray(mask)
    draw = ImageDraw.Draw(image)
    centres: dict[str, list[float]] = {}
    for k, label in enumerate(layout.labels):
        f = font(label.font, int(round(label.size_mm * px_per_mm)))
        x, y = label.x_mm * px_per_mm, label.y_mm * px_per_mm
        draw.text((x, y), label.lead, fill=255, font=f, anchor="mm")
        left, top, right, bottom = draw.textbbox((x, y), label.lead, font=f, anchor="mm")
        centres[f"{k}:{label.lead}"] = [(left + right) / 2.0, (top + bottom) / 2.0]
    text_font = font(str(rng.choice(["sans", "mono", "serif"])), int(round(rng.uniform(2.2, 3.6) * px_per_mm)))
    x_text = (layout.grid_x0_mm + rng.uniform(2, 10)) * px_per_mm
    y_text = (layout.grid_y0_mm + rng.uniform(1, 4)) * px_per_mm
    line_h = text_font.size * 1.25
    columns = max(1, int(np.ceil(len(header_lines) / 4)))
    col_w = (layout.grid_x1_mm - layout.grid_x0_mm) * px_per_mm / max(columns, 3)
    for i, line in enumerate(header_lines):
        draw.text((x_text + (i // 4) * col_w, y_text + (i % 4) * line_h), line, fill=255, font=text_font)
    if rng.random() < 0.25:
        _draw_qr_like(mask_image=image, rng=rng, px_per_mm=px_per_mm,
                      x_mm=layout.grid_x1_mm - rng.uniform(18, 40), y_mm=layout.grid_y0_mm + rng.uniform(1, 4))
    footer = f"{layout.mm_per_s:g} mm/s   {layout.mm_per_mv:g} mm/mV   0.05-150 Hz"
    draw.text((x_text, (layout.grid_y1_mm - 4) * px_per_mm), footer, fill=255, font=text_font)
    return np.asarray(image), centres, polylines


def _draw_qr_like(mask_image: Image.Image, rng: np.random.Generator, px_per_mm: float, x_mm: float,
                  y_mm: float) -> None:
    """A QR-code-like block (random modules with the three finder squares), as on many
    modern printouts: dense ink that must not be taken for trace."""
    n = 21
    modules = rng.random((n, n)) < 0.5
    finder = np.zeros((7, 7), bool)
    finder[[0, 6], :] = finder[:, [0, 6]] = True
    finder[2:5, 2:5] = True
    for r, c in ((0, 0), (0, n - 7), (n - 7, 0)):
        modules[r : r + 7, c : c + 7] = finder
    size_px = int(rng.uniform(14, 24) * px_per_mm)
    block = cv2.resize(modules.astype(np.uint8) * 255, (size_px, size_px), interpolation=cv2.INTER_NEAREST)
    mask_image.paste(Image.fromarray(block), (int(x_mm * px_per_mm), int(y_mm * px_per_mm)),
                     Image.fromarray(block))


def compose_page(grid: np.ndarray, ink: np.ndarray, style: PaperStyle) -> np.ndarray:
    """Paper, grid and ink blended into one RGB uint8 image (per channel: it is the hot path)."""
    grid_rgb = GRID_COLOURS[style.grid] if style.grid else style.paper_rgb
    a_ink = ink.astype(np.float32) * np.float32(min(1.0, style.trace_width_px) ** 0.5 / 255.0)
    channels = []
    for paper_c, grid_c, ink_c in zip(style.paper_rgb, grid_rgb, style.text_rgb, strict=True):
        c = grid * np.float32(grid_c - paper_c)
        c += np.float32(paper_c)
        c -= a_ink * (c - np.float32(ink_c))
        channels.append(c)
    return cv2.merge([np.clip(c, 0, 255).astype(np.uint8) for c in channels])
