"""Ashes (queue disagreements / uncertain images), export of agreed images, and their CLI."""

from __future__ import annotations

import datetime as dt

import pytest
from sqlalchemy import select

from xtalscreen.cli import main
from xtalscreen.drops import schema as S
from xtalscreen.drops.ashes import parse_since, queue_ashes
from xtalscreen.drops.db import scheme_classes, session_scope
from xtalscreen.drops.export import export_training
from xtalscreen.errors import ParameterError

NOW = dt.datetime(2026, 3, 10, 12, 0, 0)
CLASSES = ("crystal", "precipitate", "clear", "other")


@pytest.mark.parametrize("text, delta", [("7d", dt.timedelta(days=7)), ("12h", dt.timedelta(hours=12)),
                                         ("2w", dt.timedelta(weeks=2)), ("30m", dt.timedelta(minutes=30)),
                                         (" 1.5D ", dt.timedelta(days=1.5))])
def test_parse_since(text, delta):
    assert parse_since(text) == delta


@pytest.mark.parametrize("text", ["", "7", "d", "-1d", "0d", "7y", "soon"])
def test_bad_since(text):
    with pytest.raises(ParameterError, match="--since"):
        parse_since(text)


def _world(s, tmp_path):
    """6 images; machine scores a day before NOW except image 5 (30 days old).

    image  machine (top p)      human      expected
    0      crystal (0.9)        crystal    agree
    1      crystal (0.8)        clear      disagree
    2      clear   (0.4)        -          uncertain (lowest top p)
    3      other   (0.5)        -          uncertain (2nd)
    4      precipitate (0.95)   -          certain
    5      clear (0.3), old     crystal    disagree but outside 7d
    """
    marco = scheme_classes(s)
    plate = S.Plate(barcode="A1", owner="ann")
    insp = S.Inspection(plate=plate, imaged_at=NOW - dt.timedelta(days=40), complete=True)
    s.add_all([plate, insp])
    spec = [("crystal", 0.9, "crystal", 1), ("crystal", 0.8, "clear", 1), ("clear", 0.4, None, 1),
            ("other", 0.5, None, 1), ("precipitate", 0.95, None, 1), ("clear", 0.3, "crystal", 30)]
    ids = []
    for i, (m, p, hum, age) in enumerate(spec):
        well = S.Well(plate=plate, row="A", column=i + 1)
        drop = S.Drop(well=well, plate=plate, number=1)
        f = tmp_path / "img" / f"A{i + 1:02d}_1.png"
        f.parent.mkdir(exist_ok=True)
        f.write_bytes(b"png" * (i + 1))
        img = S.Image(drop=drop, inspection=insp, uri=str(f))
        s.add_all([well, drop, img])
        s.flush()
        ids.append(img.id)
        probs = {c: (p if c == m else (1 - p) / 3) for c in CLASSES}
        t = NOW - dt.timedelta(days=age)
        s.add(S.Score(image_id=img.id, scorer_kind=S.ScorerKind.machine, scorer="marco",
                      model_version="1", class_id=marco[m].id, probabilities=probs, scored_at=t))
        if hum:
            s.add(S.Score(image_id=img.id, scorer_kind=S.ScorerKind.human, scorer="ann",
                          class_id=marco[hum].id, scored_at=t + dt.timedelta(hours=1)))
    s.flush()
    return ids


def _queued(engine):
    with session_scope(engine) as s:
        return {i.image_id: i.reason for i in s.scalars(select(S.CinderItem))}


def test_ashes_queues_disagreements_within_since(engine, tmp_path):
    with session_scope(engine, write=True) as s:
        ids = _world(s, tmp_path)
    rep = queue_ashes(engine, since="7d", now=NOW)
    assert (rep.disagreements, rep.uncertain, rep.considered) == (1, 0, 5)
    assert _queued(engine) == {ids[1]: "disagree"}
    rep = queue_ashes(engine, since=None, now=NOW)  # all time: image 5 too; image 1 already there
    assert (rep.disagreements, rep.already) == (1, 1)
    assert _queued(engine) == {ids[1]: "disagree", ids[5]: "disagree"}


def test_ashes_uncertain_takes_the_least_sure(engine, tmp_path):
    with session_scope(engine, write=True) as s:
        ids = _world(s, tmp_path)
    rep = queue_ashes(engine, since="7d", uncertain=2, now=NOW)
    assert (rep.disagreements, rep.uncertain) == (1, 2)
    assert _queued(engine) == {ids[1]: "disagree", ids[2]: "uncertain", ids[3]: "uncertain"}
    with pytest.raises(ParameterError, match="--uncertain"):
        queue_ashes(engine, uncertain=-1)


