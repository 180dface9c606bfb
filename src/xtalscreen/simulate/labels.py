"""Exact per-frame labels: visible spots, Ke Hit/Maybe/Miss, DiffraNet classes, spot table.

Definitions (also in :class:`xtalscreen.simulate.config.LabelConfig`): a spot with expected
integrated photons ``I`` (after shadows) over a footprint of ``n`` pixels (its 2-sigma ellipse,
holding 86.5 % of the profile, at least one pixel) with expected background ``B`` there is
**visible** when ``0.865 I / sqrt(0.865 I + B + n read_noise²) >= snr_min`` (default 5) and
its centre pixel is not masked. By default the labels use expected values, not the noisy
realisation, so they are exact properties of the simulated physics; with
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


def threshold_scale(p: np.ndarray, d: np.ndarray, c: np.ndarray, k: float) -> np.ndarray:
    """Smallest crystal scale ``s`` making each spot visible.

    With footprint signal ``s p``, crystal-diffuse background ``s d`` and the rest ``c``
    (background + read noise), visibility is ``s p / sqrt(s p + s d + c) >= k``; the boundary
    is the positive root of ``p² s² - k² (p + d) s - k² c = 0`` (inf where ``p = 0``).
    """
    p = np.asarray(p, dtype=np.float64)
    with np.errstate(divide="ignore", invalid="ignore"):
        kk = k * k
        b = kk * (p + d)
        s = (b + np.sqrt(b * b + 4.0 * p * p * kk * c)) / (2.0 * p * p)
    return np.where(p > 0, s, np.inf)
