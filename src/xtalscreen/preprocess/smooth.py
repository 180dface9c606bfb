"""A matched filter for spread spots: masked Gaussian smoothing before binning.

On a detector whose point-spread function spreads a Bragg spot over several pixels (a
fibre-optic-taper CCD such as the Rayonix MX series: a core of ~1.2 px sigma and a wide
tail), the brightest pixel of a faint spot holds only ~10 % of its photons. Max-binning then
keeps the brightest *noise* pixel of a block as readily as the spot, and the spot is lost. A
Gaussian of about the spot's width summed over the spot is the matched filter for it: the
peak of the smoothed image carries close to the whole spot's signal-to-noise ratio (about
twice a single pixel's at sigma 1.2 px), and the max-binning that follows keeps it.

Masked pixels are left out (normalised convolution: the smoothed image over the smoothed
mask), and the image is taken as zero outside its edges in the same way, so the value of a
pixel depends only on the pixels within ``radius(sigma)`` of it. A window cut from the image
with that much room on every side therefore smooths to exactly the same values inside
(:class:`xtalscreen.screen.prepare.FastPreprocess` relies on it). The mask is not changed: a
masked pixel stays masked.
"""

from __future__ import annotations

import math

import numpy as np

from xtalscreen.errors import ParameterError

__all__ = ["gaussian_prefilter", "prefilter_radius", "TRUNCATE"]

#: The Gaussian is cut at this many sigmas.
TRUNCATE = 3.0


def prefilter_radius(sigma: float) -> int:
    """Pixels on each side that the filter of ``sigma`` reads (scipy's kernel radius)."""
    return int(TRUNCATE * float(sigma) + 0.5) if sigma > 0 else 0


def gaussian_prefilter(image, sigma: float, *, mask=None) -> np.ndarray:
    """``image`` smoothed by a Gaussian of ``sigma`` pixels, masked pixels left out.

    Parameters
    ----------
    image : array_like, shape (H, W)
        Detector counts (non-finite pixels are treated as masked).
    sigma : float
        Gaussian sigma in pixels (0: the image unchanged, as float32).
    mask : array_like of bool, shape (H, W), optional
        True where a pixel is bad.

    Returns
    -------
    ndarray of float32, shape (H, W)
        The smoothed image; a pixel with no valid pixel within the kernel is 0, a non-finite
        one stays NaN.

    Examples
    --------
    >>> img = np.zeros((9, 9)); img[4, 4] = 100.0
    >>> out = gaussian_prefilter(img, 1.0)
    >>> round(float(out.sum()), 1), int(np.argmax(out))
    (100.0, 40)
    >>> m = np.zeros((9, 9), bool); m[4, 4] = True
    >>> float(gaussian_prefilter(img, 1.0, mask=m).max())
    0.0
    """
    from scipy import ndimage

    img = np.asarray(image)
    if img.ndim != 2:
        raise ParameterError(f"image must be 2-D (H, W), got shape {img.shape}")
    sigma = float(sigma)
    if not math.isfinite(sigma) or sigma < 0:
        raise ParameterError(f"prefilter sigma must be a finite number of pixels >= 0, got {sigma!r}")
    img = img.astype(np.float32, copy=False)
    if sigma == 0:
        return img.copy()
    valid = np.isfinite(img)
    if mask is not None:
        m = np.asarray(mask, bool)
        if m.shape != img.shape:
            raise ParameterError(f"mask shape {m.shape} differs from image shape {img.shape}")
        valid &= ~m
    w = valid.astype(np.float32)
    num = ndimage.gaussian_filter(np.where(valid, img, 0).astype(np.float32, copy=False), sigma,
                                  mode="constant", cval=0.0, truncate=TRUNCATE)
    den = ndimage.gaussian_filter(w, sigma, mode="constant", cval=0.0, truncate=TRUNCATE)
    out = np.zeros_like(num)
    np.divide(num, den, out=out, where=den > 1e-6)
    out[~np.isfinite(img)] = np.nan  # a non-finite pixel stays bad for the binning after
    return out
