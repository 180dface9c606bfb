"""Processing: per-frame work (preprocess, batched inference, optional spot finding).

:class:`FrameProcessor` turns a batch of frames into :class:`FrameResult` records. It runs in
the engine's process (``workers=1``) or in each of ``N`` worker processes (``workers=N``, see
:func:`run_pool`), where each process reads its own ``(file, frames)`` chunks, so only the small
result records travel between processes: with ``hits.h5`` on, each worker compresses the frames
it keeps (:class:`~xtalscreen.io.writers.ChunkEncoder`; a frame from an HDF5 run of the same
layout keeps its compressed source chunk, :class:`SourceChunks`) and returns them as
:class:`~xtalscreen.io.writers.EncodedFrame` records for the collector to write.
Results come back in reading order either way, so ``--workers 2`` writes the same files as 1.

Decisions (paper 001, Table 3: Hit and Maybe are added, then compared with Miss):

- ``p_hit + p_maybe >= threshold`` -> ``"hit"`` or ``"maybe"``, whichever is more probable;
  these frames are *kept* (``hits.lst``, ``hits.h5``). Without a threshold given, each frame
  uses its detector's :class:`~xtalscreen.evaluate.operating.OperatingPoint` from the model
  file (temperature and threshold, chosen by ``xtalscreen calibrate``; the pooled ``"*"`` point
  for a detector without its own), else 0.5;
- otherwise ``"miss"``;
- ``"bad"`` when the network input has no valid pixel (all-masked frame, or the crop lies off
  the detector): probabilities are left empty and the frame is counted as bad, never as a miss.

Optional steps are pass-through objects, not branches: :class:`NoSpots` counts nothing,
:class:`SpotCounter` runs :func:`xtalscreen.spots.find_spots`.
"""

from __future__ import annotations

import os
import time
from dataclasses import dataclass
from typing import Any

import numpy as np

__all__ = ["FrameResult", "FrameProcessor", "NoSpots", "SpotCounter", "class_weights", "own_classes",
           "run_pool", "encode_kept", "SourceChunks"]

DECISIONS = ("hit", "maybe", "miss", "bad")
#: reader formats whose files hold many frames (CrystFEL lists name them ``path //N``)
MULTI_FORMATS = frozenset({"hdf5", "idh5", "eiger", "cxi", "npz"})


@dataclass
class FrameResult:
    """What screening found for one frame (a row of ``results.csv``)."""

    file: str
    frame: int
    p_hit: float
    p_maybe: float
    p_miss: float
    decision: str
    n_spots: int | None = None
    flags: tuple = ()
    label: str | None = None  # the model's own class (argmax) when it is not Hit/Maybe/Miss
    multi: bool = False  # the frame is one event of a multi-frame file (``//N`` in hits.lst)
    shape: tuple = ()
    pixel_size: float | None = None
    distance: float | None = None
    detector: str = ""  # the frame's detector name (Frame.detector), for the collector's warnings

    @property
    def kept(self) -> bool:
        return self.decision in ("hit", "maybe")


def class_weights(classes) -> np.ndarray:
    """Matrix ``(n_classes, 3)`` mapping model outputs to (hit, maybe, miss) probabilities.

    ``ke``: identity; ``binary`` (hit, miss); ``diffranet`` (good, strong -> hit; weak -> maybe;
    blank, no-crystal -> miss).
    """
    table = {"hit": 0, "maybe": 1, "miss": 2, "good": 0, "strong": 0, "weak": 1, "blank": 2,
             "no-crystal": 2}
    classes = [str(c).lower() for c in classes]
    unknown = [c for c in classes if c not in table]
    if unknown:
        from xtalscreen.errors import ParameterError

        raise ParameterError(f"the model's classes {classes} are not hit-screening classes "
                             f"(unknown {unknown}); give a model trained with --target ke, binary "
                             "or diffranet")
    w = np.zeros((len(classes), 3), np.float32)
    for i, c in enumerate(classes):
        w[i, table[c]] = 1.0
    return w


def own_classes(classes) -> bool:
    """Whether a model's classes are its own (e.g. DiffraNet's), not Hit/Maybe/Miss: then
    ``results.csv`` carries a ``class`` column."""
    return tuple(str(c).lower() for c in classes) != ("hit", "maybe", "miss")


