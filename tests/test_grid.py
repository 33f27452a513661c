"""The grid stage on the shipped example seen as a tilted phone sees it."""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np
import pytest

from cardioscan import grid
from cardioscan.grid import (
    LINE_MM,
    _fine_detail,
    _thin_lines,
    fit_warp,
    lattice_period,
    measure_grid,
    rectify_grid,
)
from cardioscan.io.images import load_page
from cardioscan.synth.groundtruth import PageTruth

EXAMPLE = Path(__file__).resolve().parents[1] / "examples" / "ptbxl_HR06008_clean"


def keystone(shape: tuple[int, int], squeeze: float) -> np.ndarray:
    """The homography of a camera tilted back: the top edge `squeeze` narrower than the bottom."""
    h, w = shape
    src = np.float32([[0, 0], [w, 0], [w, h], [0, h]])
    dst = np.float32([[squeeze * w / 2, 0], [w - squeeze * w / 2, 0], [w, h], [0, h]])
    return cv2.getPerspectiveTransform(src, dst)


def _distortion_mm(points: np.ndarray, paper_mm: np.ndarray) -> float:
    """RMS (mm) left after the best scale + translation onto the paper: a square-on page has none."""
    design = np.column_stack([paper_mm, np.ones(len(paper_mm))])
    coef, *_ = np.linalg.lstsq(design, points, rcond=None)
    scale = float(np.sqrt(abs(np.linalg.det(coef[:2]))))
    return float(np.sqrt(np.mean(np.sum((design @ coef - points) ** 2, axis=1)))) / scale


def test_rectification_undoes_perspective() -> None:
    truth = PageTruth.load(EXAMPLE)
    rgb = load_page(EXAMPLE.with_suffix(".png")).rgb
    tilt = keystone(rgb.shape[:2], 0.15)
    seen = cv2.warpPerspective(rgb, tilt, rgb.shape[1::-1], borderValue=(255, 255, 255))
    fit, _ = rectify_grid(seen)
    assert fit is not None
    # Grid intersections across the page, on paper (mm) -> the photo -> the rectified page.
    to_image = np.linalg.inv(np.array(truth.meta["homography_image_to_page_mm"]))
    xs, ys = np.meshgrid(np.arange(20, 260, 20.0), np.arange(30, 200, 20.0))
    paper = np.stack([xs.ravel(), ys.ravel()], axis=1)[:, None, :]
    photo = cv2.perspectiveTransform(cv2.perspectiveTransform(paper, to_image), tilt)
    before, after = (_distortion_mm(points[:, 0, :], paper[:, 0, :])
                     for points in (photo, cv2.perspectiveTransform(photo, np.linalg.inv(fit.homography))))
    assert before > 2.0
    assert after < 0.3
    assert abs(fit.px_per_mm / truth.meta["px_per_mm"] - 1) < 0.1  # a scale near the bottom edge's


def test_square_scan_is_left_square_and_scale_is_exact() -> None:
    truth = PageTruth.load(EXAMPLE)
    rgb = load_page(EXAMPLE.with_suffix(".png")).rgb
    fit, _ = rectify_grid(rgb)
    assert fit is not None
    assert np.allclose(fit.homography[2, :2], 0.0, atol=1e-6)  # no perspective invented
    assert abs(measure_grid(rgb).px_per_mm / truth.meta["px_per_mm"] - 1) < 0.002


def test_blurred_lines_are_read_at_5_mm_not_at_10() -> None:
    """A soft photo or a copy of a copy flattens the 5 mm autocorrelation peak until 10 mm
    looks as clear; the tiles' vote still finds the 5 mm lattice."""
    truth = PageTruth.load(EXAMPLE)
    blurred = cv2.GaussianBlur(load_page(EXAMPLE.with_suffix(".png")).rgb, (0, 0), 2.0)
    px_per_mm = lattice_period(blurred)
    assert px_per_mm is not None and abs(px_per_mm / truth.meta["px_per_mm"] - 1) < 0.01
    fit, _ = rectify_grid(blurred)
    assert fit is not None and abs(fit.px_per_mm / truth.meta["px_per_mm"] - 1) < 0.01


def bend(shape: tuple[int, int], px_per_mm: float, amplitude_mm: float) -> tuple[np.ndarray, np.ndarray]:
    """A smooth curl: displacement fields (px) that push the paper seen at (x, y) by up to
    `amplitude_mm`, varying over ten centimetres as a curled or creased sheet does."""
    h, w = shape
    ys, xs = np.mgrid[0:h, 0:w].astype(np.float32) / px_per_mm
    dx = amplitude_mm * np.sin(2 * np.pi * ys / 120.0 + 0.3) * np.cos(2 * np.pi * xs / 200.0)
    dy = amplitude_mm * np.sin(2 * np.pi * xs / 150.0)
    return (dx * px_per_mm).astype(np.float32), (dy * px_per_mm).astype(np.float32)


def curled(rgb: np.ndarray, dx: np.ndarray, dy: np.ndarray) -> np.ndarray:
    """The page as seen bent by `bend`'s fields: the paper at p is seen near p + d(p), so the
    picture at q shows the page at q - d(q)."""
    h, w = rgb.shape[:2]
    xs, ys = np.meshgrid(np.arange(w, dtype=np.float32), np.arange(h, dtype=np.float32))
    return cv2.remap(rgb, xs - dx, ys - dy, cv2.INTER_LINEAR, borderValue=(255, 255, 255))


