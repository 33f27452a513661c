"""Where each printed segment sits in time, read from the page rather than assumed.

Machines print the columns of a 3x4 or 6x2 sheet either one after the other
("sequential": column k shows [k d, (k+1) d)) or all over the same seconds
("simultaneous": every column shows [0, d)). All twelve leads are recorded at once, so
every segment's QRS complexes fall at the same instants as the rhythm strip's: the
beat envelope (smoothed slope magnitude) of a segment correlates with the rhythm strip's
envelope only at the segment's true place. Without a rhythm strip, simultaneous columns
share their beats with column 0 and sequential ones do not.

Columns are compared by their mean envelope over all their leads (one flat or misread lead
cannot spoil it), and only within a few tens of ms of the hypothesised place: a regular
rhythm repeats its beats every RR interval, so a wide search finds a chance match for the
wrong convention on a quarter of pages.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
from scipy.ndimage import gaussian_filter1d

CONVENTIONS = ("sequential", "simultaneous")
MAX_SEARCH_S = 0.03  # how far from its nominal place a column's beats are looked for
WEAK_EVIDENCE = 0.15  # margin of correlation between the two conventions below which we flag
# Most machines print a 3x4 or 6x2 page's columns one after another: a reading must favour
# simultaneous columns by this much to choose them (val96: of four weak margins, the two that
# chose simultaneous were sequential pages, as was a real photo's).
SEQUENTIAL_PRIOR = WEAK_EVIDENCE
SHARED_BEATS = 0.65  # beat-envelope correlation with column 0 above which columns are simultaneous


@dataclass
class PrintedSegment:
    """One lead as printed: values in mV at `fs` from the segment's own left edge."""

    lead: str
    row: int
    column: int
    values: np.ndarray
    coverage: float
    is_rhythm: bool = False


@dataclass
class TimingDecision:
    convention: str
    offsets_s: list[float]  # per segment, seconds from the record start
    confidence: list[float]  # per segment, in [0, 1]
    margin: float  # how much better the chosen convention explained the beats
    evidence: str  # "rhythm strip", "shared beats", "one column", "default" or "user"
    rhythm_leads: list[str | None] = field(default_factory=list)  # per rhythm strip, top first

    @property
    def rhythm_lead(self) -> str | None:
        return self.rhythm_leads[0] if self.rhythm_leads else None


def beat_envelope(values: np.ndarray, fs: float) -> np.ndarray:
    """Smoothed magnitude of the slope: large at every QRS whatever the lead's morphology."""
    v = np.nan_to_num(values - np.nanmedian(values)) if np.isfinite(values).any() else np.zeros_like(values)
    env = gaussian_filter1d(np.abs(np.gradient(v)), sigma=0.012 * fs)
    return (env - env.mean()) / (env.std() + 1e-9)


def beat_regularity(segments: list[PrintedSegment], fs: float) -> float:
    """How clearly some lead's beats repeat: the highest autocorrelation of a beat envelope at a
    heart period of 0.3-2 s, over leads read at least 2 s without gaps (0 without one, as on a 3x4
    page at 50 mm/s). ECG pages: 0.19-0.94 on val96 (irregular rhythms lowest), 0.50-0.86 on the
    real photos; edges of other pictures read as rows: 0.09-0.58. Weak alone, so `unlike_an_ecg`
    asks it together with the rows' coverage and quality."""
    best = 0.0
    for s in segments:
        finite = np.isfinite(s.values)
        if len(s.values) < 2 * fs or finite.mean() < 0.8:
            continue
        env = beat_envelope(np.interp(np.arange(len(s.values)), np.flatnonzero(finite), s.values[finite]), fs)
        ac = np.correlate(env, env, "full")[len(env) - 1 :] / (env @ env + 1e-12)
        best = max(best, float(ac[int(0.3 * fs) : int(2.0 * fs)].max()))
    return best


def column_envelopes(segments: list[PrintedSegment], fs: float) -> dict[int, np.ndarray]:
    """Per printed column (rhythm strips aside), the standardised mean beat envelope of its readable leads."""
    columns: dict[int, list[np.ndarray]] = {}
    for s in segments:
        if not s.is_rhythm and s.coverage > 0.5:
            columns.setdefault(s.column, []).append(beat_envelope(s.values, fs))
    means = {}
    for k, envelopes in columns.items():
        n = min(len(e) for e in envelopes)
        mean = np.mean([e[:n] for e in envelopes], axis=0)
        means[k] = (mean - mean.mean()) / (mean.std() + 1e-9)
    return means


def _best_correlation(segment_env: np.ndarray, reference_env: np.ndarray, start: int,
                      max_lag: int) -> tuple[float, int]:
    """Highest Pearson correlation of the segment against the reference near `start`, and its
    lag; where the reference ends early, over the part of the segment it spans if that is at
    least half of it (a rhythm strip whose end was lost still places the last column)."""
    n = len(segment_env)
    best, best_lag = -1.0, 0
    for lag in range(-max_lag, max_lag + 1, 2):
        s = start + lag
        end = min(len(reference_env), s + n)
        if s < 0 or 2 * (end - s) < n:
            continue
        seg, ref = segment_env[: end - s], reference_env[s:end]
        c = float(np.mean((seg - seg.mean()) * (ref - ref.mean())) / (seg.std() * ref.std() + 1e-9))
        if c > best:
            best, best_lag = c, lag
    return best, best_lag


