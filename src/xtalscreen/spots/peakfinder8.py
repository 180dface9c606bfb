"""A peakfinder8-style spot finder (Barty et al. 2014, Cheetah; as in CrystFEL and OM).

Steps, following CrystFEL's ``peakfinder8.c`` semantics:

1. Radial background: pixels are binned by their distance from the beam (rounded to whole
   pixels, over all panels together). For ``iterations`` rounds, the mean and standard deviation
   of each ring are computed from the pixels inside (mean ± N·sigma) of the previous round
   (iterative outlier rejection); the per-pixel threshold is then
   ``max(mean_r + N·sigma_r, adc_threshold)`` with ``N = threshold_sigma`` (default: ``min_snr``).
2. Peaks: 8-connected groups of pixels above their ring's threshold (the panel's outer row and
   column do not start peaks), with ``min_pix <= n <= max_pix`` pixels.
3. Local background: mean and sigma of the good pixels below threshold, not in a peak, within a
   disc of radius ``2·local_bg_radius`` around the peak's centre of mass.
4. Accept when ``SNR = sum(p - local_mean) / local_sigma >= min_snr`` and the peak's maximum
   above the local mean exceeds the brightest background pixel's.
5. ``min_res``/``max_res`` (pixels from the beam) restrict the pixels considered.

No-tuning defaults (``adc_threshold=None``): the gain (detector units per photon) is estimated
from the frame as for the dispersion finder, and two Poisson floors are added so that
photon-counting frames with an almost empty background do not turn single photons into
"peaks": each ring's threshold is at least the count that a Poisson background of the ring's
mean exceeds with the one-sided normal probability of ``N`` sigmas, and the local sigma is at
least one photon (``gain``). Give ``adc_threshold`` (a number) for CrystFEL's plain behaviour.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

import numpy as np

from xtalscreen.errors import ParameterError
from xtalscreen.spots import _kernels
from xtalscreen.spots.dispersion import _int_at_least, estimate_gain


@dataclass(frozen=True)
class Peakfinder8Params:
    """Parameters of :func:`peakfinder8_panels` (keyword arguments of ``find_spots``).

    Attributes
    ----------
    adc_threshold : float or None
        Floor of the per-pixel threshold (detector units); CrystFEL ``--threshold``. None: the
        automatic Poisson floors of the module doc.
    min_snr : float
        Minimum integrated SNR of a peak; CrystFEL ``--min-snr``.
    threshold_sigma : float or None
        N in the per-pixel threshold mean + N·sigma; None uses ``min_snr`` as peakfinder8 does.
    min_pix, max_pix : int
        Accepted peak sizes in pixels; CrystFEL ``--min-pix-count``/``--max-pix-count``.
    local_bg_radius : int
        Local background radius in pixels (the disc has radius twice this).
    min_res, max_res : float
        Only pixels between these distances from the beam (pixels) are used.
    iterations : int
        Rounds of outlier rejection for the radial statistics.
    max_peaks : int
        Peaks kept per panel at most.
    """

    adc_threshold: float | None = None
    min_snr: float = 5.0
    threshold_sigma: float | None = None
    min_pix: int = 2
    max_pix: int = 200
    local_bg_radius: int = 3
    min_res: float = 0.0
    max_res: float = 1e9
    iterations: int = 5
    max_peaks: int = 10000

    def __post_init__(self) -> None:
        _int_at_least("min_pix", self.min_pix, 1)
        _int_at_least("max_pix", self.max_pix, 1)
        _int_at_least("local_bg_radius", self.local_bg_radius, 1)
        _int_at_least("iterations", self.iterations, 1)
        _int_at_least("max_peaks", self.max_peaks, 1)
        if self.max_pix < self.min_pix:
            raise ParameterError(f"max_pix ({self.max_pix}) must be >= min_pix ({self.min_pix})")
        for name in ("min_snr", "min_res"):
            v = float(getattr(self, name))
            if not np.isfinite(v) or v < 0:
                raise ParameterError(f"{name} must be a finite number >= 0, got {v!r}")
        if self.threshold_sigma is not None and not (float(self.threshold_sigma) >= 0):
            raise ParameterError(f"threshold_sigma must be >= 0, got {self.threshold_sigma!r}")
        if not float(self.max_res) > float(self.min_res):
            raise ParameterError(f"max_res ({self.max_res} px) must be > min_res ({self.min_res} px)")
        if self.adc_threshold is not None and not np.isfinite(float(self.adc_threshold)):
            raise ParameterError(f"adc_threshold must be finite, got {self.adc_threshold!r}")

    @property
    def nsig(self) -> float:
        return float(self.min_snr if self.threshold_sigma is None else self.threshold_sigma)

    def as_dict(self) -> dict:
        return asdict(self)


def radius_bins(radius: np.ndarray, params: Peakfinder8Params) -> np.ndarray:
    """int32 ring index (rounded radius in pixels) of every pixel; -1 outside [min_res, max_res]."""
    r = np.asarray(radius, dtype=np.float32)
    rb = np.rint(r).astype(np.int32)
    out = (r < params.min_res) | (r > params.max_res) | ~np.isfinite(r)
    if out.any():
        rb[out] = -1
    return rb


def peakfinder8_panels(panels: list[tuple[np.ndarray, np.ndarray, np.ndarray]],
                       params: Peakfinder8Params) -> tuple[list[dict[str, np.ndarray]], dict]:
    """Run on all panels; ``panels`` holds (data, bad, ring_index) triples (see :func:`radius_bins`).

    The radial statistics are shared by all panels (as in CrystFEL). Returns per-panel column
    dicts and a dict with the number of rings.
    """
    n_bins = 1
    for _, _, rb in panels:
        if rb.size:
            n_bins = max(n_bins, int(rb.max()) + 1)
    auto = params.adc_threshold is None
    adc = 0.0 if auto else float(params.adc_threshold)
    if len(panels) == 1:
        d, b, rb = panels[0]
    else:  # the ring statistics are shared by all panels
        d = np.concatenate([p[0].reshape(1, -1) for p in panels], axis=1)
        b = np.concatenate([p[1].reshape(1, -1) for p in panels], axis=1)
        rb = np.concatenate([p[2].reshape(1, -1) for p in panels], axis=1)
    mean, sig, thr, cnt = _kernels.radial_stats(d, b, rb, n_bins, int(params.iterations),
                                                params.nsig, adc)
    min_sigma = 0.0
    gain = None
    if auto:
        gain = estimate_gain([(p[0], p[1]) for p in panels])
        thr = np.maximum(thr, poisson_floor(mean, cnt, gain, params.nsig))
        min_sigma = gain
    out = []
    for d, b, rb in panels:
        if d.shape[0] < 3 or d.shape[1] < 3:
            out.append(_empty_cols())
            continue
        n, fs, ss, tot, mx, bg, lsig, snr = _kernels.peakfinder8_panel(
            d, b, rb, mean, thr, int(params.min_pix), int(params.max_pix),
            int(params.local_bg_radius), float(params.min_snr), int(params.max_peaks),
            float(min_sigma))
        out.append({"n_pixels": n, "fs": fs, "ss": ss, "intensity": tot, "max_pixel": mx,
                    "background": bg, "snr": snr})
    return out, {"n_rings": n_bins, "gain": gain}


def poisson_floor(mean: np.ndarray, count: np.ndarray, gain: float, nsig: float) -> np.ndarray:
    """Per-ring threshold floor (detector units): the smallest whole photon count ``k`` with
    ``P(X >= k) <= Φ(-nsig)`` for ``X ~ Poisson(mean / gain)``, as ``(k - 0.5) · gain``."""
    from scipy.stats import norm, poisson

    mu = np.where((count > 0) & (mean > 0), mean / gain, 0.0)
    p = float(norm.sf(nsig))
    k = poisson.isf(p, np.maximum(mu, 1e-12)) + 1.0   # isf gives the largest k with sf(k) > p
    floor = (k - 0.5) * gain
    return np.where(count > 0, floor, np.inf)


def _empty_cols() -> dict[str, np.ndarray]:
    z = np.zeros(0)
    return {"n_pixels": np.zeros(0, dtype=np.int64), "fs": z, "ss": z, "intensity": z,
            "max_pixel": z, "background": z, "snr": z}
