"""Exact per-frame labels: visible spots, Ke Hit/Maybe/Miss, DiffraNet classes, spot table.

Definitions (also in :class:`xtalscreen.simulate.config.LabelConfig`): a spot with expected
integrated photons ``I`` (after shadows) over a footprint of ``n`` pixels (its 2-sigma ellipse,
holding 86.5 % of the profile, at least one pixel) with expected background ``B`` there is
**visible** when ``0.865 I / sigma >= snr_min`` (default 5) and its centre pixel is not
masked; ``sigma²`` is the variance of the footprint sum with the detector's whole noise
(:func:`noise_terms`: Poisson ``0.865 I + B``, ``n read_noise²``, the per-pixel gain error on
every pixel's expected photons, the rounding of a square-root 8-bit output). By default the
labels use expected values, not the noisy realisation, so they are exact properties of the
simulated physics; with
``LabelConfig.visibility = "measured"`` they use the SNR measured in the recorded frame
(:func:`xtalscreen.simulate.engine.measured_snr`). Both counts are always recorded.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from xtalscreen.simulate.config import LabelConfig

#: Footprint fraction: share of a 2-D Gaussian inside its 2-sigma ellipse.
FOOTPRINT_FRACTION = 1.0 - np.exp(-2.0)

#: Fields of the ground-truth spot table (a numpy structured array).
SPOT_DTYPE = np.dtype([
    ("panel", np.int16), ("fs", np.float32), ("ss", np.float32), ("x", np.float32), ("y", np.float32),
    ("h", np.int32), ("k", np.int32), ("l", np.int32), ("photons", np.float32), ("snr", np.float32),
    ("peak_snr", np.float32), ("d", np.float32), ("visible", np.bool_), ("crystal", np.int16),
    ("snr_measured", np.float32),
])


@dataclass
class Truth:
    """Ground truth of one simulated frame.

    Attributes
    ----------
    diffranet_class : str
        blank / no-crystal / weak / good / strong (realised, from the physics).
    ke_class : str
        hit / maybe / miss.
    spots : ndarray of :data:`SPOT_DTYPE`
        Reflections delivering at least ``labels.min_spot_photons`` photons: panel, fs, ss (data
        pixels, continuous; pixel i spans [i, i+1)), x, y (assembled image pixels), Miller
        indices, expected photons, SNR (footprint, the visibility criterion), peak SNR (the
        brightest pixel's expected signal over its noise), d (Å), visible flag, crystal number.
    n_visible : int
    resolution_limit : float
        d (Å) of the highest-resolution visible spot; NaN when none is visible.
    params : dict
        The drawn physical parameters (fluence, wavelength, cells, orientations, sizes, ...).
    requested_class : str or None
        The class the sampler aimed at (equal to ``diffranet_class`` unless the sampler could
        not realise it, which is then reported here).
    """

    diffranet_class: str
    ke_class: str
    spots: np.ndarray = field(default_factory=lambda: np.zeros(0, SPOT_DTYPE))
    n_visible: int = 0
    resolution_limit: float = float("nan")
    params: dict = field(default_factory=dict)
    requested_class: str | None = None


def ke_class(n_visible: int, labels: LabelConfig) -> str:
    """Hit (>= ke_hit visible spots), maybe (>= ke_maybe), else miss (paper 001: 10 and 4)."""
    if n_visible >= labels.ke_hit:
        return "hit"
    if n_visible >= labels.ke_maybe:
        return "maybe"
    return "miss"


def diffranet_class(has_beam: bool, has_crystal: bool, n_visible: int, labels: LabelConfig) -> str:
    """blank (no X-rays), no-crystal (no lattice, or a lattice with no visible spot), weak,
    good, strong by visible-spot count (``good_min``, ``strong_min``)."""
    if not has_beam:
        return "blank"
    if not has_crystal or n_visible < 1:
        return "no-crystal"
    if n_visible >= labels.strong_min:
        return "strong"
    if n_visible >= labels.good_min:
        return "good"
    return "weak"


def count_range(cls: str, labels: LabelConfig) -> tuple[int, float]:
    """[lo, hi) visible-spot counts of a crystal class."""
    return {"weak": (1, labels.good_min), "good": (labels.good_min, labels.strong_min),
            "strong": (labels.strong_min, np.inf)}[cls]


def draw_range(cls: str, labels: LabelConfig) -> tuple[int, float]:
    """[lo, hi) visible-spot counts the simulator aims for when making a ``cls`` frame:
    ``labels.draw_counts[cls]`` when given (``hi`` None = open), else :func:`count_range`."""
    given = (labels.draw_counts or {}).get(cls)
    if given is None:
        return count_range(cls, labels)
    lo, hi = given
    return int(lo), (np.inf if hi is None else int(hi))


#: Share of a normalised 2-D Gaussian's squared profile inside its 2-sigma ellipse, times the
#: ellipse's area: sum over the footprint of w_px² = SQUARE_FRACTION / n_px.
SQUARE_FRACTION = 1.0 - np.exp(-4.0)


def noise_terms(p, d, b_nc, b_d, n_px, *, read_noise: float, calibration_error: float,
                rounding: float = 0.0):
    """Variance of a spot's footprint sum at crystal scale ``s``: ``a s² + b s + c``.

    ``p`` footprint signal, ``d`` crystal-diffuse background over the footprint (both per unit
    scale), ``b_nc``, ``b_d`` the per-pixel backgrounds (the second per unit scale), ``n_px``
    footprint pixels. Terms: Poisson counting of everything there (times ``1 + rounding``: 1/3
    for a square-root 8-bit output, whose rounding adds a third of the counts' variance), read
    noise, and the per-pixel gain error ``calibration_error`` on every pixel's expected photons
    (background and the spot's own profile).
    """
    g = 1.0 + rounding
    cal2 = calibration_error ** 2
    i0 = p / FOOTPRINT_FRACTION
    with np.errstate(divide="ignore", invalid="ignore"):
        a = cal2 * (n_px * b_d * b_d + 2.0 * b_d * p + SQUARE_FRACTION * i0 * i0 / n_px)
    b = g * (p + d) + cal2 * (2.0 * n_px * b_nc * b_d + 2.0 * b_nc * p)
    c = g * b_nc * n_px + n_px * read_noise ** 2 + cal2 * n_px * b_nc * b_nc
    return a, b, c


def snr_at(s, p, a, b, c) -> np.ndarray:
    """Expected footprint SNR at crystal scale ``s``: ``s p / sqrt(a s² + b s + c)``."""
    with np.errstate(divide="ignore", invalid="ignore"):
        return np.nan_to_num(s * p / np.sqrt(a * s * s + b * s + c))


def threshold_scale(p, a, b, c, k: float) -> np.ndarray:
    """Smallest crystal scale ``s`` making each spot visible: ``snr_at(s) >= k``.

    The boundary is the positive root of ``(p² - k² a) s² - k² b s - k² c = 0``. Where
    ``p² <= k² a`` the gain error grows as fast as the signal, so no scale reaches ``k``
    (inf), as where ``p = 0``.
    """
    p = np.asarray(p, dtype=np.float64)
    kk = k * k
    q = p * p - kk * np.asarray(a, dtype=np.float64)
    with np.errstate(divide="ignore", invalid="ignore"):
        bb = kk * np.asarray(b, dtype=np.float64)
        s = (bb + np.sqrt(bb * bb + 4.0 * q * kk * np.asarray(c, dtype=np.float64))) / (2.0 * q)
    return np.where((p > 0) & (q > 0), s, np.inf)
