"""CBF readers: Pilatus/Eiger miniCBF (fabio) and multi-array imgCIF "full CBF" (pycbf).

Two kinds of CBF file occur in practice:

- **miniCBF** (Pilatus, Eiger, ``.cbf``, ``.cbf.gz``, ``.cbf.bz2``): one 2-D array and a
  free-text header of ``# Key value`` lines. Read with fabio; metadata come from the header
  (see :func:`parse_pilatus_header`); the mask marks ``-1`` (module gaps) and ``-2`` (bad
  pixels) -- in fact every negative value, which a photon counter cannot produce -- and every
  pixel ``>= Count_cutoff`` (saturated). The geometry is
  :meth:`DetectorGeometry.monolithic`.
- **full CBF** with several arrays and imgCIF geometry (for example the LCLS CSPAD files: four
  arrays of 8 x 185 x 388 int32, each split into 16 ASIC sections by
  ``_array_structure_list_section``). Read with pycbf; every detector element (one ASIC
  section, or one array when the file has no sections) becomes one slab of a
  ``(panels, H, W)`` Frame and one :class:`~xtalscreen.io.geometry.Panel` built from the
  imgCIF axis hierarchy (see :func:`geometry_from_cbf`). For the CSPAD files this gives data of
  shape ``(64, 185, 194)``: one slab per ASIC, the natural physical unit (the two ASICs of a
  2x1 sensor are separated by a gap of about 3 pixels, so they are different panels).

Beam centre convention
----------------------
The Pilatus header ``Beam_xy (730.00, 865.00) pixels`` is (fast, slow) in pixels. DIALS/dxtbx
(``FormatCBFMiniPilatus``) put the detector origin -- the outer corner of the first pixel -- at
``-(beam_x * pixel_x, beam_y * pixel_y)`` from the beam, i.e. they read ``Beam_xy`` in the
convention in which pixel ``i`` spans ``[i, i + 1)``. That is xtalscreen's convention too, so
``Beam_xy`` is used unchanged (no half-pixel shift): ``frame.beam_center == (730.0, 865.0)``.

Laboratory frames
-----------------
imgCIF (and dxtbx) put the source along +z (the beam travels along -z) with y up. xtalscreen
geometry follows CrystFEL with the beam along +z. imgCIF coordinates are converted by a 180°
rotation about x: ``(x, y, z) -> (x, -y, -z)``; with it a Pilatus panel (imgCIF fast = +x,
slow = -y) gets fs = +x, ss = +y, exactly like :meth:`DetectorGeometry.monolithic`, so the
assembled picture of a monolithic detector is the raw image. Following dxtbx, the CBFlib
position of pixel index ``(0, 0)`` is taken as the corner of the first pixel.

Examples
--------
>>> from xtalscreen.io.cbf import read_cbf                              # doctest: +SKIP
>>> f = read_cbf("l-cyst_01_00001.cbf")                                # doctest: +SKIP
>>> f.shape, f.wavelength, f.beam_center                               # doctest: +SKIP
((1679, 1475), 0.6889, (730.0, 865.0))
"""

from __future__ import annotations

import bz2
import gzip
import hashlib
import os
import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np

from xtalscreen.errors import InputError
from xtalscreen.io.frame import Frame
from xtalscreen.io.geometry import DetectorGeometry, Panel

__all__ = ["is_cbf", "read_cbf", "iter_cbf", "geometry_from_cbf", "parse_pilatus_header",
           "CBF_SUFFIXES"]

#: File name endings recognised as CBF.
CBF_SUFFIXES = (".cbf", ".cbf.gz", ".cbf.bz2")

_MAGIC = b"###CBF"
_BINARY_MARK = b"--CIF-BINARY-FORMAT-SECTION--"
# imgCIF -> xtalscreen lab frame: 180 degree rotation about x.
_LAB = np.array([1.0, -1.0, -1.0])


# ---------------------------------------------------------------------------- detection
def is_cbf(path: str | os.PathLike) -> bool:
    """True if ``path`` looks like a CBF file.

    Decided by the name (``.cbf``, ``.cbf.gz``, ``.cbf.bz2``, any case) or, for other names of
    existing files, by the ``###CBF`` magic at the start of the (decompressed) file.
    """
    name = str(path).lower()
    if name.endswith(CBF_SUFFIXES):
        return True
    p = Path(path)
    if not p.is_file():
        return False
    try:
        with _open_maybe_compressed(p) as fh:
            return fh.read(len(_MAGIC)) == _MAGIC
    except (OSError, EOFError, ValueError):
        return False


