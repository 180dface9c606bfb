"""``find_spots``: one entry point over both finders, any array or :class:`~xtalscreen.io.Frame`.

Panels: a frame with a geometry is searched panel by panel (``geometry.panels`` blocks), 3-D data
without geometry slab by slab, 2-D data as one panel, so that no spot crosses a panel edge.
Positions are reported per panel (``fs``, ``ss`` in the data slab) and on the assembled image
(``x``, ``y``). d-spacings come from the geometry (or ``pixel_size``/``distance``/``beam_center``)
and the wavelength; without them ``d`` is NaN and resolution filters raise
:class:`~xtalscreen.errors.ParameterError`.
"""

from __future__ import annotations

from collections import OrderedDict
from typing import Any

import numpy as np

from xtalscreen.errors import InputError, ParameterError
from xtalscreen.spots.dispersion import DispersionParams, dispersion_panels
from xtalscreen.spots.extended import ExtendedParams, extended_panels
from xtalscreen.spots.peakfinder8 import Peakfinder8Params, peakfinder8_panels, radius_bins
from xtalscreen.spots.table import SpotTable

ALGORITHMS = ("dispersion", "dispersion_extended", "peakfinder8")
_PARAMS = {"dispersion": DispersionParams, "dispersion_extended": ExtendedParams,
           "peakfinder8": Peakfinder8Params}

#: d-spacings (Å) of the strongest hexagonal-ice (Ih) powder rings.
ICE_RINGS_D = (3.897, 3.669, 3.441, 2.671, 2.249, 2.072, 1.948, 1.918, 1.883, 1.721, 1.524,
               1.473, 1.367, 1.299, 1.275, 1.261, 1.224, 1.172, 1.124)


def find_spots(data, *, mask: np.ndarray | None = None, algorithm: str = "dispersion",
               d_min: float | None = None, d_max: float | None = None, ice_rings: bool = False,
               ice_ring_width: float = 0.004, **params: Any) -> SpotTable:
    """Find Bragg spots in a detector image.

    Parameters
    ----------
    data : Frame or ndarray, shape (H, W) or (panels, H, W)
        The image. Arrays are taken as they are (no geometry: ``d`` is NaN); a
        :class:`~xtalscreen.io.Frame` brings its mask, geometry and beam metadata.
    mask : ndarray of bool, optional
        True for pixels to ignore, combined (OR) with the frame's mask. NaN/inf pixels are always
        ignored.
    algorithm : {"dispersion", "dispersion_extended", "peakfinder8"}
        The finder; its parameters (see :class:`~xtalscreen.spots.dispersion.DispersionParams`,
        :class:`~xtalscreen.spots.extended.ExtendedParams`,
        :class:`~xtalscreen.spots.peakfinder8.Peakfinder8Params`) are passed as keywords.
        ``dispersion_extended`` adds a matched-filter test after the dispersion pass and finds
        faint spots spread over several pixels (:mod:`xtalscreen.spots.extended`).
    d_min, d_max : float, optional
        Keep spots whose centroid d-spacing (Å) lies in ``[d_min, d_max]``.
    ice_rings : bool
        Drop spots on hexagonal-ice powder rings (:data:`ICE_RINGS_D`).
    ice_ring_width : float
        Full width of each excluded ring in 1/d² (Å⁻²), as DIALS ``ice_rings.width``.
    **params
        Finder parameters, e.g. ``sigma_strong=3``, ``gain=1.0``, ``min_snr=5``,
        ``gain_per="frame"`` (one estimated gain instead of one per column),
        ``hot_pixels=True`` (drop isolated 1-2 pixel spikes).

    Returns
    -------
    SpotTable
        One row per spot; ``len()`` is the spot count.

    Examples
    --------
    >>> import numpy as np
    >>> img = np.random.default_rng(0).poisson(2.0, (64, 64)).astype(np.float32)
    >>> img[30:32, 30:32] += 200
    >>> len(find_spots(img))
    1
    """
    if algorithm not in ALGORITHMS:
        raise ParameterError(f"algorithm must be one of {ALGORITHMS}, got {algorithm!r}")
    frame = _as_frame(data, mask)
    layout = _Layout(frame)
    if algorithm == "dispersion":
        p = _make_params(DispersionParams, params, algorithm)
        # an array given without a mask: the all-False mask need not be read
        empty = mask is None and not _is_frame(data)
        cols, _info = dispersion_panels(layout.panels(), p, mask_empty=empty)
    elif algorithm == "dispersion_extended":
        p = _make_params(ExtendedParams, params, algorithm)
        empty = mask is None and not _is_frame(data)
        radius = layout.radius_maps() if p.streak_sigma > 0 else None
        cols, _info = extended_panels(layout.panels(), p, mask_empty=empty, radius=radius)
    else:
        p = _make_params(Peakfinder8Params, params, algorithm)
        panels = [(d, b, radius_bins(r, p)) for (d, b), r in zip(layout.panels(), layout.radius_maps())]
        cols, _info = peakfinder8_panels(panels, p)
    table = layout.to_table(cols)
    if d_min is not None or d_max is not None or ice_rings:
        table = _resolution_filter(table, frame, d_min=d_min, d_max=d_max, ice_rings=ice_rings,
                                   width=ice_ring_width)
    return table


