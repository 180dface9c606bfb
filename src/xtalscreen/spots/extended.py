"""The extended dispersion spot finder: faint spots from a matched-filter test.

The DIALS dispersion test (:mod:`.dispersion`) decides pixel by pixel. A faint spot whose
photons are spread over several pixels (XFEL spots are short radial streaks: bandwidth and
mosaicity) has no single pixel ``sigma_strong`` sigmas above its background, although its
summed signal is well above the noise. DIALS' ``dispersion_extended`` threshold keeps two
passes — a dispersion pass whose strong region is kept out of the background, then a
per-pixel test against that cleaner background. This finder keeps the two passes and makes the
second one a matched-filter test, which is what finds the faint spots:

1. **Strong pixels** — the dispersion finder's test (:func:`._kernels.dispersion_candidates`,
   same ``kernel_size``, ``sigma_background``, ``sigma_strong``, ``min_local``,
   ``global_threshold`` and gains). These pixels, grown by ``exclude_radius`` pixels, are kept
   out of every background of the second pass. Spots of this pass that look like hot pixels
   (:func:`.dispersion.hot_pixel_spots`: 1-2 pixels, almost nothing around) and whose peak is
   more than :data:`SPIKE_SIGMA` Poisson sigmas above their background are left out of the
   matched filters, so that their neighbours are judged by their own excess (such a spike
   would otherwise make its whole neighbourhood significant); fainter ones stay in (a sharp
   faint Bragg spot looks the same, and its neighbours carry it over ``min_spot_size``). With
   ``hot_pixels=True`` every hot-pixel-like spot is masked altogether.
2. **Matched filter** — around every other good pixel, the background mean μ and variance σ²
   come from the good, non-excluded pixels of the ``(2·background_size+1)²`` box minus the
   ``(2·inner_size+1)²`` box at its centre (an annulus: a faint spot that pass 1 did not see
   does not raise its own background), with at least ``min_background`` pixels. The excess
   ``T = Σ w (p − μ)`` under a Gaussian filter ``w`` of ``filter_sigma`` pixels centred on the
   pixel has variance ``V = v·(Σw² + (Σw)²/n_bg)`` with ``v = max(σ², g·μ')`` (the local
   variance, at least the Poisson variance of a detector with ``g`` detector units per photon,
   ``μ' = max(μ, g/n_bg)``: at least one photon in the background pixels; the second term is
   the noise of the subtracted mean). Its significance ``z`` is ``T/sqrt(V)`` corrected
   (Cornish-Fisher) for the skewness of a Poisson sum (third cumulant ``g²·μ'·Σw³``), so that
   an almost empty background does not turn two or three photons into a detection. Where ``z`` passes ``streak_prescreen``, a second filter elongated along the
   radial direction (Gaussian, σ ``streak_sigma`` along, ``streak_width`` across; the
   direction is the gradient of the distance from the beam) is tried too and the larger ``z``
   kept. A pixel above μ (and ``global_threshold``) with ``z > sigma_sum`` is a candidate;
   first-pass strong pixels always are.
3. **Spots** — candidates are grouped 4-connected, spots within ``merge_gap`` pixels are merged,
   and every spot gets the dispersion finder's statistics
   (:func:`._kernels.component_stats_sparse`: local background, intensity, centroid, SNR).
   A spot holding a first-pass strong pixel is kept when its SNR is at least ``min_snr`` (as
   in the dispersion finder); any other spot when its largest ``z`` is at least
   ``sigma_peak``. Spots outside ``[min_spot_size, max_spot_size]`` pixels are dropped.

``sigma_peak`` sets the false-alarm rate: a normal variable passes 5.4 sigmas with probability
3e-8 per test; on Poisson noise (0.05, 2 and 50 photons/px) the defaults found 1 false spot
in 50 Mpx. The defaults were tuned on simulated cspad and jungfrau4m frames (seeds 2000+) for
precision >= 0.99 (``benchmarks/results/spots.md``).

Gains are estimated from the frame as for the dispersion finder
(:func:`.dispersion.panel_gains`, ``gain_per``) when ``gain`` is not given. Masks, panels (no
spot crosses a panel edge), resolution limits and the ice-ring filter are handled by
:func:`.find.find_spots` as for every finder; it also gives the distance of every pixel from
the beam (the frame's geometry or beam centre, else the image centre) for the streak filter.
"""