def _open_maybe_compressed(path: Path):
    name = path.name.lower()
    if name.endswith(".gz"):
        return gzip.open(path, "rb")
    if name.endswith(".bz2"):
        return bz2.open(path, "rb")
    return open(path, "rb")


def _read_bytes(path: Path) -> bytes:
    try:
        with _open_maybe_compressed(path) as fh:
            return fh.read()
    except FileNotFoundError:
        raise InputError("no such file", path=str(path)) from None
    except (OSError, EOFError) as exc:  # gzip/bz2 corruption, permissions
        raise InputError(f"cannot read the file ({exc})", path=str(path)) from None


# ---------------------------------------------------------------------------- public API
def read_cbf(path: str | os.PathLike) -> Frame:
    """Read a single-image CBF file (miniCBF or multi-array imgCIF) into a :class:`Frame`.

    Parameters
    ----------
    path : str or PathLike
        ``.cbf``, ``.cbf.gz`` or ``.cbf.bz2`` file.

    Returns
    -------
    Frame
        ``data`` float32 of shape (H, W) for miniCBF, (panels, H, W) for multi-array full CBF;
        ``dtype`` the type in the file; ``mask`` True at sentinel, saturated and untrusted
        pixels; metadata in SI units (m, s) and Å; ``geometry`` always set when the file gives
        pixel size and distance (miniCBF) or imgCIF axes (full CBF).

    Raises
    ------
    InputError
        The file is missing, not CBF, truncated or corrupt (the message names the file).
    """
    p = Path(path)
    raw = _read_bytes(p)
    if _kind(raw, str(p)) == "mini":
        header = raw[: raw.find(_BINARY_MARK)].decode("latin-1")
        return _read_mini(p, raw, header)
    return _read_full(p, raw)


def iter_cbf(path: str | os.PathLike, *, frames: Any = None) -> Iterator[Frame]:
    """Yield the frames of a CBF file (CBF files hold one image, so at most one frame).

    Parameters
    ----------
    path : str or PathLike
    frames : None, int, slice or iterable of int, optional
        Which frames to yield (None: all). Negative indices count from the end.

    Raises
    ------
    InputError
        As :func:`read_cbf`, or when a requested frame index does not exist.
    """
    for i in _select_frames(frames, 1, str(path)):
        frame = read_cbf(path)
        frame.index = i
        yield frame


def _select_frames(frames: Any, n: int, path: str) -> list[int]:
    if frames is None:
        return list(range(n))
    if isinstance(frames, slice):
        return list(range(n))[frames]
    if isinstance(frames, (int, np.integer)):
        frames = [int(frames)]
    out = []
    try:
        items = list(frames)
    except TypeError:
        raise InputError(f"frames must be None, an int, a slice or a list of ints, got "
                         f"{frames!r}", path=path) from None
    for f in items:
        try:
            i = int(f)
        except (TypeError, ValueError):
            raise InputError(f"frame index {f!r} is not an integer", path=path) from None
        j = i + n if i < 0 else i
        if not 0 <= j < n:
            raise InputError(f"frame {i} does not exist: the file holds {n} frame(s) "
                             f"(valid: 0..{n - 1})", path=path)
        out.append(j)
    return out


def geometry_from_cbf(path: str | os.PathLike) -> DetectorGeometry | None:
    """The detector geometry of a CBF file.

    For full CBF files with imgCIF axes (e.g. CSPAD) every detector element becomes one panel
    (slab ``i`` of the ``(panels, H, W)`` data :func:`read_cbf` returns; the pixel values are
    not decoded); for miniCBF files the monolithic detector of the header (None when the header
    lacks pixel size or distance). Export to CrystFEL with
    :func:`xtalscreen.io.crystfel.write_geom`.
    """
    p = Path(path)
    raw = _read_bytes(p)
    if _kind(raw, str(p)) == "mini":
        return read_cbf(p).geometry
    h = _handle(p, raw)
    _, _, g, _ = _layout(h, p, raw)
    return g


