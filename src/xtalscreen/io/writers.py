"""Writing frames: one HDF5 run file (:func:`write_hdf5_run`) or single images (:func:`write_image`).

The run file is NeXus-like and is read back by :func:`xtalscreen.io.open_frames` into the same
frames (data, mask, metadata)::

    /entry/data/data                 (N, H, W) or (N, P, H, W), float32 unless dtype= is given;
                                     attribute original_dtype
    /entry/data/mask                 uint8, nonzero = bad: (H, W) when every frame's mask is
                                     the same, else (N, H, W) / (N, P, H, W)
    /entry/data/source               (N,) source file of each frame
    /entry/data/source_index         (N,) frame index inside that file
    /entry/data/original_dtype       (N,) dtype each frame had in its source
    /entry/instrument/beam/incident_wavelength      (N,) Å
    /entry/instrument/detector/detector_distance    (N,) m
    /entry/instrument/detector/x_pixel_size         (N,) m
    /entry/instrument/detector/beam_center_x, _y    (N,) pixels
    /entry/instrument/detector/count_time           (N,) s
    /entry/instrument/detector/description          detector name of the first frame
    /entry/instrument/detector@xtalscreen_geometry  JSON of the first frame's geometry, if any

Unknown values are NaN. The file is written frame by frame (datasets grow along axis 0), so a
run is never held in memory.

Frames can also be compressed *before* the file is written, elsewhere (e.g. in the worker
process that read them): :class:`ChunkEncoder` turns a frame into an :class:`EncodedFrame` (its
data as one compressed chunk of this layout, its mask packed to bits, its metadata), which is
cheap to send between processes and which :func:`write_hdf5_run` writes with
``write_direct_chunk``, without decoding or encoding it again.
"""

from __future__ import annotations

import os
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from xtalscreen.errors import InputError, ParameterError
from xtalscreen.io.frame import Frame

__all__ = ["write_hdf5_run", "write_image", "COMPRESSIONS", "ChunkEncoder", "EncodedFrame", "OpenFiles"]

COMPRESSIONS = ("bitshuffle-lz4", "lz4", "gzip", None)

_PER_FRAME = {
    "/entry/instrument/beam/incident_wavelength": ("wavelength", "angstrom"),
    "/entry/instrument/detector/detector_distance": ("distance", "m"),
    "/entry/instrument/detector/x_pixel_size": ("pixel_size", "m"),
    "/entry/instrument/detector/count_time": ("exposure", "s"),
}


def _filter(compression):
    import hdf5plugin

    if compression is None or compression == "none":
        return {}
    if compression == "bitshuffle-lz4":
        return dict(hdf5plugin.Bitshuffle(cname="lz4"))
    if compression == "lz4":
        return dict(hdf5plugin.LZ4())
    if compression == "gzip":
        return {"compression": "gzip", "compression_opts": 4, "shuffle": True}
    raise ParameterError(f"compression must be one of {COMPRESSIONS}, got {compression!r}")


def _cast(data: np.ndarray, dtype: np.dtype, label: str) -> np.ndarray:
    if dtype == np.float32:
        return data
    if dtype.kind in "iu":
        finite = np.isfinite(data)
        info = np.iinfo(dtype)
        if (not finite.all() or data.min(initial=0) < info.min or data.max(initial=0) > info.max
                or np.any(data != np.round(data))):
            raise ParameterError(f"{label}: values do not fit dtype {dtype} exactly (non-integer, "
                                 "NaN or out of range); write float32 (dtype=None) instead")
    return data.astype(dtype)


def _data_dataset(group, name: str, shape: tuple, dtype, chunk_frames: int, filt: dict):
    """The growable ``(0, *shape)`` data dataset of a run file (one definition for
    :func:`write_hdf5_run` and :class:`ChunkEncoder`, so their chunks are interchangeable)."""
    return group.create_dataset(name, shape=(0,) + tuple(shape), maxshape=(None,) + tuple(shape),
                                dtype=dtype, chunks=(chunk_frames,) + tuple(shape), **filt)


def chunk_layout(ds) -> tuple:
    """What must match for a compressed chunk of ``ds`` to be valid in another dataset: dtype,
    chunk shape and filter pipeline (filter ids and parameters)."""
    pl = ds.id.get_create_plist()
    pipeline = tuple((f[0], tuple(f[2])) for f in (pl.get_filter(i) for i in range(pl.get_nfilters())))
    return (ds.dtype.str, ds.chunks, pipeline)


