"""The geometry between the flat printed page and the captured image.

A canonical page point `p` lands in the image at `H @ (p + d(p))`: a smooth displacement
`d` (paper curl, creases, crumpling) followed by a homography `H` (scanner skew, phone
perspective, 90-degree rotations). Points move forward exactly; the image is resampled
through the inverse, found by fixed-point iteration on a coarse grid.
"""

from __future__ import annotations

from dataclasses import dataclass

import cv2
import numpy as np
from scipy.ndimage import map_coordinates

COARSE_STEP = 8  # px between displacement-field samples


@dataclass
class PageWarp:
    homography: np.ndarray  # canonical px -> image px, after displacement
    out_shape: tuple[int, int]  # image (height, width)
    page_shape: tuple[int, int]  # canonical page (height, width)
    displacement: np.ndarray | None = None  # (hc, wc, 2) canonical px, sampled every COARSE_STEP
    shading: np.ndarray | None = None  # (hc, wc) multiplicative light on the paper, 1 = none
    rotation: int = 0  # clockwise quarter turns applied last, 0..3

    def displacement_at(self, pts: np.ndarray) -> np.ndarray:
        if self.displacement is None:
            return np.zeros_like(pts)
        coords = [pts[:, 1] / COARSE_STEP, pts[:, 0] / COARSE_STEP]
        return np.stack([map_coordinates(self.displacement[..., c], coords, order=1, mode="nearest")
                         for c in range(2)], axis=1)

    def forward(self, pts: np.ndarray) -> np.ndarray:
        """Canonical page px (N, 2) -> image px (N, 2)."""
        pts = np.asarray(pts, np.float64).reshape(-1, 2)
        moved = pts + self.displacement_at(pts)
        return cv2.perspectiveTransform(moved.reshape(-1, 1, 2), self.homography).reshape(-1, 2)

    def inverse_coarse(self, step: int = COARSE_STEP) -> np.ndarray:
        """Canonical px (ny, nx, 2) of the image points (k * step, j * step), covering the image."""
        h, w = self.out_shape
        ys, xs = np.mgrid[0 : h + step : step, 0 : w + step : step].astype(np.float64)
        q = np.stack([xs.ravel(), ys.ravel()], axis=1)
        u = cv2.perspectiveTransform(q.reshape(-1, 1, 2), np.linalg.inv(self.homography)).reshape(-1, 2)
        p = u.copy()
        if self.displacement is not None:
            for _ in range(8):
                p = u - self.displacement_at(p)
        return p.reshape(xs.shape + (2,)).astype(np.float32)

    def inverse_maps(self) -> tuple[np.ndarray, np.ndarray]:
        """Image px -> canonical px, as full-resolution float32 maps for cv2.remap."""
        h, w = self.out_shape
        coarse = self.inverse_coarse(COARSE_STEP)
        ys, xs = np.mgrid[0:h, 0:w].astype(np.float32) / COARSE_STEP
        return (cv2.remap(coarse[..., 0], xs, ys, cv2.INTER_LINEAR, borderMode=cv2.BORDER_REPLICATE),
                cv2.remap(coarse[..., 1], xs, ys, cv2.INTER_LINEAR, borderMode=cv2.BORDER_REPLICATE))

    def apply(self, page: np.ndarray, background: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Warp the page over `background`; returns the image and the page coverage mask."""
        map_x, map_y = self.inverse_maps()
        if self.shading is not None:
            shade = cv2.resize(self.shading.astype(np.float32), (page.shape[1], page.shape[0]))
            page = cv2.multiply(page, cv2.merge([shade] * 3), dtype=cv2.CV_8U)
        warped = cv2.remap(page, map_x, map_y, cv2.INTER_LINEAR, borderMode=cv2.BORDER_CONSTANT)
        ones = np.full(page.shape[:2], 255, np.uint8)
        cover = cv2.remap(ones, map_x, map_y, cv2.INTER_LINEAR, borderMode=cv2.BORDER_CONSTANT)
        a = cover.astype(np.float32) / 255.0
        return cv2.blendLinear(warped, background, a, 1.0 - a), cover


def rotation_matrix(quarter_turns: int, shape: tuple[int, int]) -> tuple[np.ndarray, tuple[int, int]]:
    """Homography of rotating an image of `shape` clockwise by quarter turns, and the new shape."""
    h, w = shape
    m = np.eye(3)
    for _ in range(quarter_turns % 4):
        step = np.array([[0, -1, h - 1], [1, 0, 0], [0, 0, 1]], np.float64)
        m = step @ m
        h, w = w, h
    return m, (h, w)


def with_rotation(warp: PageWarp, quarter_turns: int) -> PageWarp:
    m, shape = rotation_matrix(quarter_turns, warp.out_shape)
    warp.homography = m @ warp.homography
    warp.out_shape = shape
    warp.rotation = quarter_turns % 4
    return warp


def similarity(page_shape: tuple[int, int], angle_deg: float, scale: float,
               out_shape: tuple[int, int], shift: tuple[float, float] = (0.0, 0.0)) -> np.ndarray:
    """Rotate and scale the page about its centre into the middle of `out_shape`."""
    h, w = page_shape
    m = cv2.getRotationMatrix2D((w / 2.0, h / 2.0), angle_deg, scale)
    m[0, 2] += (out_shape[1] - w) / 2.0 + shift[0]
    m[1, 2] += (out_shape[0] - h) / 2.0 + shift[1]
    return np.vstack([m, [0, 0, 1]])


def perspective(rng: np.random.Generator, page_shape: tuple[int, int], max_tilt: float,
                fill: float) -> tuple[np.ndarray, tuple[int, int]]:
    """A phone's view of the page: the far edge shortened by up to `max_tilt`, the page
    filling about `fill` of a 4:3 or 16:9 frame, turned a little in the plane. The frame is
    as wide as the flat page, so the page is seen at `fill` of its rendered resolution."""
    h, w = page_shape
    aspect = float(rng.choice([4 / 3, 16 / 9]))
    out_w = float(w)
    out_h = out_w / aspect
    half = np.array([[-w, -h], [w, -h], [w, h], [-w, h]], np.float64) / 2.0
    tilt_x, tilt_y = rng.uniform(-max_tilt, max_tilt, size=2)
    dst = half.copy()
    dst[:, 0] *= 1 + tilt_y * np.sign(half[:, 1])
    dst[:, 1] *= 1 + tilt_x * np.sign(half[:, 0])
    dst += rng.normal(0, 0.01, size=(4, 2)) * np.array([w, h])
    angle = np.deg2rad(rng.normal(0, 4))
    rot = np.array([[np.cos(angle), -np.sin(angle)], [np.sin(angle), np.cos(angle)]])
    dst = dst @ rot.T
    dst *= fill * min(out_w / np.ptp(dst[:, 0]), out_h / np.ptp(dst[:, 1]))
    dst += np.array([out_w / 2, out_h / 2]) + rng.normal(0, 0.02, size=2) * np.array([out_w, out_h])
    src = np.float32([[0, 0], [w, 0], [w, h], [0, h]])
    return cv2.getPerspectiveTransform(src, dst.astype(np.float32)), (int(round(out_h)), int(round(out_w)))


def _coarse_shape(page_shape: tuple[int, int]) -> tuple[int, int]:
    return page_shape[0] // COARSE_STEP + 2, page_shape[1] // COARSE_STEP + 2


def wrinkle_field(rng: np.random.Generator, page_shape: tuple[int, int], px_per_mm: float,
                  n_folds: int, crumple: float, curl: float) -> tuple[np.ndarray, np.ndarray]:
    """Displacement (px) and shading of a paper that was folded, crumpled and curls up.

    A height field drives both: folds are ridges along whole lines, crumpling is many
    short local creases; light falls from one side, so facets facing it are brighter.
    """
    hc, wc = _coarse_shape(page_shape)
    ys, xs = np.mgrid[0:hc, 0:wc].astype(np.float64) * COARSE_STEP
    height = np.zeros((hc, wc))
    sharp = np.zeros((hc, wc))
    for _ in range(n_folds):
        if rng.random() < 0.6:  # folds along or across the page, as letters are folded
            angle = float(rng.choice([0.0, np.pi / 2]) + rng.normal(0, 0.05))
        else:
            angle = float(rng.uniform(0, np.pi))
        nx, ny = np.cos(angle), np.sin(angle)
        c = rng.uniform(0.25, 0.75) * (page_shape[1] * abs(nx) + page_shape[0] * abs(ny))
        dist = xs * nx + ys * ny - c
        amp = rng.uniform(2, 6) * px_per_mm
        ridge = -amp * np.abs(dist) / (page_shape[0] + page_shape[1]) * float(rng.choice([-1, 1]))
        height += ridge * 10
        sharp += np.exp(-(dist / (0.8 * px_per_mm)) ** 2) * rng.uniform(0.04, 0.15)
    # Crumpling: many short creases in all directions, each a ridge that fades out within a
    # few centimetres, so the sheet breaks into flat facets with sharp edges (as in real photos).
    for _ in range(int(crumple * 25)):
        angle = float(rng.uniform(0, np.pi))
        nx, ny = np.cos(angle), np.sin(angle)
        cx, cy = rng.uniform(0, page_shape[1]), rng.uniform(0, page_shape[0])
        dist = (xs - cx) * nx + (ys - cy) * ny
        along = -(xs - cx) * ny + (ys - cy) * nx
        reach = rng.uniform(20, 80) * px_per_mm
        window = np.exp(-((along / reach) ** 2) - (dist / (0.6 * reach)) ** 2)
        slope = rng.uniform(0.05, 0.2) * float(rng.choice([-1, 1]))
        height += -slope * np.abs(dist) * window
        sharp += np.exp(-(dist / (0.6 * px_per_mm)) ** 2) * window * rng.uniform(0.02, 0.08)
    if curl > 0:
        edge = float(rng.choice([0, 1]))
        t = xs / page_shape[1] if edge == 0 else 1 - xs / page_shape[1]
        height += curl * 40 * px_per_mm * np.clip(0.25 - t, 0, None) ** 2
    gy, gx = np.gradient(height, COARSE_STEP)
    light = rng.normal(size=2)
    light /= np.linalg.norm(light)
    shading = 1.0 + 0.8 * np.clip(gx * light[0] + gy * light[1], -0.25, 0.25) - sharp * float(rng.choice([-1, 1]))
    # The page is seen from above: raised parts move outwards from the camera axis and slopes shorten.
    cx, cy = page_shape[1] / 2.0, page_shape[0] / 2.0
    scale = 0.002
    disp = np.stack([(xs - cx) * height * scale / px_per_mm, (ys - cy) * height * scale / px_per_mm], axis=-1)
    disp += np.stack([gx, gy], axis=-1) * height[..., None] * 0.02
    return disp.astype(np.float32), np.clip(shading, 0.55, 1.25).astype(np.float32)
