"""HL7 v3 annotated ECG (aECG, PORT_MT020001): the XML format regulators (FDA) accept for trial ECGs.

Document layout, following the HL7 aECG schema and implementation guide:

- `AnnotatedECG` with a UUID `id`, CPT-4 code 93000 (12-lead ECG), a plain-text `text` holding our
  provenance and per-lead quality, and `effectiveTime` (low/high of the recording).
- The clinical-trial context the schema requires (`componentOf/timepointEvent/.../clinicalTrial`),
  filled with clearly named placeholders: this is archive data, not a trial.
- One RHYTHM `series` with one sequence set: a TIME_ABSOLUTE `GLIST_TS` (head, increment) and, per
  lead, an `SLIST_PQ` with origin 0 uV and scale 1 uV, so digits are integer microvolts, coded
  MDC_ECG_LEAD_I ... MDC_ECG_LEAD_V6.
- A REPRESENTATIVE_BEAT derived series (`derivation/derivedSeries`) with a TIME_RELATIVE `GLIST_PQ`
  holding the per-lead median beat (see `median_beat`), when beats can be found.

NaN (samples the paper does not show): SLIST digits have no "missing" value, and all sequences of a
sequence set share one time axis and length. The schema would allow several sequence sets per series,
each with its own time head, so each lead could cover only its shown span; but common readers
(including the `aecg` package) read only the first set, and would silently lose most leads of a 3x4
page. So all leads go in one full-length set, unshown samples are written as 0 uV, and the document
`text` lists each lead's shown sample ranges so a reader can tell those zeros from signal. Leads
never shown are left out.

Timestamps carry milliseconds and no UTC offset (the common aECG readers accept only that form);
the acquisition time is the provenance value `acquisition_time` (ISO 8601) when present, otherwise
the time of writing, as the text says.
"""

from __future__ import annotations

import uuid
import xml.etree.ElementTree as ET
from datetime import UTC, datetime, timedelta
from pathlib import Path

import numpy as np
from scipy import signal as sps

from cardioscan import __version__
from cardioscan.io.csv_io import write_text_atomic
from cardioscan.record import LEAD_INDEX, LEAD_NAMES, EcgRecord

HL7 = "urn:hl7-org:v3"
XSI = "http://www.w3.org/2001/XMLSchema-instance"
ACT_CODE = "2.16.840.1.113883.5.4"  # HL7 ActCode: RHYTHM, REPRESENTATIVE_BEAT, TIME_*
MDC = "2.16.840.1.113883.6.24"  # ISO/IEEE 11073 MDC: lead codes
CPT4 = "2.16.840.1.113883.6.12"
# Stable, recognisable roots for the placeholder trial ids (UUIDv5 of a descriptive name).
PLACEHOLDER_TRIAL_ROOT = str(uuid.uuid5(uuid.NAMESPACE_URL, "cardioscan:placeholder:clinical-trial"))
PLACEHOLDER_SUBJECT_ROOT = str(uuid.uuid5(uuid.NAMESPACE_URL, "cardioscan:placeholder:trial-subject"))
MDC_LEAD_CODES: dict[str, str] = {name: "MDC_ECG_LEAD_" + name.upper() for name in LEAD_NAMES}
BEAT_PRE_S = 0.4  # representative-beat window before and after the R peak
BEAT_POST_S = 0.6

ET.register_namespace("", HL7)
ET.register_namespace("xsi", XSI)


def _el(parent: ET.Element, tag: str, **attrs: str) -> ET.Element:
    return ET.SubElement(parent, f"{{{HL7}}}{tag}", attrs)


def _ts(t: datetime) -> str:
    return t.strftime("%Y%m%d%H%M%S.%f")[:-3]


def _interval(parent: ET.Element, start: datetime, stop: datetime) -> None:
    when = _el(parent, "effectiveTime")
    _el(when, "low", value=_ts(start))
    _el(when, "high", value=_ts(stop))


def _new_id(parent: ET.Element) -> None:
    _el(parent, "id", root=str(uuid.uuid4()))


