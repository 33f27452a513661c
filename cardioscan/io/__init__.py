"""Record writers by format name, so the CLI can take `--format wfdb,csv,aecg` without knowing them."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from pathlib import Path

from cardioscan.io.aecg import write_aecg
from cardioscan.io.csv_io import read_csv, write_csv
from cardioscan.io.wfdb_io import read_wfdb, write_wfdb
from cardioscan.record import EcgRecord

Writer = Callable[[EcgRecord, Path], list[Path]]

WRITERS: dict[str, Writer] = {"wfdb": write_wfdb, "csv": write_csv, "aecg": write_aecg}

__all__ = ["WRITERS", "read_csv", "read_wfdb", "write_aecg", "write_csv", "write_record", "write_wfdb"]


def write_record(record: EcgRecord, out_stem: Path, formats: Sequence[str]) -> list[Path]:
    """Write `record` beside `out_stem` in each format; all names are checked before anything is written."""
    unknown = [f for f in formats if f not in WRITERS]
    if unknown:
        raise ValueError(f"unknown output format(s) {', '.join(unknown)}; valid: {', '.join(WRITERS)}")
    paths: list[Path] = []
    for fmt in dict.fromkeys(formats):
        paths += WRITERS[fmt](record, Path(out_stem))
    return paths