class NoSpots:
    """Spot step switched off: counts nothing."""

    def __call__(self, frame) -> int | None:
        return None


class SpotCounter:
    """Spot step: the number of Bragg spots :func:`xtalscreen.spots.find_spots` finds."""

    def __init__(self, **params: Any) -> None:
        self.params = params

    def __call__(self, frame) -> int | None:
        from xtalscreen.spots import find_spots

        return int(len(find_spots(frame, **self.params)))


@dataclass
class Timings:
    """Seconds spent per stage (summed over frames; per process)."""

    read: float = 0.0
    preprocess: float = 0.0
    infer: float = 0.0
    spots: float = 0.0
    write: float = 0.0

    def add(self, other: "Timings") -> None:
        for k in ("read", "preprocess", "infer", "spots", "write"):
            setattr(self, k, getattr(self, k) + getattr(other, k))


#: keep threshold of a detector without an operating point (the larger of Hit+Maybe and Miss)
DEFAULT_THRESHOLD = 0.5
#: A frame with more than this share of its pixels at the saturation level is flagged
#: ``saturated`` (the decision stands; the frame is worth a look, and usually a veto).
SATURATED_FRACTION = 0.05


def parse_operating_points(points, *, path: str = "") -> dict:
    """``{detector_key: OperatingPoint}`` from a checkpoint's ``operating_points`` (dicts or
    :class:`~xtalscreen.evaluate.operating.OperatingPoint`; None -> empty).

    Raises
    ------
    InputError
        A damaged entry (not a dict, no threshold, a threshold or temperature out of range),
        naming the model file ``path`` and the detector.
    """
    from xtalscreen.errors import InputError, ParameterError
    from xtalscreen.evaluate.operating import OperatingPoint

    if points is None:
        return {}
    if not isinstance(points, dict):
        raise InputError(f"the model's operating_points is a {type(points).__name__}, not a "
                         "{detector: point} table; run xtalscreen calibrate again", path=path)
    out = {}
    for k, v in points.items():
        try:
            out[str(k)] = v if isinstance(v, OperatingPoint) else OperatingPoint.from_dict(v)
        except (ParameterError, TypeError, ValueError) as exc:
            raise InputError(f"the model's operating point for detector {k} is damaged ({exc}); run "
                             "xtalscreen calibrate again", path=path) from None
    return out


