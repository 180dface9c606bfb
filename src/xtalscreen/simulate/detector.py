"""The simulated detector: geometry context (cached), masks, PSF and the electronics chain."""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from xtalscreen.io.geometry import DetectorGeometry
from xtalscreen.simulate import kernels


@dataclass
class DetectorContext:
    """Everything about a detector that does not change from frame to frame."""

    geometry: DetectorGeometry
    monolithic: bool
    data_shape: tuple
    maps: tuple  # x, y, z float32 flat (m), NaN off-panel
    corners: np.ndarray
    fvec: np.ndarray
    svec: np.ndarray
    sizes: np.ndarray
    bounds: np.ndarray  # per panel: min_fs, max_fs, min_ss, max_ss
    slabs: np.ndarray
    pixel_size: float
    pixel_area: float
    distance: float
    two_theta_max: float
    mask: np.ndarray  # bool, data shape: True = bad (gaps, dead, hot, off-panel)
    gap: np.ndarray  # bool flat: pixels that receive nothing (module gaps, off-panel)
    dead: np.ndarray  # flat indices
    hot: np.ndarray
    beam_center: tuple


_CACHE: dict = {}


def _key(det) -> tuple:
    return (det.shape, det.pixel_size, det.distance, det.beam_center, det.module_shape, det.module_gap,
            id(det.geometry), det.dead_fraction, det.hot_fraction, det.defect_seed)


def context(det) -> DetectorContext:
    """The cached :class:`DetectorContext` of a :class:`DetectorConfig`."""
    key = _key(det)
    ctx = _CACHE.get(key)
    if ctx is None or (det.geometry is not None and ctx.geometry is not det.geometry):
        if len(_CACHE) > 8:
            _CACHE.clear()
        ctx = _build(det)
        _CACHE[key] = ctx
    return ctx


def module_gap_mask(shape, module_shape, module_gap) -> np.ndarray:
    """True on the insensitive rows/columns between modules of a monolithic detector."""
    h, w = shape
    mh, mw = module_shape
    gh, gw = module_gap
    rows = (np.arange(h) % (mh + gh)) >= mh
    cols = (np.arange(w) % (mw + gw)) >= mw
    return rows[:, None] | cols[None, :]


def _build(det) -> DetectorContext:
    if det.geometry is None:
        geom = DetectorGeometry.monolithic(det.shape, pixel_size=det.pixel_size, distance=det.distance,
                                           beam_center=det.beam_center, name=det.name)
        mono = True
    else:
        geom = det.geometry
        mono = False
    shape = geom.data_shape()
    x, y, z = geom.pixel_maps(shape)
    maps = tuple(np.ascontiguousarray(a, dtype=np.float32).ravel() for a in (x, y, z))
    npan = len(geom.panels)
    corners = np.zeros((npan, 3))
    fvec = np.zeros((npan, 3))
    svec = np.zeros((npan, 3))
    sizes = np.zeros((npan, 4))
    bounds = np.zeros((npan, 4), dtype=np.int64)
    slabs = np.zeros(npan, dtype=np.int64)
    for i, p in enumerate(geom.panels):
        corners[i] = (p.corner_x / p.res, p.corner_y / p.res, p.clen + p.coffset)
        fvec[i] = np.array(p.fs) / p.res
        svec[i] = np.array(p.ss) / p.res
        sizes[i] = (p.min_fs, p.min_ss, p.width, p.height)
        bounds[i] = (p.min_fs, p.max_fs, p.min_ss, p.max_ss)
        slabs[i] = 0 if p.slab is None else p.slab
    gap = ~np.isfinite(maps[2])
    if mono and det.module_shape is not None:
        gap |= module_gap_mask(shape, det.module_shape, det.module_gap).ravel()
    n = gap.size
    drng = np.random.default_rng(det.defect_seed)
    perm = drng.permutation(n)
    nd = int(round(det.dead_fraction * n))
    nh = int(round(det.hot_fraction * n))
    dead = np.sort(perm[:nd])
    hot = np.sort(perm[nd:nd + nh])
    mask = gap.copy()
    mask[dead] = True
    mask[hot] = True
    px = geom.panels[0].pixel_size
    r = np.hypot(maps[0], maps[1])
    margin = 3.0 * det.beam_center_jitter_px * px + 2 * px
    with np.errstate(invalid="ignore"):
        tt = np.nanmax(np.arctan2(r + margin, maps[2]))
    bc = geom.beam_center_px(shape) if not mono else (
        det.beam_center if det.beam_center is not None else (shape[1] / 2.0, shape[0] / 2.0))
    return DetectorContext(geometry=geom, monolithic=mono, data_shape=tuple(shape), maps=maps, corners=corners,
                           fvec=fvec, svec=svec, sizes=sizes, bounds=bounds, slabs=slabs, pixel_size=px,
                           pixel_area=px * px, distance=float(np.nanmedian(maps[2])), two_theta_max=float(tt),
                           mask=mask.reshape(shape), gap=gap, dead=dead, hot=hot,
                           beam_center=(float(bc[0]), float(bc[1])))


def apply_psf_tail(spots: np.ndarray, det) -> np.ndarray:
    """Fibre-coupled CCD PSF tail: move ``psf_tail_fraction`` of the Bragg signal into a wide
    Gaussian (``psf_tail_sigma_px``), separably per panel slab (the core is in the spot shape)."""
    if det.psf != "fibre" or det.psf_tail_fraction <= 0:
        return spots
    from scipy.ndimage import gaussian_filter

    f = det.psf_tail_fraction
    tail = gaussian_filter(spots, sigma=(0, det.psf_tail_sigma_px, det.psf_tail_sigma_px), mode="constant",
                           truncate=3.0)
    return (1.0 - f) * spots + f * tail


