"""WFDB (PhysioNet) records: the format ECG research tools read natively.

Written with fixed, explicit storage (format 16, 1000 adc units per mV, baseline 0) so every file
has the same 1 uV resolution and +-32.767 mV range; left to itself wfdb picks format 32 and
record-dependent gains. Samples not shown on the paper (NaN) are stored as the format-16 invalid
value -32768, which WFDB readers return as NaN.
"""

from __future__ import annotations

import os
import re
import shutil
import tempfile
from pathlib import Path

import numpy as np
import wfdb

from cardioscan.record import LEAD_INDEX, LEAD_NAMES, EcgRecord, canonical_lead_name

ADC_GAIN = 1000.0  # adc units per mV: one LSB is 1 uV
INVALID_SAMPLE = -32768  # WFDB's "no sample" value for format 16
_DIGITAL_MAX = 32767
_UNIT_TO_MV = {"mv": 1.0, "uv": 1e-3, "µv": 1e-3, "μv": 1e-3, "v": 1e3}
_RECORD_NAME = re.compile(r"[-\w]+")
_LINE_BREAKS = re.compile(r"[\r\n]+")
_SIGNAL_SUFFIXES = {".hea", ".dat", ".mat"}
_QUALITY_PREFIX = "quality "
_UNKEYED = "wfdb comments"


def _header_comments(record: EcgRecord) -> list[str]:
    """Provenance and per-lead quality as `Key: value` lines, the form WFDB tools show as-is."""
    lines = []
    for key, value in record.provenance.items():
        if ":" in key or "\n" in key or "\r" in key or not key.strip():
            raise ValueError(f"provenance key {key!r} must be non-empty, without ':' or line breaks")
        one_line = _LINE_BREAKS.sub(" ", str(value))
        lines.append(f"{key}: {one_line}")
    quality = np.asarray(record.quality)
    lines += [f"{_QUALITY_PREFIX}{name}: {q:.6g}" for name, q in zip(record.lead_names, quality, strict=True)]
    return lines


def write_wfdb(record: EcgRecord, out_stem: Path) -> list[Path]:
    """Write `<stem>.hea` and `<stem>.dat`; returns both paths.

    Values are rounded to 1 uV and clipped to +-32.767 mV (never wrapped). Files are written in a
    private temporary folder beside the target and renamed into place, so each appears whole; the
    data file lands first, so the new header never points at a missing data file.
    """
    out_stem = Path(out_stem)
    name = out_stem.name
    if not _RECORD_NAME.fullmatch(name):
        raise ValueError(f"WFDB record name {name!r} may only hold letters, digits, '-' and '_'")
    if record.n_samples == 0:
        raise ValueError("cannot write a WFDB record with no samples")
    missing = np.isnan(record.signals)
    digital = np.clip(
        np.round(np.nan_to_num(record.signals * ADC_GAIN, nan=0.0)), -_DIGITAL_MAX, _DIGITAL_MAX
    )
    digital = np.where(missing, INVALID_SAMPLE, digital).astype(np.int16)

    n_sig = len(record.lead_names)
    parent = out_stem.parent
    parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(dir=parent, prefix=f".{name}.tmp-"))
    try:
        wfdb.wrsamp(
            record_name=name,
            fs=float(record.fs),
            units=["mV"] * n_sig,
            sig_name=list(record.lead_names),
            d_signal=digital.T.copy(),
            fmt=["16"] * n_sig,
            adc_gain=[ADC_GAIN] * n_sig,
            baseline=[0] * n_sig,
            comments=_header_comments(record),
            write_dir=str(tmp),
        )
        header, data = parent / f"{name}.hea", parent / f"{name}.dat"
        os.replace(tmp / data.name, data)
        os.replace(tmp / header.name, header)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return [header, data]


def _record_path(path_or_stem: str | os.PathLike[str]) -> Path:
    path = Path(path_or_stem)
    return path.with_suffix("") if path.suffix.lower() in _SIGNAL_SUFFIXES else path


def _parse_comments(comments: list[str]) -> tuple[dict[str, str], dict[int, float]]:
    """`Key: value` comments become provenance; our `quality <lead>: q` lines become quality."""
    provenance: dict[str, str] = {}
    quality: dict[int, float] = {}
    unkeyed: list[str] = []
    for line in comments:
        key, sep, value = line.partition(":")
        key, value = key.strip(), value.strip()
        if not sep or not key:
            if line.strip():
                unkeyed.append(line.strip())
            continue
        if key.startswith(_QUALITY_PREFIX):
            lead = canonical_lead_name(key[len(_QUALITY_PREFIX) :])
            try:
                q = float(value)
            except ValueError:
                q = float("nan")
            if lead is not None and 0.0 <= q <= 1.0:
                quality[LEAD_INDEX[lead]] = q
                continue
        provenance[key] = value
    if unkeyed:
        provenance[_UNKEYED] = " | ".join(unkeyed)
    return provenance, quality


def read_wfdb(path_or_stem: str | os.PathLike[str]) -> EcgRecord:
    """Read any WFDB record holding standard leads into an `EcgRecord`.

    Lead names match in any case and order; leads the record lacks are NaN rows, and other signals
    (Frank leads, respiration, ...) are skipped. Signals are converted to mV from mV, uV or V.
    Header comments become provenance, and our per-lead `quality` lines are restored.
    """
    stem = _record_path(path_or_stem)
    header_path = stem.with_name(stem.name + ".hea")
    if not header_path.is_file():
        raise FileNotFoundError(f"no WFDB header at {header_path}")
    header = wfdb.rdheader(str(stem))
    channels: list[int] = []
    rows: list[int] = []
    for channel, sig_name in enumerate(header.sig_name or []):
        lead = canonical_lead_name(sig_name)
        if lead is not None and LEAD_INDEX[lead] not in rows:
            channels.append(channel)
            rows.append(LEAD_INDEX[lead])
    if not channels:
        raise ValueError(f"{stem}: none of its signals {header.sig_name} is a standard 12-lead name")

    rec = wfdb.rdrecord(str(stem), channels=channels)
    signals = np.full((len(LEAD_NAMES), rec.sig_len), np.nan)
    for col, (row, unit) in enumerate(zip(rows, rec.units, strict=True)):
        factor = _UNIT_TO_MV.get((unit or "mV").strip().lower())
        if factor is None:
            raise ValueError(f"{stem}: unsupported unit {unit!r} for lead {LEAD_NAMES[row]}")
        signals[row] = rec.p_signal[:, col] * factor

    provenance, parsed_quality = _parse_comments(rec.comments or [])
    quality = np.where(np.isnan(signals).all(axis=1), 0.0, 1.0)
    for row, q in parsed_quality.items():
        quality[row] = q
    return EcgRecord(signals=signals, fs=float(rec.fs), quality=quality, provenance=provenance)
