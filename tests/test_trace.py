"""Stage 2's row reading: a finer mask sharpens values without changing what was decided."""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np
import pytest

from cardioscan.pipeline import read_rows
from cardioscan.postprocess import gain_from_pulses, speed_from_pulses
from cardioscan.trace import (
    RowTrace,
    TraceNet,
    _common_start,
    _stay_on_stroke,
    find_rows,
    follow_rows,
    refine_rows,
    trace_ink,
    under_bars,
    without_lettering,
)

EXAMPLE = Path(__file__).resolve().parents[1] / "examples" / "ptbxl_HR06008_clean.png"

PX_PER_MM = 8.0


def _row_mask(peak_px: int, thickness: int, shape: tuple[int, int] = (300, 600)) -> np.ndarray:
    """A flat trace at y = 150 with one narrow QRS-like spike `peak_px` high at x = 300."""
    points = np.array([[20, 150], [290, 150], [300, 150 - peak_px], [310, 150], [580, 150]], np.int32)
    mask = np.zeros(shape, np.uint8)
    cv2.polylines(mask, [points.reshape(-1, 1, 2)], False, 1, thickness)
    return mask > 0


def test_finer_mask_restores_a_rounded_peak_and_ignores_ink_far_from_the_row() -> None:
    coarse = _row_mask(peak_px=48, thickness=5)  # the coarse reading rounds the spike 12 px low
    fine = _row_mask(peak_px=60, thickness=2)
    fine[190:192, 20:580] = True  # a grid line 5 mm below the trace, which the fine mask took for ink
    rows = read_rows(coarse, PX_PER_MM)
    assert len(rows) == 1
    x_start, coarse_peak = rows[0].x_start, float(np.nanmin(rows[0].y_px))
    assert coarse_peak > 150 - 60 + 8

    refined = refine_rows(rows, coarse, fine, PX_PER_MM)
    assert len(refined) == 1 and refined[0].x_start == x_start
    assert abs(float(np.nanmin(refined[0].y_px)) - (150 - 60)) <= 2
    flat = refined[0].y_px[: 200 - x_start]
    np.testing.assert_allclose(flat[np.isfinite(flat)], 150, atol=1)  # not pulled to the grid line


def test_a_stretch_the_coarse_mask_lost_is_read_from_the_fine_mask() -> None:
    """The coarse mask loses faint stretches (a fold's shade on a photo) that the fine one sees."""
    coarse = _row_mask(peak_px=48, thickness=5)
    coarse[:, 250:350] = False  # the spike and the flat ink round it
    fine = _row_mask(peak_px=60, thickness=2)
    rows = read_rows(coarse, PX_PER_MM)
    assert len(rows) == 1
    x_start = rows[0].x_start
    assert np.isnan(rows[0].y_px[260 - x_start : 340 - x_start]).all()

    gap = refine_rows(rows, coarse, fine, PX_PER_MM)[0].y_px[250 - x_start : 350 - x_start]
    assert np.isfinite(gap).all()
    assert abs(float(gap.min()) - (150 - 60)) <= 2


def test_where_the_coarse_reading_strayed_onto_ink_the_fine_mask_lacks_the_fine_trace_is_read() -> None:
    """Where the coarse mask lost the trace, its reading follows what is left in the row's band
    (here a grid line it took for ink); the fine mask, which has the trace and not the line, corrects it."""
    coarse = _row_mask(peak_px=48, thickness=5)
    coarse[:, 240:262] = False
    coarse[188:192, 200:360] = True  # 5 mm below the trace
    fine = _row_mask(peak_px=60, thickness=2)
    rows = read_rows(coarse, PX_PER_MM)
    assert len(rows) == 1
    x_start = rows[0].x_start
    assert (rows[0].y_px[245 - x_start : 260 - x_start] > 185).all()

    refined = refine_rows(rows, coarse, fine, PX_PER_MM)[0].y_px
    np.testing.assert_allclose(refined[200 - x_start : 290 - x_start], 150, atol=1)


