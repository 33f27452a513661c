"""Ground truth of a rendered page, its file format, and the maps derived from it.

On disk a page is three files with one stem:
  <stem>.png   the image (or .jpg)
  <stem>.json  metadata: layout, calibration, source category, keypoints, homography, seed
  <stem>.npz   arrays: `signals` (12, N) mV at 500 Hz, `shown` (the same with NaN where the
               paper shows nothing), `canonical_mm` (coarse map from image px to page mm,
               NaN off the page), and one `trace_<k>` polyline (N, 2) image px per segment
               plus `pulse_<r>` per calibration pulse.
Pixel coordinates put pixel centres on whole numbers (OpenCV convention).
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path

import cv2
import numpy as np

MAP_STEP = 8  # image px between samples of canonical_mm
MAJOR_MM = 5.0
JPEG_CAPTURES = ("phone_photo", "screen_photo", "rotated_jpeg")


@dataclass
class PageTruth:
    meta: dict
    signals: np.ndarray
    shown: np.ndarray
    canonical_mm: np.ndarray
    traces: list[np.ndarray] = field(default_factory=list)
    pulses: list[np.ndarray] = field(default_factory=list)

    @property
    def image_to_page_mm(self) -> np.ndarray:
        """Homography from image px to page mm (exact unless the paper is wrinkled)."""
        return np.asarray(self.meta["homography_image_to_page_mm"], np.float64)

    @property
    def keypoints(self) -> dict[str, list[float]]:
        """Centre of each printed lead label, image px, keyed `<segment index>:<lead>`."""
        return self.meta["keypoints"]

    def save(self, stem: Path, image: np.ndarray, image_format: str = "auto") -> Path:
        """Write the three files; `auto` keeps photographed pages as JPEG (as cameras do) and
        the rest as PNG."""
        stem.parent.mkdir(parents=True, exist_ok=True)
        if image_format == "auto":
            image_format = "jpg" if self.meta["capture"] in JPEG_CAPTURES else "png"
        image_path = stem.with_suffix(f".{image_format}")
        bgr = cv2.cvtColor(image, cv2.COLOR_RGB2BGR)
        params = [cv2.IMWRITE_PNG_COMPRESSION, 1, cv2.IMWRITE_PNG_STRATEGY, cv2.IMWRITE_PNG_STRATEGY_RLE] if image_format == "png" else [cv2.IMWRITE_JPEG_QUALITY, 95]
        if not cv2.imwrite(str(image_path), bgr, params):
            raise OSError(f"could not write {image_path}")
        arrays = {"signals": self.signals.astype(np.float32), "shown": self.shown.astype(np.float32),
                  "canonical_mm": self.canonical_mm.astype(np.float32)}
        arrays.update({f"trace_{k}": t.astype(np.float32) for k, t in enumerate(self.traces)})
        arrays.update({f"pulse_{k}": p.astype(np.float32) for k, p in enumerate(self.pulses)})
        np.savez_compressed(stem.with_suffix(".npz"), **arrays)
        stem.with_suffix(".json").write_text(json.dumps({**self.meta, "image": image_path.name}, indent=1))
        return image_path

    @classmethod
    def load(cls, stem: Path) -> PageTruth:
        meta = json.loads(stem.with_suffix(".json").read_text())
        with np.load(stem.with_suffix(".npz")) as z:
            n_traces = len(meta["layout"]["segments"])
            traces = [z[f"trace_{k}"].astype(np.float64) for k in range(n_traces)]
            pulses = [z[f"pulse_{k}"].astype(np.float64) for k in range(sum(1 for n in z.files if n.startswith("pulse_")))]
            return cls(meta, z["signals"].astype(np.float64), z["shown"].astype(np.float64),
                       z["canonical_mm"].astype(np.float64), traces, pulses)


def dense_canonical_mm(truth: PageTruth, shape: tuple[int, int]) -> np.ndarray:
    """Page mm (h, w, 2) for every image pixel, NaN off the page."""
    coarse = truth.canonical_mm.astype(np.float32)
    ys, xs = np.mgrid[0 : shape[0], 0 : shape[1]].astype(np.float32) / MAP_STEP
    out = np.stack([cv2.remap(coarse[..., c], xs, ys, cv2.INTER_LINEAR, borderMode=cv2.BORDER_REPLICATE)
                    for c in range(2)], axis=-1)
    return out


def grid_line_index_maps(truth: PageTruth, shape: tuple[int, int]) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Index of the nearest vertical and horizontal major (5 mm) grid line for each pixel,
    counted from the grid's first line (-1 off the grid), and the distance to the nearer
    of the two in mm — a pixel lies on a printed major line when that distance is small."""
    layout = truth.meta["layout"]
    mm = dense_canonical_mm(truth, shape)
    gx = (mm[..., 0] - layout["grid_x0_mm"]) / MAJOR_MM
    gy = (mm[..., 1] - layout["grid_y0_mm"]) / MAJOR_MM
    nx = round((layout["grid_x1_mm"] - layout["grid_x0_mm"]) / MAJOR_MM)
    ny = round((layout["grid_y1_mm"] - layout["grid_y0_mm"]) / MAJOR_MM)
    ix, iy = np.rint(gx), np.rint(gy)
    on_grid = (ix >= 0) & (ix <= nx) & (iy >= 0) & (iy <= ny) & np.isfinite(gx) & np.isfinite(gy)
    dist = np.minimum(np.abs(gx - ix), np.abs(gy - iy)) * MAJOR_MM
    v_index = np.where(on_grid, ix, -1).astype(np.int16)
    h_index = np.where(on_grid, iy, -1).astype(np.int16)
    return v_index, h_index, np.where(on_grid, dist, np.inf).astype(np.float32)


def row_trace_masks(truth: PageTruth, shape: tuple[int, int], width_px: int = 3) -> np.ndarray:
    """One uint8 mask per printed row with that row's traces drawn (rows told apart)."""
    segments = truth.meta["layout"]["segments"]
    n_rows = len(truth.meta["layout"]["row_baselines_mm"])
    masks = np.zeros((n_rows, *shape), np.uint8)
    for seg, pts in zip(segments, truth.traces, strict=True):
        fixed = np.round(pts * 16).astype(np.int32).reshape(-1, 1, 2)
        cv2.polylines(masks[seg["row"]], [fixed], False, 255, width_px, cv2.LINE_AA, 4)
    return masks


def signal_from_polylines(truth: PageTruth) -> np.ndarray:
    """Read the 12 leads back from the trace polylines and calibration: (12, N) mV, NaN off paper.

    The check that the ground truth is right: it only uses what a perfect digitizer would
    see (image-space traces) plus the page geometry.
    """
    from cardioscan.record import LEAD_INDEX

    layout = truth.meta["layout"]
    fs = truth.meta["fs"]
    out = np.full_like(truth.signals, np.nan)
    h_inv = truth.image_to_page_mm
    for seg, pts in zip(layout["segments"], truth.traces, strict=True):
        mm = cv2.perspectiveTransform(pts.reshape(-1, 1, 2), h_inv).reshape(-1, 2)
        t = seg["t_start"] + (mm[:, 0] - seg["x_mm"]) / layout["mm_per_s"]
        mv = (seg["baseline_mm"] - mm[:, 1]) / layout["mm_per_mv"]
        i0, i1 = int(round(seg["t_start"] * fs)), int(round(seg["t_end"] * fs))
        grid_t = np.arange(i0, i1) / fs
        order = np.argsort(t)
        out[LEAD_INDEX[seg["lead"]], i0:i1] = np.interp(grid_t, t[order], mv[order])
    return out
