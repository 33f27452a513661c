"""`cardioscan batch` on a folder an archive really holds: good pages, multi-page files, every kind
of bad file; killed with SIGKILL and resumed; through a local Ray instance."""

from __future__ import annotations

import json
import os
import shutil
import signal
import struct
import subprocess
import sys
import time
import zlib
from collections import Counter
from pathlib import Path

import cv2
import numpy as np
import pytest
from PIL import Image
from typer.testing import CliRunner

from cardioscan.batch import MANIFEST, TMP_DIR, Manifest, discover, output_stems
from cardioscan.cli import app
from cardioscan.io import read_wfdb

EXAMPLE = Path(__file__).resolve().parents[1] / "examples" / "ptbxl_HR06008_clean.png"
SCALE = 0.75  # 150 dpi pages: the same reading, a faster test
runner = CliRunner()


def _png_header_only(path: Path, width: int, height: int) -> None:
    """A PNG whose header claims width x height pixels: a decompression bomb in 60 bytes."""
    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))

    ihdr = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    path.write_bytes(b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IEND", b""))


@pytest.fixture(scope="module")
def archive(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("archive") / "scan"
    (root / "2009").mkdir(parents=True)
    (root / "bad").mkdir()
    page = Image.open(EXAMPLE).convert("RGB")
    page = page.resize((round(page.width * SCALE), round(page.height * SCALE)), Image.Resampling.LANCZOS)
    page.save(root / "2009" / "a.png")
    page.save(root / "2009" / "fax.tif", save_all=True, append_images=[page], compression="tiff_lzw")
    page.save(root / "2009" / "three pages.pdf", save_all=True, append_images=[page, page], resolution=150.0)
    bad = root / "bad"
    (bad / "empty.png").write_bytes(b"")
    (bad / "not_an_image.png").write_text("this is a note, not a scan\n")
    page.save(bad / "truncated.jpg", quality=90)
    data = (bad / "truncated.jpg").read_bytes()
    (bad / "truncated.jpg").write_bytes(data[: len(data) // 3])
    _png_header_only(bad / "bomb.png", 50_000, 50_000)
    with (bad / "huge.tif").open("wb") as f:  # 1 GB, sparse on disk
        f.truncate(2**30)
    (bad / "broken.pdf").write_bytes(b"%PDF-1.4\n1 0 obj << /Type /Catalog >> endobj\n%%EO")
    from pypdf import PdfReader, PdfWriter

    writer = PdfWriter(clone_from=PdfReader(root / "2009" / "three pages.pdf"))
    writer.encrypt("secret", algorithm="RC4-128")
    writer.write(bad / "encrypted.pdf")
    rng = np.random.default_rng(0)
    photo = cv2.GaussianBlur(rng.integers(0, 255, (900, 1200, 3), dtype=np.uint8), (0, 0), 25)
    photo = cv2.normalize(photo, None, 0, 255, cv2.NORM_MINMAX)
    cv2.imwrite(str(bad / "holiday photo.jpg"), photo)
    return root


def _rows(out: Path) -> list[dict]:
    return [json.loads(line) for line in (out / MANIFEST).read_text().splitlines()]


def test_archive_every_page_once_bad_files_get_reasons(archive: Path, tmp_path: Path) -> None:
    out = tmp_path / "out"
    result = runner.invoke(app, ["batch", str(archive), "-o", str(out), "--workers", "2", "--dpi", "150",
                                 "--format", "wfdb,csv"])
    assert result.exit_code == 1, result.output  # some pages failed, and the exit code says so
    rows = _rows(out)
    pages = Counter((Path(r["input"]).name, r["page"]) for r in rows)
    assert all(n == 1 for n in pages.values())
    good = {("a.png", 1), ("fax.tif", 1), ("fax.tif", 2),
            ("three pages.pdf", 1), ("three pages.pdf", 2), ("three pages.pdf", 3)}
    by_page = {(Path(r["input"]).name, r["page"]): r for r in rows}
    for key in good:
        row = by_page[key]
        assert row["status"] in ("ok", "flagged"), row
        assert row["layout"] == "3x4_r1"
        record = read_wfdb(out / row["stem"])
        assert record.signals.shape == (12, 5000)
        assert np.isfinite(record.signals).mean() > 0.2
    assert by_page[("three pages.pdf", 3)]["stem"] == "scan/2009/three_pages_p003"
    assert (out / "scan" / "2009" / "fax_p002.csv").exists()
    reasons = {name: r["reason"] for (name, _), r in by_page.items() if r["status"] == "failed"}
    assert "is empty" in reasons["empty.png"]
    assert "not an image" in reasons["not_an_image.png"]
    assert "truncated" in reasons["truncated.jpg"]
    assert "too large" in reasons["bomb.png"] and "too large" in reasons["huge.tif"]
    assert "not a readable PDF" in reasons["broken.pdf"]
    assert "password" in reasons["encrypted.pdf"]
    assert "no ECG found" in reasons["holiday photo.jpg"]
    assert not (out / TMP_DIR).exists()

    again = runner.invoke(app, ["batch", str(archive), "-o", str(out), "--dpi", "150"])
    assert again.exit_code == 1 and len(_rows(out)) == len(rows)  # nothing redone, no row twice
    summary = runner.invoke(app, ["batch", "--summary", str(out)])
    assert summary.exit_code == 0 and f"{len(rows)} pages" in summary.output and "3x4_r1" in summary.output


def test_killed_run_resumes_to_every_page_done_once(archive: Path, tmp_path: Path) -> None:
    out = tmp_path / "out"
    source = archive / "2009"
    command = [sys.executable, "-c", "from cardioscan.cli import app; app()", "batch", str(source),
               "-o", str(out), "--dpi", "150", "--format", "wfdb,aecg"]
    run = subprocess.Popen(command, start_new_session=True, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    deadline = time.monotonic() + 300
    while not ((out / MANIFEST).exists() and _rows(out)) and run.poll() is None and time.monotonic() < deadline:
        time.sleep(0.2)
    assert run.poll() is None, run.stderr.read().decode()
    os.killpg(run.pid, signal.SIGKILL)  # mid-run, mid-page
    run.wait()
    first = len(_rows(out))
    assert 1 <= first < 6
    finished = subprocess.run(command, capture_output=True, text=True, timeout=600)
    assert finished.returncode == 0, finished.stderr
    rows = _rows(out)
    assert len(rows) == 6 and len({(r["input"], r["page"]) for r in rows}) == 6
    for row in rows:
        assert read_wfdb(out / row["stem"]).signals.shape == (12, 5000)
        assert len(row["outputs"]) == 3
    assert not list(out.rglob("*.tmp")) and not (out / TMP_DIR).exists()


def test_unwritable_output_is_refused_at_start(archive: Path, tmp_path: Path) -> None:
    result = runner.invoke(app, ["batch", str(archive), "-o", "/proc/cardioscan-out"])
    assert result.exit_code == 2 and "cannot write to the output directory" in result.output
    if os.geteuid() != 0:  # root may write into a read-only folder; /proc above stops everyone
        locked = tmp_path / "locked"
        locked.mkdir(mode=0o555)
        result = runner.invoke(app, ["batch", str(archive), "-o", str(locked)])
        assert result.exit_code == 2 and "cannot write" in result.output


def test_names_stay_inside_out_and_apart(tmp_path: Path) -> None:
    files = [(Path("/a/x.png"), Path("d/x.png")), (Path("/a/x.jpg"), Path("d/x.jpg")),
             (Path("/a/x y.png"), Path("d/x y.png")), (Path("/a/x_y.png"), Path("d/x_y.png")),
             (Path("/a/ok.pdf"), Path("d/ok.pdf"))]
    stems = output_stems(files)
    assert len(set(stems.values())) == len(files)
    assert stems[Path("/a/ok.pdf")] == "d/ok" and stems[Path("/a/x.png")] == "d/x_png"
    (tmp_path / "src").mkdir()
    (tmp_path / "src" / "p.png").write_bytes(b"x")
    (tmp_path / "list.txt").write_text(f"src/p.png\n# a comment\n../{tmp_path.name}/src/p.png\n")
    found = discover([str(tmp_path / "list.txt"), str(tmp_path / "src")], tmp_path / "out")
    assert len(found) == 1  # the same file reached three ways
    assert all(".." not in rel.parts and not rel.is_absolute() for _, rel in found)


def test_manifest_drops_a_row_cut_by_a_kill(tmp_path: Path) -> None:
    path = tmp_path / MANIFEST
    whole = {"input": "/a.png", "page": 1, "status": "failed"}
    path.write_text(json.dumps(whole) + "\n" + json.dumps({**whole, "page": 2})[:20])
    manifest = Manifest(path)
    assert manifest.open(retry_failed=False) == {("/a.png", 1): whole}
    manifest.close()
    assert _rows(tmp_path) == [whole]
    assert Manifest(path).open(retry_failed=True) == {}


def test_ray_engine_writes_the_same_outputs(archive: Path, tmp_path: Path) -> None:
    ray = pytest.importorskip("ray")
    source = tmp_path / "one"
    source.mkdir()
    shutil.copy(archive / "2009" / "a.png", source / "a.png")
    out = tmp_path / "out"
    try:
        result = runner.invoke(app, ["batch", str(source), "-o", str(out), "--engine", "ray"])
    finally:
        ray.shutdown()
    assert result.exit_code == 0, result.output
    (row,) = _rows(out)
    assert row["status"] in ("ok", "flagged") and row["layout"] == "3x4_r1"
    assert read_wfdb(out / row["stem"]).signals.shape == (12, 5000)
