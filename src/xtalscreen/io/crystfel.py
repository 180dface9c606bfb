"""CrystFEL geometry files (``.geom``): read, write, and apply to frames.

The format is described in ``man crystfel_geometry``. A file is a list of ``key = value`` lines;
``;`` starts a comment. ``panel/key = value`` sets a key of one panel; a key without a panel
sets a default for the panels *first mentioned after it*. Supported keys:

- per panel (or as defaults): ``min_fs max_fs min_ss max_ss`` (inclusive pixel ranges),
  ``corner_x corner_y`` (pixels), ``fs ss`` (vectors such as ``-0.0001x +1.0000y +0.0z``),
  ``res`` (pixels per metre), ``clen`` (metres, or an HDF5 path: kept in ``panel.meta`` and
  given later with ``read_geom(..., clen=)`` or :func:`set_clen`), ``coffset`` (m),
  ``adu_per_photon``, ``adu_per_eV``, ``max_adu``, ``data`` (HDF5 path), ``dim0``,
  ``dim1`` ... (``%`` = frame number, an integer = slab of 3-D data, ``ss``, ``fs``),
  ``mask``, ``mask_file``, ``mask_good``, ``mask_bad``, ``saturation_map``,
  ``saturation_map_file``, ``flag_lessthan``, ``flag_morethan``, ``flag_equal``, ``no_index``
  and the ``maskN_*`` keys (kept for round trips);
- global: ``photon_energy`` (eV, or an HDF5 path) or ``wavelength`` (m, or with unit ``A``),
  ``rigid_group_NAME = p1,p2``, ``rigid_group_collection_NAME = g1,g2``, and a few
  kept-as-is keys (``photon_energy_bandwidth``, ``photon_energy_scale``, ``peak_list``,
  ``peak_list_type``, ``detector_shift_x``, ``detector_shift_y``);
- bad regions: ``badNAME/min_x max_x min_y max_y`` (lab pixels) or
  ``badNAME/panel`` with ``min_fs max_fs min_ss max_ss`` (data pixels of that panel).

Unknown keys raise a :class:`UserWarning` (with the line number) and are skipped; malformed
lines raise :class:`~xtalscreen.errors.InputError` naming the file and the line number.

Data layout: panels with a numeric ``dimN`` live in slab ``N``'s value of 3-D data
``(slabs, H, W)`` (``slab``); panels without one are blocks of 2-D data. ``%`` dimensions are the
frame axis of multi-event HDF5 files, consumed by the reader, not part of a :class:`Frame`.

Examples
--------
>>> g = read_geom('''
... res = 5000
... clen = 0.1
... q0/min_fs = 0
... q0/max_fs = 9
... q0/min_ss = 0
... q0/max_ss = 9
... q0/corner_x = -5
... q0/corner_y = -5
... q0/fs = +1x
... q0/ss = +1y
... ''')
>>> g.panels[0].res, g.data_shape()
(5000.0, (10, 10))
"""

from __future__ import annotations

import math
import os
import re
import warnings
from pathlib import Path
from typing import Any

import numpy as np

from xtalscreen.errors import InputError, ParameterError, check_positive
from xtalscreen.io.geometry import DetectorGeometry, Panel

__all__ = ["read_geom", "write_geom", "set_clen", "bad_region_mask", "apply_geometry",
           "HC_EV_ANGSTROM"]

#: h*c in eV * Å: wavelength [Å] = HC_EV_ANGSTROM / photon energy [eV].
HC_EV_ANGSTROM = 12398.419843320026

_INT_KEYS = ("min_fs", "max_fs", "min_ss", "max_ss")
_FLOAT_KEYS = ("corner_x", "corner_y", "res", "coffset", "adu_per_photon", "adu_per_eV",
               "max_adu")
_VEC_KEYS = ("fs", "ss")
# panel keys kept verbatim for round trips (not interpreted here)
_KEEP_KEYS = ("data", "mask", "mask_file", "mask_good", "mask_bad", "saturation_map",
              "saturation_map_file", "flag_lessthan", "flag_morethan", "flag_equal", "no_index",
              "rail_direction", "clen_for_centering")
