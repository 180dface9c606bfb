"""Import of folder trees, CSV exports and human scores: counts, idempotency, bad rows."""

from __future__ import annotations

import csv
import json
import shutil

import pytest
from sqlalchemy import func, select

from xtalscreen.drops import schema as S
from xtalscreen.drops.db import session_scope
from xtalscreen.drops.importer import (CSV_COLUMNS, format_time, import_images, import_source,
                                       read_image_csv, read_image_tree)
from xtalscreen.drops.render import render_plates
from xtalscreen.errors import InputError, ParameterError

N_WELLS = 6


@pytest.fixture(scope="module")
def rendered(tmp_path_factory):
    """Two small generated plates (6 wells x 1 drop, 64 px PNG), written once per module."""
    out = tmp_path_factory.mktemp("plates")
    render_plates(out, plates=2, seed=3, size=64, wells=N_WELLS, fmt="png", progress=False)
    return out


@pytest.fixture
def plates(rendered, tmp_path):
    """A private copy of the rendered plates, free to be modified by the test."""
    dst = tmp_path / "plates"
    shutil.copytree(rendered, dst)
    return dst


def _count(engine, model) -> int:
    with session_scope(engine) as s:
        return s.scalar(select(func.count()).select_from(model))


def _records(engine) -> set:
    with session_scope(engine) as s:
        q = (select(S.Plate.barcode, S.Plate.plate_type, S.Inspection.imaged_at, S.Inspection.imager,
                    S.Inspection.complete, S.Well.row, S.Well.column, S.Drop.number, S.Image.uri,
                    S.Image.um_per_pixel, S.Image.kind)
             .join(S.Inspection, S.Image.inspection_id == S.Inspection.id)
             .join(S.Plate, S.Inspection.plate_id == S.Plate.id)
             .join(S.Drop, S.Image.drop_id == S.Drop.id).join(S.Well, S.Drop.well_id == S.Well.id))
        return set(s.execute(q).all())


def _write_csv(path, rows, columns=CSV_COLUMNS):
    with open(path, "w", newline="") as fh:
        w = csv.DictWriter(fh, fieldnames=list(columns))
        w.writeheader()
        w.writerows(rows)
    return path


def _row(**kw):
    base = {"barcode": "B1", "plate_type": "96-well", "screen": "S", "owner": "o",
            "inspection_time": "2026-02-01T10:00:00Z", "imager": "RI1000", "imaging_complete": "true",
            "well": "A1", "drop": "1", "image_uri": "http://imager/B1/A1_1.jpg", "um_per_pixel": "3.2",
            "kind": "visible"}
    base.update(kw)
    return base


# ----------------------------------------------------------------------------- folder / CSV
def test_folder_import_then_again_creates_nothing_twice(engine, plates):
    rep = import_source(engine, plates)
    assert (rep.plates, rep.inspections, rep.images, rep.existing, rep.bad) == (2, 2, 2 * N_WELLS, 0, [])
    assert _count(engine, S.Well) == _count(engine, S.Drop) == 2 * N_WELLS
    before = _records(engine)
    again = import_source(engine, plates)
    assert (again.created, again.existing, again.bad) == (0, 2 * N_WELLS, [])
    assert _records(engine) == before


def test_csv_import_equals_folder_import(engine, plates, tmp_path):
    rep = import_source(engine, plates / "plates.csv")
    assert (rep.plates, rep.images, rep.bad) == (2, 2 * N_WELLS, [])
    from_csv = _records(engine)
    # The folder tree describes the very same images: importing it adds nothing.
    rep2 = import_source(engine, plates)
    assert (rep2.created, rep2.existing) == (0, 2 * N_WELLS)
    assert _records(engine) == from_csv
    rec = sorted(from_csv)[0]
    assert rec[1] == "96-well" and rec[3] == "render" and rec[4] is True
    assert rec[9] == pytest.approx(5.0 * 512 / 64) and rec[10] is S.ImageKind.visible
    assert rec[8].startswith(str(plates.resolve())) and rec[8].endswith(".png")


