import bz2
import gzip
import shutil

import numpy as np
import pytest

from xtalscreen.errors import InputError
from xtalscreen.io.cbf import (geometry_from_cbf, is_cbf, iter_cbf, parse_pilatus_header,
                               read_cbf)
from xtalscreen.io.crystfel import read_geom, write_geom

HEADER = ("# Detector: PILATUS 2M, S/N 24-0107 Diamond\r\n"
          "# 2016-03-05T09:01:45.613\r\n"
          "# Pixel_size 172e-6 m x 172e-6 m\r\n"
          "# Silicon sensor, thickness 0.000320 m\r\n"
          "# Exposure_time 0.0964000 s\r\n"
          "# Count_cutoff 1000 counts\r\n"
          "# Wavelength 0.68890 A\r\n"
          "# Detector_distance 0.16000 m\r\n"
          "# Beam_xy (5.00, 6.50) pixels\r\n"
          "# Detector_2theta 0.0000 deg.")


def write_minicbf(path, data, header=HEADER):
    from fabio.cbfimage import CbfImage

    hdr = {"_array_data.header_convention": '"PILATUS_1.2"',
           "_array_data.header_contents": header}
    CbfImage(data=data, header=hdr).write(str(path))
    return path


@pytest.fixture()
def synthetic(tmp_path):
    rng = np.random.default_rng(0)
    data = rng.poisson(5.0, size=(12, 10)).astype(np.int32)
    data[4, :] = -1          # a module gap row
    data[7, 3] = -2          # a bad pixel
    data[2, 2] = 1000        # saturated (== Count_cutoff)
    data[2, 3] = 999         # just below: kept
    return write_minicbf(tmp_path / "x_0001.cbf", data), data


def test_parse_pilatus_header_units_and_fields():
    h = parse_pilatus_header(HEADER)
    assert h["detector"] == "PILATUS 2M" and h["serial"] == "24-0107 Diamond"
    assert h["pixel_size"] == pytest.approx(172e-6) and h["distance"] == pytest.approx(0.16)
    assert h["wavelength"] == pytest.approx(0.6889) and h["exposure"] == pytest.approx(0.0964)
    assert h["beam_xy"] == (5.0, 6.5) and h["count_cutoff"] == 1000
    assert h["sensor_thickness"] == pytest.approx(320e-6)
    assert h["timestamp"] == "2016-03-05T09:01:45.613"
    mm = parse_pilatus_header("# Pixel_size 0.075 mm x 0.075 mm\n# Detector_distance 120 mm")
    assert mm["pixel_size"] == pytest.approx(75e-6) and mm["distance"] == pytest.approx(0.12)
    assert "wavelength" not in parse_pilatus_header("# Wavelength n/a")


def test_minicbf_data_mask_and_metadata(synthetic):
    path, data = synthetic
    f = read_cbf(path)
    assert f.shape == (12, 10) and f.data.dtype == np.float32 and f.dtype == "int32"
    np.testing.assert_array_equal(f.data, data.astype(np.float32))  # values never rescaled
    expected = (data < 0) | (data >= 1000)
    np.testing.assert_array_equal(f.mask, expected)
    assert not f.mask[2, 3]
    assert (f.format, f.detector) == ("cbf", "PILATUS 2M")
    assert f.pixel_size == pytest.approx(172e-6) and f.distance == pytest.approx(0.16)
    assert f.wavelength == pytest.approx(0.6889) and f.exposure == pytest.approx(0.0964)
    assert f.meta["saturation"] == 1000 and f.meta["header"]["Detector"].startswith("PILATUS")


def test_beam_xy_convention_matches_pixel_corner_convention(synthetic):
    # Beam_xy (5, 6.5): dxtbx puts pixel 0's corner at -beam*pixel, so the beam is on the
    # boundary between pixels 4 and 5 in fs and in the middle of pixel 6 in ss.
    f = read_cbf(synthetic[0])
    assert f.beam_center == (5.0, 6.5)
    g = f.geometry
    assert g.beam_center_px() == (5.0, 6.5)
    x, y, z = g.pixel_maps()
    assert x[6, 5] == pytest.approx(0.5 * 172e-6) and x[6, 4] == pytest.approx(-0.5 * 172e-6)
    assert y[6, 5] == pytest.approx(0.0, abs=1e-12)
    assert np.all(z == pytest.approx(0.16))


