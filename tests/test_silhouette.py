"""Silhouette statistics (evaluation/silhouette.py): figure area and solidity on drawn shapes."""

import cv2
import numpy as np
import pytest

from pokemon_diffusion.evaluation.silhouette import silhouette_features, silhouette_report


def _canvas(size: int = 32) -> np.ndarray:
    return np.full((size, size, 3), 255, np.uint8)


def _square(side: int = 16) -> np.ndarray:
    image = _canvas()
    image[8:8 + side, 8:8 + side] = (200, 40, 40)
    return image


def _plus() -> np.ndarray:
    """Two 4x20 bars crossing: 144 pixels; its convex hull is an octagon of 20x20 minus 4 corners."""
    image = _canvas()
    image[14:18, 6:26] = (40, 40, 200)
    image[6:26, 14:18] = (40, 40, 200)
    return image


def test_a_filled_square_is_fully_solid_and_its_area_is_its_share():
    area, solidity = silhouette_features(_square()[None])[0]
    assert area == pytest.approx(256 / 1024) and solidity == pytest.approx(1.0)


def test_a_plus_sign_has_the_solidity_of_its_pixels_over_its_hull_pixels():
    image = _plus()
    area, solidity = silhouette_features(image[None])[0]
    assert area == pytest.approx(144 / 1024)
    # the hull's pixels, counted independently: rasterise the convex polygon through the 8 outer corners
    hull = np.zeros((32, 32), np.uint8)
    corners = np.array([[6, 14], [6, 17], [14, 25], [17, 25], [25, 17], [25, 14], [17, 6], [14, 6]], np.int32)
    cv2.fillConvexPoly(hull, corners[:, ::-1].copy(), 1)
    assert solidity == pytest.approx(144 / hull.sum())
    assert 0.4 < solidity < 0.7  # a limb-like shape is far from a blob's ~0.9


def test_the_largest_part_decides_the_solidity_and_all_parts_the_area():
    image = _square(12)
    image[28:30, 28:30] = (0, 0, 0)  # a 4-pixel speck beside the figure
    area, solidity = silhouette_features(image[None])[0]
    assert area == pytest.approx((144 + 4) / 1024) and solidity == pytest.approx(1.0)


def test_enclosed_white_is_figure_and_a_notch_lowers_the_solidity():
    image = _square(16)
    image[14:18, 14:18] = 255  # enclosed white: a gap in the figure, not background
    # figure_mask keeps enclosed white as figure (white parts of Pokémon), so nothing changes
    assert silhouette_features(image[None])[0][1] == pytest.approx(1.0)
    image[14:18, 8:18] = 255  # now the white opens to the left edge of the square, still inside the frame
    _, solidity = silhouette_features(image[None])[0]
    assert solidity < 1.0


def test_an_empty_white_image_counts_as_all_figure():
    area, solidity = silhouette_features(_canvas()[None])[0]
    assert area == 1.0 and solidity == 1.0  # figure_mask: a wholly near-white image is a white blob


def test_report_compares_the_two_sets():
    report = silhouette_report(np.stack([_square()] * 3), silhouette_features(np.stack([_plus()] * 2)))
    assert report["generated"] == pytest.approx({"area": 0.25, "solidity": 1.0})
    assert report["real"]["area"] == pytest.approx(144 / 1024)
    assert report["wasserstein"]["area"] == pytest.approx(0.25 - 144 / 1024)
    assert report["wasserstein"]["solidity"] == pytest.approx(1.0 - report["real"]["solidity"])
    assert (report["num_generated"], report["num_real"]) == (3, 2)
    same = silhouette_report(np.stack([_plus()] * 2), silhouette_features(np.stack([_plus()] * 3)))
    assert same["wasserstein"] == {"area": 0.0, "solidity": 0.0}


@pytest.mark.parametrize("bad", [np.zeros((2, 8, 8, 3), np.float32), np.zeros((8, 8, 3), np.uint8),
                                 np.zeros((2, 8, 8, 4), np.uint8)])
def test_refuses_what_is_not_a_batch_of_uint8_rgb(bad):
    with pytest.raises(ValueError, match="allowed: uint8"):
        silhouette_features(bad)