def test_tree_and_csv_readers_agree(plates):
    tree = {(r.barcode, r.time, r.pos, r.uri, r.um_per_pixel, r.imager) for r in read_image_tree(plates)}
    table = {(r.barcode, r.time, r.pos, r.uri, r.um_per_pixel, r.imager)
             for r in read_image_csv(plates / "plates.csv")}
    assert tree == table and len(tree) == 2 * N_WELLS


def test_bad_csv_rows_are_reported_with_line_numbers_and_skipped(engine, plates, tmp_path):
    rows = [_row(),                                              # line 2: good
            _row(well="Z99", image_uri="http://imager/B1/x.jpg"),  # 3: unknown position
            _row(image_uri=str(tmp_path / "gone.jpg")),          # 4: missing file
            _row(inspection_time="yesterday", image_uri="http://i/3.jpg"),  # 5
            _row(kind="infrared", image_uri="http://i/4.jpg"),   # 6
            _row(um_per_pixel="-2", image_uri="http://i/5.jpg"),  # 7
            _row(imaging_complete="maybe", image_uri="http://i/6.jpg"),  # 8
            _row(barcode="", image_uri="http://i/7.jpg"),        # 9
            _row(well="", drop="B2.2", image_uri="http://i/8.jpg")]  # 10: good, full position
    path = _write_csv(tmp_path / "export.csv", rows)
    rep = import_source(engine, path)
    assert rep.images == 2 and rep.plates == 1
    where = {w.rsplit(":", 1)[1]: reason for w, reason in rep.bad}
    assert sorted(where, key=int) == ["3", "4", "5", "6", "7", "8", "9"]
    assert "unknown drop position" in where["3"]
    assert "missing image file" in where["4"] and "gone.jpg" in where["4"]
    assert "inspection_time" in where["5"] and "kind" in where["6"]
    assert "um_per_pixel" in where["7"] and "imaging_complete" in where["8"]
    assert all(w.startswith(str(path)) for w, _ in rep.bad)
    assert ("B", 2, 2) in {(r[5], r[6], r[7]) for r in _records(engine)}


def test_csv_with_missing_columns_is_refused(engine, tmp_path):
    path = tmp_path / "short.csv"
    path.write_text("barcode,well\nB1,A1\n")
    with pytest.raises(InputError, match="lacks column"):
        import_source(engine, path)
    empty = tmp_path / "empty.csv"
    empty.write_text("")
    with pytest.raises(InputError, match="empty"):
        import_source(engine, empty)


def test_missing_source_and_nothing_to_import(engine, tmp_path):
    with pytest.raises(InputError, match="no such file or folder"):
        import_source(engine, tmp_path / "nowhere")
    with pytest.raises(ParameterError):
        import_source(engine, None)


def test_bad_files_in_the_tree_are_reported(engine, plates):
    insp = next(p for p in (plates / "XS003-0001").iterdir() if p.is_dir())
    shutil.copy(next(insp.glob("*.png")), insp / "junk.png")
    shutil.copy(next(insp.glob("*.png")), insp / "Z77_1.png")
    (insp / "notes.txt").write_text("ignored: not an image")
    (plates / "XS003-0001" / "not-a-time").mkdir()
    rep = import_source(engine, plates)
    assert rep.images == 2 * N_WELLS
    bad = dict(rep.bad)
    assert set(bad) == {str(insp / "junk.png"), str(insp / "Z77_1.png"),
                        str(plates / "XS003-0001" / "not-a-time")}
    assert "drop position" in bad[str(insp / "junk.png")]


