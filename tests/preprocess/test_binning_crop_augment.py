import numpy as np
import pytest

from xtalscreen.errors import ParameterError
from xtalscreen.preprocess import (Augmentation, bin_image, center_crop, crop_origin, flip_rotate,
                                   sample_augmentation, scale_intensity)


# ------------------------------------------------------------------ binning
def test_binning_conserves_counts():
    img = np.random.default_rng(0).poisson(3.0, (40, 60)).astype(np.float32)
    b, m = bin_image(img, 2)
    assert b.shape == (20, 30) and not m.any()
    assert b.sum() == pytest.approx(img.sum())
    bm, _ = bin_image(img, 2, reduce="mean")
    np.testing.assert_allclose(bm * 4, b)


def test_binning_mask_compensates_and_propagates():
    img = np.ones((4, 4), np.float32)
    mask = np.zeros((4, 4), bool)
    mask[0, 0] = True           # one bad pixel in block (0, 0)
    mask[2:4, 2:4] = True       # block (1, 1) entirely bad
    img[0, 0] = 1e9
    b, m = bin_image(img, 2, mask=mask)
    assert b[0, 0] == pytest.approx(4.0)   # level kept despite the bad pixel
    assert m.tolist() == [[False, False], [False, True]] and b[1, 1] == 0


def test_binning_trims_and_factor_one():
    b, _ = bin_image(np.ones((5, 7)), 2)
    assert b.shape == (2, 3)
    b1, m1 = bin_image(np.array([[1.0, np.nan]]), 1)
    assert b1.tolist() == [[1.0, 0.0]] and m1.tolist() == [[False, True]]


@pytest.mark.parametrize("factor", [0, -2, 1.5, True, 10])
def test_binning_bad_factor(factor):
    with pytest.raises(ParameterError):
        bin_image(np.ones((4, 4)), factor)


def test_binning_bad_inputs():
    with pytest.raises(ParameterError, match="2-D"):
        bin_image(np.ones((2, 4, 4)), 2)
    with pytest.raises(ParameterError, match="mask shape"):
        bin_image(np.ones((4, 4)), 2, mask=np.zeros((2, 2), bool))
    with pytest.raises(ParameterError, match="reduce"):
        bin_image(np.ones((4, 4)), 2, reduce="median")


# ------------------------------------------------------------------ crop
def test_crop_centred_on_point():
    img = np.zeros((100, 80), np.float32)
    img[60, 30] = 1.0                   # pixel (fs=30, ss=60), centre at (30.5, 60.5)
    c, m = center_crop(img, (11, 11), center=(30.5, 60.5))
    assert c[5, 5] == 1.0 and not m.any()
    c2, _ = center_crop(img, (10, 10), center=(31.0, 61.0))   # even crop: centre on a corner
    assert c2[4, 4] == 1.0
    assert crop_origin((40.0, 50.0), (100, 80)) == (0, 0)


def test_crop_pads_and_masks_outside():
    img = np.arange(16, dtype=np.float32).reshape(4, 4) + 1
    c, m = center_crop(img, 6, fill=0.0)
    assert c.shape == (6, 6) and m[0].all() and m[:, 0].all() and not m[1:5, 1:5].any()
    np.testing.assert_array_equal(c[1:5, 1:5], img)
    c, m = center_crop(img, 4, center=(100.0, 100.0))   # entirely off the image
    assert m.all() and not c.any()


def test_crop_shift_and_mask():
    img = np.arange(100, dtype=np.float32).reshape(10, 10)
    mask = img == 55
    c, m = center_crop(img, 2, mask=mask, shift=(1, -2))
    np.testing.assert_array_equal(c, img[5:7, 2:4])
    c, m = center_crop(img, 2, mask=mask, shift=(1, 1))
    assert m.tolist() == [[True, False], [False, False]]


@pytest.mark.parametrize("size", [0, (3,), (2, -1), "a"])
def test_crop_bad_size(size):
    with pytest.raises(ParameterError, match="crop size"):
        center_crop(np.ones((4, 4)), size)


def test_crop_bad_centre():
    with pytest.raises(ParameterError, match="finite"):
        center_crop(np.ones((4, 4)), 2, center=(np.nan, 1.0))


