"""FastPreprocess must equal PreprocessConfig.apply (no augmentation) while touching less."""

from __future__ import annotations

import numpy as np
import pytest

from xtalscreen.io.frame import Frame
from xtalscreen.preprocess import PreprocessConfig
from xtalscreen.screen.prepare import FastPreprocess


@pytest.mark.parametrize("shape,center", [((200, 180), (90.0, 100.0)), ((201, 177), (3.2, 190.7)),
                                          ((150, 300), (-40.0, 75.0)), ((64, 64), (32.0, 32.0))])
@pytest.mark.parametrize("cfg", [PreprocessConfig(bin=2, crop=(64, 64)),
                                 PreprocessConfig(bin=3, crop=(40, 50), contrast="linear"),
                                 PreprocessConfig(bin=1, crop=(33, 33), bin_reduce="mean", channels=3),
                                 PreprocessConfig(bin="auto", crop=(48, 40), bin_reduce="max"),
                                 PreprocessConfig(bin="auto", crop=(48, 40), bin_reduce="max",
                                                  unbinned_up_to=4),
                                 PreprocessConfig(bin=3, crop=(40, 50), bin_reduce="max", prefilter_sigma=1.2),
                                 PreprocessConfig(bin="auto", crop=(48, 40), bin_reduce="mean",
                                                  prefilter_sigma=2.5)])
def test_monolithic_equals_reference(shape, center, cfg):
    rng = np.random.default_rng(1)
    data = rng.poisson(5.0, shape).astype(np.float32)
    data[5, 7] = np.nan
    mask = rng.random(shape) < 0.05
    f = Frame(data, mask=mask, beam_center=center)
    ref = cfg.apply(f)
    got = FastPreprocess(cfg)(f)
    assert got.x.shape == ref.shape == cfg.output_shape_for(shape)
    np.testing.assert_allclose(got.x, ref, rtol=1e-5, atol=1e-5)
    assert not got.no_beam_center


def test_multipanel_cspad_equals_reference():
    from xtalscreen.simulate import get_preset

    geom = get_preset("cspad").detector.geometry
    shape = geom.data_shape()
    rng = np.random.default_rng(2)
    data = rng.poisson(3.0, shape).astype(np.float32)
    mask = rng.random(shape) < 0.01
    for cfg in (PreprocessConfig(bin=2, crop=(96, 96)), PreprocessConfig(bin="auto", crop=(128, 128)),
                PreprocessConfig(bin="auto", crop=(100, 120), bin_reduce="max"),
                PreprocessConfig(bin=3, crop=(64, 64), bin_reduce="mean", contrast="none"),
                PreprocessConfig(bin="auto", crop=(256, 256), bin_reduce="max", unbinned_up_to=7),
                PreprocessConfig(bin="auto", crop=(128, 128), bin_reduce="max", prefilter_sigma=1.2)):
        fp = FastPreprocess(cfg)
        for bc in (None, (700.3, 910.8)):  # the geometry's beam centre, then an explicit one
            f = Frame(data, mask=mask, geometry=geom, beam_center=bc)
            np.testing.assert_allclose(fp(f).x, cfg.apply(f), rtol=1e-5, atol=1e-5)
    cfg = PreprocessConfig(bin=2, crop=(96, 96))
    # sums are conserved: a constant image stays constant (LCN off) in fully covered pixels
    flat = Frame(np.ones(shape, np.float32), geometry=geom)
    x = FastPreprocess(cfg.replace(contrast="none"))(flat).x[0]
    assert set(np.unique(x[x > 0]).round(4)) == {4.0}


def test_missing_beam_center_is_flagged_not_warned(recwarn):
    cfg = PreprocessConfig(bin=2, crop=(32, 32))
    f = Frame(np.ones((100, 80), np.float32))
    p = FastPreprocess(cfg)(f)
    assert p.no_beam_center
    assert not [w for w in recwarn if "beam" in str(w.message)]
    np.testing.assert_allclose(p.x, cfg.apply_array(f.data, center=(40.0, 50.0)), atol=1e-6)


def test_all_masked_frame_has_no_valid_pixel():
    f = Frame(np.ones((100, 80), np.float32), mask=np.ones((100, 80), bool), beam_center=(40, 50))
    p = FastPreprocess(PreprocessConfig(bin=2, crop=(32, 32)))(f)
    assert p.n_valid == 0 and not p.x.any()
    # crop entirely off the detector: nothing valid either
    g = Frame(np.ones((100, 80), np.float32), beam_center=(5000.0, 5000.0))
    assert FastPreprocess(PreprocessConfig(bin=2, crop=(32, 32)))(g).n_valid == 0