from __future__ import annotations

from dataclasses import dataclass, replace

import numpy as np

from xtalscreen.errors import ParameterError
from xtalscreen.spots import _extended_kernels as _xk
from xtalscreen.spots import _kernels
from xtalscreen.spots.dispersion import (DispersionParams, _empty_cols, _int_at_least,
                                         _typical_level, hot_pixel_spots, panel_gains)


#: A hot-pixel-like first-pass spot whose peak exceeds its background by more than this many
#: Poisson sigmas (``sqrt(g·background)``) is left out of the matched filters (module doc).
SPIKE_SIGMA = 20.0


@dataclass(frozen=True)
class ExtendedParams(DispersionParams):
    """Parameters of :func:`extended_panels` (keyword arguments of ``find_spots``).

    The first pass takes the dispersion finder's parameters (:class:`DispersionParams`:
    ``kernel_size``, ``gain``, ``sigma_background``, ``sigma_strong``, ``min_local``,
    ``global_threshold``, ``gain_per``, ``hot_pixels``); ``min_spot_size``, ``max_spot_size``,
    ``merge_gap`` and ``min_snr`` apply to the spots of the second pass (module doc).

    Attributes
    ----------
    sigma_sum : float
        A pixel joins a spot when its matched-filter significance exceeds this (sigmas).
    sigma_peak : float
        A spot without first-pass strong pixels is kept when its largest significance is at
        least this (sigmas); sets the false-alarm rate.
    filter_sigma : float
        σ of the round Gaussian matched filter (pixels, 0.2-5); the filter spans
        ``2·round(2·filter_sigma) + 1`` pixels.
    streak_sigma : float
        σ along the radial direction of the elongated filter (pixels); 0 turns it off.
    streak_width : float
        σ across the radial direction of the elongated filter (pixels).
    streak_prescreen : float
        The elongated filter is tried where the round one's significance exceeds this (sigmas).
    background_size : int
        Half-size of the background box (pixels; 10 → 21×21).
    inner_size : int
        Half-size of the box at the centre left out of the background (pixels); at least the
        half-width of both filters and less than ``background_size``.
    exclude_radius : int
        First-pass strong pixels, grown by this many pixels (Chebyshev distance), are left out
        of the second pass's backgrounds.
    min_background : int
        Fewest background pixels for a pixel to be tested.
    min_snr : float
        Spots holding first-pass strong pixels are kept when their integrated SNR (the
        dispersion finder's definition) is at least this.
    min_spot_size : int
        Smallest spot (pixels).
    """

    sigma_sum: float = 3.0
    sigma_peak: float = 5.4
    filter_sigma: float = 0.8
    streak_sigma: float = 2.0
    streak_width: float = 0.5
    streak_prescreen: float = 2.5
    background_size: int = 10
    inner_size: int = 4
    exclude_radius: int = 2
    min_background: int = 30
    min_snr: float = 4.0
    min_spot_size: int = 2

    def __post_init__(self) -> None:
        super().__post_init__()
        _int_at_least("inner_size", self.inner_size, 0)
        _int_at_least("background_size", self.background_size, 1)
        _int_at_least("exclude_radius", self.exclude_radius, 0)
        _int_at_least("min_background", self.min_background, 2)
        for name, lo in (("sigma_sum", 0.0), ("sigma_peak", 0.0), ("streak_prescreen", -np.inf)):
            v = getattr(self, name)
            if isinstance(v, bool) or not (np.isfinite(float(v)) and float(v) > lo):
                raise ParameterError(f"{name} must be a finite number > {lo}, got {v!r}")
        for name, lo in (("filter_sigma", 0.2), ("streak_width", 0.2)):
            v = getattr(self, name)
            if isinstance(v, bool) or not (np.isfinite(float(v)) and lo <= float(v) <= 5.0):
                raise ParameterError(f"{name} must be between {lo} and 5 pixels, got {v!r}")
        v = self.streak_sigma
        if isinstance(v, bool) or not (np.isfinite(float(v)) and 0.0 <= float(v) <= 5.0):
            raise ParameterError(f"streak_sigma must be between 0 (off) and 5 pixels, got {v!r}")
        r = filter_radius(self.filter_sigma)
        if self.streak_sigma > 0:
            r = max(r, filter_radius(self.streak_sigma))
        if not (r <= self.inner_size < self.background_size):
            raise ParameterError(
                f"need filter half-width ({r} px for filter_sigma={self.filter_sigma}, "
                f"streak_sigma={self.streak_sigma}) <= inner_size < background_size, got "
                f"inner_size={self.inner_size}, background_size={self.background_size}")
        ring = (2 * self.background_size + 1) ** 2 - (2 * self.inner_size + 1) ** 2
        if self.min_background > ring:
            raise ParameterError(f"min_background ({self.min_background}) is more than the "
                                 f"{ring} pixels of the background annulus; lower it or raise "
                                 f"background_size")