def test_a_row_end_the_coarse_mask_broke_off_is_read_from_the_fine_mask() -> None:
    """The coarse mask lost a QRS peak at a row's end, and the stroke after it, too short for a
    trace, was dropped: the row stopped 7 mm before the others (val96 #68, 50 mm/s: 24 -> 15 dB).
    Fine ink off the coarse mask's (a QR code's beside the row's end, val96 #8) is not taken."""
    coarse = np.concatenate([_row_mask(peak_px=48, thickness=5)] * 2)
    coarse[300:, 550:556] = False  # the stroke after the break is 3.5 mm long
    fine = np.concatenate([_row_mask(peak_px=60, thickness=2)] * 2)
    fine[380:420, 520:600] = True  # a QR code 4-9 mm above the row's end
    rows = read_rows(coarse, PX_PER_MM)
    assert len(rows) == 2 and rows[1].x_start + len(rows[1].y_px) < 556
    refined = refine_rows(rows, coarse, fine, PX_PER_MM)
    assert refined[1].x_start + len(refined[1].y_px) == pytest.approx(refined[0].x_start + len(refined[0].y_px), abs=3)
    np.testing.assert_allclose(refined[1].y_px[550 - refined[1].x_start :], 450, atol=1)


def test_a_stroke_past_a_row_end_that_the_fine_mask_does_not_show_is_dropped() -> None:
    """The coarse mask took the sheet's edge for ink 8 mm past the rows' end, and both rows were
    read on down it (real photo 02374); the fine mask shows no ink there, so the rows end where
    their trace does."""
    shape = (300, 720)
    coarse = np.concatenate([_row_mask(peak_px=48, thickness=5, shape=shape)] * 2).astype(np.uint8)
    cv2.line(coarse, (640, 130), (700, 300), 1, 4)
    fine = np.concatenate([_row_mask(peak_px=60, thickness=2, shape=shape)] * 2)
    rows = read_rows(coarse > 0, PX_PER_MM)
    assert min(r.x_start + len(r.y_px) for r in rows) > 690
    refined = refine_rows(rows, coarse > 0, fine, PX_PER_MM)
    assert [r.x_start + len(r.y_px) for r in refined] == [584, 584]


def test_reading_part_of_a_page_matches_reading_the_whole_page_there() -> None:
    """A box is read with its page coordinates, so the network sees it as it would on the whole page."""
    net = TraceNet()
    page = cv2.cvtColor(cv2.imread(str(EXAMPLE)), cv2.COLOR_BGR2RGB)[300:900, 200:1100]
    box = (200, 150, 700, 450)
    whole, part = net.probability(page), net.probability(page, box=box)
    assert part.shape == (300, 500)
    a, b = whole[150 + 64 : 450 - 64, 200 + 64 : 700 - 64] > 0.5, part[64:-64, 64:-64] > 0.5  # away from its edges
    assert a.sum() > 1000 and (a & b).sum() / (a | b).sum() > 0.95


def test_reading_in_strips_matches_reading_at_once() -> None:
    """Large reads go through the network in strips of columns (memory): the same trace pixels."""
    net = TraceNet()
    page = cv2.cvtColor(cv2.imread(str(EXAMPLE)), cv2.COLOR_BGR2RGB)[300:900, 200:1100]
    at_once = net.probability(page) > 0.5
    net.TILE_PIXELS = 600 * 900 // 3  # four strips of 240 columns (the padded read is 608 x 912)
    in_strips = net.probability(page) > 0.5
    assert at_once.sum() > 1000 and (at_once & in_strips).sum() / (at_once | in_strips).sum() > 0.99


def test_reading_in_bfloat16_matches_reading_in_float32() -> None:
    """Where the CPU has bf16 (AVX512-BF16, AMX) the network reads in it, 1.5 times faster: the
    same trace pixels as fp32 (forced here, so it is checked on any CPU)."""
    net = TraceNet()
    page = cv2.cvtColor(cv2.imread(str(EXAMPLE)), cv2.COLOR_BGR2RGB)[300:900, 200:1100]
    net.bf16 = False
    fp32 = net.probability(page) > 0.5
    net.bf16 = True
    bf16 = net.probability(page) > 0.5
    assert fp32.sum() > 1000 and (fp32 & bf16).sum() / (fp32 | bf16).sum() > 0.97


