"""Routed preprocessing: the image repairs a page's source calls for, before any stage reads it.

Each branch is one well-kept library operation (OpenCV), sized to the page. The routing table
(`routing:` in `configs/source.yaml`) maps a source category to its branches; a page gets the
branches of its likeliest capture and of every paper condition the classifier finds present,
applied once each in the fixed order of `BRANCHES` (light first, then noise, then contrast).
Which entries the table keeps is decided by `scripts/ablate_preprocessing.py` on the whole
pipeline's SNR, not by how the image looks.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import cv2
import numpy as np
import yaml

from cardioscan.source import PRESENT, SourceEstimate

SOURCE_CONFIG = Path(__file__).resolve().parents[1] / "configs" / "source.yaml"


def white_balance(rgb: np.ndarray) -> np.ndarray:
    """White patch: scale each channel so the paper (its bright 95th percentile) is neutral white."""
    paper = np.percentile(rgb.reshape(-1, 3)[:: 97], 95, axis=0).clip(32, 255)
    lut = np.clip(np.arange(256)[:, None] * (255.0 / paper), 0, 255).astype(np.uint8)
    return cv2.LUT(rgb, lut[None])


def remove_illumination(rgb: np.ndarray) -> np.ndarray:
    """Divide out the paper's light: its background estimated by a closing wider than any line,
    on a reduced copy (shadows, stains and crease shading are smooth)."""
    h, w = rgb.shape[:2]
    f = 400 / max(h, w)
    small = cv2.resize(rgb, (max(1, round(w * f)), max(1, round(h * f))), interpolation=cv2.INTER_AREA)
    background = cv2.morphologyEx(small, cv2.MORPH_CLOSE, cv2.getStructuringElement(cv2.MORPH_ELLIPSE, (15, 15)))
    background = cv2.GaussianBlur(background, (0, 0), 4)
    background = cv2.resize(background, (w, h), interpolation=cv2.INTER_LINEAR)
    return cv2.divide(rgb, background, scale=255)


def clahe(rgb: np.ndarray) -> np.ndarray:
    """Contrast-limited adaptive histogram equalisation of lightness, in tiles about 4 cm wide."""
    lab = cv2.cvtColor(rgb, cv2.COLOR_RGB2LAB)
    tiles = max(2, round(max(rgb.shape[:2]) / 320))
    lab[..., 0] = cv2.createCLAHE(clipLimit=2.0, tileGridSize=(tiles, tiles)).apply(lab[..., 0])
    return cv2.cvtColor(lab, cv2.COLOR_LAB2RGB)


def denoise(rgb: np.ndarray) -> np.ndarray:
    """Edge-keeping bilateral filter: toner speckle and sensor grain go, line edges stay."""
    return cv2.bilateralFilter(rgb, 5, 30, 3)


def repair_fax(rgb: np.ndarray) -> np.ndarray:
    """Close the one-pixel gaps a fax's binarisation tears into thin lines (a 2×2 dilation of the
    dark ink is a closing of the light paper), then soften the hard edges."""
    repaired = cv2.erode(rgb, np.ones((2, 2), np.uint8))
    return cv2.GaussianBlur(repaired, (3, 3), 0)


def suppress_moire(rgb: np.ndarray) -> np.ndarray:
    """Screen photos carry a fine pixel-grid beat; a small Gaussian removes it below the line width."""
    return cv2.GaussianBlur(rgb, (0, 0), 1.0)


def deblock(rgb: np.ndarray) -> np.ndarray:
    """JPEG's 8×8 block edges: smoothed where flat, kept at strong edges (a light bilateral)."""
    return cv2.bilateralFilter(rgb, 5, 20, 2)


def unsharp(rgb: np.ndarray) -> np.ndarray:
    """Unsharp mask: a blurred capture's thin lines regain their contrast."""
    blurred = cv2.GaussianBlur(rgb, (0, 0), 2.0)
    return cv2.addWeighted(rgb, 1.6, blurred, -0.6, 0)


BRANCHES: dict[str, Callable[[np.ndarray], np.ndarray]] = {
    "illumination": remove_illumination,
    "white_balance": white_balance,
    "repair_fax": repair_fax,
    "deblock": deblock,
    "moire": suppress_moire,
    "denoise": denoise,
    "clahe": clahe,
    "unsharp": unsharp,
}


def load_routing(path: Path = SOURCE_CONFIG) -> dict[str, list[str]]:
    routing = (yaml.safe_load(path.read_text()) or {}).get("routing", {}) if path.exists() else {}
    unknown = sorted({b for branches in routing.values() for b in branches} - set(BRANCHES))
    if unknown:
        raise ValueError(f"{path}: unknown preprocessing branches {', '.join(unknown)}; valid: {', '.join(BRANCHES)}")
    return routing


def branches_for(estimate: SourceEstimate, routing: dict[str, list[str]]) -> list[str]:
    """The branches a page's likeliest capture and its present conditions call for, in `BRANCHES` order."""
    categories = [max(estimate.captures, key=estimate.captures.get)]
    categories += [c for c, p in estimate.conditions.items() if p > PRESENT]
    wanted = {b for c in categories for b in routing.get(c, [])}
    return [b for b in BRANCHES if b in wanted]


def preprocess(rgb: np.ndarray, branches: list[str]) -> np.ndarray:
    for name in branches:
        rgb = BRANCHES[name](rgb)
    return rgb
