import glob
import json
import os
import shutil
import subprocess
import uuid
import xml.etree.ElementTree as ET
from pathlib import Path

import numpy as np
import pytest
import wfdb

from cardioscan.io import WRITERS, write_record
from cardioscan.io.aecg import median_beat, write_aecg
from cardioscan.io.csv_io import read_csv, write_csv
from cardioscan.io.wfdb_io import read_wfdb, write_wfdb
from cardioscan.record import LEAD_INDEX, LEAD_NAMES, EcgRecord

FS = 500.0
LSB_MV = 1e-3
SHARED_RECORDS = Path(__file__).resolve().parents[2] / "shared" / "ecg-records"
HL7 = "{urn:hl7-org:v3}"


def _synthetic_ecg(
    fs: float = FS, seconds: float = 10.0, rr: float = 0.8, wander_mv: float = 0.05
) -> np.ndarray:
    """Gaussian P-less QRS-T beats, a different gain per lead and slow baseline wander."""
    t = np.arange(int(fs * seconds)) / fs
    base = np.zeros_like(t)
    for b in np.arange(0.3, seconds, rr):
        base += np.exp(-(((t - b) / 0.012) ** 2)) - 0.2 * np.exp(-(((t - b - 0.03) / 0.01) ** 2))
        base += 0.25 * np.exp(-(((t - b - 0.3) / 0.06) ** 2))
    gains = np.array([0.6, 1.0, 0.4, -0.8, 0.3, 0.7, -0.5, 0.5, 0.9, 1.3, 1.1, 0.8])
    return gains[:, None] * base + wander_mv * np.sin(2 * np.pi * 0.3 * t)


def _paper_layout(signals: np.ndarray) -> np.ndarray:
    """What a 3x4 page with a lead II rhythm strip shows: 2.5 s per lead, II for the full 10 s."""
    shown = np.full_like(signals, np.nan)
    quarter = signals.shape[1] // 4
    for col, names in enumerate(
        [("I", "II", "III"), ("aVR", "aVL", "aVF"), ("V1", "V2", "V3"), ("V4", "V5", "V6")]
    ):
        for name in names:
            i = LEAD_INDEX[name]
            shown[i, col * quarter : (col + 1) * quarter] = signals[i, col * quarter : (col + 1) * quarter]
    shown[LEAD_INDEX["II"]] = signals[LEAD_INDEX["II"]]
    return shown


@pytest.fixture
def paper_record() -> EcgRecord:
    signals = _paper_layout(_synthetic_ecg())
    signals[LEAD_INDEX["V5"], 4000:4010] = np.nan  # a gap inside a shown stretch
    quality = np.round(np.linspace(0.5, 0.99, 12), 3)
    provenance = {"input": "scans/page 1.png", "model": "seg-v0.3", "note": "two\nlines"}
    return EcgRecord(signals=signals, fs=FS, quality=quality, provenance=provenance)


def _assert_same_signals(expected: np.ndarray, actual: np.ndarray, tol: float) -> None:
    np.testing.assert_array_equal(np.isnan(expected), np.isnan(actual))
    np.testing.assert_allclose(np.nan_to_num(actual), np.nan_to_num(expected), rtol=0, atol=tol)


# --- WFDB -----------------------------------------------------------------------------------------


def test_wfdb_round_trip_through_wfdb_itself(paper_record: EcgRecord, tmp_path: Path) -> None:
    paths = write_wfdb(paper_record, tmp_path / "rec")
    assert sorted(p.name for p in paths) == ["rec.dat", "rec.hea"]
    assert sorted(os.listdir(tmp_path)) == ["rec.dat", "rec.hea"]  # no temporary leftovers

    rec = wfdb.rdrecord(str(tmp_path / "rec"))
    assert rec.sig_name == list(LEAD_NAMES)
    assert rec.fs == FS
    assert rec.fmt == ["16"] * 12
    assert rec.adc_gain == [1000.0] * 12
    assert rec.baseline == [0] * 12
    assert rec.units == ["mV"] * 12
    _assert_same_signals(paper_record.signals, rec.p_signal.T, tol=LSB_MV / 2 + 1e-9)

    assert "input: scans/page 1.png" in rec.comments
    assert "note: two lines" in rec.comments
    assert "quality I: 0.5" in rec.comments and "quality V6: 0.99" in rec.comments


