"""The data model on SQLite and PostgreSQL: migrations, constraints, positions, queries."""

from __future__ import annotations

import datetime as dt

import pytest
import sqlalchemy as sa
from sqlalchemy import func, select
from sqlalchemy.exc import IntegrityError

from xtalscreen.drops import schema as S
from xtalscreen.drops.db import (connect, current_revision, head_revision, init_db,
                                 pending_inspections, plate_drops, scheme_classes, session_scope)
from xtalscreen.drops.schema import DropPosition
from xtalscreen.errors import ParameterError

T0 = dt.datetime(2026, 3, 1, 8, 0, 0)


# ----------------------------------------------------------------------------- positions
@pytest.mark.parametrize("text, row, col, drop", [
    ("F1.2", "F", 1, 2), ("f01_2", "F", 1, 2), ("H12-3", "H", 12, 3), ("A1", "A", 1, 1),
    (" P24.1 ", "P", 24, 1), ("AF48.16", "AF", 48, 16),
])
def test_position_parses(text, row, col, drop):
    p = DropPosition.parse(text)
    assert (p.row, p.column, p.drop) == (row, col, drop)
    assert DropPosition.parse(str(p)) == p == DropPosition.parse(p.stem)


def test_position_text_forms():
    p = DropPosition.parse("F1.2")
    assert (str(p), p.stem, p.well) == ("F1.2", "F01_2", "F1")
    assert DropPosition.parse("F1", 3) == DropPosition("F", 1, 3)


@pytest.mark.parametrize("text", ["", "1F.2", "F.2", "F1.2.3", "F0.1", "F1.0", "F49.1", "AG1.1",
                                  "F1.17", "ABC1.1", "F1,2", "well F1"])
def test_bad_positions_raise_naming_the_text(text):
    with pytest.raises(ParameterError) as e:
        DropPosition.parse(text)
    assert "drop" in str(e.value)


def test_position_and_drop_number_must_agree():
    with pytest.raises(ParameterError, match="disagrees"):
        DropPosition.parse("F1.2", 3)


# ----------------------------------------------------------------------------- migrations
def test_init_creates_schema_and_is_idempotent(db_url):
    first = init_db(db_url)
    assert first.created and first.revision == head_revision() == S.SCHEMA_REVISION
    assert first.classes_added == 4 + 4 + 15 + 11
    again = init_db(db_url)
    assert not again.created and again.previous_revision == again.revision
    assert again.classes_added == 0
    eng = connect(db_url)
    try:
        with session_scope(eng) as s:
            assert s.scalar(select(func.count()).select_from(S.SchemeClass)) == 34
            assert s.scalar(select(func.count()).select_from(S.ClassScheme)) == 4
    finally:
        eng.dispose()


def test_migration_matches_the_models(engine):
    """Alembic finds nothing to autogenerate: the shipped revision creates exactly the models."""
    from alembic.autogenerate import compare_metadata
    from alembic.migration import MigrationContext

    with engine.connect() as conn:
        diff = compare_metadata(MigrationContext.configure(conn), S.Base.metadata)
    assert diff == []


def test_downgrade_to_base_and_upgrade_again(engine):
    from alembic import command

    from xtalscreen.drops.db import _alembic_config

    cfg = _alembic_config()
    with engine.begin() as conn:
        cfg.attributes["connection"] = conn
        command.downgrade(cfg, "base")
    assert current_revision(engine) is None
    names = set(sa.inspect(engine).get_table_names())
    assert not names & {"plate", "image", "score"}
    assert init_db(engine).created
    assert {"plate", "well", "well_drop", "inspection", "image", "score"} <= set(sa.inspect(engine).get_table_names())


def test_schemes_are_in_the_database_with_mappings(engine):
    with session_scope(engine) as s:
        one_year = scheme_classes(s, "one_year")
        assert one_year["salt crystals"].maps_to.name == "crystal"
        assert one_year["clear with stuff"].maps_to.name == "other"
        marco = scheme_classes(s, "marco")
        assert [c.name for c in sorted(marco.values(), key=lambda c: c.order)] == \
            ["crystal", "precipitate", "clear", "other"]
        assert all(c.maps_to is None for c in marco.values())
        with pytest.raises(ParameterError, match="unknown class scheme 'nope'"):
            scheme_classes(s, "nope")