def _kind(raw: bytes, path: str) -> str:
    """"mini" (one array + Pilatus-style header) or "full" (imgCIF, pycbf); InputError if
    the bytes are not CBF."""
    head = raw[: 1 << 20]
    start = raw.find(_BINARY_MARK)
    if not head.lstrip().startswith(_MAGIC) and start < 0:
        raise InputError("not a CBF file (no '###CBF' magic and no binary section); check the "
                         "file type", path=path)
    if start < 0:
        raise InputError("CBF file has no binary image section (header only?)", path=path)
    header = raw[:start]
    n_binary = _check_binary_sections(raw, path)
    if n_binary == 1 and (b"_array_data.header_contents" in header
                          or b"_array_structure_list" not in header):
        return "mini"  # one array, free-text header or no imgCIF structure: fabio
    return "full"


_STARTER = b"\x0c\x1a\x04\xd5"
_SIZE = re.compile(rb"X-Binary-Size:\s*(\d+)")


def _check_binary_sections(raw: bytes, path: str) -> int:
    """Count the binary sections, raising InputError when one is cut short (a truncated file
    would otherwise make the decoders read past the end or loop)."""
    n, pos = 0, raw.find(_BINARY_MARK)
    while pos >= 0:
        if raw.startswith(_BINARY_MARK + b"--", pos):  # end mark
            pos = raw.find(_BINARY_MARK, pos + len(_BINARY_MARK) + 2)
            continue
        n += 1
        st = raw.find(_STARTER, pos, pos + 4096)
        m = _SIZE.search(raw, pos, st if st >= 0 else pos + 4096)
        if st < 0 or m is None:
            raise InputError(f"binary section {n} has no complete MIME header; the file is "
                             "truncated or corrupt", path=path)
        size = int(m.group(1))
        have = len(raw) - (st + len(_STARTER))
        if have < size:
            raise InputError(f"binary section {n} is truncated: {have} of {size} bytes present",
                             path=path)
        pos = raw.find(_BINARY_MARK, st + len(_STARTER) + size)
    return n


# ---------------------------------------------------------------------------- miniCBF
_NUM = r"[-+]?(?:\d+\.?\d*|\.\d+)(?:[eE][-+]?\d+)?"


def parse_pilatus_header(text: str) -> dict[str, Any]:
    """Parse the ``# Key value`` lines of a Pilatus/Eiger miniCBF header.

    Parameters
    ----------
    text : str
        The ``_array_data.header_contents`` text (or the whole CBF header).

    Returns
    -------
    dict
        ``raw``: every ``# Key value`` line as ``{key: value-string}``; and, where present,
        ``detector`` (str), ``serial`` (str), ``timestamp`` (str), ``pixel_size`` (m, the fast
        one), ``pixel_size_slow`` (m), ``wavelength`` (Å), ``distance`` (m),
        ``beam_xy`` ((fs, ss) px, pixel ``i`` spans ``[i, i+1)``), ``exposure`` (s),
        ``exposure_period`` (s), ``count_cutoff`` (counts), ``two_theta`` (deg),
        ``start_angle``/``angle_increment`` (deg), ``sensor_thickness`` (m),
        ``threshold`` (eV), ``flux``, ``transmission``.
        Fields that are absent or malformed are left out.
    """
    raw: dict[str, str] = {}
    out: dict[str, Any] = {"raw": raw}
    for line in text.splitlines():
        line = line.strip()
        if not line.startswith("#"):
            continue
        body = line.lstrip("#").strip()
        if not body:
            continue
        if re.match(r"^\d{4}-\d\d-\d\dT", body) or re.match(r"^\d{4}/", body):
            out["timestamp"] = body
            continue
        m = re.match(r"^([A-Za-z][\w\-]*)\s*[:=]?\s*(.*)$", body)
        if not m:
            continue
        key, val = m.group(1), m.group(2).strip()
        raw.setdefault(key, val)

    def num(key: str, idx: int = 0) -> float | None:
        v = raw.get(key)
        if v is None:
            return None
        found = re.findall(_NUM, v)
        return float(found[idx]) if len(found) > idx else None

    det = raw.get("Detector")
    if det:
        name, _, serial = det.partition(",")
        out["detector"] = name.strip()
        s = serial.strip()
        if s.upper().startswith("S/N"):
            s = s[3:].strip()
        if s:
            out["serial"] = s
    fields = {"wavelength": "Wavelength", "distance": "Detector_distance",
              "exposure": "Exposure_time", "exposure_period": "Exposure_period",
              "count_cutoff": "Count_cutoff", "two_theta": "Detector_2theta",
              "start_angle": "Start_angle", "angle_increment": "Angle_increment",
              "threshold": "Threshold_setting", "flux": "Flux",
              "transmission": "Filter_transmission"}
    for k, hk in fields.items():
        v = num(hk)
        if v is not None:
            out[k] = v
    ps = raw.get("Pixel_size")
    if ps:
        vals = [float(v) for v in re.findall(_NUM, ps)]
        scale = 1e-3 if re.search(r"\bmm\b", ps) else 1.0
        if vals:
            out["pixel_size"] = vals[0] * scale
            out["pixel_size_slow"] = (vals[1] if len(vals) > 1 else vals[0]) * scale
    if "distance" in out and re.search(r"\bmm\b", raw.get("Detector_distance", "")):
        out["distance"] *= 1e-3
    bxy = raw.get("Beam_xy")
    if bxy:
        vals = [float(v) for v in re.findall(_NUM, bxy)]
        if len(vals) >= 2:
            out["beam_xy"] = (vals[0], vals[1])
    sil = raw.get("Silicon") or raw.get("CdTe")
    if sil:
        v = re.findall(_NUM, sil)
        if v:
            out["sensor_thickness"] = float(v[-1])
    return out