class FrameProcessor:
    """Preprocess + batched inference (+ spots) for batches of frames.

    Parameters
    ----------
    model : torch.nn.Module
        In eval mode (moved to ``device`` here, and to channels-last memory on the CPU).
    preprocess : PreprocessConfig
    classes : sequence of str
        The model's output classes (see :func:`class_weights`).
    threshold : float or None, keyword-only
        Minimum ``p_hit + p_maybe`` for a kept frame, for every detector; None: the frame's
        detector's operating point (else the pooled ``"*"`` one), or :data:`DEFAULT_THRESHOLD`
        when the model has neither.
    operating_points : dict, keyword-only
        ``{detector_key: OperatingPoint or dict}`` (a checkpoint's ``operating_points``): the
        temperature applied to the logits of that detector's frames and, when ``threshold`` is
        None, its threshold. Keys are raw data shapes
        (:func:`~xtalscreen.evaluate.operating.detector_key`); a frame whose shape has none gets
        a point of its geometry's sensor layout
        (:func:`~xtalscreen.evaluate.operating.point_key`), else ``"*"``.
    spots : callable, keyword-only
        ``spots(frame) -> int or None`` (:class:`NoSpots`, :class:`SpotCounter`).
    views : int or None, keyword-only
        Test-time views (1, 2, 4 or 8 dihedral orientations, logits averaged;
        :mod:`xtalscreen.preprocess.views`) for every frame; None: those the frame's operating
        point was fitted with, else ``default_views``.
    default_views : int or None, keyword-only
        Views of a frame without an operating point when ``views`` is None: the checkpoint's own
        ``views`` (a head fitted by ``xtalscreen train-head`` records them); None: 1.
    device : str or torch.device, keyword-only
        Where inference runs (``"cpu"``, ``"cuda"``, ``"cuda:1"``; ``"auto"``: CUDA when present).
        Reading and preprocessing stay on the CPU; each batch goes to the device as one
        pinned-memory copy.
    """

    def __init__(self, model, preprocess, classes, *, threshold: float | None = None,
                 spots=None, device="cpu", operating_points: dict | None = None,
                 views: int | None = None, default_views: int | None = None) -> None:
        import torch

        from xtalscreen.preprocess.views import check_views
        from xtalscreen.screen.prepare import FastPreprocess
        from xtalscreen.train.loop import resolve_device

        self.device = resolve_device(device)
        self.model = model.to(self.device).eval()
        if self.device.type == "cpu":
            # NHWC weights: oneDNN's convolutions run ~1.5x faster on CPU (BENCHMARKS.md, screen)
            self.model = self.model.to(memory_format=torch.channels_last)
        self.prepare = FastPreprocess(preprocess)
        self._prepares: dict[tuple, FastPreprocess] = {(): self.prepare}
        self.weights = class_weights(classes)
        self.classes = tuple(str(c) for c in classes)
        self.own_classes = own_classes(self.classes)
        self.threshold = None if threshold is None else float(threshold)
        self.points = parse_operating_points(operating_points)
        self.spots = spots or NoSpots()
        self.views = None if views is None else check_views(views)
        self.default_views = 1 if default_views is None else check_views(default_views)
        self.timings = Timings()

    def prepare_for(self, point=None):
        """The preprocessing of frames served by operating point ``point`` (or a dict of its
        changes): the model's own, with the point's ``preprocess`` changes (one
        :class:`FastPreprocess` kept per set of changes)."""
        from xtalscreen.evaluate.operating import point_preprocess, preprocess_key

        key = preprocess_key(point)
        prep = self._prepares.get(key)
        if prep is None:
            from xtalscreen.screen.prepare import FastPreprocess

            prep = self._prepares[key] = FastPreprocess(point_preprocess(self.prepare.config, point))
        return prep

    def infer(self, frames: list, views=None, prepares=None) -> tuple[list, np.ndarray]:
        """``(prepared, logits)``: the network inputs of ``frames`` and the model's raw outputs
        (rows of frames without a valid pixel are NaN), one inference per input size and number
        of views. ``views``: one count per frame (:func:`~xtalscreen.models.tta.view_logits`),
        or one for all; None: ``self.views`` or 1. ``prepares``: one preprocessing per frame
        (:meth:`prepare_for`); None: the model's own for all."""
        import torch

        from xtalscreen.models.tta import view_logits

        t0 = time.perf_counter()
        if prepares is None:
            prepared = [self.prepare(f) for f in frames]
        else:
            prepared = [p(f) for p, f in zip(prepares, frames)]
        t1 = time.perf_counter()
        if views is None or np.ndim(views) == 0:
            views = [views if views is not None else (self.views or 1)] * len(frames)
        groups: dict[tuple, list[int]] = {}  # one inference per input size (detector) and views
        for i, p in enumerate(prepared):
            if p.n_valid > 0:
                groups.setdefault((p.x.shape, int(views[i])), []).append(i)
        logits = np.full((len(frames), self.weights.shape[0]), np.nan, np.float32)
        for (_, v), good in groups.items():
            x = torch.from_numpy(np.stack([prepared[i].x for i in good]))
            with torch.inference_mode():
                if self.device.type != "cpu":
                    x = x.pin_memory().to(self.device, non_blocking=True)
                logits[good] = view_logits(self.model, x, v).float().cpu().numpy()
        self.timings.preprocess += t1 - t0
        self.timings.infer += time.perf_counter() - t1
        return prepared, logits

    def process(self, frames: list) -> list[FrameResult]:
        """Results of ``frames`` (same order). Every frame gives one result."""
        from xtalscreen.evaluate.operating import hit_maybe_miss, point_for, point_key

        ops = ([point_for(self.points, point_key(self.points, f)) for f in frames] if self.points
               else [None] * len(frames))
        views = [self.views or (self.default_views if op is None else op.views) for op in ops]
        prepared, logits = self.infer(frames, views, [self.prepare_for(op) for op in ops])
        t1 = time.perf_counter()
        temps = np.array([1.0 if op is None else op.temperature for op in ops])
        probs = hit_maybe_miss(logits, self.weights, temps)
        t2 = time.perf_counter()
        out = []
        for f, pp, pr, op, z in zip(frames, prepared, probs, ops, logits):
            flags = ["no_beam_center"] if pp.no_beam_center else []
            if f.data.ndim == 3 and f.data.shape[0] > 1 and f.geometry is None:
                flags.append("no_geometry")  # panels stacked: the crop is not the detector's
            if f.saturated_fraction() > SATURATED_FRACTION:
                flags.append("saturated")  # flooded: spots cannot be told apart there
            thr = self.threshold if self.threshold is not None else (
                DEFAULT_THRESHOLD if op is None else op.threshold)
            if pp.n_valid == 0:
                decision = "bad"
                flags.append("all_masked")
            elif pr[0] + pr[1] >= thr:
                decision = "hit" if pr[0] >= pr[1] else "maybe"
            else:
                decision = "miss"
            out.append(FrameResult(
                file=str(f.source), frame=int(f.index), p_hit=float(pr[0]), p_maybe=float(pr[1]),
                p_miss=float(pr[2]), decision=decision,
                n_spots=None if decision == "bad" else self.spots(f), flags=tuple(flags),
                label=(self.classes[int(np.argmax(z))] if self.own_classes and decision != "bad"
                       else None),
                multi=f.format in MULTI_FORMATS or f.index > 0,
                shape=tuple(f.data.shape), pixel_size=f.pixel_size, distance=f.distance,
                detector=f.detector or ""))
        t3 = time.perf_counter()
        self.timings.infer += t2 - t1
        self.timings.spots += t3 - t2
        return out


