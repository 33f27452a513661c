"""Render one synthetic paper ECG with its complete ground truth."""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np

from cardioscan.record import LEAD_INDEX
from cardioscan.synth.degrade import (
    SOURCE_CATEGORIES,
    apply_paper_conditions,
    background,
    plan_categories,
    sample_capture,
)
from cardioscan.synth.groundtruth import MAP_STEP, PageTruth
from cardioscan.synth.layout import sample_layout
from cardioscan.synth.paper import compose_page, draw_ink, grid_alpha, pulse_polyline, sample_style
from cardioscan.synth.signals import RENDER_FS, sample_signals

_MACHINES = ("MAC 5500", "CardioSoft", "PageWriter TC70", "ELI 250", "CP 150", "AT-102", "Cardiovit", "ECG-1250")
_STATEMENTS = ("Sinus rhythm", "Normal ECG", "Left axis deviation", "Nonspecific T wave abnormality",
               "Atrial fibrillation", "Right bundle branch block", "Borderline ECG", "ST elevation, consider injury",
               "Sinus bradycardia", "Sinus tachycardia", "Possible left ventricular hypertrophy")


@dataclass
class RenderOptions:
    """What to render; `None` means sample it."""

    category: str | None = None
    layout: str | None = None
    dpi: float | None = None
    timing: str | None = None
    records: list[Path] = field(default_factory=list)
    p_real: float = 0.5


def _header_lines(rng: np.random.Generator, layout_mm_per_s: float, layout_mm_per_mv: float) -> list[str]:
    pid = int(rng.integers(10**5, 10**7))
    hr = int(rng.integers(45, 160))
    lines = [
        f"ID: {pid:07d}",
        f"Age: {int(rng.integers(18, 95))} yrs   Sex: {rng.choice(['Male', 'Female'])}",
        f"Date: {int(rng.integers(1985, 2024))}-{int(rng.integers(1, 13)):02d}-{int(rng.integers(1, 29)):02d}"
        f" {int(rng.integers(0, 24)):02d}:{int(rng.integers(0, 60)):02d}",
        f"Vent rate {hr} bpm   PR {int(rng.integers(110, 220))} ms   QRS {int(rng.integers(70, 160))} ms",
        f"QT/QTc {int(rng.integers(320, 460))}/{int(rng.integers(380, 500))} ms",
        f"P-R-T axes {int(rng.integers(-30, 90))} {int(rng.integers(-60, 120))} {int(rng.integers(-30, 90))}",
        str(rng.choice(_STATEMENTS)),
        str(rng.choice(_STATEMENTS)),
        f"{rng.choice(_MACHINES)}   {layout_mm_per_s:g} mm/s  {layout_mm_per_mv:g} mm/mV",
    ]
    return lines[: int(rng.integers(3, len(lines) + 1))]


def _sample_dpi(rng: np.random.Generator, capture: str) -> float:
    if capture == "fax":
        return float(rng.uniform(100, 150))
    return float(rng.choice([100, 150, 200, 250, 300], p=[0.1, 0.2, 0.4, 0.15, 0.15]))


