"""The scoring pipeline end to end on SQLite and PostgreSQL (in-process workers)."""

from __future__ import annotations

import csv
import shutil

import pytest
import sqlalchemy as sa
from sqlalchemy import exc, func, select

from tests.drops._servers import dead_port, static_server, webhook_sink
from xtalscreen.drops import schema as S
from xtalscreen.drops.classifier import ModelSpec, save_checkpoint, Preprocess
from xtalscreen.drops.importer import import_source
from xtalscreen.drops.lock import LockHeld, RunLock
from xtalscreen.drops.pipeline import (PipelineConfig, PipelineError, find_pending, postprocess,
                                       read_checkpoints, run_pipeline)
from xtalscreen.drops.render import render_plates
from xtalscreen.errors import ParameterError


@pytest.fixture(scope="module")
def plate_src(tmp_path_factory):
    out = tmp_path_factory.mktemp("plates")
    render_plates(out, plates=1, seed=3, size=128, wells=10, progress=False)
    return out


@pytest.fixture
def plates(plate_src, tmp_path):
    dst = tmp_path / "plates"
    shutil.copytree(plate_src, dst)
    return dst


def _images(plates):
    return sorted(plates.glob("*/*/*.jpg"))


def _count(engine, model=S.Score):
    with engine.connect() as c:
        return c.scalar(select(func.count()).select_from(model))


def _cfg(tmp_path, **kw):
    return PipelineConfig(scratch=tmp_path / "scratch", archive=tmp_path / "archive.csv",
                          retry_wait=0.01, **kw)


def test_full_run_then_nothing_left(engine, plates, tmp_path):
    import_source(engine, plates)
    with webhook_sink() as (url, posts):
        rep = run_pipeline(engine, _cfg(tmp_path, batch=4, notify=url))
    assert rep.scored == 10 and not rep.failed and rep.inspections == 1
    assert sum(rep.classes.values()) == 10 and rep.model == "xtalscreen-demo"
    assert _count(engine) == 10
    with engine.connect() as c:
        row = c.execute(select(S.Score.probabilities, S.Score.model_version, S.Score.scorer_kind)).first()
        run = c.execute(select(S.PipelineRun)).one()
    assert abs(sum(row.probabilities.values()) - 1) < 1e-4 and row.model_version == "demo-1"
    assert run.status == "done" and run.images_scored == 10 and run.threshold == rep.threshold
    with open(tmp_path / "archive.csv") as fh:
        arch = list(csv.DictReader(fh))
    assert len(arch) == 10 and {r["model_version"] for r in arch} == {"demo-1"}
    assert sum(int(r["interesting"]) for r in arch) == len(rep.interesting)
    # checkpoints and the lock are gone; the notifier got the summary
    assert not list((tmp_path / "scratch" / "checkpoints").glob("*.json"))
    assert _count(engine, S.PipelineLock) == 0
    assert len(posts) == 1 and "10 image(s) scored" in posts[0]["text"]
    # stage 1 finds nothing now; a second run writes nothing and appends nothing
    assert find_pending(engine, "xtalscreen-demo", "demo-1") == []
    rep2 = run_pipeline(engine, _cfg(tmp_path))
    assert rep2.scored == 0 and _count(engine) == 10
    with open(tmp_path / "archive.csv") as fh:
        assert len(list(csv.DictReader(fh))) == 10


