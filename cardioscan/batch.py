"""`cardioscan batch`: a whole archive of pages through one `Digitizer` per worker, resumable, lossless.

The manifest (`OUT/manifest.jsonl`, one JSON row per page) is the source of truth. Only the
coordinating process writes it, and only after the page's files have been renamed into place, so
a run killed at any moment (SIGKILL included) leaves whole files and whole rows, and rerunning the
same command reads only the pages that have no row yet.
"""

from __future__ import annotations

import csv
import fcntl
import glob
import hashlib
import json
import os
import re
import shutil
import signal
import tempfile
import time
import traceback
import uuid
from collections import Counter
from collections.abc import Callable, Iterable, Iterator, Sequence
from concurrent.futures import FIRST_COMPLETED, Future, ProcessPoolExecutor, wait
from concurrent.futures.process import BrokenProcessPool
from dataclasses import asdict, dataclass
from datetime import UTC, datetime
from multiprocessing import get_context
from pathlib import Path

import numpy as np

from cardioscan import __version__
from cardioscan.io.csv_io import write_text_atomic
from cardioscan.io.images import IMAGE_SUFFIXES, PDF_DPI, ImageLoadError, page_count
from cardioscan.record import LEAD_NAMES

MANIFEST = "manifest.jsonl"
TMP_DIR = ".cardioscan-tmp"  # per-page scratch inside OUT (same filesystem, so renames are atomic)
LOCK = ".cardioscan.lock"
LIST_SUFFIXES = (".txt", ".csv")
ENGINES = ("local", "ray")


class BatchError(ValueError):
    """The batch cannot start (bad sources, unwritable OUT); the message says why in one sentence."""


@dataclass(frozen=True)
class BatchOptions:
    formats: tuple[str, ...] = ("wfdb",)
    overlay: bool = False
    timing: str = "auto"
    pdf_dpi: float = PDF_DPI
    device: str = "cpu"
    threads: int = 1  # torch threads per worker


@dataclass(frozen=True)
class PageJob:
    input: str  # absolute path
    page: int  # 1-based
    n_pages: int
    stem: str  # output stem relative to OUT, e.g. "scan/2009/a_p003"


# ---------------------------------------------------------------------------------------------- inputs

def _safe_parts(rel: Path) -> list[str]:
    """Path parts that cannot climb out of OUT or hide: no '..', '.', empty or control characters."""
    parts = []
    for part in rel.parts:
        if part in ("", ".", "..", "/") or part == rel.anchor:
            continue
        parts.append("".join(c if c.isprintable() else "_" for c in part).lstrip(".") or "_")
    return parts


def _mirror(path: Path) -> Path:
    """Where an input given as a file or glob lands under OUT: its path as given, else from the cwd or root."""
    if not path.is_absolute() and ".." not in path.parts:
        return path
    resolved = path.resolve()
    try:
        return resolved.relative_to(Path.cwd().resolve())
    except ValueError:
        return resolved.relative_to(resolved.anchor)


def _listed(list_file: Path) -> list[Path]:
    """Paths in a .txt (one per line) or .csv (a `path` column, else the first) list; relative to the list."""
    text = list_file.read_text(encoding="utf-8-sig")
    if list_file.suffix.lower() == ".csv":
        rows = list(csv.reader(text.splitlines()))
        column = rows[0].index("path") if rows and "path" in rows[0] else 0
        entries = [r[column] for r in rows[1 if rows and "path" in rows[0] else 0:] if len(r) > column]
    else:
        entries = text.splitlines()
    entries = [e.strip() for e in entries if e.strip() and not e.lstrip().startswith("#")]
    return [Path(e) if Path(e).is_absolute() else list_file.parent / e for e in entries]


