"""HDF5 family: plain HDF5, CXI, NeXus/NXmx, Eiger master files and the "idh5" layout.

``import hdf5plugin`` runs before any file is opened, so bitshuffle/LZ4 (Eiger, Jungfrau)
and the other registered filters decompress transparently.

Which dataset holds the frames (unless ``dataset=`` says):

1. **idh5 layout** (below) when ``/data`` holds groups with an ``images`` dataset;
2. **Eiger master**: ``/entry/data/data_000001``, ``data_000002`` ... (external links to the
   data files), read in order as one run;
3. the first present of :data:`KNOWN_DATASETS`;
4. the signal of an ``NXdata`` group;
5. the largest numeric dataset with ``ndim >= 2``.

Dataset shapes: ``(H, W)`` one image; ``(N, H, W)`` N events; ``(N, P, H, W)`` N multi-panel
events. A 3-D dataset is taken as one multi-panel frame only when a 3-D (slab) geometry is
given.

Metadata (scalars, or per-frame arrays of length N; ``units`` attributes honoured):
NeXus/Eiger ``/entry/instrument/detector/{x_pixel_size, detector_distance, beam_center_x,
beam_center_y, count_time, description}``, ``/entry/instrument/beam/incident_wavelength``;
CXI ``/entry_1/instrument_1/detector_1/{distance, x_pixel_size}``,
``/entry_1/instrument_1/source_1/energy`` (J); Cheetah ``/LCLS/photon_energy_eV``,
``/LCLS/photon_wavelength_A``. Eiger's ``bit_depth_image`` (when narrower than the stored dtype) adds ``2**bit_depth - 1`` to
the sentinels. ``saturation_value`` (or Eiger's ``countrate_correction_count_cutoff``) goes to
``Frame.meta["saturation_value"]``. Pixel masks (nonzero = bad):
``/entry/instrument/detector/detectorSpecific/pixel_mask`` (Eiger), ``/entry/data/mask``
(written by :func:`xtalscreen.io.writers.write_hdf5_run`; (H, W) or per frame),
``/entry_1/data_1/mask``.

The idh5 layout (Ke et al. 2018, LCLS runs converted from XTC to 4-byte-integer HDF5)
--------------------------------------------------------------------------------------
::

    /data/<chunk>/images      (n_k, H, W) frames of chunk k (chunks read in natural name order)
    /metadata/<name>          (N,) one value per frame over all chunks, or a scalar
    /metadata/<chunk>/<name>  (n_k,) the same, per chunk

Recognised metadata names: ``wavelength`` (Å), ``photon_energy`` (eV; also
``photon_energy_ev``, ``energy_ev``), ``distance`` (m), ``pixel_size`` (m), ``beam_center_x``
/ ``beam_center_y`` (pixels), ``exposure`` (s); a ``units`` attribute overrides the unit.
Every other 1-D array of the right length goes into ``Frame.meta`` (event ids, timestamps,
labels). A root attribute ``detector`` names the detector. Pixels outside the detector tiles are
0 in this layout and are masked as zero-filled gaps.
"""

from __future__ import annotations

import json
import re
from typing import Any

import numpy as np

from xtalscreen.errors import InputError
from xtalscreen.io.formats import FileReader, make_frame

__all__ = ["HDF5Reader", "KNOWN_DATASETS", "list_image_datasets", "open_h5"]

#: Frame datasets tried in order when ``dataset=`` is not given.
KNOWN_DATASETS = (
    "/entry/data/data",
    "/entry_1/data_1/data",
    "/entry_1/instrument_1/detector_1/data",
    "/data/data",
    "/entry_1/image_1/data",
)

_EIGER_PART = re.compile(r"^data_\d{6}$")
_BLOCK_BYTES = 64 * 2**20  # read at most this much per block of frames sharing a chunk

