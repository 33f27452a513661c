"""Pages per second of `cardioscan synth` at a fixed dpi with 1 and 2 workers.

    python scripts/bench_synth.py --n 40 --dpi 200
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

from cardioscan.synth.dataset import generate
from cardioscan.synth.render import RenderOptions
from cardioscan.synth.signals import find_records


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--n", type=int, default=40)
    parser.add_argument("--dpi", type=float, default=200)
    parser.add_argument("--records", type=Path, default=Path(__file__).resolve().parents[2] / "shared" / "ecg-records")
    args = parser.parse_args()
    records = find_records([args.records]) if args.records.is_dir() else []
    options = RenderOptions(dpi=args.dpi, records=records)
    rates = {}
    for workers in (1, 2):
        with tempfile.TemporaryDirectory() as tmp:
            generate(2, Path(tmp) / "warm", seed=1, workers=1, options=options)
            start = time.perf_counter()
            generate(args.n, Path(tmp) / "pages", seed=0, workers=workers, options=options)
            rates[workers] = args.n / (time.perf_counter() - start)
        print(f"workers={workers}: {rates[workers]:.2f} pages/s at {args.dpi:g} dpi ({args.n} pages, all categories)")
    print(f"speed-up 2 vs 1 workers: {rates[2] / rates[1]:.2f}x; target >= 2 pages/s with 2 workers")


if __name__ == "__main__":
    main()