def test_bad_images_are_recorded_and_do_not_stop_the_run(engine, plates, tmp_path):
    imgs = _images(plates)
    data = imgs[0].read_bytes()
    imgs[0].write_bytes(data[: len(data) // 2])                  # truncated JPEG
    imgs[1].unlink()                                             # missing
    import cv2
    import numpy as np
    cv2.imwrite(str(imgs[2]), np.zeros((40, 200), np.uint8))     # unexpected size
    cv2.imwrite(str(imgs[3]), np.zeros((300, 300), np.uint8))    # other size: resized, scored
    csv_path = plates / "plates.csv"
    rows = list(csv.DictReader(open(csv_path)))
    port = dead_port()
    rows[4]["image_uri"] = f"http://127.0.0.1:{port}/{rows[4]['image_uri']}"   # unreachable
    with open(csv_path, "w", newline="") as fh:
        w = csv.DictWriter(fh, fieldnames=list(rows[0]))
        w.writeheader()
        w.writerows(rows)
    rep_imp = import_source(engine, csv_path, check_files=False)
    assert rep_imp.images == 10
    rep = run_pipeline(engine, _cfg(tmp_path))
    assert rep.scored == 6 and len(rep.failed) == 4
    with engine.connect() as c:
        reasons = dict(c.execute(select(S.Image.uri, S.ImageFailure.reason)
                                 .join(S.Image, S.Image.id == S.ImageFailure.image_id)).all())
    text = " | ".join(reasons.values())
    assert "truncated JPEG" in text and "file not found" in text
    assert "unexpected size 200x40" in text and "refused" in text.lower()
    # failures are not retried for this model version
    assert find_pending(engine, rep.model, rep.model_version) == []


def test_http_images_fetched_with_bounded_connections(engine, plates, tmp_path):
    rows = list(csv.DictReader(open(plates / "plates.csv")))
    with static_server(plates, delay=0.02) as (base, stats):
        for r in rows:
            r["image_uri"] = f"{base}/{r['image_uri']}"
        with open(tmp_path / "remote.csv", "w", newline="") as fh:
            w = csv.DictWriter(fh, fieldnames=list(rows[0]))
            w.writeheader()
            w.writerows(rows)
        import_source(engine, tmp_path / "remote.csv")
        rep = run_pipeline(engine, _cfg(tmp_path, max_connections=2))
    assert rep.scored == 10 and stats["requests"] == 10 and stats["peak"] <= 2
    assert not (tmp_path / "scratch" / "fetch" / "inspection-1").exists()   # local copies removed


def test_plate_without_images_and_empty_database(engine, tmp_path):
    with sa.orm.Session(engine) as s, s.begin():
        s.add(S.Plate(barcode="EMPTY-1", inspections=[S.Inspection(imaged_at=S.now_utc(),
                                                                   complete=True)]))
    rep = run_pipeline(engine, _cfg(tmp_path))
    assert rep.inspections == 0 and rep.scored == 0 and rep.failed == []


def test_incomplete_inspection_waits(engine, plates, tmp_path):
    (next(plates.glob("*/*/inspection.json"))).write_text('{"complete": false}')
    import_source(engine, plates)
    assert run_pipeline(engine, _cfg(tmp_path)).scored == 0


def test_second_run_is_locked_out(engine, plates, tmp_path):
    import_source(engine, plates)
    lock = RunLock(engine)
    with lock:
        with pytest.raises(LockHeld, match="another pipeline run holds the lock"):
            run_pipeline(engine, _cfg(tmp_path))
    assert _count(engine) == 0
    assert run_pipeline(engine, _cfg(tmp_path)).scored == 10


def test_dead_lock_holder_is_taken_over(engine, tmp_path):
    import subprocess
    import sys

    p = subprocess.Popen([sys.executable, "-c", "pass"])
    p.wait()
    with sa.orm.Session(engine) as s, s.begin():
        s.add(S.PipelineLock(name="pipeline", holder="x", host=RunLock(engine).host, pid=p.pid))
    with RunLock(engine):
        pass


def test_database_down_during_upload_fails_cleanly(engine, plates, tmp_path, monkeypatch):
    import xtalscreen.drops.pipeline as P

    import_source(engine, plates)
    calls = []
    real = P._upload

    def down(*a, **k):
        calls.append(1)
        raise exc.OperationalError("INSERT", {}, Exception("server closed the connection"))

    monkeypatch.setattr(P, "_upload", down)
    with webhook_sink() as (url, posts):
        with pytest.raises(PipelineError, match="after 3 attempt.*nothing was written.*checkpoint"):
            run_pipeline(engine, _cfg(tmp_path, retries=2, notify=url))
    assert len(calls) == 3 and _count(engine) == 0 and _count(engine, S.ImageFailure) == 0
    assert "FAILED" in posts[0]["text"]
    with engine.connect() as c:
        assert c.scalar(select(S.PipelineRun.status)) == "failed"
    assert len(read_checkpoints(tmp_path / "scratch" / "checkpoints", "xtalscreen-demo", "demo-1")) == 1
    assert not (tmp_path / "archive.csv").exists()
    # the database is back: the next run uploads the checkpoint without classifying again
    monkeypatch.setattr(P, "_upload", real)
    monkeypatch.setattr(P, "_process", lambda *a, **k: pytest.fail("recomputed"))
    rep = run_pipeline(engine, _cfg(tmp_path))
    assert rep.recovered == 1 and rep.scored == 10 and _count(engine) == 10


def test_database_unreachable_at_start(tmp_path):
    from xtalscreen.errors import InputError

    with pytest.raises(InputError, match="cannot"):
        run_pipeline(f"postgresql+psycopg://postgres@127.0.0.1:{dead_port()}/x", _cfg(tmp_path))


def test_model_with_wrong_classes_fails_before_any_work(engine, plates, tmp_path):
    from xtalscreen.models import create_model

    import_source(engine, plates)
    m = create_model("c4_cnn", num_classes=3, img_size=32, in_chans=1, widths=(4,), hidden=4)
    path = save_checkpoint(tmp_path / "m.pt", m, classes=["hit", "maybe", "miss"], name="x",
                           version="1", preprocess=Preprocess(1, (32, 32)))
    with pytest.raises(ParameterError, match="not the MARCO scheme"):
        run_pipeline(engine, _cfg(tmp_path, model=ModelSpec(str(path))))
    assert _count(engine, S.PipelineRun) == 0 and not (tmp_path / "scratch").exists()


def test_bad_settings():
    for kw, match in [({"batch": 0}, "--batch"), ({"workers": -1}, "--workers"),
                      ({"cluster": "k8s"}, "--cluster"), ({"max_connections": 0}, "--max-conn")]:
        with pytest.raises(ParameterError, match=match):
            PipelineConfig(**kw).validate()


def test_slurm_without_dask_jobqueue_is_a_clear_error():
    import importlib.util

    if importlib.util.find_spec("dask_jobqueue") is not None:
        pytest.skip("dask-jobqueue is installed")
    with pytest.raises(ParameterError, match="pip install dask-jobqueue"):
        PipelineConfig(cluster="slurm").validate()


def test_postprocess_calls():
    import numpy as np

    p = np.array([[0.7, 0.1, 0.1, 0.1], [0.3, 0.1, 0.5, 0.1], [0.1, 0.1, 0.1, 0.7]])
    out = postprocess(p, 0.25)
    assert out["argmax"].tolist() == [0, 2, 3]
    assert out["interesting"].tolist() == [True, True, False]
    assert out["clear_call"].tolist() == [False, True, False]
    assert postprocess(p, None)["interesting"].tolist() == [True, False, False]


def test_every_repeats_and_survives_a_held_lock(engine, plates, tmp_path):
    from xtalscreen.drops.pipeline import parse_every, run_every

    assert parse_every("1h") == 3600 and parse_every("30m") == 1800 and parse_every("90") == 90
    with pytest.raises(ParameterError, match="--every"):
        parse_every("soon")
    import_source(engine, plates)
    with RunLock(engine):                      # a run in progress elsewhere: skipped, not fatal
        assert run_every(engine, _cfg(tmp_path), 0.01, max_runs=1) == 1
    assert _count(engine) == 0
    assert run_every(engine, _cfg(tmp_path), 0.01, max_runs=2) == 2
    assert _count(engine) == 10
    with engine.connect() as c:
        assert c.scalar(select(func.count()).select_from(S.PipelineRun)) == 2
