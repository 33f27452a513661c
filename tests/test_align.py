"""Stage 0: turning and straightening the page, mapping back, and reading lead-label heatmaps."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

import cv2
import numpy as np
import pytest

from cardioscan import pipeline
from cardioscan.align import (
    LabelNet,
    LeadLabel,
    PageFrame,
    label_columns,
    label_peaks,
    labels_read_score,
    match_labels,
    name_by_layout,
    page_outline,
    place_lead_ins,
    printed_strip_leads,
    rotation_homography,
    skew_degrees,
    upright,
    waves_follow_beats,
)
from cardioscan.io.images import LoadedPage, load_page
from cardioscan.metrics import kaggle2025_snr
from cardioscan.pipeline import Digitizer
from cardioscan.postprocess import Calibration, layout_by_names
from cardioscan.synth.groundtruth import PageTruth
from cardioscan.synth.render import RenderOptions, render_page
from cardioscan.timing import PrintedSegment
from cardioscan.trace import RowTrace


def _rows_mask(shape: tuple[int, int] = (300, 500)) -> np.ndarray:
    mask = np.zeros(shape, bool)
    for y in (60, 130, 200, 260):
        mask[y - 1 : y + 2, 40:460] = True
    return mask


@pytest.mark.parametrize("degrees", [-12.0, -3.5, 4.0, 9.0])
def test_skew_of_tilted_rows_is_found(degrees: float) -> None:
    mask = _rows_mask().astype(np.uint8) * 255
    homography, shape = rotation_homography(mask.shape, degrees)
    tilted = cv2.warpPerspective(mask, homography, shape[::-1]) > 127
    assert skew_degrees(tilted) == pytest.approx(-degrees, abs=0.3)


@pytest.mark.parametrize("quarter_turns,degrees,half_turn", [(0, 0.0, False), (1, 5.0, False), (3, -7.0, True)])
def test_points_map_back_to_the_input(quarter_turns: int, degrees: float, half_turn: bool) -> None:
    image = np.zeros((240, 400), np.uint8)
    image[100:103, 300:303] = 255  # a dot at (301, 101)
    turned_shape = image.shape if quarter_turns % 2 == 0 else image.shape[::-1]
    homography, shape = rotation_homography(turned_shape, degrees)
    frame = PageFrame(image.shape, quarter_turns, degrees, homography, shape, half_turn)
    seen = np.rot90(frame.apply(image), 2 if half_turn else 0)
    y, x = np.unravel_index(np.argmax(cv2.GaussianBlur(seen.astype(np.float32), (0, 0), 1.5)), seen.shape)
    back = frame.to_input(np.array([[x, y]], float))[0]
    assert back == pytest.approx([301, 101], abs=1.5)


def _beats_row(px_per_mm: float = 8.0, seconds: float = 10.0) -> RowTrace:
    """A row of beats at 25 mm/s: a 0.1 mV P wave, a 1 mV QRS, a 0.3 mV T wave, at 10 mm/mV."""
    per_s = 25 * px_per_mm
    t = np.arange(int(seconds * per_s)) / per_s
    mv = np.zeros_like(t)
    for beat in np.arange(0.4, seconds - 0.5, 0.85):
        mv += 0.1 * np.exp(-(((t - beat + 0.16) / 0.03) ** 2))  # P
        mv += 1.0 * np.exp(-(((t - beat) / 0.012) ** 2))  # QRS
        mv += 0.3 * np.exp(-(((t - beat - 0.28) / 0.06) ** 2))  # T
    return RowTrace(200.0 - mv * 10 * px_per_mm, x_start=0, zero_px=None, pulse_height_px=None)


def test_beats_tell_upright_from_upside_down() -> None:
    row = _beats_row()
    turned = RowTrace(400.0 - row.y_px[::-1], x_start=0, zero_px=None, pulse_height_px=None)  # half a turn
    assert waves_follow_beats([row], 8.0) > 0.8
    assert waves_follow_beats([turned], 8.0) < -0.8


EXAMPLE = Path(__file__).resolve().parents[1] / "examples" / "ptbxl_HR06008_clean"


def _sheet_on_a_table(corners: np.ndarray, gridless: bool = False, curl_mm: float = 0.0) -> np.ndarray:
    """The shipped example (a letter page at 5.9 px/mm), its grid erased if `gridless`, bent by
    up to `curl_mm` (see `test_grid.bend`), laid at `corners` on a dark violet table."""
    page = load_page(EXAMPLE.with_suffix(".png")).rgb
    if gridless:  # only the dark ink (traces, pulses, text) stays
        page = np.where((cv2.cvtColor(page, cv2.COLOR_RGB2GRAY) < 110)[..., None], page, 255).astype(np.uint8)
    h, w = page.shape[:2]
    if curl_mm:
        from test_grid import bend, curled

        page = curled(page, *bend((h, w), PageTruth.load(EXAMPLE).meta["px_per_mm"], curl_mm))
    flat = np.float32([[0, 0], [w, 0], [w, h], [0, h]])
    table = np.zeros((1500, 2100, 3), np.uint8)
    table[:] = (70, 50, 110)
    homography = cv2.getPerspectiveTransform(flat, corners.astype(np.float32))
    sheet = cv2.warpPerspective(page, homography, table.shape[1::-1])
    inside = cv2.warpPerspective(np.full((h, w), 255, np.uint8), homography, table.shape[1::-1]) > 127
    table[inside] = sheet[inside]
    return table


def test_a_sheet_seen_at_an_angle_is_found_by_its_outline() -> None:
    corners = np.array([[420, 230], [1760, 160], [1880, 1330], [300, 1240]], float)
    outline = page_outline(_sheet_on_a_table(corners))
    assert outline is not None
    assert np.abs(outline.corners - corners).max() < 8  # px, of a sheet about 1500 px across
    h, w = outline.shape
    assert w / h == pytest.approx(279.4 / 215.9, rel=0.01)  # letter proportions restored


def test_a_sheet_seen_square_on_is_left_to_the_grid() -> None:
    assert page_outline(_sheet_on_a_table(np.array([[300, 200], [1800, 200], [1800, 1359], [300, 1359]], float))) is None


def test_a_gridless_sheet_seen_at_an_angle_is_flattened_by_its_outline_and_read() -> None:
    table = _sheet_on_a_table(np.array([[420, 230], [1760, 160], [1880, 1330], [300, 1240]], float), gridless=True)
    result = Digitizer().digitize(LoadedPage(table, Path("gridless.png"), 1, 1))
    assert result.summary()["grid"]["outline"] and not result.summary()["grid"]["rectified"]
    assert result.layout == "3x4_r1"
    # 7.8 dB measured; without the outline the rows converge and the page reads at -1.4 dB.
    assert kaggle2025_snr(PageTruth.load(EXAMPLE).shown, result.record.signals, fs=500).snr_db > 5.0


def test_a_curled_sheet_flattened_by_its_outline_is_straightened_by_its_grid(monkeypatch: pytest.MonkeyPatch) -> None:
    """Where the grid's tiles give no rectification (here made to fail), the outline undoes the
    perspective and the grid's phase warp then follows the curl the quadrilateral cannot."""
    monkeypatch.setattr(pipeline, "rectify_grid", lambda rgb: (None, None))
    table = _sheet_on_a_table(np.array([[420, 230], [1760, 160], [1880, 1330], [300, 1240]], float), curl_mm=1.0)
    result = Digitizer().digitize(LoadedPage(table, Path("curled.png"), 1, 1))
    grid = result.summary()["grid"]
    assert grid["outline"] and not grid["rectified"] and grid["warp_mm"] > 0.5
    # 9.9 dB measured; with the outline alone (no warp) 3.1 dB.
    assert kaggle2025_snr(PageTruth.load(EXAMPLE).shown, result.record.signals, fs=500).snr_db > 7.0


