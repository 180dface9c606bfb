"""The drop-scoring pipeline (paper 000 section 5): find, fetch, classify, post-process, upload.

One run (:func:`run_pipeline`, ``xtalscreen drops run --once``):

1. **find** complete inspections with an image that has neither a machine score nor a recorded
   failure from the current model name + version;
2. **fetch** their images to node-local scratch (:mod:`xtalscreen.drops.fetch`; at most
   ``max_connections`` transfers at once, 10 by default as in C4);
3. **classify** in batches (default 32) and write each inspection's probabilities to a checkpoint
   file (``<scratch>/checkpoints/*.json``, atomic rename) as soon as they arrive, before anything
   else happens to them;
4. **post-process**: argmax class, "interesting drops" (crystal probability >= the threshold
   stored with the model, chosen on a validation ROC at TPR 0.8), binary crystal and clear calls;
5. **upload** every result of the run in one transaction with bulk inserts (scores, failed images
   with their reason, the run record); then append the probabilities to the long-term archive
   (CSV, append-only) and remove the checkpoints and local copies.

Inspections are processed in parallel with dask.distributed (``workers >= 2``: a local cluster of
processes; ``cluster="slurm"``: dask-jobqueue's SLURMCluster, imported only then) or in-process
(``workers`` 0 or 1). Only the client process touches the database and the checkpoints, so the
run holds one or two connections whatever the number of workers.

Crash safety: a run killed at any point (even ``kill -9``) and started again loses no score and
writes none twice. Checkpoints of a killed run are picked up by the next run (and not computed
again); scores already in the database are never inserted again (the upload filters them out,
and the unique index on (image, model, version) stands behind it); archive rows carry their
checkpoint's key, so a checkpoint archived before the kill is not archived twice. A database
lock (:mod:`xtalscreen.drops.lock`) stops two runs overlapping. A database that goes away during
the upload is retried ``retries`` times, then the run fails cleanly: nothing is written, the
checkpoints stay for the next run.

Fault injection (for crash tests and drills): environment variable ``XTALSCREEN_DROPS_KILL_AT``
set to a stage name (``checkpoint``, ``upload``, ``archive``, ``cleanup``) makes the process
``kill -9`` itself right after that stage, like a power cut.

A corrupt, missing or wrong-sized image, or an unreachable URL, is recorded as failed (table
``image_failure``) with the reason and is not retried for that model version (delete its row to
retry); it never stops the run.
"""

from __future__ import annotations

import csv
import io
import json
import logging
import logging.handlers
import os
import re
import shutil
import signal
import socket
import time
import uuid
from collections import Counter
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np
import sqlalchemy as sa
from sqlalchemy import exc, select

from xtalscreen.drops import schema as S
from xtalscreen.drops.classifier import ModelSpec, check_image_size, read_image
from xtalscreen.drops.db import connect, describe, require_schema, scheme_classes, session_scope
from xtalscreen.drops.fetch import MAX_CONNECTIONS, fetch_all
from xtalscreen.drops.lock import RunLock
from xtalscreen.drops.notify import Notifier, make_notifier
from xtalscreen.drops.schemes import MARCO_CLASSES
from xtalscreen.errors import InputError, ParameterError, XtalscreenError

log = logging.getLogger("xtalscreen.drops.pipeline")

KILL_ENV = "XTALSCREEN_DROPS_KILL_AT"
ARCHIVE_COLUMNS = ("checkpoint", "run_id", "image_id", "inspection_id", "uri", "model",
                   "model_version", "scored_at", "class", *[f"p_{c}" for c in MARCO_CLASSES],
                   "interesting", "crystal_call", "clear_call")
_CHUNK = 500


class PipelineError(XtalscreenError):
    """The run could not finish (database down during upload, ...); nothing was half-written."""