def test_export_training_writes_marco_folders(engine, tmp_path):
    with session_scope(engine, write=True) as s:
        ids = _world(s, tmp_path)
        marco = scheme_classes(s)
        s.add(S.ConsensusLabel(image_id=ids[0], class_id=marco["crystal"].id, n_scorers=3, agreement=1.0))
        s.add(S.ConsensusLabel(image_id=ids[2], class_id=marco["clear"].id, n_scorers=3, agreement=1.0))
        s.add(S.ConsensusLabel(image_id=ids[3], class_id=marco["other"].id, n_scorers=3, agreement=1.0))
        s.get(S.Image, ids[3]).uri = str(tmp_path / "missing.png")
    out = tmp_path / "train"
    rep = export_training(engine, out)
    assert rep.counts == {"crystal": 1, "precipitate": 0, "clear": 1, "other": 0}
    assert [u for u, _ in rep.bad] == [str(tmp_path / "missing.png")]
    files = sorted(p.relative_to(out).as_posix() for p in out.rglob("*") if p.is_file())
    assert files == [f"clear/{ids[2]}_A03_1.png", f"crystal/{ids[0]}_A01_1.png"]
    assert (out / "crystal" / f"{ids[0]}_A01_1.png").read_bytes() == b"png"
    assert all((out / c).is_dir() for c in CLASSES)
    again = export_training(engine, out)
    assert again.written == 0 and again.unchanged == 2
    rep = export_training(engine, tmp_path / "d", split="train")
    assert (tmp_path / "d" / "train" / "crystal" / f"{ids[0]}_A01_1.png").is_file()
    with pytest.raises(ParameterError, match="--split"):
        export_training(engine, tmp_path / "d", split="../x")


def test_cli_ashes_adduser_share_export(db_url, tmp_path, capsys, monkeypatch):
    import io

    from xtalscreen.drops.db import connect

    assert main(["drops", "init", "--db", db_url]) == 0
    eng = connect(db_url)
    with session_scope(eng, write=True) as s:
        _world(s, tmp_path)
    eng.dispose()
    capsys.readouterr()
    assert main(["drops", "ashes", "--db", db_url, "--since", "all", "--uncertain", "1"]) == 0
    assert "queued 2 disagreement(s) and 1 uncertain image(s)" in capsys.readouterr().out
    assert main(["drops", "ashes", "--db", db_url, "--since", "forever"]) == 1
    assert "--since must be a positive duration" in capsys.readouterr().err

    monkeypatch.setattr("sys.stdin", io.StringIO("long-enough-pw\n"))
    assert main(["drops", "adduser", "bob", "--role", "scorer", "--db", db_url, "--password-stdin"]) == 0
    assert "added user bob (role scorer)" in capsys.readouterr().out
    monkeypatch.setattr("sys.stdin", io.StringIO("long-enough-pw\n"))
    assert main(["drops", "adduser", "bob", "--role", "admin", "--db", db_url, "--password-stdin"]) == 1
    assert "exists already" in capsys.readouterr().err
    monkeypatch.setattr("sys.stdin", io.StringIO("short\n"))
    assert main(["drops", "adduser", "cy", "--role", "owner", "--db", db_url, "--password-stdin"]) == 1
    assert "at least 8 characters" in capsys.readouterr().err
    assert main(["drops", "share", "A1", "bob", "--db", db_url]) == 0
    assert "now shared with bob" in capsys.readouterr().out
    assert main(["drops", "share", "NOPE", "bob", "--db", db_url]) == 1
    assert "no plate with barcode" in capsys.readouterr().err

    assert main(["drops", "export-training", str(tmp_path / "out"), "--db", db_url]) == 0
    assert "wrote 0 image(s)" in capsys.readouterr().out


def test_cli_web_help_and_errors(tmp_path, capsys):
    with pytest.raises(SystemExit):
        main(["web", "--help"])
    text = capsys.readouterr().out
    assert "examples:" in text and "--secret-key-file" in text
    assert main(["web", "--db", str(tmp_path / "none.sqlite")]) == 1
    assert "no such database file" in capsys.readouterr().err
    assert main(["web", "--db", str(tmp_path / "none.sqlite"), "--port", "0"]) == 1
    assert "--port must be" in capsys.readouterr().err
