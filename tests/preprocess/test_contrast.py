import numpy as np
import pytest

from xtalscreen.errors import ParameterError
from xtalscreen.preprocess import apply_contrast, lcn, linear_contrast, log_contrast, sqrt_contrast
from xtalscreen.preprocess.contrast import _lcn_reference


def _poisson(shape, lam=5.0, seed=0):
    return np.random.default_rng(seed).poisson(lam, shape).astype(np.float32)


@pytest.mark.parametrize("window", [1, 3, 9, 15])
@pytest.mark.parametrize("masked", [False, True])
def test_lcn_matches_literal_reference(window, masked):
    rng = np.random.default_rng(window)
    img = _poisson((37, 53), seed=window)
    img[5, 5] = 1e5          # a saturated spike
    img[0, 0] = -30.0        # dark-subtracted negative
    img[36, 52] = 400.0      # a spot in the far corner (reflect padding on both edges)
    mask = (rng.random(img.shape) < 0.2) if masked else None
    fast = lcn(img, window=window, mask=mask)
    ref = _lcn_reference(img, window=window, mask=mask)
    assert fast.dtype == np.float32 and fast.shape == img.shape
    np.testing.assert_allclose(fast, ref, atol=1e-5, rtol=1e-5)


def test_reflect_padding_at_corner_by_hand():
    img = np.arange(20, dtype=np.float64).reshape(4, 5) ** 1.5
    out = lcn(img, window=3, eps=1e-12)
    g = (img - img.mean()) / img.std()
    # numpy "reflect": row -1 -> row 1, col -1 -> col 1
    nb = np.array([[g[1, 1], g[1, 0], g[1, 1]],
                   [g[0, 1], g[0, 0], g[0, 1]],
                   [g[1, 1], g[1, 0], g[1, 1]]])
    expect = (g[0, 0] - nb.mean()) / nb.std()
    assert out[0, 0] == pytest.approx(expect, rel=1e-5)


def test_masked_pixels_are_zero_and_excluded():
    img = _poisson((40, 40))
    mask = np.zeros(img.shape, bool)
    mask[10:14, 20:30] = True
    a = lcn(img, mask=mask)
    img2 = img.copy()
    img2[mask] = 1e6  # whatever a bad pixel holds must not matter
    b = lcn(img2, mask=mask)
    np.testing.assert_array_equal(a, b)
    assert np.all(a[mask] == 0)
    nan_img = img.copy()
    nan_img[mask] = np.nan  # non-finite pixels count as masked
    np.testing.assert_array_equal(lcn(nan_img), a)


def test_lcn_affine_invariant_and_enhances_spot():
    img = _poisson((64, 64), lam=20.0)
    img[32, 32] += 300.0
    out = lcn(img, window=9)
    np.testing.assert_allclose(lcn(3.0 * img + 1000.0, window=9), out, atol=1e-4)
    assert out[32, 32] > 5.0                      # spot stands out of its neighbourhood
    assert abs(float(np.median(out))) < 0.2       # background centred on 0
    assert 0.5 < float(np.std(out[:20, :20])) < 1.5


def test_lcn_degenerate_images():
    assert not lcn(np.full((10, 10), 7.0)).any()
    assert not lcn(np.ones((10, 10)), mask=np.ones((10, 10), bool)).any()


@pytest.mark.parametrize("kwargs", [dict(window=4), dict(window=0), dict(window=2.0),
                                    dict(window=21), dict(eps=0.0), dict(mask=np.zeros((3, 3), bool))])
def test_lcn_bad_arguments(kwargs):
    with pytest.raises(ParameterError):
        lcn(np.ones((10, 10)), **kwargs)


def test_lcn_bad_image():
    with pytest.raises(ParameterError, match="2-D"):
        lcn(np.ones((2, 10, 10)))
    with pytest.raises(ParameterError, match="numeric"):
        lcn(np.array([["a", "b"], ["c", "d"]]))


def test_linear_contrast_range_and_monotonic():
    img = _poisson((50, 50), lam=10.0)
    img[0, 0] = 1e4
    mask = np.zeros(img.shape, bool)
    mask[1, 1] = True
    out = linear_contrast(img, mask=mask)
    assert out.min() >= 0 and out.max() == 1.0 and out[1, 1] == 0
    flat, o = img[~mask].ravel(), out[~mask].ravel()
    order = np.argsort(flat, kind="stable")
    assert np.all(np.diff(o[order]) >= 0)  # the ramp never reverses
    assert linear_contrast(img, brightness=2.0).mean() > out.mean()
    with pytest.raises(ParameterError, match="brightness"):
        linear_contrast(img, brightness=-1)
    with pytest.raises(ParameterError, match="white_percentile"):
        linear_contrast(img, white_percentile=0)


def test_sqrt_log_contrast():
    img = np.array([[-4.0, 0.0], [4.0, np.nan]], np.float32)
    np.testing.assert_allclose(sqrt_contrast(img), [[0, 0], [2, 0]])
    np.testing.assert_allclose(log_contrast(img), [[0, 0], [np.log(5), 0]], rtol=1e-6)


def test_apply_contrast_names():
    img = _poisson((20, 20))
    np.testing.assert_array_equal(apply_contrast(img, "lcn", window=5), lcn(img, window=5))
    assert apply_contrast(img, "none").dtype == np.float32
    with pytest.raises(ParameterError, match="lcn, linear"):
        apply_contrast(img, "histeq")