@dataclass
class PipelineConfig:
    """Settings of a run (see :func:`run_pipeline`)."""

    model: ModelSpec = field(default_factory=ModelSpec)
    batch: int = 32
    workers: int = 0
    scratch: str | Path = ".xtalscreen-scratch"
    archive: str | Path | None = None
    notify: str | None = None
    max_connections: int = MAX_CONNECTIONS
    copy_local: bool = False
    cluster: str = "local"
    cluster_options: dict = field(default_factory=dict)
    retries: int = 3
    retry_wait: float = 1.0
    limit: int | None = None

    def validate(self) -> None:
        for name in ("batch", "max_connections"):
            v = getattr(self, name)
            if isinstance(v, bool) or not isinstance(v, int) or v < 1:
                raise ParameterError(f"--{name.replace('_', '-')} must be an integer >= 1, got {v!r}")
        if isinstance(self.workers, bool) or not isinstance(self.workers, int) or self.workers < 0:
            raise ParameterError(f"--workers must be an integer >= 0, got {self.workers!r}")
        if self.cluster not in ("local", "slurm"):
            raise ParameterError(f"--cluster must be local or slurm, got {self.cluster!r}")
        if self.cluster == "slurm":
            import importlib.util

            if importlib.util.find_spec("dask_jobqueue") is None:
                raise ParameterError("--cluster slurm needs dask-jobqueue: pip install dask-jobqueue")
        if self.retries < 0:
            raise ParameterError(f"retries must be >= 0, got {self.retries!r}")
        if self.limit is not None and self.limit < 1:
            raise ParameterError(f"--limit must be >= 1, got {self.limit!r}")


@dataclass
class RunReport:
    """What a run did; ``seconds`` splits the time by stage (worker seconds for fetch/decode/model)."""

    run_id: int | None = None
    model: str = ""
    model_version: str = ""
    threshold: float | None = None
    inspections: int = 0
    recovered: int = 0
    scored: int = 0
    already_scored: int = 0
    failed: list[tuple[str, str]] = field(default_factory=list)
    inspections_failed: list[tuple[str, str]] = field(default_factory=list)
    classes: Counter = field(default_factory=Counter)
    interesting: list[str] = field(default_factory=list)
    seconds: dict[str, float] = field(default_factory=lambda: dict.fromkeys(
        ("find", "fetch", "decode", "model", "database", "archive", "total"), 0.0))

    @property
    def images(self) -> int:
        return self.scored + len(self.failed)

    def summary(self) -> str:
        cls = ", ".join(f"{self.classes.get(c, 0)} {c}" for c in MARCO_CLASSES)
        rate = self.images / self.seconds["total"] if self.seconds["total"] > 0 else 0.0
        s = (f"run {self.run_id}: model {self.model} {self.model_version}: {self.inspections} "
             f"inspection(s), {self.scored} image(s) scored ({cls}), {len(self.failed)} failed, "
             f"{len(self.interesting)} interesting drop(s)")
        if self.recovered:
            s += f", {self.recovered} inspection(s) recovered from checkpoints"
        if self.already_scored:
            s += f", {self.already_scored} already in the database"
        return s + f"; {self.seconds['total']:.1f} s ({rate:.1f} images/s)"


# ----------------------------------------------------------------------------- logging
def _remove_handlers() -> None:
    root = logging.getLogger("xtalscreen.drops")
    for h in list(root.handlers):
        if getattr(h, "_xts_pipeline", False):
            root.removeHandler(h)
            h.close()


def configure_logging(log_file: str | Path | None = None, *, verbose: bool = False,
                      max_bytes: int = 5_000_000, backups: int = 5):
    """Console (INFO, or DEBUG with ``verbose``) and a rotating DEBUG file for the pipeline loggers.

    Returns a function that removes these handlers again.
    """
    root = logging.getLogger("xtalscreen.drops")
    root.setLevel(logging.DEBUG)
    _remove_handlers()
    fmt = logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s")
    con = logging.StreamHandler()
    con.setLevel(logging.DEBUG if verbose else logging.INFO)
    con.setFormatter(logging.Formatter("%(asctime)s %(message)s", "%H:%M:%S"))
    con._xts_pipeline = True
    root.addHandler(con)
    if log_file:
        Path(log_file).parent.mkdir(parents=True, exist_ok=True)
        fh = logging.handlers.RotatingFileHandler(log_file, maxBytes=max_bytes, backupCount=backups)
        fh.setLevel(logging.DEBUG)
        fh.setFormatter(fmt)
        fh._xts_pipeline = True
        root.addHandler(fh)
    return _remove_handlers


