"""The 12-lead record that flows out of the pipeline and into every writer."""

from __future__ import annotations

from dataclasses import dataclass, field
from fractions import Fraction

import numpy as np
from scipy.signal import resample_poly

LEAD_NAMES: tuple[str, ...] = ("I", "II", "III", "aVR", "aVL", "aVF", "V1", "V2", "V3", "V4", "V5", "V6")
LEAD_INDEX: dict[str, int] = {name: i for i, name in enumerate(LEAD_NAMES)}
_LEAD_LOOKUP: dict[str, str] = {name.lower(): name for name in LEAD_NAMES}


def canonical_lead_name(name: str) -> str | None:
    """Standard spelling of a lead name whatever its case in the source ('AVR', 'avr', 'v1')."""
    return _LEAD_LOOKUP.get(name.strip().lower())


def limb_leads_from_i_ii(lead_i: np.ndarray, lead_ii: np.ndarray) -> np.ndarray:
    """The six limb leads from I and II (Einthoven and Goldberger), shape (6, N)."""
    return np.stack(
        [
            lead_i,
            lead_ii,
            lead_ii - lead_i,
            -(lead_i + lead_ii) / 2.0,
            lead_i - lead_ii / 2.0,
            lead_ii - lead_i / 2.0,
        ]
    )


def resample(signals: np.ndarray, fs_in: float, fs_out: float) -> np.ndarray:
    """Polyphase resampling along time of (leads, N) signals; NaN spans stay NaN."""
    if fs_in == fs_out:
        return signals
    ratio = Fraction(fs_out / fs_in).limit_denominator(1000)
    finite = np.isfinite(signals)
    out = resample_poly(np.nan_to_num(signals), ratio.numerator, ratio.denominator, axis=1)
    shown = resample_poly(finite.astype(float), ratio.numerator, ratio.denominator, axis=1) > 0.5
    return np.where(shown, out, np.nan)


@dataclass
class EcgRecord:
    """12 leads x N samples in millivolts.

    NaN marks samples the paper does not show. `quality` is per lead in [0, 1];
    `provenance` holds plain `key -> str` facts (input, page, model versions, config)
    that writers store as header comments.
    """

    signals: np.ndarray
    fs: float = 500.0
    quality: np.ndarray | None = None
    provenance: dict[str, str] = field(default_factory=dict)
    lead_names: tuple[str, ...] = LEAD_NAMES

    def __post_init__(self) -> None:
        self.signals = np.asarray(self.signals, dtype=np.float64)
        if self.signals.ndim != 2 or self.signals.shape[0] != len(self.lead_names):
            raise ValueError(
                f"signals must have shape ({len(self.lead_names)}, N), got {self.signals.shape}"
            )
        if self.fs <= 0:
            raise ValueError(f"sampling rate must be positive, got {self.fs}")
        if self.quality is None:
            self.quality = np.where(np.isnan(self.signals).all(axis=1), 0.0, 1.0)
        self.quality = np.asarray(self.quality, dtype=np.float64)

    @property
    def n_samples(self) -> int:
        return int(self.signals.shape[1])

    @property
    def duration_s(self) -> float:
        return self.n_samples / self.fs

    def lead(self, name: str) -> np.ndarray:
        return self.signals[self.lead_names.index(name)]