@dataclass
class EncodedFrame:
    """A frame ready for a run file: its data as one compressed chunk, nothing to decode.

    Made by :meth:`ChunkEncoder.encode`; written by :func:`write_hdf5_run` as it is. It has the
    attributes of a :class:`~xtalscreen.io.frame.Frame` that the writer reads (``shape``,
    ``mask``, ``source``, ``index``, ``dtype``, the metadata, ``label``) but no pixel array, so
    sending one between processes costs the compressed bytes plus one bit per pixel.

    Attributes
    ----------
    chunk : (int, bytes) or None
        ``(filter_mask, compressed bytes)`` of the frame's data chunk (``read_direct_chunk``);
        None when ``chunk_ref`` names where the chunk is.
    chunk_ref : (str, str, int) or None
        ``(file, dataset, frame)``: the chunk is that frame's chunk in an HDF5 file (one frame
        per chunk, this layout), read by the writer itself. A worker process that read a frame
        from an HDF5 run sends this instead of the compressed bytes (3.7 MB for a CSPAD frame):
        the bytes then never cross a pipe (see :class:`ChunkEncoder`).
    layout : tuple
        :func:`chunk_layout` of the dataset the chunk was made for; the writer refuses a chunk
        whose layout differs from its own.
    shape : tuple of int
    mask_bits : ndarray of uint8
        ``np.packbits`` of the mask (True = bad).
    """

    chunk: tuple
    layout: tuple
    shape: tuple
    mask_bits: np.ndarray
    source: str = ""
    index: int = 0
    format: str = ""
    detector: str = ""
    pixel_size: float | None = None
    distance: float | None = None
    wavelength: float | None = None
    beam_center: tuple | None = None
    exposure: float | None = None
    dtype: str = ""
    geometry: Any = None
    meta: dict = field(default_factory=dict)
    chunk_ref: tuple | None = None

    @property
    def mask(self) -> np.ndarray:
        n = int(np.prod(self.shape))
        return np.unpackbits(self.mask_bits, count=n).view(bool).reshape(self.shape)

    @property
    def label(self) -> str:
        return f"{self.source} (frame {self.index})" if self.source else f"frame {self.index}"

    @property
    def data(self):
        raise TypeError(f"{self.label}: an EncodedFrame holds compressed data only; read it back "
                        "from the run file it was written to")


class ChunkEncoder:
    """Compress frames into :class:`EncodedFrame` records for a :func:`write_hdf5_run` file.

    The chunk is made by the same HDF5 dataset definition the writer uses (in an in-memory
    HDF5 file), so it is exactly what :func:`write_hdf5_run` would store. Use it where the
    frames are (a worker process) and send the records to the process that writes the file.

    Parameters
    ----------
    compression : str or None, keyword-only
        As in :func:`write_hdf5_run` (default bitshuffle-LZ4).
    raw_chunk : callable, keyword-only
        ``raw_chunk(frame, dataset) -> (filter_mask, bytes) or None``, as in
        :func:`write_hdf5_run`: a chunk already encoded for ``dataset`` (e.g. the frame's own
        compressed chunk in its source file), used instead of compressing the frame again.
        A hook with a ``ref(frame, dataset) -> (file, dataset, frame) or None`` method (such as
        :class:`xtalscreen.screen.workers.SourceChunks`) gives a reference instead
        (:attr:`EncodedFrame.chunk_ref`), which the writer resolves by reading the chunk from
        that file: nothing is read or copied here.

    Examples
    --------
    >>> import numpy as np
    >>> from xtalscreen.io.frame import Frame
    >>> enc = ChunkEncoder()
    >>> e = enc.encode(Frame(np.zeros((4, 6), np.float32), source="a.h5", index=3))
    >>> e.shape, e.label, e.mask.any()
    ((4, 6), 'a.h5 (frame 3)', np.False_)
    >>> enc.close()
    """

    #: the in-memory file is started afresh once it holds this many bytes (HDF5 does not always
    #: reuse the space of overwritten chunks)
    max_bytes = 256 * 2**20

    def __init__(self, *, compression: str | None = "bitshuffle-lz4", raw_chunk=None) -> None:
        self.filt = _filter(compression)
        self.raw_chunk = raw_chunk
        self._file = None
        self._ds: dict = {}

    def _dataset(self, shape: tuple):
        import h5py

        if self._file is not None and self._file.id.get_filesize() > self.max_bytes:
            self.close()
        if self._file is None:
            self._file = h5py.File(f"xtalscreen-encoder-{os.getpid()}-{id(self)}", "w", driver="core",
                                   backing_store=False)
        if shape not in self._ds:
            ds = _data_dataset(self._file, f"d{len(self._ds)}", shape, np.float32, 1, self.filt)
            ds.resize(1, axis=0)
            self._ds[shape] = (ds, chunk_layout(ds))
        return self._ds[shape]

    def encode(self, frame: Frame, *, raw_chunk=None) -> EncodedFrame:
        """The frame's data compressed as one chunk, its mask packed, its metadata
        (``raw_chunk``: a hook for this call instead of the encoder's own)."""
        ds, layout = self._dataset(tuple(frame.shape))
        hook = raw_chunk if raw_chunk is not None else self.raw_chunk
        ref = hook.ref(frame, ds) if hasattr(hook, "ref") else None
        chunk = None
        if ref is None:
            rc = hook(frame, ds) if hook is not None else None
            if rc is None:
                ds[0] = frame.data
                rc = ds.id.read_direct_chunk((0,) * ds.ndim)
            chunk = (int(rc[0]), bytes(rc[1]))
        return EncodedFrame(
            chunk=chunk, chunk_ref=ref, layout=layout, shape=tuple(frame.shape),
            mask_bits=np.packbits(frame.mask), source=frame.source, index=frame.index,
            format=frame.format, detector=frame.detector, pixel_size=frame.pixel_size,
            distance=frame.distance, wavelength=frame.wavelength, beam_center=frame.beam_center,
            exposure=frame.exposure, dtype=frame.dtype, geometry=frame.geometry)

    def close(self) -> None:
        if self._file is not None:
            self._file.close()
        self._file = None
        self._ds = {}

    def __enter__(self) -> "ChunkEncoder":
        return self

    def __exit__(self, *exc) -> None:
        self.close()


