"""Spot finding over files, collected in input order by one writer.

With one worker, frames are read (``xtalscreen.io.open_frames``) and searched in this process.
With several (:func:`run_spots` ``workers > 1``), the main process only lists the frames (file
headers) and sends ``(file, frame indices)`` jobs of a few frames each; every worker reads its
own frames, finds the spots and sends back the spot tables, so no image crosses a process
boundary and the readers scale with the workers.

Outputs of :func:`run_spots` in ``out_dir``:

- ``frames.csv`` — one row per frame: file, frame, n_spots, decision, gain/rings info;
- ``spots.csv`` — one row per spot: file, frame and the :class:`~xtalscreen.spots.SpotTable`
  fields;
- ``peaks.h5`` — CXI-style peak arrays under ``/entry_1/result_1``: ``nPeaks`` (N,),
  ``peakXPosRaw``, ``peakYPosRaw``, ``peakTotalIntensity`` (N, max_peaks), zero-padded, plus
  ``source_file`` and ``source_frame`` (N,) saying which frame each row is. Raw positions follow
  the Cheetah/CrystFEL CXI convention: the centre of pixel ``i`` is at ``i`` (our continuous
  coordinate minus 0.5); for 3-D (panels, H, W) data the slabs are stacked along ss, so
  ``peakYPosRaw = slab·H + ss − 0.5``. Use with CrystFEL ``--peaks=cxi`` after copying the
  arrays into the data file, or read them as they are.
- ``hits.lst`` — a CrystFEL list file of the hits: ``path //N`` for frames of multi-frame files
  (HDF5/CXI/NeXus), the plain path for single-image files.

Bad files and frames are reported (one line each) and skipped; the summary counts them.
"""

from __future__ import annotations

import csv
import dataclasses
import os
import time
from collections import deque
from collections.abc import Callable, Iterable, Iterator
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from xtalscreen.errors import ParameterError, XtalscreenError
from xtalscreen.spots.find import find_spots, make_params
from xtalscreen.spots.hitrules import HIT, SpotCountRule
from xtalscreen.spots.table import FIELDS, SpotTable

MULTI_FRAME_FORMATS = ("hdf5", "cxi", "eiger", "idh5", "nexus", "npz")  # "cbf-multi" is one multi-panel frame per file


@dataclass
class FrameResult:
    """What one frame gave: its spots and the rule's decision (or the error that stopped it)."""

    source: str
    index: int
    n_spots: int = 0
    decision: str | None = None
    spots: SpotTable | None = None
    shape: tuple[int, ...] = ()
    format: str = ""
    error: str | None = None
    seconds: float = 0.0
    panel_slab: tuple | None = None   # slab (axis 0 of 3-D data) of each geometry panel


@dataclass
class RunSummary:
    """Counts of a batch run (``as_dict`` for ``--json``)."""

    frames: int = 0
    bad: int = 0
    hits: int = 0
    spots_in_hits: int = 0
    decisions: dict = field(default_factory=dict)
    seconds: float = 0.0
    outputs: dict = field(default_factory=dict)
    errors: list = field(default_factory=list)

    @property
    def hit_rate(self) -> float:
        return self.hits / self.frames if self.frames else 0.0

    @property
    def spots_per_hit(self) -> float:
        return self.spots_in_hits / self.hits if self.hits else 0.0

    def as_dict(self) -> dict:
        d = dataclasses.asdict(self)
        d.update(hit_rate=round(self.hit_rate, 6), spots_per_hit=round(self.spots_per_hit, 3),
                 frames_per_second=round(self.frames / self.seconds, 3) if self.seconds else None)
        return d

    def lines(self) -> list[str]:
        fps = self.frames / self.seconds if self.seconds > 0 else float("nan")
        out = [f"frames: {self.frames} good, {self.bad} bad (skipped)",
               f"hits: {self.hits} ({100 * self.hit_rate:.1f} %), "
               f"{self.spots_per_hit:.1f} spots per hit",
               f"time: {self.seconds:.2f} s ({fps:.1f} frames/s)"]
        if self.decisions and set(self.decisions) - {"hit", "miss"}:
            out.append("classes: " + ", ".join(f"{k}={v}" for k, v in sorted(self.decisions.items())))
        for k, v in self.outputs.items():
            out.append(f"{k}: {v}")
        return out


# ---------------------------------------------------------------------------------------------
def _strip_frame(frame):
    """The frame without cached geometry maps (cheaper to send to a worker)."""
    g = frame.geometry
    if g is not None and getattr(g, "_cache", None):
        g = dataclasses.replace(g, _cache={})
        frame = frame.replace(geometry=g)
    return frame