# --------------------------------------------------------------------------- worker processes
_STATE: dict[str, Any] = {}


def _init_worker(model_path: str, threshold: float | None, spot_params, read_options: dict,
                 write_hits: bool = False, device: str = "cpu", views: int | None = None) -> None:
    import torch

    from xtalscreen.io.memory import keep_freed_memory
    from xtalscreen.train import load_model

    keep_freed_memory()
    torch.set_num_threads(1)
    key = (model_path, threshold, repr(spot_params), device, views)
    _STATE["read"] = read_options
    _STATE["write_hits"] = write_hits
    built = _STATE.get("built")  # (key, processor), set in one step
    if built is not None and built[0] == key:
        _STATE["proc"] = built[1]  # forked from a parent that built and warmed it: run_pool
        return
    model, pp, meta = load_model(model_path)
    spots = NoSpots() if spot_params is None else SpotCounter(**spot_params)
    proc = FrameProcessor(model, pp, meta["classes"], threshold=threshold, spots=spots,
                          device=device, operating_points=parse_operating_points(
                              meta.get("operating_points"), path=model_path), views=views,
                          default_views=meta.get("views"))
    _STATE["proc"] = proc
    _STATE["built"] = (key, proc)


def _warm_parent(first_task, initargs) -> None:
    """Build the workers' :class:`FrameProcessor` here, before they are forked, and run it on
    the first frame of the first task: the forked workers share its model, its compiled
    kernels and the assembly index maps of that detector (~0.6 s and ~80 MB of page faults per
    worker otherwise, copy-on-write here). Best effort: a frame that cannot be read is left to
    the worker, which reports it."""
    import torch

    from xtalscreen.io import open_frames

    threads = torch.get_num_threads()
    try:
        _init_worker(*initargs)
        proc: FrameProcessor = _STATE["proc"]
        if first_task[0] == "read":
            _, path, idx = first_task
            frame = next(iter(open_frames(path, frames=list(idx)[:1], **_STATE["read"])), None)
        else:
            frame = first_task[1][0] if first_task[1] else None
        if frame is not None:
            proc.prepare(frame)
    except Exception:  # noqa: BLE001 - the workers build their own and report the problem
        _STATE.clear()
    finally:
        torch.set_num_threads(threads)


#: reader options that change the pixel values (the source's raw chunks are then not the data)
_VALUE_OPTIONS = ("dark", "gain", "low_gain_map")


