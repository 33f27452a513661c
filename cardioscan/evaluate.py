"""`cardioscan eval`: the whole pipeline against pages whose true signals are known."""

from __future__ import annotations

import time
from collections import defaultdict
from dataclasses import dataclass, replace
from pathlib import Path

import cv2
import numpy as np
from scipy.ndimage import map_coordinates

from cardioscan.align import LeadLabel, finite_median, match_labels
from cardioscan.io.images import IMAGE_SUFFIXES
from cardioscan.io.wfdb_io import read_wfdb
from cardioscan.metrics import aggregate_kaggle, challenge2024_snr, kaggle2025_snr
from cardioscan.pipeline import Digitizer, DigitizeResult
from cardioscan.record import EcgRecord, resample
from cardioscan.synth.groundtruth import MAJOR_MM, MAP_STEP, PageTruth

GOOD_GEOMETRY_MM = 0.5  # the geometry target: grid points within 0.5 mm RMS of where they belong


@dataclass
class Page:
    image: Path
    truth: np.ndarray  # (12, N) mV, NaN where the paper shows nothing (when known)
    fs: float
    category: str
    layout: str
    geometry: PageTruth | None = None  # a synth page's geometry truth (None for image + WFDB pairs)


def pages_with_truth(directory: Path) -> list[Page]:
    """`cardioscan synth` pages (image + .json + .npz), or images beside a WFDB record of the
    same stem (`a.png` + `a.hea`), whose true signal is then taken as the whole record."""
    pages = []
    for image in sorted(p for p in directory.iterdir() if p.suffix.lower() in IMAGE_SUFFIXES):
        stem = image.with_suffix("")
        if stem.with_suffix(".json").exists() and stem.with_suffix(".npz").exists():
            truth = PageTruth.load(stem)
            pages.append(Page(image, truth.shown, truth.meta["fs"], truth.meta["source_category"],
                              truth.meta["layout_name"], truth))
        elif stem.with_suffix(".hea").exists():
            record = read_wfdb(stem)
            pages.append(Page(image, record.signals, record.fs, "unknown", "unknown"))
    if not pages:
        raise ValueError(f"{directory} holds no pages with known signals (synth pages, or image + WFDB of the same name)")
    return pages


def resample_record(record: EcgRecord, fs: float, n: int) -> np.ndarray:
    """The estimate at the truth's rate and length (NaN spans kept as NaN)."""
    signals = resample(record.signals, record.fs, fs)
    out = np.full((signals.shape[0], n), np.nan)
    out[:, : min(n, signals.shape[1])] = signals[:, :n]
    return out


def geometry_error(result: DigitizeResult, truth: PageTruth) -> tuple[float, float] | None:
    """How truly the page was read as flat, even paper: (RMS mm, relative px/mm error).

    Points every 5 mm of the read (upright, rectified) page go back through the frame to the
    input, and from there to page mm by the renderer's truth. The best similarity (scale,
    turn, shift) from read px to page mm leaves, per point, what no uniform scale explains:
    its RMS is the rectification's error. The similarity's scale is the true px/mm of the
    read page, against which the calibration's px/mm is judged. None when no grid point was read."""
    step = MAJOR_MM * result.calibration.px_per_mm
    h, w = result.frame.shape
    ys, xs = np.mgrid[step / 2 : h : step, step / 2 : w : step]
    read = np.stack([xs.ravel(), ys.ravel()], axis=1)
    where = (result.frame.to_input(read) / MAP_STEP)[:, ::-1].T  # (row, col) in the truth's coarse map
    # Bilinear in the coarse map; NaN off the page and off the image (NaN spreads to the neighbours).
    page_mm = np.stack([map_coordinates(truth.canonical_mm[..., c], where, order=1, cval=np.nan)
                        for c in range(2)], axis=1)
    layout = truth.meta["layout"]
    on_grid = (np.isfinite(page_mm).all(axis=1) & (page_mm[:, 0] >= layout["grid_x0_mm"])
               & (page_mm[:, 0] <= layout["grid_x1_mm"]) & (page_mm[:, 1] >= layout["grid_y0_mm"])
               & (page_mm[:, 1] <= layout["grid_y1_mm"]))
    if on_grid.sum() < 3:
        return None
    z_read = read[on_grid] @ np.array([1, 1j])
    z_mm = page_mm[on_grid] @ np.array([1, 1j])
    (scale, shift), *_ = np.linalg.lstsq(np.stack([z_read, np.ones_like(z_read)], axis=1), z_mm, rcond=None)
    residual = np.abs(z_mm - (scale * z_read + shift))
    return float(np.sqrt(np.mean(residual**2))), float(result.calibration.px_per_mm * abs(scale) - 1)