def electronics(expected: np.ndarray, det, ctx: DetectorContext, rng) -> np.ndarray:
    """Photon counting and detector response: expected photons (flat) -> detector values (flat float32).

    Poisson counting, per-pixel gain error ``calibration_error``, read noise (photons RMS),
    ``gain``, ``offset``, saturation; dead pixels read 0, hot ones saturate, gap pixels 0; then
    the output conversion (``diffranet8``: round(sqrt(clip(counts, 0, 65025)))) and rounding /
    clipping to ``dtype``.
    """
    out = np.empty(expected.size, dtype=np.float32)
    seed = int(rng.integers(0, 2**31 - 1))
    kernels.detect(expected, seed, float(det.gain), float(det.calibration_error), float(det.read_noise),
                   float(det.offset), float(det.saturation), kernels._NORMAL, out)
    out[ctx.gap] = 0.0
    out[ctx.dead] = 0.0
    out[ctx.hot] = det.saturation
    if det.output == "diffranet8":
        np.clip(out, 0.0, 65025.0, out=out)
        np.sqrt(out, out=out)
        np.round(out, out=out)
    if det.dtype in ("uint16", "uint8", "int32"):
        np.round(out, out=out)
        lo, hi = {"uint16": (0, 65535), "uint8": (0, 255), "int32": (-2**31, 2**31 - 1)}[det.dtype]
        np.clip(out, lo, hi, out=out)
    return out


def core_fraction(det) -> float:
    """Share of a spot's photons left in its own profile: a fibre-coupled CCD moves
    ``psf_tail_fraction`` of it into the wide tail (:func:`apply_psf_tail`)."""
    return (1.0 - det.psf_tail_fraction) if det.psf == "fibre" else 1.0


def output_to_photons(out: np.ndarray, det) -> tuple[np.ndarray, float]:
    """Undo :func:`electronics`' conversion: detector values -> photons (float64), and the
    photon level at which a pixel reads saturated (the ``diffranet8`` output clips at 65025
    counts). Rounding and gain errors are not undone; they stay in as noise."""
    v = out.astype(np.float64)
    sat = float(det.saturation)
    if det.output == "diffranet8":
        v = v * v
        sat = min(sat, 65025.0)
    return (v - det.offset) / det.gain, (sat - det.offset) / det.gain


def output_saturation(det) -> float:
    """The detector value a saturated pixel reads (what :func:`electronics` clips to)."""
    if det.output == "diffranet8":
        return float(round(math.sqrt(min(float(det.saturation), 65025.0))))
    return float(det.saturation)


def output_rounding(det) -> float:
    """Variance the output conversion's rounding adds, as a share of the counts' variance:
    round(sqrt(n)) squared back is n + 2 sqrt(n) u, u uniform in ±1/2, so n / 3."""
    return 1.0 / 3.0 if det.output == "diffranet8" else 0.0


def spot_covariance(pos, two_theta, panel, ctx, *, lam, bw_frac, sig_size, divergence, omega_max,
                    beam_size_m, psf_sigma_px) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Spot covariance (px²: ff, fs, ss) from bandwidth (radial), mosaic (tangential), block
    size and divergence (isotropic angles), beam size and PSF core (isotropic lengths)."""
    x, y, z = pos[:, 0], pos[:, 1], pos[:, 2]
    rho = np.hypot(x, y)
    R = np.sqrt(rho * rho + z * z)
    rx = np.where(rho > 0, x / np.maximum(rho, 1e-12), 1.0)
    ry = np.where(rho > 0, y / np.maximum(rho, 1e-12), 0.0)
    th = two_theta / 2.0
    iso_ang2 = (lam * sig_size) ** 2 + divergence ** 2
    rad_ang2 = (2.0 * np.tan(th) * bw_frac) ** 2 + iso_ang2
    tan_ang2 = (2.0 * np.sin(th) * omega_max / math.sqrt(5.0)) ** 2 + iso_ang2
    rad_len2 = rad_ang2 * (R * R / np.maximum(z, 1e-9)) ** 2
    tan_len2 = tan_ang2 * R * R
    fv = ctx.fvec[panel]
    sv = ctx.svec[panel]
    fl = np.linalg.norm(fv, axis=1)
    sl = np.linalg.norm(sv, axis=1)
    # radial / tangential unit vectors expressed in pixel steps along fs / ss
    rf = (rx * fv[:, 0] + ry * fv[:, 1]) / (fl * fl)
    rs = (rx * sv[:, 0] + ry * sv[:, 1]) / (sl * sl)
    tf = (-ry * fv[:, 0] + rx * fv[:, 1]) / (fl * fl)
    ts = (-ry * sv[:, 0] + rx * sv[:, 1]) / (sl * sl)
    iso = (beam_size_m ** 2 / 12.0) / (fl * sl) + psf_sigma_px ** 2 + 0.02
    cff = rad_len2 * rf * rf + tan_len2 * tf * tf + iso
    cfs = rad_len2 * rf * rs + tan_len2 * tf * ts
    css = rad_len2 * rs * rs + tan_len2 * ts * ts + iso
    return cff, cfs, css