def filter_radius(sigma: float) -> int:
    """Half-width (pixels) of a matched filter of ``sigma`` pixels: ``round(2·sigma)``, >= 1."""
    return max(1, int(round(2.0 * float(sigma))))


def filter_weights(sigma: float) -> np.ndarray:
    """1-D weights (float64, 2·r + 1 taps at offsets ``-r .. r`` pixels, r =
    :func:`filter_radius`) of the separable round Gaussian filter of ``sigma`` pixels."""
    r = filter_radius(sigma)
    d = np.arange(-r, r + 1, dtype=np.float64)
    return np.exp(-d * d / (2.0 * float(sigma) ** 2))


def extended_panel(data: np.ndarray, bad: np.ndarray, params: ExtendedParams, gain, *,
                   mask_empty: bool = False, radius: np.ndarray | None = None
                   ) -> dict[str, np.ndarray]:
    """Run the extended finder on one 2-D panel; returns per-spot columns (panel-local).

    Parameters
    ----------
    data : ndarray, (H, W)
        The panel (detector units).
    bad : ndarray of bool, (H, W)
        True for pixels to ignore.
    params : ExtendedParams
    gain : float or ndarray of float64, (W,)
        Detector units per photon, one number or one per column.
    mask_empty : bool
        True promises that ``bad`` is all False (it is then not read).
    radius : ndarray of float32, (H, W), optional
        Distance of every pixel from the beam (pixels), for the radial streak filter; without
        it the streak filter is off.

    Returns
    -------
    dict of ndarray
        ``n_pixels``, ``fs``, ``ss``, ``intensity``, ``max_pixel``, ``background``, ``snr``.
    """
    h, w = data.shape
    k = int(params.kernel_size)
    if radius is None:
        radius = np.zeros((1, 1), dtype=np.float32)
        params = replace(params, streak_sigma=0.0)
    gcol = np.asarray(gain, dtype=np.float64)
    if gcol.ndim == 0:
        gcol = np.full(w, float(gcol))
    has_bad = not mask_empty
    rows, cols, lab, parent, row_start, n_strong, n_lab = _kernels.dispersion_candidates(
        data, bad, k, k, float(params.sigma_background), float(params.sigma_strong),
        float(params.global_threshold), int(params.min_local), _typical_level(data, bad), gcol,
        32, has_bad)
    excl = _xk.exclusion_map(h, w, rows, cols, n_strong, int(params.exclude_radius))
    if n_lab:
        spike = _hot_like_pixels(data, bad, params, gcol, rows, cols, lab, parent, row_start,
                                 n_strong, n_lab, has_bad)
        hot, bright = spike
        if params.hot_pixels and hot.any():
            bad = bad.copy() if has_bad else np.zeros(data.shape, dtype=bool)
            bad[rows[:n_strong][hot], cols[:n_strong][hot]] = True
            has_bad = True
        excl[rows[:n_strong][bright], cols[:n_strong][bright]] = 3
    rows, cols, lab, parent, row_start, n_cand, n_lab, z = _xk.summed_candidates(
        data, bad, excl, has_bad, int(params.background_size), int(params.inner_size),
        filter_weights(params.filter_sigma), gcol, float(params.sigma_sum),
        float(params.global_threshold), float(params.min_background), radius,
        float(params.streak_sigma), float(params.streak_width), float(params.streak_prescreen))
    if n_lab == 0:
        return _empty_cols()
    if params.merge_gap is not None:
        _kernels.merge_nearby_sparse(rows, cols, lab, parent, row_start, n_cand,
                                     int(params.merge_gap) + 1)
    npx, fs, ss, net, mx, bg, snr = _kernels.component_stats_sparse(
        data, bad, rows, cols, lab, parent, row_start, n_cand, n_lab, k, gcol, has_bad)
    zmax, strong = _xk.component_peaks(lab, parent, n_cand, n_lab, z, excl, rows, cols)
    keep = (npx >= params.min_spot_size) & (npx <= params.max_spot_size)
    keep &= np.where(strong, snr >= params.min_snr, zmax >= params.sigma_peak)
    return {"n_pixels": npx[keep], "fs": fs[keep], "ss": ss[keep], "intensity": net[keep],
            "max_pixel": mx[keep], "background": bg[keep], "snr": snr[keep]}