def test_label_peaks_are_placed_to_a_fraction_of_a_pixel_and_named_by_the_strongest_lead() -> None:
    ys, xs = np.mgrid[0:40, 0:60].astype(np.float64)

    def blob(x: float, y: float, height: float) -> np.ndarray:
        return height * np.exp(-((xs - x) ** 2 + (ys - y) ** 2) / (2 * 4.0**2))

    heat = np.zeros((13, 40, 60))
    heat[3], heat[4] = blob(20.3, 11.7, 0.6), blob(20.3, 11.7, 0.4)  # a label read half as aVR, less as aVL
    heat[7] = blob(45.0, 30.0, 0.6)
    heat[12] = np.maximum(blob(20.3, 11.7, 0.95), blob(45.0, 30.0, 0.7))  # a label of any lead
    heat[12, 30, 46] = heat[12, 30, 45]  # a tie beside a peak (bf16 outputs) is no second label
    peaks = sorted(label_peaks(heat, threshold=0.3, radius=8))
    assert [(p[0], p[3]) for p in peaks] == [(3, pytest.approx(0.95, abs=0.01)), (7, pytest.approx(0.7))]
    assert [p[4] for p in peaks] == [pytest.approx(0.6, abs=0.01), pytest.approx(0.6, abs=0.01)]  # the named lead's own value
    assert peaks[0][1:3] == pytest.approx((20.3, 11.7), abs=0.1)
    assert peaks[1][1:3] == pytest.approx((45.5, 30.0), abs=0.05)  # the flat top between the two


