"""`cardioscan eval`: the whole pipeline against pages whose true signals are known."""

from __future__ import annotations

import time
from collections import defaultdict
from pathlib import Path

import numpy as np

from cardioscan.metrics import aggregate_kaggle, challenge2024_snr, kaggle2025_snr
from cardioscan.pipeline import Digitizer
from cardioscan.synth.groundtruth import PageTruth


def _pages(directory: Path) -> list[tuple[Path, Path]]:
    pairs = []
    for meta in sorted(directory.glob("*.json")):
        stem = meta.with_suffix("")
        images = [p for p in stem.parent.glob(stem.name + ".*") if p.suffix.lower() in (".png", ".jpg", ".jpeg")]
        if images and stem.with_suffix(".npz").exists():
            pairs.append((images[0], stem))
    if not pairs:
        raise ValueError(f"{directory} holds no synth pages (image + .json + .npz)")
    return pairs


def evaluate_directory(directory: Path, limit: int | None = None) -> dict:
    digitizer = Digitizer()
    groups: dict[str, list[dict]] = defaultdict(list)
    for image, stem in _pages(directory)[:limit]:
        truth = PageTruth.load(stem)
        start = time.perf_counter()
        result = digitizer.digitize_file(image)
        seconds = time.perf_counter() - start
        kaggle = kaggle2025_snr(truth.shown, result.record.signals, fs=truth.meta["fs"])
        challenge = challenge2024_snr(np.nan_to_num(truth.shown), result.record.signals)
        row = {"kaggle": (kaggle.signal_power, kaggle.noise_power), "challenge_db": challenge.mean_db,
               "seconds": seconds}
        for key in ("all", f"category:{truth.meta['source_category']}", f"layout:{truth.meta['layout_name']}"):
            groups[key].append(row)
    report = {}
    for key, rows in sorted(groups.items()):
        report[key] = {
            "pages": len(rows),
            "kaggle2025_snr_db": round(float(aggregate_kaggle([r["kaggle"] for r in rows])), 2),
            "challenge2024_snr_db": round(float(np.mean([r["challenge_db"] for r in rows])), 2),
            "seconds_per_page": round(float(np.mean([r["seconds"] for r in rows])), 2),
        }
    return report


def format_report(report: dict) -> str:
    lines = [f"{'group':32s} {'pages':>5s} {'Kaggle2025 dB':>14s} {'Challenge2024 dB':>17s} {'s/page':>7s}"]
    for key, r in report.items():
        lines.append(f"{key:32s} {r['pages']:5d} {r['kaggle2025_snr_db']:14.2f} {r['challenge2024_snr_db']:17.2f} "
                     f"{r['seconds_per_page']:7.2f}")
    return "\n".join(lines)
