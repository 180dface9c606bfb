import json

import pytest

from xtalscreen.cli import main
from xtalscreen.io.crystfel import read_geom

GEOM = """photon_energy = 9000
res = 10000
clen = /LCLS/detector_1/EncoderValue
a/min_fs = 0
a/max_fs = 9
a/min_ss = 0
a/max_ss = 4
a/corner_x = -10
a/corner_y = -5
a/fs = x
a/ss = y
b/min_fs = 10
b/max_fs = 19
b/min_ss = 0
b/max_ss = 4
b/corner_x = 2
b/corner_y = -5
b/fs = x
b/ss = y
"""


def test_geom_shows_and_exports(tmp_path, capsys):
    src = tmp_path / "two.geom"
    src.write_text(GEOM)
    out = tmp_path / "out.geom"
    assert main(["geom", str(src), "--clen", "0.15", "--json", "--out", str(out)]) == 0
    info = json.loads(capsys.readouterr().out)
    assert info["panels"] == 2 and info["data_shape"] == [5, 20]
    assert info["clen_m"] == [0.15, 0.15] and info["pixel_size_um"] == 100.0
    assert info["assembled_shape"] == [5, 22]  # a 2-pixel gap between the panels
    assert info["sensors"] == "1 x 5x20"  # 2 px apart: the ASICs of one sensor
    g = read_geom(out)
    assert [p.clen for p in g.panels] == [0.15, 0.15]


def test_geom_errors_are_one_line(tmp_path, capsys):
    bad = tmp_path / "bad.geom"
    bad.write_text("res = 1\nthis line is wrong\n")
    assert main(["geom", str(bad)]) == 1
    err = capsys.readouterr().err.strip()
    assert "bad.geom: line 2" in err and len(err.splitlines()) == 1


def test_geom_help_has_examples(capsys):
    with pytest.raises(SystemExit):
        main(["geom", "--help"])
    assert "examples:" in capsys.readouterr().out