def _raw_copy_ok(a, b) -> bool:
    """Whether compressed chunks of dataset ``b`` are valid, as they are, in dataset ``a``
    (one frame per chunk, same dtype, chunk shape and filter pipeline)."""
    from xtalscreen.io.writers import chunk_layout

    return a.chunks is not None and a.chunks[0] == 1 and chunk_layout(a) == chunk_layout(b)


class SourceChunks:
    """``raw_chunk`` hook of :class:`~xtalscreen.io.writers.ChunkEncoder` (and of
    :func:`~xtalscreen.io.write_hdf5_run`): the source file's own compressed chunk.

    A frame read from an HDF5 run whose data dataset has the layout being written (float32,
    one chunk per frame, the same filter pipeline, e.g. bitshuffle-LZ4 as written by
    :func:`~xtalscreen.io.write_hdf5_run`) is taken as its compressed chunk, so it is neither
    decompressed nor compressed again. Anything else (other formats, dtypes, filters, chunking,
    multi-file or external data, dark/gain corrections) returns None: the frame is encoded.

    :meth:`ref` names that chunk instead of reading it: a worker process sends the name, and the
    process writing ``hits.h5`` reads the chunk from the source file itself, so the compressed
    bytes never cross a pipe (with 2 workers busy on 2 cores, a 3.7 MB CSPAD chunk took
    ~15 ms of the collector's time to receive; BENCHMARKS.md, screen).
    """

    def __init__(self) -> None:
        from xtalscreen.io.writers import OpenFiles

        self._files = OpenFiles()
        self._ok: dict = {}  # (file, dataset, shape, layout) -> whether chunks can be copied

    def _source(self, frame, dataset):
        """The frame's source dataset when its chunks are valid in ``dataset``, else None."""
        from xtalscreen.io.writers import chunk_layout

        meta = frame.meta or {}
        name = meta.get("dataset")
        if (frame.format != "hdf5" or not name or "chunk" in meta or "data_file" in meta
                or not frame.source):
            return None
        try:
            src = self._files.get(str(frame.source))[name]
            key = (frame.source, name, tuple(frame.data.shape), chunk_layout(dataset))
            ok = self._ok.get(key)
            if ok is None:
                ok = self._ok[key] = (src.ndim == frame.data.ndim + 1
                                      and src.shape[1:] == frame.data.shape
                                      and _raw_copy_ok(dataset, src))
            return src if ok and int(frame.index) < src.shape[0] else None
        except (OSError, KeyError, ValueError, TypeError):
            return None  # encode frame.data instead (always correct)

    def __call__(self, frame, dataset):
        src = self._source(frame, dataset)
        if src is None:
            return None
        try:
            return src.id.read_direct_chunk((int(frame.index),) + (0,) * frame.data.ndim)
        except (OSError, KeyError, ValueError, TypeError):
            return None

    def ref(self, frame, dataset):
        """``(file, dataset, frame)`` naming the frame's chunk in its source file, when that
        chunk is valid in ``dataset`` (see :attr:`~xtalscreen.io.writers.EncodedFrame.chunk_ref`),
        else None."""
        src = self._source(frame, dataset)
        # the file that holds the dataset: another one when the frame's file links to it
        return None if src is None else (src.file.filename, src.name, int(frame.index))

    def close(self) -> None:
        self._files.close()


def encode_kept(frames: list, *, raw_chunks: bool = True) -> list:
    """The kept ``frames`` as :class:`~xtalscreen.io.writers.EncodedFrame` records (same order).

    Each frame is compressed here, in the process that read it, as one bitshuffle-LZ4 chunk of
    the ``hits.h5`` layout; with ``raw_chunks`` a frame read from an HDF5 run of that layout is
    taken as its compressed source chunk (:class:`SourceChunks`). Pass False when the reader
    changed the pixel values (dark/gain corrections).
    """
    from xtalscreen.io.writers import ChunkEncoder

    enc = _STATE.get("encoder")
    if enc is None:  # one per process: its in-memory HDF5 file is reused
        enc = _STATE["encoder"] = ChunkEncoder()
    hook = SourceChunks() if raw_chunks else None
    try:
        return [enc.encode(f, raw_chunk=hook) for f in frames]
    finally:
        if hook is not None:
            hook.close()