def test_warp_recovers_a_curl_and_leaves_flat_paper_alone() -> None:
    """The lattice's local phase says where each 5 mm line is: a page bent by up to 1.5 mm
    is straightened to a fraction of that, and a flat page is not bent at all."""
    truth = PageTruth.load(EXAMPLE)
    rgb = load_page(EXAMPLE.with_suffix(".png")).rgb
    px_per_mm = truth.meta["px_per_mm"]
    flat = fit_warp(rgb, px_per_mm)
    assert flat is None or not flat.explains_bending()

    dx, dy = bend(rgb.shape[:2], px_per_mm, 1.5)
    bent = curled(rgb, dx, dy)
    warp = fit_warp(bent, px_per_mm)
    assert warp is not None and warp.explains_bending()
    assert _warp_error_mm(warp, dx, dy, truth) < 0.2


def _warp_error_mm(warp: grid.GridWarp, dx: np.ndarray, dy: np.ndarray, truth: PageTruth) -> float:
    """RMS (mm) by which the warp's displacement misses `bend`'s at the grid's points (up to a
    common shift, which no lattice can tell); the bend is checked to be real, over 1 mm RMS."""
    px_per_mm = truth.meta["px_per_mm"]
    layout = truth.meta["layout"]
    gx, gy = np.meshgrid(np.arange(layout["grid_x0_mm"] + 10, layout["grid_x1_mm"] - 10, 5.0),
                         np.arange(layout["grid_y0_mm"] + 10, layout["grid_y1_mm"] - 10, 5.0))
    points = np.stack([gx.ravel(), gy.ravel()], axis=1) * px_per_mm
    found = (warp.displace(points) - points) / px_per_mm
    true = np.stack([dx[points[:, 1].astype(int), points[:, 0].astype(int)],
                     dy[points[:, 1].astype(int), points[:, 0].astype(int)]], axis=1) / px_per_mm
    error = (found - found.mean(axis=0)) - (true - true.mean(axis=0))
    assert np.sqrt(np.mean(np.sum(true**2, axis=1))) > 1.0
    return float(np.sqrt(np.mean(np.sum(error**2, axis=1))))


def test_the_warp_reads_thin_lines_and_not_a_shadows_edge() -> None:
    """A fold's shadow is a step in brightness; the lines are thin. The warp's signal keeps the
    lines and drops the step, where a high-pass (the tiles' signal) answers the step as strongly
    as a line, a stroke that would pull the lines' phase (real photos of folded sheets)."""
    signal = np.zeros((60, 400), np.float32)  # at 4 px/mm, the 5 mm period 20 px
    signal[:, 200:] += 60.0  # the shadow's edge at x = 200
    signal[:, 100] += 60.0  # a 0.25 mm line in the light...
    signal[:, 300] += 60.0  # ...and one in the shadow

    def line_and_edge(read: np.ndarray) -> tuple[float, float]:
        base = np.median(read[30, 20:80])
        return min(read[30, 100], read[30, 300]) - base, np.abs(read[30, 190:210] - base).max()

    line, edge = line_and_edge(_thin_lines(signal, LINE_MM * 4.0, 20.0))
    assert edge < 0.05 * line
    line, edge = line_and_edge(_fine_detail(signal, 20.0))
    assert edge > 0.5 * line


def grey_grid_on_a_pink_jpeg(grey: np.ndarray) -> np.ndarray:
    """A grey-lined page tinted pink and saved as a JPEG: its colour makes saturation the
    guessed grid signal, but the JPEG's coarse chroma blurs the lines away there."""
    pink = np.clip(grey * np.float32([1.0, 0.85, 0.88]), 0, 255).astype(np.uint8)
    jpeg = cv2.imdecode(cv2.imencode(".jpg", pink[..., ::-1], [cv2.IMWRITE_JPEG_QUALITY, 70])[1], cv2.IMREAD_COLOR)
    seen = np.ascontiguousarray(jpeg[..., ::-1])
    assert grid.grid_kind(seen) == "saturation"
    return seen


def test_grey_grid_on_a_tinted_sheet_is_read_by_its_darkness(monkeypatch: pytest.MonkeyPatch) -> None:
    """Grey lines on a pink JPEG sheet: the lines' darkness shows the lattice on every tile,
    and the perspective is read from it."""
    truth = PageTruth.load(EXAMPLE)
    grey = cv2.cvtColor(cv2.cvtColor(load_page(EXAMPLE.with_suffix(".png")).rgb, cv2.COLOR_RGB2GRAY), cv2.COLOR_GRAY2RGB)
    seen = grey_grid_on_a_pink_jpeg(grey)
    monkeypatch.setattr(grid, "lattice_period", lambda rgb: truth.meta["px_per_mm"])  # the period is not what is tested
    fit, _ = rectify_grid(seen)
    assert fit is not None and fit.tiles > 150
    assert abs(fit.px_per_mm / truth.meta["px_per_mm"] - 1) < 0.01


def test_the_warp_reads_the_lines_where_their_phase_is_steadier() -> None:
    """The same pink JPEG sheet, curled: by colour the lattice's phase is noise, by darkness it
    is steady, and the warp follows the darkness to straighten the curl as well as on the grey
    page itself (0.24 mm off, the traces' darkness pulling a little; 1.34 mm by colour)."""
    truth = PageTruth.load(EXAMPLE)
    grey = cv2.cvtColor(cv2.cvtColor(load_page(EXAMPLE.with_suffix(".png")).rgb, cv2.COLOR_RGB2GRAY), cv2.COLOR_GRAY2RGB)
    dx, dy = bend(grey.shape[:2], truth.meta["px_per_mm"], 1.5)
    warp = fit_warp(grey_grid_on_a_pink_jpeg(curled(grey, dx, dy)), truth.meta["px_per_mm"])
    assert warp is not None and warp.explains_bending()
    assert _warp_error_mm(warp, dx, dy, truth) < 0.3
