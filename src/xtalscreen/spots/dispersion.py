"""The DIALS dispersion spot finder (Winter et al. 2018, after XDS), compiled with numba.

A pixel is *strong* when, in the (2·kernel_size+1)² window centred on it (window truncated at
the panel edges, masked pixels left out; ``m`` good pixels, mean μ, sample variance σ²):

- ``m >= min_local`` and the pixel exceeds ``global_threshold``;
- the index of dispersion is too high for a Poisson background:
  ``σ²/μ > gain · (1 + sigma_background · sqrt(2 / (m - 1)))``;
- the pixel itself is far above the local mean: ``p - μ > sigma_strong · sqrt(gain · μ)``.

Strong pixels are grouped into 4-connected spots (as DIALS), then, unless ``merge_gap`` is None,
spots whose pixels come within ``merge_gap + 1`` pixels of each other (Chebyshev distance) are
merged: the default ``merge_gap=1`` bridges one-pixel gaps, which keeps a spot whole across a
dead pixel and keeps diagonal streaks (XFEL bandwidth, mosaicity) in one piece. Spots with
fewer than ``min_spot_size`` or more than ``max_spot_size`` pixels are dropped. Each spot gets
a background (mean of the good pixels in its bounding box grown by ``kernel_size`` that are
neither strong nor 8-adjacent to a strong pixel), a background-subtracted intensity, a
background-weighted centroid, its highest pixel and an SNR
``I / sqrt(gain·I + n·σ_bg²·(1 + n/n_bg))`` (σ_bg² the variance of those background pixels);
spots below ``min_snr`` are dropped.

When ``gain`` is not given it is estimated from the frame itself (``gain_per``):

- ``"frame"``: the median of σ²/μ over windows sampled on a grid (every 16 pixels or coarser,
  ~1000 windows per panel), which for a Poisson background in detector units is the number of
  detector units per photon; frames without a positive background fall back to gain 1;
- ``"panel"``: the same per panel, where it is above the frame's value;
- ``"column"`` (default): per panel, then per column — the median of σ²/μ over vertical strips
  of 8 pixels (≤ 16 strips per column), used only where it exceeds the panel's gain by more
  than 3 times its own statistical scatter. A Poisson detector with one gain keeps one gain per
  panel; a detector whose noise is read noise that varies between ASICs and columns (CSPAD:
  dark-subtracted ADU, edge columns ~2x noisier) gets a noise scale that follows the column,
  instead of false spots wherever the noise is above the frame's average (real CSPAD frames:
  1,688 and 2,500 spots with one gain per frame, 583 and 739 per column).

Gains are only ever raised above the frame's value, never lowered: a lower local ratio comes
from read noise weighing less at a higher background (a water ring), and a lower gain there
would call noise strong (simulated water-ring frames: precision 0.73 when columns could lower
it, 0.998 now).

The test uses the gain of the centre pixel's column. ``hot_pixels=True`` drops spots that look
like hot pixels (:func:`hot_pixel_spots`: 1-2 pixels with almost nothing in the surrounding
pixels); it is off by default because sharp Bragg spots on small-pixel simulated CSPAD frames
can look the same (recall 0.82 → 0.76 there on the tuning seeds). On unmasked hot pixels
(simulated jungfrau4m, 0.1 %) it lifts precision from 0.51 to 0.98.

The compiled kernel (:func:`xtalscreen.spots._kernels.dispersion_candidates`) does the whole
test in one pass with O(1) work per pixel (rolling column sums over a ring of rows), writes
only the list of strong pixels, and labels them through a sparse row index; no image-sized
temporary is allocated. Panels wider than 1024 pixels, and the panels of frames larger than
4 Mpx, go to its tiled twin (:func:`~xtalscreen.spots._kernels.dispersion_candidates_tiled`,
same result): each row is processed in column tiles of
:data:`~xtalscreen.spots._kernels.DISPERSION_TILE` pixels (so the row buffers stay in the L1
cache) while the image row a few rows ahead is prefetched from memory (so a frame larger than
the cache does not stall on every row).
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

import numpy as np

from xtalscreen.errors import ParameterError
from xtalscreen.spots import _kernels

GAIN_SAMPLE_STEP = 16
#: Sampled windows per panel for the gain estimate (at most about this many).
GAIN_MAX_WINDOWS = 1024
#: Granularity of the estimated gain (``DispersionParams.gain_per``).
GAIN_PER = ("frame", "panel", "column")
#: Vertical strip length (pixels) of the per-column gain estimate.
GAIN_STRIP = 8
#: At most about this many (evenly spaced) strips per column are used.
GAIN_MAX_STRIPS = 16


@dataclass(frozen=True)
class DispersionParams:
    """Parameters of :func:`dispersion_panels` (all keyword arguments of ``find_spots``).

    Attributes
    ----------
    kernel_size : int
        Half-size of the local window in pixels (3 → 7×7), as DIALS ``kernel_size``.
    gain : float or None
        Detector units per photon; None estimates it from the frame.
    sigma_background : float
        Dispersion threshold in sigmas (DIALS ``sigma_background``, default 6).
    sigma_strong : float
        Pixel threshold above the local mean in sigmas (DIALS ``sigma_strong``, default 3).
    min_local : int
        Minimum good pixels in the window for a pixel to be tested (DIALS ``min_local``).
    global_threshold : float
        Pixels must also exceed this value (detector units); 0 = off for positive data.
    min_spot_size, max_spot_size : int
        Accepted spot sizes in pixels (inclusive).
    merge_gap : int or None
        Merge spots separated by at most this many pixels (None: plain 4-connectivity, DIALS).
    min_snr : float
        Drop spots whose integrated SNR (see module doc) is below this (0 = off, as DIALS). The
        default 4 removes noise blobs on steep backgrounds (water ring on a CCD) and costs
        almost no recall of spots the simulator counts as visible (SNR >= 5).
    gain_per : {"column", "panel", "frame"}
        Granularity of the estimated gain when ``gain`` is None (module doc).
    hot_pixels : bool
        Drop spots that look like hot pixels (:func:`hot_pixel_spots`).
    """

    kernel_size: int = 3
    gain: float | None = None
    sigma_background: float = 6.0
    sigma_strong: float = 3.0
    min_local: int = 2
    global_threshold: float = 0.0
    min_spot_size: int = 2
    max_spot_size: int = 1000
    merge_gap: int | None = 1
    min_snr: float = 4.0
    gain_per: str = "column"
    hot_pixels: bool = False

    def __post_init__(self) -> None:
        if self.gain_per not in GAIN_PER:
            raise ParameterError(f"gain_per must be one of {GAIN_PER}, got {self.gain_per!r}")
        if not isinstance(self.hot_pixels, (bool, np.bool_)):
            raise ParameterError(f"hot_pixels must be True or False, got {self.hot_pixels!r}")
        _int_at_least("kernel_size", self.kernel_size, 1)
        _int_at_least("min_local", self.min_local, 2)
        _int_at_least("min_spot_size", self.min_spot_size, 1)
        _int_at_least("max_spot_size", self.max_spot_size, 1)
        if self.merge_gap is not None:
            _int_at_least("merge_gap", self.merge_gap, 0)
        if self.max_spot_size < self.min_spot_size:
            raise ParameterError(f"max_spot_size ({self.max_spot_size}) must be >= min_spot_size "
                                 f"({self.min_spot_size})")
        for name in ("sigma_background", "sigma_strong", "min_snr"):
            v = getattr(self, name)
            if not np.isfinite(float(v)) or float(v) < 0:
                raise ParameterError(f"{name} must be a finite number >= 0, got {v!r}")
        if not np.isfinite(float(self.global_threshold)):
            raise ParameterError(f"global_threshold must be finite, got {self.global_threshold!r}")
        if self.gain is not None and not (np.isfinite(float(self.gain)) and float(self.gain) > 0):
            raise ParameterError(f"gain must be > 0 detector units per photon, got {self.gain!r}")

    def as_dict(self) -> dict:
        return asdict(self)


def _int_at_least(name: str, value, low: int) -> None:
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < low:
        raise ParameterError(f"{name} must be an integer >= {low}, got {value!r}")


def estimate_gain(panels: list[tuple[np.ndarray, np.ndarray]], *, half: int = 3,
                  step: int = GAIN_SAMPLE_STEP, default: float = 1.0) -> float:
    """Detector units per photon from the frame: median of local variance/mean (see module doc).

    Parameters
    ----------
    panels : list of (data, bad)
        float32 (H, W) panels and their bool masks (True = bad).
    half : int
        Half-size of the sampled windows (pixels).
    step : int
        Smallest grid spacing of the sampled windows (pixels); larger panels use a coarser
        grid, at most about :data:`GAIN_MAX_WINDOWS` windows per panel.
    default : float
        Returned when no window has a positive mean.

    Returns
    -------
    float
        The gain.
    """
    vals, weights = [], []
    for data, bad in panels:
        # at most ~GAIN_MAX_WINDOWS windows per panel: the median is settled long before
        st = max(int(step), int(np.sqrt(data.shape[0] * data.shape[1] / GAIN_MAX_WINDOWS)))
        g, n = _kernels.estimate_gain(data, bad, half, st)
        if n > 0 and np.isfinite(g):
            vals.append(g)
            weights.append(n)
    if not vals:
        return float(default)
    g = float(np.average(vals, weights=weights)) if len(vals) > 1 else float(vals[0])
    return float(min(max(g, 1e-3), 1e6))


def column_gains(data: np.ndarray, bad: np.ndarray, fallback: float, *,
                 strip: int = GAIN_STRIP) -> np.ndarray:
    """Gain of every column of one panel (detector units per photon), float64 (W,).

    The median over vertical strips of ``strip`` pixels (at most about
    :data:`GAIN_MAX_STRIPS`, evenly spaced) of variance / mean (chi-square median
    bias corrected), at most ``4 · fallback``; columns with fewer than 4 usable strips, and
    columns whose estimate is not above ``fallback`` (the panel gain) by more than 3 times its
    statistical scatter, get ``fallback``. Detectors whose noise is not Poisson with one gain (CSPAD:
    read noise that differs between ASICs and is larger in the edge columns) get a noise scale
    that follows the column, instead of false spots wherever the noise is above the average.
    """
    # keep the panel gain where a column's estimate is within its own noise of it (the median
    # of n strip ratios scatters by ~1.25·sqrt(2/(strip-1))/sqrt(n)), so Poisson detectors keep
    # one gain per panel and only genuinely different columns get their own
    n_all = data.shape[0] // int(strip)
    n = max(-(-n_all // max(1, n_all // GAIN_MAX_STRIPS)), 1)  # strips used
    scatter = 1.25 * np.sqrt(2.0 / (strip - 1)) / np.sqrt(n)
    # columns whose median is surely below the cut (a hair under it, so that rounding cannot
    # matter) keep the fallback without a median being taken: the result is the same
    below = float(fallback) * (1.0 + 3.0 * scatter) * (1.0 - 1e-9)
    g = _kernels.column_gain(data, bad, int(strip), float(fallback), 4, GAIN_MAX_STRIPS, below)
    # only raise it: a column may be noisier than its panel (a lower estimate comes from read
    # noise weighing less at a higher background, e.g. on a water ring, and lowering the gain
    # there would call noise strong)
    g = np.where(g / fallback - 1.0 < 3.0 * scatter, fallback, g)
    return np.minimum(g, fallback * 4.0)


def panel_gains(panels: list[tuple[np.ndarray, np.ndarray]], params: DispersionParams
                ) -> list[np.ndarray]:
    """Gain of every column of every panel, per ``params.gain`` / ``params.gain_per``."""
    if params.gain is not None:
        return [np.full(d.shape[1], float(params.gain)) for d, _ in panels]
    frame_gain = estimate_gain(panels)
    out = []
    for data, bad in panels:
        g = frame_gain
        if params.gain_per in ("panel", "column") and data.size and len(panels) > 1:
            g = max(estimate_gain([(data, bad)], default=frame_gain), frame_gain)
        if params.gain_per == "column" and data.size:
            out.append(column_gains(data, bad, g))
        else:
            out.append(np.full(data.shape[1], g))
    return out


def dispersion_panel(data: np.ndarray, bad: np.ndarray, params: DispersionParams,
                     gain, *, mask_empty: bool = False,
                     frame_pixels: int | None = None) -> dict[str, np.ndarray]:
    """Run the dispersion finder on one 2-D panel; returns per-spot columns (panel-local).

    ``gain`` is a number or a float64 array (W,) with the gain of every column.
    ``mask_empty=True`` promises that ``bad`` is all False (the kernel then skips reading it).
    ``frame_pixels``: pixels of the whole frame the panel belongs to (default: the panel's);
    it only picks the faster of two kernels that give the same result (wide panels and frames
    larger than the cache: :func:`~xtalscreen.spots._kernels.dispersion_candidates_tiled`).
    """
    k = int(params.kernel_size)
    gcol = np.asarray(gain, dtype=np.float64)
    if gcol.ndim == 0:
        gcol = np.full(data.shape[1], float(gcol))
    n_frame = data.size if frame_pixels is None else int(frame_pixels)
    if data.shape[1] > _kernels.UNTILED_MAX_WIDTH or n_frame > _kernels.UNTILED_MAX_FRAME_PIXELS:
        candidates = _kernels.dispersion_candidates_tiled
    else:
        candidates = _kernels.dispersion_candidates
    rows, cols, lab, parent, row_start, n_strong, n_lab = candidates(
        data, bad, k, k, float(params.sigma_background), float(params.sigma_strong),
        float(params.global_threshold), int(params.min_local), _typical_level(data, bad), gcol,
        32, not mask_empty)
    if n_lab == 0:
        return _empty_cols()
    if params.merge_gap is not None:
        _kernels.merge_nearby_sparse(rows, cols, lab, parent, row_start, n_strong,
                                     int(params.merge_gap) + 1)
    npx, fs, ss, net, mx, bg, snr = _kernels.component_stats_sparse(
        data, bad, rows, cols, lab, parent, row_start, n_strong, n_lab, k, gcol, not mask_empty)
    keep = (npx >= params.min_spot_size) & (npx <= params.max_spot_size)
    if params.min_snr > 0:
        keep &= snr >= params.min_snr
    out = {"n_pixels": npx[keep], "fs": fs[keep], "ss": ss[keep], "intensity": net[keep],
           "max_pixel": mx[keep], "background": bg[keep], "snr": snr[keep]}
    if params.hot_pixels and len(out["fs"]):
        hot = hot_pixel_spots(data, bad, out)
        out = {key: v[~hot] for key, v in out.items()}
    return out


#: A spot of at most this many pixels is a hot-pixel candidate (:func:`hot_pixel_spots`).
HOT_MAX_PIXELS = 2
#: ... when its 8-neighbour ring carries less than this fraction of the peak's excess.
HOT_RING_FRACTION = 0.05


def hot_pixel_spots(data: np.ndarray, bad: np.ndarray, cols: dict[str, np.ndarray]) -> np.ndarray:
    """Which spots look like hot pixels rather than Bragg peaks (bool per spot).

    A Bragg spot is blurred by the point-spread function and the beam, so the pixels around its
    brightest pixel carry a good part of its intensity (a Gaussian of σ 0.5 px puts ~30 % of the
    peak pixel's excess in each edge neighbour). A hot pixel (or pair) is an isolated 1-2 pixel
    spike: at most :data:`HOT_MAX_PIXELS` strong pixels, and the mean excess over the spot's
    background of the good pixels ringing its brightest pixel (8-neighbourhood, outside the
    spot; for a pair, the second pixel left out) is below :data:`HOT_RING_FRACTION` of the
    peak's excess. Pixels that are hot in many frames are better masked once
    (``xtalscreen.io`` masks, or a run-level mask of pixels strong in a large fraction of
    frames).
    """
    return _kernels.hot_spots(data, bad, cols["n_pixels"], cols["fs"], cols["ss"],
                              cols["max_pixel"], cols["background"], HOT_MAX_PIXELS,
                              HOT_RING_FRACTION)


def _typical_level(data: np.ndarray, bad: np.ndarray) -> float:
    """Median of a sparse pixel sample: the window sums are taken about it (float32 precision
    for frames with a large pedestal)."""
    if data.dtype == np.float32 or data.dtype == np.float64:
        return float(_kernels.typical_level(data, bad, 32, 16))
    d = data[::32, ::16]
    v = d[~bad[::32, ::16] & np.isfinite(d)]
    return float(np.floor(np.median(v))) if v.size else 0.0


def dispersion_panels(panels: list[tuple[np.ndarray, np.ndarray]], params: DispersionParams,
                      *, mask_empty: bool = False) -> tuple[list[dict[str, np.ndarray]], dict]:
    """Run on every panel with the gains of :func:`panel_gains`.

    ``mask_empty=True`` promises that every panel's ``bad`` is all False (not read by the
    search pass).

    Returns the per-panel column dicts and ``{"gain": g}`` (the median column gain).
    """
    gains = panel_gains(panels, params)
    n_frame = sum(d.size for d, _ in panels)
    out = []
    for (data, bad), g in zip(panels, gains):
        if data.shape[0] == 0 or data.shape[1] == 0:
            out.append(_empty_cols())
            continue
        out.append(dispersion_panel(data, bad, params, g, mask_empty=mask_empty,
                                    frame_pixels=n_frame))
    allg = np.concatenate(gains) if gains else np.ones(1)
    return out, {"gain": float(np.median(allg)) if allg.size else 1.0}


def _empty_cols() -> dict[str, np.ndarray]:
    z = np.zeros(0)
    return {"n_pixels": np.zeros(0, dtype=np.int64), "fs": z, "ss": z, "intensity": z,
            "max_pixel": z, "background": z, "snr": z}