def test_wfdb_read_restores_quality_and_provenance(paper_record: EcgRecord, tmp_path: Path) -> None:
    write_wfdb(paper_record, tmp_path / "rec")
    back = read_wfdb(tmp_path / "rec.hea")
    assert back.fs == FS
    _assert_same_signals(paper_record.signals, back.signals, tol=LSB_MV / 2 + 1e-9)
    np.testing.assert_allclose(back.quality, paper_record.quality)
    assert back.provenance == {"input": "scans/page 1.png", "model": "seg-v0.3", "note": "two lines"}


def test_wfdb_clips_out_of_range_values(tmp_path: Path) -> None:
    signals = np.zeros((12, 100))
    signals[0, :3] = [40.0, -40.0, 32.7674]
    write_wfdb(EcgRecord(signals=signals, fs=FS), tmp_path / "big")
    back = wfdb.rdrecord(str(tmp_path / "big")).p_signal[:3, 0]
    np.testing.assert_allclose(back, [32.767, -32.767, 32.767])


def test_wfdb_write_replaces_existing_files(paper_record: EcgRecord, tmp_path: Path) -> None:
    write_wfdb(EcgRecord(signals=np.ones((12, 50)), fs=100.0), tmp_path / "rec")
    write_wfdb(paper_record, tmp_path / "rec")
    assert read_wfdb(tmp_path / "rec").n_samples == paper_record.n_samples


def test_wfdb_rejects_names_wfdb_cannot_hold(paper_record: EcgRecord, tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="record name"):
        write_wfdb(paper_record, tmp_path / "page.1")
    with pytest.raises(ValueError, match="provenance key"):
        write_wfdb(EcgRecord(signals=np.zeros((12, 10)), provenance={"a: b": "x"}), tmp_path / "rec")


def test_read_wfdb_any_case_order_subset_and_units(tmp_path: Path) -> None:
    n = 250
    rng = np.random.default_rng(1)
    data = rng.uniform(-2, 2, (n, 4))
    data[:, 2] *= 1000.0  # this one is in uV
    wfdb.wrsamp(
        "foreign", fs=250, units=["mV", "mV", "uV", "mV"], sig_name=["v1", "AVR", "ii", "resp"],
        p_signal=data, fmt=["16"] * 4, adc_gain=[1000.0, 1000.0, 1.0, 1000.0], baseline=[0] * 4,
        comments=["age: 60", "free text"], write_dir=str(tmp_path),
    )  # fmt: skip
    back = read_wfdb(tmp_path / "foreign")
    assert back.fs == 250.0
    np.testing.assert_allclose(back.lead("V1"), data[:, 0], atol=LSB_MV)
    np.testing.assert_allclose(back.lead("aVR"), data[:, 1], atol=LSB_MV)
    np.testing.assert_allclose(back.lead("II"), data[:, 2] / 1000.0, atol=LSB_MV)
    absent = [i for i, name in enumerate(LEAD_NAMES) if name not in ("V1", "aVR", "II")]
    assert np.isnan(back.signals[absent]).all()
    assert back.quality[absent].tolist() == [0.0] * len(absent)
    assert back.provenance == {"age": "60", "wfdb comments": "free text"}


def test_read_wfdb_without_standard_leads_raises(tmp_path: Path) -> None:
    wfdb.wrsamp("resp", fs=25, units=["mV"], sig_name=["resp"], p_signal=np.zeros((10, 1)),
                fmt=["16"], adc_gain=[1000.0], baseline=[0], write_dir=str(tmp_path))  # fmt: skip
    with pytest.raises(ValueError, match="standard 12-lead"):
        read_wfdb(tmp_path / "resp")