def make_params(algorithm: str, **params: Any):
    """Validated parameter object of ``algorithm`` (raises ParameterError naming bad keys)."""
    if algorithm not in ALGORITHMS:
        raise ParameterError(f"algorithm must be one of {ALGORITHMS}, got {algorithm!r}")
    return _make_params(_PARAMS[algorithm], params, algorithm)


def _make_params(cls, params: dict, algorithm: str):
    known = set(cls.__dataclass_fields__)
    unknown = sorted(set(params) - known)
    if unknown:
        raise ParameterError(f"unknown parameter(s) {unknown} for algorithm {algorithm!r}; "
                             f"known: {sorted(known)}")
    return cls(**params)


# ---------------------------------------------------------------------------------------------
def _is_frame(data) -> bool:
    from xtalscreen.io.frame import Frame

    return isinstance(data, Frame)


def _as_frame(data, mask):
    from xtalscreen.io.frame import Frame

    if isinstance(data, Frame):
        frame = data
        if mask is not None:
            m = np.asarray(mask, dtype=bool)
            if m.shape != frame.data.shape:
                raise ParameterError(f"mask shape {m.shape} does not match the data {frame.data.shape}")
            frame = frame.replace(mask=frame.mask | m)
        return frame
    arr = np.asarray(data)
    if arr.dtype == object or not (np.issubdtype(arr.dtype, np.number) or arr.dtype == bool):
        raise InputError(f"data must be a numeric array or a Frame, got dtype {arr.dtype}")
    if arr.ndim not in (2, 3):
        raise InputError(f"data must be 2-D (H, W) or 3-D (panels, H, W), got shape {arr.shape}")
    if mask is not None:
        mask = np.asarray(mask, dtype=bool)
        if mask.shape != arr.shape:
            raise ParameterError(f"mask shape {mask.shape} does not match the data {arr.shape}")
    return Frame(data=arr, mask=mask)