class OpenFiles:
    """The last ``keep`` HDF5 files opened for reading, kept open (frames come file by file,
    so a run of many files holds a few handles, never one per file).

    >>> files = OpenFiles(keep=2)
    >>> files.close()
    """

    def __init__(self, keep: int = 4) -> None:
        from collections import OrderedDict

        self.keep = int(keep)
        self._files: OrderedDict = OrderedDict()

    def get(self, path: str):
        """The open ``h5py.File`` of ``path`` (opened now if needed; OSError as h5py raises)."""
        import h5py

        f = self._files.get(path)
        if f is None:
            f = self._files[path] = h5py.File(path, "r")
            while len(self._files) > self.keep:
                self._files.popitem(last=False)[1].close()
        else:
            self._files.move_to_end(path)
        return f

    def __len__(self) -> int:
        return len(self._files)

    def close(self) -> None:
        for f in self._files.values():
            f.close()
        self._files.clear()


class _ChunkRefs:
    """Reads the chunks that :attr:`EncodedFrame.chunk_ref` names."""

    def __init__(self) -> None:
        self._files = OpenFiles()
        self._layouts: dict = {}

    def read(self, fr: "EncodedFrame", layout: tuple, out: str) -> tuple:
        path, name, index = fr.chunk_ref
        try:
            ds = self._files.get(path)[name]
            if (path, name) not in self._layouts:
                self._layouts[(path, name)] = chunk_layout(ds)
            if self._layouts[(path, name)] != layout:
                raise ValueError(f"its chunks have the layout {self._layouts[(path, name)]}, "
                                 f"not this file's {layout}")
            return ds.id.read_direct_chunk((int(index),) + (0,) * (ds.ndim - 1))
        except (OSError, KeyError, ValueError, TypeError) as exc:
            raise InputError(f"cannot copy {fr.label} into {out}: its compressed chunk could not "
                             f"be read back from dataset {name} of its source file ({exc}); was "
                             "the file moved or rewritten during the run?", path=path,
                             frame=int(index)) from None

    def close(self) -> None:
        self._files.close()


def _same_mask(fr, first_mask: np.ndarray, first_bits) -> bool:
    """Whether ``fr``'s mask is the run's first mask (packed bits compared when both are
    encoded frames: no unpacking)."""
    if first_bits is not None and isinstance(fr, EncodedFrame):
        return np.array_equal(fr.mask_bits, first_bits)
    return np.array_equal(fr.mask, first_mask)


