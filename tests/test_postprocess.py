"""Limb-lead consistency: the projection restores Einthoven, the agreement finds misreads."""

from __future__ import annotations

import numpy as np
import pytest

from cardioscan.postprocess import (
    Calibration,
    assemble,
    einthoven_agreement,
    einthoven_projection,
    gain_from_pulses,
    infer_layout,
    speed_from_pulses,
    split_segments,
    without_stray_outer_rows,
)
from cardioscan.record import LEAD_INDEX, limb_leads_from_i_ii
from cardioscan.timing import PrintedSegment
from cardioscan.trace import RowTrace


def _limb(seed: int) -> np.ndarray:
    rng = np.random.default_rng(seed)
    t = np.arange(1250) / 500
    lead_i = 0.6 * np.sin(2 * np.pi * 1.2 * t) + 0.05 * rng.normal(size=t.size)
    lead_ii = 1.0 * np.sin(2 * np.pi * 1.2 * t + 0.4) + 0.05 * rng.normal(size=t.size)
    return limb_leads_from_i_ii(lead_i, lead_ii)


def test_consistent_leads_agree_and_stay() -> None:
    limb = _limb(0)
    projected = einthoven_projection(limb, np.ones(6))
    np.testing.assert_allclose(projected, limb, atol=1e-9)
    assert einthoven_agreement(limb, projected).min() > 0.99


def test_a_misread_lead_is_found_and_the_rest_made_consistent() -> None:
    limb = _limb(1)
    read = limb.copy()
    read[2] = np.roll(read[2], 200)  # lead III read from the wrong place
    projected = einthoven_projection(read, np.ones(6))
    agreement = einthoven_agreement(read, projected)
    assert agreement[2] < 0.6 < agreement[[0, 1]].min()
    np.testing.assert_allclose(projected[2], projected[1] - projected[0], atol=1e-9)
    np.testing.assert_allclose(projected[3], -(projected[0] + projected[1]) / 2, atol=1e-9)


def test_leads_seen_alone_are_left_as_read() -> None:
    limb = np.full((6, 100), np.nan)
    limb[0] = np.linspace(0, 1, 100)
    np.testing.assert_array_equal(einthoven_projection(limb, np.ones(6))[0], limb[0])


def _row(values: np.ndarray) -> RowTrace:
    return RowTrace(100.0 - values, x_start=10, zero_px=None, pulse_height_px=None)


def test_six_rows_are_told_apart_by_the_limb_lead_identities() -> None:
    """6x2 shows I, II, III over the second quarter (III = II - I); 3x4 shows aVR, aVL, aVF (sum 0)."""
    t = np.linspace(0, 10, 2000)
    lead_i, lead_ii = np.sin(2 * np.pi * 1.1 * t), 0.7 * np.sin(2 * np.pi * 1.7 * t + 1.0)
    avr, avl, avf = -(lead_i + lead_ii) / 2, lead_i - lead_ii / 2, lead_ii - lead_i / 2
    quarter = (t >= 2.5) & (t < 5)
    limb_6x2 = [lead_i, lead_ii, lead_ii - lead_i]
    limb_3x4 = [np.where(quarter, a, b) for a, b in zip([avr, avl, avf], limb_6x2, strict=True)]
    rhythm = [_row(20 * np.sin(t)) for _ in range(3)]
    assert infer_layout([_row(20 * v) for v in limb_6x2] + rhythm) == "6x2"
    assert infer_layout([_row(20 * v) for v in limb_3x4] + rhythm) == "3x4_r3"


def _row_with_pulse(width_mm: float, height_mm: float, px_per_mm: float = 10.0) -> RowTrace:
    return RowTrace(np.zeros(2500), 0, 0.0, height_mm * px_per_mm, pulse_width_px=width_mm * px_per_mm)


def test_paper_speed_is_read_from_pulses_of_a_standard_height() -> None:
    """A real photo's rhythm strip read a wave as an 11.5 mm wide, 3.75 mm tall pulse: it must not
    make a 25 mm/s page 50."""
    assert speed_from_pulses([_row_with_pulse(6.5, 11.0), _row_with_pulse(11.5, 3.75)], 10.0) == 25
    assert speed_from_pulses([_row_with_pulse(10.2, 10.0), _row_with_pulse(10.3, 5.1), _row_with_pulse(5.4, 10.0)], 10.0) == 50
    assert speed_from_pulses([_row_with_pulse(11.5, 3.75)], 10.0) is None


def test_zero_is_one_millivolt_below_the_pulse_top_where_the_foot_is_off() -> None:
    """ecg-image-kit runs the pulse's falling edge into the trace, so the "foot" read after it is
    the signal's first value, here 0.25 mV below zero (real photo 03156: 5 leads off by
    0.1-0.26 mV). A pulse reading the page's gain places zero by its top; one that does not
    (a misread) by its foot."""
    px_per_mm, base = 10.0, 500.0
    ys = np.full(2500, base)
    ys[1000:1020] = base - 15 * px_per_mm  # a beat
    row = RowTrace(ys, 0, zero_px=base + 25.0, pulse_height_px=125.0)  # top 1 mV above 0, at 10 mm/mV
    segments = split_segments([row], "12x1", Calibration(px_per_mm, 25.0, 10.0))
    assert abs(float(np.median(segments[0].values))) < 0.01
    row.pulse_height_px = 160.0
    segments = split_segments([row], "12x1", Calibration(px_per_mm, 25.0, 10.0))
    assert float(np.median(segments[0].values)) == pytest.approx(0.25, abs=0.01)