def _shared_headers() -> list[Path]:
    return sorted(SHARED_RECORDS.rglob("*.hea")) if SHARED_RECORDS.is_dir() else []


@pytest.mark.skipif(not _shared_headers(), reason=f"real records not found at {SHARED_RECORDS}")
@pytest.mark.parametrize("header", _shared_headers(), ids=lambda p: p.stem)
def test_read_real_records(header: Path) -> None:
    record = read_wfdb(header)
    raw = wfdb.rdrecord(str(header.with_suffix("")))
    assert record.fs == raw.fs
    assert record.n_samples == raw.sig_len
    assert not np.isnan(record.signals).any(), "all 12 standard leads are present in these records"
    names = [n.lower() for n in raw.sig_name]
    for i, lead in enumerate(LEAD_NAMES):
        np.testing.assert_array_equal(record.signals[i], raw.p_signal[:, names.index(lead.lower())])
    assert 0.05 < np.abs(record.signals).max() < 20.0  # plausible mV, so units were understood


@pytest.mark.skipif(not _shared_headers(), reason=f"real records not found at {SHARED_RECORDS}")
def test_real_record_survives_our_wfdb_writer(tmp_path: Path) -> None:
    ludb = read_wfdb(SHARED_RECORDS / "ludb" / "1")  # odd per-lead gains
    write_wfdb(ludb, tmp_path / "ludb1")
    _assert_same_signals(ludb.signals, read_wfdb(tmp_path / "ludb1").signals, tol=LSB_MV / 2 + 1e-9)


# --- CSV ------------------------------------------------------------------------------------------


def test_csv_round_trip(paper_record: EcgRecord, tmp_path: Path) -> None:
    (path,) = write_csv(paper_record, tmp_path / "page.1")
    assert path.name == "page.1.csv"
    lines = path.read_text().splitlines()
    assert lines[0] == "time_s," + ",".join(LEAD_NAMES)
    assert lines[1].split(",")[LEAD_INDEX["aVR"] + 1] == ""  # not shown at t = 0
    back = read_csv(path)
    assert back.fs == FS
    _assert_same_signals(paper_record.signals, back.signals, tol=0.0)


def test_read_csv_rejects_other_tables(tmp_path: Path) -> None:
    path = tmp_path / "x.csv"
    path.write_text("t,I\n0,1\n0.002,2\n")
    with pytest.raises(ValueError, match="time_s"):
        read_csv(path)


# --- registry -------------------------------------------------------------------------------------


def test_write_record_all_formats(paper_record: EcgRecord, tmp_path: Path) -> None:
    paths = write_record(paper_record, tmp_path / "out", list(WRITERS))
    assert sorted(p.name for p in paths) == ["out.csv", "out.dat", "out.hea", "out.xml"]
    assert all(p.is_file() for p in paths)


def test_write_record_unknown_format_names_valid_ones(paper_record: EcgRecord, tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="valid: wfdb, csv, aecg"):
        write_record(paper_record, tmp_path / "out", ["wfdb", "edf"])
    assert not list(tmp_path.iterdir())


# --- HL7 aECG -------------------------------------------------------------------------------------


def _digits(seq: ET.Element) -> np.ndarray:
    value = seq.find(f"{HL7}value")
    assert value is not None
    origin = float(value.find(f"{HL7}origin").get("value"))  # type: ignore[union-attr]
    scale = float(value.find(f"{HL7}scale").get("value"))  # type: ignore[union-attr]
    text = value.find(f"{HL7}digits").text or ""  # type: ignore[union-attr]
    return (origin + scale * np.array(text.split(), dtype=float)) / 1000.0  # uV -> mV