@pytest.mark.parametrize("with_mask", [True, False])
def test_max_gather_equals_the_rule_on_nonfinite_and_masked_pixels(with_mask):
    """The branch-free max path (``_gather_max``) against a numpy statement of the rule: NaN,
    +inf and -inf pixels are left out like masked ones, a target with nothing valid is empty."""
    from xtalscreen.screen.prepare import _gather_max, _runs
    from xtalscreen.simulate import get_preset

    geom = get_preset("cspad").detector.geometry
    shape = geom.data_shape()
    rng = np.random.default_rng(3)
    data = rng.normal(0.0, 1.0, shape).astype(np.float32)  # negative values too
    flat = data.reshape(-1)
    flat[rng.integers(0, flat.size, 500)] = np.nan
    flat[rng.integers(0, flat.size, 500)] = np.inf
    flat[rng.integers(0, flat.size, 500)] = -np.inf
    mask = (rng.random(shape) < 0.02).reshape(-1)
    src = np.arange(flat.size)
    tgt = (src // 7) % 5000  # many runs per target, out of order
    tgt[:21] = 5000  # target 5000: three runs, every pixel of them invalid
    flat[:14] = np.nan
    mask[14:21] = True
    flat[14:21] = 1.0
    if not with_mask:
        flat[14:21] = np.inf
    starts, lens, tg = _runs(src, tgt)
    vals, empty = _gather_max(flat, mask, with_mask, starts, lens, tg, 5002)
    valid = np.isfinite(flat) & (~mask if with_mask else True)
    want = np.full(5002, -np.inf, np.float32)
    np.maximum.at(want, tgt[valid], flat[valid])
    np.testing.assert_array_equal(empty, want == -np.inf)
    np.testing.assert_array_equal(vals, np.where(want == -np.inf, 0, want))
    assert empty[5000] and empty[5001]  # all invalid; never reached
    cfg = PreprocessConfig(bin="auto", crop=(100, 120), bin_reduce="max")
    f = Frame(data, mask=mask.reshape(shape) if with_mask else None, geometry=geom)
    np.testing.assert_allclose(FastPreprocess(cfg)(f).x, cfg.apply(f), rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("reduce", ["max", "sum"])
def test_static_mask_runs_equal_the_masked_path(reduce):
    """A mask seen on two frames in a row is taken out of the runs once; every frame still
    equals the reference, whether its mask is that static one, has an extra bad pixel, or is a
    new mask that becomes static in turn."""
    from xtalscreen.simulate import get_preset

    geom = get_preset("cspad").detector.geometry
    shape = geom.data_shape()
    rng = np.random.default_rng(4)
    static = rng.random(shape) < 0.01
    extra = static.copy()
    extra[3, 100, 200] = True
    new = rng.random(shape) < 0.02
    cfg = PreprocessConfig(bin="auto", crop=(128, 128), bin_reduce=reduce)
    fp = FastPreprocess(cfg)
    used = []
    for i, mask in enumerate([static, static, static, extra, static, new, new, new, static]):
        data = rng.poisson(3.0, shape).astype(np.float32)
        data[3, 100, 200] = 1e6  # a hot pixel: only the extra mask hides it
        f = Frame(data, mask=mask.copy(), geometry=geom)
        np.testing.assert_allclose(fp(f).x, cfg.apply(f), rtol=1e-5, atol=1e-5, err_msg=f"frame {i}")
        (entry,) = fp._static.values()
        used.append(entry[0] is not None and np.array_equal(entry[0].view(bool), mask.reshape(-1)))
    # static from the second frame on; the extra pixel and a new mask's first frame are not
    assert used == [False, True, True, False, True, False, True, True, False]


def test_unmasked_runs_split_runs_at_masked_pixels():
    from xtalscreen.screen.prepare import _runs, _unmasked_runs

    src = np.arange(20)
    tgt = src // 5
    mask = np.zeros(20, bool)
    mask[[2, 5, 6, 7, 8, 9, 19]] = True  # target 1 loses every pixel
    starts, lens, tg = _unmasked_runs(*_runs(src, tgt), mask)
    assert starts.tolist() == [0, 3, 10, 15]
    assert lens.tolist() == [2, 2, 5, 4]
    assert tg.tolist() == [0, 0, 2, 3]