def discover(sources: Sequence[str], out: Path) -> list[tuple[Path, Path]]:
    """Every input file under the sources as (absolute path, mirrored relative path), sorted, OUT excluded.

    A directory is walked recursively and mirrored under its own name; a .txt/.csv file is a list of
    paths; anything else is a file or a glob. Listed files are kept whatever their suffix, so a
    file that is not an image gets its own failed row instead of vanishing.
    """
    out = out.resolve()
    found: dict[Path, Path] = {}

    def add(path: Path, rel: Path) -> None:
        resolved = path.resolve()
        if resolved != out and out not in resolved.parents:
            found.setdefault(resolved, Path(*_safe_parts(rel)) if _safe_parts(rel) else Path("_"))

    for source in sources:
        path = Path(source)
        if path.is_dir():
            root = path.resolve().parent
            for f in sorted(path.resolve().rglob("*")):
                if f.is_file() and f.suffix.lower() in IMAGE_SUFFIXES:
                    add(f, f.relative_to(root))
        elif path.is_file() and path.suffix.lower() in LIST_SUFFIXES:
            for f in _listed(path):
                add(f, _mirror(f))
        elif path.is_file():
            add(path, _mirror(path))
        else:
            matches = sorted(Path(m) for m in glob.glob(source, recursive=True))
            files = [m for m in matches if m.is_file() and m.suffix.lower() in IMAGE_SUFFIXES]
            if not files:
                raise BatchError(f"{source} is not a file, a directory or a glob matching any image")
            for f in files:
                add(f, _mirror(f))
    return sorted(found.items(), key=lambda item: str(item[1]))


def _record_name(name: str) -> str:
    """A file name WFDB accepts as a record name (letters, digits, '-', '_')."""
    return re.sub(r"[^A-Za-z0-9_-]", "_", name) or "_"


def output_stems(files: list[tuple[Path, Path]]) -> dict[Path, str]:
    """Output stem under OUT per input, before the page suffix: `scan/2009/a.pdf` → `scan/2009/a`.

    Names are made WFDB-safe; inputs that would still share a stem (`a.png` beside `a.jpg`, or
    `a b.png` beside `a_b.png`) get their suffix, then a short hash of their path, added."""
    def stem(path: Path, rel: Path, level: int) -> str:
        name = _record_name(rel.stem)
        if level >= 1:
            name += "_" + _record_name(rel.suffix.lstrip(".").lower())
        if level >= 2:
            name += "_" + hashlib.sha1(str(path).encode()).hexdigest()[:8]
        return str(rel.parent / name)

    level = dict.fromkeys((path for path, _ in files), 0)
    for next_level in (1, 2):
        stems = {path: stem(path, rel, level[path]) for path, rel in files}
        shared = Counter(stems.values())
        for path in stems:
            if shared[stems[path]] > 1:
                level[path] = next_level
    return {path: stem(path, rel, level[path]) for path, rel in files}


# -------------------------------------------------------------------------------------------- manifest

def _key(row: dict) -> tuple[str, int]:
    return row["input"], int(row["page"])


class Manifest:
    """Append-only JSONL with one row per page; reopening compacts it (a row cut by a kill is dropped)."""

    def __init__(self, path: Path) -> None:
        self.path = path

    def rows(self) -> list[dict]:
        if not self.path.exists():
            return []
        latest: dict[tuple[str, int], dict] = {}
        for line in self.path.read_text(encoding="utf-8").splitlines():
            try:
                row = json.loads(line)
                latest[_key(row)] = row
            except (json.JSONDecodeError, KeyError, TypeError, ValueError):
                continue  # the last line of a killed run, cut mid-write
        return list(latest.values())

    def open(self, retry_failed: bool) -> dict[tuple[str, int], dict]:
        """The rows that count as done, after rewriting the file to exactly them."""
        done = {_key(r): r for r in self.rows() if not (retry_failed and r["status"] == "failed")}
        write_text_atomic(self.path, "".join(json.dumps(r) + "\n" for r in done.values()))
        self._file = self.path.open("a", encoding="utf-8")
        return done

    def append(self, row: dict) -> None:
        self._file.write(json.dumps(row) + "\n")
        self._file.flush()
        os.fsync(self._file.fileno())

    def close(self) -> None:
        self._file.close()


# ------------------------------------------------------------------------------------------- one page