def test_columns_under_a_bar_take_the_values_beside_them_and_count_as_printed() -> None:
    """Where a bar hides the trace at a lead's start, each lead keeps its own level up to the cut
    (the bar's ink read there would step it); the lead is still fully printed, so a second copy
    of it (a rhythm strip) does not win on coverage alone."""
    px_per_mm = 10.0
    ys = np.full(2500, 500.0)
    ys[1250:] = 480.0  # the second lead 0.2 mV higher
    ys[1243:1258] = 440.0  # the bar's top, read
    hidden = np.zeros(2500, bool)
    hidden[1243:1258] = True
    row = RowTrace(ys, 0, None, None)
    calibration = Calibration(px_per_mm, 25.0, 10.0)
    first, second = split_segments([row], "6x2", calibration, hidden=[hidden])
    assert np.ptp(first.values) < 0.01 and np.ptp(second.values) < 0.01
    assert first.coverage == second.coverage == 1.0


def test_a_row_above_the_pulsed_rows_without_a_pulse_is_dropped_as_writing() -> None:
    """Real photo 02579: a handwritten note above a 3x4 page with a rhythm strip read as a fifth
    row left the layout unknown and nothing written. Rows that make a layout stay as they are."""
    note = RowTrace(np.zeros(2500), 0, None, None)
    pulsed = [_row_with_pulse(5.0, 10.0) for _ in range(4)]
    assert without_stray_outer_rows([note, *pulsed]) == pulsed
    assert without_stray_outer_rows([note, *pulsed[:3]]) == [note, *pulsed[:3]]  # four rows: 3x4_r1
    unpulsed = [RowTrace(np.zeros(2500), 0, None, None) for _ in range(5)]
    assert without_stray_outer_rows(unpulsed) == unpulsed


def test_the_gain_is_read_from_the_tallest_standard_pulse() -> None:
    """A 20 mm/mV pulse's top is often lost (val96 #80: 15.9, 11.7 and 12.5 mm read): the tallest
    standard pulse gives the gain; a wave read as a 3.75 mm pulse gives none."""
    assert gain_from_pulses([_row_with_pulse(5.0, h) for h in (15.9, 11.7, 12.5)], 10.0) == 20
    assert gain_from_pulses([_row_with_pulse(5.0, h) for h in (10.1, 9.8, 10.0)], 10.0) == 10
    assert gain_from_pulses([_row_with_pulse(11.5, 3.75)], 10.0) is None


def test_a_lone_pulse_far_off_a_standard_height_gives_no_gain() -> None:
    """Lettering with serifs ("III") beside pulses the network missed read as one 4.2 mm pulse, and
    the page was read at 5 mm/mV, every amplitude doubled (val96 #94). A lone pulse must read
    within 10 % of a standard height; several give the gain as before."""
    unpulsed = RowTrace(np.zeros(2500), 0, None, None)
    assert gain_from_pulses([unpulsed, unpulsed, _row_with_pulse(3.8, 4.2)], 10.0) is None
    assert gain_from_pulses([unpulsed, unpulsed, _row_with_pulse(5.0, 10.4)], 10.0) == 10
    assert gain_from_pulses([_row_with_pulse(5.0, 4.2), _row_with_pulse(5.0, 4.4)], 10.0) == 5


def test_pulses_whose_widths_disagree_give_no_paper_speed() -> None:
    """One pulse read 6.2 mm wide (25 mm/s), one 9.6 (50): their median had said 50 mm/s."""
    assert speed_from_pulses([_row_with_pulse(6.2, 10.0), _row_with_pulse(9.6, 10.0)], 10.0) is None
    assert speed_from_pulses([_row_with_pulse(6.2, 10.0), _row_with_pulse(9.6, 10.0), _row_with_pulse(5.2, 10.0)], 10.0) == 25


def test_a_lead_printed_twice_keeps_one_level_where_its_pieces_meet() -> None:
    """Lead II's column piece (0-2.5 s) and its rhythm strip (0-10 s) come from rows whose 0 mV
    were read apart by 0.2 mV (real photo 02579): the strip is brought to the piece's level where
    both show the same seconds, so the lead does not step at 2.5 s."""
    t = np.arange(5000) / 500
    lead_ii = 0.8 * np.sin(2 * np.pi * 1.1 * t)
    column = PrintedSegment("II", 1, 0, lead_ii[:1250].copy(), coverage=1.0)
    strip = PrintedSegment("II", 3, 0, lead_ii + 0.2, coverage=0.9, is_rhythm=True)
    record = assemble([column, strip], [0.0, 0.0])
    np.testing.assert_allclose(record.signals[LEAD_INDEX["II"]], lead_ii, atol=1e-9)
