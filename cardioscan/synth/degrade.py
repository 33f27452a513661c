"""The source categories: how a printed ECG gets damaged and captured.

Each category is a recipe in three parts, applied in the order physics applies them:
what happened to the paper (stains, writing, fading, creases), how it was captured
(the geometry: flat export, scanner skew, phone perspective, rotation), and what the
capture device did to the pixels (noise, blur, light, binarisation, JPEG). Categories
combine the way real archives combine them: a crumpled page gets photographed.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import albumentations as A
import cv2
import numpy as np
from scipy.ndimage import gaussian_filter

from cardioscan.synth.paper import font
from cardioscan.synth.warp import PageWarp, perspective, similarity, with_rotation, wrinkle_field

SOURCE_CATEGORIES: tuple[str, ...] = (
    "clean",
    "colour_scan",
    "grey_scan",
    "fax",
    "photocopy",
    "faded_thermal",
    "phone_photo",
    "screen_photo",
    "wrinkled",
    "stained",
    "handwriting",
    "rotated_jpeg",
)
PAPER_CONDITIONS = ("faded_thermal", "wrinkled", "stained", "handwriting")
CAPTURES = ("clean", "colour_scan", "grey_scan", "fax", "photocopy", "phone_photo", "screen_photo", "rotated_jpeg")


def _albu(rng: np.random.Generator, transforms: list, image: np.ndarray) -> np.ndarray:
    """Apply albumentations transforms deterministically for our generator."""
    pipeline = A.Compose(transforms, seed=int(rng.integers(2**31)))
    return pipeline(image=image)["image"]


def _smooth_field(rng: np.random.Generator, shape: tuple[int, int], scale: float) -> np.ndarray:
    """Smooth noise in [0, 1] with features about `scale` of the image size."""
    small = (max(2, int(shape[0] * 0.05)), max(2, int(shape[1] * 0.05)))
    noise = gaussian_filter(rng.normal(size=small), sigma=max(small) * scale)
    noise = (noise - noise.min()) / (np.ptp(noise) + 1e-9)
    return cv2.resize(noise.astype(np.float32), (shape[1], shape[0]), interpolation=cv2.INTER_CUBIC)


def _illumination(rng: np.random.Generator, shape: tuple[int, int], strength: float) -> np.ndarray:
    """Uneven light: a tilted plane plus a soft blob, as from a lamp or window."""
    h, w = shape
    ys, xs = np.mgrid[0:h, 0:w].astype(np.float32)
    gx, gy = rng.normal(size=2) * strength
    light = 1 + gx * (xs / w - 0.5) + gy * (ys / h - 0.5)
    cx, cy, r = rng.uniform(0, w), rng.uniform(0, h), rng.uniform(0.3, 0.9) * max(h, w)
    light += strength * rng.uniform(-0.6, 0.6) * np.exp(-((xs - cx) ** 2 + (ys - cy) ** 2) / r**2)
    return np.clip(light, 0.35, 1.3)


def _shade(image: np.ndarray, field: np.ndarray) -> np.ndarray:
    """Multiply by a light field, saturating at 255 (cv2 does it in one fast pass)."""
    return cv2.multiply(image, cv2.merge([field.astype(np.float32)] * image.shape[2]), dtype=cv2.CV_8U)


def _plane_wave(shape: tuple[int, int], fx: float, fy: float) -> np.ndarray:
    """cos(2 pi (fx x + fy y)) built from outer products: full-resolution trig is the slow part."""
    ys = 2 * np.pi * fy * np.arange(shape[0], dtype=np.float32)
    xs = 2 * np.pi * fx * np.arange(shape[1], dtype=np.float32)
    return np.outer(np.cos(ys), np.cos(xs)) - np.outer(np.sin(ys), np.sin(xs))


def background(rng: np.random.Generator, shape: tuple[int, int]) -> np.ndarray:
    """A table, desk or dark cloth under a photographed page."""
    h, w = shape
    kind = rng.choice(["wood", "dark", "plain", "fabric"])
    base = {"wood": (95, 130, 165), "dark": (40, 40, 45), "plain": (170, 175, 180), "fabric": (80, 90, 110)}[kind]
    base = np.asarray(base, np.float32) * rng.uniform(0.7, 1.2, size=3)
    if kind == "wood":
        grain = gaussian_filter(rng.normal(size=(max(h // 4, 2), max(w // 64, 2))), (0.5, 2))
        grain = cv2.resize(grain.astype(np.float32), (w, h))
        if rng.random() < 0.5:
            grain = cv2.resize(grain.T.copy(), (w, h))
        tex = 1 + 0.12 * grain / (grain.std() + 1e-6)
    else:
        tex = 1 + 0.06 * _smooth_field(rng, shape, 0.1) + 0.03 * rng.normal(size=shape).astype(np.float32)
    bgr = base[None, None, :] * tex[..., None].astype(np.float32)
    return np.clip(bgr[..., ::-1], 0, 255).astype(np.uint8)  # base is BGR-ish; flip to RGB


# --- what happened to the paper -------------------------------------------------------------

def fade(rng: np.random.Generator, page: np.ndarray) -> np.ndarray:
    """Thermal paper: ink fades unevenly towards a yellow-grey paper."""
    paper = np.asarray([240, 236, 220], np.float32) * rng.uniform(0.95, 1.02)
    amount = rng.uniform(0.35, 0.8) + rng.uniform(0, 0.2) * _smooth_field(rng, page.shape[:2], 0.3)
    out = page.astype(np.float32) * (1 - amount[..., None]) + paper * amount[..., None]
    return np.clip(out, 0, 255).astype(np.uint8)


def stain(rng: np.random.Generator, page: np.ndarray, px_per_mm: float) -> np.ndarray:
    """Coffee rings, water marks and mould spots: colour multiplied into the paper.

    Stains are soft, so their masks are made at quarter resolution and scaled up."""
    h, w = page.shape[:2]
    hs, ws, k = h // 4, w // 4, px_per_mm / 4
    tint = np.ones((hs, ws, 3), np.float32)
    for _ in range(int(rng.integers(1, 5))):
        colour = np.asarray(rng.choice([[150, 110, 60], [180, 160, 110], [120, 130, 90], [160, 140, 140]]),
                            np.float32) / 255.0
        r = rng.uniform(10, 60) * k
        centre = (int(rng.uniform(0, ws)), int(rng.uniform(0, hs)))
        axes = (int(r), int(r * rng.uniform(0.6, 1.0)))
        mask = np.zeros((hs, ws), np.float32)
        cv2.ellipse(mask, centre, axes, rng.uniform(0, 180), 0, 360, 1.0, -1)
        mask = gaussian_filter(mask * (0.6 + 0.8 * _smooth_field(rng, (hs, ws), 0.05)), sigma=r * 0.08)
        if rng.random() < 0.6:  # the darker rim of a dried drop
            rim = np.zeros((hs, ws), np.float32)
            cv2.ellipse(rim, centre, axes, 0, 0, 360, 1.0, max(1, int(k)))
            mask += gaussian_filter(rim, sigma=max(k, 0.5)) * 1.5
        strength = rng.uniform(0.3, 0.8) * np.clip(mask, 0, 1)[..., None]
        tint *= 1 - strength + colour * strength
    if rng.random() < 0.3:  # mould: many small dark specks
        specks = gaussian_filter((rng.random((hs, ws)) < 0.002).astype(np.float32), 1.0) * 4
        tint *= 1 - np.clip(specks, 0, 0.7)[..., None]
    tint = cv2.resize(tint, (w, h), interpolation=cv2.INTER_LINEAR)
    return cv2.multiply(page, tint, dtype=cv2.CV_8U)


_WORDS = ("ok", "NSR", "see prev", "?LVH", "rpt", "cf 2019", "Dr", "STEMI?", "normal", "AF", "file",
          "no change", "QT long", "copy", "urgent", "RBBB")


def scribble(rng: np.random.Generator, page: np.ndarray, px_per_mm: float) -> np.ndarray:
    """Handwriting, stamps and stickers, often right over the trace."""
    h, w = page.shape[:2]
    out = page.copy()
    for _ in range(int(rng.integers(1, 6))):
        colour = tuple(int(c) for c in rng.choice([[20, 30, 140], [20, 20, 20], [170, 20, 30], [10, 80, 20]]))
        kind = rng.choice(["text", "strokes", "stamp", "sticker"], p=[0.4, 0.3, 0.15, 0.15])
        x, y = int(rng.uniform(0, w * 0.85)), int(rng.uniform(0, h * 0.9))
        if kind == "text":
            from PIL import Image, ImageDraw

            size = int(rng.uniform(4, 9) * px_per_mm)
            words = " ".join(rng.choice(_WORDS, size=int(rng.integers(1, 4))))
            layer = Image.fromarray(out)
            ImageDraw.Draw(layer).text((x, y), words, fill=colour, font=font(str(rng.choice(["condensed", "serif"])), size))
            out = np.asarray(layer).copy()
        elif kind == "strokes":
            pts = np.cumsum(rng.normal(0, 3 * px_per_mm, size=(int(rng.integers(5, 30)), 2)), axis=0) + [x, y]
            cv2.polylines(out, [pts.astype(np.int32).reshape(-1, 1, 2)], False, colour,
                          max(1, int(rng.uniform(0.3, 0.8) * px_per_mm)), cv2.LINE_AA)
        elif kind == "stamp":
            r = int(rng.uniform(8, 18) * px_per_mm)
            layer = out.copy()
            cv2.circle(layer, (x, y), r, colour, max(1, int(0.6 * px_per_mm)), cv2.LINE_AA)
            cv2.putText(layer, str(rng.choice(["REVIEWED", "COPY", "RECEIVED"])), (x - r, y),
                        cv2.FONT_HERSHEY_SIMPLEX, r / 70.0, colour, max(1, int(0.4 * px_per_mm)), cv2.LINE_AA)
            a = rng.uniform(0.4, 0.8)
            out = cv2.addWeighted(layer, a, out, 1 - a, 0)
        else:
            sw, sh = int(rng.uniform(15, 50) * px_per_mm), int(rng.uniform(8, 25) * px_per_mm)
            tone = tuple(int(c) for c in rng.choice([[250, 250, 245], [250, 240, 150], [200, 230, 250]]))
            cv2.rectangle(out, (x, y), (x + sw, y + sh), tone, -1)
    return out


# --- what the capture device did ------------------------------------------------------------

def scanner_effects(rng: np.random.Generator, image: np.ndarray, grey: bool) -> np.ndarray:
    transforms = [
        A.RandomBrightnessContrast((-0.05, 0.1), (-0.15, 0.1), p=0.8),
        A.GaussianBlur(sigma_limit=(0.3, 0.9), p=0.6),
        A.GaussNoise(std_range=(0.01, 0.04), p=0.7),
        A.ImageCompression(quality_range=(60, 95), p=0.5),
    ]
    if grey:
        transforms.insert(0, A.ToGray(p=1.0))
    return _albu(rng, transforms, image)


def fax_effects(rng: np.random.Generator, image: np.ndarray) -> np.ndarray:
    """Standard-mode fax: half vertical resolution, one bit per pixel, streaks and specks."""
    grey = cv2.cvtColor(image, cv2.COLOR_RGB2GRAY)
    h, w = grey.shape
    if rng.random() < 0.6:
        grey = cv2.resize(cv2.resize(grey, (w, h // 2), interpolation=cv2.INTER_AREA), (w, h),
                          interpolation=cv2.INTER_NEAREST)
    if rng.random() < 0.3:  # ordered dither keeps faint grids as dot patterns
        bayer = np.array([[0, 8, 2, 10], [12, 4, 14, 6], [3, 11, 1, 9], [15, 7, 13, 5]]) / 16.0
        tile = np.tile(bayer, (h // 4 + 1, w // 4 + 1))[:h, :w]
        binary = (grey / 255.0 > tile * rng.uniform(0.7, 1.0) + 0.1).astype(np.uint8) * 255
    else:
        threshold = rng.uniform(150, 225)
        binary = np.where(grey > threshold, 255, 0).astype(np.uint8)
    streak_rows = rng.random(h) < rng.uniform(0.0, 0.01)
    binary[streak_rows] = np.where(rng.random((streak_rows.sum(), w)) < 0.7, 0, binary[streak_rows])
    specks = rng.random((h, w)) < rng.uniform(0.0, 0.003)
    binary[specks] = 0
    return cv2.cvtColor(binary, cv2.COLOR_GRAY2RGB)


def photocopy_effects(rng: np.random.Generator, image: np.ndarray) -> np.ndarray:
    """Contrast loss, toner speckle and the dark edges of an open copier lid."""
    grey = rng.random() < 0.8
    out = _albu(rng, [A.ToGray(p=1.0 if grey else 0.0),
                      A.RandomBrightnessContrast((-0.15, 0.05), (-0.4, -0.1), p=1.0),
                      A.GaussNoise(std_range=(0.03, 0.08), p=1.0)], image)
    h, w = out.shape[:2]
    ys, xs = np.mgrid[0:h, 0:w].astype(np.float32)
    edge = np.minimum.reduce([xs, ys, w - 1 - xs, h - 1 - ys]) / (rng.uniform(0.02, 0.06) * max(h, w))
    dark = 1 - rng.uniform(0.4, 0.9) * np.exp(-edge)
    toner = 1 - (rng.random((h, w)) < rng.uniform(0.001, 0.006)) * rng.uniform(0.5, 0.9)
    return _shade(out, (dark * toner).astype(np.float32))


def _soft_shadow(rng: np.random.Generator, shape: tuple[int, int]) -> np.ndarray:
    """A phone's or hand's shadow: a polygon with a penumbra, as a light factor."""
    h, w = shape
    small = (max(h // 8, 2), max(w // 8, 2))
    mask = np.zeros(small, np.float32)
    corner = rng.uniform(0, 1, size=2) * [small[1], small[0]]
    pts = corner + rng.normal(0, 0.35, size=(int(rng.integers(3, 6)), 2)) * [small[1], small[0]]
    cv2.fillPoly(mask, [pts.astype(np.int32)], 1.0)
    mask = gaussian_filter(mask, sigma=rng.uniform(0.01, 0.05) * max(small))
    light = 1 - rng.uniform(0.2, 0.5) * mask
    return cv2.resize(light, (w, h), interpolation=cv2.INTER_LINEAR)


def photo_effects(rng: np.random.Generator, image: np.ndarray) -> np.ndarray:
    light = _illumination(rng, image.shape[:2], rng.uniform(0.1, 0.6))
    if rng.random() < 0.4:
        light *= _soft_shadow(rng, image.shape[:2])
    out = _shade(image, light)
    transforms = [
        A.PlanckianJitter(temperature_limit=(5000, 8000), p=0.5),
        A.OneOf([A.Defocus(radius=(1, 3), alias_blur=(0.1, 0.3)), A.MotionBlur(blur_limit=(3, 7)),
                 A.GaussianBlur(sigma_limit=(0.4, 1.2))], p=0.7),
        A.GaussNoise(std_range=(0.01, 0.05), noise_scale_factor=0.5, p=0.7),
        A.ImageCompression(quality_range=(55, 95), p=1.0),
    ]
    return _albu(rng, transforms, out)


def screen_effects(rng: np.random.Generator, image: np.ndarray) -> np.ndarray:
    """A photo of a monitor: subpixel grid, moiré beating against the camera sensor, glare."""
    h, w = image.shape[:2]
    period = rng.uniform(2.5, 4.5)
    angle = rng.uniform(-0.2, 0.2)
    c, s_ = np.cos(angle) / period, np.sin(angle) / period
    # cos(u) cos(v) of the rotated subpixel lattice = half the sum of two plane waves.
    pixel_grid = 0.92 + 0.04 * (_plane_wave((h, w), c - s_, s_ + c) + _plane_wave((h, w), c + s_, s_ - c))
    beat = 1 + rng.uniform(0.02, 0.08) * _plane_wave((h, w), 1 / rng.uniform(40, 160), 1 / rng.uniform(60, 300))
    out = _shade(image, (pixel_grid * beat).astype(np.float32))
    tint = np.asarray([rng.uniform(0.85, 1.0), rng.uniform(0.9, 1.0), rng.uniform(0.95, 1.1)], np.float32)
    out = cv2.multiply(out, np.broadcast_to(tint, out.shape).astype(np.float32), dtype=cv2.CV_8U)
    return _albu(rng, [
        A.RandomSunFlare(flare_roi=(0, 0, 1, 1), src_radius=int(0.25 * max(h, w)), num_flare_circles_range=(1, 3),
                         p=0.5),
        A.GaussianBlur(sigma_limit=(0.5, 1.2), p=0.8),
        A.GaussNoise(std_range=(0.02, 0.06), noise_scale_factor=0.5, p=0.8),
        A.ImageCompression(quality_range=(50, 90), p=1.0),
    ], out)


def jpeg_effects(rng: np.random.Generator, image: np.ndarray) -> np.ndarray:
    return _albu(rng, [A.Downscale(scale_range=(0.5, 0.9), p=0.5),
                       A.ImageCompression(quality_range=(8, 35), p=1.0)], image)


# --- recipes --------------------------------------------------------------------------------

@dataclass
class Capture:
    """A sampled capture: the warp and what the device does to the pixels."""

    warp: PageWarp
    effects: Callable[[np.random.Generator, np.ndarray], np.ndarray]
    with_background: bool


def sample_capture(rng: np.random.Generator, kind: str, page_shape: tuple[int, int], px_per_mm: float,
                   paper_conditions: list[str]) -> Capture:
    """The geometry and device effects of one capture kind."""
    h, w = page_shape
    warp = PageWarp(np.eye(3), page_shape, page_shape)
    if "wrinkled" in paper_conditions:
        disp, shading = wrinkle_field(rng, page_shape, px_per_mm, n_folds=int(rng.integers(0, 4)),
                                      crumple=float(rng.uniform(0, 1.0)), curl=float(rng.uniform(0, 1)))
        warp.displacement, warp.shading = disp, shading
    if kind == "clean":
        return Capture(warp, lambda r, im: im, False)
    if kind in ("colour_scan", "grey_scan", "fax", "photocopy"):
        angle = float(rng.normal(0, 1.2))
        warp.homography = similarity(page_shape, angle, float(rng.uniform(0.97, 1.0)), page_shape,
                                     tuple(rng.normal(0, 0.005, 2) * [w, h]))
        if rng.random() < 0.2:  # some archives scanned sideways
            warp = with_rotation(warp, int(rng.choice([1, 3])))
        effects = {
            "colour_scan": lambda r, im: scanner_effects(r, im, grey=False),
            "grey_scan": lambda r, im: scanner_effects(r, im, grey=True),
            "fax": fax_effects,
            "photocopy": photocopy_effects,
        }[kind]
        return Capture(warp, effects, False)
    if kind in ("phone_photo", "screen_photo"):
        max_tilt, fill = (0.18, rng.uniform(0.7, 0.95)) if kind == "phone_photo" else (0.08, rng.uniform(0.85, 1.0))
        warp.homography, warp.out_shape = perspective(rng, page_shape, max_tilt, float(fill))
        if rng.random() < 0.15:
            warp = with_rotation(warp, int(rng.choice([1, 3])))
        effects = photo_effects if kind == "phone_photo" else screen_effects
        return Capture(warp, effects, kind == "phone_photo")
    if kind == "rotated_jpeg":
        warp.homography = similarity(page_shape, float(rng.uniform(-4, 4)), float(rng.uniform(0.9, 1.0)), page_shape)
        warp = with_rotation(warp, int(rng.choice([1, 2, 3, 0], p=[0.3, 0.3, 0.3, 0.1])))
        return Capture(warp, jpeg_effects, False)
    raise ValueError(f"unknown capture {kind!r}; valid: {', '.join(CAPTURES)}")


def plan_categories(rng: np.random.Generator, category: str) -> tuple[str, list[str]]:
    """The capture kind and paper conditions behind a labelled source category."""
    if category not in SOURCE_CATEGORIES:
        raise ValueError(f"unknown source category {category!r}; valid: {', '.join(SOURCE_CATEGORIES)}")
    conditions: list[str] = []
    if category in PAPER_CONDITIONS:
        conditions.append(category)
        capture = str(rng.choice(["colour_scan", "grey_scan", "phone_photo", "clean"], p=[0.35, 0.15, 0.4, 0.1]))
        if category == "wrinkled":
            capture = str(rng.choice(["phone_photo", "colour_scan"], p=[0.75, 0.25]))
    else:
        capture = category
        if category in ("phone_photo", "colour_scan") and rng.random() < 0.3:
            conditions.append(str(rng.choice(PAPER_CONDITIONS)))
    return capture, conditions


def apply_paper_conditions(rng: np.random.Generator, page: np.ndarray, conditions: list[str],
                           px_per_mm: float) -> np.ndarray:
    """Damage on the paper itself, before any capture (wrinkles act through the warp)."""
    for condition in conditions:
        if condition == "faded_thermal":
            page = fade(rng, page)
        elif condition == "stained":
            page = stain(rng, page, px_per_mm)
        elif condition == "handwriting":
            page = scribble(rng, page, px_per_mm)
    return page