def test_inspection_json_and_kinds(engine, tmp_path):
    insp = tmp_path / "root" / "P9" / "20260301T120000Z"
    insp.mkdir(parents=True)
    (tmp_path / "root" / "P9" / "plate.json").write_text(json.dumps({"owner": "bob"}))
    (insp / "inspection.json").write_text(json.dumps({"imager": "RI1000", "complete": False,
                                                      "um_per_pixel": 2.5}))
    for name in ("A01_1.jpg", "A01_1_uv.png", "A01_1_shg.png", "B03_2.jpg"):
        (insp / name).write_bytes(b"not decoded at import")
    rep = import_source(engine, tmp_path / "root")
    assert (rep.plates, rep.inspections, rep.images, rep.bad) == (1, 1, 4, [])
    recs = _records(engine)
    assert {r[10] for r in recs} == {S.ImageKind.visible, S.ImageKind.uv, S.ImageKind.shg}
    assert all(r[4] is False and r[3] == "RI1000" and r[9] == 2.5 for r in recs)
    with session_scope(engine) as s:
        assert s.scalar(select(S.Plate.owner)) == "bob"


def test_completion_flag_is_updated_on_reimport(engine, tmp_path):
    rows = [_row(imaging_complete="false", image_uri=f"http://i/{k}.jpg", well=f"A{k}")
            for k in range(1, 4)]
    rep = import_source(engine, _write_csv(tmp_path / "a.csv", rows[:2]))
    assert rep.images == 2
    with session_scope(engine) as s:
        assert s.scalar(select(S.Inspection.complete)) is False
    for r in rows:
        r["imaging_complete"] = "true"
    rep = import_source(engine, _write_csv(tmp_path / "b.csv", rows))
    assert (rep.images, rep.existing, rep.updated, rep.inspections) == (1, 2, 1, 0)
    with session_scope(engine) as s:
        assert s.scalar(select(S.Inspection.complete)) is True


def test_same_drop_under_another_uri_is_a_bad_row(engine, tmp_path):
    import_source(engine, _write_csv(tmp_path / "a.csv", [_row()]))
    rep = import_source(engine, _write_csv(tmp_path / "b.csv", [_row(image_uri="http://elsewhere/A1_1.jpg")]))
    assert rep.images == 0 and len(rep.bad) == 1 and "already has a visible image" in rep.bad[0][1]


def test_import_into_a_database_without_schema_is_refused(db_url, plates):
    if db_url.startswith("sqlite"):
        with pytest.raises(InputError, match="no such database file"):
            import_source(db_url, plates)
        open(db_url[len("sqlite:///"):], "w").close()
    with pytest.raises(InputError, match="drops init"):
        import_source(db_url, plates)


# ----------------------------------------------------------------------------- scores
def _scores(path, rows, columns=("image_uri", "barcode", "inspection_time", "drop", "kind",
                                 "scorer", "class", "time", "scheme")):
    return _write_csv(path, rows, columns)


def test_human_scores_import_by_uri_and_position(engine, plates, tmp_path):
    import_source(engine, plates)
    t = "2026-01-05T09:00:00Z"
    rows = [
        {"image_uri": "XS003-0001/20260105T090000Z/A01_1.png", "scorer": "ann", "class": "Crystal",
         "time": "2026-02-01T10:00:00Z"},                                              # 2
        {"barcode": "XS003-0001", "inspection_time": t, "drop": "A2.1", "scorer": "bob",
         "class": "crystals high", "scheme": "one_year", "time": "2026-02-01T10:01:00Z"},  # 3
        {"barcode": "XS003-0001", "inspection_time": t, "drop": "A3.1", "scorer": "bob",
         "class": "shiny", "time": "2026-02-01T10:02:00Z"},                            # 4 bad class
        {"barcode": "XS003-0001", "inspection_time": t, "drop": "H12.1", "scorer": "bob",
         "class": "clear", "time": "2026-02-01T10:03:00Z"},                            # 5 no image
        {"barcode": "XS003-0001", "inspection_time": t, "drop": "Q", "scorer": "bob",
         "class": "clear", "time": "2026-02-01T10:03:00Z"},                            # 6 bad drop
        {"image_uri": "XS003-0001/20260105T090000Z/A01_1.png", "scorer": "", "class": "clear",
         "time": "2026-02-01T10:00:00Z"},                                              # 7 no scorer
        {"image_uri": "XS003-0001/20260105T090000Z/A01_1.png", "scorer": "cy", "class": "clear",
         "time": "2026-02-01T10:00:00Z", "scheme": "nope"},                            # 8 bad scheme
    ]
    path = _scores(plates / "scores.csv", rows)
    rep = import_source(engine, scores=path)
    assert rep.scores == 2
    lines = {w.rsplit(":", 1)[1]: reason for w, reason in rep.bad}
    assert sorted(lines) == ["4", "5", "6", "7", "8"]
    assert "unknown class 'shiny'" in lines["4"] and "import the images first" in lines["5"]
    assert "drop position" in lines["6"] and "scorer" in lines["7"] and "nope" in lines["8"]
    with session_scope(engine) as s:
        got = {(sc.scorer, sc.scheme_class.name, sc.scheme_class.scheme.name,
                sc.scheme_class.maps_to.name if sc.scheme_class.maps_to else None, str(sc.image.drop.position))
               for sc in s.scalars(select(S.Score))}
    assert got == {("ann", "crystal", "marco", None, "A1.1"),
                   ("bob", "Crystals high", "one_year", "crystal", "A2.1")}
    again = import_source(engine, scores=path)
    assert (again.scores, again.existing, len(again.bad)) == (0, 2, 5)
    assert _count(engine, S.Score) == 2