def failed_row(job: PageJob, reason: str | None) -> dict:
    """A manifest row for a page that was not read (every row starts as one)."""
    return {**asdict(job), "status": "failed", "reason": reason, "layout": None, "quality": {}, "flags": [],
            "outputs": [], "seconds": 0.0, "finished": datetime.now(UTC).isoformat(timespec="seconds")}


class PageWorker:
    """Holds one Digitizer (models loaded once) and turns a PageJob into its files and manifest row."""

    def __init__(self, options: BatchOptions) -> None:
        import torch

        from cardioscan.pipeline import Digitizer

        torch.set_num_threads(max(1, options.threads))
        self.options = options
        self.digitizer = Digitizer(timing=options.timing, device=options.device)
        trace_net = self.digitizer.trace_net
        source_net = self.digitizer.source_net
        self.versions = {"cardioscan": __version__,
                         "trace_model": trace_net.version if trace_net else "classical ink mask",
                         "source_model": source_net.version if source_net else None}

    def run(self, job: PageJob, out: str) -> dict:
        from cardioscan.pipeline import NO_ECG

        started = time.perf_counter()
        row = {**failed_row(job, None), "versions": self.versions}
        try:
            result = self.digitizer.digitize_file(Path(job.input), job.page, self.options.pdf_dpi)
            row.update(layout=result.layout, flags=result.flags,
                       source=result.source.summary() if result.source else None,
                       quality=dict(zip(LEAD_NAMES, np.round(result.record.quality, 3).tolist(), strict=True)))
            if any(flag.startswith(NO_ECG) for flag in result.flags):
                row["reason"] = "; ".join(result.flags)
            else:
                row["outputs"] = self._write(result, Path(out), job.stem)
                row["status"] = "flagged" if result.flags else "ok"
                row["reason"] = "; ".join(result.flags) or None
        except ImageLoadError as exc:
            row["reason"] = str(exc)
        except Exception as exc:  # one bad page never stops the archive; its row says what happened
            row["reason"] = f"internal error: {type(exc).__name__}: {exc}"
            row["traceback"] = traceback.format_exc(limit=5)
        row["seconds"] = round(time.perf_counter() - started, 3)
        row["finished"] = datetime.now(UTC).isoformat(timespec="seconds")
        return row

    def _write(self, result, out: Path, stem: str) -> list[str]:
        """Write into a scratch folder in OUT, then rename each file into place: never a half-written file."""
        import cv2

        from cardioscan.io import write_record
        from cardioscan.pipeline import draw_overlay

        scratch = out / TMP_DIR / uuid.uuid4().hex
        name = Path(stem).name
        scratch.mkdir(parents=True)
        try:
            files = write_record(result.record, scratch / name, self.options.formats)
            if self.options.overlay:
                files.append(scratch / f"{name}.overlay.png")
                cv2.imwrite(str(files[-1]), draw_overlay(result))
            final_dir = out / Path(stem).parent
            final_dir.mkdir(parents=True, exist_ok=True)
            written = []
            for f in files:
                os.replace(f, final_dir / f.name)
                written.append(str(Path(stem).parent / f.name))
            return written
        finally:
            shutil.rmtree(scratch, ignore_errors=True)


# ------------------------------------------------------------------------------------------- engines

_worker: PageWorker | None = None


def _start_worker(options: BatchOptions) -> None:
    global _worker
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # Ctrl-C is the coordinator's: it lets pages in flight finish
    _worker = PageWorker(options)


def _run_in_worker(job: PageJob, out: str) -> dict:
    assert _worker is not None
    return _worker.run(job, out)


