"""The matched filter: masked Gaussian smoothing before binning."""

from __future__ import annotations

import numpy as np
import pytest
from scipy import ndimage

from xtalscreen.errors import ParameterError
from xtalscreen.io.frame import Frame
from xtalscreen.preprocess import PreprocessConfig, gaussian_prefilter
from xtalscreen.preprocess.smooth import prefilter_radius


def test_unmasked_interior_equals_a_plain_gaussian_and_conserves_counts():
    rng = np.random.default_rng(0)
    img = rng.poisson(4.0, (80, 90)).astype(np.float32)
    out = gaussian_prefilter(img, 1.5)
    ref = ndimage.gaussian_filter(img, 1.5, truncate=3.0)
    r = prefilter_radius(1.5)
    np.testing.assert_allclose(out[r:-r, r:-r], ref[r:-r, r:-r], rtol=1e-5)
    spot = np.zeros((21, 21), np.float32)
    spot[10, 10] = 50.0
    assert gaussian_prefilter(spot, 1.2).sum() == pytest.approx(50.0, rel=1e-4)


def test_masked_and_nonfinite_pixels_are_left_out():
    img = np.full((30, 30), 2.0, np.float32)
    img[15, 15] = 1e6  # a hot pixel, masked
    img[5, 5] = np.nan
    mask = np.zeros(img.shape, bool)
    mask[15, 15] = True
    out = gaussian_prefilter(img, 1.0, mask=mask)
    finite = np.isfinite(out)
    assert not finite[5, 5]  # stays bad for the binning after
    np.testing.assert_allclose(out[finite], 2.0, rtol=1e-5)  # the normalised mean of valid pixels
    # a window with room for the kernel smooths to the whole image's values inside
    r = prefilter_radius(1.0)
    win = gaussian_prefilter(img[8:25, 9:27], 1.0, mask=mask[8:25, 9:27])
    np.testing.assert_array_equal(win[r:-r, r:-r], out[8 + r:25 - r, 9 + r:27 - r])


def test_sigma_zero_is_the_image_and_bad_arguments_are_named():
    img = np.arange(12.0).reshape(3, 4)
    np.testing.assert_array_equal(gaussian_prefilter(img, 0), img)
    with pytest.raises(ParameterError, match="sigma"):
        gaussian_prefilter(img, -1)
    with pytest.raises(ParameterError, match="2-D"):
        gaussian_prefilter(np.zeros((2, 3, 4)), 1.0)
    with pytest.raises(ParameterError, match="mask shape"):
        gaussian_prefilter(img, 1.0, mask=np.zeros((4, 3), bool))
    for bad in (-0.5, float("nan"), "wide", True):
        with pytest.raises(ParameterError, match="prefilter_sigma"):
            PreprocessConfig(prefilter_sigma=bad)


def test_the_filter_keeps_a_spread_spot_through_max_binning():
    """A faint spot spread by a wide PSF: max-binning the raw pixels loses it in the noise, the
    matched filter first keeps it as the brightest binned pixel (the reason for the option)."""
    rng = np.random.default_rng(3)
    wins = {0.0: 0, 1.2: 0}
    for trial in range(40):
        yy, xx = np.mgrid[:96, :96]
        spot = 150.0 * np.exp(-((yy - 51.7) ** 2 + (xx - 43.6) ** 2) / (2 * 1.6 ** 2)) / (2 * np.pi * 1.6 ** 2)
        img = rng.poisson(20.0 + spot).astype(np.float32)
        for sigma in wins:
            cfg = PreprocessConfig(bin=8, crop=(12, 12), bin_reduce="max", contrast="none",
                                   prefilter_sigma=sigma)
            x = cfg.apply(Frame(img, beam_center=(48.0, 48.0)))[0]
            wins[sigma] += int(np.unravel_index(np.argmax(x), x.shape) == (6, 5))
    assert wins[1.2] >= 30 > wins[0.0] + 10


def test_config_round_trip_and_old_dicts():
    cfg = PreprocessConfig(bin="auto", crop=(256, 256), prefilter_sigma=1.2)
    d = cfg.to_dict()
    assert d["schema"] == 3 and d["prefilter_sigma"] == 1.2
    assert PreprocessConfig.from_dict(d) == cfg
    old = {k: v for k, v in d.items() if k != "prefilter_sigma"} | {"schema": 2}
    assert PreprocessConfig.from_dict(old).prefilter_sigma == 0.0
