"""Where rendered signals come from: real WFDB records or the built-in simulator.

Every signal leaves here lead-consistent: the four derived limb leads are recomputed
from I and II, so III = II - I, aVR = -(I+II)/2, aVL = I - II/2, aVF = II - I/2 hold
exactly on paper as they do in the body.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path

import numpy as np

from cardioscan.io.wfdb_io import read_wfdb
from cardioscan.record import limb_leads_from_i_ii, resample
from cardioscan.synth.simulate import sample_params, simulate_12lead

RENDER_FS = 500


@dataclass(frozen=True)
class SignalSource:
    signals: np.ndarray  # (12, N) mV at RENDER_FS
    origin: str  # record path and window, or "simulated:<params>"


def make_consistent(signals: np.ndarray) -> np.ndarray:
    out = signals.copy()
    out[:6] = limb_leads_from_i_ii(signals[0], signals[1])
    return out


@lru_cache(maxsize=64)
def _load_record(path: str) -> np.ndarray:
    record = read_wfdb(path)
    return np.nan_to_num(resample(record.signals, record.fs, RENDER_FS))


def find_records(directories: list[Path]) -> list[Path]:
    """Every WFDB record (by header) below the given directories, sorted for determinism."""
    found: list[Path] = []
    for d in directories:
        found.extend(sorted(p.with_suffix("") for p in Path(d).rglob("*.hea")))
    return found


def sample_signals(rng: np.random.Generator, records: list[Path], duration_s: float = 10.0,
                   p_real: float = 0.5) -> SignalSource:
    """A 10 s, 500 Hz, lead-consistent 12-lead signal; real when records are given and drawn."""
    n = int(round(duration_s * RENDER_FS))
    if records and rng.random() < p_real:
        path = records[int(rng.integers(len(records)))]
        full = _load_record(str(path))
        if np.isnan(full).any() or full.shape[1] < n:
            full = np.pad(np.nan_to_num(full), ((0, 0), (0, max(0, n - full.shape[1]))))
        start = int(rng.integers(0, full.shape[1] - n + 1))
        window = full[:, start : start + n]
        window = window - np.median(window, axis=1, keepdims=True)
        return SignalSource(make_consistent(window), f"{path}@{start / RENDER_FS:.2f}s")
    params = sample_params(rng)
    signals = simulate_12lead(params, fs=RENDER_FS, duration_s=duration_s, rng=rng)
    return SignalSource(make_consistent(signals), f"simulated:{params.rhythm}:{params.heart_rate:.0f}bpm")