@pytest.mark.parametrize("opener,suffix", [(gzip.open, ".gz"), (bz2.open, ".bz2")])
def test_compressed_minicbf_reads_the_same(synthetic, tmp_path, opener, suffix):
    path, _ = synthetic
    comp = tmp_path / ("y_0001.cbf" + suffix)
    with open(path, "rb") as src, opener(comp, "wb") as dst:
        shutil.copyfileobj(src, dst)
    a, b = read_cbf(path), read_cbf(comp)
    assert is_cbf(comp)
    np.testing.assert_array_equal(a.data, b.data)
    np.testing.assert_array_equal(a.mask, b.mask)
    assert (a.wavelength, a.beam_center) == (b.wavelength, b.beam_center)
    assert b.source == str(comp)


def test_is_cbf_by_name_and_magic(synthetic, tmp_path):
    path, _ = synthetic
    renamed = tmp_path / "image.img"
    shutil.copy(path, renamed)
    assert is_cbf(path) and is_cbf("missing.CBF") and is_cbf(renamed)
    other = tmp_path / "plain.txt"
    other.write_text("hello")
    assert not is_cbf(other) and not is_cbf(tmp_path / "missing.h5")


def test_iter_cbf_frames_selection(synthetic):
    path, _ = synthetic
    assert [f.index for f in iter_cbf(path)] == [0]
    assert [f.index for f in iter_cbf(path, frames=[-1])] == [0]
    assert [f.index for f in iter_cbf(path, frames=slice(1, None))] == []
    with pytest.raises(InputError, match=r"frame 3 does not exist.*1 frame"):
        list(iter_cbf(path, frames=3))


def test_minicbf_without_geometry_keys_has_no_geometry(tmp_path):
    p = write_minicbf(tmp_path / "bare.cbf", np.ones((4, 5), np.int32),
                      header="# Detector: PILATUS 300K\r\n# Exposure_time 1 s")
    f = read_cbf(p)
    assert f.geometry is None and f.pixel_size is None and f.beam_center is None
    assert geometry_from_cbf(p) is None


def test_bad_files_raise_input_error_naming_the_file(synthetic, tmp_path):
    path, _ = synthetic
    with pytest.raises(InputError, match="no such file"):
        read_cbf(tmp_path / "missing.cbf")
    junk = tmp_path / "junk.cbf"
    junk.write_bytes(b"this is not a cbf file at all")
    with pytest.raises(InputError, match=r"junk\.cbf.*not a CBF"):
        read_cbf(junk)
    raw = path.read_bytes()
    cut = tmp_path / "cut.cbf"
    cut.write_bytes(raw[: len(raw) - 200])
    with pytest.raises(InputError, match=r"cut\.cbf"):
        read_cbf(cut)
    badgz = tmp_path / "bad.cbf.gz"
    badgz.write_bytes(gzip.compress(raw)[:-40])
    with pytest.raises(InputError, match=r"bad\.cbf\.gz"):
        read_cbf(badgz)


# ---------------------------------------------------------------------------- real frames
def _pilatus_gap_mask(shape, module=(195, 487), gap=(17, 7)):
    h, w = shape
    rows = np.ones(h, bool)
    cols = np.ones(w, bool)
    for i in range(0, h, module[0] + gap[0]):
        rows[i:i + module[0]] = False
    for j in range(0, w, module[1] + gap[1]):
        cols[j:j + module[1]] = False
    return rows[:, None] | cols[None, :]


@pytest.mark.realdata
@pytest.mark.parametrize("n", [1, 2, 3, 4])
def test_real_pilatus_2m_lcyst(real_dir, n):
    f = read_cbf(real_dir / "xray" / f"l-cyst_01_0000{n}.cbf")
    assert f.shape == (1679, 1475) and f.dtype == "int32" and f.detector == "PILATUS 2M"
    assert f.wavelength == pytest.approx(0.6889) and f.distance == pytest.approx(0.16)
    assert f.pixel_size == pytest.approx(172e-6) and f.beam_center == (730.0, 865.0)
    assert f.exposure == pytest.approx(0.0964) and f.meta["saturation"] == 388705
    gaps = _pilatus_gap_mask(f.shape)
    assert np.all(f.mask[gaps])                      # every module-gap pixel is masked
    extra = f.mask & ~gaps                           # plus a few hundred bad pixels (-2)
    assert 0 < extra.sum() < 1000
    assert f.masked_fraction == pytest.approx(gaps.mean(), abs=1e-3)
    assert np.all(f.data[~f.mask] >= 0)
    assert f.meta["two_theta"] == 30.0 and "not applied" in f.meta["geometry_note"]


@pytest.mark.realdata
def test_real_pilatus_6m_gz(real_dir):
    f = read_cbf(real_dir / "xray" / "DLS_I03_smargon_0001.cbf.gz")
    assert f.shape == (2527, 2463) and f.dtype == "int32" and f.detector == "PILATUS3 6M"
    assert f.wavelength == pytest.approx(0.97625) and f.distance == pytest.approx(0.29147)
    assert f.beam_center == (1229.3, 1200.48) and f.exposure == pytest.approx(0.009)
    gaps = _pilatus_gap_mask(f.shape)
    assert np.all(f.mask[gaps]) and 0 < (f.mask & ~gaps).sum() < 2000
    assert f.data[~f.mask].max() > 50    # Bragg spots on a rotation frame


