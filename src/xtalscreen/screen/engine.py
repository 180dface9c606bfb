"""Wiring: source -> processing (in-process or N worker processes) -> collector.

:func:`screen` is what ``xtalscreen screen`` runs. With ``workers=1`` everything happens in this
process: frames are read, batched ``batch`` at a time, preprocessed, classified and collected.
With ``workers=N`` a pool of ``N`` processes (one torch thread each) reads its own
``(file, frames)`` chunks of ``batch`` frames and returns result records in order, with the
kept frames as compressed :class:`~xtalscreen.io.writers.EncodedFrame` records that the
collector writes into ``hits.h5`` as they come; the collector stays in this process. A live
source (:class:`~xtalscreen.screen.sources.ZmqSource`) is read here and its batches are handed
to the workers.
"""

from __future__ import annotations

import time
from xtalscreen.errors import InputError, ParameterError
from xtalscreen.screen.collector import FileCollector, Summary
from xtalscreen.screen.sources import FileSource
from xtalscreen.screen.workers import (FrameProcessor, NoSpots, SpotCounter, Timings, class_weights,
                                      parse_operating_points, run_pool)

__all__ = ["screen"]


def _check(workers, batch, threshold) -> tuple[int, int, float | None]:
    for name, v in (("workers", workers), ("batch", batch)):
        if isinstance(v, bool) or int(v) != v or v < 1:
            raise ParameterError(f"{name} must be an integer >= 1, got {v!r}")
    if threshold is None:
        return int(workers), int(batch), None
    try:
        t = float(threshold)
    except (TypeError, ValueError):
        t = float("nan")
    if not 0.0 <= t <= 1.0:
        raise ParameterError(f"threshold must be a probability in [0, 1], got {threshold!r}")
    return int(workers), int(batch), t


def _batches(it, size):
    buf = []
    for x in it:
        buf.append(x)
        if len(buf) == size:
            yield buf
            buf = []
    if buf:
        yield buf