def _work(frame, algorithm: str, params: dict, filters: dict, keep_spots: bool):
    t0 = time.perf_counter()
    try:
        table = find_spots(frame, algorithm=algorithm, **filters, **params)
    except XtalscreenError as exc:
        return None, str(exc), time.perf_counter() - t0
    except (ValueError, FloatingPointError, MemoryError) as exc:
        return None, f"{type(exc).__name__}: {exc}", time.perf_counter() - t0
    except Exception as exc:  # noqa: BLE001 - one odd frame must not stop a batch: reported, counted
        return None, f"internal error ({type(exc).__name__}: {exc}); please report it", \
            time.perf_counter() - t0
    return (table if keep_spots else len(table)), None, time.perf_counter() - t0


def iter_frames(paths, *, on_bad: Callable[[str], None], **open_kw) -> Iterator:
    """Frames of ``paths`` through ``xtalscreen.io.open_frames``; unreadable items go to ``on_bad``."""
    from xtalscreen.io import open_frames

    stream = open_frames(paths, on_error="skip", errors=lambda e: on_bad(str(e)), **open_kw)
    yield from stream


def process_frames(frames: Iterable, *, algorithm: str = "dispersion", params: dict | None = None,
                   filters: dict | None = None, rule=None, workers: int = 1,
                   keep_spots: bool = True) -> Iterator[FrameResult]:
    """Find spots in every frame and apply ``rule``; results come back in input order.

    Parameters
    ----------
    frames : iterable of Frame
    algorithm, params : as :func:`~xtalscreen.spots.find_spots`
    filters : dict, optional
        ``d_min``, ``d_max``, ``ice_rings`` for :func:`find_spots`.
    rule : hit rule with ``decide(n) -> str | None``; default ``SpotCountRule()``.
    workers : int
        Worker processes (1: in this process).
    keep_spots : bool
        Return the spot tables (else counts only, less to send back).
    """
    params = dict(params or {})
    filters = dict(filters or {})
    make_params(algorithm, **params)  # validate before starting workers
    rule = rule or SpotCountRule()
    if isinstance(workers, bool) or not isinstance(workers, int) or workers < 1:
        raise ParameterError(f"workers must be an integer >= 1, got {workers!r}")

    if workers == 1:
        for frame in frames:
            yield _result_of(frame, _work(frame, algorithm, params, filters, keep_spots), rule)
        return
    with ProcessPoolExecutor(max_workers=workers) as pool:
        pending: deque = deque()
        for frame in frames:
            light = _strip_frame(frame)
            pending.append((frame, pool.submit(_work, light, algorithm, params, filters, keep_spots)))
            while len(pending) >= 2 * workers:
                f, fut = pending.popleft()
                yield _result_of(f, fut.result(), rule)
        while pending:
            f, fut = pending.popleft()
            yield _result_of(f, fut.result(), rule)


# ---------------------------------------------------------------------------------------------
#: Frames per job sent to a worker (consecutive frames of one file: one file open per job).
JOB_FRAMES = 4

_WORKER_OPEN_KW: dict = {}


def _init_worker(open_kw: dict) -> None:
    import logging

    from xtalscreen.io.memory import keep_freed_memory

    global _WORKER_OPEN_KW
    keep_freed_memory()
    _WORKER_OPEN_KW = dict(open_kw)
    # bad frames go back to the main process, which reports each once; no worker log lines
    logging.getLogger("xtalscreen.io").setLevel(logging.ERROR)


def _result_of(frame, out, rule) -> FrameResult:
    res, err, sec = out
    r = FrameResult(source=frame.source, index=frame.index, shape=tuple(frame.shape),
                    format=frame.format, seconds=sec)
    g = frame.geometry
    if g is not None and frame.data.ndim == 3:
        r.panel_slab = tuple(int(p.slab) for p in g.panels)
    if err is not None:
        r.error = err
        return r
    table = res if isinstance(res, SpotTable) else None
    r.n_spots = len(table) if table is not None else int(res)
    r.spots = table
    r.decision = rule.decide(r.n_spots) if rule is not None else None
    return r


def _work_job(path: str, indices: list[int], algorithm: str, params: dict, filters: dict,
              keep_spots: bool) -> list:
    """Worker side of a job: read ``indices`` of ``path`` and find spots in each.

    Returns a list, in order, of FrameResult (decision left to the main process) or, for a
    frame that could not be read, the one-line reason (str).
    """
    from xtalscreen.io import open_frames

    out: list = []
    errors: list = []
    try:
        stream = open_frames(path, frames=list(indices), on_error="skip", errors=errors,
                             **_WORKER_OPEN_KW)
        for frame in stream:
            for e in errors:
                out.append(str(e))
            errors.clear()
            out.append(_result_of(frame, _work(frame, algorithm, params, filters, keep_spots),
                                  None))
    except XtalscreenError as exc:
        errors.append(str(exc))
    out.extend(str(e) for e in errors)
    return out