def test_labels_match_by_lead_and_distance() -> None:
    truth = [LeadLabel("I", 10, 10, 1), LeadLabel("II", 10, 50, 1), LeadLabel("V1", 80, 10, 1)]
    found = [LeadLabel("I", 11, 10, 0.9), LeadLabel("V2", 80, 10, 0.8), LeadLabel("II", 10, 51, 0.9),
             LeadLabel("III", 40, 40, 0.5)]
    errors, unmatched = match_labels(found, truth, px_per_mm=2.0)
    assert errors == [pytest.approx(0.5), pytest.approx(0.5), np.inf]  # V1 read as V2 is a miss
    assert unmatched == 2


def _grid_rows(baselines: tuple[float, ...]) -> list[RowTrace]:
    return [RowTrace(np.full(1000, y), x_start=100, zero_px=y, pulse_height_px=40.0) for y in baselines]


def _segments_3x4(rhythm: tuple[str, ...] = ()) -> list[PrintedSegment]:
    leads = [["I", "aVR", "V1", "V4"], ["II", "aVL", "V2", "V5"], ["III", "aVF", "V3", "V6"]]
    return ([PrintedSegment(lead, r, k, np.zeros(10), 1.0) for r, row in enumerate(leads) for k, lead in enumerate(row)]
            + [PrintedSegment(lead, 3 + k, 0, np.zeros(10), 1.0, is_rhythm=True) for k, lead in enumerate(rhythm)])


def test_labels_at_segment_starts_are_named_by_the_layout_and_others_keep_their_reading() -> None:
    rows, segments = _grid_rows((200.0, 400.0, 600.0)), _segments_3x4()
    read = [LeadLabel("V2", 612, 385, 0.9),  # row 1, just after column 2's start (600): V2 as read
            LeadLabel("V1", 860, 580, 0.8),  # row 2, column 3 (850): the network misread V6
            LeadLabel("aVL", 95, 215, 0.7),  # row 0, a little before the row's start: I
            LeadLabel("III", 480, 600, 0.6)]  # mid-column: not a segment's label, kept as read
    named = name_by_layout(read, rows, segments)
    assert [label.lead for label in named] == ["V2", "V6", "I", "III"]
    assert [(label.x, label.y, label.confidence) for label in named] == [(r.x, r.y, r.confidence) for r in read]


def test_a_rhythm_strip_is_named_by_its_printed_label_when_the_network_reads_it_surely() -> None:
    rows, segments = _grid_rows((200.0, 400.0, 600.0, 800.0)), _segments_3x4(rhythm=("II",))  # II: the usual guess
    # Columns are 250 px wide: a strip's label counts up to 1/3 of one after its start (x = 100), not of the strip.
    assert printed_strip_leads([LeadLabel("V1", 120, 820, 0.9, reading=0.8)], rows, segments) == ["V1"]
    assert printed_strip_leads([LeadLabel("V1", 120, 820, 0.9, reading=0.3)], rows, segments) == [None]  # unsure
    assert printed_strip_leads([LeadLabel("V1", 300, 820, 0.9, reading=0.8)], rows, segments) == [None]  # mid-strip
    assert printed_strip_leads([LeadLabel("V1", 120, 620, 0.9, reading=0.8)], rows, segments) == [None]  # row above


