"""Collecting: one node aggregates the results, writes the outputs and reports progress.

The engine calls a :class:`Collector` in this order: :meth:`~Collector.start` once;
:meth:`~Collector.add` once per frame, in reading order, with the frame when it is kept
(for ``hits.h5``: a :class:`~xtalscreen.io.frame.Frame`, or an
:class:`~xtalscreen.io.writers.EncodedFrame` from a worker process); :meth:`~Collector.bad`
once per skipped file/frame/message; :meth:`~Collector.finish` once at the end (also after an
error, to close files).

:class:`FileCollector` writes into ``out``:

``results.csv``  ``file, frame, p_hit, p_maybe, p_miss, decision[, class][, n_spots], flags``
                 (``class``: the model's own most probable class, for a model whose classes
                 are not Hit/Maybe/Miss, e.g. DiffraNet's for ``--model diffranet5``); flushed
                 after every batch, so an interrupted run leaves a valid partial CSV. ``flags``
                 (``;``-separated): ``no_beam_center``, ``no_geometry``, ``saturated`` (each
                 also warned once per file), ``all_masked`` (decision ``bad``, counted in the
                 summary's bad frames);
``hits.lst``     CrystFEL list of the kept frames: ``path //N`` for frames of multi-frame files
                 (HDF5 runs), the plain path for single-image files;
``hits.h5``      the kept frames themselves, written as they come by
                 :func:`xtalscreen.io.write_hdf5_run` (bitshuffle-LZ4). One run file holds one
                 detector shape: kept frames of further shapes go to ``hits_2.h5``, ``hits_3.h5``
                 ... (listed in the summary). No kept frame: no ``hits.h5``;
``bad.txt``      one line per skipped item.

With worker processes the kept frames do not come back as pixel arrays: each worker compresses
them where it read them (:class:`~xtalscreen.io.writers.ChunkEncoder`; a frame read from an
HDF5 run of the same layout keeps its compressed source chunk) and sends
:class:`~xtalscreen.io.writers.EncodedFrame` records, which the collector writes into
``hits.h5`` with direct chunk writes as they arrive, in reading order. The file is the same as
with one process, and it is written during the run, not joined at the end.

It prints a live hit rate on stderr (every ``live_every`` seconds) and warns once per file about
a missing beam centre or a detector far from what the model was trained on.
"""

from __future__ import annotations

import csv
import queue
import sys
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Protocol

from xtalscreen.errors import InputError
from xtalscreen.screen.workers import SATURATED_FRACTION, SourceChunks, own_classes

__all__ = ["Collector", "FileCollector", "Summary"]


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
    operating_points : dict
        The model's per-detector operating points as the run used them:
        ``{detector_key: {"threshold": T, "temperature": t}}`` (empty for a model without any).
    threshold : float or None
        The one threshold given for all detectors, or None (operating points, else 0.5).
    geometries : dict
        CrystFEL files found beside the data (no ``geometry`` given) -> number of data files
        each serves; a file is used for the frames whose array shape it describes exactly.
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
    operating_points: dict = field(default_factory=dict)
    threshold: float | None = None
    geometries: dict = field(default_factory=dict)

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

    def bad(self, line: str) -> None: ...

    def finish(self) -> Summary: ...