def _rows_with_pulses(pulse_mm: float, spacing_mm: float, pulse_top: bool = True, lead_in_mm: float = 2.0,
                      gap_mm: float = 1.5) -> np.ndarray:
    """Three rows `spacing_mm` apart, each starting with `lead_in_mm` of flat ink, then a 1 mV
    pulse `pulse_mm` tall and 5 mm wide (25 mm/s), then after a `gap_mm` gap the beats; the
    pulse's top line left out when `pulse_top` is False (as the network drops a thin one, val96 #80)."""
    mm = PX_PER_MM
    shift = lead_in_mm - 2.0
    height, width = int((3 * spacing_mm + 20) * mm), int((120 + shift) * mm)
    mask = np.zeros((height, width), np.uint8)
    for row in range(3):
        base = int((spacing_mm * (row + 0.5) + 10) * mm)
        x0, x1 = int((10 + shift) * mm), int((15 + shift) * mm)
        top = base - int(pulse_mm * mm)
        cv2.line(mask, (x0 - int(lead_in_mm * mm), base), (x0, base), 1, 2)
        cv2.line(mask, (x0, base), (x0, top), 1, 2)
        cv2.line(mask, (x1, top), (x1, base), 1, 2)
        if pulse_top:
            cv2.line(mask, (x0, top), (x1, top), 1, 2)
        points = [(int((15 + gap_mm + shift) * mm), base), (int((18 + shift) * mm), base)]
        for beat in np.arange(25, 115, 20) + shift:  # a QRS of 1.2 mV and a flat baseline between beats
            points += [(int(beat * mm), base), (int((beat + 1) * mm), base - int(1.2 * pulse_mm * mm)),
                       (int((beat + 2) * mm), base)]
        cv2.polylines(mask, [np.array(points, np.int32).reshape(-1, 1, 2)], False, 1, 2)
    return mask > 0


def test_a_pulse_taller_than_half_the_row_spacing_gives_its_gain() -> None:
    """A 20 mm/mV pulse stands 20 mm high between rows 32 mm apart, above the row's own band."""
    rows = read_rows(_rows_with_pulses(pulse_mm=20, spacing_mm=32), PX_PER_MM)
    assert len(rows) == 3
    assert gain_from_pulses(rows, PX_PER_MM) == 20
    assert speed_from_pulses(rows, PX_PER_MM) == 25


def test_a_tall_pulse_whose_edges_lost_their_upper_halves_is_read_up_to_its_top() -> None:
    """A 20 mm/mV pulse between rows 30 mm apart, its top beyond the row's band, and the network
    lost the upper 8 mm of both edges: bridged from its edges alone it read 12 mm, 10 mm/mV, and
    the page's amplitudes came out doubled (val96 #79). Read up to its top, it stands 20 mm."""
    mask = _rows_with_pulses(pulse_mm=20, spacing_mm=30).astype(np.uint8)
    mm = PX_PER_MM
    for row in range(3):
        base = int((30 * (row + 0.5) + 10) * mm)
        mask[base - int(20 * mm) + 2 : base - int(12 * mm), int(10 * mm) - 2 : int(10 * mm) + 3] = 0
        mask[base - int(20 * mm) + 2 : base - int(12 * mm), int(15 * mm) - 2 : int(15 * mm) + 3] = 0
    rows = read_rows(mask > 0, PX_PER_MM)
    assert len(rows) == 3
    for row in rows:
        assert row.pulse_height_px / PX_PER_MM == pytest.approx(20.0, abs=1.0)
    assert gain_from_pulses(rows, PX_PER_MM) == 20


def test_a_pulse_whose_rising_edge_the_mask_broke_off_is_still_read() -> None:
    """The mask broke a 20 mm/mV pulse's rising edge from just under its top to 4.5 mm under
    it, outside the row's band: the edge's lower part was a lone narrow stroke, neither trace nor
    a pulse edge (it had no narrow partner), and the rows began at the falling edge, with no
    pulse: 10 mm/mV assumed (val96 #38). The rest of the pulse partners the broken edge."""
    mask = _rows_with_pulses(pulse_mm=20, spacing_mm=32).astype(np.uint8)
    mm = PX_PER_MM
    for row in range(3):
        base = int((32 * (row + 0.5) + 10) * mm)
        mask[base - int(19.5 * mm) : base - int(15.5 * mm), int(10 * mm) - 2 : int(10 * mm) + 3] = 0
    rows = read_rows(mask > 0, PX_PER_MM)
    assert len(rows) == 3
    for row in rows:
        assert row.pulse_height_px / PX_PER_MM == pytest.approx(20.0, abs=1.0)


