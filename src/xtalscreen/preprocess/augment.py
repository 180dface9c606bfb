"""Training-time augmentation: random crop shifts, flips, 90° rotations, intensity scaling.

Paper 001 (§2.2) augments by flipping, cropping, rotating and scaling pixel values; its random
crop shifts the binned image by an offset drawn uniformly from [-120, 120] pixels before the
centre crop. Every draw comes from one ``rng`` (``np.random.default_rng(rng)``), so the same
seed gives the same augmented tensor.

The draw (:func:`sample_augmentation`) is separate from its application so that an image and its
mask, or several channels, receive the same transform.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from xtalscreen.errors import ParameterError

__all__ = ["Augmentation", "sample_augmentation", "flip_rotate", "scale_intensity"]


@dataclass(frozen=True)
class Augmentation:
    """One sampled augmentation.

    Attributes
    ----------
    shift : (int, int)
        (d_ss, d_fs) crop-window offset in pixels.
    flip_ud, flip_lr : bool
        Flip rows (vertical) / columns (horizontal), applied after the crop.
    rot90 : int
        Number of counter-clockwise quarter turns (0-3), applied after the flips.
    scale : float
        Multiplier of the raw intensities (before contrast). LCN is invariant to it by
        construction (eq. 6); it matters for the linear, sqrt, log and no-contrast settings.
    """

    shift: tuple[int, int] = (0, 0)
    flip_ud: bool = False
    flip_lr: bool = False
    rot90: int = 0
    scale: float = 1.0


IDENTITY = Augmentation()


def sample_augmentation(rng=None, *, max_shift: int = 120, flips: bool = True,
                        rot90: bool = True, scale_range: tuple[float, float] = (1.0, 1.0),
                        square: bool = True) -> Augmentation:
    """Draw one :class:`Augmentation`.

    Parameters
    ----------
    rng : int, numpy.random.Generator or None
    max_shift : int, keyword-only
        Shifts are uniform integers in ``[-max_shift, max_shift]`` pixels, independently in
        both directions (paper 001: 120 after 2 x 2 binning).
    flips, rot90 : bool, keyword-only
        Allow random flips / quarter turns (each flip with probability 1/2; turns uniform in
        0-3, or in {0, 2} when ``square`` is False so the shape is kept).
    scale_range : (float, float), keyword-only
        Intensity multiplier drawn log-uniformly in this range (both > 0).
    square : bool, keyword-only
        Whether the crop is square.
    """
    rng = np.random.default_rng(rng)
    if isinstance(max_shift, bool) or not isinstance(max_shift, (int, np.integer)) or max_shift < 0:
        raise ParameterError(f"max_shift must be an integer >= 0 (pixels), got {max_shift!r}")
    lo, hi = (float(v) for v in scale_range)
    if not (0 < lo <= hi and np.isfinite(hi)):
        raise ParameterError(f"scale_range must be (low, high) with 0 < low <= high, got {scale_range!r}")
    shift = tuple(int(v) for v in rng.integers(-max_shift, max_shift + 1, size=2))
    flip_ud = bool(rng.random() < 0.5) if flips else False
    flip_lr = bool(rng.random() < 0.5) if flips else False
    k = 0
    if rot90:
        k = int(rng.integers(0, 4)) if square else 2 * int(rng.integers(0, 2))
    scale = float(np.exp(rng.uniform(np.log(lo), np.log(hi)))) if hi > lo else lo
    return Augmentation(shift=shift, flip_ud=flip_ud, flip_lr=flip_lr, rot90=k, scale=scale)


def flip_rotate(image: np.ndarray, aug: Augmentation) -> np.ndarray:
    """Apply the flips then the quarter turns of ``aug`` to the last two axes of ``image``."""
    out = np.asarray(image)
    if aug.flip_ud:
        out = out[..., ::-1, :]
    if aug.flip_lr:
        out = out[..., :, ::-1]
    if aug.rot90 % 4:
        out = np.rot90(out, k=aug.rot90 % 4, axes=(-2, -1))
    return np.ascontiguousarray(out)


def scale_intensity(image: np.ndarray, scale: float) -> np.ndarray:
    """``image * scale`` as float32 (``scale`` > 0)."""
    if not (np.isfinite(scale) and scale > 0):
        raise ParameterError(f"intensity scale must be a finite number > 0, got {scale!r}")
    return (np.asarray(image, dtype=np.float32) * np.float32(scale)).astype(np.float32)
