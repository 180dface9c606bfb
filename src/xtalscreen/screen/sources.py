"""Data retrieval: where frames come from (files, HDF5 runs, ZeroMQ streams).

A source is anything with the :class:`FrameSource` shape. The engine calls, in this order:

1. :meth:`FrameSource.count` once, before the first frame (a total for the progress display;
   ``None`` when unknown, e.g. a live stream);
2. :meth:`FrameSource.frames` once, iterating it to the end; each bad item (unreadable file or
   frame, malformed message) is passed to the ``report`` callable given to the source and
   skipped, and the iteration goes on;
3. :meth:`FrameSource.close` once, at the end or on an error.

:class:`FileSource` also exposes :meth:`FileSource.chunks` so that ``--workers N`` processes
read their own share of the files (no frame crosses a process boundary).

ZeroMQ wire format (:class:`ZmqSource`, :func:`send_frame`): one multipart message per frame,
``[header, data]``, ``header`` UTF-8 JSON with ``shape`` and ``dtype`` (numpy string, e.g.
``"<u2"``) and optionally ``source``, ``index``, ``beam_center`` ([fs, ss] px), ``pixel_size``
(m), ``distance`` (m), ``wavelength`` (Å), ``exposure`` (s), ``detector``; ``data`` the raw
C-order bytes. A three-part message ``[header, data, mask]`` adds a uint8 mask (nonzero = bad).
A one-part message whose header has ``"end": true`` ends the stream.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator, Sequence
from typing import Any, Protocol, runtime_checkable

import numpy as np

from xtalscreen.errors import InputError, ParameterError

__all__ = ["FrameSource", "FileSource", "ZmqSource", "send_frame", "send_end", "BadItem"]


class BadItem(str):
    """One line naming a skipped item and why (``path (frame N): reason``)."""


@runtime_checkable
class FrameSource(Protocol):
    """What the engine needs from a data-retrieval layer (module docstring: call order)."""

    def count(self) -> int | None:
        """Frames to expect, or None; called once before iterating."""

    def frames(self) -> Iterator:
        """Yield :class:`~xtalscreen.io.frame.Frame` objects in order; called once."""

    def close(self) -> None:
        """Release files/sockets; called once at the end (also after errors)."""


def _noop(_: str) -> None:
    pass


class FileSource:
    """Frames of files, folders, globs, list files and HDF5 runs via :func:`xtalscreen.io.open_frames`.

    Parameters
    ----------
    paths : str, path-like or sequence of them
    report : callable, keyword-only
        Receives one :class:`BadItem` line per skipped file or frame.
    **read_options
        Passed to :func:`~xtalscreen.io.open_frames` (``geometry``, ``mask``, ``dataset``,
        ``frames``, ``beam_center`` ...); ``on_error`` is always ``"skip"``.
    """

    def __init__(self, paths, *, report: Callable[[str], Any] = _noop, **read_options: Any) -> None:
        from xtalscreen.io import open_frames

        if isinstance(paths, (str, bytes)) or not isinstance(paths, Sequence):
            paths = [paths]
        self.paths = [str(p) for p in paths]
        if not self.paths:
            raise ParameterError("paths: give at least one file, folder, glob or list file")
        self.read_options = dict(read_options)
        self.read_options.pop("on_error", None)
        self.report = report
        self._stream = open_frames(self.paths, on_error="skip", errors=self._on_error,
                                   **self.read_options)

    def geometries(self) -> dict[str, int]:
        """CrystFEL files found beside the data (``geometry_beside=True``) -> number of data
        files each serves (each is used for the frames whose shape it describes exactly)."""
        found: dict[str, int] = {}
        for item in self._stream.items:
            _, g = self._stream.geometry_for(item.path)
            if g:
                found[g] = found.get(g, 0) + 1
        return found

    def _on_error(self, err) -> None:
        self.report(BadItem(str(err)))

    def count(self) -> int | None:
        return self._stream.count()

    def frames(self) -> Iterator:
        try:
            yield from self._stream
        except InputError as exc:  # nothing at all could be read: the items were reported
            if not self._stream.errors:
                raise
            if "no frame could be read" not in str(exc):
                self.report(BadItem(str(exc)))

    def chunks(self, size: int) -> Iterator[tuple[str, list[int]]]:
        """``(path, [frame indices])`` work units of at most ``size`` frames, in reading order.

        Files that cannot be opened and frames that do not exist are reported here.
        """
        from xtalscreen.io.readers import _selection, open_file

        o = self.read_options
        for item in self._stream.items:
            try:
                with open_file(item.path, dataset=o.get("dataset"), auto_mask=False) as r:
                    n = len(r)
            except InputError as exc:
                self.report(BadItem(str(exc)))
                continue
            sel = item.frames if item.frames is not None else o.get("frames")
            idx = []
            for i in _selection(sel, n):
                if 0 <= i < n:
                    idx.append(int(i))
                else:
                    self.report(BadItem(f"{item.path} (frame {i}): frame does not exist: the "
                                        f"file holds {n} frame(s)"))
            for k in range(0, len(idx), size):
                yield item.path, idx[k:k + size]

    def close(self) -> None:
        self._stream.close()


class ZmqSource:
    """Frames received over ZeroMQ (PULL socket) in the wire format of the module docstring.

    Parameters
    ----------
    address : str
        ZeroMQ endpoint, e.g. ``tcp://127.0.0.1:5555`` or ``tcp://*:5555``.
    bind : bool, keyword-only
        Bind the address (the sender connects) instead of connecting to it.
    max_frames : int or None, keyword-only
        Stop after this many good frames.
    timeout : float or None, keyword-only
        Stop when no message arrives for this many seconds (None: wait for ever / an end message).
    report : callable, keyword-only
        Receives one :class:`BadItem` line per malformed message.
    """

    def __init__(self, address: str, *, bind: bool = False, max_frames: int | None = None,
                 timeout: float | None = None, report: Callable[[str], Any] = _noop) -> None:
        try:
            import zmq
        except ImportError:  # pragma: no cover - pyzmq is a dependency
            raise ParameterError("ZeroMQ input needs pyzmq: pip install pyzmq") from None
        if max_frames is not None and (int(max_frames) != max_frames or max_frames < 1):
            raise ParameterError(f"max_frames must be an integer >= 1 or None, got {max_frames!r}")
        if timeout is not None and not timeout > 0:
            raise ParameterError(f"timeout must be > 0 s or None, got {timeout!r}")
        self.address = address
        self.max_frames = max_frames
        self.timeout = timeout
        self.report = report
        self._ctx = zmq.Context.instance()
        self._sock = self._ctx.socket(zmq.PULL)
        self._sock.setsockopt(zmq.LINGER, 0)
        try:
            (self._sock.bind if bind else self._sock.connect)(address)
        except zmq.ZMQError as exc:
            self._sock.close()
            raise InputError(f"cannot {'bind' if bind else 'connect'} ZeroMQ socket: {exc}",
                             path=address) from None

    def count(self) -> int | None:
        return self.max_frames

    def frames(self) -> Iterator:
        import zmq

        n = seq = 0
        poller = zmq.Poller()
        poller.register(self._sock, zmq.POLLIN)
        wait_ms = None if self.timeout is None else int(self.timeout * 1000)
        while self.max_frames is None or n < self.max_frames:
            if not poller.poll(wait_ms):
                break
            parts = self._sock.recv_multipart()
            try:
                frame = decode_message(parts, default_source=self.address, default_index=seq)
            except InputError as exc:
                self.report(BadItem(str(exc)))
                seq += 1
                continue
            seq += 1
            if frame is None:
                break
            n += 1
            yield frame

    def close(self) -> None:
        self._sock.close(linger=0)


def decode_message(parts: list[bytes], *, default_source: str = "zmq", default_index: int = 0):
    """A :class:`~xtalscreen.io.frame.Frame` from one multipart message; None for an end
    message. Raises :class:`InputError` (naming the message) when it is malformed."""
    from xtalscreen.io.frame import Frame

    where = f"{default_source} message {default_index}"
    try:
        header = json.loads(parts[0].decode("utf-8"))
        if not isinstance(header, dict):
            raise ValueError("header is not a JSON object")
    except (ValueError, UnicodeDecodeError, IndexError) as exc:
        raise InputError(f"{where}: bad header ({exc}); expected [JSON header, raw bytes]") from None
    if header.get("end"):
        return None
    if len(parts) not in (2, 3):
        raise InputError(f"{where}: {len(parts)} parts, expected [header, data] or "
                         "[header, data, mask]")
    try:
        shape = tuple(int(v) for v in header["shape"])
        dtype = np.dtype(header["dtype"])
        data = np.frombuffer(parts[1], dtype=dtype).reshape(shape)
        mask = None
        if len(parts) == 3:
            mask = np.frombuffer(parts[2], dtype=np.uint8).reshape(shape).astype(bool)
    except (KeyError, TypeError, ValueError) as exc:
        raise InputError(f"{where}: data do not match the header's shape/dtype ({exc})") from None
    bc = header.get("beam_center")
    kw = {k: header[k] for k in ("pixel_size", "distance", "wavelength", "exposure", "detector")
          if header.get(k) is not None}
    return Frame(data, mask=mask, source=str(header.get("source", default_source)),
                 index=int(header.get("index", default_index)), format="zmq",
                 beam_center=None if bc is None else (float(bc[0]), float(bc[1])), **kw)


def send_frame(socket, frame, *, with_mask: bool = True) -> None:
    """Send a :class:`~xtalscreen.io.frame.Frame` on a PUSH socket in the wire format."""
    header = {"shape": list(frame.data.shape), "dtype": frame.data.dtype.str,
              "source": frame.source, "index": int(frame.index)}
    for k in ("pixel_size", "distance", "wavelength", "exposure", "detector"):
        v = getattr(frame, k, None)
        if v is not None and v != "":
            header[k] = v
    if frame.beam_center is not None:
        header["beam_center"] = list(frame.beam_center)
    parts = [json.dumps(header).encode(), np.ascontiguousarray(frame.data).tobytes()]
    if with_mask and frame.mask is not None:
        parts.append(np.ascontiguousarray(frame.mask, dtype=np.uint8).tobytes())
    socket.send_multipart(parts)


def send_end(socket) -> None:
    """Send the end-of-stream message."""
    socket.send_multipart([json.dumps({"end": True}).encode()])