def _local_rows(jobs: list[PageJob], out: Path, options: BatchOptions, workers: int,
                stopping: Callable[[], bool]) -> Iterator[dict]:
    """Rows as pages finish, from `workers` processes; no new page starts once `stopping()` is true.

    A worker that dies (killed for memory, say) breaks the pool: a new pool takes over, and the
    pages that were in flight are tried once more; a page in flight at two deaths fails."""
    if workers == 1:
        worker = PageWorker(options)
        for job in jobs:
            if stopping():
                return
            yield worker.run(job, str(out))
        return
    queue = list(reversed(jobs))
    deaths: Counter = Counter()
    while queue and not stopping():
        with ProcessPoolExecutor(workers, mp_context=get_context("spawn"), initializer=_start_worker,
                                 initargs=(options,)) as pool:
            in_flight: dict[Future, PageJob] = {}
            broken = False
            while True:
                while not broken and not stopping() and queue and len(in_flight) < 2 * workers:
                    job = queue.pop()
                    in_flight[pool.submit(_run_in_worker, job, str(out))] = job
                if not in_flight:
                    break
                done, _ = wait(in_flight, return_when=FIRST_COMPLETED)
                for future in done:
                    job = in_flight.pop(future)
                    try:
                        yield future.result()
                    except BrokenProcessPool:
                        broken = True
                        deaths[job] += 1
                        if deaths[job] < 2:
                            queue.append(job)
                        else:
                            yield failed_row(job, "a worker process died twice while this page was in flight "
                                                  "(out of memory?)")


def _ray_rows(jobs: list[PageJob], out: Path, options: BatchOptions, workers: int, address: str | None,
              stopping: Callable[[], bool]) -> Iterator[dict]:
    """Rows from Ray actors (one Digitizer each, a GPU each when `--device cuda`); OUT must be shared storage."""
    try:
        import ray
        from ray.util import ActorPool
    except ImportError as exc:
        raise BatchError("--engine ray needs Ray: pip install 'cardioscan[ray]'") from exc
    ray.init(address=address, ignore_reinit_error=True, log_to_driver=False, include_dashboard=False)
    actor = ray.remote(num_cpus=options.threads, num_gpus=1 if options.device == "cuda" else 0)(PageWorker)
    pool = ActorPool([actor.remote(options) for _ in range(workers)])
    pending = iter(jobs)
    for _ in range(2 * workers):
        if (job := next(pending, None)) is not None:
            pool.submit(lambda a, j: a.run.remote(j, str(out)), job)
    while pool.has_next():
        yield pool.get_next_unordered()
        if not stopping() and (job := next(pending, None)) is not None:
            pool.submit(lambda a, j: a.run.remote(j, str(out)), job)


# ---------------------------------------------------------------------------------------------- a run

@dataclass
class BatchReport:
    total: int  # pages known (done before and now)
    skipped: int  # already in the manifest
    counts: Counter  # status -> pages, over the whole manifest
    interrupted: bool


def _writable(out: Path) -> None:
    try:
        out.mkdir(parents=True, exist_ok=True)
        with tempfile.NamedTemporaryFile(dir=out, prefix=".probe-"):
            pass
    except OSError as exc:
        raise BatchError(f"cannot write to the output directory {out}: {exc.strerror or exc}") from exc


def _plan(files: list[tuple[Path, Path]], done: dict[tuple[str, int], dict],
          unreadable: Callable[[dict], None]) -> tuple[list[PageJob], int]:
    """Page jobs not yet done, and how many pages the inputs hold; a file whose pages cannot be
    counted gets its failed row here."""
    stems = output_stems(files)
    pages_done: dict[str, set[int]] = {}
    known_pages: dict[str, int] = {}
    for (path, page), row in done.items():
        pages_done.setdefault(path, set()).add(page)
        known_pages[path] = int(row.get("n_pages") or 1)
    jobs: list[PageJob] = []
    total = 0
    for path, _ in files:
        key = str(path)
        n = known_pages.get(key)
        if n is None or len(pages_done.get(key, ())) < n:
            try:
                n = page_count(path)
            except ImageLoadError as exc:
                total += 1
                if (key, 1) not in done:
                    unreadable(failed_row(PageJob(key, 1, 0, stems[path]), str(exc)))
                continue
        total += n
        for page in range(1, n + 1):
            if (key, page) not in done:
                stem = f"{stems[path]}_p{page:03d}"
                jobs.append(PageJob(key, page, n, stem))
    return jobs, total