def _read_mini(path: Path, raw: bytes, header: str) -> Frame:
    from fabio.cbfimage import CbfImage

    img = CbfImage()
    try:
        img.read(_Buffer(raw, str(path)))
        data = img.data
    except Exception as exc:  # fabio raises many types for corrupt/truncated files
        raise InputError(f"cannot decode the miniCBF image ({type(exc).__name__}: {exc}); "
                         "the file may be truncated or corrupt", path=str(path)) from None
    if data is None or np.ndim(data) != 2:
        raise InputError("miniCBF image has no 2-D data array", path=str(path))
    data = np.asarray(data)
    hdr = parse_pilatus_header(header)
    h, w = data.shape
    n_expected = _int_or_none(img.header.get("X-Binary-Number-of-Elements"))
    if n_expected is not None and n_expected != h * w:
        raise InputError(f"miniCBF declares {n_expected} pixels but decodes {h}x{w}; the file "
                         "is corrupt", path=str(path))

    mask = _sentinel_mask(data, hdr.get("count_cutoff"))
    pixel_size = hdr.get("pixel_size")
    distance = hdr.get("distance")
    beam = hdr.get("beam_xy")
    detector = hdr.get("detector", "")
    geometry = None
    if pixel_size and distance and pixel_size > 0 and distance > 0:
        geometry = DetectorGeometry.monolithic((h, w), pixel_size=pixel_size, distance=distance,
                                               beam_center=beam, name=detector)
        geometry.wavelength = hdr.get("wavelength")
    meta: dict[str, Any] = {k: v for k, v in hdr.items() if k not in (
        "raw", "detector", "pixel_size", "distance", "beam_xy", "wavelength", "exposure")}
    meta["header"] = hdr["raw"]
    meta["cbf_kind"] = "mini"
    if "count_cutoff" in hdr:
        meta["saturation"] = hdr["count_cutoff"]
    if hdr.get("two_theta"):
        # the geometry is built untilted; Beam_xy refers to the untilted detector
        meta["geometry_note"] = (f"detector 2theta = {hdr['two_theta']} deg is not applied to the "
                                 "geometry (flat detector perpendicular to the beam assumed)")
    return Frame(data=data, mask=mask, source=str(path), index=0, format="cbf",
                 detector=detector, pixel_size=pixel_size, distance=distance,
                 wavelength=hdr.get("wavelength"), beam_center=beam,
                 exposure=hdr.get("exposure"), dtype=str(data.dtype), geometry=geometry,
                 meta=meta)


class _Buffer:
    """A seekable in-memory file with a name, for fabio (which sniffs compression by name)."""

    def __init__(self, raw: bytes, name: str):
        import io

        self._bio = io.BytesIO(raw)
        self.name = name.removesuffix(".gz").removesuffix(".bz2")

    def __getattr__(self, item):
        return getattr(self._bio, item)

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        return False