def _hot_like_pixels(data, bad, params, gcol, rows, cols, lab, parent, row_start, n_strong,
                     n_lab, has_bad) -> tuple[np.ndarray, np.ndarray]:
    """Which first-pass strong pixels (bool, one per candidate) belong to spots that look like
    hot pixels (:func:`.dispersion.hot_pixel_spots`; the spike is the strong pixels within one
    pixel of such a spot's centroid), and which of those spikes rise more than
    :data:`SPIKE_SIGMA` Poisson sigmas above their spot's background."""
    if params.merge_gap is not None:
        _kernels.merge_nearby_sparse(rows, cols, lab, parent, row_start, n_strong,
                                     int(params.merge_gap) + 1)
    npx, fs, ss, _net, mx, bg, _snr = _kernels.component_stats_sparse(
        data, bad, rows, cols, lab, parent, row_start, n_strong, n_lab,
        int(params.kernel_size), gcol, has_bad)
    hot = hot_pixel_spots(data, bad, {"n_pixels": npx, "fs": fs, "ss": ss, "max_pixel": mx,
                                      "background": bg})
    g = gcol[np.clip(fs.astype(np.int64), 0, len(gcol) - 1)]
    loud = (mx - bg) > SPIKE_SIGMA * np.sqrt(g * np.maximum(bg, g))
    r = rows[:n_strong]
    c = cols[:n_strong]
    spike = np.zeros(n_strong, dtype=bool)
    bright = np.zeros(n_strong, dtype=bool)
    for f, s, lo in zip(fs[hot], ss[hot], loud[hot]):
        near = (np.abs(c + 0.5 - f) <= 1.0) & (np.abs(r + 0.5 - s) <= 1.0)
        spike |= near
        if lo:
            bright |= near
    return spike, bright


def extended_panels(panels: list[tuple[np.ndarray, np.ndarray]], params: ExtendedParams,
                    *, mask_empty: bool = False, radius: list[np.ndarray] | None = None
                    ) -> tuple[list[dict[str, np.ndarray]], dict]:
    """Run on every panel with the gains of :func:`.dispersion.panel_gains`.

    Parameters
    ----------
    panels : list of (data, bad)
        (H, W) panels (detector units) and their bool masks (True = bad).
    params : ExtendedParams
    mask_empty : bool
        True promises that every panel's ``bad`` is all False.
    radius : list of ndarray, optional
        Distance from the beam (pixels) of every pixel of every panel (streak filter).

    Returns
    -------
    list of dict, dict
        Per-panel spot columns (as :func:`extended_panel`) and ``{"gain": g}`` (the median
        column gain, detector units per photon).
    """
    gains = panel_gains(panels, params)
    out = []
    for n, ((data, bad), g) in enumerate(zip(panels, gains)):
        if data.shape[0] == 0 or data.shape[1] == 0:
            out.append(_empty_cols())
            continue
        out.append(extended_panel(data, bad, params, g, mask_empty=mask_empty,
                                  radius=None if radius is None else radius[n]))
    allg = np.concatenate(gains) if gains else np.ones(1)
    return out, {"gain": float(np.median(allg)) if allg.size else 1.0}
