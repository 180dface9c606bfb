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

When ``gain`` is not given it is estimated from the frame itself: the median of σ²/μ over
windows sampled on a grid (every ``16`` pixels), which for a Poisson background in detector
units is the number of detector units per photon. Frames without a positive background (dark-
subtracted ADU) fall back to gain 1.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

import numpy as np

from xtalscreen.errors import ParameterError
from xtalscreen.spots import _kernels

GAIN_SAMPLE_STEP = 16


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

    def __post_init__(self) -> None:
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
                  step: int = GAIN_SAMPLE_STEP) -> float:
    """Detector units per photon from the frame: median of local variance/mean (see module doc).

    Parameters
    ----------
    panels : list of (data, bad)
        float32 (H, W) panels and their bool masks (True = bad).
    half : int
        Half-size of the sampled windows (pixels).
    step : int
        Grid spacing of the sampled windows (pixels).

    Returns
    -------
    float
        The gain; 1.0 when no window has a positive mean.
    """
    vals, weights = [], []
    for data, bad in panels:
        g, n = _kernels.estimate_gain(data, bad, half, step)
        if n > 0 and np.isfinite(g):
            vals.append(g)
            weights.append(n)
    if not vals:
        return 1.0
    g = float(np.average(vals, weights=weights)) if len(vals) > 1 else float(vals[0])
    return float(min(max(g, 1e-3), 1e6))


def dispersion_panel(data: np.ndarray, bad: np.ndarray, params: DispersionParams,
                     gain: float) -> dict[str, np.ndarray]:
    """Run the dispersion finder on one 2-D panel; returns per-spot columns (panel-local)."""
    k = int(params.kernel_size)
    labels = np.zeros(data.shape, dtype=np.int32)  # calloc: pages untouched stay free
    rows, cols, parent, n_strong, n_lab = _kernels.dispersion_strong(
        data, bad, k, k, float(gain), float(params.sigma_background), float(params.sigma_strong),
        float(params.global_threshold), int(params.min_local), labels, _typical_level(data, bad))
    if n_lab == 0:
        return _empty_cols()
    if params.merge_gap is not None:
        _kernels.merge_nearby(labels, rows, cols, parent, n_strong, int(params.merge_gap) + 1)
    npx, fs, ss, net, mx, bg, snr = _kernels.component_stats(
        data, bad, labels, rows, cols, parent, n_strong, n_lab, k, float(gain))
    keep = (npx >= params.min_spot_size) & (npx <= params.max_spot_size)
    if params.min_snr > 0:
        keep &= snr >= params.min_snr
    return {"n_pixels": npx[keep], "fs": fs[keep], "ss": ss[keep], "intensity": net[keep],
            "max_pixel": mx[keep], "background": bg[keep], "snr": snr[keep]}


def _typical_level(data: np.ndarray, bad: np.ndarray) -> float:
    """Median of a sparse pixel sample: the window sums are taken about it (float32 precision
    for frames with a large pedestal)."""
    d = data[::32, ::16]
    v = d[~bad[::32, ::16] & np.isfinite(d)]
    return float(np.floor(np.median(v))) if v.size else 0.0


def dispersion_panels(panels: list[tuple[np.ndarray, np.ndarray]], params: DispersionParams
                      ) -> tuple[list[dict[str, np.ndarray]], dict]:
    """Run on every panel; the gain (given or estimated over all panels) is shared.

    Returns the per-panel column dicts and ``{"gain": g}``.
    """
    gain = params.gain if params.gain is not None else estimate_gain(panels)
    out = []
    for data, bad in panels:
        if data.shape[0] == 0 or data.shape[1] == 0:
            out.append(_empty_cols())
            continue
        out.append(dispersion_panel(data, bad, params, gain))
    return out, {"gain": float(gain)}


def _empty_cols() -> dict[str, np.ndarray]:
    z = np.zeros(0)
    return {"n_pixels": np.zeros(0, dtype=np.int64), "fs": z, "ss": z, "intensity": z,
            "max_pixel": z, "background": z, "snr": z}