def _fault(stage: str) -> None:
    """Kill this process (SIGKILL) after ``stage`` if $XTALSCREEN_DROPS_KILL_AT names it."""
    if os.environ.get(KILL_ENV, "").strip() == stage:
        log.debug("fault injection: kill -9 after stage %s", stage)
        logging.shutdown()
        os.kill(os.getpid(), signal.SIGKILL)


# ----------------------------------------------------------------------------- worker side
@dataclass
class InspectionJob:
    """One inspection to score: its id, a label for messages and its (image id, URI) pairs."""

    inspection_id: int
    label: str
    images: list[tuple[int, str]]


_CLASSIFIERS: dict = {}


def _classifier(spec: ModelSpec):
    key = json.dumps(asdict(spec), sort_keys=True, default=str)
    if key not in _CLASSIFIERS:
        _CLASSIFIERS[key] = spec.build()
    return _CLASSIFIERS[key]


def score_inspection(job: InspectionJob, spec: ModelSpec, fetch_dir: str, *, batch: int = 32,
                     max_connections: int = MAX_CONNECTIONS, copy_local: bool = False,
                     single_thread: bool = False) -> dict:
    """Stages 2-3 for one inspection (runs on a worker): fetch, decode, classify.

    Returns a dict: ``inspection_id``, ``label``, ``results`` (per image: ``image_id``, ``uri``,
    ``probs`` (list, MARCO order) or ``error`` (reason)), ``seconds`` (fetch, decode, model) and
    ``fetch_dir`` (local copies, removed after the upload).
    """
    if single_thread:
        import torch

        torch.set_num_threads(1)
    clf = _classifier(spec)
    dest = Path(fetch_dir) / f"inspection-{job.inspection_id}"
    secs = {"fetch": 0.0, "decode": 0.0, "model": 0.0}
    t0 = time.perf_counter()
    got = fetch_all([u for _, u in job.images], dest, max_connections=max_connections,
                    copy_local=copy_local)
    secs["fetch"] = time.perf_counter() - t0
    results, pending = [], []
    t0 = time.perf_counter()
    for (image_id, uri), g in zip(job.images, got):
        if g.error:
            results.append({"image_id": image_id, "uri": uri, "error": f"fetch: {g.error}"})
            continue
        try:
            img = read_image(g.path)
            check_image_size(img)
        except InputError as e:
            results.append({"image_id": image_id, "uri": uri, "error": e.reason})
            continue
        pending.append((image_id, uri, img))
    secs["decode"] = time.perf_counter() - t0
    t0 = time.perf_counter()
    for s in range(0, len(pending), batch):
        chunk = pending[s:s + batch]
        probs = clf.predict_proba([im for _, _, im in chunk])
        for (image_id, uri, _), p in zip(chunk, probs):
            results.append({"image_id": image_id, "uri": uri, "probs": [float(v) for v in p]})
    secs["model"] = time.perf_counter() - t0
    return {"inspection_id": job.inspection_id, "label": job.label, "results": results,
            "seconds": secs, "fetch_dir": str(dest)}


# ----------------------------------------------------------------------------- checkpoints
def _safe(text: str) -> str:
    return re.sub(r"[^A-Za-z0-9.\-]+", "_", text)[:80]


def _ckpt_prefix(model: str, version: str) -> str:
    return f"{_safe(model)}--{_safe(version)}--"


def write_checkpoint(folder: Path, model: str, version: str, result: dict) -> tuple[Path, dict]:
    """Write one inspection's result as JSON, atomically (temporary file, fsync, rename).

    Returns the path and the document written (the result plus model, version and a unique key).
    """
    folder.mkdir(parents=True, exist_ok=True)
    result = dict(result, model=model, model_version=version, key=uuid.uuid4().hex)
    path = folder / f"{_ckpt_prefix(model, version)}inspection-{result['inspection_id']}.json"
    tmp = path.with_name(path.name + f".{os.getpid()}.tmp")
    with open(tmp, "w") as fh:
        json.dump(result, fh)
        fh.flush()
        os.fsync(fh.fileno())
    tmp.replace(path)
    return path, result


