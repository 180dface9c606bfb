"""Reading frames from anything: :func:`open_frames`.

One call takes a file, a directory, a glob, a list file or a sequence of them (see
:mod:`xtalscreen.io.sources`) and yields :class:`~xtalscreen.io.frame.Frame` s one at a time,
opening each file only while its frames are read. Formats (by file name):

============================  =================================================================
``.h5 .hdf5 .cxi .nxs``       HDF5 / CXI / NeXus, Eiger master, idh5
                              (:mod:`xtalscreen.io.formats.hdf5`)
``.cbf .cbf.gz .cbf.bz2``     miniCBF and multi-array CBF (:mod:`xtalscreen.io.cbf`)
``.tif .tiff``                TIFF, every page a frame
``.png .jpg .jpeg .pgm``      8/16-bit images; colour -> grey by luminance, never rescaled
``.npy .npz``                 NumPy arrays and stacks
============================  =================================================================

Every frame's mask is the OR of: what the data reveal (:func:`xtalscreen.io.masks.data_mask`),
the file's own pixel mask, and the user's ``mask=``. Bad files or frames raise
:class:`~xtalscreen.errors.InputError` naming them (``on_error="raise"``), or are reported and
skipped (``on_error="skip"``): each is appended to ``errors`` (a list, or called when it is a
callable) as a :class:`ReadError` and logged on the ``xtalscreen.io`` logger.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Callable, Iterator, Sequence
from typing import Any, NamedTuple

import numpy as np

from xtalscreen.errors import InputError, ParameterError
from xtalscreen.io.corrections import CSPAD_LOW_GAIN_FACTOR, apply_corrections, load_array
from xtalscreen.io.formats import FileReader
from xtalscreen.io.frame import Frame
from xtalscreen.io.masks import load_mask
from xtalscreen.io.sources import KNOWN_EXTENSIONS, SourceItem, format_of, iter_sources

__all__ = ["open_frames", "open_file", "read_frame", "count_frames", "ReadError", "FrameStream",
           "geometry_file_beside"]

log = logging.getLogger("xtalscreen.io")


class ReadError(NamedTuple):
    """A file or frame skipped by ``open_frames(..., on_error="skip")``."""

    path: str
    frame: int | None
    reason: str

    def __str__(self) -> str:
        where = self.path if self.frame is None else f"{self.path} (frame {self.frame})"
        return f"{where}: {self.reason}"


class _CBFReader(FileReader):
    """Adapter over :func:`xtalscreen.io.cbf.iter_cbf` (CBF files hold one or few frames)."""

    format = "cbf"

    def __init__(self, path: str, **_: Any) -> None:
        super().__init__(path)
        try:
            from xtalscreen.io.cbf import iter_cbf
        except ImportError as exc:  # pragma: no cover - cbf.py is written alongside
            raise InputError(f"the CBF reader is not available ({exc})", path=self.path) from None
        try:
            self._frames = list(iter_cbf(self.path))
        except InputError:
            raise
        except (OSError, ValueError, KeyError, RuntimeError, EOFError) as exc:
            raise InputError(f"not a readable CBF file ({exc}); it may be truncated or corrupt",
                             path=self.path) from None

    def __len__(self) -> int:
        return len(self._frames)

    def read(self, index: int) -> Frame:
        return self._frames[self._check_index(index)]


def _reader_class(path: str) -> type[FileReader]:
    fam = format_of(path)
    if fam == "hdf5":
        from xtalscreen.io.formats.hdf5 import HDF5Reader
        return HDF5Reader
    if fam == "cbf":
        return _CBFReader
    if fam == "tiff":
        from xtalscreen.io.formats.images import TiffReader
        return TiffReader
    if fam == "image":
        from xtalscreen.io.formats.images import PillowReader
        return PillowReader
    if fam == "npy":
        from xtalscreen.io.formats.arrays import NpyReader
        return NpyReader
    if fam == "npz":
        from xtalscreen.io.formats.arrays import NpzReader
        return NpzReader
    raise InputError(f"unknown file type; readable endings are: {' '.join(KNOWN_EXTENSIONS)} "
                     "(and .lst/.txt list files)", path=path)


def open_file(path: str | os.PathLike, *, dataset: str | None = None, geometry=None,
              auto_mask: bool = True) -> FileReader:
    """The reader for one file: ``len(reader)`` frames, ``reader.read(i)``; close it after use."""
    p = os.fspath(path)
    cls = _reader_class(p)
    if not os.path.exists(p):
        raise InputError("file not found; check the path", path=p)
    if os.path.isdir(p):
        raise InputError("is a directory, not a file; pass it to open_frames", path=p)
    return cls(p, dataset=dataset, geometry=geometry, auto_mask=auto_mask)


def _selection(frames, n: int) -> Sequence[int]:
    """Frame indices asked for (negative ones counted from the end; may be out of range)."""
    if frames is None:
        return range(n)
    if isinstance(frames, slice):
        return range(n)[frames]
    if isinstance(frames, (int, np.integer)):
        frames = [int(frames)]
    return [int(i) + n if int(i) < 0 else int(i) for i in frames]


def _geometry(geometry):
    if geometry is None or not isinstance(geometry, (str, os.PathLike)):
        return geometry
    try:
        from xtalscreen.io.crystfel import read_geom
    except ImportError:  # pragma: no cover - crystfel.py is written alongside
        raise ParameterError("reading geometry files needs xtalscreen.io.crystfel") from None
    return read_geom(os.fspath(geometry))


GEOMETRY_NAME = "geometry.geom"


def geometry_file_beside(path: str | os.PathLike) -> str | None:
    """The CrystFEL file that belongs beside a data file, or None.

    Looks where ``xtalscreen simulate`` writes them: ``geometry.geom`` in the file's folder
    (one multi-panel preset), else ``<folder>.geom`` in the folder above (several presets:
    ``out/cspad/shard-00000.h5`` and ``out/cspad.geom``).
    """
    folder = os.path.dirname(os.path.abspath(os.fspath(path)))
    for cand in (os.path.join(folder, GEOMETRY_NAME),
                 os.path.join(os.path.dirname(folder), os.path.basename(folder) + ".geom")):
        if os.path.isfile(cand):
            return cand
    return None


_BESIDE_CACHE: dict[tuple[str, int], Any] = {}


def _read_beside(path: str):
    """A geometry found beside the data, read once per file version; None when it cannot be
    read (a stray file must not stop the run: the frame is then read without one)."""
    key = (path, os.stat(path).st_mtime_ns)
    if key not in _BESIDE_CACHE:
        try:
            _BESIDE_CACHE[key] = _geometry(path)
        except (InputError, ParameterError) as exc:
            log.warning("ignored the geometry file %s found beside the data: %s", path, exc)
            _BESIDE_CACHE[key] = None
    return _BESIDE_CACHE[key]


class FrameStream:
    """The iterator :func:`open_frames` returns: frames one at a time, plus bookkeeping.

    Attributes
    ----------
    items : list of SourceItem
        The files found (bad sources are in ``errors`` when skipping).
    errors : list of ReadError
        Files/frames skipped so far (``on_error="skip"``).
    n_frames : int
        Frames yielded so far.
    """

    def __init__(self, source, options: dict[str, Any]) -> None:
        self._opt = options
        self.errors: list[ReadError] = []
        self._sink = options.pop("errors")
        self.items: list[SourceItem] = []
        for item in iter_sources(source):
            if isinstance(item, InputError):
                self._fail(item)
            else:
                self.items.append(item)
        if not self.items and not self.errors:
            raise InputError(f"no files to read in {source!r}")
        self.n_frames = 0
        #: data file -> CrystFEL file found beside it and used (``geometry_beside=True``)
        self.geometries: dict[str, str] = {}
        self._it = self._generate()

    def geometry_for(self, path: str):
        """(geometry, found): the ``geometry=`` given (found False), else with
        ``geometry_beside`` the one beside ``path`` (found: its file name), else (None, False)."""
        if self._opt["geometry"] is not None or not self._opt["geometry_beside"]:
            return self._opt["geometry"], False
        g = geometry_file_beside(path)
        geom = None if g is None else _read_beside(g)
        if geom is None:
            return None, False
        return geom, g

    # ------------------------------------------------------------------ errors
    def _fail(self, exc: InputError, path: str | None = None, frame: int | None = None) -> None:
        if self._opt["on_error"] == "raise":
            raise exc
        err = ReadError(exc.path or path or "", exc.frame if exc.frame is not None else frame,
                        exc.reason)
        self.errors.append(err)
        log.warning("skipped %s", err)
        if callable(self._sink):
            self._sink(err)
        elif self._sink is not None:
            self._sink.append(err)

    # ------------------------------------------------------------------ iteration
    def __iter__(self) -> "FrameStream":
        return self

    def __next__(self) -> Frame:
        return next(self._it)

    def close(self) -> None:
        """Stop early and close the file being read (also done by ``with open_frames(...)``)."""
        self._it.close()

    def __enter__(self) -> "FrameStream":
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def count(self) -> int:
        """Total frames the sources hold (opens each file's header; unreadable files count 0)."""
        total = 0
        for item in self.items:
            try:
                with open_file(item.path, dataset=self._opt["dataset"],
                               geometry=self.geometry_for(item.path)[0], auto_mask=False) as r:
                    n = len(r)
                sel = item.frames if item.frames is not None else self._opt["frames"]
                total += sum(1 for i in _selection(sel, n) if 0 <= i < n)
            except InputError:
                continue
        return total

    def _generate(self) -> Iterator[Frame]:
        o = self._opt
        shape = None
        for item in self.items:
            geom, found = self.geometry_for(item.path)
            try:
                reader = open_file(item.path, dataset=o["dataset"], geometry=geom,
                                   auto_mask=o["auto_mask"])
            except InputError as exc:
                self._fail(exc, item.path)
                continue
            try:
                n = len(reader)
                for i in _selection(item.frames if item.frames is not None else o["frames"], n):
                    try:
                        if not 0 <= i < n:
                            raise InputError(f"frame {i} does not exist: the file holds {n} "
                                             f"frame(s) (indices 0..{n - 1})", path=item.path,
                                             frame=i)
                        frame = self._finish(reader.read(i), geom, found)
                        if o["check_shapes"]:
                            if shape is None:
                                shape = frame.shape
                            elif frame.shape != shape:
                                raise InputError(f"frame shape {frame.shape} differs from the "
                                                 f"first frame's {shape} (check_shapes=True); "
                                                 "read one detector's files per call",
                                                 path=item.path, frame=i)
                    except InputError as exc:
                        self._fail(exc, item.path, i)
                        continue
                    self.n_frames += 1
                    yield frame
            finally:
                reader.close()
        if self.n_frames == 0 and self.errors:
            raise InputError(f"no frame could be read: {len(self.errors)} error(s), the first: "
                             f"{self.errors[0]}")

    def _finish(self, frame: Frame, geometry=None, found=False) -> Frame:
        o = self._opt
        changes: dict[str, Any] = {}
        if o["mask"] is not None:
            m = o["mask"]
            if m.shape != frame.shape:
                raise InputError(f"mask {o['mask_name']} has shape {m.shape} but the frame has "
                                 f"shape {frame.shape}; use the mask made for this detector",
                                 path=frame.source, frame=frame.index)
            changes["mask"] = frame.mask | m
        for key in ("pixel_size", "distance", "wavelength", "beam_center"):
            if o[key] is not None:
                changes[key] = o[key]
        if found:  # a file beside the data: used only where it describes exactly this array
            if tuple(frame.shape) == tuple(geometry.data_shape()):
                changes["geometry"] = geometry
                self.geometries[frame.source] = found
        elif geometry is not None:
            geometry.check_data(frame.shape, frame.source)
            changes["geometry"] = geometry
        if changes:
            frame = frame.replace(**changes)
        if o["dark"] is not None or o["gain"] is not None or o["low_gain_map"] is not None:
            frame = apply_corrections(frame, dark=o["dark"], gain=o["gain"],
                                      gain_mode=o["gain_mode"], low_gain_map=o["low_gain_map"],
                                      low_gain_factor=o["low_gain_factor"])
        return frame


def open_frames(source, *, dataset: str | None = None, frames=None, mask=None,
                mask_dataset: str | None = None, invert_mask: bool = False, geometry=None,
                beam_center: tuple[float, float] | None = None, pixel_size: float | None = None,
                distance: float | None = None, wavelength: float | None = None, dark=None,
                gain=None, gain_mode: str = "divide", low_gain_map=None,
                low_gain_factor: float = CSPAD_LOW_GAIN_FACTOR, auto_mask: bool = True,
                geometry_beside: bool = False, check_shapes: bool = False, on_error: str = "raise",
                errors: list | Callable[[ReadError], Any] | None = None) -> FrameStream:
    """Iterate the frames of files, directories, globs or list files, lazily.

    Parameters
    ----------
    source : str, path-like or sequence of them
        Files, directories (recursed), glob patterns, ``.lst``/``.txt`` list files
        (``path`` or ``path //N`` per line).
    dataset : str, keyword-only
        HDF5 dataset (or NPZ array) holding the frames; auto-detected by default.
    frames : int, slice or sequence of int, keyword-only
        Frames to read from each file (list-file events take precedence).
    mask : str, path-like or bool array, keyword-only
        User mask (True/nonzero = bad) ORed into every frame's mask; a file is read with
        :func:`xtalscreen.io.masks.load_mask` (``mask_dataset``, ``invert_mask`` for
        1 = good masks).
    geometry : DetectorGeometry or path to a CrystFEL ``.geom``, keyword-only
        Attached to every frame (checked against its shape).
    geometry_beside : bool, keyword-only
        Without ``geometry``: use the CrystFEL file beside each data file
        (:func:`geometry_file_beside`: ``geometry.geom`` in its folder, or ``<folder>.geom`` one
        level up, as ``xtalscreen simulate`` writes them) for the frames whose shape it
        describes exactly; the files used are listed in ``stream.geometries``.
    beam_center, pixel_size, distance, wavelength : keyword-only
        Override the file's values: (fs, ss) pixels, metres, metres, ångström.
    dark, gain, low_gain_map : array or file, keyword-only
        Corrections applied by :func:`xtalscreen.io.corrections.apply_corrections`
        (``gain_mode``, ``low_gain_factor`` as there).
    auto_mask : bool, keyword-only
        Mask what the data reveal (sentinels, zero-filled gaps, NaN).
    check_shapes : bool, keyword-only
        Treat a frame whose shape differs from the first frame's as an error.
    on_error : {"raise", "skip"}, keyword-only
        Raise :class:`InputError` at the first bad file/frame, or report it and go on.
    errors : list or callable, keyword-only
        Where skipped items go (:class:`ReadError`); they are also in ``stream.errors``.

    Returns
    -------
    FrameStream
        An iterator of :class:`Frame`; ``stream.count()`` gives the total to expect.

    Raises
    ------
    InputError
        Bad source (missing, unknown type, empty directory ...) with ``on_error="raise"``,
        or when nothing at all could be read.

    Examples
    --------
    >>> for frame in open_frames("run_0001.h5", frames=slice(0, 10)):  # doctest: +SKIP
    ...     print(frame.label, frame.shape, frame.wavelength)
    """
    if on_error not in ("raise", "skip"):
        raise ParameterError(f"on_error must be 'raise' or 'skip', got {on_error!r}")
    if errors is not None and not (callable(errors) or hasattr(errors, "append")):
        raise ParameterError("errors must be a list (appended to) or a callable")
    if gain_mode not in ("divide", "multiply"):
        raise ParameterError(f"gain_mode must be 'divide' or 'multiply', got {gain_mode!r}")
    if (frames is not None and not isinstance(frames, (slice, int, np.integer))
            and hasattr(frames, "__iter__") and not isinstance(frames, (str, bytes))):
        frames = list(frames)
    if not (frames is None or isinstance(frames, (slice, int, np.integer)) or (
            isinstance(frames, list) and all(isinstance(i, (int, np.integer)) for i in frames))):
        raise ParameterError(f"frames must be an int, a slice or a sequence of ints, got {frames!r}")
    mask_name = "array"
    if mask is not None:
        if isinstance(mask, (str, os.PathLike)):
            mask_name = os.fspath(mask)
            mask = load_mask(mask, dataset=mask_dataset, invert=invert_mask)
        else:
            mask = np.asarray(mask, dtype=bool)
            if invert_mask:
                mask = ~mask
    if beam_center is not None:
        if len(beam_center) != 2:
            raise ParameterError(f"beam_center must be (fs, ss) in pixels, got {beam_center!r}")
        beam_center = (float(beam_center[0]), float(beam_center[1]))
    from xtalscreen.errors import check_positive
    if pixel_size is not None:
        pixel_size = check_positive("pixel_size", pixel_size, "m")
    if distance is not None:
        distance = check_positive("distance", distance, "m")
    if wavelength is not None:
        wavelength = check_positive("wavelength", wavelength, "Å")
    options = dict(
        dataset=dataset, frames=frames, mask=mask, mask_name=mask_name,
        geometry=_geometry(geometry), beam_center=beam_center, pixel_size=pixel_size,
        distance=distance, wavelength=wavelength,
        dark=None if dark is None else load_array(dark, name="dark").astype(np.float32),
        gain=None if gain is None else load_array(gain, name="gain").astype(np.float32),
        gain_mode=gain_mode,
        low_gain_map=None if low_gain_map is None else load_array(low_gain_map, name="low_gain_map").astype(bool),
        low_gain_factor=low_gain_factor, auto_mask=auto_mask, geometry_beside=bool(geometry_beside),
        check_shapes=check_shapes,
        on_error=on_error, errors=errors)
    return FrameStream(source, options)


def read_frame(path: str | os.PathLike, index: int = 0, **options: Any) -> Frame:
    """One frame of one file (``options`` as for :func:`open_frames`)."""
    stream = open_frames(path, frames=[index], **options)
    try:
        return next(stream)
    except StopIteration:
        raise InputError(f"frame {index} could not be read", path=os.fspath(path)) from None


def count_frames(source, *, dataset: str | None = None, frames=None) -> int:
    """How many frames :func:`open_frames` would yield for ``source`` (headers only)."""
    return open_frames(source, dataset=dataset, frames=frames, on_error="skip").count()