# field -> list of (path, kind, default unit)
_META_PATHS: dict[str, list[tuple[str, str, str]]] = {
    "pixel_size": [("/entry/instrument/detector/x_pixel_size", "length", "m"),
                   ("/entry_1/instrument_1/detector_1/x_pixel_size", "length", "m")],
    "distance": [("/entry/instrument/detector/detector_distance", "length", "m"),
                 ("/entry/instrument/detector/distance", "length", "m"),
                 ("/entry_1/instrument_1/detector_1/distance", "length", "m")],
    "wavelength": [("/entry/instrument/beam/incident_wavelength", "wavelength", "angstrom"),
                   ("/entry/sample/beam/incident_wavelength", "wavelength", "angstrom"),
                   ("/entry_1/instrument_1/source_1/incident_wavelength", "wavelength", "m"),
                   ("/LCLS/photon_wavelength_A", "wavelength", "angstrom"),
                   ("/entry_1/instrument_1/source_1/energy", "energy", "J"),
                   ("/entry/instrument/beam/incident_energy", "energy", "eV"),
                   ("/LCLS/photon_energy_eV", "energy", "eV")],
    "beam_center_x": [("/entry/instrument/detector/beam_center_x", "pixels", "")],
    "beam_center_y": [("/entry/instrument/detector/beam_center_y", "pixels", "")],
    "exposure": [("/entry/instrument/detector/count_time", "time", "s"),
                 ("/entry_1/instrument_1/detector_1/exposure_time", "time", "s")],
}
_DETECTOR_NAME_PATHS = ("/entry/instrument/detector/description",
                        "/entry_1/instrument_1/detector_1/description",
                        "/entry/instrument/detector/local_name")
_SATURATION_PATHS = ("/entry/instrument/detector/saturation_value",
                     "/entry/instrument/detector/detectorSpecific/countrate_correction_count_cutoff")
_MASK_PATHS = ("/entry/instrument/detector/detectorSpecific/pixel_mask", "/entry/data/mask",
               "/entry_1/data_1/mask", "/entry_1/instrument_1/detector_1/mask")
_IDH5_NAMES = {"wavelength": ("wavelength", "wavelength", "angstrom"),
               "wavelength_a": ("wavelength", "wavelength", "angstrom"),
               "photon_energy": ("wavelength", "energy", "eV"),
               "photon_energy_ev": ("wavelength", "energy", "eV"),
               "energy_ev": ("wavelength", "energy", "eV"),
               "distance": ("distance", "length", "m"),
               "detector_distance": ("distance", "length", "m"),
               "pixel_size": ("pixel_size", "length", "m"),
               "beam_center_x": ("beam_center_x", "pixels", ""),
               "beam_center_y": ("beam_center_y", "pixels", ""),
               "exposure": ("exposure", "time", "s"),
               "exposure_time": ("exposure", "time", "s")}

_LENGTH = {"m": 1.0, "metre": 1.0, "meter": 1.0, "metres": 1.0, "meters": 1.0, "mm": 1e-3,
           "millimetre": 1e-3, "millimeter": 1e-3, "cm": 1e-2, "um": 1e-6, "µm": 1e-6,
           "micron": 1e-6, "microns": 1e-6, "micrometer": 1e-6, "nm": 1e-9}
_WAVELENGTH = {"angstrom": 1.0, "a": 1.0, "å": 1.0, "ang": 1.0, "angstroms": 1.0, "nm": 10.0,
               "m": 1e10, "metre": 1e10, "meter": 1e10}
_ENERGY_KEV = {"ev": 1e-3, "kev": 1.0, "j": 1.0 / 1.602176634e-16}
_TIME = {"s": 1.0, "sec": 1.0, "second": 1.0, "seconds": 1.0, "ms": 1e-3, "us": 1e-6, "µs": 1e-6}
_HC_KEV_A = 12.398419843320026  # h c in keV·Å


def _natural_key(s: str):
    return [int(t) if t.isdigit() else t.lower() for t in re.split(r"(\d+)", s)]


