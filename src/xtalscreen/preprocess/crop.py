"""Fixed-size crops around a point (the direct beam), padding where the crop leaves the image.

Positions are continuous pixel coordinates ``(fs, ss)`` = (column, row) in which pixel ``i``
spans ``[i, i+1)``, the convention of :class:`xtalscreen.io.frame.Frame`. A crop of ``(h, w)``
centred on ``(cx, cy)`` starts at row ``round(cy - h/2)`` and column ``round(cx - w/2)`` (halves
rounded up), so the centre of an even-sized crop is a pixel corner as close as possible to
``(cx, cy)``.
"""

from __future__ import annotations

import math

import numpy as np

from xtalscreen.errors import ParameterError

__all__ = ["crop_origin", "center_crop"]


def _check_size(size) -> tuple[int, int]:
    try:
        h, w = (int(size), int(size)) if np.isscalar(size) else (int(size[0]), int(size[1]))
        ok = (np.isscalar(size) or len(size) == 2) and h >= 1 and w >= 1
    except (TypeError, ValueError, IndexError):
        ok = False
    if not ok:
        raise ParameterError(f"crop size must be a positive int or (height, width), got {size!r}")
    return h, w


def crop_origin(center: tuple[float, float], size) -> tuple[int, int]:
    """(row0, col0) of the top-left pixel of a ``size`` crop centred on ``center`` = (fs, ss)."""
    h, w = _check_size(size)
    cx, cy = float(center[0]), float(center[1])
    if not (math.isfinite(cx) and math.isfinite(cy)):
        raise ParameterError(f"crop centre must be finite (fs, ss) pixels, got {center!r}")
    return int(math.floor(cy - h / 2 + 0.5)), int(math.floor(cx - w / 2 + 0.5))


def center_crop(image, size, *, center: tuple[float, float] | None = None, mask=None,
                shift: tuple[int, int] = (0, 0), fill: float = 0.0
                ) -> tuple[np.ndarray, np.ndarray]:
    """Cut a ``size`` window centred on ``center``; pixels outside the image are filled and masked.

    Parameters
    ----------
    image : array_like, shape (H, W)
    size : int or (int, int)
        Crop (height, width) in pixels.
    center : (float, float), optional
        Crop centre (fs, ss) in pixels; default the image centre ``(W/2, H/2)``.
    mask : array_like of bool, shape (H, W), optional
        True where a pixel is bad; cropped with the image.
    shift : (int, int), keyword-only
        Extra (d_ss, d_fs) offset of the crop window in pixels (random-crop augmentation).
    fill : float, keyword-only
        Value of pixels outside the image (they are also masked).

    Returns
    -------
    crop : ndarray of float32, shape (h, w)
    mask : ndarray of bool, shape (h, w)
        True for masked pixels and for pixels outside the image.

    Examples
    --------
    >>> import numpy as np
    >>> c, m = center_crop(np.arange(16.).reshape(4, 4), 2)
    >>> c.tolist(), bool(m.any())
    ([[5.0, 6.0], [9.0, 10.0]], False)
    """
    img = np.asarray(image)
    if img.ndim != 2:
        raise ParameterError(f"image must be 2-D (H, W) to crop, got shape {img.shape}")
    h, w = _check_size(size)
    H, W = img.shape
    if center is None:
        center = (W / 2.0, H / 2.0)
    r0, c0 = crop_origin(center, (h, w))
    r0 += int(shift[0])
    c0 += int(shift[1])
    out = np.full((h, w), fill, dtype=np.float32)
    out_mask = np.ones((h, w), dtype=bool)
    # overlap of [r0, r0+h) x [c0, c0+w) with the image
    ra, rb = max(r0, 0), min(r0 + h, H)
    ca, cb = max(c0, 0), min(c0 + w, W)
    if ra < rb and ca < cb:
        out[ra - r0:rb - r0, ca - c0:cb - c0] = img[ra:rb, ca:cb]
        if mask is None:
            out_mask[ra - r0:rb - r0, ca - c0:cb - c0] = False
        else:
            m = np.asarray(mask, dtype=bool)
            if m.shape != img.shape:
                raise ParameterError(f"mask shape {m.shape} does not match image shape {img.shape}")
            out_mask[ra - r0:rb - r0, ca - c0:cb - c0] = m[ra:rb, ca:cb]
    return out, out_mask
