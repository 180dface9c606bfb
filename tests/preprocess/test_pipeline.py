import json
import warnings

import numpy as np
import pytest

from xtalscreen.errors import ParameterError
from xtalscreen.io.frame import Frame
from xtalscreen.io.geometry import DetectorGeometry, Panel
from xtalscreen.preprocess import PreprocessConfig


def _frame(shape=(200, 180), seed=0, **kw):
    data = np.random.default_rng(seed).poisson(3.0, shape).astype(np.float32)
    return Frame(data, **kw)


def test_output_shape_and_beam_centring():
    f = _frame(beam_center=(91.0, 101.0))
    f.data[100:102, 90:92] = 500.0          # spot on the beam, a 2x2 block = one binned pixel
    cfg = PreprocessConfig(bin=2, crop=(64, 64), contrast="none")
    out = cfg.apply(f)
    assert out.shape == cfg.output_shape == (1, 64, 64) and out.dtype == np.float32
    assert np.unravel_index(out[0].argmax(), (64, 64)) == (31, 31)
    assert out[0, 31, 31] == pytest.approx(2000.0)   # binning sums counts


def test_multipanel_frame_through_geometry():
    panels = [Panel("p0", 0, 39, 0, 29, corner_x=-20, corner_y=-35, slab=0),
              Panel("p1", 0, 39, 0, 29, corner_x=-20, corner_y=5, slab=1)]
    geom = DetectorGeometry(panels)
    data = np.random.default_rng(1).poisson(3.0, (2, 30, 40)).astype(np.float32)
    data[1, 0, 20] = 400.0                      # lab (0.5, 5.5) px from the beam
    f = Frame(data, geometry=geom)
    cfg = PreprocessConfig(bin=1, crop=(32, 32), contrast="lcn", lcn_window=5)
    with warnings.catch_warnings():
        warnings.simplefilter("error")          # geometry gives the beam: no warning
        out = cfg.apply(f)[0]
    assert out.shape == (32, 32)
    assert np.unravel_index(out.argmax(), out.shape) == (21, 16)
    # the 10-pixel gap between the panels (assembled rows 30-39 = crop rows 11-20) is masked: 0
    assert not out[11:21].any() and out[0:11].any()


def test_multipanel_without_geometry_is_tiled():
    f = Frame(np.ones((4, 10, 12), np.float32), beam_center=(6.0, 20.0))
    out = PreprocessConfig(bin=1, crop=(40, 12), contrast="none", rot90=False).apply(f)
    assert out.shape == (1, 40, 12) and np.all(out == 1.0)


def test_missing_beam_centre_warns_with_frame_name():
    f = _frame(source="run7.h5", index=3)
    with pytest.warns(UserWarning, match=r"run7\.h5 \(frame 3\)"):
        out = PreprocessConfig(bin=2, crop=(32, 32)).apply(f)
    assert out.shape == (1, 32, 32)


def test_crop_off_detector_is_masked_zero():
    f = _frame((40, 40), beam_center=(0.0, 0.0))      # beam at the corner
    out = PreprocessConfig(bin=1, crop=(20, 20), contrast="lcn", lcn_window=3).apply(f)[0]
    assert not out[:10].any() and not out[:, :10].any() and out[10:, 10:].any()


def test_masked_pixels_zero_after_contrast():
    f = _frame((64, 64), beam_center=(32.0, 32.0))
    f.mask[20:30, 20:30] = True
    f.data[20:30, 20:30] = 1e6
    for contrast in ("lcn", "linear", "sqrt", "log", "none"):
        out = PreprocessConfig(bin=1, crop=(64, 64), contrast=contrast).apply(f)[0]
        assert not out[20:30, 20:30].any(), contrast
        assert np.isfinite(out).all()


def test_augmentation_deterministic_with_rng():
    f = _frame(beam_center=(90.0, 100.0))
    cfg = PreprocessConfig(bin=2, crop=(48, 48), contrast="sqrt", max_shift=10,
                           scale_range=(0.5, 2.0))
    a = cfg.apply(f, rng=5, augment=True)
    b = cfg.apply(f, rng=np.random.default_rng(5), augment=True)
    c = cfg.apply(f, rng=6, augment=True)
    np.testing.assert_array_equal(a, b)
    assert not np.array_equal(a, c)
    np.testing.assert_array_equal(cfg.apply(f, rng=5), cfg.apply(f, rng=6))  # no augment: fixed