def test_a_pulse_whose_top_was_lost_is_measured_from_its_edges() -> None:
    rows = read_rows(_rows_with_pulses(pulse_mm=10, spacing_mm=30, pulse_top=False), PX_PER_MM)
    assert len(rows) == 3
    assert all(row.pulse_height_px is not None for row in rows)
    assert gain_from_pulses(rows, PX_PER_MM) == 10
    assert speed_from_pulses(rows, PX_PER_MM) == 25


def test_a_pulse_after_a_long_lead_in_is_read_whole_and_the_row_starts_after_it() -> None:
    """Ink before the pulse (a grid's border line, a label) puts the pulse's falling edge past
    the pulse zone's 16 mm; the pulse is followed to its end, not cut there (real photo 03089:
    cut, the rows started 4 mm early, 160 ms)."""
    rows = read_rows(_rows_with_pulses(pulse_mm=10, spacing_mm=30, lead_in_mm=12), PX_PER_MM)
    assert len(rows) == 3
    for row in rows:
        assert row.pulse_width_px / PX_PER_MM == pytest.approx(5.0, abs=0.5)
        assert row.x_start / PX_PER_MM == pytest.approx(16.5 + 10, abs=1.0)  # where the beats' line begins


@pytest.mark.parametrize("gap_mm", [0.0, 1.5])
def test_the_signal_starts_where_the_trace_leaves_the_pulse(gap_mm: float) -> None:
    """After a gap, the trace's ink begins half a line before its first sample. A trace drawn
    straight on from the pulse's falling edge (as ecg-image-kit prints, the real photos) begins
    at the edge's centre, half a line before the first column read after it: taken for the
    first case, the real photos were read a line's width (20-30 ms) early."""
    rows = read_rows(_rows_with_pulses(pulse_mm=10, spacing_mm=30, gap_mm=gap_mm), PX_PER_MM)
    assert len(rows) == 3
    for row in rows:
        assert row.x_start + row.start_offset_px == pytest.approx((15 + gap_mm) * PX_PER_MM, abs=0.6)


def test_a_row_whose_start_was_read_half_a_millimetre_early_is_recut_at_the_common_start() -> None:
    """All rows of a page start at the same column; a row read 4 px (0.5 mm, 20 ms) early kept
    its own time axis, and broke III = II - I where it met the others (val96 #2: 10.8 -> 13.5 dB)."""
    ramp = np.arange(200, dtype=float)
    pulse = 5 * PX_PER_MM  # 0.2 s at 25 mm/s
    rows = [RowTrace(ramp.copy(), 100, 50.0, 80.0, 0.0, pulse), RowTrace(ramp.copy(), 100, 150.0, 80.0, 0.0, pulse),
            RowTrace(ramp.copy(), 96, 250.0, 80.0, 0.0, pulse)]
    early = _common_start(rows, PX_PER_MM)[2]
    assert early.x_start == 100
    assert early.y_px[0] == 4.0  # the same column of the page as before, now at the row's start


def test_every_row_takes_the_signal_start_of_the_rows_that_placed_the_common_start() -> None:
    """A row without its pulse, its start re-cut to the pulses' column, reads on from there as they
    do (real photo 02780: two rows read their own way fell out of step with the other two by a line's width)."""
    ramp = np.arange(200, dtype=float)
    pulse = 5 * PX_PER_MM
    rows = [RowTrace(ramp.copy(), 100, 50.0, 80.0, -3.0, pulse), RowTrace(ramp.copy(), 108, None, None, 3.0),
            RowTrace(ramp.copy(), 108, None, None, 3.0)]
    assert [(row.x_start, row.start_offset_px) for row in _common_start(rows, PX_PER_MM)] == [(100, -3.0)] * 3