def _sequence_set(
    series: ET.Element,
    time_value: dict[str, str],
    time_code: str,
    fs: float,
    leads: list[tuple[str, np.ndarray]],
) -> None:
    """One sequence set: a time sequence then one SLIST_PQ per lead in integer microvolts."""
    seq_set = _el(_el(series, "component"), "sequenceSet")
    time_seq = _el(_el(seq_set, "component"), "sequence")
    _el(time_seq, "code", code=time_code, codeSystem=ACT_CODE)
    value = _el(time_seq, "value", **{f"{{{XSI}}}type": time_value["type"]})
    _el(value, "head", **{k: v for k, v in time_value.items() if k != "type"})
    _el(value, "increment", value=f"{1.0 / fs:.12g}", unit="s")
    for name, mv in leads:
        seq = _el(_el(seq_set, "component"), "sequence")
        _el(seq, "code", code=MDC_LEAD_CODES[name], codeSystem=MDC, codeSystemName="MDC")
        value = _el(seq, "value", **{f"{{{XSI}}}type": "SLIST_PQ"})
        _el(value, "origin", value="0", unit="uV")
        _el(value, "scale", value="1", unit="uV")
        _el(value, "digits").text = " ".join(map(str, np.rint(mv * 1000.0).astype(np.int64)))


def _runs(row: np.ndarray) -> list[tuple[int, int]]:
    """[start, stop) of each maximal stretch of finite samples."""
    finite = np.concatenate(([False], np.isfinite(row), [False]))
    edges = np.flatnonzero(np.diff(finite.astype(np.int8)))
    return list(zip(edges[::2].tolist(), edges[1::2].tolist(), strict=True))


def _r_peaks(record: EcgRecord) -> np.ndarray:
    """R-peak sample indices on the most complete lead (II on ties).

    Beats are found on that lead's longest shown stretch, band-passed to 5-15 Hz (QRS energy); a
    percentile threshold keeps one artefact from hiding every beat, and a 0.33 s refractory distance
    allows rates up to 180 bpm. Each is then moved to the largest deflection within +-50 ms of the
    raw lead, so the median beat has its R peak at a fixed, readable offset.
    """
    counts = np.isfinite(record.signals).sum(axis=1)
    ref = LEAD_INDEX["II"] if counts[LEAD_INDEX["II"]] == counts.max() else int(np.argmax(counts))
    runs = _runs(record.signals[ref])
    if not runs:
        return np.array([], dtype=int)
    start, stop = max(runs, key=lambda r: r[1] - r[0])
    fs = record.fs
    if stop - start < int(fs) or fs < 40:
        return np.array([], dtype=int)
    raw = record.signals[ref, start:stop]
    sos = sps.butter(2, [5.0, min(15.0, 0.45 * fs)], btype="bandpass", fs=fs, output="sos")
    energy = np.abs(sps.sosfiltfilt(sos, raw))
    peaks, _ = sps.find_peaks(energy, height=0.4 * np.percentile(energy, 99.5), distance=int(0.33 * fs))
    half = max(1, int(0.05 * fs))
    refined = []
    for p in peaks:
        lo, hi = max(0, p - half), min(raw.size, p + half + 1)
        segment = raw[lo:hi]
        refined.append(lo + int(np.argmax(np.abs(segment - np.median(segment)))))
    return np.unique(refined).astype(int) + start


def median_beat(record: EcgRecord) -> np.ndarray | None:
    """Per-lead median of the beats around each R peak, shape (12, window), NaN rows for leads with no
    complete beat; None when no beat is found. The median keeps one misdrawn beat from skewing it."""
    pre, post = int(round(BEAT_PRE_S * record.fs)), int(round(BEAT_POST_S * record.fs))
    peaks = _r_peaks(record)
    peaks = peaks[(peaks - pre >= 0) & (peaks + post <= record.n_samples)]
    if peaks.size == 0:
        return None
    windows = np.stack([record.signals[:, p - pre : p + post] for p in peaks])  # beats x leads x window
    complete = np.isfinite(windows).all(axis=2)
    beat = np.full((len(record.lead_names), pre + post), np.nan)
    for lead in range(len(record.lead_names)):
        if complete[:, lead].any():
            beat[lead] = np.median(windows[complete[:, lead], lead], axis=0)
    return beat


