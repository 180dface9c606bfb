"""Processing: per-frame work (preprocess, batched inference, optional spot finding).

:class:`FrameProcessor` turns a batch of frames into :class:`FrameResult` records. It runs in
the engine's process (``workers=1``) or in each of ``N`` worker processes (``workers=N``, see
:func:`run_pool`), where each process reads its own ``(file, frames)`` chunks, so only the small
result records (and the raw data of hit frames, for ``hits.h5``) travel between processes.
Results come back in reading order either way, so ``--workers 2`` writes the same files as 1.

Decisions (paper 001, Table 3: Hit and Maybe are added, then compared with Miss):

- ``p_hit + p_maybe >= threshold`` -> ``"hit"`` or ``"maybe"``, whichever is more probable;
  these frames are *kept* (``hits.lst``, ``hits.h5``);
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

__all__ = ["FrameResult", "FrameProcessor", "NoSpots", "SpotCounter", "class_weights", "run_pool"]

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
    multi: bool = False  # the frame is one event of a multi-frame file (``//N`` in hits.lst)
    shape: tuple = ()
    pixel_size: float | None = None
    distance: float | None = None

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


class FrameProcessor:
    """Preprocess + batched inference (+ spots) for batches of frames.

    Parameters
    ----------
    model : torch.nn.Module
        In eval mode, CPU.
    preprocess : PreprocessConfig
    classes : sequence of str
        The model's output classes (see :func:`class_weights`).
    threshold : float, keyword-only
        Minimum ``p_hit + p_maybe`` for a kept frame.
    spots : callable, keyword-only
        ``spots(frame) -> int or None`` (:class:`NoSpots`, :class:`SpotCounter`).
    """

    def __init__(self, model, preprocess, classes, *, threshold: float = 0.5, spots=None) -> None:
        from xtalscreen.screen.prepare import FastPreprocess

        self.model = model
        self.prepare = FastPreprocess(preprocess)
        self.weights = class_weights(classes)
        self.threshold = float(threshold)
        self.spots = spots or NoSpots()
        self.timings = Timings()

    def process(self, frames: list) -> list[FrameResult]:
        """Results of ``frames`` (same order). Every frame gives one result."""
        import torch

        t0 = time.perf_counter()
        prepared = [self.prepare(f) for f in frames]
        t1 = time.perf_counter()
        good = [i for i, p in enumerate(prepared) if p.n_valid > 0]
        probs = np.full((len(frames), 3), np.nan, np.float32)
        if good:
            x = torch.from_numpy(np.stack([prepared[i].x for i in good]))
            with torch.inference_mode():
                p = torch.softmax(self.model(x).float(), dim=1).numpy()
            probs[good] = p @ self.weights
        t2 = time.perf_counter()
        out = []
        for f, pp, pr in zip(frames, prepared, probs):
            flags = ["no_beam_center"] if pp.no_beam_center else []
            if pp.n_valid == 0:
                decision = "bad"
                flags.append("all_masked")
            elif pr[0] + pr[1] >= self.threshold:
                decision = "hit" if pr[0] >= pr[1] else "maybe"
            else:
                decision = "miss"
            out.append(FrameResult(
                file=str(f.source), frame=int(f.index), p_hit=float(pr[0]), p_maybe=float(pr[1]),
                p_miss=float(pr[2]), decision=decision,
                n_spots=None if decision == "bad" else self.spots(f), flags=tuple(flags),
                multi=f.format in MULTI_FORMATS or f.index > 0,
                shape=tuple(f.data.shape), pixel_size=f.pixel_size, distance=f.distance))
        t3 = time.perf_counter()
        self.timings.preprocess += t1 - t0
        self.timings.infer += t2 - t1
        self.timings.spots += t3 - t2
        return out


# --------------------------------------------------------------------------- worker processes
_STATE: dict[str, Any] = {}


def _init_worker(model_path: str, threshold: float, spot_params, read_options: dict,
                 return_kept: bool = True) -> None:
    import torch

    from xtalscreen.train import load_model

    torch.set_num_threads(1)
    model, pp, meta = load_model(model_path)
    spots = NoSpots() if spot_params is None else SpotCounter(**spot_params)
    _STATE["proc"] = FrameProcessor(model, pp, meta["classes"], threshold=threshold, spots=spots)
    _STATE["read"] = read_options
    _STATE["return_kept"] = bool(return_kept)


def _work_chunk(task) -> tuple[list, list, dict, dict]:
    """One unit of work in a worker: ``("read", path, indices)`` or ``("frames", frames)``.

    Returns (results, bad item lines, kept frames by position, timings dict).
    """
    from xtalscreen.errors import InputError
    from xtalscreen.io import open_frames

    proc: FrameProcessor = _STATE["proc"]
    proc.timings = Timings()
    bad: list[str] = []
    t0 = time.perf_counter()
    if task[0] == "read":
        _, path, idx = task
        frames = []
        try:
            for f in open_frames(path, frames=idx, on_error="skip",
                                 errors=lambda e: bad.append(str(e)), **_STATE["read"]):
                frames.append(f)
        except InputError as exc:
            if not bad:
                bad.append(str(exc))
    else:
        frames = task[1]
    read_s = time.perf_counter() - t0
    results = proc.process(frames) if frames else []
    # raw data of kept frames travel back only when the collector writes them (hits.h5)
    kept = {i: frames[i] for i, r in enumerate(results) if r.kept} if _STATE["return_kept"] else {}
    tm = proc.timings
    tm.read = read_s
    return results, bad, kept, tm.__dict__


def run_pool(tasks, *, workers: int, model_path: str, threshold: float, spot_params,
             read_options: dict, return_kept: bool = True):
    """Run ``tasks`` on ``workers`` processes; yields ``_work_chunk`` outputs in task order."""
    import multiprocessing as mp

    ctx = mp.get_context("fork" if "fork" in mp.get_all_start_methods() and os.name == "posix"
                         else "spawn")
    with ctx.Pool(workers, initializer=_init_worker,
                  initargs=(model_path, threshold, spot_params, read_options, return_kept)) as pool:
        yield from pool.imap(_work_chunk, tasks, chunksize=1)