# ----------------------------------------------------------------------------- CRUD
def _plate(s, barcode="P1", n_drops=2, complete=True, t=T0):
    plate = S.Plate(barcode=barcode, plate_type="96-well", screen="JCSG+", owner="ann")
    insp = S.Inspection(plate=plate, imaged_at=t, imager="RI1000", complete=complete)
    images = []
    for k in range(1, n_drops + 1):
        well = S.Well(plate=plate, row="F", column=k)
        drop = S.Drop(well=well, plate=plate, number=2)
        images.append(S.Image(drop=drop, inspection=insp, uri=f"/img/{barcode}/{t:%H%M}/F{k}_2.jpg",
                              um_per_pixel=3.5, kind=S.ImageKind.visible))
    s.add_all([plate, *images])
    s.flush()
    return plate, insp, images


def _machine(image, cls, version="1.0", model="marco"):
    return S.Score(image=image, scorer_kind=S.ScorerKind.machine, scorer=model,
                   model_version=version, scheme_class=cls,
                   probabilities={"crystal": 0.7, "precipitate": 0.1, "clear": 0.1, "other": 0.1})


def test_crud_round_trip(engine):
    with session_scope(engine) as s:
        _, _, images = _plate(s)
        marco = scheme_classes(s, "marco")
        s.add(_machine(images[0], marco["crystal"]))
    with session_scope(engine) as s:
        plate = s.scalar(select(S.Plate).where(S.Plate.barcode == "P1"))
        assert (plate.plate_type, plate.screen, plate.owner) == ("96-well", "JCSG+", "ann")
        img = s.scalar(select(S.Image).where(S.Image.uri.like("%F1_2.jpg")))
        assert str(img.drop.position) == "F1.2" and img.kind is S.ImageKind.visible
        assert img.inspection.imaged_at == T0 and img.um_per_pixel == 3.5
        (score,) = img.scores
        assert score.scheme_class.name == "crystal"
        assert score.probabilities["crystal"] == pytest.approx(0.7)
        assert len(s.scalars(plate_drops("P1")).all()) == 2


def test_same_model_version_cannot_score_an_image_twice(engine):
    with session_scope(engine) as s:
        _, _, images = _plate(s)
        s.add(_machine(images[0], scheme_classes(s, "marco")["crystal"]))
    with pytest.raises(IntegrityError):
        with session_scope(engine) as s:
            img = s.scalar(select(S.Image).where(S.Image.uri.like("%F1_2.jpg")))
            s.add(_machine(img, scheme_classes(s, "marco")["clear"]))
    with session_scope(engine) as s:  # a new version, another model, and humans may
        img = s.scalar(select(S.Image).where(S.Image.uri.like("%F1_2.jpg")))
        marco = scheme_classes(s, "marco")
        s.add(_machine(img, marco["clear"], version="2.0"))
        s.add(_machine(img, marco["clear"], model="chimp"))
        for minute in (0, 5):
            s.add(S.Score(image=img, scorer_kind=S.ScorerKind.human, scorer="ann",
                          scheme_class=marco["crystal"], scored_at=T0 + dt.timedelta(minutes=minute)))
    with session_scope(engine) as s:
        assert s.scalar(select(func.count()).select_from(S.Score)) == 5


def test_human_cannot_score_the_same_image_twice_at_the_same_time(engine):
    with pytest.raises(IntegrityError):
        with session_scope(engine) as s:
            _, _, images = _plate(s)
            cls = scheme_classes(s, "marco")["clear"]
            for _ in range(2):
                s.add(S.Score(image=images[0], scorer_kind=S.ScorerKind.human, scorer="ann",
                              scheme_class=cls, scored_at=T0))


def test_machine_score_needs_a_model_version(engine):
    with pytest.raises(IntegrityError):
        with session_scope(engine) as s:
            _, _, images = _plate(s)
            s.add(_machine(images[0], scheme_classes(s, "marco")["clear"], version=None))