def test_aecg_structure_and_values(paper_record: EcgRecord, tmp_path: Path) -> None:
    (path,) = write_aecg(paper_record, tmp_path / "rec")
    root = ET.parse(path).getroot()
    assert root.tag == f"{HL7}AnnotatedECG"
    uuid.UUID(root.find(f"{HL7}id").get("root"))  # type: ignore[union-attr]
    assert root.find(f"{HL7}effectiveTime/{HL7}low") is not None
    trial = root.find(f".//{HL7}subjectAssignment/{HL7}componentOf/{HL7}clinicalTrial/{HL7}id")
    assert trial is not None and trial.get("extension") == "NOT-A-CLINICAL-TRIAL"
    text = root.findtext(f"{HL7}text") or ""
    assert "shown V5: 3750-3999, 4010-4999" in text
    assert "quality V6: 0.99" in text and "input: scans/page 1.png" in text

    (series,) = root.findall(f"{HL7}component/{HL7}series")
    assert series.find(f"{HL7}code").get("code") == "RHYTHM"  # type: ignore[union-attr]
    (seq_set,) = series.findall(f"{HL7}component/{HL7}sequenceSet")
    time_seq, *lead_seqs = seq_set.findall(f"{HL7}component/{HL7}sequence")
    assert time_seq.find(f"{HL7}code").get("code") == "TIME_ABSOLUTE"  # type: ignore[union-attr]
    increment = time_seq.find(f"{HL7}value/{HL7}increment")
    assert float(increment.get("value")) == pytest.approx(1 / FS) and increment.get("unit") == "s"  # type: ignore[union-attr]
    codes = [s.find(f"{HL7}code").get("code") for s in lead_seqs]  # type: ignore[union-attr]
    assert codes == ["MDC_ECG_LEAD_" + n.upper() for n in LEAD_NAMES]
    for i, seq in enumerate(lead_seqs):
        expected = np.nan_to_num(paper_record.signals[i], nan=0.0)
        np.testing.assert_allclose(_digits(seq), expected, atol=LSB_MV / 2 + 1e-9)

    beat_set = series.find(f"{HL7}derivation/{HL7}derivedSeries/{HL7}component/{HL7}sequenceSet")
    assert beat_set is not None
    beat_time, *beat_leads = beat_set.findall(f"{HL7}component/{HL7}sequence")
    assert beat_time.find(f"{HL7}code").get("code") == "TIME_RELATIVE"  # type: ignore[union-attr]
    assert len(beat_leads) == 12


def test_median_beat_recovers_the_template() -> None:
    clean = _synthetic_ecg(wander_mv=0.0)  # wander would differ between beats and the reference beat
    noisy = clean + np.random.default_rng(2).normal(0, 0.02, clean.shape)
    beat = median_beat(EcgRecord(signals=_paper_layout(noisy), fs=FS))
    assert beat is not None and beat.shape == (12, 500)
    assert np.isfinite(beat).all()
    r_peak = int(np.argmax(np.abs(beat[LEAD_INDEX["V6"]])))
    assert abs(r_peak - 200) <= 3  # the R peak sits 0.4 s into the window
    template = clean[:, int(4.3 * FS) - 200 : int(4.3 * FS) + 300]  # beats sit at 0.3 + 0.8 k s
    rms = np.sqrt(np.mean((beat - template) ** 2, axis=1))
    assert np.all(rms < 0.025)  # at most the 0.02 mV noise: shapes and amplitudes are right
    assert rms[LEAD_INDEX["II"]] < 0.01  # the 10 s rhythm lead averages 13 beats, not 3


def test_aecg_without_beats_still_writes_rhythm(tmp_path: Path) -> None:
    flat = EcgRecord(signals=np.zeros((12, 200)), fs=FS)  # 0.4 s, no beat
    (path,) = write_aecg(flat, tmp_path / "flat")
    root = ET.parse(path).getroot()
    assert root.find(f".//{HL7}derivation") is None
    assert "No representative beat" in (root.findtext(f"{HL7}text") or "")


def test_aecg_rejects_empty_record(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="shown lead"):
        write_aecg(EcgRecord(signals=np.full((12, 10), np.nan)), tmp_path / "empty")