def label_errors(result: DigitizeResult, truth: PageTruth) -> list[float]:
    """Distance (page mm) from each printed lead label to the label found for it (inf when the
    right lead was not found within LABEL_MATCH_MM): both taken to the page by the renderer's truth."""
    def on_page(labels: list[LeadLabel]) -> list[LeadLabel]:
        xy = np.array([[label.x, label.y] for label in labels], np.float64).reshape(-1, 1, 2)
        mm = cv2.perspectiveTransform(xy, truth.image_to_page_mm).reshape(-1, 2) if len(labels) else xy
        return [replace(label, x=float(x), y=float(y)) for label, (x, y) in zip(labels, mm, strict=True)]

    printed = [LeadLabel(key.split(":")[1], x, y, 1.0) for key, (x, y) in truth.keypoints.items()]
    return match_labels(on_page(result.labels_in_input), on_page(printed), px_per_mm=1.0)[0]


def score_page(digitizer: Digitizer, page: Page) -> dict:
    """One page through the whole pipeline: Kaggle (signal, noise) powers, Challenge dB, seconds,
    and (for synth pages) the geometry's RMS mm and px/mm error, and the lead labels' errors (mm)."""
    start = time.perf_counter()
    result = digitizer.digitize_file(page.image)
    seconds = time.perf_counter() - start
    estimate = resample_record(result.record, page.fs, page.truth.shape[1])
    kaggle = kaggle2025_snr(page.truth, estimate, fs=page.fs)
    challenge = challenge2024_snr(np.nan_to_num(page.truth), estimate)
    geometry = geometry_error(result, page.geometry) if page.geometry is not None else None
    labels = label_errors(result, page.geometry) if page.geometry is not None and digitizer.label_net else None
    return {"kaggle": (kaggle.signal_power, kaggle.noise_power), "challenge_db": challenge.mean_db, "seconds": seconds,
            "geometry": geometry, "label_errors_mm": labels}


def group_report(scored: list[tuple[Page, dict]]) -> dict:
    """Both metrics overall, per source category and per layout."""
    groups: dict[str, list[dict]] = defaultdict(list)
    for page, row in scored:
        for key in ("all", f"category:{page.category}", f"layout:{page.layout}"):
            groups[key].append(row)
    report = {}
    for key, rows in sorted(groups.items()):
        geometry = [r["geometry"] for r in rows if r.get("geometry") is not None]
        labels = np.array([e for r in rows for e in r.get("label_errors_mm") or []])
        report[key] = {
            "pages": len(rows),
            "kaggle2025_snr_db": round(float(aggregate_kaggle([r["kaggle"] for r in rows])), 2),
            "challenge2024_snr_db": round(float(np.mean([r["challenge_db"] for r in rows])), 2),
            "seconds_per_page": round(float(np.mean([r["seconds"] for r in rows])), 2),
            # Pages without a measured geometry (none read, or not synth) count as misses.
            "geometry_rms_mm_median": round(float(np.median([g[0] for g in geometry])), 3) if geometry else None,
            "geometry_within_0.5mm": round(sum(g[0] <= GOOD_GEOMETRY_MM for g in geometry) / len(rows), 3),
            "px_per_mm_error_median": round(float(np.median([abs(g[1]) for g in geometry])), 4) if geometry else None,
            # Every printed label counts; one not found (or named wrongly) as an infinite error.
            "label_error_mm_median": finite_median(labels),
            "labels_found": round(float(np.isfinite(labels).mean()), 3) if len(labels) else None,
        }
    return report


def evaluate_directory(directory: Path, limit: int | None = None) -> dict:
    digitizer = Digitizer()
    return group_report([(page, score_page(digitizer, page)) for page in pages_with_truth(directory)[:limit]])


def format_report(report: dict) -> str:
    lines = [f"{'group':32s} {'pages':>5s} {'Kaggle2025 dB':>14s} {'Challenge2024 dB':>17s} {'s/page':>7s} "
             f"{'geom mm':>8s} {'<=0.5mm':>8s} {'px/mm err':>9s} {'label mm':>8s} {'found':>6s}"]
    for key, r in report.items():
        median = "-" if r["geometry_rms_mm_median"] is None else f"{r['geometry_rms_mm_median']:.3f}"
        scale = "-" if r["px_per_mm_error_median"] is None else f"{100 * r['px_per_mm_error_median']:.2f}%"
        label = "-" if r["label_error_mm_median"] is None else f"{r['label_error_mm_median']:.2f}"
        found = "-" if r["labels_found"] is None else f"{r['labels_found']:.0%}"
        lines.append(f"{key:32s} {r['pages']:5d} {r['kaggle2025_snr_db']:14.2f} {r['challenge2024_snr_db']:17.2f} "
                     f"{r['seconds_per_page']:7.2f} {median:>8s} {r['geometry_within_0.5mm']:8.1%} {scale:>9s} {label:>8s} {found:>6s}")
    return "\n".join(lines)