def list_jobs(paths, *, on_bad: Callable[[str], None], open_kw: dict | None = None,
              frames_per_job: int = JOB_FRAMES) -> list[tuple[str, list[int]]]:
    """``(file, frame indices)`` jobs for every frame of ``paths`` (headers only are read).

    Files that cannot be listed go to ``on_bad`` (one line each); out-of-range frame requests
    are left in the jobs, where the worker reports them.
    """
    from xtalscreen.io import open_file, open_frames
    from xtalscreen.io.readers import _selection

    open_kw = dict(open_kw or {})
    stream = open_frames(paths, on_error="skip", errors=lambda e: on_bad(str(e)),
                         dataset=open_kw.get("dataset"))
    jobs: list[tuple[str, list[int]]] = []
    for item in stream.items:
        try:
            with open_file(item.path, dataset=open_kw.get("dataset"), auto_mask=False) as r:
                n = len(r)
        except XtalscreenError as exc:
            on_bad(str(exc) if item.path in str(exc) else f"{item.path}: {exc}")
            continue
        sel = item.frames if item.frames is not None else open_kw.get("frames")
        idx = list(_selection(sel, n))
        for k in range(0, len(idx), frames_per_job):
            jobs.append((item.path, idx[k:k + frames_per_job]))
    return jobs


def process_files(paths, *, algorithm: str = "dispersion", params: dict | None = None,
                  filters: dict | None = None, rule=None, workers: int = 2,
                  keep_spots: bool = True, open_kw: dict | None = None,
                  on_bad: Callable[[str], None] | None = None,
                  frames_per_job: int = JOB_FRAMES) -> Iterator[FrameResult]:
    """Like :func:`process_frames` on the frames of ``paths``, but the workers read the frames.

    Parameters
    ----------
    paths : files, directories, globs or list files (as ``xtalscreen.io.open_frames``)
    open_kw : dict, optional
        Options of ``open_frames`` (mask, geometry, dark, ...), sent once to every worker.
    on_bad : callable, optional
        Receives one line per file or frame that could not be read.
    frames_per_job : int
        Consecutive frames of one file per job.

    Yields
    ------
    FrameResult, in input order (frames that could not be read are left out and reported).
    """
    params = dict(params or {})
    filters = dict(filters or {})
    make_params(algorithm, **params)
    rule = rule or SpotCountRule()
    on_bad = on_bad or (lambda s: None)
    if isinstance(workers, bool) or not isinstance(workers, int) or workers < 1:
        raise ParameterError(f"workers must be an integer >= 1, got {workers!r}")
    open_kw = {k: v for k, v in (open_kw or {}).items() if k != "frames"}
    jobs = list_jobs(paths, on_bad=on_bad, open_kw=open_kw, frames_per_job=frames_per_job)
    with ProcessPoolExecutor(max_workers=workers, initializer=_init_worker,
                             initargs=(open_kw,)) as pool:
        pending: deque = deque()

        def drain(fut):
            for r in fut.result():
                if isinstance(r, str):
                    on_bad(r)
                    continue
                if r.error is None:
                    r.decision = rule.decide(r.n_spots)
                yield r

        for path, idx in jobs:
            pending.append(pool.submit(_work_job, path, idx, algorithm, params, filters,
                                       keep_spots))
            while len(pending) >= 3 * workers:
                yield from drain(pending.popleft())
        while pending:
            yield from drain(pending.popleft())


