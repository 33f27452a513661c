"""`cardioscan eval`: the whole pipeline against pages whose true signals are known."""

from __future__ import annotations

import time
from collections import defaultdict
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from cardioscan.io.images import IMAGE_SUFFIXES
from cardioscan.io.wfdb_io import read_wfdb
from cardioscan.metrics import aggregate_kaggle, challenge2024_snr, kaggle2025_snr
from cardioscan.pipeline import Digitizer
from cardioscan.record import EcgRecord, resample
from cardioscan.synth.groundtruth import PageTruth


@dataclass
class Page:
    image: Path
    truth: np.ndarray  # (12, N) mV, NaN where the paper shows nothing (when known)
    fs: float
    category: str
    layout: str


def pages_with_truth(directory: Path) -> list[Page]:
    """`cardioscan synth` pages (image + .json + .npz), or images beside a WFDB record of the
    same stem (`a.png` + `a.hea`), whose true signal is then taken as the whole record."""
    pages = []
    for image in sorted(p for p in directory.iterdir() if p.suffix.lower() in IMAGE_SUFFIXES):
        stem = image.with_suffix("")
        if stem.with_suffix(".json").exists() and stem.with_suffix(".npz").exists():
            truth = PageTruth.load(stem)
            pages.append(Page(image, truth.shown, truth.meta["fs"], truth.meta["source_category"],
                              truth.meta["layout_name"]))
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


def score_page(digitizer: Digitizer, page: Page) -> dict:
    """One page through the whole pipeline: Kaggle (signal, noise) powers, Challenge dB, seconds."""
    start = time.perf_counter()
    result = digitizer.digitize_file(page.image)
    seconds = time.perf_counter() - start
    estimate = resample_record(result.record, page.fs, page.truth.shape[1])
    kaggle = kaggle2025_snr(page.truth, estimate, fs=page.fs)
    challenge = challenge2024_snr(np.nan_to_num(page.truth), estimate)
    return {"kaggle": (kaggle.signal_power, kaggle.noise_power), "challenge_db": challenge.mean_db, "seconds": seconds}


def group_report(scored: list[tuple[Page, dict]]) -> dict:
    """Both metrics overall, per source category and per layout."""
    groups: dict[str, list[dict]] = defaultdict(list)
    for page, row in scored:
        for key in ("all", f"category:{page.category}", f"layout:{page.layout}"):
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


def evaluate_directory(directory: Path, limit: int | None = None) -> dict:
    digitizer = Digitizer()
    return group_report([(page, score_page(digitizer, page)) for page in pages_with_truth(directory)[:limit]])


def format_report(report: dict) -> str:
    lines = [f"{'group':32s} {'pages':>5s} {'Kaggle2025 dB':>14s} {'Challenge2024 dB':>17s} {'s/page':>7s}"]
    for key, r in report.items():
        lines.append(f"{key:32s} {r['pages']:5d} {r['kaggle2025_snr_db']:14.2f} {r['challenge2024_snr_db']:17.2f} "
                     f"{r['seconds_per_page']:7.2f}")
    return "\n".join(lines)