_MASKN = re.compile(r"^mask\d+_(data|file|goodbits|badbits)$")
_GLOBAL_KEEP = ("photon_energy_bandwidth", "photon_energy_scale", "peak_list",
                "peak_list_type", "detector_shift_x", "detector_shift_y", "bandwidth",
                "electron_voltage")
_BAD_KEYS = ("min_x", "max_x", "min_y", "max_y", "min_fs", "max_fs", "min_ss", "max_ss",
             "panel")
_VEC_TERM = re.compile(r"([+-]?(?:\d+\.?\d*|\.\d+)?(?:[eE][+-]?\d+)?)([xyz])")


# ---------------------------------------------------------------------------- reading
def read_geom(source: str | os.PathLike, *, clen: float | None = None) -> DetectorGeometry:
    """Read a CrystFEL geometry file (or its text) into a :class:`DetectorGeometry`.

    Parameters
    ----------
    source : str or PathLike
        Path of a ``.geom`` file, or the text of one (any string containing a newline or
        ``=``).
    clen : float, optional
        Camera length (m) for panels whose ``clen`` is an HDF5 path (per-event encoder value);
        without it those panels get ``clen = nan`` and ``panel.meta["clen_path"]`` until
        :func:`set_clen` is called.

    Returns
    -------
    DetectorGeometry
        ``name`` is the file path (``"<text>"`` for text); ``wavelength`` (Å) from
        ``photon_energy``/``wavelength`` when numeric; ``meta`` holds ``bad_regions``,
        ``rigid_groups``, ``rigid_group_collections``, ``source`` and other global keys.

    Raises
    ------
    InputError
        Unreadable file, malformed line (message names the line number), a panel missing a
        required key, inconsistent 2-D/3-D layout, unknown panel in a bad region or rigid group.
    """
    text, name = _source_text(source)
    return _parse(text, name, clen)


def _source_text(source) -> tuple[str, str]:
    if isinstance(source, os.PathLike) or (isinstance(source, str) and "\n" not in source
                                           and "=" not in source):
        p = Path(source)
        try:
            return p.read_text(encoding="utf-8", errors="replace"), str(p)
        except FileNotFoundError:
            raise InputError("geometry file not found; give the path of a CrystFEL .geom file",
                             path=str(p)) from None
        except OSError as exc:
            raise InputError(f"cannot read the geometry file ({exc})", path=str(p)) from None
    if not isinstance(source, str):
        raise ParameterError(f"read_geom needs a path or the text of a .geom file, got "
                             f"{type(source).__name__}")
    return source, "<text>"


def _fail(name: str, lineno: int | None, msg: str):
    where = f"line {lineno}: " if lineno else ""
    raise InputError(where + msg, path=name)


def _parse_number(value: str, name: str, lineno: int, key: str, integer: bool = False):
    v = value.split()[0] if value.split() else value
    try:
        if integer:
            f = float(v)
            if f != int(f):
                raise ValueError
            return int(f)
        return float(v)
    except ValueError:
        _fail(name, lineno, f"{key} = {value!r}: expected {'an integer' if integer else 'a number'}")


def _parse_vector(value: str, name: str, lineno: int, key: str) -> tuple[float, float, float]:
    s = value.replace(" ", "").replace("\t", "")
    terms = list(_VEC_TERM.finditer(s))
    if not terms or "".join(t.group(0) for t in terms) != s:
        _fail(name, lineno, f"{key} = {value!r}: expected a vector like '-0.0001x +1.0000y'")
    out = {"x": 0.0, "y": 0.0, "z": 0.0}
    for t in terms:
        c = t.group(1)
        coef = 1.0 if c in ("", "+") else -1.0 if c == "-" else float(c)
        out[t.group(2)] += coef
    return out["x"], out["y"], out["z"]


def _is_number(value: str) -> bool:
    try:
        float(value.split()[0])
        return True
    except (ValueError, IndexError):
        return False