@pytest.mark.parametrize("dup", ["barcode", "uri", "well", "drop_image"])
def test_uniqueness_constraints(engine, dup):
    with session_scope(engine) as s:
        _plate(s)
    with pytest.raises(IntegrityError):
        with session_scope(engine) as s:
            plate = s.scalar(select(S.Plate))
            insp = plate.inspections[0]
            if dup == "barcode":
                s.add(S.Plate(barcode="P1"))
            elif dup == "uri":
                uri = insp.images[0].uri
                with s.no_autoflush:
                    d = S.Drop(well=S.Well(plate=plate, row="A", column=1), plate=plate, number=1)
                    s.add(S.Image(drop=d, inspection=insp, uri=uri))
            elif dup == "well":
                s.add(S.Well(plate=plate, row="F", column=1))
            else:
                s.add(S.Image(drop=insp.images[0].drop, inspection=insp, uri="/other.jpg"))
            s.flush()


def test_um_per_pixel_must_be_positive(engine):
    with pytest.raises(IntegrityError):
        with session_scope(engine) as s:
            _, _, images = _plate(s)
            images[0].um_per_pixel = -1.0
            s.flush()


def test_pending_inspections_query(engine):
    with session_scope(engine) as s:
        _, done, done_imgs = _plate(s, "DONE", t=T0)
        _, half, half_imgs = _plate(s, "HALF", t=T0 + dt.timedelta(hours=1))
        _plate(s, "NEW", t=T0 + dt.timedelta(hours=2))
        _plate(s, "BUSY", complete=False)
        marco = scheme_classes(s, "marco")
        for img in done_imgs + half_imgs[:1]:
            s.add(_machine(img, marco["clear"], version="1.0"))
    with session_scope(engine) as s:
        v1 = [i.plate.barcode for i in s.scalars(pending_inspections("marco", "1.0"))]
        v2 = [i.plate.barcode for i in s.scalars(pending_inspections("marco", "2.0"))]
        other = [i.plate.barcode for i in s.scalars(pending_inspections("chimp", "1.0"))]
    assert v1 == ["HALF", "NEW"]          # oldest first; incomplete BUSY never
    assert v2 == other == ["DONE", "HALF", "NEW"]


def test_deleting_a_plate_removes_its_tree(engine):
    with session_scope(engine) as s:
        _, _, images = _plate(s)
        s.add(_machine(images[0], scheme_classes(s, "marco")["clear"]))
    with session_scope(engine) as s:
        s.delete(s.scalar(select(S.Plate)))
    with session_scope(engine) as s:
        for model in (S.Well, S.Drop, S.Inspection, S.Image, S.Score):
            assert s.scalar(select(func.count()).select_from(model)) == 0
        assert s.scalar(select(func.count()).select_from(S.SchemeClass)) == 34


def test_utc_conversion():
    aware = dt.datetime(2026, 3, 1, 10, 0, tzinfo=dt.timezone(dt.timedelta(hours=2)))
    assert S.utc(aware) == T0
    assert S.utc(T0) is T0


def test_pipeline_and_web_queries_use_indexes():
    """On SQLite the query plans of the shared queries search by index, never scan."""
    from xtalscreen.drops.db import connect, init_db

    eng = connect("sqlite://")
    try:
        init_db(eng)
        plans = {}
        with eng.connect() as conn:
            for name, q in {"pending": pending_inspections("m", "1"), "drops": plate_drops("X"),
                            "scores": select(S.Score).where(S.Score.image_id == 3)}.items():
                sql = str(q.compile(eng, compile_kwargs={"literal_binds": True}))
                plans[name] = " | ".join(r[3] for r in conn.exec_driver_sql("EXPLAIN QUERY PLAN " + sql))
    finally:
        eng.dispose()
    assert "ix_inspection_complete_imaged_at" in plans["pending"]
    assert "uq_score_machine" in plans["pending"]
    assert "ix_well_drop_plate_id" in plans["drops"]
    assert "ix_score_image_id" in plans["scores"]
    assert not any("SCAN" in p for p in plans.values()), plans


def test_two_processes_initialising_at_once_both_succeed(db_url):
    """Pipeline nodes may start together: concurrent init_db calls do not clash."""
    from concurrent.futures import ThreadPoolExecutor

    with ThreadPoolExecutor(3) as pool:
        reports = list(pool.map(init_db, [db_url] * 3))
    assert sum(r.created for r in reports) == 1
    assert sum(r.classes_added for r in reports) == 34
    assert all(r.revision == head_revision() for r in reports)