def _int_or_none(v) -> int | None:
    try:
        return int(str(v).strip())
    except (TypeError, ValueError):
        return None


def _sentinel_mask(data: np.ndarray, cutoff: float | None) -> np.ndarray:
    """Negative values (-1 gaps, -2 bad), all-ones of unsigned types, and >= cutoff."""
    if np.issubdtype(data.dtype, np.signedinteger) or np.issubdtype(data.dtype, np.floating):
        mask = data < 0
    elif np.issubdtype(data.dtype, np.unsignedinteger):
        mask = data == np.iinfo(data.dtype).max
    else:
        mask = np.zeros(data.shape, dtype=bool)
    if cutoff is not None and cutoff > 0:
        mask |= data >= cutoff
    return mask


# ---------------------------------------------------------------------------- full CBF (pycbf)
def _pycbf():
    import warnings

    with warnings.catch_warnings():  # SWIG types lack __module__ (DeprecationWarning on import)
        warnings.simplefilter("ignore", DeprecationWarning)
        import pycbf
    return pycbf


def _handle(path: Path, raw: bytes):
    pycbf = _pycbf()
    h = pycbf.cbf_handle_struct()
    try:
        h.read_buffer(raw, pycbf.MSG_DIGEST | pycbf.CBF_PARSE_WIDE)
    except Exception as exc:  # pycbf raises bare Exception("CBFlib Error(s): ...")
        raise InputError(f"cannot parse the CBF file ({str(exc).strip()}); it may be truncated "
                         "or corrupt", path=str(path)) from None
    return h


def _rows(h, category: str) -> list[dict[str, str | None]]:
    """All rows of a CIF category as dicts (None for '.'/'?' values); [] if absent."""
    try:
        h.find_category(category.encode())
    except Exception:  # CBF_NOTFOUND
        return []
    ncol, nrow = h.count_columns(), h.count_rows()
    names = []
    for j in range(ncol):
        h.select_column(j)
        names.append(h.column_name().decode())
    out = []
    for i in range(nrow):
        row: dict[str, str | None] = {}
        for j, name in enumerate(names):
            h.select_column(j)
            h.select_row(i)
            try:
                t = h.get_typeofvalue()
                if t in (b"null", b"bnry"):
                    row[name] = None
                else:
                    v = h.get_value().decode("latin-1")
                    row[name] = None if v in (".", "?") else v
            except Exception:  # missing value in a short row
                row[name] = None
        out.append(row)
    return out


def _value(h, category: str, column: str) -> str | None:
    for r in _rows(h, category):
        if r.get(column) is not None:
            return r[column]
    return None


class _Element:
    __slots__ = ("name", "array_id", "sl", "shape")

    def __init__(self, name, array_id, sl, shape):
        self.name, self.array_id, self.sl, self.shape = name, array_id, sl, shape


def _elements(h, path: Path) -> tuple[list[_Element], dict[str, tuple[int, ...]]]:
    """Detector elements (sections or arrays) and the (slow..fast) shape of every array."""
    asl = _rows(h, "array_structure_list")
    array_shapes: dict[str, dict[int, int]] = {}
    for r in asl:
        if r.get("array_section_id"):
            continue
        aid, idx, dim = r.get("array_id"), r.get("index"), r.get("dimension")
        if aid is None or idx is None or dim is None:
            continue
        array_shapes.setdefault(aid, {})[int(idx)] = int(dim)
    shapes = {aid: tuple(d[k] for k in sorted(d, reverse=True)) for aid, d in array_shapes.items()}
    sections = _rows(h, "array_structure_list_section")
    elements: list[_Element] = []
    if sections:
        by_id: dict[str, dict] = {}
        for r in sections:
            sid = r.get("id")
            if sid is None:
                continue
            e = by_id.setdefault(sid, {"array_id": r.get("array_id"), "ranges": {}})
            e["ranges"][int(r["index"])] = (int(r["start"]), int(r["end"]))
        for sid, e in by_id.items():
            aid = e["array_id"]
            if aid not in shapes:
                raise InputError(f"section {sid} refers to unknown array {aid}", path=str(path))
            nd = len(shapes[aid])
            sl = []
            for k in range(nd, 0, -1):  # slowest first; imgCIF index 1 is the fastest
                a, b = e["ranges"].get(k, (1, shapes[aid][nd - k]))
                sl.append(slice(min(a, b) - 1, max(a, b)))
            shp = tuple(s.stop - s.start for s in sl)
            elements.append(_Element(sid, aid, tuple(sl), shp))
    else:
        for aid, shp in shapes.items():
            elements.append(_Element(aid, aid, tuple(slice(0, n) for n in shp), shp))
    if not elements:
        raise InputError("no image arrays described in the CBF header (array_structure_list)",
                         path=str(path))
    return elements, shapes


