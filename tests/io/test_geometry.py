import dataclasses

import numpy as np
import pytest

from xtalscreen.errors import InputError, ParameterError
from xtalscreen.io.geometry import DetectorGeometry, Panel


def test_monolithic_assembly_is_identity_and_beam_is_kept():
    g = DetectorGeometry.monolithic((10, 20), pixel_size=1e-4, distance=0.1, beam_center=(5, 3))
    d = np.arange(200, dtype=np.float32).reshape(10, 20)
    img, msk = g.assemble(d)
    assert np.array_equal(img, d) and not msk.any()
    assert g.beam_center_px() == (5.0, 3.0)


def test_resolution_map_follows_bragg_law():
    g = DetectorGeometry.monolithic((101, 101), pixel_size=1e-3, distance=0.1, beam_center=(50.5, 50.5))
    d = g.resolution_map(1.0)
    # pixel (ss=50, fs=90): centre 40 px = 40 mm from the beam
    two_theta = np.arctan2(0.040, 0.1)
    assert d[50, 90] == pytest.approx(1.0 / (2 * np.sin(two_theta / 2)), rel=1e-9)
    assert np.isinf(d[50, 50]) and np.isinf(d).sum() == 1  # the pixel the beam hits


def test_two_panels_rotated_assemble_without_overlap():
    # panel b is rotated 90 degrees: its fs runs along +y
    a = Panel("a", 0, 9, 0, 4, corner_x=-10, corner_y=-5, slab=0)
    b = Panel("b", 0, 9, 0, 4, corner_x=5, corner_y=-5, fs=(0, 1, 0), ss=(-1, 0, 0), slab=1)
    g = DetectorGeometry([a, b])
    data = np.stack([np.full((5, 10), 1.0), np.full((5, 10), 2.0)])
    img, msk = g.assemble(data)
    assert (img == 1).sum() == 50 and (img == 2).sum() == 50
    assert msk.sum() == img.size - 100
    assert g.panel_index_map((2, 5, 10)).min() == 0


def test_geometry_that_does_not_fit_the_data_names_the_shapes():
    g = DetectorGeometry.monolithic((10, 20), pixel_size=1e-4, distance=0.1)
    with pytest.raises(InputError, match=r"\(10, 20\).*\(5, 5\)"):
        g.assemble(np.zeros((5, 5)))


@pytest.mark.parametrize("kw,name", [({"pixel_size": -1, "distance": 0.1}, "pixel_size"),
                                     ({"pixel_size": 1e-4, "distance": 0}, "distance")])
def test_bad_parameters_name_the_parameter(kw, name):
    with pytest.raises(ParameterError, match=name):
        DetectorGeometry.monolithic((10, 10), **kw)


def _grid(rows, cols, h, w, gap, *, x0=0.0, y0=0.0, fs=(1.0, 0.0, 0.0), ss=(0.0, 1.0, 0.0), name="a"):
    """``rows`` x ``cols`` panels of ``h`` x ``w`` pixels, ``gap`` px apart in the lab, each a
    slab of its own."""
    fx, fy, ssx, ssy = fs[0], fs[1], ss[0], ss[1]
    return [Panel(name=f"{name}{r}{c}", min_fs=0, max_fs=w - 1, min_ss=0, max_ss=h - 1,
                  corner_x=x0 + c * (w + gap) * fx + r * (h + gap) * ssx,
                  corner_y=y0 + c * (w + gap) * fy + r * (h + gap) * ssy, fs=fs, ss=ss, slab=0)
            for r in range(rows) for c in range(cols)]


def _slabs(panels):
    return DetectorGeometry([dataclasses.replace(p, slab=i) for i, p in enumerate(panels)])


def test_modules_join_the_asics_of_a_sensor():
    # two sensors of 2 x 4 ASICs (2 px apart, the double pixels), the sensors 38 px apart
    panels = _grid(2, 4, 256, 256, 2) + _grid(2, 4, 256, 256, 2, x0=1024 + 6 + 38, name="b")
    mods = _slabs(panels).modules()
    assert [(len(m), h, w) for m, h, w in mods] == [(8, 512, 1024), (8, 512, 1024)]
    assert sorted(i for m, _, _ in mods for i in m) == list(range(16))
    # turned by 90 degrees (fs along -y, as in the LCLS CSPAD files) and 3 px apart: still one sensor
    turned = _grid(1, 2, 185, 194, 3, fs=(0.0, -1.0, 0.0), ss=(1.0, 0.0, 0.0))
    assert _slabs(turned).modules() == (((0, 1), 185, 388),)


@pytest.mark.parametrize("why, panels", [
    ("modules 7 px apart (Pilatus)", _grid(1, 2, 195, 487, 7)),
    ("out of line by 3 px", [_grid(1, 1, 10, 20, 0)[0],
                              dataclasses.replace(_grid(1, 1, 10, 20, 0)[0], name="b", corner_x=21.0, corner_y=3.0)]),
    ("not parallel", [_grid(1, 1, 10, 20, 0)[0],
                      Panel(name="b", min_fs=0, max_fs=19, min_ss=0, max_ss=9, corner_x=22.0, corner_y=0.0,
                            fs=(0.0, 1.0, 0.0), ss=(-1.0, 0.0, 0.0))]),
    ("another height", [_grid(1, 1, 10, 20, 0)[0],
                        Panel(name="b", min_fs=0, max_fs=19, min_ss=0, max_ss=8, corner_x=22.0, corner_y=0.0)]),
    ("overlapping", _grid(1, 2, 10, 20, -3)),
])
def test_modules_keep_apart_what_is_not_one_sensor(why, panels):
    mods = _slabs(panels).modules()
    assert [m for m, _, _ in mods] == [(0,), (1,)], why


def test_modules_leave_a_partial_grid_as_panels():
    # three ASICs of a 2 x 2 block (an L): joined they would not be a rectangle
    panels = _grid(2, 2, 10, 20, 2)[:3]
    assert _slabs(panels).modules() == (((0,), 10, 20), ((1,), 10, 20), ((2,), 10, 20))
    # a row of two above a panel as wide as the row with its gap: the row is one sensor, the
    # wide panel (42 px, not 40) another
    row = _grid(1, 2, 10, 20, 2)
    wide = Panel(name="w", min_fs=0, max_fs=41, min_ss=0, max_ss=9, corner_x=0.0, corner_y=12.0, slab=0)
    assert _slabs(row + [wide]).modules() == (((0, 1), 10, 40), ((2,), 10, 42))


def test_modules_do_not_depend_on_the_data_layout():
    """The same panels as slabs, stacked in one 2-D array, or in another order: the same sensors."""
    panels = _grid(2, 4, 8, 8, 2)
    stacked = DetectorGeometry([dataclasses.replace(p, slab=None, min_ss=8 * i, max_ss=8 * i + 7)
                                for i, p in enumerate(panels)])
    shuffled = _slabs(panels[::-1])
    assert _slabs(panels).modules() == stacked.modules() == (((0, 1, 2, 3, 4, 5, 6, 7), 16, 32),)
    assert [(h, w) for _, h, w in shuffled.modules()] == [(16, 32)]