_AECG_CHECK = """
import io, json, sys
import aecg
doc = aecg.read(io.BytesIO(open(sys.argv[1], "rb").read()))
(series,) = doc.series
rhythm = series.sequence_sets[0]
df = rhythm.get_sequences_df()
beat = series.derived_sequence_sets[0].get_sequences_df()
json.dump({
    "series": series.code.code,
    "time_code": rhythm.time_info.code.code,
    "increment": rhythm.time_info.increment.value,
    "unit": rhythm.time_info.increment.unit,
    "leads": {c: df[c].tolist() for c in df.columns if c.startswith("MDC_ECG_LEAD_")},
    "beat_leads": [c for c in beat.columns if c.startswith("MDC_ECG_LEAD_")],
    "beat_len": len(beat),
}, sys.stdout)
"""


def _python312() -> str | None:
    """A working python3.12: PATH first, then pyenv's install (its shim may not select 3.12)."""
    candidates = [
        shutil.which("python3.12"),
        *sorted(glob.glob(os.path.expanduser("~/.pyenv/versions/3.12*/bin/python3.12"))),
    ]
    for exe in filter(None, candidates):
        try:
            ok = subprocess.run(
                [exe, "-c", "import sys; assert sys.version_info >= (3, 12)"], capture_output=True, timeout=30
            )
        except (OSError, subprocess.TimeoutExpired):
            continue
        if ok.returncode == 0:
            return exe
    return None


def _aecg_venv() -> Path:
    """A cached python3.12 venv with the PyPI `aecg` parser (it needs Python >= 3.12); skips if unavailable."""
    python = _python312()
    if python is None:
        pytest.skip("python3.12 not found: the aecg parser needs Python >= 3.12")
    cache = Path(os.environ.get("XDG_CACHE_HOME", Path.home() / ".cache")) / "cardioscan-aecg-venv"
    venv_python = cache / "bin" / "python"
    if (
        venv_python.exists()
        and subprocess.run([venv_python, "-c", "import aecg"], capture_output=True).returncode == 0
    ):
        return venv_python
    made = subprocess.run([python, "-m", "venv", "--clear", str(cache)], capture_output=True, text=True)
    if made.returncode != 0:
        pytest.skip(f"could not create a python3.12 venv: {made.stderr.strip()[-300:]}")
    try:
        pip = subprocess.run(
            [venv_python, "-m", "pip", "install", "-q", "aecg"], capture_output=True, text=True, timeout=900
        )
    except subprocess.TimeoutExpired:
        pytest.skip("pip install aecg timed out (no network?)")
    if pip.returncode != 0:
        pytest.skip(f"pip install aecg failed (no network?): {pip.stderr.strip()[-300:]}")
    return venv_python


def test_aecg_reads_back_with_the_aecg_parser(paper_record: EcgRecord, tmp_path: Path) -> None:
    venv_python = _aecg_venv()
    (path,) = write_aecg(paper_record, tmp_path / "rec")
    run = subprocess.run(
        [venv_python, "-c", _AECG_CHECK, str(path)], capture_output=True, text=True, timeout=300
    )
    assert run.returncode == 0, run.stderr
    parsed = json.loads(run.stdout)
    assert parsed["series"] == "RHYTHM" and parsed["time_code"] == "TIME_ABSOLUTE"
    assert parsed["unit"] == "s" and 1.0 / parsed["increment"] == pytest.approx(FS)
    assert list(parsed["leads"]) == ["MDC_ECG_LEAD_" + n.upper() for n in LEAD_NAMES]
    for i, values in enumerate(parsed["leads"].values()):
        expected = np.nan_to_num(paper_record.signals[i], nan=0.0)  # unshown samples are 0 uV
        np.testing.assert_allclose(values, expected, atol=LSB_MV)
    assert len(parsed["beat_leads"]) == 12 and parsed["beat_len"] == int(FS)
