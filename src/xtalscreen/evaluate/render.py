"""Render detector frames the way crystallographers look at them.

The display value of a pixel with value ``P`` is ``min(1, M * P / P90)``, where ``P90`` is the
90th percentile of the unmasked pixels and ``M`` the contrast (0.4 by default, as in the DIALS
image viewer's "brightness" scaling). Spots are dark on a light background by default; masked
pixels get a distinct colour so gaps and bad pixels are never mistaken for empty sky.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from xtalscreen.errors import ParameterError, check_positive

#: RGB of masked pixels (a muted blue, distinct from any grey level).
MASK_COLOUR = (70, 110, 190)
#: RGB of spot circles.
SPOT_COLOUR = (230, 40, 40)


def display_values(image: np.ndarray, *, contrast: float = 0.4,
                   mask: np.ndarray | None = None) -> np.ndarray:
    """Map pixel values to [0, 1] with ``min(1, contrast * P / P90)``.

    Parameters
    ----------
    image : ndarray, shape (H, W)
        Pixel values (any units; negative values display as 0).
    contrast : float
        The factor ``M``; larger values brighten faint features.
    mask : ndarray of bool, optional
        Pixels excluded from the percentile (True = bad).

    Returns
    -------
    ndarray of float32, shape (H, W), values in [0, 1].
    """
    contrast = check_positive("contrast", contrast)
    img = np.asarray(image, dtype=np.float32)
    valid = np.isfinite(img)
    if mask is not None:
        valid &= ~np.asarray(mask, dtype=bool)
    vals = img[valid]
    p90 = float(np.percentile(vals, 90)) if vals.size else 0.0
    if not p90 > 0:
        # Mostly-empty frames (photon counting, dark-subtracted): use the largest positive value.
        pos = vals[vals > 0]
        p90 = float(pos.max()) if pos.size else 1.0
    out = np.clip(contrast * np.nan_to_num(img, nan=0.0) / p90, 0.0, 1.0)
    return out.astype(np.float32)


def render_image(image: np.ndarray, *, mask: np.ndarray | None = None, contrast: float = 0.4,
                 dark_on_light: bool = True, spots: np.ndarray | None = None,
                 spot_radius: float = 6.0) -> np.ndarray:
    """An RGB uint8 picture of a 2-D image: display values, masked colour, optional spot circles.

    ``spots`` is an array of shape (N, 2) with (x, y) = (fs, ss) pixel positions on ``image``
    (continuous coordinates: pixel ``i`` spans ``[i, i + 1)``).
    """
    img = np.asarray(image)
    if img.ndim != 2:
        raise ParameterError(f"render_image needs a 2-D image, got shape {img.shape}")
    v = display_values(img, contrast=contrast, mask=mask)
    if dark_on_light:
        v = 1.0 - v
    grey = (v * 255.0 + 0.5).astype(np.uint8)
    rgb = np.repeat(grey[:, :, None], 3, axis=2)
    bad = ~np.isfinite(img)
    if mask is not None:
        bad |= np.asarray(mask, dtype=bool)
    rgb[bad] = MASK_COLOUR
    if spots is not None and len(spots):
        import cv2

        r = max(2, int(round(spot_radius)))
        thick = 1 if max(img.shape) < 1200 else 2
        for x, y in np.asarray(spots, dtype=float):
            if np.isfinite(x) and np.isfinite(y):
                cv2.circle(rgb, (int(x), int(y)), r, SPOT_COLOUR, thick, lineType=cv2.LINE_AA)
    return rgb


def render_frame(frame, *, contrast: float = 0.4, dark_on_light: bool = True,
                 spots: np.ndarray | None = None, spot_radius: float = 6.0) -> np.ndarray:
    """Render a :class:`~xtalscreen.io.Frame` (assembled through its geometry) as RGB uint8."""
    img, msk = frame.assembled()
    return render_image(img, mask=msk, contrast=contrast, dark_on_light=dark_on_light,
                        spots=spots, spot_radius=spot_radius)


def save_png(rgb: np.ndarray, path: str | Path) -> Path:
    """Write an RGB (or grey) uint8 array as PNG, creating the folder; returns the path."""
    from PIL import Image

    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(np.ascontiguousarray(rgb)).save(path)
    return path
