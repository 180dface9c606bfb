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
