"""LVEF: prediction time per record (target ≤ 0.2 s) and, with --train-minutes, the toy task's
validation figures against the always-the-median baseline.

    python scripts/bench_lvef.py                      # speed of the configs/lvef.yaml model
    python scripts/bench_lvef.py --train-minutes 10   # plus a toy-task training run
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

from cardioscan.lvef import LvefConfig, LvefModel, LvefNet, synthetic_table, train_lvef
from cardioscan.record import EcgRecord

CONFIG = Path(__file__).resolve().parents[1] / "configs" / "lvef.yaml"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--train-minutes", type=float, default=0.0)
    parser.add_argument("--records", type=int, default=1000)
    args = parser.parse_args()
    cfg = LvefConfig.load(CONFIG)
    with tempfile.TemporaryDirectory() as tmp:
        table = synthetic_table(Path(tmp) / "toy", args.records if args.train_minutes else 80, seed=3)
        figures = train_lvef(table, cfg, Path(tmp) / "run", args.train_minutes or 0.01, log=print)
        model = LvefModel(Path(tmp) / "run" / "lvef.safetensors")
        torch.set_num_threads(cfg.threads)
        record = EcgRecord(np.random.default_rng(0).normal(0, 0.3, (12, cfg.samples)), fs=cfg.fs)
        model.predict(record)
        times = []
        for _ in range(20):
            t = time.perf_counter()
            model.predict(record)
            times.append(time.perf_counter() - t)
        params = sum(p.numel() for p in LvefNet(cfg).parameters())
        print(f"prediction: {np.median(times):.3f} s per 12-lead 10 s record (median of 20, {cfg.threads} thread(s), "
              f"{params / 1e6:.2f} M parameters)")
        if args.train_minutes:
            b = figures["baseline"]
            print(f"toy task after {figures['step']} steps: MAE {figures['mae']:.2f} RMSE {figures['rmse']:.2f} "
                  f"AUROC<40 {figures['auroc_lt40']:.3f} (median baseline MAE {b['mae']:.2f} RMSE {b['rmse']:.2f})")


if __name__ == "__main__":
    main()