def test_without_pulses_the_rows_that_agree_place_the_common_start() -> None:
    """Rows without pulses start where most of them agree, not at the median of all: a tall pulse
    of the row below poking into a row's band starts that reading early (val96 #38: two rows of four
    read from 149 and 196, two from 246 and 247; the median, 221, read every lead 90 ms late)."""
    ramp = np.arange(400, dtype=float)
    rows = [RowTrace(ramp.copy(), x, None, None, 4.0) for x in (149, 196, 247, 246)]
    assert [row.x_start for row in _common_start(rows, PX_PER_MM)] == [246] * 4
    split = [RowTrace(ramp.copy(), x, None, None, 4.0) for x in (100, 101, 150, 151)]
    assert [row.x_start for row in _common_start(split, PX_PER_MM)] == [125] * 4  # no group larger: the median


def test_a_pulse_of_no_standard_width_does_not_place_the_rows() -> None:
    """A pulse read 6.8 mm wide (real photo 02858: its top joined to a grid line) is no 0.2 s pulse
    at 25 or 50 mm/s, and its row's start no surer than the others': the two that agree place it."""
    ramp = np.arange(200, dtype=float)
    rows = [RowTrace(ramp.copy(), 120, 50.0, 80.0, 0.0, 6.8 * PX_PER_MM), RowTrace(ramp.copy(), 100, None, None),
            RowTrace(ramp.copy(), 101, None, None)]
    assert [row.x_start for row in _common_start(rows, PX_PER_MM)] == [100] * 3


def test_rows_without_pulses_are_recut_at_their_median_start() -> None:
    """No pulse printed or found: the rows' own starts still agree but for the odd one (val96 #59,
    #87: 5.3 -> 10.7 and 6.3 -> 9.6 dB)."""
    ramp = np.arange(200, dtype=float)
    rows = [RowTrace(ramp.copy(), 100, None, None), RowTrace(ramp.copy(), 101, None, None),
            RowTrace(ramp.copy(), 94, None, None)]
    assert [row.x_start for row in _common_start(rows, PX_PER_MM)] == [100, 100, 100]


def test_a_neighbours_deep_wave_reaching_into_the_row_is_not_read_as_the_rows_own_peak() -> None:
    """The upper row's S wave runs down through the half-way line to the lower row's baseline
    (V1 into V2, val96 #13, #49). Followed past the band's edge it read as a spike of the lower row
    most of the way up to the upper baseline; ink that reaches so far belongs to either row as
    likely, so both rows are cut at the half-way line instead."""
    mask = np.zeros((300, 640), np.uint8)
    cv2.line(mask, (20, 100), (620, 100), 1, 2)
    cv2.line(mask, (20, 200), (620, 200), 1, 2)
    cv2.rectangle(mask, (298, 100), (302, 199), 1, -1)  # steep: each column's ink spans the whole wave
    upper, lower = follow_rows(mask > 0, [100.0, 200.0], PX_PER_MM)
    # Each row reads the centre of the wave's ink on its own side of the half-way line (y = 150),
    # not of the ink all the way to the other baseline (old: 155 and 145).
    assert np.nanmin(lower.y_px[300 - lower.x_start - 2 : 300 - lower.x_start + 3]) >= 170
    assert np.nanmax(upper.y_px[300 - upper.x_start - 2 : 300 - upper.x_start + 3]) <= 130


def test_a_scribble_where_the_mask_lost_the_trace_is_left_unread_but_a_lone_qrs_top_is_kept() -> None:
    """Where the mask loses a stretch of faint trace, a column's only ink may be a scribble below
    it (val96 #85: V4's start past a bold bar read 12 mm low, on a red mark, for 0.35 s). Ink that
    leaves the row's level by jumps and comes back to it is left unread (NaN, filled from either
    side), unless it is as narrow as the top of a QRS whose thin strokes the mask lost."""
    mask = np.zeros((200, 800), np.uint8)
    cv2.line(mask, (10, 100), (400, 100), 1, 2)
    cv2.line(mask, (480, 100), (790, 100), 1, 2)  # the trace lost from 400 to 480
    cv2.line(mask, (420, 140), (470, 145), 1, 3)  # a scribble 5 mm below, 6 mm wide
    cv2.line(mask, (600, 100), (700, 100), 0, 2)
    cv2.line(mask, (640, 70), (650, 70), 1, 2)  # an R wave's top, 1.3 mm wide, its strokes lost
    (row,) = follow_rows(mask > 0, [100.0], PX_PER_MM)
    xs = np.arange(len(row.y_px)) + row.x_start
    assert np.isnan(row.y_px[(xs >= 420) & (xs <= 470)]).all()
    assert np.nanmin(row.y_px[(xs >= 640) & (xs <= 650)]) == pytest.approx(70, abs=1.5)


