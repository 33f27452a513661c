"""The `cardioscan` command line: it parses, calls the Python API, and maps errors to messages.

Exit codes: 0 ok, 1 done but flagged or partly failed, 2 bad input or usage.
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Annotated

import typer

from cardioscan import __version__

app = typer.Typer(
    name="cardioscan",
    help="Turn pictures of paper 12-lead ECGs into calibrated digital signals.",
    no_args_is_help=True,
    pretty_exceptions_show_locals=False,
    add_completion=False,
)

DEFAULT_RECORDS = Path(__file__).resolve().parents[2] / "shared" / "ecg-records"


def fail(message: str, code: int = 2) -> None:
    typer.echo(f"cardioscan: {message}", err=True)
    raise typer.Exit(code)


def _version(value: bool) -> None:
    if value:
        typer.echo(f"cardioscan {__version__}")
        raise typer.Exit()


@app.callback()
def main(
    version: Annotated[bool, typer.Option("--version", callback=_version, is_eager=True,
                                          help="Print the version and exit.")] = False,
) -> None:
    """cardioscan: paper ECG images to WFDB / HL7 aECG / CSV."""


def _split(values: str | None) -> list[str] | None:
    return [v.strip() for v in values.split(",") if v.strip()] if values else None


@app.command()
def synth(
    out: Annotated[Path, typer.Option("--out", "-o", help="Directory to write pages into.")] = Path("synth"),
    n: Annotated[int, typer.Option("--n", min=1, help="Number of pages.")] = 12,
    seed: Annotated[int, typer.Option(help="Seed; the same seed gives identical files.")] = 0,
    workers: Annotated[int, typer.Option(min=1, help="Parallel processes.")] = 1,
    categories: Annotated[str | None, typer.Option(help="Comma-separated source categories to cycle through.")] = None,
    layouts: Annotated[str | None, typer.Option(help="Comma-separated layouts to cycle through.")] = None,
    records: Annotated[list[Path] | None, typer.Option(
        help="WFDB directories to draw real signals from (default: ../shared/ecg-records if present).")] = None,
    p_real: Annotated[float, typer.Option(min=0.0, max=1.0, help="Share of pages drawn from real records.")] = 0.5,
    dpi: Annotated[float | None, typer.Option(min=50, max=600, help="Render resolution (default: sampled).")] = None,
    image_format: Annotated[str, typer.Option("--image-format",
                                              help="auto (JPEG for photos, PNG otherwise), png or jpg.")] = "auto",
    preview: Annotated[Path | None, typer.Option(
        help="Write a contact sheet (one page per category and layout) to this PNG instead.")] = None,
) -> None:
    """Render synthetic paper ECGs with complete ground truth (image + .json + .npz per page)."""
    from cardioscan.synth.dataset import contact_sheet, generate
    from cardioscan.synth.render import RenderOptions
    from cardioscan.synth.signals import find_records

    if image_format not in ("auto", "png", "jpg"):
        fail(f"--image-format must be auto, png or jpg, not {image_format!r}")
    record_dirs = records if records else ([DEFAULT_RECORDS] if DEFAULT_RECORDS.is_dir() else [])
    for d in record_dirs:
        if not d.is_dir():
            fail(f"records directory {d} does not exist")
    options = RenderOptions(records=find_records(record_dirs), p_real=p_real, dpi=dpi)
    try:
        if preview is not None:
            import cv2

            sheet = contact_sheet(seed, options)
            preview.parent.mkdir(parents=True, exist_ok=True)
            cv2.imwrite(str(preview), cv2.cvtColor(sheet, cv2.COLOR_RGB2BGR))
            typer.echo(str(preview))
            return
        show_bar = sys.stderr.isatty()
        done = 0

        def tick(k: int) -> None:
            nonlocal done
            done += k
            if show_bar:
                typer.echo(f"\r{done}/{n} pages", err=True, nl=False)

        generate(n, out, seed, workers, _split(categories), _split(layouts), options, image_format, tick)
        if show_bar:
            typer.echo("", err=True)
        typer.echo(f"wrote {n} pages to {out}", err=True)
    except (ValueError, OSError) as exc:
        fail(str(exc))


@app.command()
def digitize(
    image: Annotated[Path, typer.Argument(help="PNG, JPEG, TIFF, BMP, WebP or PDF.")],
    out: Annotated[Path | None, typer.Option("--out", "-o", help="Output stem or directory (default: beside the input).")] = None,
    formats: Annotated[str, typer.Option("--format", help="Comma-separated: wfdb, aecg, csv.")] = "wfdb",
    page: Annotated[int, typer.Option(min=1, help="PDF page or TIFF frame, 1-based.")] = 1,
    overlay: Annotated[bool, typer.Option(help="Also write <stem>.overlay.png with the traces drawn over the input.")] = False,
    as_json: Annotated[bool, typer.Option("--json", help="Print the summary as JSON on stdout (and nothing else).")] = False,
    timing: Annotated[str, typer.Option(help="Column timing: auto (read from the page), sequential or simultaneous.")] = "auto",
    device: Annotated[str, typer.Option(help="Where the networks run: cpu or cuda.")] = "cpu",
    lvef: Annotated[bool, typer.Option("--lvef", help="Also estimate LVEF from the digitized leads (needs --lvef-weights).")] = False,
    lvef_weights: Annotated[Path | None, typer.Option(help="Trained LVEF weights (lvef.safetensors).")] = None,
    saliency: Annotated[Path | None, typer.Option(help="With --lvef: PNG of which parts of which leads drove it.")] = None,
) -> None:
    """Read one ECG image into 12 leads in mV. Exit 0: read; 1: read but flagged (see `flags`); 2: bad input."""
    import json

    import cv2

    from cardioscan.io import write_record
    from cardioscan.io.images import ImageLoadError
    from cardioscan.pipeline import Digitizer, draw_overlay

    try:
        lvef_model = None
        if lvef:  # loaded before the page is read: missing weights fail fast
            from cardioscan.lvef import LvefModel

            lvef_model = LvefModel(lvef_weights)
        result = Digitizer(timing=timing, device=device).digitize_file(image, page)
        stem = (out / image.stem if out.is_dir() else out) if out else image.with_suffix("")
        stem.parent.mkdir(parents=True, exist_ok=True)
        written = write_record(result.record, stem, _split(formats) or ["wfdb"])
        if overlay:
            overlay_path = stem.parent / f"{stem.name}.overlay.png"
            cv2.imwrite(str(overlay_path), draw_overlay(result))
            written.append(overlay_path)
    except (ImageLoadError, ValueError, OSError) as exc:
        fail(str(exc))
    summary = result.summary(written)
    if lvef_model is not None:
        summary["lvef"] = _lvef_report(lvef_model, result.record, saliency)
    if as_json:
        typer.echo(json.dumps(summary, indent=1))
    else:
        cal = summary["calibration"]
        typer.echo(f"{image}: layout {summary['layout']}, {cal['px_per_mm']:.2f} px/mm, "
                   f"{cal['mm_per_s']:g} mm/s, {cal['mm_per_mv']:g} mm/mV", err=True)
        if result.source is not None:
            typer.echo(f"source: {result.source.category} (p {result.source.probability:.2f}); preprocessing: "
                       f"{', '.join(result.preprocessing) or 'none'}", err=True)
        typer.echo("quality: " + " ".join(f"{k}={v['quality']:.2f}" for k, v in summary["leads"].items()), err=True)
        for flag in summary["flags"]:
            typer.echo(f"flag: {flag}", err=True)
        if "lvef" in summary:
            typer.echo(_lvef_line(summary["lvef"]), err=True)
        for path in written:
            typer.echo(str(path))
    if result.flags:
        raise typer.Exit(1)


@app.command("eval")
def evaluate_command(
    directory: Annotated[Path, typer.Argument(
        help="A `cardioscan synth` directory, or images beside WFDB records of the same name.")],
    limit: Annotated[int | None, typer.Option(min=1, help="Only the first N pages.")] = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print the table as JSON.")] = False,
) -> None:
    """Run the whole pipeline on pages with known signals; print both published SNR metrics
    overall, per source category and per layout, with seconds per page."""
    import json

    from cardioscan.evaluate import evaluate_directory, format_report

    if not directory.is_dir():
        fail(f"{directory} is not a directory")
    try:
        report = evaluate_directory(directory, limit)
    except (ValueError, OSError) as exc:
        fail(str(exc))
    typer.echo(json.dumps(report, indent=1) if as_json else format_report(report))


@app.command("train")
def train_command(
    stage: Annotated[str, typer.Argument(help="Stage to train: align, trace, source or lvef (grid to come).")],
    config: Annotated[Path | None, typer.Option(help="YAML config (default: configs/<stage>.yaml).")] = None,
    data: Annotated[Path | None, typer.Option(help="Directory of `cardioscan synth` pages to train on.")] = None,
    val: Annotated[Path | None, typer.Option(help="Held-out `cardioscan synth` pages to validate on.")] = None,
    run: Annotated[Path | None, typer.Option(help="Run directory; an existing run resumes (default: runs/<stage>).")] = None,
    max_minutes: Annotated[float | None, typer.Option(min=0.1, help="Stop (resumably) after this long.")] = None,
    steps: Annotated[int | None, typer.Option(min=1, help="Override the schedule length in the config.")] = None,
    table: Annotated[Path | None, typer.Option(
        help="lvef only: CSV of records (path, lvef, optional patient_id, fs, auxiliary labels).")] = None,
) -> None:
    """Train a stage's network (align, trace, source: on rendered pages; lvef: on a table of records);
    rerunning the same command resumes it."""
    from dataclasses import replace

    config_path = config or Path("configs") / f"{stage}.yaml"
    if config is None and not config_path.exists():  # run from elsewhere: the checkout's own configs
        config_path = Path(__file__).resolve().parents[1] / "configs" / f"{stage}.yaml"
    if not config_path.exists():
        fail(f"no config {config_path}; pass --config")
    if stage == "lvef":
        _train_lvef(config_path, table, run, max_minutes, steps)
        return
    if stage == "source":
        _train_source(config_path, data, val, run, max_minutes, steps)
        return
    from cardioscan.train import TrainConfig, train

    try:
        cfg = TrainConfig.load(config_path)
    except (TypeError, ValueError) as exc:
        fail(f"{config_path}: {exc}")
    if cfg.stage != stage:
        fail(f"{config_path} is a config for stage {cfg.stage!r}, not {stage!r}")
    cfg = replace(cfg, train_dir=str(data or cfg.train_dir), val_dir=str(val or cfg.val_dir), steps=steps or cfg.steps)
    try:
        train(cfg, run or Path("runs") / stage, max_minutes, log=lambda m: typer.echo(m, err=True))
    except (ValueError, FileNotFoundError) as exc:
        fail(str(exc))


@app.command()
def batch(
    sources: Annotated[list[str] | None, typer.Argument(
        help="Directories (recursive), image/PDF files, globs, or .txt/.csv lists of paths.")] = None,
    out: Annotated[Path | None, typer.Option("--out", "-o", help="Output directory (mirrors the input tree).")] = None,
    formats: Annotated[str, typer.Option("--format", help="Comma-separated: wfdb, aecg, csv.")] = "wfdb",
    overlay: Annotated[bool, typer.Option(help="Also write <stem>.overlay.png per page.")] = False,
    workers: Annotated[int, typer.Option(min=1, help="Parallel workers, each loading the models once.")] = 1,
    device: Annotated[str, typer.Option(help="cpu or cuda.")] = "cpu",
    engine: Annotated[str, typer.Option(help="local (processes on this machine) or ray (a Ray cluster).")] = "local",
    address: Annotated[str | None, typer.Option(help="Ray cluster address (default: start a local Ray).")] = None,
    retry_failed: Annotated[bool, typer.Option(help="Read again the pages the manifest lists as failed.")] = False,
    dpi: Annotated[float, typer.Option(min=50, max=600, help="Resolution PDF pages are rendered at.")] = 200,
    timing: Annotated[str, typer.Option(help="Column timing: auto, sequential or simultaneous.")] = "auto",
    summary: Annotated[Path | None, typer.Option(
        help="Print the report of an existing batch output directory and exit.")] = None,
) -> None:
    """Digitize a whole archive; rerun the same command to resume. Exit 0: no page failed;
    1: some pages failed (see OUT/manifest.jsonl); 2: bad usage; 130: stopped by Ctrl-C."""
    import os

    from cardioscan.batch import BatchOptions, format_summary, run_batch, summarize

    try:
        if summary is not None:
            typer.echo(format_summary(summarize(summary)))
            return
        if not sources or out is None:
            fail("give the sources and -o OUT (or --summary OUT)")
        options = BatchOptions(tuple(_split(formats) or ["wfdb"]), overlay, timing, dpi, device,
                               threads=max(1, (os.cpu_count() or 1) // workers))
        report = _run_with_progress(run_batch, sources, out, options, workers, engine, address, retry_failed)
    except ValueError as exc:  # BatchError, or a timing mode or device this machine lacks
        fail(str(exc))
    counts = ", ".join(f"{n} {s}" for s, n in sorted(report.counts.items()))
    typer.echo(f"{report.total} pages ({report.skipped} done before): {counts}; manifest {out / 'manifest.jsonl'}",
               err=True)
    if report.interrupted:
        typer.echo("stopped: rerun the same command to go on", err=True)
        raise typer.Exit(130)
    if report.counts.get("failed"):
        raise typer.Exit(1)


def _run_with_progress(run, *args):
    """`run(*args, progress=...)` with a progress bar (pages/s, ETA) when stderr is a terminal."""
    if not sys.stderr.isatty():
        return run(*args)
    import time

    from rich.console import Console
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn

    started = time.perf_counter()
    pages = 0
    with Progress(BarColumn(), MofNCompleteColumn(), TextColumn("{task.fields[rate]}"), TimeRemainingColumn(),
                  console=Console(stderr=True)) as bar:
        task = bar.add_task("pages", total=None, rate="")

        def tick(done: int, total: int) -> None:
            nonlocal pages
            pages += 1
            bar.update(task, completed=done, total=total,
                       rate=f"{pages / (time.perf_counter() - started):.2f} pages/s")

        return run(*args, progress=tick)


def _train_source(config_path: Path, data: Path | None, val: Path | None, run: Path | None,
                  max_minutes: float | None, steps: int | None) -> None:
    from dataclasses import replace

    from cardioscan.source import SourceConfig, train_source

    try:
        cfg = SourceConfig.load(config_path)
    except (TypeError, ValueError) as exc:
        fail(f"{config_path}: {exc}")
    cfg = replace(cfg, train_dirs=[str(data)] if data else cfg.train_dirs, val_dir=str(val or cfg.val_dir),
                  steps=steps or cfg.steps)
    try:
        train_source(cfg, run or Path("runs") / "source", max_minutes, log=lambda m: typer.echo(m, err=True))
    except (ValueError, FileNotFoundError) as exc:
        fail(str(exc))


def _train_lvef(config_path: Path, table: Path | None, run: Path | None, max_minutes: float | None,
                steps: int | None) -> None:
    from dataclasses import replace

    from cardioscan.lvef import LvefConfig, train_lvef

    if table is None or not table.is_file():
        fail("cardioscan train lvef needs --table TABLE.csv (see README, LVEF)")
    try:
        cfg = LvefConfig.load(config_path)
    except (TypeError, ValueError) as exc:
        fail(f"{config_path}: {exc}")
    cfg = replace(cfg, steps=steps or cfg.steps)
    try:
        figures = train_lvef(table, cfg, run or Path("runs") / "lvef", max_minutes, log=lambda m: typer.echo(m, err=True))
    except (ValueError, OSError) as exc:
        fail(str(exc))
    if figures and figures["mae"] >= figures["baseline"]["mae"]:
        raise typer.Exit(1)


def _read_any_record(path: Path):
    """A WFDB record (stem or .hea/.dat), or our CSV, as an EcgRecord."""
    from cardioscan.io import read_csv, read_wfdb

    if path.suffix.lower() == ".csv":
        return read_csv(path)
    return read_wfdb(path.with_suffix("") if path.suffix.lower() in (".hea", ".dat") else path)


@app.command("lvef")
def lvef_command(
    record: Annotated[Path, typer.Argument(help="WFDB record (stem or .hea) or a cardioscan CSV.")],
    weights: Annotated[Path | None, typer.Option("--weights", help="Trained LVEF weights (lvef.safetensors).")] = None,
    saliency: Annotated[Path | None, typer.Option(help="Write a PNG of which parts of which leads drove the estimate.")] = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print the estimate as JSON.")] = False,
) -> None:
    """Estimate LVEF (%), its class and a calibrated uncertainty from a 12-lead record. Needs weights
    you trained: cardioscan ships none (see README, LVEF)."""
    import json

    from cardioscan.lvef import LvefModel, LvefWeightsMissing

    try:
        model = LvefModel(weights)
        ecg = _read_any_record(record)
    except LvefWeightsMissing as exc:
        fail(str(exc))
    except (ValueError, OSError) as exc:
        fail(f"{record}: {exc}")
    summary = _lvef_report(model, ecg, saliency)
    typer.echo(json.dumps(summary, indent=1) if as_json else _lvef_line(summary))


def _lvef_report(model, ecg, saliency: Path | None) -> dict:
    from cardioscan.lvef import draw_saliency

    prediction = model.predict(ecg)
    summary = prediction.summary()
    if saliency is not None:
        saliency.parent.mkdir(parents=True, exist_ok=True)
        draw_saliency(ecg, model.saliency(ecg), model.cfg.fs, saliency,
                      f"LVEF {prediction.lvef:.0f} ± {prediction.sd:.0f} %: gradient x input saliency")
        summary["saliency"] = str(saliency)
    return summary


def _lvef_line(summary: dict) -> str:
    return f"LVEF {summary['lvef']:.0f} % ± {summary['sd']:.0f} (1 sd), {summary['class']}"
