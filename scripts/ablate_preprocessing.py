"""Which preprocessing branches help the whole pipeline: Kaggle SNR per true source category with
no preprocessing, with every candidate route, and with each single branch routed alone.

    python scripts/ablate_preprocessing.py DIR [--per-category 6] [--json OUT.json]

DIR is a `cardioscan synth` directory the routing is *not* reported on (choose the table on one
set, report on another). A page is re-read only when a variant gives it branches it has not been
read with; pages a variant leaves alone keep their unprocessed reading.
"""

from __future__ import annotations

import argparse
import json
from collections import defaultdict
from pathlib import Path

import numpy as np

from cardioscan.evaluate import pages_with_truth, score_page
from cardioscan.io.images import load_page
from cardioscan.metrics import aggregate_kaggle
from cardioscan.pipeline import Digitizer
from cardioscan.preprocess import branches_for

CANDIDATES: dict[str, list[str]] = {
    "colour_scan": ["white_balance"],
    "grey_scan": ["clahe"],
    "fax": ["repair_fax"],
    "photocopy": ["denoise"],
    "faded_thermal": ["clahe", "unsharp"],
    "phone_photo": ["illumination", "white_balance"],
    "screen_photo": ["moire"],
    "wrinkled": ["illumination"],
    "stained": ["illumination"],
    "rotated_jpeg": ["deblock"],
}


def variants() -> dict[str, dict[str, list[str]]]:
    singles = sorted({b for branches in CANDIDATES.values() for b in branches})
    out = {"none": {}, "routed": CANDIDATES}
    for branch in singles:
        out[f"only {branch}"] = {c: [branch] for c, bs in CANDIDATES.items() if branch in bs}
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("directory", type=Path)
    parser.add_argument("--per-category", type=int, default=None, help="Only the first N pages of each category.")
    parser.add_argument("--json", type=Path, default=None, help="Write per-page figures here.")
    args = parser.parse_args()

    taken: dict[str, int] = defaultdict(int)
    pages = []
    for page in pages_with_truth(args.directory):
        if args.per_category is None or taken[page.category] < args.per_category:
            taken[page.category] += 1
            pages.append(page)
    digitizer = Digitizer()
    if digitizer.source_net is None:
        raise SystemExit("no source classifier weights installed (weights/source.safetensors)")
    table = variants()
    scores: dict[str, list[tuple[str, tuple[float, float]]]] = defaultdict(list)
    per_page = []
    for i, page in enumerate(pages):
        estimate = digitizer.source_net.classify(load_page(page.image).rgb)
        read: dict[tuple[str, ...], dict] = {}
        for name, routing in table.items():
            branches = tuple(branches_for(estimate, routing))
            if branches not in read:
                digitizer.routing = routing
                read[branches] = score_page(digitizer, page)
            scores[name].append((page.category, read[branches]["kaggle"]))
        per_page.append({"image": str(page.image), "category": page.category, "classified": estimate.category,
                         "readings": {" + ".join(k) or "none": v["kaggle"] for k, v in read.items()}})
        print(f"{i + 1}/{len(pages)} {page.image.name} {page.category} -> {estimate.category}: "
              + ", ".join(f"{' + '.join(k) or 'none'} {10 * np.log10(v['kaggle'][0] / max(v['kaggle'][1], 1e-12)):.2f}"
                          for k, v in read.items()), flush=True)

    categories = sorted({p.category for p in pages})
    print(f"\nKaggle 2025 SNR (dB) on {len(pages)} pages of {args.directory}")
    print(f"{'variant':24s} {'all':>6s} " + " ".join(f"{c[:9]:>9s}" for c in categories))
    for name, rows in scores.items():
        cells = [aggregate_kaggle([k for c, k in rows if c == category]) for category in categories]
        print(f"{name:24s} {aggregate_kaggle([k for _, k in rows]):6.2f} " + " ".join(f"{v:9.2f}" for v in cells))
    if args.json:
        args.json.write_text(json.dumps(per_page, indent=1))


if __name__ == "__main__":
    main()