def write_hdf5_run(frames: Iterable[Frame], path: str | os.PathLike, *,
                   compression: str | None = "bitshuffle-lz4", chunk_frames: int = 1,
                   dtype=None, overwrite: bool = False, raw_chunk=None) -> int:
    """Write frames into one HDF5 run file, one frame at a time (layout in the module doc).

    Parameters
    ----------
    frames : iterable of Frame or EncodedFrame
        All of one shape; e.g. ``open_frames("cbf_folder/")``. An :class:`EncodedFrame` is
        written as its compressed chunk (its layout must be this file's: float32, one frame per
        chunk, the same ``compression``), read from the file its ``chunk_ref`` names when it
        carries no bytes.
    path : str or path-like
        Output file (``.h5``); refused if it exists unless ``overwrite``.
    compression : {"bitshuffle-lz4", "lz4", "gzip", None}, keyword-only
        Filter of the data and mask datasets (bitshuffle-LZ4 as Eiger/Jungfrau files).
    chunk_frames : int, keyword-only
        Frames per HDF5 chunk (1 suits frame-by-frame reading).
    dtype : numpy dtype, keyword-only
        Stored dtype; default float32 (exactly what ``Frame.data`` holds). An integer dtype is
        checked frame by frame to be lossless.
    overwrite : bool, keyword-only
    raw_chunk : callable, keyword-only
        ``raw_chunk(frame, dataset) -> (filter_mask, bytes) or None``: the frame's data already
        encoded for ``dataset`` (same dtype, chunk shape and filter pipeline; e.g. read with
        h5py's ``read_direct_chunk`` from a source file of the same layout), written as it is
        with ``write_direct_chunk`` instead of encoding ``frame.data`` again; the caller
        guarantees that it decodes to ``frame.data``. None (default, or when it returns None):
        encode ``frame.data``. Only used with ``chunk_frames=1``.

    Returns
    -------
    int
        Number of frames written.
    """
    import h5py

    p = os.fspath(path)
    if chunk_frames < 1:
        raise ParameterError(f"chunk_frames must be >= 1, got {chunk_frames}")
    filt = _filter(compression)
    dt = np.dtype(np.float32 if dtype is None else dtype)
    if os.path.exists(p) and not overwrite:
        raise InputError("output file exists; remove it or pass overwrite=True (--overwrite)", path=p)
    tmp = p + ".part"
    n = 0
    refs = _ChunkRefs()
    try:
        with h5py.File(tmp, "w") as f:
            entry = f.create_group("entry")
            entry.attrs["NX_class"] = "NXentry"
            g = entry.create_group("data")
            g.attrs["NX_class"] = "NXdata"
            g.attrs["signal"] = "data"
            inst = entry.create_group("instrument")
            inst.attrs["NX_class"] = "NXinstrument"
            det = inst.create_group("detector")
            det.attrs["NX_class"] = "NXdetector"
            beam = inst.create_group("beam")
            beam.attrs["NX_class"] = "NXbeam"
            str_t = h5py.string_dtype()
            ds = mask_ds = None
            first_mask = first_bits = None
            shape = None
            cols: dict[str, h5py.Dataset] = {}
            for fr in frames:
                if shape is None:
                    shape = fr.shape
                    ds = _data_dataset(g, "data", shape, dt, chunk_frames, filt)
                    layout = chunk_layout(ds)
                    ds.attrs["original_dtype"] = fr.dtype
                    first_mask = fr.mask.copy()
                    first_bits = fr.mask_bits if isinstance(fr, EncodedFrame) else None
                    for name, kind in (("source", str_t), ("source_index", np.int64),
                                       ("original_dtype", str_t)):
                        cols["/entry/data/" + name] = g.create_dataset(
                            name, shape=(0,), maxshape=(None,), dtype=kind, chunks=(1024,))
                    for key, (_, unit) in _PER_FRAME.items():
                        cols[key] = f.create_dataset(key, shape=(0,), maxshape=(None,),
                                                     dtype=np.float64, chunks=(1024,))
                        cols[key].attrs["units"] = unit
                    for axis in ("x", "y"):
                        key = f"/entry/instrument/detector/beam_center_{axis}"
                        cols[key] = f.create_dataset(key, shape=(0,), maxshape=(None,),
                                                     dtype=np.float64, chunks=(1024,))
                        cols[key].attrs["units"] = "pixel"
                    if fr.detector:
                        det.create_dataset("description", data=fr.detector, dtype=str_t)
                    if fr.geometry is not None:
                        from xtalscreen.io.formats.hdf5 import geometry_to_json
                        det.attrs["xtalscreen_geometry"] = geometry_to_json(fr.geometry)
                elif fr.shape != shape:
                    raise InputError(f"frame shape {fr.shape} differs from the run's {shape}; one "
                                     "run file holds one detector's frames", path=fr.source or None,
                                     frame=fr.index)
                ds.resize(n + 1, axis=0)
                if isinstance(fr, EncodedFrame):
                    if fr.layout != layout:
                        raise InputError(f"{fr.label}: its compressed chunk was made for another "
                                         f"layout {fr.layout}, not this file's {layout}; encode it "
                                         "with the same compression and dtype", path=p)
                    rc = fr.chunk if fr.chunk is not None else refs.read(fr, layout, p)
                else:
                    rc = raw_chunk(fr, ds) if raw_chunk is not None and chunk_frames == 1 else None
                if rc is not None:
                    ds.id.write_direct_chunk((n,) + (0,) * len(shape), rc[1], rc[0])
                else:
                    ds[n] = _cast(fr.data, dt, fr.label)
                # mask: one copy while constant, per frame from the first change on
                if mask_ds is None and not _same_mask(fr, first_mask, first_bits):
                    mask_ds = g.create_dataset("mask", shape=(n + 1,) + shape,
                                               maxshape=(None,) + shape, dtype=np.uint8,
                                               chunks=(1,) + shape, **filt)
                    for k in range(n):
                        mask_ds[k] = first_mask
                elif mask_ds is not None:
                    mask_ds.resize(n + 1, axis=0)
                if mask_ds is not None:
                    mask_ds[n] = fr.mask
                for c in cols.values():
                    c.resize(n + 1, axis=0)
                cols["/entry/data/source"][n] = fr.source
                cols["/entry/data/source_index"][n] = fr.index
                cols["/entry/data/original_dtype"][n] = fr.dtype
                for key, (attr, _) in _PER_FRAME.items():
                    v = getattr(fr, attr)
                    cols[key][n] = np.nan if v is None else v
                bc = fr.beam_center or (np.nan, np.nan)
                cols["/entry/instrument/detector/beam_center_x"][n] = bc[0]
                cols["/entry/instrument/detector/beam_center_y"][n] = bc[1]
                n += 1
            if n == 0:
                raise InputError("no frames to write", path=p)
            if mask_ds is None:
                g.create_dataset("mask", data=first_mask.astype(np.uint8), **filt)
            g["mask"].attrs["convention"] = "nonzero = bad"
        os.replace(tmp, p)
    finally:
        refs.close()
        if os.path.exists(tmp):
            os.remove(tmp)
    return n