def test_a_deep_wave_is_read_down_its_stroke_not_along_a_grid_line_the_mask_took_for_ink() -> None:
    """A dark grid line 1.5 mm under the baseline leaked into the mask and crosses an S wave
    8 mm deep (real photo 01067, V1). Along the wave's columns both the line and the wave's tip
    touch the columns on either side, so the gap alone ties; the wave's stroke overlaps its
    neighbours far more and is the row's own (old: read along the line, the S wave lost)."""
    mask = np.zeros((300, 600), np.uint8)
    cv2.line(mask, (20, 150), (580, 150), 1, 3)
    cv2.line(mask, (20, 162), (580, 162), 1, 2)  # the grid line
    cv2.polylines(mask, [np.array([[290, 150], [300, 214], [310, 150]], np.int32).reshape(-1, 1, 2)], False, 1, 3)
    (row,) = follow_rows(mask > 0, [150.0], PX_PER_MM)
    at_tip = row.y_px[300 - row.x_start - 3 : 300 - row.x_start + 4]
    assert np.nanmax(at_tip) == pytest.approx(213, abs=2)


def test_a_flat_stretch_broken_off_at_both_ends_is_trace_but_a_letter_is_not() -> None:
    """After a lead's bold start bar a faint flat stretch 9 mm long, broken off the bar and the next
    QRS by the mask (real photo 01067, V3), was dropped as too short for a trace; a letter is not flat."""
    mask = np.zeros((200, 400), np.uint8)
    cv2.line(mask, (50, 100), (50 + 9 * int(PX_PER_MM), 102), 1, 3)  # the flat stretch
    cv2.putText(mask, "V", (250, 120), cv2.FONT_HERSHEY_SIMPLEX, 1.5, 1, 3)  # a lead name's letter
    kept = trace_ink(mask > 0, PX_PER_MM)
    assert kept[:, :200].sum() == (mask[:, :200] > 0).sum()
    assert not kept[:, 200:].any()


def test_a_lead_name_under_the_start_bar_is_not_read_but_a_wave_crossing_it_is() -> None:
    """A lead's bold start bar reaches 3 mm under the baseline, where its name's first letter
    touches it in the mask, and the row was read down the bar into the letter (real photos
    03089 V4, 01336 V6). Without the name's ink the row goes on along its trace; an S wave
    that runs through the name's box beyond its edges stays, and so does the tip of one in it."""
    mask = np.zeros((300, 800), np.uint8)
    cv2.line(mask, (20, 100), (780, 100), 1, 2)
    cv2.line(mask, (300, 60), (300, 124), 1, 5)  # the bar, 8 mm tall
    cv2.line(mask, (303, 124), (312, 148), 1, 2)  # "V" from the bar's foot, 3 mm under it
    cv2.line(mask, (312, 148), (321, 124), 1, 2)
    cv2.line(mask, (305, 100), (310, 100), 0, 2)  # the faint trace lost just after the bar
    cv2.polylines(mask, [np.array([[500, 100], [505, 160], [510, 100]], np.int32).reshape(-1, 1, 2)], False, 1, 2)
    cv2.polylines(mask, [np.array([[650, 100], [654, 140], [658, 100]], np.int32).reshape(-1, 1, 2)], False, 1, 2)
    # "V4" under the bar; names an S wave crosses, and one round the tip of another
    names = [(320.0, 136.0, 2), (506.0, 136.0, 2), (654.0, 136.0, 2)]
    cleaned = without_lettering(mask > 0, names, [100.0], PX_PER_MM)
    assert not cleaned[126:150, 305:325].any()  # all of the letter but where it meets the bar
    assert cleaned[150:158, 503:508].any()
    np.testing.assert_array_equal(cleaned[:, 640:670], mask[:, 640:670] > 0)
    (row,) = follow_rows(trace_ink(cleaned, PX_PER_MM), [100.0], PX_PER_MM)
    after_bar = row.y_px[305 - row.x_start : 330 - row.x_start]
    assert np.nanmax(np.abs(after_bar - 100)) <= 2