def test_rows_drawn_from_before_the_record_are_placed_by_their_end_when_their_labels_say_so() -> None:
    """A real printout drew 0.4 s before the record's first second (10 mm at 25 mm/s): every column
    was read 0.4 s late. The labels of the later columns stand 3 mm after their starts measured
    from the rows' end; measured from the start, 13 mm after."""
    calibration = Calibration(px_per_mm=10.0, mm_per_s=25.0, mm_per_mv=10.0)
    rows = [RowTrace(np.full(2600, y), x_start=100, zero_px=y, pulse_height_px=100.0) for y in (200.0, 400.0, 600.0, 800.0)]
    starts_from_end = [100 + 100 + k * 625 for k in range(4)]  # px: 0.4 s of lead-in, columns of 2.5 s
    labels = [LeadLabel("V1", x + 30, y + 40, 0.9) for x in starts_from_end for y in (200.0, 400.0, 600.0)]
    placed = place_lead_ins(rows, labels, "3x4_r1", calibration)
    assert [r.start_offset_px for r in placed] == pytest.approx([100.0] * 4)  # the rhythm strip too
    # The same rows with labels 3 mm after the columns measured from the start: ink after the end.
    labels = [LeadLabel("V1", x - 100 + 30, y + 40, 0.9) for x in starts_from_end for y in (200.0, 400.0, 600.0)]
    assert [r.start_offset_px for r in place_lead_ins(rows, labels, "3x4_r1", calibration)] == [0.0] * 4
    assert [r.start_offset_px for r in place_lead_ins(rows, [], "3x4_r1", calibration)] == [0.0] * 4


def test_the_lead_names_read_as_names_only_the_right_way_up() -> None:
    """The way up of a page without calibration pulses, whose rows read about as well either way
    (val96 #33 was read upside down): its printed lead names read upright, not turned."""
    net = LabelNet()
    page = cv2.cvtColor(cv2.imread(str(EXAMPLE.with_suffix(".png"))), cv2.COLOR_BGR2RGB)
    px_per_mm = 5.91  # the example's scale, as digitize reads it
    right_way_up = labels_read_score(net.find(page, px_per_mm))
    upside_down = labels_read_score(net.find(upright(page, 2), px_per_mm))
    assert right_way_up > 2 * upside_down  # measured: 1.14 and 0.44


def _names_in_columns(counts: list[int], px_per_mm: float = 10.0) -> list[LeadLabel]:
    """Labels standing in columns 62.5 mm apart, 20 mm between the names of a column."""
    return [LeadLabel("I", (40 + 62.5 * k) * px_per_mm, (30 + 20 * i) * px_per_mm, 0.9, reading=0.6)
            for k, count in enumerate(counts) for i in range(count)]


@pytest.mark.parametrize(("counts", "columns"), [
    ([12], 1), ([6, 0, 6], 2), ([4, 3, 3, 3], 4), ([6, 3, 3, 3], 4),
    ([6], None),  # a 3x4 page with three strips whose later columns went unread
    ([4, 0, 3], None),  # 3x4 columns 0 and 2, not a 6x2 page's second column of six
    ([12, 0, 0, 1], 1),  # a lone word of the header is not a column
])
def test_the_lead_names_tell_how_many_columns_are_printed(counts: list[int], columns: int | None) -> None:
    assert label_columns(_names_in_columns(counts), 10.0) == columns


def test_stains_the_network_cannot_read_as_names_make_no_column() -> None:
    """A stained 6x2 page (val96 #57): spots found as labels but read as no name surely stood in
    two more columns, and the page was taken for 3x4 with three strips."""
    stains = [replace(label, reading=0.15) for label in _names_in_columns([0, 2, 0, 2])]
    assert label_columns(_names_in_columns([6, 0, 6]) + stains, 10.0) == 2


@pytest.mark.parametrize(("layout", "columns", "expected"), [
    ("3x4_r3", 2, "6x2"), ("6x2", 4, "3x4_r3"), ("3x4_r1", 4, "3x4_r1"), ("3x4_r1", None, "3x4_r1"),
    ("3x4_r3", 1, None),  # a faint 12x1 fax read as six rows: every other row lost
    ("3x4_r1", 2, None),
])
def test_a_layout_the_lead_names_contradict_is_not_read(layout: str, columns: int | None, expected: str | None) -> None:
    assert layout_by_names(layout, columns) == expected


@pytest.mark.parametrize(("layout", "columns"), [("12x1", 1), ("6x2", 2), ("3x4_r1", 4)])
def test_the_label_network_finds_the_columns_of_a_rendered_page(layout: str, columns: int) -> None:
    image, truth = render_page(5, RenderOptions(category="clean", layout=layout))
    px_per_mm = truth.meta["dpi"] / 25.4
    assert label_columns(LabelNet().find(image, px_per_mm), px_per_mm) == columns