def run_batch(sources: Sequence[str], out: Path, options: BatchOptions, workers: int = 1, engine: str = "local",
              address: str | None = None, retry_failed: bool = False,
              progress: Callable[[int, int], None] | None = None) -> BatchReport:
    """Digitize every page under `sources` into `out`, skipping pages the manifest already holds.

    `progress(done, total)` is called after each page. Ctrl-C stops taking new pages; the pages in
    flight finish and get their rows (a second Ctrl-C abandons them; they are redone next run).
    """
    if engine not in ENGINES:
        raise BatchError(f"--engine must be one of {', '.join(ENGINES)}, not {engine!r}")
    from cardioscan.io import WRITERS
    from cardioscan.timing import check_timing_mode

    unknown = [f for f in options.formats if f not in WRITERS]
    if unknown:
        raise BatchError(f"unknown output format(s) {', '.join(unknown)}; valid: {', '.join(WRITERS)}")
    check_timing_mode(options.timing)
    out = out.resolve()
    _writable(out)
    lock = (out / LOCK).open("w")
    try:
        fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError as exc:
        raise BatchError(f"another cardioscan batch is writing to {out}") from exc
    try:
        shutil.rmtree(out / TMP_DIR, ignore_errors=True)  # scratch of a killed run
        files = discover(sources, out)
        manifest = Manifest(out / MANIFEST)
        done = manifest.open(retry_failed)
        unreadable = 0

        def failed_before_reading(row: dict) -> None:
            nonlocal unreadable
            unreadable += 1
            manifest.append(row)

        try:
            jobs, total = _plan(files, done, failed_before_reading)
            skipped = total - len(jobs) - unreadable
            interrupted = False

            def stopping() -> bool:
                return interrupted

            def on_interrupt(signum, frame) -> None:
                nonlocal interrupted
                if interrupted:
                    raise KeyboardInterrupt
                interrupted = True

            previous = signal.signal(signal.SIGINT, on_interrupt)
            finished = 0
            try:
                rows: Iterable[dict] = (_ray_rows(jobs, out, options, workers, address, stopping) if engine == "ray"
                                        else _local_rows(jobs, out, options, workers, stopping))
                for row in rows:
                    manifest.append(row)
                    finished += 1
                    if progress:
                        progress(skipped + unreadable + finished, total)
            except KeyboardInterrupt:
                interrupted = True
            finally:
                signal.signal(signal.SIGINT, previous)
        finally:
            manifest.close()
            shutil.rmtree(out / TMP_DIR, ignore_errors=True)
        counts = Counter(r["status"] for r in manifest.rows())
        return BatchReport(total, skipped, counts, interrupted and finished < len(jobs))
    finally:
        lock.close()


def summarize(out: Path, slowest: int = 5) -> dict:
    """Counts per status, layout and flag over OUT's manifest, and the slowest pages."""
    path = Path(out) / MANIFEST
    if not path.exists():
        raise BatchError(f"{path} does not exist: not a cardioscan batch output")
    rows = Manifest(path).rows()
    flags = Counter(f.split(":")[0].split(" (")[0] for r in rows for f in r.get("flags", []))
    failures = Counter((r.get("reason") or "").split(":")[0] for r in rows if r["status"] == "failed")
    slow = sorted(rows, key=lambda r: r.get("seconds", 0.0), reverse=True)[:slowest]
    return {"pages": len(rows), "status": dict(Counter(r["status"] for r in rows)),
            "layout": dict(Counter(str(r.get("layout")) for r in rows if r["status"] != "failed")),
            "flags": dict(flags.most_common()), "failures": dict(failures.most_common()),
            "slowest": [{"input": r["input"], "page": r["page"], "seconds": r.get("seconds")} for r in slow]}


def format_summary(summary: dict) -> str:
    lines = [f"{summary['pages']} pages: " + ", ".join(f"{n} {s}" for s, n in sorted(summary["status"].items()))]
    for title in ("layout", "flags", "failures"):
        if summary[title]:
            lines.append(f"{title}:")
            lines += [f"  {n:6d}  {name}" for name, n in summary[title].items()]
    lines.append("slowest:")
    lines += [f"  {r['seconds']:7.2f} s  {r['input']} p{r['page']}" for r in summary["slowest"]]
    return "\n".join(lines)