def _energy_ev(value: str) -> float | None:
    """``photon_energy`` value in eV, or None when it is an HDF5 path."""
    parts = value.split()
    if not parts or not _is_number(parts[0]):
        return None
    e = float(parts[0])
    unit = parts[1].lower() if len(parts) > 1 else "ev"
    return e * 1000.0 if unit == "kev" else e


def _wavelength_a(value: str) -> float | None:
    parts = value.split()
    if not parts or not _is_number(parts[0]):
        return None
    w = float(parts[0])
    unit = parts[1] if len(parts) > 1 else ("A" if w > 1e-6 else "m")
    return w * 1e10 if unit == "m" else w


def _parse(text: str, name: str, clen_override: float | None) -> DetectorGeometry:
    defaults: dict[str, tuple[str, int]] = {}  # key -> (value, line)
    panels: dict[str, dict[str, tuple[str, int]]] = {}
    bads: dict[str, dict[str, tuple[str, int]]] = {}
    rigid: dict[str, list[str]] = {}
    collections: dict[str, list[str]] = {}
    glob: dict[str, str] = {}
    rigid_lines: dict[str, int] = {}

    for lineno, line in enumerate(text.splitlines(), start=1):
        line = line.split(";", 1)[0].strip()
        if not line:
            continue
        if "=" not in line:
            _fail(name, lineno, f"expected 'key = value', got {line!r}")
        key, value = (s.strip() for s in line.split("=", 1))
        if not key:
            _fail(name, lineno, f"missing key before '=' in {line!r}")
        if "/" in key:
            who, _, k = key.partition("/")
            if not who or not k or "/" in k:
                _fail(name, lineno, f"bad key {key!r}: expected 'panel/key'")
            if who.startswith("bad"):
                if k not in _BAD_KEYS:
                    _warn(name, lineno, f"unknown bad-region key {key!r} ignored")
                    continue
                bads.setdefault(who, {})[k] = (value, lineno)
                continue
            if not _known_panel_key(k):
                _warn(name, lineno, f"unknown panel key {key!r} ignored")
                continue
            if who not in panels:
                panels[who] = dict(defaults)
            panels[who][k] = (value, lineno)
            continue
        # global keys
        if key.startswith("rigid_group_collection_"):
            collections[key[len("rigid_group_collection_"):]] = _split_list(value)
            rigid_lines["c:" + key] = lineno
        elif key.startswith("rigid_group_"):
            rigid[key[len("rigid_group_"):]] = _split_list(value)
            rigid_lines[key[len("rigid_group_"):]] = lineno
        elif key in ("photon_energy", "wavelength") or key in _GLOBAL_KEEP:
            glob[key] = value
        elif _known_panel_key(key):
            defaults[key] = (value, lineno)
        else:
            _warn(name, lineno, f"unknown key {key!r} ignored")

    if not panels:
        _fail(name, None, "no panels defined (expected lines like 'p0/min_fs = 0')")

    wavelength = None
    energy = None
    meta: dict[str, Any] = {"source": name}
    if "photon_energy" in glob:
        energy = _energy_ev(glob["photon_energy"])
        if energy is None:
            meta["photon_energy_path"] = glob["photon_energy"]
        elif not energy > 0:
            _fail(name, None, f"photon_energy must be > 0 eV, got {glob['photon_energy']!r}")
        else:
            wavelength = HC_EV_ANGSTROM / energy
    if "wavelength" in glob and wavelength is None:
        wavelength = _wavelength_a(glob["wavelength"])
        if wavelength is None:
            meta["wavelength_path"] = glob["wavelength"]
        elif wavelength > 0:
            energy = HC_EV_ANGSTROM / wavelength
    meta["global"] = {k: v for k, v in glob.items() if k not in ("photon_energy", "wavelength")}

    built = [_build_panel(pn, keys, name, clen_override, energy) for pn, keys in panels.items()]
    slabs = {p.slab is None for p in built}
    if len(slabs) != 1:
        two_d = [p.name for p in built if p.slab is None][:3]
        _fail(name, None, f"some panels give a slab dimension (3-D data) and others do not "
                          f"(e.g. {two_d}); give every panel the same dim0/dim1/... layout")
    names = {p.name for p in built}
    meta["bad_regions"] = [_build_bad(b, keys, name, names) for b, keys in bads.items()]
    for g, members in rigid.items():
        unknown = [m for m in members if m not in names]
        if unknown:
            _fail(name, rigid_lines[g], f"rigid_group_{g} names unknown panel(s) {unknown}")
    for c, groups in collections.items():
        unknown = [m for m in groups if m not in rigid]
        if unknown:
            _fail(name, rigid_lines["c:rigid_group_collection_" + c],
                  f"rigid_group_collection_{c} names unknown rigid group(s) {unknown}")
    meta["rigid_groups"] = rigid
    meta["rigid_group_collections"] = collections
    if energy is not None:
        meta["photon_energy_ev"] = energy
    try:
        return DetectorGeometry(built, wavelength=wavelength, name=name, meta=meta)
    except ParameterError as exc:
        raise InputError(str(exc), path=name) from None


