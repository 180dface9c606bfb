"""Masks from the data (sentinels, zero gaps, NaN), from files, and their combination."""

from __future__ import annotations

import h5py
import numpy as np
import pytest
import tifffile
from PIL import Image

from xtalscreen.errors import InputError, ParameterError
from xtalscreen.io.masks import combine_masks, data_mask, load_mask, sentinel_mask, zero_gap_mask


def test_pilatus_negative_sentinels():
    raw = np.full((10, 12), 4, np.int32)
    raw[:, 5] = -1
    raw[2, 2] = -2
    m = data_mask(raw)
    assert m[:, 5].all() and m[2, 2] and m.sum() == 11


def test_dark_subtracted_negatives_are_not_sentinels():
    rng = np.random.default_rng(0)
    raw = rng.normal(0, 5, (50, 50)).round().astype(np.int32)  # ADU noise around 0
    assert (raw == -1).any() and (raw < -2).any()
    assert not sentinel_mask(raw).any()


@pytest.mark.parametrize("dtype", [np.uint16, np.uint32])
def test_eiger_top_value_sentinel(dtype):
    raw = np.full((8, 8), 7, dtype)
    top = np.iinfo(dtype).max
    raw[1, :] = top
    raw[4, 4] = top - 1  # not a sentinel
    m = data_mask(raw)
    assert m[1].all() and not m[4, 4] and m.sum() == 8
    # also found after conversion to float32, given the original dtype (for uint32, values
    # within float32 rounding of the top, i.e. saturated anyway, are included)
    assert data_mask(raw.astype(np.float32), dtype)[1].all()


def test_uint8_255_is_not_masked():
    assert not data_mask(np.full((4, 4), 255, np.uint8)).any()


def test_nan_and_inf_masked():
    a = np.ones((5, 5), np.float32)
    a[0, 0], a[1, 1], a[2, 2] = np.nan, np.inf, -np.inf
    assert data_mask(a).sum() == 3
    assert not data_mask(a, nonfinite=False).any()


def test_zero_gaps_found_in_bright_frame():
    rng = np.random.default_rng(1)
    img = rng.poisson(8.0, (200, 300)).astype(np.int32)
    img[:, 100:103] = 0  # vertical gap strip
    img[150, :] = 0  # a dead row
    img[20:60, 200:260] = 0  # a missing tile
    m = zero_gap_mask(img)
    expected = np.zeros_like(m)
    expected[:, 100:103] = expected[150, :] = True
    expected[20:60, 200:260] = True
    assert (m & expected).sum() == expected.sum()
    # a few genuine zeros touching a gap may join it; none elsewhere
    assert (m & ~expected).sum() <= 10
    isolated = (img == 0) & ~expected
    assert not (m & isolated & ~np.roll(expected, 1, 1) & ~np.roll(expected, -1, 1)
                & ~np.roll(expected, 1, 0) & ~np.roll(expected, -1, 0)).any()


def test_low_count_frame_zero_pixels_not_masked():
    rng = np.random.default_rng(2)
    img = rng.poisson(0.05, (512, 512)).astype(np.int32)  # ~95 % zero-photon pixels
    assert (img == 0).mean() > 0.9
    assert zero_gap_mask(img).sum() == 0
    assert not zero_gap_mask(np.zeros((64, 64))).any()  # all zero: nothing to tell apart


def test_zero_gap_mask_multipanel_and_validation():
    a = np.ones((2, 40, 40))
    a[1, :, 7] = 0
    m = zero_gap_mask(a)
    assert m.shape == a.shape and m[1, :, 7].all() and not m[0].any()
    with pytest.raises(ParameterError, match="min_run"):
        zero_gap_mask(a, min_run=1)
    with pytest.raises(ParameterError, match="raw must be"):
        data_mask(np.zeros(4))


def test_combine_masks():
    a = np.array([[1, 0], [0, 0]], bool)
    b = np.array([[0, 0], [0, 1]], bool)
    assert combine_masks(a, None, b).tolist() == [[True, False], [False, True]]
    assert combine_masks(None) is None
    with pytest.raises(ParameterError, match=r"\(2, 2\).*\(3, 3\)"):
        combine_masks(a, np.zeros((3, 3), bool))


def test_load_mask_formats_and_conventions(tmp_path):
    m = np.zeros((6, 7), np.uint8)
    m[1, 2] = 1
    np.save(tmp_path / "m.npy", m)
    assert load_mask(tmp_path / "m.npy").sum() == 1
    assert load_mask(tmp_path / "m.npy", invert=True).sum() == 41  # CrystFEL: 1 = good
    assert load_mask(tmp_path / "m.npy", good_value=1).sum() == 41
    Image.fromarray(m * 255).save(tmp_path / "m.png")
    assert load_mask(tmp_path / "m.png")[1, 2] and load_mask(tmp_path / "m.png").sum() == 1
    tifffile.imwrite(tmp_path / "m.tif", m)
    assert load_mask(tmp_path / "m.tif").sum() == 1
    with h5py.File(tmp_path / "e.h5", "w") as f:
        f["/entry/instrument/detector/detectorSpecific/pixel_mask"] = m.astype(np.uint32) * 4
        f["/other"] = np.ones((6, 7))
    assert load_mask(tmp_path / "e.h5").sum() == 1
    assert load_mask(tmp_path / "e.h5", dataset="/other").sum() == 42
    np.savez(tmp_path / "m.npz", mask=m)
    assert load_mask(tmp_path / "m.npz").sum() == 1


