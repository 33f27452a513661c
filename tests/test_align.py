"""Stage 0's classical stand-in: turning and straightening the page, and mapping back."""

from __future__ import annotations

import cv2
import numpy as np
import pytest

from cardioscan.align import PageFrame, rotation_homography, skew_degrees


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
