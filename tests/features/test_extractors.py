"""Feature extractors: shapes, invariants, bad input."""

from __future__ import annotations

import numpy as np
import pytest

from xtalscreen.errors import ParameterError
from xtalscreen.features import (SiftBoVW, glcm_features, lbp_features, make_extractor,
                                 raw_features, to_uint8)


def test_to_uint8_keeps_uint8_and_maps_floats():
    u = (np.arange(100).reshape(10, 10) % 256).astype(np.uint8)
    assert to_uint8(u) is u
    f = np.array([[0, 1, 1e4, np.nan], [-5, np.inf, 3, 2]], np.float32)
    g = to_uint8(f)
    assert g.dtype == np.uint8 and g[0, 0] == 0 and g[1, 0] == 0 and g[0, 3] == 0
    assert g.max() == 255
    assert to_uint8(np.zeros((4, 4), np.float32)).max() == 0


def test_glcm_features_shape_and_constant_image(toy_image_fn):
    toy_image = toy_image_fn
    img = toy_image("good", rng=0)
    f = glcm_features(img, distances=[1, 2, 5], angles=[0, 45, 90, 135])
    assert f.shape == (6 * 3 * 4,) and np.all(np.isfinite(f))
    const = glcm_features(np.full((32, 32), 7, np.uint8), distances=[1], angles=[0])
    # contrast, dissimilarity 0; homogeneity, energy, ASM 1 for a constant image
    contrast, dissim, homog, energy, corr, asm = const
    assert contrast == 0 and dissim == 0 and homog == 1 and energy == 1 and asm == 1
    with pytest.raises(ParameterError, match="distances"):
        glcm_features(img, distances=[0])
    with pytest.raises(ParameterError, match="unknown GLCM"):
        glcm_features(img, props=["entropy"])


def test_glcm_contrast_grows_with_texture():
    rng = np.random.default_rng(1)
    smooth = np.tile(np.arange(64, dtype=np.uint8), (64, 1))
    rough = rng.integers(0, 256, (64, 64)).astype(np.uint8)
    assert glcm_features(rough)[0] > 100 * glcm_features(smooth)[0]


def test_lbp_histogram(toy_image_fn):
    toy_image = toy_image_fn
    img = toy_image("strong", rng=2)
    h = lbp_features(img, points=8, radius=1)
    assert h.shape == (10,) and abs(h.sum() - 1) < 1e-12 and np.all(h >= 0)
    with pytest.raises(ParameterError, match="radius"):
        lbp_features(img, radius=0)


def test_raw_features_and_sift_bovw(toy_image_fn):
    toy_image = toy_image_fn
    img = toy_image("strong", size=128, rng=3)
    r = raw_features(img, size=16)
    assert r.shape == (256,) and 0 <= r.min() and r.max() <= 1
    bovw = SiftBoVW(n_clusters=8, rng=0).fit([toy_image("strong", size=128, rng=s) for s in range(4)])
    h = bovw(img)
    assert h.shape == (8,) and (h.sum() == 0 or abs(h.sum() - 1) < 1e-9)
    with pytest.raises(ParameterError, match="not fitted"):
        SiftBoVW(n_clusters=4)(img)


def test_make_extractor_validates(toy_image_fn):
    toy_image = toy_image_fn
    e = make_extractor("glcm", distances=[1], angles=[0], image_size=64)
    X = e.fit([toy_image("weak", rng=0)]).transform([toy_image("weak", rng=1), toy_image("good", rng=2)])
    assert X.shape == (2, 6)
    with pytest.raises(ParameterError, match="unknown feature extractor"):
        make_extractor("hog")
    with pytest.raises(ParameterError, match="unknown parameter"):
        make_extractor("lbp", distances=[1])
    with pytest.raises(ParameterError, match="2-D"):
        glcm_features(np.zeros(5))