def _known_panel_key(k: str) -> bool:
    return (k in _INT_KEYS or k in _FLOAT_KEYS or k in _VEC_KEYS or k in _KEEP_KEYS
            or k == "clen" or re.fullmatch(r"dim\d+", k) is not None or _MASKN.match(k)
            is not None)


def _split_list(value: str) -> list[str]:
    return [v.strip() for v in value.split(",") if v.strip()]


def _warn(name: str, lineno: int, msg: str) -> None:
    warnings.warn(f"{name}: line {lineno}: {msg}", UserWarning, stacklevel=4)


def _build_panel(pname: str, keys: dict[str, tuple[str, int]], name: str,
                 clen_override: float | None, energy: float | None) -> Panel:
    def get(k):
        return keys[k] if k in keys else (None, None)

    first_line = min(ln for _, ln in keys.values())
    # parse what is there first (so a malformed value is reported at its line), then check
    ints = {k: _parse_number(keys[k][0], name, keys[k][1], f"{pname}/{k}", integer=True)
            for k in _INT_KEYS if k in keys}
    floats = {k: _parse_number(keys[k][0], name, keys[k][1], f"{pname}/{k}")
              for k in _FLOAT_KEYS if k in keys}
    vecs = {k: _parse_vector(keys[k][0], name, keys[k][1], f"{pname}/{k}")
            for k in _VEC_KEYS if k in keys}
    missing = [k for k in (*_INT_KEYS, "corner_x", "corner_y", "fs", "ss", "res") if k not in keys]
    if missing:
        _fail(name, first_line, f"panel {pname!r} lacks {', '.join(missing)}")
    meta: dict[str, Any] = {}
    v, ln = get("clen")
    if clen_override is not None:
        clen = check_positive("clen", clen_override, "m")
        if v is not None and not _is_number(v):
            meta["clen_path"] = v
    elif v is None:
        _fail(name, first_line, f"panel {pname!r} has no clen (camera length, m); add "
                                "'clen = 0.1' or give clen= when reading")
    elif _is_number(v):
        clen = _parse_number(v, name, ln, f"{pname}/clen")
    else:
        clen = math.nan
        meta["clen_path"] = v
    if not floats["res"] > 0:
        _fail(name, keys["res"][1], f"{pname}/res must be > 0 pixels per metre")
    for k in _KEEP_KEYS:
        if k in keys:
            meta[k] = keys[k][0]
    for k in keys:
        if _MASKN.match(k):
            meta[k] = keys[k][0]
    adu_per_photon = floats.get("adu_per_photon")
    if "adu_per_eV" in floats:
        meta["adu_per_eV"] = floats["adu_per_eV"]
        if adu_per_photon is None and energy is not None:
            adu_per_photon = floats["adu_per_eV"] * energy
    # data layout
    dims = sorted((int(k[3:]), keys[k][0]) for k in keys if re.fullmatch(r"dim\d+", k))
    slab = None
    if dims:
        order = [d for _, d in dims]
        meta["dims"] = order
        kept = [d for d in order if d != "%"]
        if kept[-2:] != ["ss", "fs"] or kept.count("ss") != 1 or kept.count("fs") != 1:
            ln = keys[f"dim{dims[0][0]}"][1]
            _fail(name, ln, f"panel {pname!r}: dimensions {order} are not supported; the last two "
                            "non-'%' dimensions must be 'ss' then 'fs'")
        fixed = kept[:-2]
        if len(fixed) > 1:
            _fail(name, first_line, f"panel {pname!r}: more than one fixed dimension {fixed}")
        if fixed:
            if not fixed[0].lstrip("-").isdigit() or int(fixed[0]) < 0:
                _fail(name, first_line, f"panel {pname!r}: dimension value {fixed[0]!r} must be "
                                        "'%', 'ss', 'fs' or a slab number >= 0")
            slab = int(fixed[0])
    try:
        return Panel(name=pname, min_fs=ints["min_fs"], max_fs=ints["max_fs"],
                     min_ss=ints["min_ss"], max_ss=ints["max_ss"],
                     corner_x=floats["corner_x"], corner_y=floats["corner_y"],
                     fs=vecs["fs"], ss=vecs["ss"], res=floats["res"], clen=clen,
                     coffset=floats.get("coffset", 0.0), slab=slab,
                     adu_per_photon=adu_per_photon, max_adu=floats.get("max_adu"), meta=meta)
    except ParameterError as exc:
        _fail(name, first_line, str(exc))