# ------------------------------------------------------------------ augmentation
def test_augmentation_deterministic_and_in_range():
    draws = [sample_augmentation(np.random.default_rng(s), max_shift=120, scale_range=(0.5, 2.0))
             for s in range(200)]
    assert sample_augmentation(7, scale_range=(0.5, 2.0)) == sample_augmentation(7, scale_range=(0.5, 2.0))
    shifts = np.array([d.shift for d in draws])
    assert shifts.min() >= -120 and shifts.max() <= 120 and shifts.std() > 40
    assert {d.rot90 for d in draws} == {0, 1, 2, 3}
    assert all(0.5 <= d.scale <= 2.0 for d in draws)
    assert {d.flip_lr for d in draws} == {True, False}
    rect = {sample_augmentation(s, square=False).rot90 for s in range(50)}
    assert rect == {0, 2}
    none = sample_augmentation(1, max_shift=0, flips=False, rot90=False)
    assert none == Augmentation()


def test_flip_rotate_keeps_pixels_and_matches_numpy():
    img = np.arange(12.0).reshape(3, 4)
    aug = Augmentation(flip_ud=True, flip_lr=False, rot90=1)
    np.testing.assert_array_equal(flip_rotate(img, aug), np.rot90(img[::-1], 1))
    stack = np.stack([img, -img])
    out = flip_rotate(stack, aug)
    np.testing.assert_array_equal(out[1], -out[0])


def test_augment_bad_arguments():
    with pytest.raises(ParameterError, match="max_shift"):
        sample_augmentation(0, max_shift=-1)
    with pytest.raises(ParameterError, match="scale_range"):
        sample_augmentation(0, scale_range=(2.0, 1.0))
    with pytest.raises(ParameterError, match="scale"):
        scale_intensity(np.ones(3), 0.0)


def test_binning_max_keeps_the_brightest_valid_pixel():
    img = np.arange(36, dtype=np.float32).reshape(6, 6)
    img[1, 1] = 100.0
    mask = np.zeros((6, 6), bool)
    mask[5, 5] = True  # the largest value of the last block is masked
    img[4, 4] = np.nan  # non-finite counts as masked
    b, m = bin_image(img, 3, mask=mask, reduce="max")
    assert b.tolist() == [[100.0, 17.0], [32.0, 34.0]]
    assert not m.any()
    full = np.ones((6, 6), bool)
    b, m = bin_image(img, 3, mask=full, reduce="max")
    assert m.all() and (b == 0).all()


def test_binning_max_equals_numpy_block_max():
    rng = np.random.default_rng(3)
    img = rng.normal(size=(20, 15)).astype(np.float32)
    b, _ = bin_image(img, 4, reduce="max")
    want = img[:20, :12].reshape(5, 4, 3, 4).max(axis=(1, 3))
    np.testing.assert_array_equal(b, want)


@pytest.mark.parametrize("with_mask", [True, False])
def test_binning_max_equals_reference_with_nonfinite_and_masked_pixels(with_mask):
    """The branch-free max kernel against a numpy statement of the rule: NaN and +-inf are left
    out, like masked pixels; a block with nothing valid is masked."""
    rng = np.random.default_rng(4)
    img = rng.normal(size=(42, 37)).astype(np.float32)
    img[rng.integers(0, 42, 30), rng.integers(0, 37, 30)] = np.nan
    img[rng.integers(0, 42, 10), rng.integers(0, 37, 10)] = np.inf
    img[rng.integers(0, 42, 10), rng.integers(0, 37, 10)] = -np.inf
    img[:6, :6] = np.nan  # block (0, 0): nothing valid
    mask = rng.random(img.shape) < 0.1 if with_mask else None
    b, m = bin_image(img, 6, mask=mask, reduce="max")
    valid = np.isfinite(img) & (~mask if with_mask else True)
    blocks = np.where(valid, img, -np.inf)[:42, :36].reshape(7, 6, 6, 6).max(axis=(1, 3))
    np.testing.assert_array_equal(m, blocks == -np.inf)
    np.testing.assert_array_equal(b, np.where(blocks == -np.inf, 0, blocks))
    assert m[0, 0]
