"""Preprocessing: detector frames to network inputs of a fixed size per detector.

- :func:`bin_image` (n x n binning), :func:`center_crop` (beam-centred crops with padding),
- :func:`gaussian_prefilter` (masked Gaussian smoothing: the matched filter of spread spots),
- :func:`lcn` (local contrast normalisation, paper 001 eqs 6-9), :func:`linear_contrast`,
  :func:`sqrt_contrast`, :func:`log_contrast`,
- :func:`sample_augmentation` / :func:`flip_rotate` / :func:`scale_intensity` (augmentation),
- :class:`PreprocessConfig`: the whole chain as one serialisable setting saved with a model
  (``bin="auto"`` fits any detector into the input; ``unbinned_up_to`` keeps a small one at
  full resolution in a larger input, :meth:`PreprocessConfig.plan`).
"""

from xtalscreen.preprocess.augment import Augmentation, flip_rotate, sample_augmentation, scale_intensity
from xtalscreen.preprocess.binning import bin_image
from xtalscreen.preprocess.contrast import (CONTRASTS, apply_contrast, lcn, linear_contrast,
                                            log_contrast, sqrt_contrast)
from xtalscreen.preprocess.crop import center_crop, crop_origin
from xtalscreen.preprocess.pipeline import PreprocessConfig
from xtalscreen.preprocess.smooth import gaussian_prefilter

__all__ = [
    "Augmentation", "CONTRASTS", "PreprocessConfig", "apply_contrast", "bin_image", "center_crop",
    "crop_origin", "flip_rotate", "gaussian_prefilter", "lcn", "linear_contrast", "log_contrast", "sample_augmentation",
    "scale_intensity", "sqrt_contrast",
]