def read_checkpoints(folder: Path, model: str, version: str) -> list[tuple[Path, dict]]:
    """Checkpoints left in ``folder`` for this model version (by a killed or failed run)."""
    out = []
    if not folder.is_dir():
        return out
    for path in sorted(folder.glob(f"{_ckpt_prefix(model, version)}*.json")):
        try:
            doc = json.loads(path.read_text())
        except (OSError, json.JSONDecodeError) as e:  # cannot happen with the atomic write
            log.warning("ignoring unreadable checkpoint %s: %s", path, e)
            continue
        if doc.get("model") == model and doc.get("model_version") == version:
            out.append((path, doc))
    return out


# ----------------------------------------------------------------------------- stages
def find_pending(engine, model: str, version: str, *, exclude: set[int] = frozenset(),
                 limit: int | None = None) -> list[InspectionJob]:
    """Stage 1: complete inspections with images lacking a score or failure of ``model`` ``version``."""
    scored = (select(S.Score.id).where(S.Score.image_id == S.Image.id,
                                       S.Score.scorer_kind == S.ScorerKind.machine,
                                       S.Score.scorer == model, S.Score.model_version == version)
              .exists())
    failed = (select(S.ImageFailure.id).where(S.ImageFailure.image_id == S.Image.id,
                                              S.ImageFailure.scorer == model,
                                              S.ImageFailure.model_version == version).exists())
    q = (select(S.Image.id, S.Image.uri, S.Inspection.id, S.Inspection.imaged_at, S.Plate.barcode)
         .join(S.Inspection, S.Image.inspection_id == S.Inspection.id)
         .join(S.Plate, S.Inspection.plate_id == S.Plate.id)
         .where(S.Inspection.complete.is_(True), ~scored, ~failed)
         .order_by(S.Inspection.imaged_at, S.Inspection.id, S.Image.id))
    jobs: dict[int, InspectionJob] = {}
    with session_scope(engine) as s:
        for image_id, uri, insp_id, t, barcode in s.execute(q):
            if insp_id in exclude:
                continue
            if insp_id not in jobs:
                if limit is not None and len(jobs) >= limit:
                    break
                jobs[insp_id] = InspectionJob(insp_id, f"{barcode} {t:%Y-%m-%d %H:%M}", [])
            jobs[insp_id].images.append((image_id, uri))
    return list(jobs.values())


def postprocess(probs: np.ndarray, threshold: float | None) -> dict:
    """Stage 4: argmax class index, interesting (p_crystal >= threshold), crystal and clear calls.

    ``probs`` is (N, 4) in MARCO order. Without a threshold, "interesting" and the crystal call
    fall back to argmax == crystal. The clear call is p_clear >= 0.5.
    """
    probs = np.asarray(probs, float).reshape(-1, len(MARCO_CLASSES))
    k_cry, k_clear = MARCO_CLASSES.index("crystal"), MARCO_CLASSES.index("clear")
    arg = probs.argmax(1)
    crystal = probs[:, k_cry] >= threshold if threshold is not None else arg == k_cry
    return {"argmax": arg, "interesting": crystal, "crystal_call": crystal,
            "clear_call": probs[:, k_clear] >= 0.5}


def _chunks(seq, n=_CHUNK):
    for i in range(0, len(seq), n):
        yield seq[i:i + n]