def _read_arrays(h, path: Path, shapes: dict[str, tuple[int, ...]]) -> tuple[dict, str]:
    h.find_category(b"array_data")
    n = h.count_rows()
    arrays, dtype = {}, ""
    only = next(iter(shapes)) if len(shapes) == 1 else None
    for i in range(n):
        try:
            h.find_column(b"array_id")
            h.select_row(i)
            aid = h.get_value().decode()
        except Exception:  # miniCBF-style array_data without array_id
            if only is None:
                raise InputError("array_data rows name no array_id", path=str(path)) from None
            aid = only
        h.find_column(b"data")
        h.select_row(i)
        try:
            if h.get_typeofvalue().find(b"bnry") < 0:
                continue
            p = h.get_integerarrayparameters_wdims_fs()
            # (compression, binary_id, elsize, elsigned, elunsigned, elements, minel, maxel,
            #  byteorder, dimfast, dimmid, dimslow, padding)
            elsize, signed, nel = int(p[2]), bool(p[3]), int(p[5])
            s = h.get_integerarray_as_string()
        except Exception as exc:
            try:  # real-valued arrays
                p = h.get_realarrayparameters_wdims_fs()
                elsize, nel = int(p[2]), int(p[3])  # (compr, id, elsize, elements, ...)
                s = h.get_realarray_as_string()
                a = np.frombuffer(s, dtype=f"<f{elsize}")
            except Exception:  # pycbf raises bare Exception; reported below as InputError
                raise InputError(f"cannot decode array {aid} ({str(exc).strip()}); the file may "
                                 "be truncated or corrupt", path=str(path)) from None
        else:
            a = np.frombuffer(s, dtype=f"={'i' if signed else 'u'}{elsize}")  # native order
        shp = shapes.get(aid) or tuple(int(v) for v in reversed(p[-4:-1]) if int(v) > 1)
        if a.size != int(np.prod(shp)) or a.size != nel:
            raise InputError(f"array {aid} has {a.size} values, the header promises {shp}; the "
                             "file is truncated or corrupt", path=str(path))
        arrays[aid] = a.reshape(shp)
        dtype = str(a.dtype)
    return arrays, dtype


def _read_full(path: Path, raw: bytes) -> Frame:
    h = _handle(path, raw)
    elements, shapes, geometry, info = _layout(h, path, raw)
    arrays, dtype = _read_arrays(h, path, shapes)
    missing = [e.array_id for e in elements if e.array_id not in arrays]
    if missing:
        raise InputError(f"array(s) {sorted(set(missing))} described in the header have no "
                         "binary data", path=str(path))
    data, valid = _stack(elements, arrays)
    mask = ~valid
    under, over = info.get("undefined_value"), info.get("overload")
    if under is not None:
        mask |= data <= under
    if over is not None:
        mask |= data >= over
    meta: dict[str, Any] = {"cbf_kind": "full", "panel_names": [e.name for e in elements],
                            "arrays": {k: list(v.shape) for k, v in arrays.items()}}
    meta.update({k: v for k, v in info.items() if k not in ("pixel_size", "distance",
                                                            "wavelength", "detector")})
    beam = geometry.beam_center_px(data.shape) if geometry is not None else None
    return Frame(data=data, mask=mask, source=str(path), index=0, format="cbf-multi" if
                 data.ndim == 3 else "cbf", detector=info.get("detector", ""),
                 pixel_size=info.get("pixel_size"), distance=info.get("distance"),
                 wavelength=info.get("wavelength"), beam_center=beam,
                 exposure=info.get("exposure"), dtype=dtype, geometry=geometry, meta=meta)


