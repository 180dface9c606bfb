"""Crash safety (a real process killed with SIGKILL at each stage), dask workers, and the CLI."""

from __future__ import annotations

import csv
import os
import subprocess
import sys

import pytest
from sqlalchemy import func, select

from xtalscreen.cli import main
from xtalscreen.drops import schema as S
from xtalscreen.drops.importer import import_source
from xtalscreen.drops.pipeline import KILL_ENV, PipelineConfig, run_pipeline
from xtalscreen.drops.render import render_plates


@pytest.fixture(scope="module")
def plate_src(tmp_path_factory):
    out = tmp_path_factory.mktemp("plates2")
    render_plates(out, plates=1, seed=5, size=96, wells=6, inspections=2, progress=False)
    return out   # 12 images in 2 inspections


def _scores(engine):
    with engine.connect() as c:
        return c.scalar(select(func.count()).select_from(S.Score)), \
            c.scalar(select(func.count(func.distinct(S.Score.image_id))))


def _cli_run(db_url, tmp_path, kill_at=None):
    env = dict(os.environ)
    env.pop(KILL_ENV, None)
    if kill_at:
        env[KILL_ENV] = kill_at
    code = ("import sys; from xtalscreen.cli import main; sys.exit(main(sys.argv[1:]))")
    return subprocess.run(
        [sys.executable, "-c", code, "drops", "run", "--db", db_url, "--once",
         "--scratch", str(tmp_path / "scratch"), "--archive", str(tmp_path / "archive.csv")],
        env=env, capture_output=True, text=True, timeout=120)


@pytest.mark.slow
@pytest.mark.parametrize("kill_at", ["checkpoint", "upload", "archive", "cleanup"])
def test_killed_run_loses_nothing_and_writes_nothing_twice(engine, db_url, plate_src, tmp_path,
                                                           kill_at):
    import_source(engine, plate_src)
    res = _cli_run(db_url, tmp_path, kill_at)
    assert res.returncode == -9, res.stderr
    n, distinct = _scores(engine)
    assert n == distinct and n in ((0,) if kill_at == "checkpoint" else (12,))
    # the next run takes over the dead run's lock, recovers its checkpoints and finishes
    rep = run_pipeline(engine, PipelineConfig(scratch=tmp_path / "scratch",
                                              archive=tmp_path / "archive.csv"))
    if kill_at == "checkpoint":
        assert rep.recovered == 1 and rep.scored == 12
    n, distinct = _scores(engine)
    assert n == distinct == 12
    with open(tmp_path / "archive.csv") as fh:
        ids = [r["image_id"] for r in csv.DictReader(fh)]
    assert len(ids) == len(set(ids)) == 12
    assert not list((tmp_path / "scratch" / "checkpoints").glob("*"))


@pytest.mark.slow
def test_dask_local_cluster_two_workers(tmp_path, plate_src):
    from xtalscreen.drops.db import connect, init_db

    db = tmp_path / "d.sqlite"
    init_db(db)
    import_source(db, plate_src)
    rep = run_pipeline(db, PipelineConfig(scratch=tmp_path / "s", workers=2))
    assert rep.scored == 12 and rep.inspections == 2
    engine = connect(db)
    assert _scores(engine) == (12, 12)
    engine.dispose()


def test_cli_run_score_and_lock_message(tmp_path, plate_src, capsys):
    db = tmp_path / "d.sqlite"
    assert main(["drops", "init", "--db", str(db)]) == 0
    assert main(["drops", "import", "--db", str(db), str(plate_src)]) == 0
    capsys.readouterr()
    from xtalscreen.drops.db import connect
    from xtalscreen.drops.lock import RunLock

    engine = connect(db)
    with RunLock(engine):
        rc = main(["drops", "run", "--db", str(db), "--once", "--scratch", str(tmp_path / "s")])
    err = capsys.readouterr().err.strip().splitlines()
    assert rc == 1 and "another pipeline run holds the lock" in err[-1]
    engine.dispose()
    assert main(["drops", "run", "--db", str(db), "--once", "--scratch", str(tmp_path / "s"),
                 "--log-file", str(tmp_path / "log" / "run.log")]) == 0
    assert "12 image(s) scored" in capsys.readouterr().out
    assert "stage 5 upload" in (tmp_path / "log" / "run.log").read_text()
    imgs = sorted(str(p) for p in plate_src.glob("*/*/*.jpg"))[:2]
    out = tmp_path / "s.csv"
    assert main(["drops", "score", *imgs, str(tmp_path / "missing.jpg"), "--out", str(out)]) == 0
    res = capsys.readouterr()
    assert res.out.count("crystal=") == 2 and "missing.jpg: FAILED: fetch: file not found" in res.err
    with open(out) as fh:
        rows = list(csv.DictReader(fh))
    assert len(rows) == 3 and abs(sum(float(rows[0][f"p_{c}"]) for c in
                                      ("crystal", "precipitate", "clear", "other")) - 1) < 1e-3
    assert main(["drops", "run", "--db", str(db), "--once", "--every", "1h"]) == 1


@pytest.mark.slow
def test_make_demo(tmp_path, capsys):
    from xtalscreen.drops.pipeline import demo

    demo(tmp_path / "demo")
    out = capsys.readouterr().out
    assert "96 images rendered and scored" in out and "not for real images" in out
    assert (tmp_path / "demo" / "drops-demo.sqlite").is_file()
    with open(tmp_path / "demo" / "scores-archive.csv") as fh:
        assert len(list(csv.DictReader(fh))) == 96