def render_page(seed: int, options: RenderOptions | None = None) -> tuple[np.ndarray, PageTruth]:
    """An RGB uint8 image and its ground truth, a pure function of `seed` and `options`."""
    options = options or RenderOptions()
    rng = np.random.default_rng(seed)
    category = options.category or str(rng.choice(SOURCE_CATEGORIES))
    capture_kind, conditions = plan_categories(rng, category)
    dpi = options.dpi or _sample_dpi(rng, capture_kind)
    px_per_mm = dpi / 25.4

    source = sample_signals(rng, options.records, p_real=options.p_real)
    layout = sample_layout(rng, layout=options.layout, timing=options.timing)
    style = sample_style(rng, dpi)
    page_shape = (int(round(layout.height_mm * px_per_mm)), int(round(layout.width_mm * px_per_mm)))

    grid = grid_alpha(layout, style, px_per_mm, page_shape)
    ink, label_centres, polylines = draw_ink(
        layout, style, source.signals, RENDER_FS, px_per_mm, page_shape,
        _header_lines(rng, layout.mm_per_s, layout.mm_per_mv), rng,
    )
    page = compose_page(grid, ink, style)
    page = apply_paper_conditions(rng, page, conditions, px_per_mm)

    capture = sample_capture(rng, capture_kind, page_shape, px_per_mm, conditions)
    warp = capture.warp
    if capture.with_background:
        bg = background(rng, warp.out_shape)
    else:  # scanner lid white, copier lid black, monitor bezel dark
        bg = np.full((*warp.out_shape, 3), {"photocopy": 30, "screen_photo": 25}.get(capture_kind, 255), np.uint8)
    if warp.displacement is None and np.allclose(warp.homography, np.eye(3)) and warp.out_shape == page_shape:
        image = page
    else:
        image, _ = warp.apply(page, bg)
    image = capture.effects(rng, image)

    # Ground truth in image pixels.
    traces = [warp.forward(pts) for pts in polylines.values()]
    pulses = ([warp.forward(pulse_polyline(layout, b, px_per_mm)) for b in layout.row_baselines_mm]
              if layout.calibration_pulses else [])
    keypoints = {k: warp.forward(np.asarray([xy]))[0].tolist() for k, xy in label_centres.items()}
    trace_starts = {k: t[0].tolist() for k, t in zip(polylines, traces, strict=True)}
    h_img, w_img = warp.out_shape
    cmm = warp.inverse_coarse(MAP_STEP) / px_per_mm
    off_page = (cmm[..., 0] < 0) | (cmm[..., 1] < 0) | (cmm[..., 0] > layout.width_mm) | (cmm[..., 1] > layout.height_mm)
    cmm[off_page] = np.nan
    mm_from_px = np.diag([1 / px_per_mm, 1 / px_per_mm, 1.0])
    image_to_page_mm = mm_from_px @ np.linalg.inv(warp.homography)

    shown = np.full_like(source.signals, np.nan)
    for seg in layout.segments:
        i0, i1 = int(round(seg.t_start * RENDER_FS)), int(round(seg.t_end * RENDER_FS))
        shown[LEAD_INDEX[seg.lead], i0:i1] = source.signals[LEAD_INDEX[seg.lead], i0:i1]

    meta = {
        "format": "cardioscan-synth/1",
        "seed": seed,
        "source_category": category,
        "capture": capture_kind,
        "paper_conditions": conditions,
        "signal_origin": source.origin,
        "fs": RENDER_FS,
        "dpi": dpi,
        "px_per_mm": px_per_mm,
        "mm_per_s": layout.mm_per_s,
        "mm_per_mv": layout.mm_per_mv,
        "layout_name": layout.layout,
        "timing": layout.timing,
        "paper": layout.paper,
        "page_size_mm": [layout.width_mm, layout.height_mm],
        "image_size": [w_img, h_img],
        "rotation": warp.rotation * 90,
        "nonlinear_warp": warp.displacement is not None,
        "homography_page_px_to_image": warp.homography.tolist(),
        "homography_image_to_page_mm": image_to_page_mm.tolist(),
        "keypoints": keypoints,
        "keypoints_page_mm": {k: [xy[0] / px_per_mm, xy[1] / px_per_mm] for k, xy in label_centres.items()},
        "trace_starts": trace_starts,
        "style": asdict(style),
        "layout": layout.to_dict(),
    }
    truth = PageTruth(meta, source.signals, shown, cmm.astype(np.float32), traces, pulses)
    return image, truth


def render_to_files(seed: int, stem: Path, options: RenderOptions | None = None, image_format: str = "auto") -> Path:
    image, truth = render_page(seed, options)
    return truth.save(stem, image, image_format)