def _build_bad(bname: str, keys: dict[str, tuple[str, int]], name: str,
               panel_names: set[str]) -> dict[str, Any]:
    first = min(ln for _, ln in keys.values())
    if "panel" in keys or any(k in keys for k in ("min_fs", "max_fs", "min_ss", "max_ss")):
        need = ("panel", "min_fs", "max_fs", "min_ss", "max_ss")
        missing = [k for k in need if k not in keys]
        if missing:
            _fail(name, first, f"bad region {bname!r} (fs/ss) lacks {', '.join(missing)}")
        if keys["panel"][0] not in panel_names:
            _fail(name, keys["panel"][1], f"bad region {bname!r} names unknown panel "
                                          f"{keys['panel'][0]!r}")
        out = {"name": bname, "kind": "fs_ss", "panel": keys["panel"][0]}
        for k in need[1:]:
            out[k] = _parse_number(keys[k][0], name, keys[k][1], f"{bname}/{k}", integer=True)
        return out
    need = ("min_x", "max_x", "min_y", "max_y")
    missing = [k for k in need if k not in keys]
    if missing:
        _fail(name, first, f"bad region {bname!r} lacks {', '.join(missing)}")
    out = {"name": bname, "kind": "xy"}
    for k in need:
        out[k] = _parse_number(keys[k][0], name, keys[k][1], f"{bname}/{k}")
    return out


# ---------------------------------------------------------------------------- writing
def _num(v: float) -> str:
    v = float(v)
    return str(int(v)) if v.is_integer() and abs(v) < 1e15 else repr(v)


def _vec(v) -> str:
    parts = []
    for c, ax in zip(v, "xyz"):
        if c == 0 and ax == "z":
            continue
        r = repr(float(c))
        parts.append(("" if r.startswith("-") else "+") + r + ax)
    return " ".join(parts)


