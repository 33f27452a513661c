"""How well `--timing auto` places printed segments in time (issue 8), on clean synthetic pages.

For each layout and each printed convention it renders 25 mm/s pages (paper speed is not
detected yet, and would confound this measure), digitizes them with
`auto`, `sequential` and `simultaneous`, and prints the share of segments placed within
±20 ms of the truth (by `auto`) and the Kaggle 2025 SNR of each mode.

    python scripts/bench_timing.py --pages 6
"""

from __future__ import annotations

import argparse
from pathlib import Path

from cardioscan.io.images import LoadedPage
from cardioscan.metrics import aggregate_kaggle, kaggle2025_snr
from cardioscan.pipeline import Digitizer
from cardioscan.synth.dataset import page_seed
from cardioscan.synth.render import RenderOptions, render_page

MODES = ("auto", "sequential", "simultaneous")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--pages", type=int, default=6, help="pages per layout and convention")
    parser.add_argument("--dpi", type=float, default=150)
    args = parser.parse_args()
    digitizers = {mode: Digitizer(timing=mode) for mode in MODES}
    print(f"{'layout':8s} {'printed':13s} {'pages':>5s} {'within 20 ms':>12s} "
          + " ".join(f"{'SNR ' + m:>17s}" for m in MODES) + "   (Kaggle 2025 dB)")
    for layout in ("3x4_r1", "3x4", "6x2"):
        for convention in ("sequential", "simultaneous"):
            placed = total = 0
            powers: dict[str, list[tuple[float, float]]] = {m: [] for m in MODES}
            pages, index = 0, 0
            while pages < args.pages:
                options = RenderOptions(category="clean", layout=layout, timing=convention, dpi=args.dpi, p_real=0.0)
                image, truth = render_page(page_seed(8, index), options)
                index += 1
                if truth.meta["mm_per_s"] != 25:  # keep paper-speed errors out of the timing figures
                    continue
                pages += 1
                page = LoadedPage(image, Path("synthetic"), 1, 1)
                for mode, digitizer in digitizers.items():
                    result = digitizer.digitize(page)
                    score = kaggle2025_snr(truth.shown, result.record.signals, fs=truth.meta["fs"])
                    powers[mode].append((score.signal_power, score.noise_power))
                    if mode != "auto":
                        continue
                    true_start = {(s["row"], s["column"]): s["t_start"] for s in truth.meta["layout"]["segments"]}
                    offsets = result.timing.offsets_s if result.timing else []
                    for seg, offset in zip(result.segments, offsets, strict=True):
                        if (seg.row, seg.column) in true_start:
                            total += 1
                            placed += abs(offset - true_start[(seg.row, seg.column)]) <= 0.02
                    total += max(0, len(true_start) - len(result.segments))
            share = placed / total if total else float("nan")
            print(f"{layout:8s} {convention:13s} {args.pages:5d} {share:12.1%} "
                  + " ".join(f"{aggregate_kaggle(powers[m]):17.2f}" for m in MODES))


if __name__ == "__main__":
    main()