class _Layout:
    """Panels of a frame, and the maps from panel coordinates to the assembled image and to d."""

    def __init__(self, frame):
        self.frame = frame
        data = frame.data
        geom = frame.geometry
        self.geom = geom
        if geom is not None:
            geom.check_data(data.shape, frame.source)
            self.slices = [p.slices() for p in geom.panels]
            self.offsets = [(p.min_fs, p.min_ss) for p in geom.panels]
        elif data.ndim == 3:
            self.slices = [(i, slice(None), slice(None)) for i in range(data.shape[0])]
            self.offsets = [(0, 0)] * data.shape[0]
        else:
            self.slices = [(slice(None), slice(None))]
            self.offsets = [(0, 0)]

    def panels(self) -> list[tuple[np.ndarray, np.ndarray]]:
        d, m = self.frame.data, self.frame.mask
        return [(np.ascontiguousarray(d[s]), np.ascontiguousarray(m[s])) for s in self.slices]

    def radius_maps(self) -> list[np.ndarray]:
        """Distance of every pixel centre from the beam, in pixels, per panel."""
        f = self.frame
        if self.geom is not None:
            key = ("geom", id(self.geom), f.data.shape)
            if key not in _RCACHE:
                x, y, _ = self.geom.pixel_maps(f.data.shape)
                res = self.geom.panels[0].res
                r = (np.hypot(x, y) * res).astype(np.float32)
                _put(key, [np.ascontiguousarray(r[s]) for s in self.slices])
            return _RCACHE[key]
        h, w = f.data.shape[-2:]
        n = len(self.slices)
        if f.beam_center is None and f.data.ndim == 3:
            bx, by = w / 2.0, n * h / 2.0  # centre of the slabs stacked along ss
        else:
            bx, by = f.beam_center_or_default()
        key = ("flat", n, h, w, bx, by)
        if key not in _RCACHE:
            fs = np.arange(w, dtype=np.float32) + 0.5
            maps = []
            for i in range(n):
                ss = np.arange(h, dtype=np.float32)[:, None] + 0.5 + i * h
                maps.append(np.hypot(fs[None, :] - np.float32(bx), ss - np.float32(by)).astype(np.float32))
            _put(key, maps)
        return _RCACHE[key]

    def to_table(self, cols: list[dict[str, np.ndarray]]) -> SpotTable:
        parts = []
        for i, c in enumerate(cols):
            n = len(c["fs"])
            if n == 0:
                continue
            ofs, oss = self.offsets[i]
            fs = c["fs"] + ofs
            ss = c["ss"] + oss
            if self.geom is not None:
                x, y = self.geom.assembled_coords(i, fs, ss, self.frame.data.shape)
            elif self.frame.data.ndim == 3:
                x, y = fs, ss + i * self.frame.data.shape[1]
            else:
                x, y = fs, ss
            parts.append(SpotTable.from_columns(
                n, panel=i, fs=fs, ss=ss, x=x, y=y, intensity=c["intensity"],
                n_pixels=c["n_pixels"], max_pixel=c["max_pixel"], background=c["background"],
                snr=c["snr"]))
        table = SpotTable.concatenate(parts)
        if len(table):
            table.records["d"] = self.d_spacing(table)
        return table

    def d_spacing(self, table: SpotTable) -> np.ndarray:
        """Centroid d-spacings (Å); NaN when the geometry or wavelength is unknown."""
        f = self.frame
        n = len(table)
        wl = f.wavelength
        if self.geom is not None:
            wl = wl if wl is not None else self.geom.wavelength
            if wl is None:
                return np.full(n, np.nan)
            out = np.empty(n)
            for i, p in enumerate(self.geom.panels):
                sel = table.records["panel"] == i
                if not sel.any():
                    continue
                fs = table.records["fs"][sel] - p.min_fs
                ss = table.records["ss"][sel] - p.min_ss
                x = (p.corner_x + fs * p.fs[0] + ss * p.ss[0]) / p.res
                y = (p.corner_y + fs * p.fs[1] + ss * p.ss[1]) / p.res
                z = p.clen + p.coffset + (fs * p.fs[2] + ss * p.ss[2]) / p.res
                out[sel] = _d_from_xyz(x, y, z, wl)
            return out
        if wl is None or f.pixel_size is None or f.distance is None:
            return np.full(n, np.nan)
        bx, by = f.beam_center_or_default()
        x = (table.records["x"] - bx) * f.pixel_size
        y = (table.records["y"] - by) * f.pixel_size
        return _d_from_xyz(x, y, np.full(n, f.distance), wl)


def _d_from_xyz(x, y, z, wl):
    tth = np.arctan2(np.hypot(x, y), z)
    with np.errstate(divide="ignore", invalid="ignore"):
        return wl / (2.0 * np.sin(tth / 2.0))


_RCACHE: "OrderedDict[tuple, list]" = OrderedDict()


def _put(key, value) -> None:
    _RCACHE[key] = value
    while len(_RCACHE) > 8:
        _RCACHE.popitem(last=False)


def _resolution_filter(table: SpotTable, frame, *, d_min, d_max, ice_rings, width) -> SpotTable:
    d = table.records["d"]
    if len(table) and np.isnan(d).all():
        raise ParameterError(
            "d_min/d_max/ice_rings need d-spacings, but the frame has no wavelength and detector "
            "geometry (pixel_size, distance); give them in the frame or drop the resolution filter"
            + (f" ({frame.source})" if frame.source else ""))
    if len(table) == 0:
        if frame.wavelength is None and (frame.geometry is None or frame.geometry.wavelength is None):
            raise ParameterError("d_min/d_max/ice_rings need the wavelength (Å) of the frame")
        return table
    keep = np.ones(len(table), dtype=bool)
    with np.errstate(invalid="ignore"):
        if d_min is not None:
            keep &= d >= float(d_min)
        if d_max is not None:
            keep &= d <= float(d_max)
        if ice_rings:
            if not (width > 0):
                raise ParameterError(f"ice_ring_width must be > 0 Å⁻², got {width!r}")
            ds2 = 1.0 / d.astype(np.float64) ** 2
            for dr in ICE_RINGS_D:
                keep &= np.abs(ds2 - 1.0 / dr ** 2) > width / 2.0
    return table[keep]