def _upload(engine, run_id: int, model: str, version: str, threshold, docs: list[dict],
            report: RunReport, now) -> tuple[int, int]:
    """Stage 5a, one transaction: insert the new scores and failures, close the run record."""
    ok = [(r, d["inspection_id"]) for d in docs for r in d["results"] if "probs" in r]
    bad = [(r, d["inspection_id"]) for d in docs for r in d["results"] if "probs" not in r]
    with session_scope(engine, write=True) as s:
        classes = scheme_classes(s)
        ids = [r["image_id"] for r, _ in ok] + [r["image_id"] for r, _ in bad]
        done = set()
        for chunk in _chunks(ids):
            done.update(s.scalars(select(S.Score.image_id).where(
                S.Score.image_id.in_(chunk), S.Score.scorer_kind == S.ScorerKind.machine,
                S.Score.scorer == model, S.Score.model_version == version)))
            done.update(s.scalars(select(S.ImageFailure.image_id).where(
                S.ImageFailure.image_id.in_(chunk), S.ImageFailure.scorer == model,
                S.ImageFailure.model_version == version)))
        rows = []
        for r, _ in ok:
            if r["image_id"] in done:
                continue
            p = r["probs"]
            cls = MARCO_CLASSES[int(np.argmax(p))]
            rows.append({"image_id": r["image_id"], "scorer_kind": S.ScorerKind.machine,
                         "scorer": model, "model_version": version, "class_id": classes[cls].id,
                         "probabilities": {c: round(float(v), 6) for c, v in zip(MARCO_CLASSES, p)},
                         "scored_at": now})
        fails = [{"image_id": r["image_id"], "scorer": model, "model_version": version,
                  "reason": r["error"][:2000], "failed_at": now, "run_id": run_id}
                 for r, _ in bad if r["image_id"] not in done]
        if rows:
            s.execute(sa.insert(S.Score), rows)
        if fails:
            s.execute(sa.insert(S.ImageFailure), fails)
        s.execute(sa.update(S.PipelineRun).where(S.PipelineRun.id == run_id).values(
            finished_at=S.now_utc(), status="done", inspections=report.inspections,
            images_scored=len(rows), images_failed=len(fails), threshold=threshold))
    return len(rows), len(ok) + len(bad) - len(rows) - len(fails)


def _archived_keys(path: Path) -> set[str]:
    if not path.is_file():
        return set()
    with open(path, newline="") as fh:
        return {row.get("checkpoint", "") for row in csv.DictReader(fh)}