#: frames a worker holds at once: a work unit of ``batch`` frames is read, inferred and
#: encoded this many at a time, so a worker's memory is ~8 frames (92 MB of CSPAD frames and
#: masks) rather than ``batch`` (368 MB at 32, faulted in page by page by every new worker)
WORKER_FRAMES = 8


def _work_chunk(task) -> tuple[list, list, list, dict]:
    """One unit of work in a worker: ``("read", path, indices)`` or ``("frames", frames)``.

    The frames are read and processed :data:`WORKER_FRAMES` at a time. Returns (results, bad
    item lines, the kept frames as EncodedFrame records (empty unless hits.h5 is written),
    timings dict). The kept frames travel back compressed or as references to their source
    chunks (:func:`encode_kept`), never as pixel arrays.
    """
    from xtalscreen.errors import InputError
    from xtalscreen.io import open_frames

    proc: FrameProcessor = _STATE["proc"]
    proc.timings = Timings()
    bad: list[str] = []

    def groups():
        if task[0] != "read":
            for i in range(0, len(task[1]), WORKER_FRAMES):
                yield task[1][i:i + WORKER_FRAMES]
            return
        _, path, idx = task
        group = []
        try:
            for f in open_frames(path, frames=idx, on_error="skip",
                                 errors=lambda e: bad.append(str(e)), **_STATE["read"]):
                group.append(f)
                if len(group) == WORKER_FRAMES:
                    yield group
                    group = []
        except InputError as exc:  # the file itself (the frames read so far are kept)
            if not bad:
                bad.append(str(exc))
        if group:
            yield group

    raw = task[0] == "read" and not any(_STATE["read"].get(k) is not None for k in _VALUE_OPTIONS)
    results: list = []
    encoded: list = []
    read_s = write_s = 0.0
    it = groups()
    while True:
        t0 = time.perf_counter()
        frames = next(it, None)
        read_s += time.perf_counter() - t0
        if frames is None:
            break
        res = proc.process(frames)
        results.extend(res)
        kept = [f for f, r in zip(frames, res) if r.kept]
        if _STATE["write_hits"] and kept:
            t1 = time.perf_counter()
            encoded.extend(encode_kept(kept, raw_chunks=raw))
            write_s += time.perf_counter() - t1
        del frames, kept
    tm = proc.timings
    tm.read = read_s
    tm.write = write_s
    return results, bad, encoded, tm.__dict__


def run_pool(tasks, *, workers: int, model_path: str, threshold: float | None, spot_params,
             read_options: dict, write_hits: bool = False, device: str = "cpu",
             views: int | None = None):
    """Run ``tasks`` on ``workers`` processes; yields ``_work_chunk`` outputs in task order.

    ``write_hits``: the workers return the kept frames, compressed, for ``hits.h5``.
    ``device``: where each worker runs inference; with a GPU every worker holds its own CUDA
    context, and the workers are started with ``spawn`` (an accelerator cannot be used after
    ``fork``); only CPU inference forks.
    ``views``: test-time views for every frame (None: each operating point's own).
    With ``fork`` the processor is built and warmed on the first frame here first
    (:func:`_warm_parent`), so the workers inherit it.
    """
    import itertools
    import multiprocessing as mp

    from xtalscreen.train.loop import resolve_device

    # an accelerator (CUDA, MPS, ...) cannot be used after fork: spawn, and no warm parent
    cpu = resolve_device(device).type == "cpu"
    fork = cpu and "fork" in mp.get_all_start_methods() and os.name == "posix"
    ctx = mp.get_context("fork" if fork else "spawn")
    initargs = (model_path, threshold, spot_params, read_options, bool(write_hits), str(device), views)
    tasks = iter(tasks)
    first = next(tasks, None)
    if first is None:
        return
    try:
        if fork:
            _warm_parent(first, initargs)
        with ctx.Pool(workers, initializer=_init_worker, initargs=initargs) as pool:
            yield from pool.imap(_work_chunk, itertools.chain([first], tasks), chunksize=1)
    finally:
        _STATE.clear()
