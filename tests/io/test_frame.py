import numpy as np
import pytest

from xtalscreen.io import Frame


def test_frame_converts_to_float32_and_keeps_original_dtype():
    f = Frame(np.arange(6, dtype=np.int32).reshape(2, 3) * 1000)
    assert f.data.dtype == np.float32 and f.dtype == "int32"
    assert f.data.max() == 5000  # never rescaled
    assert f.mask.shape == (2, 3) and not f.mask.any()


def test_frame_rejects_bad_shapes():
    with pytest.raises(ValueError, match="2-D"):
        Frame(np.zeros(5))
    with pytest.raises(ValueError, match="mask shape"):
        Frame(np.zeros((2, 2)), mask=np.zeros((3, 3), bool))


def test_multipanel_without_geometry_is_tiled():
    f = Frame(np.ones((4, 3, 5)))
    img, msk = f.assembled()
    assert img.shape == (12, 5) and f.is_multipanel
    assert f.beam_center_or_default() == (2.5, 1.5)


def test_saturation_level_from_the_file_else_the_integer_type():
    d = np.zeros((10, 10), np.float32)
    assert Frame(d).saturation_level is None and Frame(d).saturated_fraction() == 0.0
    assert Frame(d.astype(np.uint16)).saturation_level == 65535.0
    assert Frame(d.astype(np.uint8)).saturation_level == 255.0
    assert Frame(d, dtype="int32", meta={"saturation_value": 1048500}).saturation_level == 1048500.0
    assert Frame(d, meta={"saturation": "9000"}).saturation_level == 9000.0  # CBF Count_cutoff
    assert Frame(d, meta={"saturation_value": -1}).saturation_level is None  # nonsense: ignored
    d[:5] = 70000
    assert Frame(d, meta={"saturation_value": 65535}).saturated_fraction(stride=1) == 0.5
    assert abs(Frame(d, meta={"saturation_value": 65535}).saturated_fraction() - 0.5) < 0.05