def screen(paths=None, *, out, model="default", workers: int = 1, batch: int = 32,
           spots: bool = False, spot_params: dict | None = None, threshold: float | None = None,
           source=None, write_hits: bool = True, live: bool | None = None,
           live_every: float = 2.0, echo=None, device: str = "cpu", views: int | None = None,
           **read_options) -> Summary:
    """Screen frames with a hit-finding model; write results.csv, hits.lst and hits.h5.

    Parameters
    ----------
    paths : str, path-like or sequence, optional
        Files, folders, globs, list files (anything :func:`xtalscreen.io.open_frames` reads).
    out : path, keyword-only
        Output folder (see :mod:`xtalscreen.screen.collector` for the files).
    model : "default" or path, keyword-only
        The shipped model or a checkpoint from ``xtalscreen train`` (targets ke, binary or
        diffranet).
    workers : int, keyword-only
        Processes doing the reading and the per-frame work (1: this process).
    batch : int, keyword-only
        Frames per inference batch (and per worker work unit).
    spots : bool, keyword-only
        Also count Bragg spots (``n_spots`` column) with :func:`xtalscreen.spots.find_spots`
        (``spot_params`` passed to it).
    threshold : float or None, keyword-only
        Keep a frame when ``p_hit + p_maybe >= threshold`` (0.5: the larger of Hit+Maybe and
        Miss), on every detector. None (default): each frame uses its detector's operating point
        stored in the model file by ``xtalscreen calibrate`` (a temperature for its
        probabilities and a threshold); a detector without one uses the pooled point ``"*"``
        when the file has it, else 0.5. The temperatures apply either way.
    source : FrameSource, keyword-only
        Read from this source instead of ``paths`` (e.g. a :class:`ZmqSource`).
    write_hits : bool, keyword-only
        Write the kept frames to ``hits.h5``.
    live, live_every, echo : keyword-only
        Live hit-rate line on stderr (see :class:`~xtalscreen.screen.collector.FileCollector`).
    device : str, keyword-only
        Where inference runs: ``"cpu"`` (default), ``"cuda"``, ``"cuda:N"`` or ``"auto"``
        (CUDA when present). Reading and preprocessing always run on the CPU workers.
    views : int or None, keyword-only
        Test-time views averaged per frame (1, 2, 4, 8; :mod:`xtalscreen.preprocess.views`), each
        a forward pass, on every detector. None (default): the views each detector's operating
        point was calibrated with; without a point the model file's own ``views`` (a head from
        ``xtalscreen train-head`` records them), else 1. A point's threshold holds for the views
        it was fitted on; other counts shift the probabilities a little.
    **read_options
        For :func:`~xtalscreen.io.open_frames`: ``geometry``, ``mask``, ``beam_center``,
        ``dataset``, ``frames`` ... Without ``geometry``, a CrystFEL file beside the data (as
        ``xtalscreen simulate`` writes it) is used where it fits (``geometry_beside=False``:
        never); the files used are in ``Summary.geometries``.

    Returns
    -------
    Summary
        Frames, hits, hit rate, frames/s, bad items, time per stage.

    Raises
    ------
    InputError
        The model file is missing or not a screening checkpoint (another version or task), or
        no frame at all could be read.
    ParameterError
        Bad arguments.

    Examples
    --------
    >>> s = screen("run_0001.h5", out="screen_out", workers=2)     # doctest: +SKIP
    >>> print(s.line())
    """
    import torch

    from xtalscreen.io.memory import keep_freed_memory
    from xtalscreen.models.pretrained import load_screening_model

    keep_freed_memory()  # reuse frame buffers: no page faults per frame (see xtalscreen.io.memory)

    workers, batch, threshold = _check(workers, batch, threshold)
    from xtalscreen.train.loop import resolve_device

    device = str(resolve_device(device))  # refuses "cuda" without a GPU before any work
    if views is not None:
        from xtalscreen.preprocess.views import check_views

        views = check_views(views)
    if paths is None and source is None:
        raise ParameterError("paths: give files/folders to screen (or a source)")
    net, pp, meta = load_screening_model(model)
    class_weights(meta["classes"])  # refuses non-screening models before any work
    points = parse_operating_points(meta.get("operating_points"), path=meta["path"])
    spot_step = SpotCounter(**(spot_params or {})) if spots else NoSpots()
    from xtalscreen.screen.workers import _VALUE_OPTIONS

    collector = FileCollector(out, spots=spots, write_hits=write_hits, live=live,
                              classes=meta["classes"], live_every=live_every,
                              trained_on=meta["card"].get("trained_on"),
                              echo=echo, source_chunks=source is None and not any(
                                  read_options.get(k) is not None for k in _VALUE_OPTIONS))
    if source is None and read_options.get("geometry") is None:
        read_options.setdefault("geometry_beside", True)
    src = source if source is not None else FileSource(paths, report=collector.bad, **read_options)
    beside = src.geometries() if isinstance(src, FileSource) else {}
    if source is not None and hasattr(source, "report"):
        source.report = collector.bad
    timings = Timings()
    collector.start(total=src.count())
    try:
        if workers == 1:
            threads = torch.get_num_threads()
            proc = FrameProcessor(net, pp, meta["classes"], threshold=threshold, spots=spot_step,
                                  device=device, operating_points=points, views=views,
                                  default_views=meta.get("views"))
            it = iter(src.frames())
            while True:
                t0 = time.perf_counter()
                frames = []
                for f in it:
                    frames.append(f)
                    if len(frames) == batch:
                        break
                timings.read += time.perf_counter() - t0
                if not frames:
                    break
                for f, r in zip(frames, proc.process(frames)):
                    collector.add(r, f if r.kept else None)
                collector.flush()
            timings.add(proc.timings)
            torch.set_num_threads(threads)
        else:
            if isinstance(src, FileSource):
                tasks = (("read", p, idx) for p, idx in src.chunks(batch))
            else:
                tasks = (("frames", b) for b in _batches(src.frames(), batch))
            ro = dict(src.read_options) if isinstance(src, FileSource) else {}
            ro.pop("frames", None)  # the chunks already select the frames
            for results, bad, encoded, tm in run_pool(tasks, workers=workers, model_path=meta["path"],
                                                      threshold=threshold,
                                                      spot_params=(spot_params or {}) if spots else None,
                                                      read_options=ro, write_hits=write_hits,
                                                      device=device, views=views):
                for line in bad:
                    collector.bad(line)
                kept = iter(encoded)  # the kept frames, compressed by the worker, in order
                for r in results:
                    collector.add(r, next(kept, None) if r.kept else None)
                collector.flush()
                timings.add(Timings(**tm))
    finally:
        src.close()
        summary = collector.finish()
    for k in ("read", "preprocess", "infer", "spots"):
        summary.timings[k] = getattr(timings, k)
    summary.timings["write"] = summary.timings.get("write", 0.0) + timings.write  # worker parts
    summary.outputs["model"] = meta["path"]
    summary.geometries = beside
    summary.operating_points = {k: {"threshold": op.threshold if threshold is None else threshold,
                                    "temperature": op.temperature,
                                    "views": op.views if views is None else views,
                                    **({"preprocess": dict(op.preprocess)} if op.preprocess else {})}
                                for k, op in points.items()}
    summary.threshold = threshold
    if summary.frames == 0 and summary.bad_items:
        raise InputError(f"no frame could be read: {len(summary.bad_items)} bad item(s), the first: "
                         f"{summary.bad_items[0]}")
    return summary
