"""The renderer's ground truth is right, not merely present."""

from __future__ import annotations

import hashlib

import cv2
import numpy as np
import pytest

from cardioscan.metrics import challenge2024_snr
from cardioscan.synth.dataset import generate
from cardioscan.synth.groundtruth import (
    PageTruth,
    grid_line_index_maps,
    row_trace_masks,
    signal_from_polylines,
)
from cardioscan.synth.layout import LAYOUTS, sample_layout
from cardioscan.synth.paper import pulse_polyline
from cardioscan.synth.render import RenderOptions, render_page


def _readback_snr(truth: PageTruth) -> float:
    est = signal_from_polylines(truth)
    shown = ~np.isnan(truth.shown)
    snr = challenge2024_snr(np.where(shown, truth.signals, 0.0), np.where(shown, est, 0.0))
    return float(np.mean(snr[0]))


@pytest.mark.parametrize("layout", LAYOUTS)
def test_polylines_read_back_to_the_signal_on_clean_pages(layout: str) -> None:
    _, truth = render_page(11, RenderOptions(category="clean", layout=layout, dpi=150))
    assert _readback_snr(truth) >= 40.0


def test_some_printers_run_the_pulse_into_the_trace() -> None:
    """As ecg-image-kit prints (the real photos), the pulse's falling edge stands where the trace
    starts, with no foot before the pulse or gap after it; the other pages keep both."""
    rng = np.random.default_rng(0)
    layouts = [sample_layout(rng) for _ in range(60)]
    joined = [page for page in layouts if page.pulse_joins_trace]
    apart = [page for page in layouts if page.calibration_pulses and not page.pulse_joins_trace]
    assert joined and apart
    for page in joined:
        pulse = pulse_polyline(page, page.row_baselines_mm[0], 1.0)
        assert len(pulse) == 4 and pulse[-1][0] == pytest.approx(min(seg.x_mm for seg in page.segments))
    for page in apart:
        assert min(seg.x_mm for seg in page.segments) - (page.pulse_x_mm + 0.2 * page.mm_per_s) >= 2.0


def test_some_printers_mark_column_starts_with_bold_bars() -> None:
    """About half the pages with separators draw them as the real photos' printer does: 5-9 mm tall
    and 0.5-1 mm wide, where the others draw a thin 5 mm tick."""
    rng = np.random.default_rng(0)
    marked = [page for page in (sample_layout(rng) for _ in range(80)) if page.separators]
    bold = [page for page in marked if page.separator_width_mm > 0]
    assert 0.3 < len(bold) / len(marked) < 0.7
    for page in bold:
        assert 5.0 <= sum(page.separator_mm) <= 9.0 and 0.5 <= page.separator_width_mm <= 1.0
    assert all(page.separator_mm == (2.5, 2.5) for page in marked if page not in bold)


@pytest.mark.parametrize("category", ["phone_photo", "rotated_jpeg", "colour_scan"])
def test_polylines_read_back_through_the_homography(category: str) -> None:
    _, truth = render_page(5, RenderOptions(category=category, dpi=120))
    if truth.meta["nonlinear_warp"]:
        pytest.skip("wrinkled page: the homography is only the projective part")
    assert _readback_snr(truth) >= 40.0


@pytest.mark.parametrize("seed", range(4))
def test_homography_maps_keypoints_to_their_canonical_place(seed: int) -> None:
    _, truth = render_page(seed, RenderOptions(category=["phone_photo", "rotated_jpeg", "fax", "clean"][seed], dpi=120))
    if not truth.keypoints:
        pytest.skip("page printed without lead labels")
    names = sorted(truth.keypoints)
    img = np.array([truth.keypoints[k] for k in names], np.float64)
    mm = cv2.perspectiveTransform(img.reshape(-1, 1, 2), truth.image_to_page_mm).reshape(-1, 2)
    expected = np.array([truth.meta["keypoints_page_mm"][k] for k in names])
    error_px = np.abs(mm - expected).max() * truth.meta["px_per_mm"]
    assert error_px < 1.0


def test_rotation_class_matches_the_picture() -> None:
    image, truth = render_page(3, RenderOptions(category="rotated_jpeg", dpi=100))
    w, h = truth.meta["page_size_mm"]
    portrait = image.shape[0] > image.shape[1]
    assert portrait == (truth.meta["rotation"] in (90, 270))
    assert truth.meta["rotation"] in (0, 90, 180, 270)
    assert w > h


def test_grid_maps_agree_with_the_rendered_grid() -> None:
    options = RenderOptions(category="clean", layout="3x4", dpi=200)
    for seed in range(20):
        image, truth = render_page(seed, options)
        if truth.meta["style"]["grid"] == "red":
            break
    else:
        pytest.fail("no red-grid page in 20 seeds")
    v_idx, h_idx, dist = grid_line_index_maps(truth, image.shape[:2])
    redness = image[..., 0].astype(float) - image[..., 1].astype(float)
    on_line = dist < 0.08
    between = (dist > 0.4) & (dist < 2.0) & (v_idx >= 0)
    assert redness[on_line].mean() > redness[between].mean() + 20
    assert v_idx.max() >= 40 and h_idx.max() >= 25  # a landscape page has ~50 x 35 major lines


def test_shown_signals_are_lead_consistent_and_nan_off_paper() -> None:
    _, truth = render_page(2, RenderOptions(category="clean", layout="3x4", timing="sequential", dpi=100))
    s = truth.signals
    np.testing.assert_allclose(s[2], s[1] - s[0], atol=1e-9)
    np.testing.assert_allclose(s[3], -(s[0] + s[1]) / 2, atol=1e-9)
    np.testing.assert_allclose(s[4], s[0] - s[1] / 2, atol=1e-9)
    np.testing.assert_allclose(s[5], s[1] - s[0] / 2, atol=1e-9)
    shown = ~np.isnan(truth.shown)
    # 3x4 sequential: column k shows [2.5k, 2.5k + 2.5) s; V1 heads column 2.
    assert shown[6, 2500:3750].all() and not shown[6, :2500].any() and not shown[6, 3750:].any()
    assert shown[0, :1250].all() and not shown[0, 1250:].any()


def test_same_seed_gives_identical_files(tmp_path) -> None:
    a = generate(3, tmp_path / "a", seed=7, categories=["phone_photo", "wrinkled", "fax"])
    b = generate(3, tmp_path / "b", seed=7, categories=["phone_photo", "wrinkled", "fax"])
    for pa, pb in zip(a, b, strict=True):
        for suffix in (pa.suffix, ".npz", ".json"):
            da = hashlib.sha256(pa.with_suffix(suffix).read_bytes()).hexdigest()
            db = hashlib.sha256(pb.with_suffix(suffix).read_bytes()).hexdigest()
            assert da == db, suffix
    truth = PageTruth.load(a[0].with_suffix(""))
    assert truth.meta["source_category"] == "phone_photo"
    assert len(truth.traces) == len(truth.meta["layout"]["segments"])


def test_row_masks_cover_each_rows_trace_ink() -> None:
    image, truth = render_page(4, RenderOptions(category="clean", layout="3x4_r1", dpi=150))
    masks = row_trace_masks(truth, image.shape[:2])
    assert masks.shape[0] == 4
    dark = image.max(axis=2) < 120
    for row in masks:
        on = row > 127
        assert on.sum() > 1000 and dark[on].mean() > 0.3  # the mask sits on printed ink
    assert not (masks[0] & masks[3]).any()  # rows are told apart