def test_a_bar_at_a_lead_start_hides_its_columns_but_a_wave_there_is_no_bar() -> None:
    """Printers mark each lead's start with a bar 0.6-1 mm wide; the trace under it is hidden and
    was read along the bar's end (real photo 03156: V1 read 0.3-0.5 mV off for 20 ms). Row 0's
    bar, with an R wave's stroke run into its side, is hidden; row 1 has no bar, but a deep S wave
    whose strokes merge in the mask right at the lead start, and the previous row's S wave
    running down through its band: neither is a bar."""
    mask = np.zeros((400, 900), np.uint8)
    for y in (100, 300):
        cv2.line(mask, (20, y), (880, y), 1, 2)
    cv2.rectangle(mask, (398, 60), (404, 130), 1, -1)  # the bar, 7 px (0.9 mm) wide, 9 mm tall
    cv2.line(mask, (392, 100), (398, 20), 1, 2)  # an R wave's upstroke into its side
    cv2.polylines(mask, [np.array([[397, 300], [401, 380], [405, 300]], np.int32).reshape(-1, 1, 2)], False, 1, 2)
    cv2.line(mask, (600, 100), (602, 260), 1, 2)  # row 0's S wave, deep into row 1's band
    rows = follow_rows(trace_ink(mask > 0, PX_PER_MM), [100.0, 300.0], PX_PER_MM)
    starts = [[0.0, 400.0 - row.x_start, 600.0 - row.x_start] for row in rows]
    hidden = under_bars(rows, mask > 0, starts, PX_PER_MM)
    columns = np.flatnonzero(hidden[0]) + rows[0].x_start
    assert columns.min() >= 394 and columns.max() <= 408 and set(range(398, 405)) <= set(columns)  # ± half a mm
    assert not hidden[1].any()


def test_rows_the_even_spacing_implies_are_found_where_only_their_complexes_were_read() -> None:
    """A 12x1 page, 15 mm between rows: rows 4, 6 and 7 kept only their QRS complexes (their
    flat stretches taken for grid lines), so their profile peaks are faint beside the others'."""
    spacing, trace = 15 * PX_PER_MM, np.zeros((1600, 2000), bool)
    for k in range(12):
        y = int(100 + k * spacing)
        if k in (4, 6, 7):
            for x in range(100, 1900, 160):
                trace[y - 40 : y + 3, x : x + 3] = True
        else:
            trace[y : y + 3, 100:1900] = True
    found = find_rows(trace, PX_PER_MM)
    assert len(found) == 12
    np.testing.assert_allclose(found, 101 + spacing * np.arange(12), atol=0.15 * spacing)


def test_no_row_is_added_where_the_spacing_implies_none_or_nothing_was_read() -> None:
    trace = np.zeros((1000, 2000), bool)
    for y in (100, 220, 340, 700):  # a 3x4 page and its rhythm strip 3 spacings below, nothing between
        trace[y : y + 3, 100:1900] = True
    trace[510:520, 150:160] = True  # a stray mark off the even spacing
    assert len(find_rows(trace, PX_PER_MM)) == 4


def test_a_grid_line_at_the_pulse_top_does_not_widen_the_pulse() -> None:
    """The pulse's top lay on a major grid line, which the network took for ink over 4 mm before
    the pulse, up to a vertical line running on above the top: the pulses read 9.3 mm wide, 50 mm/s
    (real photo 03089). The rising edge is ink that runs the pulse's height and no higher."""
    mask = _rows_with_pulses(pulse_mm=10, spacing_mm=30, lead_in_mm=6).astype(np.uint8)
    mm = PX_PER_MM
    for row in range(3):
        base = int((30 * (row + 0.5) + 10) * mm)
        top, x0 = base - int(10 * mm), int(14 * mm)
        cv2.line(mask, (x0 - int(6 * mm), base), (x0 - 2, base), 0, 2)  # no foot before the pulse
        cv2.line(mask, (x0 - int(4.5 * mm), top), (x0, top), 1, 2)
        cv2.line(mask, (x0 - int(4.5 * mm), top - int(8 * mm)), (x0 - int(4.5 * mm), base - int(mm)), 1, 2)
    rows = read_rows(mask > 0, PX_PER_MM)
    assert len(rows) == 3
    for row in rows:
        assert row.pulse_width_px / PX_PER_MM == pytest.approx(5.0, abs=0.5)
    assert speed_from_pulses(rows, PX_PER_MM) == 25