def _stack(elements: list[_Element], arrays: dict) -> tuple[np.ndarray, np.ndarray]:
    """(panels, H, W) data (or (H, W) for one element) and the validity of each pixel."""
    blocks = []
    for e in elements:
        b = arrays[e.array_id][e.sl]
        b = b.reshape(b.shape[-2:]) if b.ndim > 2 and int(np.prod(b.shape[:-2])) == 1 else b
        if b.ndim != 2:
            b = b.reshape(-1, b.shape[-1])
        blocks.append(b)
    if len(blocks) == 1:
        return blocks[0].astype(np.float32), np.ones(blocks[0].shape, dtype=bool)
    hh = max(b.shape[0] for b in blocks)
    ww = max(b.shape[1] for b in blocks)
    data = np.zeros((len(blocks), hh, ww), dtype=np.float32)
    valid = np.zeros(data.shape, dtype=bool)
    for i, b in enumerate(blocks):
        data[i, : b.shape[0], : b.shape[1]] = b
        valid[i, : b.shape[0], : b.shape[1]] = True
    return data, valid


_GEOM_CACHE: dict[str, tuple] = {}


_PER_FRAME = re.compile(rb"^[ \t]*(data_|_diffrn_scan_frame\.date|_diffrn_scan_frame\."
                        rb"integration_time|_diffrn_radiation_wavelength\.wavelength)[^\n]*", re.M)


def _geometry_key(raw: bytes) -> str:
    """Hash of the text outside the binary sections, minus the per-frame lines (block name,
    date, integration time, wavelength): equal for frames of one detector and run."""
    start = raw.find(_BINARY_MARK)
    end = raw.rfind(_BINARY_MARK + b"--")
    text = raw[:start] + (raw[end:] if end > start else b"")
    return hashlib.sha1(_PER_FRAME.sub(b"", text)).hexdigest()


def _layout(h, path: Path, raw: bytes):
    """(elements, array shapes, geometry, detector info), cached by the header text that
    defines them, so the frames of one run parse the imgCIF structure once."""
    key = _geometry_key(raw)
    if key in _GEOM_CACHE:
        elements, shapes, g, info = _GEOM_CACHE[key]
        info = dict(info, **_frame_info(h))
        # frames of one detector share the panels and the assembly cache: treat as read-only
        return elements, shapes, DetectorGeometry(g.panels, wavelength=info.get("wavelength"),
                                                  name=g.name, _cache=g._cache,
                                                  meta=g.meta), info
    elements, shapes = _elements(h, path)
    g, info = _build_geometry(h, path, elements)
    if len(_GEOM_CACHE) > 16:
        _GEOM_CACHE.clear()
    _GEOM_CACHE[key] = (elements, shapes, g, info)
    return _layout(h, path, raw)


def _rigid_groups(h, names: list[str], surface: dict[str, str]) -> dict[str, Any]:
    """CrystFEL-style rigid groups from the imgCIF axis hierarchy: one group per ancestor axis
    of an intermediate ``equipment_component`` (e.g. each CSPAD sensor and quadrant), one
    collection per component. Empty when the file has no ``_axis.equipment_component``."""
    axes = {r["id"]: r for r in _rows(h, "axis") if r.get("id")}
    if not axes or not any(r.get("equipment_component") for r in axes.values()):
        return {}
    groups: dict[str, list[str]] = {}
    component_of: dict[str, str] = {}
    for nm in names:
        ax = surface.get(nm)
        own = axes.get(ax, {}).get("equipment_component")
        seen = set()
        while ax in axes and ax not in seen:
            seen.add(ax)
            comp = axes[ax].get("equipment_component")
            if comp and comp != own:
                gname = re.sub(r"[^0-9a-z_]", "", ax.lower().removeprefix("fs_"))
                groups.setdefault(gname, []).append(nm)
                component_of[gname] = comp
            ax = axes[ax].get("depends_on")
    # keep groups that are real subsets (drop the whole-detector arm)
    groups = {g: m for g, m in groups.items() if 1 < len(m) < len(names)}
    collections: dict[str, list[str]] = {}
    for g in groups:
        comp = component_of[g].removeprefix("detector_")
        collections.setdefault(comp + "s", []).append(g)
    return {"rigid_groups": groups, "rigid_group_collections": collections} if groups else {}