def _pilatus_header(frame: Frame) -> str:
    lines = []
    if frame.detector:
        lines.append(f"# Detector: {frame.detector}")
    if frame.pixel_size is not None:
        lines.append(f"# Pixel_size {frame.pixel_size:.6g} m x {frame.pixel_size:.6g} m")
    if frame.exposure is not None:
        lines.append(f"# Exposure_time {frame.exposure:.7f} s")
    if frame.wavelength is not None:
        lines.append(f"# Wavelength {frame.wavelength:.5f} A")
    if frame.distance is not None:
        lines.append(f"# Detector_distance {frame.distance:.5f} m")
    if frame.beam_center is not None:
        lines.append(f"# Beam_xy ({frame.beam_center[0]:.2f}, {frame.beam_center[1]:.2f}) pixels")
    return "\r\n".join(lines)


def write_image(frame: Frame, path: str | os.PathLike, *, overwrite: bool = False) -> None:
    """Write one frame as ``.npy`` / ``.tif`` (float32 data) or ``.cbf`` (miniCBF, int32).

    ``.cbf`` needs integer values; it carries a Pilatus header (detector, pixel size, exposure,
    wavelength, distance, beam centre) and masked pixels are written as -1, the Pilatus gap
    value, so the readers mask them again. ``.npy``/``.tif`` drop the mask and metadata: for
    those, write an HDF5 run (:func:`write_hdf5_run`).
    """
    p = os.fspath(path)
    if os.path.exists(p) and not overwrite:
        raise InputError("output file exists; remove it or pass overwrite=True", path=p)
    ext = Path(p).suffix.lower()
    if ext == ".npy":
        np.save(p, frame.data)
    elif ext in (".tif", ".tiff"):
        import tifffile

        tifffile.imwrite(p, frame.data, description=f"xtalscreen frame from {frame.label}")
    elif ext == ".cbf":
        import fabio.cbfimage

        if frame.data.ndim != 2:
            raise ParameterError(f"{frame.label}: miniCBF holds 2-D images, the frame has shape "
                                 f"{frame.shape}; write .h5 instead")
        data = _cast(np.where(frame.mask, -1, frame.data), np.dtype(np.int32), frame.label)
        header = {"_array_data.header_convention": "PILATUS_1.2",
                  "_array_data.header_contents": _pilatus_header(frame)}
        fabio.cbfimage.CbfImage(data=data, header=header).write(p)
    else:
        raise ParameterError(f"write_image writes .npy, .tif or .cbf, got {ext!r} ({p})")