@pytest.fixture(scope="module")
def cspad(real_dir):
    return read_cbf(real_dir / "xray" / "idx-20130301060858401.cbf")


@pytest.mark.realdata
def test_real_cspad_layout_and_metadata(cspad):
    f = cspad
    assert f.shape == (64, 185, 194) and f.dtype == "int32" and f.format == "cbf-multi"
    assert f.detector == "CSPAD" and len(f.geometry.panels) == 64
    assert f.pixel_size == pytest.approx(109.92e-6) and f.distance == pytest.approx(0.1301, abs=1e-3)
    assert f.wavelength == pytest.approx(1.272607)
    assert all(p.slab == i for i, p in enumerate(f.geometry.panels))
    assert f.meta["panel_names"][:2] == ["ARRAY_D0Q0S0A0", "ARRAY_D0Q0S0A1"]
    # dark-subtracted ADU: negatives are data, not masked; only the sentinel range is
    assert (f.data < 0).sum() > 10000
    assert f.mask.sum() == ((f.data <= -400) | (f.data >= 90000)).sum() < 10


@pytest.mark.realdata
def test_real_cspad_assembles_without_overlap(cspad):
    f = cspad
    g = f.geometry
    img, msk = f.assembled()
    h, w = img.shape
    assert 1650 < h < 1800 and 1650 < w < 1800
    # every panel's pixels fall inside the picture, and no two panels share a pixel
    owner = np.full(img.shape, -1)
    for i, p in enumerate(g.panels):
        fs, ss = np.meshgrid(np.arange(p.width) + 0.5, np.arange(p.height) + 0.5)
        x, y = g.assembled_coords(i, fs, ss, f.shape)
        c, r = np.floor(x).astype(int), np.floor(y).astype(int)
        assert c.min() >= 0 and r.min() >= 0 and c.max() < w and r.max() < h
        taken = owner[r, c]
        assert np.all((taken == -1) | (taken == i)), f"panel {p.name} overlaps another"
        owner[r, c] = i
    # nearest-pixel assembly of the slightly rotated ASICs merges < 0.01 % of the pixels
    n_data = f.data.size
    assert n_data - 250 <= (~msk).sum() <= n_data
    bx, by = f.beam_center
    assert abs(bx - w / 2) < 60 and abs(by - h / 2) < 60
    # the beam lies in the central hole, not on a panel
    assert msk[int(by), int(bx)]


@pytest.mark.realdata
def test_real_cspad_geometry_exports_to_crystfel(cspad, tmp_path, real_dir):
    g = geometry_from_cbf(real_dir / "xray" / "idx-20130301060858401.cbf")
    assert g.panels == cspad.geometry.panels
    path = tmp_path / "cspad.geom"
    write_geom(g, path)
    g2 = read_geom(path)
    assert g2.panels == g.panels
    assert g2.wavelength == pytest.approx(1.272607, rel=1e-12)
    # the imgCIF hierarchy becomes CrystFEL rigid groups: 4 quadrants of 16 ASICs, 32 sensors
    quads = g2.meta["rigid_group_collections"]["quadrants"]
    assert len(quads) == 4 and all(len(g2.meta["rigid_groups"][q]) == 16 for q in quads)
    assert len(g2.meta["rigid_group_collections"]["sensors"]) == 32
    a, am = g.assemble(cspad.data, cspad.mask)
    b, bm = g2.assemble(cspad.data, cspad.mask)
    np.testing.assert_array_equal(a, b)
    np.testing.assert_array_equal(am, bm)


@pytest.mark.realdata
def test_real_cspad_second_file_shares_geometry_but_not_wavelength(cspad, real_dir):
    f = next(iter_cbf(real_dir / "xray" / "idx-20130301060858601.cbf"))
    assert f.geometry.panels == cspad.geometry.panels
    assert f.wavelength == pytest.approx(1.272444) and f.meta["timestamp"].endswith("58.601")
    assert not np.array_equal(f.data, cspad.data)


@pytest.mark.realdata
def test_truncated_cspad_raises_input_error(real_dir, tmp_path):
    raw = (real_dir / "xray" / "idx-20130301060858401.cbf").read_bytes()
    cut = tmp_path / "cut_cspad.cbf"
    cut.write_bytes(raw[: len(raw) // 2])
    with pytest.raises(InputError, match=r"cut_cspad\.cbf"):
        read_cbf(cut)