def test_load_mask_errors(tmp_path):
    with pytest.raises(InputError, match="nope.npy: mask file not found"):
        load_mask(tmp_path / "nope.npy")
    with h5py.File(tmp_path / "two.h5", "w") as f:
        f["a"] = np.ones((3, 3))
        f["b"] = np.ones((3, 3))
    with pytest.raises(InputError, match=r"two.h5.*dataset=.*/a.*/b"):
        load_mask(tmp_path / "two.h5")
    (tmp_path / "bad.npy").write_bytes(b"garbage")
    with pytest.raises(InputError, match="bad.npy: cannot read"):
        load_mask(tmp_path / "bad.npy")
    np.save(tmp_path / "v.npy", np.zeros(5))
    with pytest.raises(InputError, match="2-D"):
        load_mask(tmp_path / "v.npy")
    (tmp_path / "m.xyz").write_text("?")
    with pytest.raises(InputError, match="unknown mask file type"):
        load_mask(tmp_path / "m.xyz")


def test_sparse_photon_counting_frame_keeps_its_zero_runs():
    # A low-count frame whose background falls off across the detector: long zero runs are
    # physical (seen on the real Pilatus 2M l-cysteine frames), only the zero column is a gap.
    from xtalscreen.io.masks import zero_gap_mask

    rng = np.random.default_rng(0)
    mean = np.linspace(0.3, 0.05, 400)[None, :] * np.ones((300, 1))
    img = rng.poisson(mean).astype(np.int32)
    img[:, 200] = 0
    m = zero_gap_mask(img)
    assert m[:, 200].all()
    assert m.sum() == 300


def _zero_gap_reference(img, min_run=16, false_alarm=1e-3, sparse_limit=0.5):
    """Plain-Python statement of zero_gap_mask's rule, for small frames."""
    import itertools
    import math

    z = np.asarray(img) == 0
    h, w = z.shape
    out = np.zeros_like(z)
    if z.sum() < min_run:
        return out
    fr, fc = z.all(axis=1), z.all(axis=0)
    rest = (h - fr.sum()) * (w - fc.sum())
    p0 = (z.sum() - fr.sum() * w - fc.sum() * h + fr.sum() * fc.sum()) / rest if rest else 1.0
    if p0 >= 1.0:
        return out
    if p0 > sparse_limit:
        out[fr, :] = True
        out[:, fc] = True
        return out
    need = max(float(min_run), math.log(false_alarm / z.size) / math.log(p0)) if p0 > 0 else float(min_run)
    length = math.ceil(need)
    for axis_img, axis_out in ((z, out), (z.T, out.T)):
        for r, row in enumerate(axis_img):
            i = 0
            for val, grp in itertools.groupby(row):
                n = len(list(grp))
                if val and n >= length:
                    axis_out[r, i:i + n] = True
                i += n
    return out


@pytest.mark.parametrize("seed", range(6))
def test_zero_gap_mask_matches_its_rule(seed):
    from xtalscreen.io.masks import zero_gap_mask

    rng = np.random.default_rng(seed)
    for dtype in (np.float32, np.int32, np.uint16):
        img = rng.poisson([0.05, 0.7, 3.0][seed % 3], (60, 90)).astype(dtype)
        img[:, 20 + seed:23 + seed] = 0
        img[10 + seed, :] = 0
        img[30:32, 5:60] = 0
        np.testing.assert_array_equal(zero_gap_mask(img), _zero_gap_reference(img))


@pytest.mark.parametrize("seed", [0, 1, 2])
@pytest.mark.parametrize("shape", [(96, 120), (3, 40, 70)])
@pytest.mark.parametrize("level", [0.05, 0.7, 20.0])
def test_float_fast_path_equals_the_composed_rules(seed, shape, level):
    """data_mask on float data runs one fused pass; it must equal non-finite | zero gaps."""
    rng = np.random.default_rng(seed)
    raw = rng.poisson(level, shape).astype(np.float32)
    flat = raw.reshape(-1)
    flat[rng.integers(0, flat.size, 20)] = np.nan
    flat[rng.integers(0, flat.size, 5)] = np.inf
    flat[rng.integers(0, flat.size, 5)] = -np.inf
    if raw.ndim == 2:
        raw[:, 50:53] = 0
        raw[10, :] = 0
    else:
        raw[1, :, 30:32] = 0
    expect = ~np.isfinite(raw) | zero_gap_mask(raw)
    np.testing.assert_array_equal(data_mask(raw), expect)
    np.testing.assert_array_equal(data_mask(raw.astype(np.float64)), expect)
    np.testing.assert_array_equal(data_mask(raw, gaps=False), ~np.isfinite(raw))
    np.testing.assert_array_equal(data_mask(raw, nonfinite=False), zero_gap_mask(raw))
