import math

import numpy as np
import pytest

from xtalscreen.errors import InputError
from xtalscreen.io.crystfel import (HC_EV_ANGSTROM, apply_geometry, bad_region_mask, read_geom,
                                    set_clen, write_geom)
from xtalscreen.io.frame import Frame


def _rot(q, v):
    """Rotate (x, y) by q * 90 degrees about the beam."""
    x, y = v
    for _ in range(q % 4):
        x, y = -y, x
    return x, y


def _vec(v):
    return " ".join(f"{c:+g}{a}" for c, a in zip(v, "xy"))


def cspad_geom_text():
    """A CSPAD-like geometry: 64 ASICs (185 x 194) in the Cheetah 2-D layout 1480 x 1552.

    Quadrant q holds fs columns q*388 .. q*388+387; 2x1 sensor s holds ss rows s*185 ..;
    its two ASICs are fs halves. Pairs of 2x1s lie in 420-pixel cells, alternately horizontal
    and vertical; quadrants are rotated by q * 90 degrees around a central hole.
    """
    lines = ["; CSPAD-like test geometry, Cheetah layout", "photon_energy = 9500 ; eV",
             "clen = 0.1", "coffset = 0.0", "res = 9090.909", "adu_per_eV = 0.00338",
             "max_adu = 15000", "data = /entry_1/data_1/data", "dim0 = %", "dim1 = ss",
             "dim2 = fs", "mask = /entry_1/data_1/mask", "mask_good = 0x0000",
             "mask_bad = 0xffff", ""]
    for q in range(4):
        for a in range(16):
            s, half = divmod(a, 2)
            pair = s // 2
            cx, cy = (pair % 2) * 420, (pair // 2) * 420
            if pair in (0, 3):   # horizontal 2x1s
                corner = (cx + half * 197, cy + (s % 2) * 200)
                fs, ss = (1, 0), (0, 1)
            else:                # vertical 2x1s
                corner = (cx + 390 - (s % 2) * 200, cy + half * 197)
                fs, ss = (0, 1), (-1, 0)
            corner = _rot(q, (corner[0] + 20, corner[1] + 20))
            n = f"q{q}a{a}"
            lines += [f"{n}/min_fs = {q * 388 + half * 194}", f"{n}/max_fs = {q * 388 + half * 194 + 193}",
                      f"{n}/min_ss = {s * 185}", f"{n}/max_ss = {s * 185 + 184}",
                      f"{n}/corner_x = {corner[0]}", f"{n}/corner_y = {corner[1]}",
                      f"{n}/fs = {_vec(_rot(q, fs))}", f"{n}/ss = {_vec(_rot(q, ss))}", ""]
    lines += ["bad_beamstop/min_x = -10", "bad_beamstop/max_x = 10",
              "bad_beamstop/min_y = -30", "bad_beamstop/max_y = 30", "",
              "bad_edge/panel = q1a3", "bad_edge/min_fs = 582", "bad_edge/max_fs = 583",
              "bad_edge/min_ss = 185", "bad_edge/max_ss = 369", ""]
    for q in range(4):
        lines.append(f"rigid_group_q{q} = " + ",".join(f"q{q}a{a}" for a in range(16)))
    lines.append("rigid_group_collection_quadrants = q0,q1,q2,q3")
    return "\n".join(lines) + "\n"


def jungfrau_geom_text():
    """A JUNGFRAU-4M-like geometry: 8 modules (512 x 1024, 3-D data (8, 512, 1024) per
    event), each 8 ASICs of 256 x 256; the left column of modules is rotated by 180 degrees."""
    lines = ["; JUNGFRAU 4M-like", "wavelength = 1.3 A", "res = 13333.3", "clen = 0.12",
             "adu_per_photon = 1", "data = /data/data", ""]
    for m in range(8):
        col, row = divmod(m, 4)
        x0, y0 = -1045 + col * 1050, -1100 + row * 550
        for arow in range(2):
            for acol in range(4):
                n = f"m{m}a{arow * 4 + acol}"
                if col == 0:   # 180 degrees: pixel (0, 0) at the far corner
                    corner = (x0 + 1030 - acol * 258, y0 + 514 - arow * 258)
                    fs, ss = "-1x", "-1y"
                else:
                    corner = (x0 + acol * 258, y0 + arow * 258)
                    fs, ss = "+1x", "+1y"
                lines += [f"{n}/dim0 = %", f"{n}/dim1 = {m}", f"{n}/dim2 = ss", f"{n}/dim3 = fs",
                          f"{n}/min_fs = {acol * 256}", f"{n}/max_fs = {acol * 256 + 255}",
                          f"{n}/min_ss = {arow * 256}", f"{n}/max_ss = {arow * 256 + 255}",
                          f"{n}/corner_x = {corner[0]}", f"{n}/corner_y = {corner[1]}",
                          f"{n}/fs = {fs}", f"{n}/ss = {ss}", ""]
    return "\n".join(lines)


@pytest.fixture(scope="module")
def cspad():
    return read_geom(cspad_geom_text())


@pytest.fixture(scope="module")
def jungfrau():
    return read_geom(jungfrau_geom_text())


def test_cspad_geom_keys(cspad):
    g = cspad
    assert len(g.panels) == 64 and not g.is_3d and g.data_shape() == (1480, 1552)
    assert g.wavelength == pytest.approx(HC_EV_ANGSTROM / 9500)
    p = g.panels[17]  # q1a1
    assert p.name == "q1a1" and (p.min_fs, p.max_fs, p.min_ss, p.max_ss) == (582, 775, 0, 184)
    assert p.res == 9090.909 and p.clen == 0.1 and p.coffset == 0.0 and p.max_adu == 15000
    assert p.adu_per_photon == pytest.approx(0.00338 * 9500)
    assert p.meta["data"] == "/entry_1/data_1/data" and p.meta["dims"] == ["%", "ss", "fs"]
    assert p.meta["mask_bad"] == "0xffff"
    assert g.meta["rigid_groups"]["q2"][0] == "q2a0"
    assert g.meta["rigid_group_collections"] == {"quadrants": ["q0", "q1", "q2", "q3"]}


def test_cspad_assembles_every_pixel_once_with_beam_in_the_hole(cspad):
    g = cspad
    data = np.arange(1480 * 1552, dtype=np.float32).reshape(1480, 1552)
    img, msk = g.assemble(data)
    assert (~msk).sum() == data.size                  # no panel overlaps another
    assert np.array_equal(np.sort(img[~msk]), data.ravel())
    bx, by = g.beam_center_px()
    assert msk[int(by) - 15:int(by) + 15, int(bx) - 15:int(bx) + 15].all()
    h, w = img.shape
    assert abs(bx - w / 2) < 2 and abs(by - h / 2) < 2


def test_bad_regions_mask_the_right_pixels(cspad):
    m = bad_region_mask(cspad, (1480, 1552))
    # fs/ss region: two columns x 185 rows of q1a3; xy region: a 21 x 61 px box around the
    # beam, which falls in the central hole (no pixels)
    assert m.sum() == 2 * 185
    assert m[185:370, 582:584].all()


def test_xy_bad_region_covers_pixel_centres():
    g = read_geom("res = 1000\nclen = 0.1\np/min_fs = 0\np/max_fs = 9\np/min_ss = 0\n"
                  "p/max_ss = 9\np/corner_x = -5\np/corner_y = -5\np/fs = x\np/ss = y\n"
                  "bad_c/min_x = -1\nbad_c/max_x = 1\nbad_c/min_y = -1\nbad_c/max_y = 3\n")
    m = bad_region_mask(g)
    # pixel centres -0.5 and 0.5 in x, -0.5 .. 2.5 in y
    assert m.sum() == 2 * 4 and m[4:8, 4:6].all()


@pytest.mark.parametrize("make", [cspad_geom_text, jungfrau_geom_text])
def test_round_trip_read_write_read(make, tmp_path):
    g = read_geom(make())
    path = tmp_path / "out.geom"
    text = write_geom(g, path)
    g2 = read_geom(path)
    assert g2.panels == g.panels
    assert [p.meta for p in g2.panels] == [p.meta for p in g.panels]
    assert g2.meta["bad_regions"] == g.meta["bad_regions"]
    assert g2.meta["rigid_groups"] == g.meta["rigid_groups"]
    assert g2.wavelength == pytest.approx(g.wavelength, rel=1e-12)
    assert g2.name == str(path)
    assert write_geom(g2).split("\n", 3)[3] == text.split("\n", 3)[3]  # stable text


def test_jungfrau_3d_layout(jungfrau):
    g = jungfrau
    assert g.is_3d and g.data_shape() == (8, 512, 1024) and len(g.panels) == 64
    assert g.wavelength == pytest.approx(1.3)
    assert [p.slab for p in g.panels[::8]] == list(range(8))
    assert g.panels[0].meta["dims"] == ["%", "0", "ss", "fs"]
    data = np.random.default_rng(1).random((8, 512, 1024)).astype(np.float32)
    img, msk = g.assemble(data)
    assert (~msk).sum() == data.size
    # module 0 is rotated by 180 degrees: its first pixel sits at the far corner
    x, y, _ = g.pixel_maps()
    assert x[0, 0, 0] > x[0, 0, 1] and y[0, 0, 0] > y[0, 1, 0]
    assert x[4, 0, 0] < x[4, 0, 1] and y[4, 0, 0] < y[4, 1, 0]


def test_vector_syntax():
    base = "res = 1000\nclen = 0.1\np/min_fs = 0\np/max_fs = 1\np/min_ss = 0\np/max_ss = 1\n" \
           "p/corner_x = 0\np/corner_y = 0\n"
    g = read_geom(base + "p/fs = -0.0001x +1.0000y\np/ss = +0.5x -0.5y +0.01z\n")
    assert g.panels[0].fs == (-0.0001, 1.0, 0.0) and g.panels[0].ss == (0.5, -0.5, 0.01)
    g = read_geom(base + "p/fs = x\np/ss = -y\n")
    assert g.panels[0].fs == (1.0, 0.0, 0.0) and g.panels[0].ss == (0.0, -1.0, 0.0)
    with pytest.raises(InputError, match=r"line 10: p/ss = '1.0 up'"):
        read_geom(base + "p/fs = x\np/ss = 1.0 up\n")


def test_defaults_apply_to_panels_mentioned_after_them():
    text = ("res = 1000\nclen = 0.1\n"
            "a/min_fs = 0\na/max_fs = 1\na/min_ss = 0\na/max_ss = 1\n"
            "coffset = 0.002 ; applies to b only\nclen = 0.2\n"
            "b/min_fs = 2\nb/max_fs = 3\nb/min_ss = 0\nb/max_ss = 1\n"
            "a/corner_x = 0\na/corner_y = 0\na/fs = x\na/ss = y\n"
            "b/corner_x = 2\nb/corner_y = 0\nb/fs = x\nb/ss = y\nb/clen = 0.3\n")
    a, b = read_geom(text).panels
    assert (a.clen, a.coffset) == (0.1, 0.0)
    assert (b.clen, b.coffset) == (0.3, 0.002)


def test_clen_hdf5_path_is_kept_and_resolved_later(tmp_path):
    text = cspad_geom_text().replace("clen = 0.1", "clen = /LCLS/detector_1/EncoderValue")
    g = read_geom(text)
    assert all(math.isnan(p.clen) for p in g.panels)
    assert g.panels[0].meta["clen_path"] == "/LCLS/detector_1/EncoderValue"
    assert "clen = /LCLS/detector_1/EncoderValue" in write_geom(g)
    frame = Frame(np.zeros((1480, 1552), np.float32), source="run1.h5")
    with pytest.raises(InputError, match="EncoderValue.*clen="):
        apply_geometry(frame, g)
    g2 = set_clen(g, 0.125)
    assert all(p.clen == 0.125 for p in g2.panels)
    assert read_geom(text, clen=0.125).panels == g2.panels


def test_apply_geometry_masks_and_fills_metadata(cspad):
    data = np.zeros((1480, 1552), np.float32)
    data[0, 0] = 20000  # above max_adu
    f = apply_geometry(Frame(data, source="run.h5"), cspad)
    assert f.geometry is cspad and f.mask[0, 0] and f.mask[185:370, 582:584].all()
    assert f.mask.sum() == 1 + 2 * 185
    assert f.beam_center == cspad.beam_center_px() and f.pixel_size == pytest.approx(110e-6)
    assert f.wavelength == pytest.approx(HC_EV_ANGSTROM / 9500)
    assert f.distance == pytest.approx(0.1)


def test_geometry_that_does_not_match_the_data_names_file_and_shapes(tmp_path):
    path = tmp_path / "cspad.geom"
    path.write_text(cspad_geom_text())
    g = read_geom(path)
    frame = Frame(np.zeros((1480, 1000), np.float32), source="run.h5")
    with pytest.raises(InputError, match=r"run\.h5.*cspad\.geom.*\(1480, 1552\).*\(1480, 1000\)"):
        apply_geometry(frame, g)
    with pytest.raises(InputError, match=r"cspad\.geom.*\(1480, 1552\)"):
        g.check_data((8, 185, 388))


@pytest.mark.parametrize("line,match", [
    ("min_fs 0", r"line 3: expected 'key = value'"),
    ("p/min_fs = zero", r"line 3: p/min_fs = 'zero': expected an integer"),
    ("p/a/b = 1", r"line 3: bad key 'p/a/b'"),
    ("= 4", r"line 3: missing key"),
])
def test_syntax_errors_name_the_line(line, match):
    text = "res = 1000\nclen = 0.1\n" + line + "\n"
    with pytest.raises(InputError, match=match):
        read_geom(text)


def test_missing_keys_and_bad_references_are_errors(tmp_path):
    with pytest.raises(InputError, match=r"panel 'p' lacks .*corner_x"):
        read_geom("res = 1\nclen = 1\np/min_fs = 0\np/max_fs = 1\np/min_ss = 0\np/max_ss = 1\n"
                  "p/fs = x\np/ss = y\n")
    with pytest.raises(InputError, match="no panels"):
        read_geom("res = 1000\nclen = 0.1\n")
    with pytest.raises(InputError, match="unknown panel 'nope'"):
        read_geom(cspad_geom_text().replace("bad_edge/panel = q1a3", "bad_edge/panel = nope"))
    with pytest.raises(InputError, match=r"rigid_group_q0 names unknown panel\(s\) \['zz'\]"):
        read_geom(cspad_geom_text().replace("rigid_group_q0 = ", "rigid_group_q0 = zz,"))
    mixed = jungfrau_geom_text().replace("m7a7/dim1 = 7\n", "")
    with pytest.raises(InputError, match="slab dimension"):
        read_geom(mixed)
    with pytest.raises(InputError, match="not found"):
        read_geom(tmp_path / "nothere.geom")


def test_unknown_keys_warn_but_do_not_fail():
    text = cspad_geom_text().replace("clen = 0.1", "clen = 0.1\nfancy_key = 3\nq0a0/colour = red")
    with pytest.warns(UserWarning) as rec:
        g = read_geom(text)
    msgs = [str(w.message) for w in rec]
    assert msgs == ["<text>: line 4: unknown key 'fancy_key' ignored",
                    "<text>: line 5: unknown panel key 'q0a0/colour' ignored"]
    assert len(g.panels) == 64


def test_photon_energy_from_hdf5_path_is_kept():
    text = cspad_geom_text().replace("photon_energy = 9500 ; eV", "photon_energy = /LCLS/photon_energy_eV")
    g = read_geom(text)
    assert g.wavelength is None and g.meta["photon_energy_path"] == "/LCLS/photon_energy_eV"
    assert g.panels[0].adu_per_photon is None and g.panels[0].meta["adu_per_eV"] == 0.00338
    assert "photon_energy = /LCLS/photon_energy_eV" in write_geom(g)