def open_h5(path: str):
    """``h5py.File(path, "r")`` with filters loaded; InputError naming the file on failure."""
    import hdf5plugin  # noqa: F401  (registers bitshuffle, LZ4, ... before any file is opened)
    import h5py

    try:
        return h5py.File(path, "r")
    except FileNotFoundError:
        raise InputError("file not found; check the path", path=path) from None
    except (OSError, ValueError) as exc:
        raise InputError(f"not a readable HDF5 file ({exc}); it may be truncated or corrupt: "
                         "copy it again or leave it out", path=path) from None


def list_image_datasets(f) -> list[tuple[str, tuple[int, ...]]]:
    """Every numeric dataset with ``ndim >= 2`` in an open file: ``[(path, shape), ...]``."""
    import h5py

    out: list[tuple[str, tuple[int, ...]]] = []

    def visit(name, obj):
        if isinstance(obj, h5py.Dataset) and obj.ndim >= 2 and obj.dtype.kind in "iufb":
            out.append(("/" + name, tuple(obj.shape)))

    try:
        f.visititems(visit)
    except (KeyError, OSError):  # broken external links: list what can be reached
        pass
    return out


def _unit(obj) -> str:
    u = obj.attrs.get("units", obj.attrs.get("unit", b""))
    if isinstance(u, np.ndarray):
        u = u.ravel()[0] if u.size else b""
    if isinstance(u, bytes):
        u = u.decode(errors="replace")
    return str(u).strip().lower()


def _convert(values: np.ndarray, kind: str, unit: str, default: str) -> np.ndarray | None:
    unit = (unit or default).lower()
    v = np.asarray(values, dtype=np.float64)
    if kind == "length":
        f = _LENGTH.get(unit)
        return None if f is None else v * f
    if kind == "wavelength":
        f = _WAVELENGTH.get(unit)
        return None if f is None else v * f
    if kind == "energy":
        f = _ENERGY_KEV.get(unit)
        if f is None:
            return None
        with np.errstate(divide="ignore", invalid="ignore"):
            return _HC_KEV_A / (v * f)
    if kind == "time":
        f = _TIME.get(unit)
        return None if f is None else v * f
    return v  # pixels


def _as_string(obj) -> str:
    v = obj[()]
    if isinstance(v, np.ndarray):
        v = v.ravel()[0] if v.size else b""
    if isinstance(v, bytes):
        v = v.decode(errors="replace")
    return str(v).strip()


