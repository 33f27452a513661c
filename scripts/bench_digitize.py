"""Seconds per stage and peak memory of `digitize` on 200-dpi pages (targets: <= 5 s a page, <= 3 GB).

    python scripts/bench_digitize.py --n 6
"""

from __future__ import annotations

import argparse
import resource
import tempfile
import time
from collections import defaultdict
from pathlib import Path

import numpy as np

from cardioscan.pipeline import Digitizer
from cardioscan.synth.dataset import generate
from cardioscan.synth.render import RenderOptions


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--n", type=int, default=6)
    parser.add_argument("--dpi", type=float, default=200)
    args = parser.parse_args()
    digitizer = Digitizer()
    stages: dict[str, list[float]] = defaultdict(list)
    totals = []
    with tempfile.TemporaryDirectory() as tmp:
        images = generate(args.n + 1, Path(tmp), seed=2024, options=RenderOptions(dpi=args.dpi, category="clean"))
        digitizer.digitize_file(images[0])  # warm-up: first-call allocations are not per-page cost
        for image in images[1:]:
            start = time.perf_counter()
            result = digitizer.digitize_file(image)
            totals.append(time.perf_counter() - start)
            for stage, seconds in result.seconds.items():
                stages[stage].append(seconds)
    trace_model = result.record.provenance["trace_model"]
    print(f"{args.n} pages at {args.dpi:g} dpi, trace model: {trace_model}")
    for stage, values in stages.items():
        print(f"  {stage:12s} {np.mean(values):6.2f} s")
    peak_gb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024**2
    print(f"end to end: {np.mean(totals):.2f} s per page (max {np.max(totals):.2f}); target <= 5 s")
    print(f"peak memory: {peak_gb:.2f} GB; target <= 3 GB")


if __name__ == "__main__":
    main()
