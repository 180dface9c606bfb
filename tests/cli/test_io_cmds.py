"""The ``info``, ``view`` and ``convert`` commands, run through ``xtalscreen.cli.main``."""

import json

import numpy as np
import pytest
from PIL import Image

from xtalscreen.cli import main
from xtalscreen.evaluate.render import MASK_COLOUR
from xtalscreen.io import open_frames


@pytest.fixture
def npy_files(tmp_path):
    rng = np.random.default_rng(1)
    paths = []
    for i in range(3):
        p = tmp_path / f"img{i}.npy"
        np.save(p, rng.poisson(10, size=(40, 50)).astype(np.int32))
        paths.append(p)
    return paths


def test_info_json_lists_every_frame(npy_files, capsys):
    assert main(["info", "--json", str(npy_files[0].parent)]) == 0
    rows = json.loads(capsys.readouterr().out)
    assert [r["shape"] for r in rows] == [[40, 50]] * 3
    assert {r["dtype"] for r in rows} == {"int32"}


def test_info_reports_and_skips_a_corrupt_file(npy_files, capsys):
    bad = npy_files[0].parent / "broken.h5"
    bad.write_bytes(b"\x89HDF\r\n\x1a\n garbage")
    rc = main(["info", str(npy_files[0].parent)])
    out, err = capsys.readouterr()
    assert rc == 2  # some items were bad, the rest was read
    assert out.count("img") == 3
    assert "broken.h5" in err and "3 frame(s) read, 1 bad item(s) skipped" in err


@pytest.mark.parametrize("args,needle", [
    (["info", "/no/such/file.h5"], "no such file"),
    (["info", "EMPTY_DIR"], "EMPTY_DIR"),
    (["view", "/no/such/file.cbf", "--out", "x.png"], "no such file"),
    (["convert", "/no/such/*.cbf", "--out", "x.h5"], "/no/such/*.cbf"),
    (["view", "NPY", "--frame", "5", "--out", "x.png"], "frame"),
    (["info", "NPY", "--beam-center", "12"], "--beam-center"),
])
def test_user_errors_are_one_line_without_traceback(args, needle, tmp_path, npy_files, capsys):
    (tmp_path / "EMPTY_DIR").mkdir()
    args = [str(tmp_path / "EMPTY_DIR") if a == "EMPTY_DIR" else str(npy_files[0]) if a == "NPY"
            else str(tmp_path / a) if a == "x.png" or a == "x.h5" else a for a in args]
    rc = main(args)
    err = capsys.readouterr().err
    assert rc == 1
    assert "Traceback" not in err
    last = err.strip().splitlines()[-1]
    assert last.startswith(f"xtalscreen {args[0]}: error:") and needle in last


def test_debug_flag_shows_the_traceback(tmp_path):
    with pytest.raises(Exception, match="no such file"):
        main(["--debug", "info", str(tmp_path / "missing.h5")])


def test_convert_npy_folder_to_hdf5_and_back(npy_files, tmp_path, capsys):
    out = tmp_path / "run.h5"
    assert main(["convert", str(npy_files[0].parent / "*.npy"), "--out", str(out)]) == 0
    frames = list(open_frames(out))
    assert len(frames) == 3
    for f, src in zip(frames, npy_files):
        assert np.array_equal(f.data, np.load(src))
    assert main(["convert", str(out), "--out", str(tmp_path / "tif"), "--format", "tif"]) == 0
    back = list(open_frames(tmp_path / "tif"))
    assert [np.array_equal(b.data, f.data) for b, f in zip(back, frames)] == [True] * 3


def test_view_renders_masked_pixels_in_the_mask_colour(tmp_path, capsys):
    img = np.full((30, 40), 20, np.int32)
    img[:, 10] = -1  # Pilatus-style gap sentinel
    img[15, 25] = 5000
    np.save(tmp_path / "f.npy", img)
    png = tmp_path / "f.png"
    assert main(["view", str(tmp_path / "f.npy"), "--out", str(png), "--contrast", "0.4"]) == 0
    rgb = np.asarray(Image.open(png))
    assert rgb.shape == (30, 40, 3)
    assert tuple(rgb[5, 10]) == MASK_COLOUR
    assert rgb[15, 25, 0] < rgb[5, 5, 0]  # the bright pixel is dark on light


@pytest.mark.realdata
def test_view_assembles_the_real_cspad(real_dir, tmp_path, capsys):
    png = tmp_path / "cspad.png"
    assert main(["view", str(real_dir / "xray" / "idx-20130301060858401.cbf"), "--out", str(png)]) == 0
    rgb = np.asarray(Image.open(png))
    # 64 ASICs of 185x194 pixels placed on a ~1.7k square picture, the rest is gap colour
    assert 1600 < rgb.shape[0] < 1800 and 1600 < rgb.shape[1] < 1800
    gap = np.all(rgb == MASK_COLOUR, axis=2)
    assert abs((~gap).sum() - 64 * 185 * 194) < 500


@pytest.mark.realdata
def test_info_reads_every_real_xray_file(real_dir, capsys):
    assert main(["info", "--json", str(real_dir / "xray")]) == 0
    rows = json.loads(capsys.readouterr().out)
    assert len(rows) == 7
    assert all(r["wavelength"] and r["pixel_size"] and r["distance"] for r in rows)
