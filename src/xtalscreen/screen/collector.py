"""Collecting: one node aggregates the results, writes the outputs and reports progress.

The engine calls a :class:`Collector` in this order: :meth:`~Collector.start` once;
:meth:`~Collector.add` once per frame, in reading order, with the raw frame when it is kept
(for ``hits.h5``); :meth:`~Collector.bad` once per skipped file/frame/message;
:meth:`~Collector.finish` once at the end (also after an error, to close files).

:class:`FileCollector` writes into ``out``:

``results.csv``  ``file, frame, p_hit, p_maybe, p_miss, decision[, n_spots], flags``; flushed
                 after every batch, so an interrupted run leaves a valid partial CSV;
``hits.lst``     CrystFEL list of the kept frames: ``path //N`` for frames of multi-frame files
                 (HDF5 runs), the plain path for single-image files;
``hits.h5``      the kept frames themselves, written as they come by
                 :func:`xtalscreen.io.write_hdf5_run` (bitshuffle-LZ4). One run file holds one
                 detector shape: kept frames of further shapes go to ``hits_2.h5``, ``hits_3.h5``
                 ... (listed in the summary). No kept frame: no ``hits.h5``;
``bad.txt``      one line per skipped item.

With worker processes the kept frames do not come back to the collector: each worker writes
them, compressed, to its own part files in ``out/.hits_parts/`` and the engine hands the parts
over in reading order (:meth:`FileCollector.add_part`); :meth:`~FileCollector.finish` joins
them into ``hits.h5`` by copying the compressed chunks (:func:`merge_parts`, no decompression),
so the file is the same as with one process.

It prints a live hit rate on stderr (every ``live_every`` seconds) and warns once per file about
a missing beam centre or a detector far from what the model was trained on.
"""

from __future__ import annotations

import csv
import os
import queue
import shutil
import sys
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Protocol

from xtalscreen.errors import InputError

__all__ = ["Collector", "FileCollector", "Summary", "merge_parts"]


@dataclass
class Summary:
    """What a screening run did.

    Attributes
    ----------
    frames : int
        Frames screened (including frames decided ``bad``).
    hits : int
        Kept frames (decision hit or maybe).
    bad_frames : int
        Frames decided ``bad`` (e.g. all masked).
    bad_items : list of str
        Skipped files/frames/messages, one line each.
    seconds : float
        Wall-clock time of the run.
    timings : dict
        Seconds per stage (read, preprocess, infer, spots, write), summed over workers.
    decisions : dict
        Count per decision.
    outputs : dict
        Paths written (results, hits_lst, hits_h5 list).
    warnings : list of str
    """

    frames: int = 0
    hits: int = 0
    bad_frames: int = 0
    bad_items: list = field(default_factory=list)
    seconds: float = 0.0
    timings: dict = field(default_factory=dict)
    decisions: dict = field(default_factory=dict)
    outputs: dict = field(default_factory=dict)
    warnings: list = field(default_factory=list)

    @property
    def hit_rate(self) -> float:
        """Kept frames / frames with a decision other than ``bad``."""
        good = self.frames - self.bad_frames
        return self.hits / good if good else 0.0

    @property
    def frames_per_s(self) -> float:
        return self.frames / self.seconds if self.seconds > 0 else 0.0

    def line(self) -> str:
        return (f"{self.frames} frames, {self.hits} hits ({100 * self.hit_rate:.1f} %), "
                f"{self.frames_per_s:.1f} frames/s, {self.bad_frames} bad frames, "
                f"{len(self.bad_items)} bad items skipped")


class Collector(Protocol):
    """The collecting layer (module docstring: call order)."""

    def start(self, *, total: int | None) -> None: ...

    def add(self, result, frame=None) -> None: ...

    def part_dir(self) -> str:
        """Folder for worker part files of the kept frames (created; removed by :meth:`finish`)."""
        ...

    def add_part(self, shape, path, n: int) -> None:
        """A worker wrote ``n`` kept frames of ``shape`` to the part file ``path``.

        Call after :meth:`add` of the results of the same work unit, parts in reading order.
        """
        ...

    def bad(self, line: str) -> None: ...

    def finish(self) -> Summary: ...


def _pipeline(ds) -> tuple:
    """The dataset's filter pipeline (ids and parameters), to tell raw chunks apart."""
    pl = ds.id.get_create_plist()
    return tuple((f[0], tuple(f[2])) for f in (pl.get_filter(i) for i in range(pl.get_nfilters())))