def append_archive(path: str | Path, run_id: int, docs: list[dict], threshold, now, *,
                   check_existing: bool = True) -> int:
    """Stage 5b: append the probabilities of ``docs`` to the CSV archive (never rewritten).

    Each checkpoint's rows go in one ``write`` followed by fsync. With ``check_existing``,
    checkpoints whose key is already in the archive (a run killed after archiving) are skipped;
    the run asks for that (a read of the whole archive) only when it recovered checkpoints.
    Returns rows written.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    have = _archived_keys(path) if check_existing else set()
    new = not path.is_file() or path.stat().st_size == 0
    written = 0
    fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
    try:
        if new:
            os.write(fd, (",".join(ARCHIVE_COLUMNS) + "\n").encode())
        for d in docs:
            if d["key"] in have:
                continue
            ok = [r for r in d["results"] if "probs" in r]
            if not ok:
                continue
            pp = postprocess(np.array([r["probs"] for r in ok]), threshold)
            buf = io.StringIO()
            w = csv.writer(buf, lineterminator="\n")
            for i, r in enumerate(ok):
                w.writerow([d["key"], run_id, r["image_id"], d["inspection_id"], r["uri"], d["model"],
                            d["model_version"], now.isoformat(timespec="seconds"),
                            MARCO_CLASSES[pp["argmax"][i]], *[f"{v:.6f}" for v in r["probs"]],
                            int(pp["interesting"][i]), int(pp["crystal_call"][i]),
                            int(pp["clear_call"][i])])
            os.write(fd, buf.getvalue().encode())
            written += len(ok)
        os.fsync(fd)
    finally:
        os.close(fd)
    return written


# ----------------------------------------------------------------------------- the run
def _open_cluster(config: PipelineConfig):
    from dask.distributed import Client, LocalCluster

    if config.cluster == "slurm":
        try:
            from dask_jobqueue import SLURMCluster
        except ImportError:
            raise ParameterError("--cluster slurm needs dask-jobqueue: pip install dask-jobqueue") from None
        opts = {"cores": 1, "memory": "4GB", "processes": 1, **config.cluster_options}
        cluster = SLURMCluster(**opts)
        cluster.scale(jobs=max(1, config.workers))
    else:
        cluster = LocalCluster(n_workers=config.workers, threads_per_worker=1, processes=True,
                               dashboard_address=None, silence_logs=logging.ERROR)
    return cluster, Client(cluster)


def _process(jobs: list[InspectionJob], spec: ModelSpec, config: PipelineConfig, fetch_dir: Path,
             on_result) -> None:
    """Run stages 2-3 over ``jobs``, calling ``on_result(doc)`` (client side) as each finishes."""
    kw = {"batch": config.batch, "max_connections": config.max_connections,
          "copy_local": config.copy_local}
    if config.workers <= 1 and config.cluster == "local":
        for job in jobs:
            try:
                on_result(score_inspection(job, spec, str(fetch_dir), **kw))
            except XtalscreenError:
                raise
            except Exception as e:  # a bug or crash on one inspection must not stop the others
                on_result({"error": f"{type(e).__name__}: {e}", "label": job.label})
        return
    from dask.distributed import as_completed

    cluster, client = _open_cluster(config)
    try:
        futs = {client.submit(score_inspection, job, spec, str(fetch_dir), single_thread=True,
                              pure=False, **kw): job for job in jobs}
        for fut in as_completed(futs):
            try:
                on_result(fut.result())
            except XtalscreenError:
                raise
            except Exception as e:  # a worker crash on one inspection: skip it, retried next run
                on_result({"error": f"{type(e).__name__}: {e}", "label": futs[fut].label})
    finally:
        client.close()
        cluster.close()


def _retrying(fn, *, retries: int, wait: float, what: str):
    for attempt in range(retries + 1):
        try:
            return fn()
        except (exc.OperationalError, exc.InterfaceError) as e:
            reason = str(getattr(e, "orig", e) or e).strip().splitlines()[0]
            if attempt == retries:
                raise PipelineError(f"the database failed during {what} after {retries + 1} "
                                    f"attempt(s): {reason}") from e
            log.warning("database error during %s (attempt %d of %d): %s; retrying in %.1f s",
                        what, attempt + 1, retries + 1, reason, wait * 2 ** attempt)
            time.sleep(wait * 2 ** attempt)


def run_pipeline(db, config: PipelineConfig | None = None, *,
                 notifier: Notifier | None = None) -> RunReport:
    """Score every pending image once (stages 1-5, see the module docstring).

    Parameters
    ----------
    db : str, Path, URL or Engine
        The drop database (an engine is not disposed here).
    config : PipelineConfig
        Model, batch size, workers, scratch folder, archive file, notifier URL, ...
    notifier : Notifier, optional
        Overrides ``config.notify``.

    Returns
    -------
    RunReport

    Raises
    ------
    ParameterError
        Bad settings, or a model whose classes are not the MARCO scheme (before any work).
    LockHeld
        Another run holds the lock.
    PipelineError
        The database failed during the upload (after retries); nothing was written and the
        checkpoints are kept for the next run.
    """
    config = config or PipelineConfig()
    config.validate()
    notifier = notifier or make_notifier(config.notify)
    t_start = time.perf_counter()
    clf = config.model.build()  # checks the classes against the scheme before any work
    model, version, threshold = clf.name, clf.version, clf.threshold
    if str(config.model.model) == "demo":
        log.warning("using the DEMONSTRATION drop model (trained on rendered drops only); its "
                    "scores mean nothing for real drop images; give --model for real use")
    own = not isinstance(db, sa.engine.Engine)
    engine = connect(db, must_exist=True) if own else db
    report = RunReport(model=model, model_version=version, threshold=threshold)
    scratch = Path(config.scratch)
    ck_dir, fetch_dir = scratch / "checkpoints", scratch / "fetch"
    try:
        require_schema(engine)
        with RunLock(engine):
            with session_scope(engine, write=True) as s:
                run = S.PipelineRun(model=model, model_version=version, host=socket.gethostname(),
                                    pid=os.getpid(), status="running", inspections=0,
                                    images_scored=0, images_failed=0, threshold=threshold)
                s.add(run)
                s.flush()
                report.run_id = run.id
            log.info("run %s: model %s version %s (interesting: p_crystal >= %s), database %s",
                     report.run_id, model, version, threshold, describe(engine))
            # Stage 1: what is left from killed runs, then what is pending.
            t0 = time.perf_counter()
            recovered = read_checkpoints(ck_dir, model, version)
            docs = [d for _, d in recovered]
            paths = [p for p, _ in recovered]
            report.recovered = len(docs)
            jobs = find_pending(engine, model, version, limit=config.limit,
                                exclude={d["inspection_id"] for d in docs})
            report.seconds["find"] = time.perf_counter() - t0
            log.info("stage 1 find: %d inspection(s) pending (%d image(s)), %d recovered from "
                     "checkpoints", len(jobs), sum(len(j.images) for j in jobs), len(docs))

            # Stages 2-3 on the workers; each result is checkpointed the moment it arrives.
            def on_result(doc: dict) -> None:
                if "error" in doc:
                    log.error("inspection %s could not be processed: %s", doc["label"], doc["error"])
                    report.inspections_failed.append((doc["label"], doc["error"]))
                    return
                path, written = write_checkpoint(ck_dir, model, version, doc)
                paths.append(path)
                docs.append(written)
                for k, v in doc["seconds"].items():
                    report.seconds[k] += v
                nfail = sum("probs" not in r for r in doc["results"])
                log.info("stage 2-3 %s: %d image(s) classified, %d failed, checkpointed",
                         doc["label"], len(doc["results"]) - nfail, nfail)
                _fault("checkpoint")

            if jobs:
                _process(jobs, config.model, config, fetch_dir, on_result)
            report.inspections = len(docs)

            # Stage 4: post-process (for the report; the archive repeats it per row).
            for d in docs:
                ok = [r for r in d["results"] if "probs" in r]
                for r in d["results"]:
                    if "probs" not in r:
                        report.failed.append((r["uri"], r["error"]))
                if ok:
                    pp = postprocess(np.array([r["probs"] for r in ok]), threshold)
                    report.classes.update(MARCO_CLASSES[k] for k in pp["argmax"])
                    report.interesting.extend(r["uri"] for r, f in zip(ok, pp["interesting"]) if f)
            for uri, reason in report.failed:
                log.warning("failed image %s: %s", uri, reason)

            # Stage 5: one transaction for everything, then archive, then clean up.
            now = S.now_utc()
            t0 = time.perf_counter()
            try:
                inserted, already = _retrying(
                    lambda: _upload(engine, report.run_id, model, version, threshold, docs,
                                    report, now),
                    retries=config.retries, wait=config.retry_wait, what="the upload")
            except PipelineError as e:
                msg = (f"{e}; nothing was written; {len(paths)} checkpoint(s) kept in {ck_dir} "
                       "for the next run")
                _mark_failed(engine, report.run_id, msg)
                notifier.send(f"xtalscreen drops run {report.run_id} FAILED", msg)
                raise PipelineError(msg) from e
            report.seconds["database"] = time.perf_counter() - t0
            report.scored = sum(len([r for r in d["results"] if "probs" in r]) for d in docs)
            report.already_scored = already
            log.info("stage 5 upload: %d score(s) and %d failure(s) in one transaction "
                     "(%d already present) in %.2f s", inserted, len(report.failed), already,
                     report.seconds["database"])
            _fault("upload")
            if config.archive:
                t0 = time.perf_counter()
                n = append_archive(config.archive, report.run_id, docs, threshold, now,
                                   check_existing=report.recovered > 0)
                report.seconds["archive"] = time.perf_counter() - t0
                log.info("stage 5 archive: %d row(s) appended to %s", n, config.archive)
                _fault("archive")
            for p in paths:
                p.unlink(missing_ok=True)
            for d in docs:
                if d.get("fetch_dir"):
                    shutil.rmtree(d["fetch_dir"], ignore_errors=True)
            _fault("cleanup")
        report.seconds["total"] = time.perf_counter() - t_start
        log.info(report.summary())
        if report.images or report.inspections_failed:
            text = report.summary()
            if report.failed:
                text += "\nfailed images:\n" + "\n".join(f"  {u}: {r}" for u, r in report.failed[:50])
            notifier.send(f"xtalscreen drops run {report.run_id}", text)
        return report
    finally:
        if own:
            engine.dispose()


def _mark_failed(engine, run_id, message: str) -> None:
    try:
        with engine.begin() as conn:
            conn.execute(sa.update(S.PipelineRun).where(S.PipelineRun.id == run_id).values(
                status="failed", finished_at=S.now_utc(), message=message[:4000]))
    except exc.SQLAlchemyError:  # the database is down: the run row stays "running"
        log.debug("could not mark run %s failed", run_id)


def run_every(db, config: PipelineConfig, every_s: float, *, max_runs: int | None = None,
              notifier: Notifier | None = None) -> int:
    """Run the pipeline every ``every_s`` seconds (``--every``); returns runs done (for tests)."""
    from xtalscreen.drops.lock import LockHeld

    if every_s <= 0:
        raise ParameterError(f"--every must be > 0, got {every_s!r} s")
    done = 0
    while max_runs is None or done < max_runs:
        t0 = time.monotonic()
        try:
            run_pipeline(db, config, notifier=notifier)
        except (LockHeld, PipelineError, InputError) as e:
            log.error("run skipped: %s", e)
        done += 1
        if max_runs is not None and done >= max_runs:
            break
        time.sleep(max(0.0, every_s - (time.monotonic() - t0)))
    return done


def parse_every(text: str) -> float:
    """``"1h"``, ``"30m"``, ``"90s"``, ``"2d"`` or seconds -> seconds."""
    m = re.fullmatch(r"\s*(\d+(?:\.\d+)?)\s*([smhd]?)\s*", str(text))
    if not m:
        raise ParameterError(f"--every must look like 30m, 1h, 90s or 2d, got {text!r}")
    return float(m.group(1)) * {"": 1, "s": 1, "m": 60, "h": 3600, "d": 86400}[m.group(2)]


# ----------------------------------------------------------------------------- no database
def score_images(paths: list[str], spec: ModelSpec | None = None, *, batch: int = 32,
                 max_connections: int = MAX_CONNECTIONS, scratch: str | Path | None = None):
    """Score image files or URLs without a database (``xtalscreen drops score``).

    Returns ``(classifier, rows)``; each row is a dict with ``image``, ``class`` (or ``error``),
    ``p_<class>`` for the 4 classes and ``interesting``.
    """
    import tempfile

    spec = spec or ModelSpec()
    clf = _classifier(spec)
    with tempfile.TemporaryDirectory(dir=scratch) as tmp:
        job = InspectionJob(0, "images", list(enumerate(paths)))
        doc = score_inspection(job, spec, tmp, batch=batch, max_connections=max_connections)
    rows = []
    for r in sorted(doc["results"], key=lambda r: r["image_id"]):
        if "probs" not in r:
            rows.append({"image": r["uri"], "error": r["error"]})
            continue
        pp = postprocess(np.array([r["probs"]]), clf.threshold)
        row = {"image": r["uri"], "class": MARCO_CLASSES[int(pp["argmax"][0])]}
        row.update({f"p_{c}": round(v, 4) for c, v in zip(MARCO_CLASSES, r["probs"])})
        row["interesting"] = bool(pp["interesting"][0])
        rows.append(row)
    return clf, rows


# ----------------------------------------------------------------------------- demo
def demo(out_dir: str | Path) -> None:
    """``make demo``: render a plate, init a fresh SQLite database, import, run once, summarise."""
    from xtalscreen.drops.db import init_db
    from xtalscreen.drops.importer import import_source
    from xtalscreen.drops.render import render_plates

    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    t0 = time.perf_counter()
    rep = render_plates(out / "plates", plates=1, seed=0, size=256, progress=False)
    dbfile = out / "drops-demo.sqlite"
    if dbfile.exists():
        dbfile.unlink()
    init_db(dbfile)
    import_source(dbfile, out / "plates")
    cfg = PipelineConfig(scratch=out / "scratch", archive=out / "scores-archive.csv")
    run = run_pipeline(dbfile, cfg)
    print(f"drop pipeline demo (demonstration model, rendered drops; not for real images): "
          f"{rep.images} images rendered and scored in {time.perf_counter() - t0:.1f} s "
          f"(pipeline {run.seconds['total']:.1f} s)")
    print("  classes: " + ", ".join(f"{run.classes.get(c, 0)} {c}" for c in MARCO_CLASSES)
          + f" (rendered truth: " + ", ".join(f"{n} {c}" for c, n in rep.counts.items()) + ")")
    print(f"  interesting drops (p_crystal >= {run.threshold:.2f}): {len(run.interesting)}; "
          f"failed: {len(run.failed)}")
    print(f"  database: {dbfile}\n  archive: {cfg.archive}")
