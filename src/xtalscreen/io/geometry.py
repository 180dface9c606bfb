"""Detector geometry: where each pixel is in the laboratory frame.

The model is CrystFEL's (``man crystfel_geometry``): a detector is a list of rectangular
:class:`Panel` s, each a block ``[min_ss..max_ss] x [min_fs..max_fs]`` of a data array, placed in
space by the position of its first pixel's corner (``corner_x``, ``corner_y``, in pixels,
relative to the direct beam) and by the laboratory directions of its fast-scan and slow-scan
axes (``fs``, ``ss``: vectors in pixel units). The beam travels along +z; x and y are
perpendicular to it; the interaction point is the origin.

Pixel ``(fs, ss)`` of a panel has its centre at
``corner + (fs - min_fs + 0.5) * fs_vec + (ss - min_ss + 0.5) * ss_vec`` (pixels), divided by
``res`` (pixels per metre), at height ``z = clen + coffset`` (metres).

Data layouts: for 2-D data every panel is a block of the one array (``slab=None``); for 3-D data
``(panels, H, W)`` each panel names the slab it lives in (``slab=i``).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from functools import cached_property, lru_cache
from typing import NamedTuple

import numpy as np

from xtalscreen.errors import InputError, ParameterError, check_positive

#: Largest laboratory gap (pixels) between two panels that :meth:`DetectorGeometry.modules`
#: joins into one sensor: the double-size pixels between ASICs span 2 px (JUNGFRAU, Eiger) or
#: 3 px (a CSPAD two-by-one); modules sit 7 px (Pilatus) or more apart.
MODULE_GAP_PX = 4.0
_OUT_OF_LINE_PX = 2.0  # largest sideways offset of two joined panels (refined ASIC positions)
_PARALLEL = 0.999      # smallest cosine between the axes of two joined panels (~2.6 degrees)


@dataclass
class Panel:
    """One rectangular detector panel (CrystFEL semantics; see the module docstring).

    Attributes
    ----------
    name : str
    min_fs, max_fs, min_ss, max_ss : int
        Inclusive pixel range of the panel in its data slab.
    corner_x, corner_y : float
        Lab position of the corner of the panel's first pixel, in pixels from the beam.
    fs, ss : (float, float, float)
        Lab directions (x, y, z) of one step along fast scan / slow scan, in pixels.
    res : float
        Pixels per metre (1 / pixel size).
    clen : float
        Camera length (metres): z of the panel plane.
    coffset : float
        Extra z offset (metres) added to ``clen``.
    slab : int or None
        Index along axis 0 of 3-D data; None when the data are 2-D.
    adu_per_photon : float or None
        Gain of the panel, when known.
    max_adu : float or None
        Saturation level; pixels above are masked by the readers.
    meta : dict
        Reader extras kept for round trips (e.g. CrystFEL ``data``, ``dim``, ``mask`` keys, an
        unresolved ``clen`` HDF5 path); plain JSON types only; not compared.
    """

    name: str
    min_fs: int
    max_fs: int
    min_ss: int
    max_ss: int
    corner_x: float
    corner_y: float
    fs: tuple[float, float, float] = (1.0, 0.0, 0.0)
    ss: tuple[float, float, float] = (0.0, 1.0, 0.0)
    res: float = 1.0 / 172e-6
    clen: float = 0.1
    coffset: float = 0.0
    slab: int | None = None
    adu_per_photon: float | None = None
    max_adu: float | None = None
    meta: dict = field(default_factory=dict, compare=False, repr=False)

    def __post_init__(self) -> None:
        if self.max_fs < self.min_fs or self.max_ss < self.min_ss:
            raise ParameterError(
                f"panel {self.name!r}: empty pixel range fs {self.min_fs}..{self.max_fs}, "
                f"ss {self.min_ss}..{self.max_ss}"
            )
        check_positive(f"panel {self.name!r} res", self.res, "pixels/m")
        self.fs = tuple(float(v) for v in self.fs)  # type: ignore[assignment]
        self.ss = tuple(float(v) for v in self.ss)  # type: ignore[assignment]

    @property
    def width(self) -> int:
        return self.max_fs - self.min_fs + 1

    @property
    def height(self) -> int:
        return self.max_ss - self.min_ss + 1

    @property
    def pixel_size(self) -> float:
        return 1.0 / self.res

    def slices(self) -> tuple:
        """Index into the data array selecting this panel's pixels."""
        sl = (slice(self.min_ss, self.max_ss + 1), slice(self.min_fs, self.max_fs + 1))
        return sl if self.slab is None else (self.slab,) + sl

    def pixel_xyz(self) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Lab coordinates (metres) of every pixel centre, each of shape (height, width)."""
        f = np.arange(self.width, dtype=np.float64) + 0.5
        s = np.arange(self.height, dtype=np.float64)[:, None] + 0.5
        x = (self.corner_x + f * self.fs[0] + s * self.ss[0]) / self.res
        y = (self.corner_y + f * self.fs[1] + s * self.ss[1]) / self.res
        z = self.clen + self.coffset + (f * self.fs[2] + s * self.ss[2]) / self.res
        shape = (self.height, self.width)
        return (np.broadcast_to(x, shape).copy(), np.broadcast_to(y, shape).copy(),
                np.broadcast_to(z, shape).copy())


@dataclass
class DetectorGeometry:
    """A detector: its panels plus optional beam information.

    Build one with :meth:`monolithic`, :func:`xtalscreen.io.crystfel.read_geom` or the CBF
    reader; use :meth:`assemble` for a 2-D picture, :meth:`pixel_maps` and
    :meth:`resolution_map` for per-pixel positions and d-spacings.
    """

    panels: list[Panel]
    wavelength: float | None = None  # ångström, when the geometry file gives one
    name: str = ""
    _cache: dict = field(default_factory=dict, repr=False, compare=False)
    #: Extras from the geometry source (CrystFEL bad regions, rigid groups ...); not compared.
    meta: dict = field(default_factory=dict, repr=False, compare=False)

    def __post_init__(self) -> None:
        if not self.panels:
            raise ParameterError("a detector geometry needs at least one panel")
        names = [p.name for p in self.panels]
        if len(set(names)) != len(names):
            raise ParameterError(f"duplicate panel names in geometry: {names}")
        slabs = {p.slab is None for p in self.panels}
        if len(slabs) != 1:
            raise ParameterError("panels must either all name a slab (3-D data) or none (2-D data)")

    # ------------------------------------------------------------------ construction
    @classmethod
    def monolithic(cls, shape: tuple[int, int], *, pixel_size: float, distance: float,
                   beam_center: tuple[float, float] | None = None, name: str = "") -> "DetectorGeometry":
        """A flat detector perpendicular to the beam, fs along +x and ss along +y.

        ``beam_center`` is (fs, ss) in pixels (pixel ``i`` spans ``[i, i+1)``); default: the
        image centre.
        """
        h, w = int(shape[0]), int(shape[1])
        if h <= 0 or w <= 0:
            raise ParameterError(f"detector shape must be positive, got {shape}")
        pixel_size = check_positive("pixel_size", pixel_size, "m")
        distance = check_positive("distance", distance, "m")
        bx, by = (w / 2.0, h / 2.0) if beam_center is None else beam_center
        panel = Panel(name="p0", min_fs=0, max_fs=w - 1, min_ss=0, max_ss=h - 1,
                      corner_x=-float(bx), corner_y=-float(by), res=1.0 / pixel_size, clen=distance)
        return cls([panel], name=name)

    # ------------------------------------------------------------------ checks
    @property
    def is_3d(self) -> bool:
        return self.panels[0].slab is not None

    def data_shape(self) -> tuple[int, ...]:
        """The smallest data shape that holds every panel."""
        h = max(p.max_ss for p in self.panels) + 1
        w = max(p.max_fs for p in self.panels) + 1
        if self.is_3d:
            return (max(p.slab for p in self.panels) + 1, h, w)  # type: ignore[type-var]
        return (h, w)

    def check_data(self, shape: tuple[int, ...], source: str = "") -> None:
        """Raise :class:`InputError` if data of ``shape`` cannot hold every panel."""
        need = self.data_shape()
        ok = len(shape) == len(need) and all(s >= n for s, n in zip(shape, need))
        if not ok:
            raise InputError(
                f"geometry {self.name or ''} does not match the data: panels need an array of at "
                f"least {need}, the data are {tuple(shape)}; use the geometry file written for "
                "this detector and data layout".replace("geometry  does", "geometry does"),
                path=source or None,
            )

    # ------------------------------------------------------------------ maps
    def pixel_maps(self, shape: tuple[int, ...] | None = None) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """x, y, z (metres) of every data pixel; NaN where no panel covers the pixel."""
        shape = tuple(shape) if shape is not None else self.data_shape()
        key = ("maps", shape)
        if key not in self._cache:
            self.check_data(shape)
            x = np.full(shape, np.nan)
            y = np.full(shape, np.nan)
            z = np.full(shape, np.nan)
            for p in self.panels:
                px, py, pz = p.pixel_xyz()
                sl = p.slices()
                x[sl], y[sl], z[sl] = px, py, pz
            self._cache[key] = (x, y, z)
        return self._cache[key]

    def two_theta_map(self, shape: tuple[int, ...] | None = None) -> np.ndarray:
        """Scattering angle 2θ (radians) of every data pixel (NaN outside panels)."""
        x, y, z = self.pixel_maps(shape)
        return np.arctan2(np.hypot(x, y), z)

    def resolution_map(self, wavelength: float | None = None,
                       shape: tuple[int, ...] | None = None) -> np.ndarray:
        """d-spacing (Å) of every data pixel: ``d = λ / (2 sin θ)``; inf at the beam, NaN off-panel."""
        wl = wavelength if wavelength is not None else self.wavelength
        if wl is None:
            raise ParameterError("a resolution map needs the wavelength (Å): none in the file or "
                                 "the geometry; give it with wavelength=")
        wl = check_positive("wavelength", wl, "Å")
        tth = self.two_theta_map(shape)
        with np.errstate(divide="ignore", invalid="ignore"):
            return wl / (2.0 * np.sin(tth / 2.0))

    def panel_index_map(self, shape: tuple[int, ...] | None = None) -> np.ndarray:
        """int16 map of the panel number of every data pixel (-1 where none)."""
        shape = tuple(shape) if shape is not None else self.data_shape()
        out = np.full(shape, -1, dtype=np.int16)
        for i, p in enumerate(self.panels):
            out[p.slices()] = i
        return out

    # ------------------------------------------------------------------ sensors
    def modules(self, max_gap: float = MODULE_GAP_PX) -> tuple[tuple[tuple[int, ...], int, int], ...]:
        """The panels joined into the sensors they tile: ``((panel indices, height, width), ...)``.

        Geometry files describe one detector at different grains: a JUNGFRAU 4M as 8 modules
        or as their 64 ASICs, a CSPAD as 32 two-by-ones or 64 ASICs. Panels are joined when
        they lie side by side in the laboratory with the same orientation, the same extent
        along their shared edge, at most a little out of line (2 px) and at most ``max_gap``
        pixels apart (the double-size pixels between the ASICs of one sensor), whatever their
        place in the data array. A joined group that does not form a full grid of panels (rows
        of equal heights, columns of equal widths) is left as its panels. ``height`` and
        ``width`` are pixel counts along the sensor's slow and fast scan (gaps not counted).
        """
        key = ("modules", float(max_gap))
        if key not in self._cache:  # readers of one-frame files (CBF) make a geometry per file
            self._cache[key] = _join_panels(tuple(_Rect(p.height, p.width, p.corner_x, p.corner_y,
                                                         p.fs[:2], p.ss[:2]) for p in self.panels),
                                            float(max_gap))
        return self._cache[key]

    # ------------------------------------------------------------------ assembly
    def _assembly_index(self, shape: tuple[int, ...]):
        key = ("assemble", shape)
        if key not in self._cache:
            self.check_data(shape)
            res = self.panels[0].res
            xs, ys, flat = [], [], []
            lin = np.arange(int(np.prod(shape))).reshape(shape)
            for p in self.panels:
                px, py, _ = p.pixel_xyz()
                xs.append((px * res).ravel())
                ys.append((py * res).ravel())
                flat.append(lin[p.slices()].ravel())
            x = np.concatenate(xs)
            y = np.concatenate(ys)
            # grid origin = outer edge of the extreme pixels (not floored), so a fractional
            # beam centre stays exact and a monolithic detector assembles to itself
            x0 = x.min() - 0.5
            y0 = y.min() - 0.5
            col = np.floor(x - x0).astype(np.int64)
            row = np.floor(y - y0).astype(np.int64)
            out_shape = (int(row.max()) + 1, int(col.max()) + 1)
            self._cache[key] = (np.concatenate(flat), row * out_shape[1] + col, out_shape,
                                (float(-x0), float(-y0)))
        return self._cache[key]

    def assembled_shape(self, shape: tuple[int, ...] | None = None) -> tuple[int, int]:
        shape = tuple(shape) if shape is not None else self.data_shape()
        return self._assembly_index(shape)[2]

    def beam_center_px(self, shape: tuple[int, ...] | None = None) -> tuple[float, float]:
        """The direct beam (fs, ss) on the assembled image, in pixels."""
        shape = tuple(shape) if shape is not None else self.data_shape()
        return self._assembly_index(shape)[3]

    def assemble(self, data: np.ndarray, mask: np.ndarray | None = None, *,
                 fill: float = np.nan) -> tuple[np.ndarray, np.ndarray]:
        """Place every panel's pixels on one 2-D image (nearest pixel, no interpolation).

        Returns ``(image, mask)``; image pixels no panel reaches get ``fill`` and are masked.
        """
        data = np.asarray(data)
        src, dst, out_shape, _ = self._assembly_index(tuple(data.shape))
        img = np.full(out_shape[0] * out_shape[1], fill, dtype=np.float32)
        img[dst] = data.reshape(-1)[src]
        msk = np.ones(out_shape[0] * out_shape[1], dtype=bool)
        msk[dst] = False if mask is None else np.asarray(mask, dtype=bool).reshape(-1)[src]
        return img.reshape(out_shape), msk.reshape(out_shape)

    def assembled_coords(self, panel: int, fs: np.ndarray, ss: np.ndarray,
                         shape: tuple[int, ...] | None = None) -> tuple[np.ndarray, np.ndarray]:
        """Map panel pixel positions (continuous fs, ss within the data slab) to the assembled image."""
        p = self.panels[int(panel)]
        res = self.panels[0].res
        fs = np.asarray(fs, dtype=np.float64) - p.min_fs
        ss = np.asarray(ss, dtype=np.float64) - p.min_ss
        x = (p.corner_x + fs * p.fs[0] + ss * p.ss[0]) * (res / p.res)
        y = (p.corner_y + fs * p.fs[1] + ss * p.ss[1]) * (res / p.res)
        bx, by = self.beam_center_px(shape)
        return x + bx, y + by


# ---------------------------------------------------------------------- sensors
class _Rect(NamedTuple):
    """What :func:`_join_panels` needs of a panel (hashable, for its cache)."""
    height: int
    width: int
    corner_x: float
    corner_y: float
    fs: tuple
    ss: tuple


def _axes(p: _Rect) -> tuple[np.ndarray, np.ndarray, float, float]:
    fs = np.asarray(p.fs[:2], dtype=np.float64)
    ss = np.asarray(p.ss[:2], dtype=np.float64)
    nf, ns = float(np.hypot(*fs)), float(np.hypot(*ss))
    return fs / (nf or 1.0), ss / (ns or 1.0), nf, ns


def _neighbours(a: _Rect, b: _Rect, max_gap: float) -> bool:
    """``a`` and ``b`` side by side along fast or slow scan, parallel, in line, gap <= max_gap."""
    fa, sa, nfa, nsa = _axes(a)
    fb, sb, nfb, nsb = _axes(b)
    if fa @ fb < _PARALLEL or sa @ sb < _PARALLEL or not nfa or not nsa:
        return False
    d = np.array([b.corner_x - a.corner_x, b.corner_y - a.corner_y])
    u, v = float(d @ fa) / nfa, float(d @ sa) / nsa  # b's corner in a's pixels
    if abs(v) <= _OUT_OF_LINE_PX and a.height == b.height:  # along fast scan
        gap = u - a.width if u > 0 else -u - b.width
        return -0.5 <= gap <= max_gap
    if abs(u) <= _OUT_OF_LINE_PX and a.width == b.width:  # along slow scan
        gap = v - a.height if v > 0 else -v - b.height
        return -0.5 <= gap <= max_gap
    return False


def _grid_size(panels: tuple[_Rect, ...], members: list[int]) -> tuple[int, int] | None:
    """(height, width) of the panels ``members`` as a full grid of rows and columns, or None."""
    fa, sa, nf, ns = _axes(panels[members[0]])
    d = np.array([[panels[i].corner_x, panels[i].corner_y] for i in members])
    d -= d[0]  # corners from the first member's, in its pixels along fast and slow scan
    pos = list(zip((d @ fa / nf).tolist(), (d @ sa / ns).tolist()))

    def clusters(vals):
        order = np.argsort(vals)
        labels = np.empty(len(vals), dtype=np.int64)
        k, last = -1, -np.inf
        for j in order:
            if vals[j] - last > _OUT_OF_LINE_PX:
                k += 1
            labels[j], last = k, vals[j]
        return labels, k + 1

    col, n_cols = clusters(np.array([u for u, _ in pos]))
    row, n_rows = clusters(np.array([v for _, v in pos]))
    if n_rows * n_cols != len(members) or len(set(zip(row.tolist(), col.tolist()))) != len(members):
        return None
    widths, heights = {}, {}
    for i, r, c in zip(members, row.tolist(), col.tolist()):
        if widths.setdefault(c, panels[i].width) != panels[i].width or \
                heights.setdefault(r, panels[i].height) != panels[i].height:
            return None
    return sum(heights.values()), sum(widths.values())


@lru_cache(maxsize=32)
def _join_panels(panels: tuple[_Rect, ...], max_gap: float) -> tuple[tuple[tuple[int, ...], int, int], ...]:
    parent = list(range(len(panels)))

    def root(i: int) -> int:
        while parent[i] != i:
            parent[i] = parent[parent[i]]
            i = parent[i]
        return i

    for i in range(len(panels)):
        for j in range(i + 1, len(panels)):
            if root(i) != root(j) and _neighbours(panels[i], panels[j], max_gap):
                parent[root(j)] = root(i)
    groups: dict[int, list[int]] = {}
    for i in range(len(panels)):
        groups.setdefault(root(i), []).append(i)
    out = []
    for members in groups.values():
        size = _grid_size(panels, members) if len(members) > 1 else None
        if size is None:  # not a full grid: each panel alone
            out += [((i,), panels[i].height, panels[i].width) for i in members]
        else:
            out.append((tuple(members), *size))
    return tuple(sorted(out))