def check_timing_mode(mode: str) -> None:
    if mode not in ("auto", *CONVENTIONS):
        raise ValueError(f"timing must be auto, sequential or simultaneous, not {mode!r}")


def nominal_offset(segment: PrintedSegment, convention: str, fs: float) -> float:
    if segment.is_rhythm or convention == "simultaneous":
        return 0.0
    return segment.column * len(segment.values) / fs


def infer_timing(segments: list[PrintedSegment], fs: float, mode: str = "auto") -> TimingDecision:
    """Decide the convention (or take `mode`), then place every segment on the record's time axis."""
    check_timing_mode(mode)
    rhythm = [s for s in segments if s.is_rhythm]
    columns = column_envelopes(segments, fs)
    later = [k for k in columns if k > 0]
    max_lag = int(MAX_SEARCH_S * fs)
    reference = beat_envelope(rhythm[0].values, fs) if rhythm else None

    def against_rhythm(envelope: np.ndarray, start_s: float) -> float:
        return _best_correlation(envelope, reference, int(round(start_s * fs)), max_lag)[0]

    def column_start(k: int, convention: str) -> float:
        return 0.0 if convention == "simultaneous" else k * len(columns[k]) / fs

    if mode != "auto":
        convention, margin, evidence = mode, 1.0, "user"
    elif 0 not in columns:
        convention, margin, evidence = "sequential", 0.0, "default"
    elif not later:  # one column (12x1): every lead starts at 0 s either way
        convention, margin, evidence = "simultaneous", 1.0, "one column"
    elif rhythm:
        totals = {c: float(np.mean([against_rhythm(columns[k], column_start(k, c)) for k in later]))
                  for c in CONVENTIONS}
        convention = "simultaneous" if totals["simultaneous"] > totals["sequential"] + SEQUENTIAL_PRIOR else "sequential"
        margin, evidence = abs(totals["sequential"] - totals["simultaneous"]), "rhythm strip"
    else:
        first = np.pad(columns[0], max_lag)
        shared = float(np.mean([_best_correlation(columns[k][: len(columns[0])], first, max_lag, max_lag)[0]
                                for k in later]))
        convention = "simultaneous" if shared > SHARED_BEATS else "sequential"
        margin, evidence = abs(shared - SHARED_BEATS), "shared beats"

    offsets, confidence = [], []
    for s in segments:
        base = nominal_offset(s, convention, fs)
        if rhythm and not s.is_rhythm and s.coverage > 0.5:
            # The envelope peak of another lead is only good to a few tens of ms (each lead
            # peaks at its own instant within the QRS), so it confirms the place, not refines it.
            c = against_rhythm(beat_envelope(s.values, fs), base)
            offsets.append(base)
            confidence.append(float(np.clip(c, 0.0, 1.0)))
        else:
            offsets.append(base)
            confidence.append(1.0 if s.is_rhythm else float(np.clip(margin / (2 * WEAK_EVIDENCE), 0, 1)))
    strips = sum(s.is_rhythm for s in segments)
    leads = [identify_rhythm_lead(segments, offsets, fs, k) for k in range(strips)]
    return TimingDecision(convention, offsets, confidence, margin, evidence, leads)


# Near copies (II, III and aVF when lead I is small) match a strip within a few hundredths of each
# other (a lead II strip on a val96 page: II 0.945, III 0.952, aVF 0.984): the usual lead need only come close.
USUAL_LEAD_MARGIN = 0.05
# On a noisy reading an unrelated lead can come closer by chance (a screen photo's lead II strip:
# V6 0.852, II 0.796): another lead must also leave at most half the usual lead's misfit.
USUAL_LEAD_MISFIT_RATIO = 0.5


def identify_rhythm_lead(segments: list[PrintedSegment], offsets: list[float], fs: float, strip: int = 0) -> str | None:
    """The grid lead whose waveform rhythm strip number `strip` repeats at that lead's place in time.

    Leads can be near copies in shape (aVF = II - I/2 when I is small), so the match asks for
    the same amplitude too, at each lead's best lag within 30 ms; the lead the layout usually
    prints there (II on a one-strip page, by far the most common) wins unless another lead
    matches clearly better, by a margin and by half the misfit."""
    rhythm = [s for s in segments if s.is_rhythm]
    if strip >= len(rhythm):
        return None
    values = np.nan_to_num(rhythm[strip].values)
    max_lag = int(0.03 * fs)
    scores: dict[str, float] = {}
    for s, offset in zip(segments, offsets, strict=True):
        if s.is_rhythm or s.coverage < 0.5:
            continue
        v = np.nan_to_num(s.values)
        start = int(round(offset * fs))
        best = -1.0
        for lag in range(-max_lag, max_lag + 1):
            window = values[max(0, start + lag) : start + lag + len(v)]
            if start + lag < 0 or len(window) < len(v):
                continue
            residual = v - window
            # 1 - normalised squared error: unlike correlation it also needs the amplitude to match.
            best = max(best, 1.0 - float(np.var(residual) / (np.var(window) + 1e-12)))
        scores[s.lead] = max(scores.get(s.lead, -1.0), best)
    if not scores:
        return None
    lead = max(scores, key=lambda k: scores[k])
    usual = rhythm[strip].lead  # a strip carries its layout's usual lead until identified
    if usual in scores and (scores[usual] >= scores[lead] - USUAL_LEAD_MARGIN
                            or 1 - scores[lead] > USUAL_LEAD_MISFIT_RATIO * (1 - scores[usual])):
        lead = usual
    return lead if scores[lead] > 0.7 else None