def _frame_info(h) -> dict[str, Any]:
    """Per-frame metadata (wavelength, exposure, timestamp) of a full CBF."""
    info: dict[str, Any] = {}
    try:
        info["wavelength"] = float(h.get_wavelength())
    except Exception:  # no _diffrn_radiation_wavelength; pycbf raises bare Exception
        wl = _value(h, "diffrn_radiation_wavelength", "wavelength")
        if wl is not None:
            info["wavelength"] = float(wl)
    it = _value(h, "diffrn_scan_frame", "integration_time")
    if it is not None and float(it) > 0:
        info["exposure"] = float(it)
    date = _value(h, "diffrn_scan_frame", "date")
    if date:
        info["timestamp"] = date
    return info


def _build_geometry(h, path: Path, elements: list[_Element]):
    info: dict[str, Any] = {}
    det_type = _value(h, "diffrn_detector", "type") or _value(h, "diffrn_detector", "id") or ""
    info["detector"] = "CSPAD" if det_type.replace(" ", "").upper() == "CSPAD" else det_type
    for col, key in (("undefined_value", "undefined_value"), ("overload", "overload"),
                     ("gain", "gain")):
        v = _value(h, "array_intensities", col)
        if v is not None:
            try:
                info[key] = float(v)
            except ValueError:
                pass

    # map detector objects (constructed by element number) to element names via their surface
    # axis -> array_structure_list.axis_set_id -> array_section_id / array_id
    asl = _rows(h, "array_structure_list")
    axis_to_name: dict[str, str] = {}
    for r in asl:
        ax = r.get("axis_set_id")
        nm = r.get("array_section_id") or r.get("array_id")
        if ax and nm:
            axis_to_name[ax] = nm
    for r in _rows(h, "array_structure_list_axis"):
        if r.get("axis_id") and r.get("axis_set_id") in axis_to_name:
            axis_to_name.setdefault(r["axis_id"], axis_to_name[r["axis_set_id"]])
    names = [e.name for e in elements]
    found: dict[str, tuple] = {}
    surface: dict[str, str] = {}
    for i in range(len(elements)):
        try:
            d = h.construct_detector(i)
        except Exception as exc:
            raise InputError(f"cannot build the imgCIF geometry of detector element {i} "
                             f"({str(exc).strip()})", path=str(path)) from None
        try:
            ax0 = d.get_detector_surface_axes(0).decode()
            o = np.array(d.get_pixel_coordinates_fs(0, 0))
            f = np.array(d.get_pixel_coordinates_fs(1, 0)) - o
            s = np.array(d.get_pixel_coordinates_fs(0, 1)) - o
        finally:
            d.__swig_destroy__(d)
        nm = axis_to_name.get(ax0, names[i] if len(found) == i else None)
        if nm is None or nm not in names:
            nm = names[i]
        found[nm] = (o, f, s)
        surface[nm] = ax0
    panels = []
    px_sizes = []
    for slab, e in enumerate(elements):
        if e.name not in found:
            raise InputError(f"no imgCIF geometry for detector element {e.name}", path=str(path))
        o, f, s = (v * _LAB for v in found[e.name])
        px = float(np.linalg.norm(f))  # mm
        if not px > 0:
            raise InputError(f"zero pixel size for detector element {e.name}", path=str(path))
        px_sizes.append(px)
        hh, ww = e.shape[-2], e.shape[-1]
        panels.append(Panel(
            name=e.name, min_fs=0, max_fs=ww - 1, min_ss=0, max_ss=hh - 1,
            corner_x=float(o[0] / px), corner_y=float(o[1] / px),
            fs=tuple(f / px), ss=tuple(s / px), res=1.0 / (px * 1e-3),
            clen=float(o[2] * 1e-3), coffset=0.0,
            slab=slab if len(elements) > 1 else None,
            adu_per_photon=None, max_adu=info.get("overload")))
    info["pixel_size"] = float(np.median(px_sizes)) * 1e-3
    # distance: along the beam to the plane through the panels' centres
    zs = []
    for p in panels:
        zs.append(p.clen + (p.fs[2] * p.width + p.ss[2] * p.height) / 2 / p.res)
    info["distance"] = float(np.mean(zs))
    g = DetectorGeometry(panels, name=info.get("detector") or Path(path).name,
                         meta=_rigid_groups(h, [e.name for e in elements], surface))
    return g, info