def _raw_copy_ok(a, b) -> bool:
    """Whether compressed chunks of ``b`` can be copied as they are into ``a``."""
    return (a.dtype == b.dtype and a.chunks == b.chunks and a.chunks is not None
            and a.chunks[0] == 1 and _pipeline(a) == _pipeline(b))


def _append_run(dst, src, cache: dict | None = None) -> None:
    """Append the frames of run file ``src`` to run file ``dst`` (open h5py Files, same layout).

    Data (and per-frame mask) chunks are copied compressed with direct chunk I/O; per-frame
    columns are concatenated; a constant mask becomes per-frame when the two files differ.
    """
    import numpy as np

    from xtalscreen.io.writers import _filter

    d_ds, s_ds = dst["/entry/data/data"], src["/entry/data/data"]
    n0, k = d_ds.shape[0], s_ds.shape[0]
    if d_ds.shape[1:] != s_ds.shape[1:]:
        raise InputError(f"part of shape {s_ds.shape[1:]} cannot join a run of shape "
                         f"{d_ds.shape[1:]}", path=src.filename)
    zeros = (0,) * (d_ds.ndim - 1)
    d_ds.resize(n0 + k, axis=0)
    direct = _raw_copy_ok(d_ds, s_ds)
    for j in range(k):
        if direct:
            fmask, chunk = s_ds.id.read_direct_chunk((j,) + zeros)
            d_ds.id.write_direct_chunk((n0 + j,) + zeros, chunk, fmask)
        else:
            d_ds[n0 + j] = s_ds[j]
    # mask: constant (H, W) or per frame (N, H, W)
    g = dst["/entry/data"]
    d_m, s_m = g["mask"], src["/entry/data/mask"]
    per_frame = d_m.ndim == d_ds.ndim
    cache = {} if cache is None else cache
    if not per_frame and "mask" not in cache:
        cache["mask"] = d_m[()]  # the run's constant mask, read once per merge
    if not per_frame and s_m.ndim == d_m.ndim and np.array_equal(cache["mask"], s_m[()]):
        pass  # both constant and equal: nothing to add
    else:
        if not per_frame:  # the run's constant mask becomes per frame
            first = cache.pop("mask")
            attrs = dict(d_m.attrs)
            del g["mask"]
            d_m = g.create_dataset("mask", shape=(n0,) + first.shape, maxshape=(None,) + first.shape,
                                   dtype=np.uint8, chunks=(1,) + first.shape,
                                   **_filter("bitshuffle-lz4"))
            for kk, v in attrs.items():
                d_m.attrs[kk] = v
            for j in range(n0):
                d_m[j] = first
        d_m.resize(n0 + k, axis=0)
        if s_m.ndim == d_m.ndim:
            same = _raw_copy_ok(d_m, s_m)
            for j in range(k):
                if same:
                    fmask, chunk = s_m.id.read_direct_chunk((j,) + zeros)
                    d_m.id.write_direct_chunk((n0 + j,) + zeros, chunk, fmask)
                else:
                    d_m[n0 + j] = s_m[j]
        else:
            m = s_m[()]
            for j in range(k):
                d_m[n0 + j] = m
    # per-frame columns: every growable 1-D dataset of length n0
    cols = []

    def visit(name, obj):
        if (hasattr(obj, "shape") and obj.ndim == 1 and obj.maxshape[0] is None
                and obj.shape[0] == n0 and name in src):
            cols.append(name)

    dst.visititems(visit)
    for name in cols:
        c = dst[name]
        c.resize(n0 + k, axis=0)
        c[n0:] = src[name][()]


def merge_parts(parts, path) -> int:
    """Join HDF5 run part files (:func:`xtalscreen.io.write_hdf5_run` layout) into one run file.

    Parameters
    ----------
    parts : sequence of path
        Part files of one frame shape, in the order their frames go into ``path``. They are
        consumed (the first one is moved, the others are deleted).
    path : path
        Output run file (written to ``path + ".part"``, then renamed).

    Returns
    -------
    int
        Frames in ``path``.
    """
    import h5py

    parts = [os.fspath(x) for x in parts]
    if not parts:
        raise InputError("no part files to merge", path=os.fspath(path))
    tmp = os.fspath(path) + ".part"
    os.replace(parts[0], tmp)
    try:
        with h5py.File(tmp, "a") as dst:
            cache: dict = {}
            for q in parts[1:]:
                with h5py.File(q, "r") as src:
                    _append_run(dst, src, cache)
            n = int(dst["/entry/data/data"].shape[0])
        os.replace(tmp, path)
    finally:
        if os.path.exists(tmp):
            os.remove(tmp)
    for q in parts[1:]:
        if os.path.exists(q):
            os.remove(q)
    return n