def test_images_and_scores_in_one_call(engine, plates, tmp_path):
    path = _scores(tmp_path / "s.csv", [{"image_uri": str(plates / "XS003-0002/20260105T100000Z/A01_1.png"),
                                         "scorer": "ann", "class": "other", "time": "2026-02-01T10:00:00"}])
    rep = import_source(engine, plates, scores=path, scheme="well_scored")
    assert (rep.images, rep.scores, rep.bad) == (2 * N_WELLS, 1, [])
    with session_scope(engine) as s:
        assert s.scalar(select(S.Score)).scheme_class.scheme.name == "well_scored"


def test_scores_csv_needs_an_image_reference(engine, tmp_path):
    path = _write_csv(tmp_path / "s.csv", [{"scorer": "a", "class": "clear", "time": "2026-01-01"}],
                      ("scorer", "class", "time"))
    with pytest.raises(InputError, match="image_uri"):
        import_source(engine, scores=path)


def test_format_time_is_the_folder_name_form():
    import datetime as dt

    assert format_time(dt.datetime(2026, 1, 5, 9, 0)) == "20260105T090000Z"


def test_import_images_leaves_the_commit_to_the_caller(engine, plates):
    from sqlalchemy.orm import Session

    with Session(engine) as s:
        rep = import_images(s, plates)
        assert rep.images == 2 * N_WELLS
        s.rollback()
    assert _count(engine, S.Image) == 0


def test_a_failing_write_leaves_nothing_half_written(engine, plates, monkeypatch):
    """A constraint violation inside the import rolls back everything and reports one error."""
    import xtalscreen.drops.importer as imp

    real = imp.import_images

    def clashing(session, source, **kw):
        rep = real(session, source, **kw)        # all images added ...
        session.add(S.Plate(barcode="XS003-0001"))  # ... then a clash, as a concurrent writer
        session.flush()
        return rep

    monkeypatch.setattr(imp, "import_images", clashing)
    with pytest.raises(InputError, match="conflicting write.*nothing was imported"):
        import_source(engine, plates)
    for model in (S.Plate, S.Inspection, S.Image):
        assert _count(engine, model) == 0


def test_render_truth_imports_as_scores(engine, plates):
    rep = import_source(engine, plates, scores=plates / "truth.csv")
    assert (rep.images, rep.scores, rep.bad) == (2 * N_WELLS, 2 * N_WELLS, [])
    with open(plates / "truth.csv") as fh:
        truth = {(r["barcode"], r["drop"]): r["class"] for r in csv.DictReader(fh)}
    with session_scope(engine) as s:
        got = {(sc.image.drop.plate.barcode, str(sc.image.drop.position)): sc.scheme_class.name
               for sc in s.scalars(select(S.Score))}
    assert got == truth


def test_a_folder_without_the_layout_is_refused(engine, plates):
    with pytest.raises(InputError, match="no drop images found"):
        import_source(engine, plates / "XS003-0001")  # one level too deep