# ---------------------------------------------------------------------------------------------
class SpotWriter:
    """Writes frames.csv, spots.csv, peaks.h5 and hits.lst as results arrive."""

    def __init__(self, out_dir: str | os.PathLike, *, max_peaks: int = 2048, overwrite: bool = True):
        self.dir = Path(out_dir)
        self.dir.mkdir(parents=True, exist_ok=True)
        self.max_peaks = int(max_peaks)
        self._frames_fh = open(self.dir / "frames.csv", "w", newline="")
        self._frames = csv.writer(self._frames_fh)
        self._frames.writerow(["file", "frame", "n_spots", "decision"])
        self._spots_fh = open(self.dir / "spots.csv", "w", newline="")
        self._spots = csv.writer(self._spots_fh)
        self._spots.writerow(["file", "frame", *FIELDS])
        self._hits_fh = open(self.dir / "hits.lst", "w")
        self._rows: list[tuple] = []

    def add(self, r: FrameResult) -> None:
        self._frames.writerow([r.source, r.index, r.n_spots, r.decision or ""])
        if r.spots is not None:
            r.spots.to_csv(self._spots_fh, extra={"file": r.source, "frame": r.index}, header=False)
        if r.decision == HIT:
            multi = r.format in MULTI_FRAME_FORMATS or r.index > 0
            self._hits_fh.write(f"{r.source} //{r.index}\n" if multi else f"{r.source}\n")
        self._rows.append((r.source, r.index, r.shape, r.spots, r.panel_slab))

    def close(self) -> dict[str, str]:
        for fh in (self._frames_fh, self._spots_fh, self._hits_fh):
            fh.close()
        self._write_cxi()
        return {name: str(self.dir / name)
                for name in ("frames.csv", "spots.csv", "peaks.h5", "hits.lst")}

    def _write_cxi(self) -> None:
        import h5py

        n = len(self._rows)
        mp = self.max_peaks
        npk = np.zeros(n, dtype=np.int32)
        xs = np.zeros((n, mp), dtype=np.float32)
        ys = np.zeros((n, mp), dtype=np.float32)
        it = np.zeros((n, mp), dtype=np.float32)
        for k, (_src, _idx, shape, spots, panel_slab) in enumerate(self._rows):
            if spots is None or len(spots) == 0:
                continue
            rec = spots.records
            if len(rec) > mp:  # keep the strongest
                rec = rec[np.argsort(-rec["intensity"], kind="stable")[:mp]]
            m = len(rec)
            npk[k] = m
            h = shape[-2] if len(shape) >= 2 else 0
            xs[k, :m] = rec["fs"] - 0.5
            if len(shape) == 3:
                slab = (np.asarray(panel_slab)[rec["panel"]] if panel_slab is not None
                        else rec["panel"])
                ys[k, :m] = rec["ss"] - 0.5 + slab * h
            else:
                ys[k, :m] = rec["ss"] - 0.5
            it[k, :m] = rec["intensity"]
        with h5py.File(self.dir / "peaks.h5", "w") as f:
            g = f.require_group("entry_1/result_1")
            g.create_dataset("nPeaks", data=npk)
            g.create_dataset("peakXPosRaw", data=xs)
            g.create_dataset("peakYPosRaw", data=ys)
            g.create_dataset("peakTotalIntensity", data=it)
            g.create_dataset("source_file", data=np.array([r[0] for r in self._rows], dtype=object),
                             dtype=h5py.string_dtype())
            g.create_dataset("source_frame", data=np.array([r[1] for r in self._rows], dtype=np.int64))


# ---------------------------------------------------------------------------------------------
def run_spots(paths, *, algorithm: str = "dispersion", params: dict | None = None,
              filters: dict | None = None, rule=None, out_dir: str | os.PathLike | None = None,
              workers: int = 1, max_peaks: int = 2048, progress: bool | None = None,
              report: Callable[[str], None] | None = None, open_kw: dict | None = None,
              on_result: Callable[[FrameResult], None] | None = None) -> RunSummary:
    """Find spots in every frame of ``paths``, decide hits, write outputs, return the summary.

    ``report`` receives one line per bad file or frame (default: nothing); ``on_result`` sees
    every good :class:`FrameResult` (the ``label`` command uses it).
    """
    from xtalscreen.io.memory import keep_freed_memory
    from xtalscreen.progress import track

    keep_freed_memory()  # reuse frame buffers: no page faults per frame (see xtalscreen.io.memory)

    report = report or (lambda s: None)
    summary = RunSummary()
    rule = rule or SpotCountRule()

    def bad(msg: str) -> None:
        summary.bad += 1
        summary.errors.append(msg)
        report(msg)

    writer = SpotWriter(out_dir, max_peaks=max_peaks) if out_dir is not None else None
    t0 = time.perf_counter()
    if isinstance(workers, int) and not isinstance(workers, bool) and workers > 1:
        results = process_files(paths, algorithm=algorithm, params=params, filters=filters,
                                 rule=rule, workers=workers, keep_spots=writer is not None,
                                 open_kw=open_kw, on_bad=bad)
    else:
        frames = iter_frames(paths, on_bad=bad, **(open_kw or {}))
        results = process_frames(frames, algorithm=algorithm, params=params, filters=filters,
                                 rule=rule, workers=workers, keep_spots=writer is not None)
    try:
        for r in track(results, description="finding spots", enabled=progress):
            if r.error is not None:
                bad(f"{r.source} (frame {r.index}): {r.error}")
                continue
            summary.frames += 1
            key = r.decision if r.decision is not None else "dropped"
            summary.decisions[key] = summary.decisions.get(key, 0) + 1
            if r.decision == HIT:
                summary.hits += 1
                summary.spots_in_hits += r.n_spots
            if writer is not None:
                writer.add(r)
            if on_result is not None:
                on_result(r)
    finally:
        if writer is not None:
            summary.outputs = writer.close()
    summary.seconds = time.perf_counter() - t0
    return summary