def test_channels_repeat():
    f = _frame((32, 32), beam_center=(16.0, 16.0))
    out = PreprocessConfig(bin=1, crop=(16, 16), channels=3).apply(f)
    assert out.shape == (3, 16, 16)
    np.testing.assert_array_equal(out[0], out[2])


def test_dict_round_trip_through_json():
    cfg = PreprocessConfig(bin=1, crop=(350, 350), contrast="linear", lcn_window=7,
                           scale_range=(0.9, 1.1), channels=2)
    d = json.loads(json.dumps(cfg.to_dict()))
    assert d["schema"] == 3
    assert PreprocessConfig.from_dict(d) == cfg
    assert PreprocessConfig.from_dict({}) == PreprocessConfig()
    # a schema-1 dict (no unbinned_up_to / margin: models shipped before them) still reads
    old = {k: v for k, v in d.items() if k not in ("unbinned_up_to", "margin")} | {"schema": 1}
    assert PreprocessConfig.from_dict(old) == cfg


def test_small_detectors_unbinned_at_full_resolution():
    """``unbinned_up_to``: a detector whose auto factor is small keeps full resolution over the
    same field of view; larger detectors are binned as before; ``margin`` plans on the image
    that a training window was cut from."""
    cfg = PreprocessConfig(bin="auto", crop=(64, 64), unbinned_up_to=2, contrast="none")
    assert cfg.plan((128, 128)) == (1, (128, 128))    # f = 2: unbinned, 2 x crop
    assert cfg.plan((100, 128)) == (1, (128, 128))
    assert cfg.plan((64, 60)) == (1, (64, 64))        # fits: f = 1
    assert cfg.plan((300, 300)) == (5, (64, 64))      # f = 5: binned
    assert cfg.output_shape_for((128, 128)) == (1, 128, 128) and cfg.output_shape == (1, 64, 64)
    f = _frame((128, 128), beam_center=(64.0, 64.0))
    np.testing.assert_array_equal(cfg.apply(f)[0], f.data)  # every pixel, unbinned
    assert cfg.apply(_frame((400, 380), beam_center=(190.0, 200.0))).shape == (1, 64, 64)
    aug = cfg.apply(f, rng=1, augment=True)
    assert aug.shape == (1, 128, 128)
    # a training window with a 16-px shift margin around a 128-px field of view
    win = cfg.replace(margin=16)
    assert win.plan((160, 160)) == (1, (128, 128)) and win.plan((96, 96)) == (1, (64, 64))
    with pytest.raises(ParameterError, match="different sizes"):
        cfg.apply_batch([f, _frame((400, 380), beam_center=(190.0, 200.0))])
    assert cfg.apply_batch([f, f]).shape == (2, 1, 128, 128)
    # off by default: the 128 px detector is binned by 2 into the crop
    assert PreprocessConfig(bin="auto", crop=(64, 64)).plan((128, 128)) == (2, (64, 64))


def test_presets():
    assert PreprocessConfig.ke2018().output_shape == (1, 720, 720)
    assert PreprocessConfig.li2018().bin == 1 and PreprocessConfig.li2018().crop == (350, 350)
    assert PreprocessConfig.deepfreak().crop == (512, 512)


@pytest.mark.parametrize("kwargs, word", [
    (dict(bin=0), "bin"), (dict(crop=(0, 10)), "crop"), (dict(crop=(1, 2, 3)), "crop"),
    (dict(contrast="hist"), "contrast"), (dict(lcn_window=4), "lcn_window"),
    (dict(lcn_eps=-1), "lcn_eps"), (dict(center="peak"), "center"), (dict(channels=0), "channels"),
    (dict(max_shift=-1), "max_shift"), (dict(scale_range=(0, 1)), "scale_range"),
    (dict(scale_range=1.0), "scale_range"),
    (dict(bin_reduce="median"), "bin_reduce"), (dict(bin="fit"), "bin"), (dict(bin=2.5), "bin"),
    (dict(unbinned_up_to=0), "unbinned_up_to"), (dict(margin=-2), "margin"),
])
def test_bad_settings_name_the_argument(kwargs, word):
    with pytest.raises(ParameterError, match=word):
        PreprocessConfig(**kwargs)