def _acquisition_time(record: EcgRecord) -> tuple[datetime, bool]:
    stated = record.provenance.get("acquisition_time")
    if stated:
        try:
            return datetime.fromisoformat(stated).replace(tzinfo=None), True
        except ValueError:
            pass
    return datetime.now(UTC).replace(tzinfo=None), False


def _description(record: EcgRecord, acquisition_known: bool, has_beat: bool) -> str:
    lines = [f"ECG digitized from a paper or image record by cardioscan {__version__}."]
    if not acquisition_known:
        lines.append("Acquisition time unknown: effectiveTime is the time this file was written (UTC).")
    lines.append(
        f"Samples not shown on the paper are written as 0 uV; shown samples (at {record.fs:g} Hz) are:"
    )
    for i, name in enumerate(record.lead_names):
        spans = ", ".join(f"{a}-{b - 1}" for a, b in _runs(record.signals[i])) or "none"
        lines.append(f"shown {name}: {spans}")
    if not has_beat:
        lines.append("No representative beat: no complete beat was found.")
    lines += [f"{key}: {value}" for key, value in record.provenance.items()]
    lines += [
        f"quality {name}: {q:.6g}"
        for name, q in zip(record.lead_names, np.asarray(record.quality), strict=True)
    ]
    return "\n".join(lines)


def _placeholder_trial(doc: ET.Element) -> None:
    """The schema makes the trial context mandatory; these ids say plainly that there is none."""
    assignment = _el(_el(_el(_el(doc, "componentOf"), "timepointEvent"), "componentOf"), "subjectAssignment")
    subject = _el(_el(assignment, "subject"), "trialSubject")
    _el(subject, "id", root=PLACEHOLDER_SUBJECT_ROOT, extension="UNKNOWN-SUBJECT")
    trial = _el(_el(assignment, "componentOf"), "clinicalTrial")
    _el(trial, "id", root=PLACEHOLDER_TRIAL_ROOT, extension="NOT-A-CLINICAL-TRIAL")
    _el(trial, "title").text = "Not a clinical trial: archive ECG digitized by cardioscan"


def write_aecg(record: EcgRecord, out_stem: Path) -> list[Path]:
    """Write `<stem>.xml` as an HL7 aECG document; returns its path."""
    shown = [(i, name) for i, name in enumerate(record.lead_names) if np.isfinite(record.signals[i]).any()]
    if not shown:
        raise ValueError("cannot write an aECG without any shown lead samples")
    start, acquisition_known = _acquisition_time(record)
    stop = start + timedelta(seconds=record.duration_s)
    beat = median_beat(record)

    doc = ET.Element(f"{{{HL7}}}AnnotatedECG")
    _new_id(doc)
    _el(doc, "code", code="93000", codeSystem=CPT4, codeSystemName="CPT-4")
    _el(doc, "text").text = _description(record, acquisition_known, beat is not None)
    _interval(doc, start, stop)
    _placeholder_trial(doc)

    rhythm = _el(_el(doc, "component"), "series")
    _new_id(rhythm)
    _el(rhythm, "code", code="RHYTHM", codeSystem=ACT_CODE)
    _interval(rhythm, start, stop)
    leads = [(name, np.nan_to_num(record.signals[i], nan=0.0)) for i, name in shown]
    _sequence_set(rhythm, {"type": "GLIST_TS", "value": _ts(start)}, "TIME_ABSOLUTE", record.fs, leads)

    if beat is not None:
        derived = _el(_el(rhythm, "derivation"), "derivedSeries")
        _new_id(derived)
        _el(derived, "code", code="REPRESENTATIVE_BEAT", codeSystem=ACT_CODE)
        _interval(derived, start, stop)
        leads = [(name, beat[i]) for i, name in shown if np.isfinite(beat[i]).all()]
        _sequence_set(
            derived, {"type": "GLIST_PQ", "value": "0", "unit": "s"}, "TIME_RELATIVE", record.fs, leads
        )

    ET.indent(doc)
    path = Path(out_stem).with_name(Path(out_stem).name + ".xml")
    text = '<?xml version="1.0" encoding="UTF-8"?>\n' + ET.tostring(doc, encoding="unicode") + "\n"
    write_text_atomic(path, text)
    return [path]