class _RunWriter:
    """Push-style wrapper of :func:`write_hdf5_run` (a writer thread pulls from a queue)."""

    _END = object()

    def __init__(self, path: Path, raw_chunk=None) -> None:
        self.path = path
        self.raw_chunk = raw_chunk
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
            write_hdf5_run(self._frames(), self.path, overwrite=True, raw_chunk=self.raw_chunk)
        except BaseException as exc:  # handed to the main thread in close()
            self.error = exc
            while self._q.get() is not self._END:  # drain so put() never blocks
                pass

    def put(self, frame) -> None:
        self._q.put(frame)

    def close(self) -> None:
        self._q.put(self._END)
        self._t.join()
        if self.raw_chunk is not None:
            self.raw_chunk.close()
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
        a frame far outside (factor 2) is warned about once per file. ``"unreliable"``: a list
        of ``{"match": [names], "why": text}``, detectors on which the model was measured to
        fail; a frame whose detector name holds one of the names (any case) is warned about
        once per file, with the reason. ``"only"``: ``{"match": [names], "why": text}`` for a
        model made for one detector (``--model rayonix``): a frame whose detector name holds
        none of the names is warned about once per file.
    echo : callable, keyword-only
        Where live lines and warnings go (default: stderr).
    source_chunks : bool, keyword-only
        A kept :class:`~xtalscreen.io.frame.Frame` read from an HDF5 run of the ``hits.h5``
        layout is written as its compressed source chunk
        (:class:`~xtalscreen.screen.workers.SourceChunks`) instead of being compressed again.
        Pass False when the reader changed the pixel values (dark/gain corrections).
    classes : sequence of str, keyword-only
        The model's classes; when they are not ``hit, maybe, miss`` a ``class`` column holds
        each frame's most probable one (:attr:`FrameResult.label`).
    """

    def __init__(self, out, *, spots: bool = False, write_hits: bool = True,
                 live: bool | None = None, live_every: float = 2.0, trained_on: dict | None = None,
                 echo: Callable[[str], Any] | None = None, source_chunks: bool = False,
                 classes=None) -> None:
        self.out = Path(out)
        self.source_chunks = bool(source_chunks)
        try:
            self.out.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise InputError(f"cannot create the output folder: {exc}", path=str(self.out)) from None
        self.spots = bool(spots)
        self.own_classes = classes is not None and own_classes(classes)
        self.write_hits = bool(write_hits)
        self.live = sys.stderr.isatty() if live is None else bool(live)
        self.live_every = float(live_every)
        self.trained_on = trained_on or {}
        self.echo = echo or (lambda s: print(s, file=sys.stderr, flush=True))
        self.summary = Summary(outputs={"results": str(self.out / "results.csv"),
                                        "hits_lst": str(self.out / "hits.lst"), "hits_h5": [],
                                        "bad": str(self.out / "bad.txt")})
        self._writers: dict[tuple, _RunWriter] = {}
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
        if self.own_classes:
            cols.append("class")
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
        if self.own_classes:
            row.append(result.label or "")
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
        key = tuple(frame.shape)
        w = self._writers.get(key)
        if w is None:
            w = self._writers[key] = _RunWriter(self._output(key),
                                                SourceChunks() if self.source_chunks else None)
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
        if "no_geometry" in r.flags:
            self._warn_once(("ng", r.file), (
                f"{r.file}: multi-panel data ({r.shape[0]} panels) without a detector geometry: "
                "the panels are stacked side by side, so the beam-centred crop is not the "
                "detector's and the decisions are unreliable; pass --geometry FILE.geom"))
        if "saturated" in r.flags:
            self._warn_once(("sat", r.file), (
                f"{r.file}: frame {r.frame} has over {100 * SATURATED_FRACTION:g} % of its pixels "
                "saturated (flagged 'saturated' in results.csv, with any other such frames of this file); spots "
                "cannot be seen where the detector is flooded, so check the beam and attenuation"))
        lo_hi = self.trained_on.get("angular_pixel")
        if lo_hi and r.pixel_size and r.distance:
            a = r.pixel_size / r.distance
            if not (lo_hi[0] / 2 <= a <= lo_hi[1] * 2):
                self._warn_once(("geom", r.file), (
                    f"{r.file}: pixel size / distance = {a:.2e} rad, far outside the "
                    f"{lo_hi[0]:.1e}-{lo_hi[1]:.1e} rad the model was trained on; its decisions "
                    "may be unreliable"))
        name = (r.detector or "").lower()
        only = self.trained_on.get("only")
        if only and name and not any(m.lower() in name for m in only.get("match", ())):
            self._warn_once(("only", r.file), f"{r.file}: detector {r.detector!r}: "
                            f"{only.get('why', 'this model was made for another detector')}")
        for entry in (self.trained_on.get("unreliable") or []) if name else []:
            if any(m.lower() in name for m in entry.get("match", ())):
                self._warn_once(("unreliable", r.file), f"{r.file}: detector {r.detector!r}: "
                                f"{entry.get('why', 'the model was measured to fail on this detector')}")
                break

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
