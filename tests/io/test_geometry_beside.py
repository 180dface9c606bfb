"""A CrystFEL file beside the data (where ``xtalscreen simulate`` writes it) is found and used
only for frames it describes, only when asked, and a broken one never stops the read."""

from __future__ import annotations

from xtalscreen.io import open_frames
from xtalscreen.io.geometry import DetectorGeometry, Panel
from xtalscreen.io.readers import geometry_file_beside


def test_file_beside_is_found_in_the_folder_then_one_level_up(tmp_path):
    one = tmp_path / "one"
    one.mkdir()
    data = one / "shard-00000.h5"
    assert geometry_file_beside(data) is None
    (tmp_path / "one.geom").write_text("x")  # several presets: out/<preset>.geom
    assert geometry_file_beside(data) == str(tmp_path / "one.geom")
    (one / "geometry.geom").write_text("x")  # one preset: out/geometry.geom wins
    assert geometry_file_beside(data) == str(one / "geometry.geom")


def test_open_frames_uses_the_file_beside_only_when_asked(tmp_path, panel_run):
    run = panel_run(tmp_path / "run.h5")
    assert all(f.geometry is None for f in open_frames(run))  # default: never
    stream = open_frames(run, geometry_beside=True)
    frames = list(stream)
    assert len(frames) == 3 and all(f.geometry is not None for f in frames)
    assert frames[0].geometry.data_shape() == (4, 40, 50)
    assert stream.geometries == {str(run): str(tmp_path / "geometry.geom")}
    # a geometry given wins over the file beside it
    given = DetectorGeometry([Panel(name=f"q{k}", min_fs=0, max_fs=49, min_ss=0, max_ss=39, slab=k,
                                    corner_x=0.0, corner_y=0.0) for k in range(4)], name="given")
    assert {f.geometry.name for f in open_frames(run, geometry=given, geometry_beside=True)} == {"given"}


def test_file_beside_of_another_shape_is_not_attached(tmp_path, panel_run):
    run = panel_run(tmp_path / "run.h5", shape=(4, 30, 50))  # panels 30 rows, geometry says 40
    stream = open_frames(run, geometry_beside=True)
    assert [f.geometry for f in stream] == [None] * 3 and stream.geometries == {}


def test_broken_file_beside_is_ignored_with_a_warning(tmp_path, caplog, panel_run):
    run = panel_run(tmp_path / "run.h5", geometry=False)
    (tmp_path / "geometry.geom").write_text("p0/min_fs = not-a-number\n")
    with caplog.at_level("WARNING", logger="xtalscreen.io"):
        frames = list(open_frames(run, geometry_beside=True))
    assert len(frames) == 3 and all(f.geometry is None for f in frames)
    assert any("geometry.geom" in r.getMessage() and "ignored" in r.getMessage() for r in caplog.records)
