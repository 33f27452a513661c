"""Plain CSV: one `time_s` column then the 12 leads in mV, for spreadsheets and quick scripts.

Only the signals travel: the sampling rate is implied by `time_s`, and provenance and quality are
left to the WFDB and aECG writers. Empty cells are samples the paper does not show.
"""

from __future__ import annotations

import csv
import io
import os
import tempfile
from pathlib import Path

import numpy as np

from cardioscan.record import LEAD_INDEX, LEAD_NAMES, EcgRecord, canonical_lead_name

TIME_COLUMN = "time_s"


def write_text_atomic(path: Path, text: str) -> None:
    """Write through a temporary file in the same folder and rename, so readers never see a partial file."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "w", encoding="utf-8", newline="") as f:
            f.write(text)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def _cell(value: float) -> str:
    return "" if np.isnan(value) else repr(float(value))


def write_csv(record: EcgRecord, out_stem: Path) -> list[Path]:
    """Write `<stem>.csv`; values keep full float precision (shortest exact repr)."""
    path = Path(out_stem).with_name(Path(out_stem).name + ".csv")
    buf = io.StringIO()
    writer = csv.writer(buf, lineterminator="\n")
    writer.writerow([TIME_COLUMN, *record.lead_names])
    times = np.arange(record.n_samples) / record.fs
    for t, column in zip(times, record.signals.T, strict=True):
        writer.writerow([repr(float(t)), *map(_cell, column)])
    write_text_atomic(path, buf.getvalue())
    return [path]


def read_csv(path: str | os.PathLike[str]) -> EcgRecord:
    """Read a CSV written by `write_csv` (or any with `time_s` and lead-named columns, in any order).

    The sampling rate comes from the time column, so it needs two or more rows; unknown columns are
    skipped and absent leads are NaN.
    """
    path = Path(path)
    with path.open(newline="", encoding="utf-8") as f:
        rows = list(csv.reader(f))
    if not rows or not rows[0] or rows[0][0].strip() != TIME_COLUMN:
        raise ValueError(f"{path}: first column must be {TIME_COLUMN!r}")
    columns = {
        LEAD_INDEX[lead]: col
        for col, name in enumerate(rows[0][1:], start=1)
        if (lead := canonical_lead_name(name)) is not None
    }
    body = rows[1:]
    if len(body) < 2:
        raise ValueError(f"{path}: need at least two samples to know the sampling rate")
    try:
        times = np.array([float(r[0]) for r in body])
        signals = np.full((len(LEAD_NAMES), len(body)), np.nan)
        for lead_row, col in columns.items():
            signals[lead_row] = [float(r[col]) if col < len(r) and r[col].strip() else np.nan for r in body]
    except ValueError as exc:
        raise ValueError(f"{path}: non-numeric cell ({exc})") from None
    span = times[-1] - times[0]
    if not span > 0:
        raise ValueError(f"{path}: {TIME_COLUMN} must increase")
    fs = round((len(times) - 1) / span, 6)
    return EcgRecord(signals=signals, fs=fs)
