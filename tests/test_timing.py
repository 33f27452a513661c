"""Timing is read from the beats on the page, for both printing conventions."""

from __future__ import annotations

import numpy as np
import pytest

from cardioscan.record import LEAD_INDEX
from cardioscan.synth.layout import _COLUMNS
from cardioscan.synth.simulate import sample_params, simulate_12lead
from cardioscan.timing import WEAK_EVIDENCE, PrintedSegment, infer_timing

FS = 500


def _printed(signals: np.ndarray, convention: str, rhythm: str | None) -> list[PrintedSegment]:
    """Cut a 12-lead signal the way a 3x4 sheet prints it."""
    n = int(2.5 * FS)
    segments = []
    for c, leads in enumerate(_COLUMNS["3x4"]):
        start = c * n if convention == "sequential" else 0
        for r, lead in enumerate(leads):
            segments.append(PrintedSegment(lead, r, c, signals[LEAD_INDEX[lead], start : start + n].copy(), 1.0))
    if rhythm:
        segments.append(PrintedSegment("II", 3, 0, signals[LEAD_INDEX[rhythm]].copy(), 1.0, is_rhythm=True))
    return segments


@pytest.mark.parametrize("convention", ["sequential", "simultaneous"])
@pytest.mark.parametrize("rhythm", ["II", "V1", "V5"])
def test_convention_and_rhythm_lead_are_found(convention: str, rhythm: str) -> None:
    for seed in range(5):
        rng = np.random.default_rng(seed)
        signals = simulate_12lead(sample_params(rng), fs=FS, duration_s=10.0, rng=rng)
        decision = infer_timing(_printed(signals, convention, rhythm), FS)
        assert decision.convention == convention
        assert decision.evidence == "rhythm strip"
        assert decision.rhythm_lead == rhythm
        expected = [0.0 if convention == "simultaneous" else 2.5 * c for c in range(4) for _ in range(3)] + [0.0]
        np.testing.assert_allclose(sorted(decision.offsets_s), sorted(expected), atol=0.02)


@pytest.mark.parametrize("convention", ["sequential", "simultaneous"])
def test_without_rhythm_strip_shared_beats_decide(convention: str) -> None:
    right = 0
    for seed in range(10):
        rng = np.random.default_rng(100 + seed)
        signals = simulate_12lead(sample_params(rng), fs=FS, duration_s=10.0, rng=rng)
        right += infer_timing(_printed(signals, convention, None), FS).convention == convention
    assert right >= 8  # regular rhythms can line up by chance; the margin then flags it


def test_user_choice_wins() -> None:
    rng = np.random.default_rng(0)
    signals = simulate_12lead(sample_params(rng), fs=FS, duration_s=10.0, rng=rng)
    decision = infer_timing(_printed(signals, "sequential", "II"), FS, mode="simultaneous")
    assert decision.convention == "simultaneous" and decision.evidence == "user"
    with pytest.raises(ValueError, match="timing must be"):
        infer_timing(_printed(signals, "sequential", "II"), FS, mode="sideways")


def test_usual_rhythm_lead_wins_against_a_near_copy() -> None:
    """With lead I small, aVF = II - I/2 is a near copy of II: read noise can make a lead II strip
    match aVF a little better, and it must still be called II; a clearly better match still wins."""
    rng = np.random.default_rng(3)
    signals = simulate_12lead(sample_params(rng), fs=FS, duration_s=10.0, rng=rng)
    signals[LEAD_INDEX["aVF"]] = signals[LEAD_INDEX["II"]]
    segments = _printed(signals, "sequential", "II")
    segments[LEAD_INDEX["II"]].values = segments[LEAD_INDEX["II"]].values * 1.15  # II read 15 % tall
    assert infer_timing(segments, FS).rhythm_lead == "II"
    segments[LEAD_INDEX["II"]].values = segments[LEAD_INDEX["II"]].values * 1.3  # now plainly unlike the strip
    assert infer_timing(segments, FS).rhythm_lead == "aVF"


def test_usual_rhythm_lead_wins_against_a_chance_match_on_a_noisy_reading() -> None:
    """On a noisy page another lead's segment can match a lead II strip a little better by chance;
    only a match that leaves at most half of lead II's misfit takes the strip from II."""
    rng = np.random.default_rng(4)
    signals = simulate_12lead(sample_params(rng), fs=FS, duration_s=10.0, rng=rng)
    segments = _printed(signals, "sequential", "II")
    strip = segments[-1].values
    v6 = next(s for s in segments if s.lead == "V6")
    ii = next(s for s in segments if s.lead == "II")

    def read_with_misfit(seg: PrintedSegment, misfit: float) -> None:
        window = strip[int(2.5 * FS) * seg.column :][: len(seg.values)]
        seg.values = window + rng.normal(0, np.sqrt(misfit) * window.std(), len(window))

    for seg in segments[:-1]:
        if seg.lead not in ("II", "V6"):
            seg.values = -seg.values  # unlike the strip, so only II and V6 compete
    read_with_misfit(ii, 0.20)  # II scores about 0.80
    read_with_misfit(v6, 0.14)  # V6 about 0.86: better by more than the margin, but not by half the misfit
    assert infer_timing(segments, FS).rhythm_lead == "II"
    read_with_misfit(v6, 0.02)
    assert infer_timing(segments, FS).rhythm_lead == "V6"


def test_one_column_places_every_lead_at_zero_without_a_weak_evidence_flag() -> None:
    rng = np.random.default_rng(3)
    signals = simulate_12lead(sample_params(rng), fs=FS, duration_s=10.0, rng=rng)
    segments = [PrintedSegment(lead, r, 0, signals[LEAD_INDEX[lead]].copy(), 1.0) for r, lead in enumerate(LEAD_INDEX)]
    decision = infer_timing(segments, FS)
    assert decision.evidence == "one column" and decision.margin == 1.0
    assert decision.offsets_s == [0.0] * 12 and min(decision.confidence) == 1.0


def test_a_rhythm_strip_cut_short_still_places_the_last_column() -> None:
    """The rhythm strip's last half second lost (its ink ran off the photo): the fourth column's
    beats are compared with the part of the strip that is left."""
    for seed in range(5):
        rng = np.random.default_rng(200 + seed)
        signals = simulate_12lead(sample_params(rng), fs=FS, duration_s=10.0, rng=rng)
        segments = _printed(signals, "sequential", "II")
        segments[-1].values = segments[-1].values[: int(9.5 * FS)]
        decision = infer_timing(segments, FS)
        assert decision.convention == "sequential" and decision.margin > 0.5



def test_a_weak_preference_for_simultaneous_columns_places_them_sequential() -> None:
    """Most machines print columns one after another: only clear evidence says otherwise."""
    conventions = []
    for seed in range(8):
        rng = np.random.default_rng(200 + seed)
        signals = simulate_12lead(sample_params(rng), fs=FS, duration_s=10.0, rng=rng)
        segments = _printed(signals, "simultaneous", "II")
        for s in segments:
            if not s.is_rhythm:
                s.values = s.values + rng.normal(0, 0.3, len(s.values))  # rows read noisily
        decision = infer_timing(segments, FS)
        assert decision.convention == ("simultaneous" if decision.margin > WEAK_EVIDENCE else "sequential")
        conventions.append(decision.convention)
    assert "simultaneous" in conventions  # clear evidence still wins
