"""Dark subtraction, gain, mixed-gain scaling and apply_corrections."""

from __future__ import annotations

import h5py
import numpy as np
import pytest

from xtalscreen.errors import InputError, ParameterError
from xtalscreen.io import Frame
from xtalscreen.io.corrections import (CSPAD_LOW_GAIN_FACTOR, apply_corrections, apply_gain,
                                       average_dark, load_array, scale_low_gain, subtract_dark)


def test_dark_run_average_recovers_pedestal_and_subtraction_centres_noise():
    rng = np.random.default_rng(0)
    pedestal = rng.uniform(900, 1100, (32, 32)).astype(np.float32)
    darks = [Frame(pedestal + rng.normal(0, 4, pedestal.shape)) for _ in range(50)]
    est = average_dark(iter(darks))  # a generator: streamed, not stacked
    assert np.abs(est - pedestal).max() < 4 * 4 / np.sqrt(50) * 1.5
    light = pedestal + 30 + rng.normal(0, 4, pedestal.shape)
    corrected = subtract_dark(light, est)
    assert abs(float(corrected.mean()) - 30) < 1.0
    med = average_dark([d.data for d in darks[:9]], method="median")
    assert np.abs(med - pedestal).max() < 12


def test_average_dark_errors():
    with pytest.raises(InputError, match="no dark frames"):
        average_dark([])
    with pytest.raises(InputError, match=r"\(3, 3\).*\(2, 2\)"):
        average_dark([np.zeros((2, 2)), np.zeros((3, 3))])
    with pytest.raises(ParameterError, match="method"):
        average_dark([np.zeros((2, 2))], method="mode")


def test_gain_divide_gives_photons_and_multiply_applies_map():
    adu = np.array([[25.0, 50.0], [0.0, 250.0]])
    np.testing.assert_allclose(apply_gain(adu, 25.0), [[1, 2], [0, 10]])
    gmap = np.array([[1.0, 2.0], [1.0, 0.5]])
    np.testing.assert_allclose(apply_gain(adu, gmap, mode="multiply"), [[25, 100], [0, 125]])
    with pytest.raises(ParameterError, match="gain"):
        apply_gain(adu, 0.0)
    with pytest.raises(ParameterError, match="> 0 everywhere"):
        apply_gain(adu, np.zeros((2, 2)))
    with pytest.raises(ParameterError, match="mode"):
        apply_gain(adu, 1.0, mode="add")
    with pytest.raises(InputError, match=r"gain shape \(3, 3\).*\(2, 2\)"):
        apply_gain(adu, np.ones((3, 3)))


def test_low_gain_pixels_put_on_high_gain_scale():
    # the same photon flux read in high gain (1 ADU/unit) and low gain (1/6.85 ADU/unit)
    flux = np.full((4, 4), 68.5, np.float32)
    lg = np.zeros((4, 4), bool)
    lg[:2] = True
    raw = np.where(lg, flux / CSPAD_LOW_GAIN_FACTOR, flux)
    out = scale_low_gain(raw, lg)
    np.testing.assert_allclose(out, flux, rtol=1e-6)
    with pytest.raises(ParameterError, match="low_gain_factor"):
        scale_low_gain(raw, lg, factor=-1)


def test_apply_corrections_order_meta_and_files(tmp_path):
    f = Frame(np.full((3, 3), 110, np.int16), source="x.cbf", index=4)
    lg = np.zeros((3, 3), bool)
    lg[0, 0] = True
    np.save(tmp_path / "dark.npy", np.full((3, 3), 10.0))
    with h5py.File(tmp_path / "gain.h5", "w") as h:
        h["/data/data"] = np.full((3, 3), 4.0)
    out = apply_corrections(f, dark=str(tmp_path / "dark.npy"), low_gain_map=lg,
                            low_gain_factor=2.0, gain=str(tmp_path / "gain.h5"))
    assert out.data[1, 1] == 25.0 and out.data[0, 0] == 50.0  # (110-10)*2/4
    assert out.meta["corrections"] == ["dark", "low_gain x2", "gain (divide)"]
    assert f.data[1, 1] == 110  # input untouched
    assert out.dtype == "int16" and out.source == "x.cbf"
    g = np.full((3, 3), 1.0)
    g[2, 2] = np.nan
    assert apply_corrections(f, gain=g, gain_mode="multiply").mask[2, 2]
    with pytest.raises(InputError, match=r"x.cbf \(frame 4\).*dark shape"):
        apply_corrections(f, dark=np.zeros((2, 2)))


def test_load_array_errors(tmp_path):
    with pytest.raises(InputError, match="dark file not found"):
        load_array(str(tmp_path / "d.npy"), name="dark")
    with h5py.File(tmp_path / "m.h5", "w") as h:
        h["a"] = np.ones((2, 2))
        h["b"] = np.ones((2, 2))
    with pytest.raises(InputError, match="dataset="):
        load_array(str(tmp_path / "m.h5"), name="dark")
    assert load_array(str(tmp_path / "m.h5"), dataset="b").shape == (2, 2)