def test_a_deep_wave_leaving_the_band_is_followed_not_the_neighbours_wave_in_its_place() -> None:
    """The middle row's S wave runs past the half-way line to the row below, while the upper
    row's S wave reaches down into the middle row's band over the same columns (val96 #74: V2's
    1.9 mV S waves read as V1's, at +1.8 mV). The middle row keeps to its own stroke."""
    mask = np.zeros((400, 640), np.uint8)
    for base, depth in ((100, 75), (200, 56)):
        wave = [[20, base], [290, base], [305, base + depth], [325, base + depth], [340, base], [620, base]]
        cv2.polylines(mask, [np.array(wave, np.int32).reshape(-1, 1, 2)], False, 1, 2)
    cv2.line(mask, (20, 300), (620, 300), 1, 2)
    _, middle, _ = follow_rows(mask > 0, [100.0, 200.0, 300.0], PX_PER_MM)
    trough = middle.y_px[305 - middle.x_start : 326 - middle.x_start]
    assert np.nanmin(trough) > 240  # on its own wave (old: 175, on the upper row's)


def test_a_row_start_above_its_later_level_is_no_pulse() -> None:
    """The first 12 mm stand 4 mm above the level that follows a gap, but not above the row's
    overall level (val96 #81: a row's start read as a pulse -0.7 mm tall, whose gain misfit was
    NaN, so it was neither looked for again nor refused, and it cut the row's start)."""
    mm = PX_PER_MM
    mask = np.zeros((300, 1200), np.uint8)
    cv2.line(mask, (20, 100), (20 + int(12 * mm), 100), 1, 2)
    cv2.line(mask, (20 + int(16 * mm), 132), (20 + int(40 * mm), 132), 1, 2)
    cv2.line(mask, (20 + int(40 * mm), 92), (1180, 92), 1, 2)
    (row,) = follow_rows(mask > 0, [100.0], PX_PER_MM)
    assert row.pulse_height_px is None
    assert row.x_start < 21  # the row keeps its start


def test_a_wave_coming_back_from_the_bands_edge_is_not_left_for_ink_going_on_from_its_tip() -> None:
    """A wave's tip at the band's edge (rows 100 / 200 / 300: the middle row's band 150-250),
    with a stain going on from the tip: where the reading jumps from the tip back to the stroke
    coming up to the row's level, that stroke is kept (val96 #45: aVR's S wave went on along a
    stain). Where the ink jumped to does not run on to the row's level, the stain-like run that
    continues the tip is taken instead, as for a deep wave leaving the band."""
    mask = np.zeros((400, 40), bool)
    tip = (slice(244, 250), slice(10, 20))
    mask[tip] = True  # the ink going on from the tip, columns 10-19
    # Down to the tip in steep columns whose runs touch, then back up from 2 px above the tip's run.
    y_min = np.array([198.0] * 5 + [200, 208, 218, 228, 238] + [226, 216, 206, 198] + [198.0] * 26)
    y_max = np.array([202.0] * 5 + [210, 220, 230, 240, 249] + [236, 228, 218, 208] + [202.0] * 26)
    for x in range(40):
        mask[int(y_min[x]) : int(y_max[x]) + 1, x] = True
    coming_back = (y_min.copy(), y_max.copy())
    _stay_on_stroke(mask, 0, *coming_back, 200.0, (150, 250), (110, 290), PX_PER_MM)
    assert np.array_equal(coming_back[0], y_min)  # the stroke back up is kept
    astray = (y_min.copy(), y_max.copy())
    astray[0][10:], astray[1][10:] = 160.0, 164.0  # the reading jumps to ink that stays away from the row's level
    mask[160:165, 10:] = True
    _stay_on_stroke(mask, 0, *astray, 200.0, (150, 250), (110, 290), PX_PER_MM)
    assert astray[0][10] >= 244  # it follows the ink going on from the tip
