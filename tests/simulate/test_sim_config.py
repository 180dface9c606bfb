"""Presets and parameter validation of xtalscreen.simulate."""

from __future__ import annotations

import numpy as np
import pytest

from xtalscreen.errors import ParameterError
from xtalscreen.simulate import get_preset, list_presets, simulate_frame


def test_presets_are_fresh_editable_copies():
    a = get_preset("diffranet")
    a.beam.wavelength = 1.0
    a.crystal.cell = (50, 50, 50, 90, 90, 90)
    b = get_preset("diffranet")
    assert b.beam.wavelength == 1.5
    assert b.crystal.cell[:3] == (118.0, 224.0, 331.0)
    assert b.detector.shape == (512, 512) and b.detector.pixel_size == pytest.approx(172e-6)
    assert b.detector.distance == pytest.approx(0.080)


@pytest.mark.parametrize("name", ["diffranet", "cspad", "rayonix_mx340", "pilatus6m", "eiger16m", "jungfrau4m"])
def test_every_preset_validates(name):
    cfg = get_preset(name)
    assert cfg.name == name
    assert name in list_presets()


def test_cspad_layout_matches_the_cbf_reader():
    geom = get_preset("cspad").detector.geometry
    assert geom.data_shape() == (32, 185, 388)
    assert len(geom.panels) == 64


def test_unknown_preset_lists_known_names():
    with pytest.raises(ParameterError, match="unknown preset 'nope'.*diffranet.*cspad"):
        get_preset("nope")


@pytest.mark.parametrize("edit, match", [
    (lambda c: setattr(c.beam, "wavelength", -1.0), r"beam\.wavelength must be > 0"),
    (lambda c: setattr(c.crystal, "cell", (50, 50, 50, 10, 10, 170)), r"crystal\.cell angles"),
    (lambda c: setattr(c.crystal, "cell", (50, 50, 50, 90, 90, 190)), r"crystal\.cell angles"),
    (lambda c: setattr(c.crystal, "cell", (0, 50, 50, 90, 90, 90)), r"crystal\.cell a must be > 0"),
    (lambda c: setattr(c.detector, "shape", (0, 512)), r"detector\.shape must be positive"),
    (lambda c: setattr(c.detector, "pixel_size", 0.0), r"detector\.pixel_size must be > 0"),
    (lambda c: setattr(c.detector, "distance", -0.1), r"detector\.distance must be > 0"),
    (lambda c: setattr(c.beam, "bandwidth", 0.5), r"beam\.bandwidth must be <="),
    (lambda c: setattr(c.detector, "psf", "blurry"), r"detector\.psf must be"),
    (lambda c: setattr(c.crystal, "space_group", "P 7"), r"crystal\.space_group"),
    (lambda c: setattr(c.crystal, "model", "/no/such/model.pdb"), r"crystal\.model"),
    (lambda c: setattr(c.labels, "class_probs", {"great": 1.0}), r"labels\.class_probs has unknown"),
])
def test_bad_parameters_name_the_field(edit, match):
    cfg = get_preset("diffranet")
    edit(cfg)
    with pytest.raises(ParameterError, match=match):
        simulate_frame(cfg, rng=0)


def test_bad_frame_class():
    with pytest.raises(ParameterError, match="frame_class"):
        simulate_frame(get_preset("diffranet"), rng=0, frame_class="excellent")


def test_preset_from_geom_roundtrip(tmp_path):
    crystfel = pytest.importorskip("xtalscreen.io.crystfel")
    from xtalscreen.simulate import preset_from_geom

    geom = get_preset("cspad").detector.geometry
    path = tmp_path / "cspad.geom"
    crystfel.write_geom(geom, path)
    cfg = preset_from_geom(path, base="cspad")
    assert cfg.detector.geometry.data_shape() == (32, 185, 388)
    frame, truth = simulate_frame(cfg, rng=1, frame_class="good")
    assert frame.shape == (32, 185, 388)
    assert truth.diffranet_class == "good"
    np.testing.assert_allclose(truth.spots["d"].min() > 0, True)
