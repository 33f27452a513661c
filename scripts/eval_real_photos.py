"""The whole pipeline on the real phone photos in ../shared/real-photos (PTB-XL records printed
as 3x4 pages with a lead II rhythm strip, columns sequential), scored with both metrics.

    python scripts/eval_real_photos.py [--dir ../shared/real-photos]
"""

from __future__ import annotations

import argparse
import csv
import time
from pathlib import Path

import numpy as np

from cardioscan.io.wfdb_io import read_wfdb
from cardioscan.metrics import aggregate_kaggle, challenge2024_snr, kaggle2025_snr
from cardioscan.pipeline import Digitizer
from cardioscan.record import LEAD_INDEX
from cardioscan.synth.layout import _COLUMNS


def shown_on_paper(signals: np.ndarray, fs: float) -> np.ndarray:
    """The true signal as the page shows it: 2.5 s per lead by column, lead II for all 10 s."""
    shown = np.full_like(signals, np.nan)
    n = int(2.5 * fs)
    for c, leads in enumerate(_COLUMNS["3x4"]):
        for lead in leads:
            j = LEAD_INDEX[lead]
            shown[j, c * n : (c + 1) * n] = signals[j, c * n : (c + 1) * n]
    shown[LEAD_INDEX["II"]] = signals[LEAD_INDEX["II"]]
    return shown


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--dir", type=Path, default=Path(__file__).resolve().parents[2] / "shared" / "real-photos")
    args = parser.parse_args()
    digitizer = Digitizer()
    powers, challenge = [], []
    with open(args.dir / "photos.csv") as f:
        rows = list(csv.DictReader(f))
    print(f"{'photo':18s} {'Kaggle dB':>9s} {'Chall. dB':>9s} {'s':>5s}  layout / flags")
    for row in rows:
        truth = read_wfdb(args.dir / "signals" / row["record"])
        shown = shown_on_paper(truth.signals[:, : int(10 * truth.fs)], truth.fs)
        start = time.perf_counter()
        result = digitizer.digitize_file(args.dir / "images" / row["image_filename"])
        seconds = time.perf_counter() - start
        score = kaggle2025_snr(shown, result.record.signals, fs=truth.fs)
        ch = challenge2024_snr(np.nan_to_num(shown), result.record.signals).mean_db
        powers.append((score.signal_power, score.noise_power))
        challenge.append(ch)
        print(f"{row['image_filename']:18s} {score.snr_db:9.2f} {ch:9.2f} {seconds:5.1f}  {result.layout} {result.flags[:2]}")
    print(f"all {len(rows)} photos: Kaggle 2025 {aggregate_kaggle(powers):.2f} dB, "
          f"Challenge 2024 {np.mean(challenge):.2f} dB")


if __name__ == "__main__":
    main()
