"""Pages per minute of `cardioscan batch` with 1 and 2 workers, and its overhead over a plain loop.

The archive is `--pages` copies of the shipped example page. The plain loop loads one Digitizer
and calls `digitize_file` + `write_record` per page, with all cores for torch, as a 1-worker
batch does; the overhead is the 1-worker batch's wall time over the loop's, minus one (target < 10 %).

    python scripts/bench_batch.py --pages 8
"""

from __future__ import annotations

import argparse
import os
import shutil
import tempfile
import time
from pathlib import Path

import torch

from cardioscan.batch import BatchOptions, run_batch
from cardioscan.io import write_record
from cardioscan.pipeline import Digitizer

EXAMPLE = Path(__file__).resolve().parents[1] / "examples" / "ptbxl_HR06008_clean.png"


def plain_loop(pages: list[Path], out: Path) -> float:
    started = time.perf_counter()
    torch.set_num_threads(os.cpu_count() or 1)
    digitizer = Digitizer()
    for page in pages:
        write_record(digitizer.digitize_file(page).record, out / page.stem, ["wfdb"])
    return time.perf_counter() - started


def batch(source: Path, out: Path, workers: int) -> float:
    started = time.perf_counter()
    options = BatchOptions(threads=max(1, (os.cpu_count() or 1) // workers))
    report = run_batch([str(source)], out, options, workers=workers)
    assert report.counts.get("failed", 0) == 0, report
    return time.perf_counter() - started


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--pages", type=int, default=8)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        source = Path(tmp) / "archive"
        source.mkdir()
        pages = [shutil.copy(EXAMPLE, source / f"page{i:03d}.png") for i in range(args.pages)]
        loop = plain_loop([Path(p) for p in pages], Path(tmp) / "loop")
        print(f"plain loop     {args.pages / loop * 60:6.1f} pages/min  ({loop:.1f} s, models loaded once)")
        one = batch(source, Path(tmp) / "w1", 1)
        print(f"batch 1 worker {args.pages / one * 60:6.1f} pages/min  ({one:.1f} s)  "
              f"overhead over the loop {one / loop - 1:+.1%}")
        two = batch(source, Path(tmp) / "w2", 2)
        print(f"batch 2 workers {args.pages / two * 60:5.1f} pages/min  ({two:.1f} s)  speed-up {one / two:.2f}x")


if __name__ == "__main__":
    main()