class _Column:
    """Items of a per-frame 1-D dataset (strings), read a block at a time: one HDF5 read per
    1024 frames instead of one per frame (each costs ~0.2 ms for variable-length strings)."""

    def __init__(self, ds, block: int = 1024) -> None:
        self.ds = ds
        self.block = int(block)
        self._start = -1
        self._items = None

    def __getitem__(self, i: int):
        i = int(i)
        if self._items is None or not self._start <= i < self._start + len(self._items):
            self._start = (i // self.block) * self.block
            self._items = self.ds[self._start:self._start + self.block]
        return self._items[i - self._start]


class HDF5Reader(FileReader):
    """Frames of one HDF5/CXI/NeXus file, Eiger master file or idh5 file (module docstring).

    Parameters
    ----------
    path : str
    dataset : str, optional
        Frame dataset path; default auto-detected.
    geometry : DetectorGeometry, optional
        Only used to decide whether a 3-D dataset is one multi-panel frame.
    auto_mask : bool
        Add :func:`xtalscreen.io.masks.data_mask` to each frame's mask.
    """

    format = "hdf5"

    def __init__(self, path: str, *, dataset: str | None = None, geometry=None,
                 auto_mask: bool = True) -> None:
        super().__init__(path)
        self.auto_mask = auto_mask
        self._f = open_h5(self.path)
        try:
            self._setup(dataset, geometry)
        except InputError:
            self._f.close()
            raise
        except (OSError, KeyError, ValueError, RuntimeError) as exc:
            self._f.close()
            raise InputError(f"cannot read the file's structure ({exc}); it may be truncated "
                             "or corrupt", path=self.path) from None
        self._block: tuple[int, int, np.ndarray] | None = None  # (part, start, frames)

    # ------------------------------------------------------------------ layout
    def _setup(self, dataset: str | None, geometry) -> None:
        import h5py

        f = self._f
        self.dataset_path = dataset
        self._chunk_names: list[str] = []
        self._external: list[str] = []
        if dataset is not None:
            if dataset not in f or not isinstance(f[dataset], h5py.Dataset):
                raise InputError(f"dataset {dataset!r} not found; image datasets in the file: "
                                 f"{self._candidates()}; pass one of them with dataset=/--dataset",
                                 path=self.path)
            parts = [f[dataset]]
        elif self._is_idh5():
            self.format = "idh5"
            names = sorted((k for k in f["data"] if isinstance(f["data"][k], h5py.Group)
                            and "images" in f["data"][k]), key=_natural_key)
            parts = [f["data"][k]["images"] for k in names]
            self._chunk_names = names
            self.dataset_path = "/data/<chunk>/images"
        elif self._eiger_parts():
            self.format = "eiger"
            parts = self._open_eiger_parts()
            self.dataset_path = "/entry/data/data_NNNNNN"
        else:
            name = self._auto_dataset()
            parts = [f[name]]
            self.dataset_path = name
            if name.startswith("/entry_1"):
                self.format = "cxi"
        nd = {p.ndim for p in parts}
        if len(nd) != 1:
            raise InputError("the data files of this run have different dimensions "
                             f"{sorted(nd)}", path=self.path)
        ndim = nd.pop()
        if ndim < 2:
            raise InputError(f"dataset {self.dataset_path!r} has shape {parts[0].shape}, not an "
                             f"image; image datasets in the file: {self._candidates()}",
                             path=self.path)
        if ndim > 4:
            raise InputError(f"dataset {self.dataset_path!r} has {ndim} dimensions; expected "
                             "(H, W), (N, H, W) or (N, panels, H, W)", path=self.path)
        if parts[0].dtype.kind not in "iufb":
            raise InputError(f"dataset {self.dataset_path!r} holds {parts[0].dtype}, not pixel "
                             "values", path=self.path)
        single = ndim == 2 or (ndim == 3 and geometry is not None and geometry.is_3d)
        self._single = single
        self._parts = parts
        self._counts = [1 if single else int(p.shape[0]) for p in parts]
        self._offsets = np.concatenate([[0], np.cumsum(self._counts)]).astype(int)
        shapes = {tuple(p.shape if single else p.shape[1:]) for p in parts}
        if len(shapes) != 1:
            raise InputError(f"the data files of this run have different frame shapes "
                             f"{sorted(shapes)}", path=self.path)
        self.frame_shape = shapes.pop()
        self._read_metadata()

    def _candidates(self) -> str:
        c = list_image_datasets(self._f)
        if not c:
            return "none"
        shown = ", ".join(f"{n} {s}" for n, s in c[:20])
        return shown + (f" ... ({len(c)} in all)" if len(c) > 20 else "")

    def _is_idh5(self) -> bool:
        import h5py

        g = self._f.get("data")
        if not isinstance(g, h5py.Group):
            return False
        return any(isinstance(g.get(k), h5py.Group) and "images" in g[k] for k in g)

    def _eiger_parts(self) -> list[str]:
        import h5py

        g = self._f.get("/entry/data")
        if not isinstance(g, h5py.Group):
            return []
        return sorted(k for k in g if _EIGER_PART.match(k))

    def _open_eiger_parts(self) -> list:
        import h5py

        g = self._f["/entry/data"]
        parts = []
        for name in self._eiger_parts():
            link = g.get(name, getlink=True)
            target = link.filename if isinstance(link, h5py.ExternalLink) else name
            self._external.append(target)
            try:
                ds = g[name]
            except (KeyError, OSError) as exc:
                raise InputError(f"Eiger data file {target!r} (linked as /entry/data/{name}) cannot "
                                 f"be opened ({exc}); keep the data files next to the master file",
                                 path=self.path) from None
            if not isinstance(ds, h5py.Dataset):
                raise InputError(f"/entry/data/{name} is not a dataset", path=self.path)
            parts.append(ds)
        return parts

    def _auto_dataset(self) -> str:
        import h5py

        f = self._f
        for name in KNOWN_DATASETS:
            if name in f and isinstance(f[name], h5py.Dataset) and f[name].ndim >= 2:
                return name
        signal = self._nxdata_signal()
        if signal:
            return signal
        cands = [(n, s) for n, s in list_image_datasets(f)]
        if not cands:
            one_d = []
            f.visititems(lambda n, o: one_d.append(f"/{n} {o.shape}")
                         if isinstance(o, h5py.Dataset) else None)
            raise InputError("no image dataset (2-D or more) in this file; datasets found: "
                             f"{one_d[:20] or 'none'}", path=self.path)
        return max(cands, key=lambda c: int(np.prod(c[1])))[0]

    def _nxdata_signal(self) -> str | None:
        import h5py

        found: list[str] = []

        def visit(name, obj):
            if isinstance(obj, h5py.Group):
                cls = obj.attrs.get("NX_class", b"")
                cls = cls.decode() if isinstance(cls, bytes) else str(cls)
                sig = obj.attrs.get("signal")
                if cls == "NXdata" and sig is not None:
                    sig = sig.decode() if isinstance(sig, bytes) else str(sig)
                    if sig in obj and isinstance(obj[sig], h5py.Dataset) and obj[sig].ndim >= 2:
                        found.append(f"/{name}/{sig}")

        self._f.visititems(visit)
        return found[0] if found else None

    # ------------------------------------------------------------------ metadata
    def _per_frame(self, values, unit_kind, unit, default) -> np.ndarray | None:
        conv = _convert(np.asarray(values), unit_kind, unit, default)
        if conv is None:
            return None
        conv = np.atleast_1d(conv).astype(np.float64)
        n = len(self)
        if conv.size == 1:
            return np.full(n, conv[0])
        if conv.ndim == 1 and conv.size == n:
            return conv
        return None

    def _read_metadata(self) -> None:
        import h5py

        f = self._f
        self._meta: dict[str, np.ndarray] = {}
        self._extra: dict[str, np.ndarray] = {}
        for field, options in _META_PATHS.items():
            for p, kind, default in options:
                obj = f.get(p)
                if isinstance(obj, h5py.Dataset) and obj.dtype.kind in "iuf" and obj.size <= 10 * len(self) + 1:
                    vals = self._per_frame(obj[()], kind, _unit(obj), default)
                    if vals is not None:
                        self._meta[field] = vals
                        break
        self.detector = ""
        for p in _DETECTOR_NAME_PATHS:
            obj = f.get(p)
            if isinstance(obj, h5py.Dataset) and obj.dtype.kind in "SOU":
                self.detector = _as_string(obj)
                break
        if not self.detector:  # a name kept as an attribute (the file's, or the detector group's)
            grp = f.get("/entry/instrument/detector")
            for attrs, key in ((f.attrs, "detector"),
                               (grp.attrs if isinstance(grp, h5py.Group) else {}, "description")):
                if key in attrs:
                    d = attrs[key]
                    self.detector = d.decode() if isinstance(d, bytes) else str(d)
                    break
        self._bit_depth = None
        bd = f.get("/entry/instrument/detector/bit_depth_image")
        if isinstance(bd, h5py.Dataset) and bd.size == 1 and bd.dtype.kind in "iu":
            self._bit_depth = int(np.asarray(bd[()]).ravel()[0])
        self._saturation = None
        for p in _SATURATION_PATHS:
            obj = f.get(p)
            if isinstance(obj, h5py.Dataset) and obj.size == 1 and obj.dtype.kind in "iuf":
                self._saturation = float(np.asarray(obj[()]).ravel()[0])
                break
        if self.format == "idh5":
            self._read_idh5_metadata()
        # pixel mask: static (frame shape) or per frame
        self._mask_static = None
        self._mask_ds = None
        for p in _MASK_PATHS:
            obj = f.get(p)
            if isinstance(obj, h5py.Dataset):
                if tuple(obj.shape) == self.frame_shape:
                    self._mask_static = np.asarray(obj[()]) != 0
                    break
                if tuple(obj.shape) == (len(self),) + self.frame_shape:
                    self._mask_ds = obj
                    break
        # per-frame provenance written by xtalscreen (source file + index) and geometry
        self._sources = None
        src = f.get("/entry/data/source")
        if isinstance(src, h5py.Dataset) and src.shape == (len(self),):
            self._sources = _Column(src)
            idx = f.get("/entry/data/source_index")
            self._extra["source_index"] = np.asarray(idx[()]) if idx is not None else None
        self.geometry = None
        det = f.get("/entry/instrument/detector")
        if isinstance(det, h5py.Group) and "xtalscreen_geometry" in det.attrs:
            self.geometry = _geometry_from_json(det.attrs["xtalscreen_geometry"])
        dtype_attr = self._parts[0].attrs.get("original_dtype")
        self._orig_dtypes = None
        od = f.get("/entry/data/original_dtype")
        if isinstance(od, h5py.Dataset) and od.shape == (len(self),):
            self._orig_dtypes = _Column(od)
        self._orig_dtype = (dtype_attr.decode() if isinstance(dtype_attr, bytes) else dtype_attr)

    def _read_idh5_metadata(self) -> None:
        import h5py

        g = self._f.get("metadata")
        if not isinstance(g, h5py.Group):
            return
        n = len(self)
        arrays: dict[str, tuple[np.ndarray, str]] = {}
        for k, obj in g.items():
            if isinstance(obj, h5py.Dataset):
                arrays[k] = (np.asarray(obj[()]), _unit(obj))
        # per-chunk metadata groups are concatenated in chunk order
        if all(isinstance(g.get(c), h5py.Group) for c in self._chunk_names) and self._chunk_names:
            keys = set.intersection(*(set(g[c].keys()) for c in self._chunk_names))
            for k in keys:
                vals = [np.atleast_1d(np.asarray(g[c][k][()])) for c in self._chunk_names]
                arrays[k] = (np.concatenate(vals), _unit(g[self._chunk_names[0]][k]))
        for k, (vals, unit) in arrays.items():
            spec = _IDH5_NAMES.get(k.lower())
            if spec is not None and vals.dtype.kind in "iuf":
                field, kind, default = spec
                per = self._per_frame(vals, kind, unit, default)
                if per is not None:
                    self._meta[field] = per
                    continue
            if vals.ndim == 1 and vals.shape[0] == n:
                self._extra[k] = vals
        if "detector" in g.attrs and not self.detector:
            d = g.attrs["detector"]
            self.detector = d.decode() if isinstance(d, bytes) else str(d)

    # ------------------------------------------------------------------ reading
    def __len__(self) -> int:
        return int(self._offsets[-1])

    def _locate(self, i: int) -> tuple[int, int]:
        part = int(np.searchsorted(self._offsets, i, side="right") - 1)
        return part, i - int(self._offsets[part])

    def _raw(self, i: int) -> np.ndarray:
        part, j = self._locate(i)
        ds = self._parts[part]
        if self._single:
            return ds[()]
        b = self._block
        if b is not None and b[0] == part and b[1] <= j < b[1] + len(b[2]):
            return b[2][j - b[1]]
        per_frame = int(np.prod(ds.shape[1:])) * ds.dtype.itemsize
        k = 1
        if ds.chunks is not None and ds.chunks[0] > 1:
            k = max(1, min(ds.chunks[0], _BLOCK_BYTES // max(per_frame, 1)))
        if k == 1:
            self._block = None
            return ds[j]
        start = (j // k) * k
        block = ds[start:min(start + k, ds.shape[0])]
        self._block = (part, start, block)
        return block[j - start]

    def read(self, index: int):
        i = self._check_index(index)
        try:
            raw = self._raw(i)
            mask = self._mask_static
            if self._mask_ds is not None:
                mask = np.asarray(self._mask_ds[i]) != 0
            bd = self._bit_depth
            if (self.auto_mask and bd is not None and raw.dtype.kind == "u"
                    and 0 < bd < 8 * raw.dtype.itemsize):
                # Eiger: counters narrower than the container; 2**bit_depth - 1 marks gaps
                gap = raw == (1 << bd) - 1
                mask = gap if mask is None else (mask | gap)
        except (OSError, ValueError, KeyError, RuntimeError) as exc:
            raise InputError(f"cannot read this frame ({exc}); the file may be truncated or "
                             "corrupt", path=self.path, frame=i) from None
        m = self._meta
        bc = None
        if "beam_center_x" in m and "beam_center_y" in m:
            bx, by = m["beam_center_x"][i], m["beam_center_y"][i]
            if np.isfinite(bx) and np.isfinite(by):
                bc = (float(bx), float(by))

        def val(k):
            if k in m and np.isfinite(m[k][i]):
                return float(m[k][i])
            return None

        meta: dict[str, Any] = {"dataset": self.dataset_path}
        if self._saturation is not None:
            meta["saturation_value"] = self._saturation
        part, j = self._locate(i)
        if self._chunk_names:
            meta["chunk"] = self._chunk_names[part]
            meta["chunk_index"] = j
        if self._external:
            meta["data_file"] = self._external[part]
        for k, v in self._extra.items():
            if v is not None:
                x = v[i]
                meta[k] = x.decode(errors="replace") if isinstance(x, bytes) else x.item() if hasattr(x, "item") else x
        if self._sources is not None:
            s = self._sources[i]
            meta["original_source"] = s.decode(errors="replace") if isinstance(s, bytes) else str(s)
        frame = make_frame(raw, path=self.path, index=i, fmt=self.format, file_mask=mask,
                           auto_mask=self.auto_mask, detector=self.detector,
                           pixel_size=val("pixel_size"), distance=val("distance"),
                           wavelength=val("wavelength"), beam_center=bc, exposure=val("exposure"),
                           geometry=self.geometry, meta=meta)
        od = self._orig_dtype
        if self._orig_dtypes is not None:
            x = self._orig_dtypes[i]
            od = x.decode() if isinstance(x, bytes) else str(x)
        if od:
            frame.dtype = od
        return frame

    def info(self) -> dict[str, Any]:
        d = super().info()
        d.update(dataset=self.dataset_path, frame_shape=list(self.frame_shape),
                 dtype=str(self._parts[0].dtype), detector=self.detector,
                 compression=self._parts[0].compression, parts=len(self._parts))
        return d

    def close(self) -> None:
        self._block = None
        try:
            self._f.close()
        except (OSError, ValueError):  # already closed or the file vanished
            pass


def _geometry_from_json(text) -> Any:
    from xtalscreen.io.geometry import DetectorGeometry, Panel

    if isinstance(text, bytes):
        text = text.decode()
    d = json.loads(text)
    panels = [Panel(**p) for p in d["panels"]]
    return DetectorGeometry(panels, wavelength=d.get("wavelength"), name=d.get("name", ""))


def geometry_to_json(geom) -> str:
    """Serialise a :class:`DetectorGeometry` (panels, wavelength, name) to JSON."""
    import dataclasses

    return json.dumps({"name": geom.name, "wavelength": geom.wavelength,
                       "panels": [dataclasses.asdict(p) for p in geom.panels]})