def test_from_dict_rejects_unknown_and_future():
    with pytest.raises(ParameterError, match="unknown preprocessing settings"):
        PreprocessConfig.from_dict({"bins": 2})
    with pytest.raises(ParameterError, match="upgrade"):
        PreprocessConfig.from_dict({"schema": 99})
    with pytest.raises(ParameterError, match="dict"):
        PreprocessConfig.from_dict([("bin", 2)])


def test_apply_array_rejects_3d():
    with pytest.raises(ParameterError, match="assemble"):
        PreprocessConfig().apply_array(np.ones((2, 8, 8)))


@pytest.mark.realdata
def test_real_pilatus_frame(real_dir):
    fabio = pytest.importorskip("fabio")
    raw = fabio.open(str(real_dir / "xray" / "l-cyst_01_00001.cbf")).data
    f = Frame(raw, mask=raw < 0, source="l-cyst_01_00001.cbf", beam_center=(737.5, 839.5))
    out = PreprocessConfig.ke2018().apply(f, rng=0, augment=True)
    assert out.shape == (1, 720, 720) and np.isfinite(out).all()
    # module gaps (-1) are masked, hence exactly 0, and a real fraction of the crop
    assert 0.01 < float((out == 0).mean()) < 0.5
    valid = out[out != 0]
    assert abs(float(valid.mean())) < 0.2 and 0.5 < float(valid.std()) < 1.5


def test_linear_percentile_100_is_min_max():
    f = Frame(np.arange(64, dtype=np.float32).reshape(8, 8), beam_center=(4.0, 4.0))
    out = PreprocessConfig.deepfreak(crop=(8, 8)).apply(f)[0]
    assert out.min() == 0.0 and out.max() == 1.0
    np.testing.assert_allclose(out.ravel(), np.arange(64) / 63, rtol=1e-6)
    with pytest.raises(ParameterError, match="linear_percentile"):
        PreprocessConfig(linear_percentile=101)


@pytest.mark.realdata
def test_real_cspad_beam_hole_lands_at_crop_centre(real_dir):
    """64-panel CSPAD through its CBF geometry: the direct beam passes through the hole between
    the quadrants, so a beam-centred crop has masked (zero) pixels all around its centre."""
    readers = pytest.importorskip("xtalscreen.io.readers")
    f = readers.read_frame(real_dir / "xray" / "idx-20130301060858401.cbf")
    assert f.is_multipanel and f.geometry is not None
    out = PreprocessConfig.ke2018().apply(f)[0]
    assert out.shape == (720, 720) and np.isfinite(out).all()
    assert not out[350:370, 350:370].any()           # the central hole
    assert (out != 0).mean() > 0.7                   # the panels fill most of the crop


def test_apply_batch_same_result_for_any_worker_count():
    frames = [_frame((120, 100), seed=s, beam_center=(50.0, 60.0)) for s in range(5)]
    cfg = PreprocessConfig(bin=2, crop=(32, 32), max_shift=5)
    one = cfg.apply_batch(frames, rng=3, augment=True, workers=1)
    two = cfg.apply_batch(frames, rng=3, augment=True, workers=2)
    assert one.shape == (5, 1, 32, 32)
    np.testing.assert_array_equal(one, two)
    np.testing.assert_array_equal(cfg.apply_batch(frames)[2], cfg.apply(frames[2]))
    assert cfg.apply_batch([]).shape == (0, 1, 32, 32)
    with pytest.raises(ParameterError, match="workers"):
        cfg.apply_batch(frames, workers=0)


def test_auto_bin_fits_the_detector_into_the_crop():
    cfg = PreprocessConfig(bin="auto", crop=(256, 256), contrast="none", bin_reduce="max")
    assert cfg.bin_for((512, 512)) == 2
    assert cfg.bin_for((1670, 1670)) == 7
    assert cfg.bin_for((100, 3000)) == 12
    assert cfg.bin_for((200, 100)) == 1
    assert PreprocessConfig.from_dict(cfg.to_dict()) == cfg
    # a spot at the detector corner survives: the whole detector is inside the crop
    img = np.zeros((1000, 1200), np.float32)
    img[5, 1190] = 50.0
    out = cfg.apply_array(img, center=(600.0, 500.0))
    assert out.shape == (1, 256, 256)
    assert out.max() == 50.0
    fixed = PreprocessConfig(bin=2, crop=(256, 256), contrast="none").apply_array(img, center=(600.0, 500.0))
    assert fixed.max() == 0.0  # a fixed 2 x 2 bin with a beam-centred crop misses it
