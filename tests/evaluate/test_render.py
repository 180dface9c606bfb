import numpy as np
import pytest

from xtalscreen.errors import ParameterError
from xtalscreen.evaluate.render import MASK_COLOUR, display_values, render_image


def test_display_value_is_contrast_times_value_over_p90():
    img = np.arange(100, dtype=np.float32).reshape(10, 10)
    p90 = np.percentile(img, 90)
    v = display_values(img, contrast=0.4)
    assert v[5, 5] == pytest.approx(min(1.0, 0.4 * 55 / p90))
    assert v.max() <= 1.0 and v.min() >= 0.0


def test_masked_pixels_are_excluded_from_p90_and_coloured():
    img = np.ones((20, 20), np.float32)
    img[0, :] = 1e6  # a hot row, masked
    mask = np.zeros_like(img, bool)
    mask[0, :] = True
    v = display_values(img, mask=mask, contrast=0.5)
    assert v[5, 5] == pytest.approx(0.5)  # P90 of the unmasked pixels is 1
    rgb = render_image(img, mask=mask)
    assert tuple(rgb[0, 3]) == MASK_COLOUR
    assert rgb[5, 5, 0] == rgb[5, 5, 1] == rgb[5, 5, 2]  # grey elsewhere


def test_spots_are_dark_on_light_and_circles_drawn():
    img = np.full((64, 64), 10.0, np.float32)
    img[30, 30] = 1000.0
    rgb = render_image(img)
    assert rgb[30, 30, 0] < rgb[5, 5, 0]
    circ = render_image(img, spots=np.array([[30.5, 30.5]]), spot_radius=6)
    assert (circ[:, :, 0].astype(int) - circ[:, :, 1]).max() > 100  # red pixels present


def test_empty_frame_and_bad_contrast():
    v = display_values(np.zeros((4, 4)))
    assert not v.any()
    with pytest.raises(ParameterError, match="contrast"):
        display_values(np.zeros((4, 4)), contrast=-1)