class _RunWriter:
    """Push-style wrapper of :func:`write_hdf5_run` (a writer thread pulls from a queue)."""

    _END = object()

    def __init__(self, path: Path) -> None:
        self.path = path
        self.error: BaseException | None = None
        self._q: queue.Queue = queue.Queue(maxsize=16)
        self._t = threading.Thread(target=self._run, daemon=True)
        self._t.start()

    def _frames(self):
        while True:
            f = self._q.get()
            if f is self._END:
                return
            yield f

    def _run(self) -> None:
        from xtalscreen.io.writers import write_hdf5_run

        try:
            write_hdf5_run(self._frames(), self.path, overwrite=True)
        except BaseException as exc:  # handed to the main thread in close()
            self.error = exc
            while self._q.get() is not self._END:  # drain so put() never blocks
                pass

    def put(self, frame) -> None:
        self._q.put(frame)

    def close(self) -> None:
        self._q.put(self._END)
        self._t.join()
        if self.error is not None:
            raise self.error


class FileCollector:
    """Write results.csv / hits.lst / hits.h5 / bad.txt into ``out`` (module docstring).

    Parameters
    ----------
    out : path
        Output folder (created).
    spots : bool, keyword-only
        Add the ``n_spots`` column.
    write_hits : bool, keyword-only
        Write ``hits.h5``.
    live : bool or None, keyword-only
        Print the live hit rate on stderr (None: only when stderr is a terminal).
    live_every : float, keyword-only
        Seconds between live lines.
    trained_on : dict or None, keyword-only
        ``{"angular_pixel": [lo, hi]}`` (pixel size / distance, rad) of the training detectors;
        a frame far outside (factor 2) is warned about once per file.
    echo : callable, keyword-only
        Where live lines and warnings go (default: stderr).
    """

    def __init__(self, out, *, spots: bool = False, write_hits: bool = True,
                 live: bool | None = None, live_every: float = 2.0, trained_on: dict | None = None,
                 echo: Callable[[str], Any] | None = None) -> None:
        self.out = Path(out)
        try:
            self.out.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise InputError(f"cannot create the output folder: {exc}", path=str(self.out)) from None
        self.spots = bool(spots)
        self.write_hits = bool(write_hits)
        self.live = sys.stderr.isatty() if live is None else bool(live)
        self.live_every = float(live_every)
        self.trained_on = trained_on or {}
        self.echo = echo or (lambda s: print(s, file=sys.stderr, flush=True))
        self.summary = Summary(outputs={"results": str(self.out / "results.csv"),
                                        "hits_lst": str(self.out / "hits.lst"), "hits_h5": [],
                                        "bad": str(self.out / "bad.txt")})
        self._writers: dict[tuple, _RunWriter] = {}
        self._parts: dict[tuple, list] = {}  # shape -> part files from worker processes
        self._outputs: dict[tuple, Path] = {}  # shape -> hits.h5 / hits_N.h5
        self._warned: set = set()
        self._t0 = time.perf_counter()
        self._last_live = self._t0
        self._total = None
        self._write_s = 0.0
        self._bad = open(self.out / "bad.txt", "w")  # sources report bad items from the start

    # ------------------------------------------------------------------ protocol
    def start(self, *, total: int | None = None) -> None:
        self._total = total
        self._t0 = self._last_live = time.perf_counter()
        self._csv_fh = open(self.out / "results.csv", "w", newline="")
        cols = ["file", "frame", "p_hit", "p_maybe", "p_miss", "decision"]
        if self.spots:
            cols.append("n_spots")
        cols.append("flags")
        self._csv = csv.writer(self._csv_fh)
        self._csv.writerow(cols)
        self._csv_fh.flush()
        self._lst = open(self.out / "hits.lst", "w")

    def add(self, result, frame=None) -> None:
        t0 = time.perf_counter()
        s = self.summary
        s.frames += 1
        s.decisions[result.decision] = s.decisions.get(result.decision, 0) + 1
        self._check(result)
        if result.decision == "bad":
            s.bad_frames += 1
            probs = ["", "", ""]
        else:
            probs = [f"{result.p_hit:.5f}", f"{result.p_maybe:.5f}", f"{result.p_miss:.5f}"]
        row = [result.file, result.frame, *probs, result.decision]
        if self.spots:
            row.append("" if result.n_spots is None else result.n_spots)
        row.append(";".join(result.flags))
        self._csv.writerow(row)
        if result.kept:
            s.hits += 1
            self._lst.write(f"{result.file} //{result.frame}\n" if result.multi else f"{result.file}\n")
            if self.write_hits and frame is not None:
                self._writer(frame).put(frame)
        self._write_s += time.perf_counter() - t0
        self._tick()

    def part_dir(self) -> str:
        """Folder for worker part files of the kept frames (created; removed by :meth:`finish`)."""
        d = self.out / ".hits_parts"
        if d.exists():
            shutil.rmtree(d)
        d.mkdir(parents=True)
        return str(d)

    def add_part(self, shape, path, n: int) -> None:
        """A worker wrote ``n`` kept frames of ``shape`` to the part file ``path``.

        Call after :meth:`add` of the results of the same work unit, parts in reading order.
        """
        if self.write_hits:
            self._output(tuple(shape))
            self._parts.setdefault(tuple(shape), []).append(str(path))

    def bad(self, line: str) -> None:
        self.summary.bad_items.append(str(line))
        self._bad.write(f"{line}\n")
        self._bad.flush()
        self.echo(f"skipped {line}")

    def flush(self) -> None:
        """Push what was written to the OS (called by the engine after every batch)."""
        t0 = time.perf_counter()
        self._csv_fh.flush()
        self._lst.flush()
        self._write_s += time.perf_counter() - t0

    def finish(self) -> Summary:
        t0 = time.perf_counter()
        errors = []
        for fh in ("_csv_fh", "_lst", "_bad"):
            if hasattr(self, fh):
                getattr(self, fh).close()
        for w in self._writers.values():
            try:
                w.close()
            except Exception as exc:  # noqa: BLE001 - reported below, never swallowed
                errors.append(f"{w.path}: {exc}")
        for shape, parts in self._parts.items():
            try:
                merge_parts(parts, self._outputs[shape])
            except Exception as exc:  # noqa: BLE001 - reported below, never swallowed
                errors.append(f"{self._outputs[shape]}: {exc}")
        self._parts.clear()
        if (self.out / ".hits_parts").exists():
            shutil.rmtree(self.out / ".hits_parts", ignore_errors=True)
        self._write_s += time.perf_counter() - t0
        s = self.summary
        s.seconds = time.perf_counter() - self._t0
        s.timings["write"] = s.timings.get("write", 0.0) + self._write_s
        if errors:
            raise InputError("could not write the hit frames: " + "; ".join(errors))
        return s

    # ------------------------------------------------------------------ helpers
    def _output(self, key: tuple) -> Path:
        path = self._outputs.get(key)
        if path is None:
            n = len(self._outputs)
            path = self._outputs[key] = self.out / ("hits.h5" if n == 0 else f"hits_{n + 1}.h5")
            self.summary.outputs["hits_h5"].append(str(path))
        return path

    def _writer(self, frame) -> _RunWriter:
        key = tuple(frame.data.shape)
        w = self._writers.get(key)
        if w is None:
            w = self._writers[key] = _RunWriter(self._output(key))
        return w

    def _warn_once(self, key, msg: str) -> None:
        if key not in self._warned:
            self._warned.add(key)
            self.summary.warnings.append(msg)
            self.echo(f"warning: {msg}")

    def _check(self, r) -> None:
        if "no_beam_center" in r.flags:
            self._warn_once(("bc", r.file), f"{r.file}: no beam centre in the file or its geometry; "
                            "cropping around the image centre (pass --beam-center FS SS to set it)")
        lo_hi = self.trained_on.get("angular_pixel")
        if lo_hi and r.pixel_size and r.distance:
            a = r.pixel_size / r.distance
            if not (lo_hi[0] / 2 <= a <= lo_hi[1] * 2):
                self._warn_once(("geom", r.file), (
                    f"{r.file}: pixel size / distance = {a:.2e} rad, far outside the "
                    f"{lo_hi[0]:.1e}-{lo_hi[1]:.1e} rad the model was trained on; its decisions "
                    "may be unreliable"))

    def _tick(self) -> None:
        now = time.perf_counter()
        if not self.live or now - self._last_live < self.live_every:
            return
        self._last_live = now
        s = self.summary
        dt = max(now - self._t0, 1e-9)
        tot = f"/{self._total}" if self._total else ""
        self.echo(f"screen: {s.frames}{tot} frames, {s.hits} hits ({100 * s.hit_rate:.1f} %), "
                  f"{s.frames / dt:.1f} frames/s, {len(s.bad_items) + s.bad_frames} bad")