def write_geom(geometry: DetectorGeometry, path: str | os.PathLike | None = None, *,
               comment: str | None = None) -> str:
    """Write ``geometry`` as a CrystFEL ``.geom`` file; return the text.

    Every key is written per panel (no defaults), with full float precision, so
    ``read_geom(write_geom(g))`` gives equal panels. Keys kept in ``panel.meta`` (``data``,
    ``dim*``, masks, a ``clen`` HDF5 path) and ``geometry.meta`` (bad regions, rigid groups) are
    written back. Panels of 3-D data without ``dim`` keys get ``dim0 = <slab>``, ``dim1 = ss``,
    ``dim2 = fs``.

    Parameters
    ----------
    geometry : DetectorGeometry
    path : str or PathLike, optional
        Where to write; nothing is written when None.
    comment : str, optional
        Extra comment line(s) for the top of the file.
    """
    from xtalscreen import __version__

    lines = [f"; CrystFEL geometry written by xtalscreen {__version__}"]
    if geometry.name:
        lines.append(f"; from {geometry.name}")
    if comment:
        lines += ["; " + c for c in str(comment).splitlines()]
    lines.append("")
    meta = geometry.meta or {}
    if meta.get("photon_energy_path"):
        lines.append(f"photon_energy = {meta['photon_energy_path']}")
    elif geometry.wavelength:
        energy = HC_EV_ANGSTROM / float(geometry.wavelength)
        e_meta = meta.get("photon_energy_ev")
        if e_meta and abs(e_meta - energy) <= 1e-9 * energy:
            energy = float(e_meta)  # the file's own value, exactly
        lines.append(f"photon_energy = {_num(energy)} ; eV (wavelength "
                     f"{geometry.wavelength:.6g} A)")
    for k, v in (meta.get("global") or {}).items():
        lines.append(f"{k} = {v}")
    lines.append("")
    for p in geometry.panels:
        n = p.name
        pm = p.meta or {}
        rows = [("min_fs", p.min_fs), ("max_fs", p.max_fs), ("min_ss", p.min_ss),
                ("max_ss", p.max_ss), ("corner_x", _num(p.corner_x)),
                ("corner_y", _num(p.corner_y)), ("fs", _vec(p.fs)), ("ss", _vec(p.ss)),
                ("res", _num(p.res))]
        if math.isnan(p.clen) and pm.get("clen_path"):
            rows.append(("clen", pm["clen_path"]))
        else:
            rows.append(("clen", _num(p.clen)))
        rows.append(("coffset", _num(p.coffset)))
        e = meta.get("photon_energy_ev")
        if "adu_per_eV" in pm and (p.adu_per_photon is None or e is None
                                   or p.adu_per_photon == pm["adu_per_eV"] * e):
            rows.append(("adu_per_eV", _num(pm["adu_per_eV"])))
        elif p.adu_per_photon is not None:
            rows.append(("adu_per_photon", _num(p.adu_per_photon)))
        if p.max_adu is not None:
            rows.append(("max_adu", _num(p.max_adu)))
        dims = pm.get("dims")
        if dims is None and p.slab is not None:
            dims = [str(p.slab), "ss", "fs"]
        elif dims is not None and p.slab is not None:
            dims = [str(p.slab) if d not in ("%", "ss", "fs") else d for d in dims]
        for i, d in enumerate(dims or []):
            rows.append((f"dim{i}", d))
        for k in (*_KEEP_KEYS, *sorted(k for k in pm if _MASKN.match(k))):
            if k in pm:
                rows.append((k, pm[k]))
        lines += [f"{n}/{k} = {v}" for k, v in rows]
        lines.append("")
    for b in meta.get("bad_regions") or []:
        keys = (("panel", "min_fs", "max_fs", "min_ss", "max_ss") if b.get("kind") == "fs_ss"
                else ("min_x", "max_x", "min_y", "max_y"))
        lines += [f"{b['name']}/{k} = {b[k] if k == 'panel' else _num(b[k])}" for k in keys]
        lines.append("")
    for g, members in (meta.get("rigid_groups") or {}).items():
        lines.append(f"rigid_group_{g} = {','.join(members)}")
    for c, groups in (meta.get("rigid_group_collections") or {}).items():
        lines.append(f"rigid_group_collection_{c} = {','.join(groups)}")
    text = "\n".join(lines).rstrip() + "\n"
    if path is not None:
        try:
            Path(path).write_text(text, encoding="utf-8")
        except OSError as exc:
            raise InputError(f"cannot write the geometry file ({exc})", path=str(path)) from None
    return text


# ---------------------------------------------------------------------------- helpers
def set_clen(geometry: DetectorGeometry, clen: float) -> DetectorGeometry:
    """A copy of ``geometry`` with ``clen`` (m) set on every panel whose ``clen`` was an HDF5
    path (``nan``); panels with a numeric ``clen`` are unchanged."""
    import dataclasses

    clen = check_positive("clen", clen, "m")
    panels = [dataclasses.replace(p, clen=clen, meta=dict(p.meta)) if math.isnan(p.clen) else p
              for p in geometry.panels]
    return DetectorGeometry(panels, wavelength=geometry.wavelength, name=geometry.name,
                            meta=geometry.meta)


def bad_region_mask(geometry: DetectorGeometry, shape: tuple[int, ...] | None = None) -> np.ndarray:
    """Boolean mask (True = bad) of the geometry's ``bad`` regions, over data of ``shape``.

    ``xy`` regions are tested at pixel centres in lab pixel units (x * res, y * res, relative
    to the beam); ``fs_ss`` regions mark the inclusive data-pixel rectangle of their panel.
    """
    shape = tuple(shape) if shape is not None else geometry.data_shape()
    geometry.check_data(shape)
    mask = np.zeros(shape, dtype=bool)
    regions = (geometry.meta or {}).get("bad_regions") or []
    if not regions:
        return mask
    by_name = {p.name: p for p in geometry.panels}
    xy = [r for r in regions if r.get("kind") == "xy"]
    for r in regions:
        if r.get("kind") == "fs_ss":
            p = by_name[r["panel"]]
            fs0, fs1 = max(r["min_fs"], p.min_fs), min(r["max_fs"], p.max_fs)
            ss0, ss1 = max(r["min_ss"], p.min_ss), min(r["max_ss"], p.max_ss)
            if fs0 <= fs1 and ss0 <= ss1:
                sl = (slice(ss0, ss1 + 1), slice(fs0, fs1 + 1))
                mask[sl if p.slab is None else (p.slab,) + sl] = True
    if xy:
        for p in geometry.panels:
            x, y, _ = p.pixel_xyz()
            x, y = x * p.res, y * p.res
            bad = np.zeros(x.shape, dtype=bool)
            for r in xy:
                bad |= (x >= r["min_x"]) & (x <= r["max_x"]) & (y >= r["min_y"]) & (y <= r["max_y"])
            mask[p.slices()] |= bad
    return mask


def apply_geometry(frame, geometry: DetectorGeometry, *, geom_path: str | None = None):
    """Attach ``geometry`` to ``frame`` (a :class:`~xtalscreen.io.frame.Frame`) and return the
    new frame.

    Checks that the data fit the panels (:class:`InputError` naming the geometry file and both
    shapes otherwise), masks pixels outside every panel, in bad regions and above ``max_adu``,
    and fills ``beam_center`` (assembled image), ``pixel_size``, ``distance`` and a missing
    ``wavelength`` from the geometry.
    """
    shape = frame.data.shape
    try:
        geometry.check_data(shape, source=frame.source)
    except InputError as exc:
        raise InputError(exc.reason + (f" (geometry file {geom_path})" if geom_path else ""),
                         path=exc.path, frame=frame.index) from None
    if any(math.isnan(p.clen) for p in geometry.panels):
        path = next(p.meta.get("clen_path") for p in geometry.panels if math.isnan(p.clen))
        raise InputError(f"geometry {geom_path or geometry.name}: clen is the HDF5 path {path!r}; "
                         "give the camera length with clen= (metres)", path=frame.source or None)
    mask = frame.mask | (geometry.panel_index_map(shape) < 0) | bad_region_mask(geometry, shape)
    for p in geometry.panels:
        if p.max_adu is not None:
            sl = p.slices()
            mask[sl] |= frame.data[sl] > p.max_adu
    res = geometry.panels[0].res
    zs = [p.clen + p.coffset for p in geometry.panels]
    return frame.replace(geometry=geometry, mask=mask,
                         beam_center=geometry.beam_center_px(shape),
                         pixel_size=1.0 / res, distance=float(np.mean(zs)),
                         wavelength=frame.wavelength if frame.wavelength is not None
                         else geometry.wavelength)
