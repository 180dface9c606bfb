"""Thumbnails of drop images, generated once and cached on disk (``<cache>/<id>_<size>.jpg``).

The cache is keyed by image id and size: an image row's file is not expected to change (a new
inspection is a new image). Writes are atomic (temporary file + rename), so concurrent requests
for the same thumbnail are safe. 16-bit and float images are scaled to 8 bits for display only.
"""

from __future__ import annotations

import os
import tempfile
from pathlib import Path

import numpy as np

from xtalscreen.errors import InputError, ParameterError

#: Sizes (longest side, px) the web app serves: thumbnails, drop view, Cinder's large image.
SIZES = (96, 128, 192, 256, 512, 1024)


def local_path(uri: str) -> Path | None:
    """The local file of an image URI, or None for a URL."""
    if uri.startswith("file://"):
        return Path(uri[len("file://"):])
    if "://" in uri:
        return None
    return Path(uri)


def _to_8bit(img):
    from PIL import Image

    if img.mode in ("1", "L", "RGB"):
        return img
    if img.mode in ("RGBA", "P", "LA", "CMYK", "YCbCr"):
        return img.convert("RGB")
    a = np.asarray(img, dtype=np.float64)  # I;16, I, F
    lo, hi = np.percentile(a, [0.5, 99.5]) if a.size else (0.0, 1.0)
    scaled = np.clip((a - lo) / max(hi - lo, 1e-12) * 255.0, 0, 255).astype(np.uint8)
    return Image.fromarray(scaled)


def thumbnail(cache: str | Path, image_id: int, uri: str, size: int) -> Path:
    """Path of the cached JPEG of image ``image_id`` (file ``uri``) at ``size`` px, made if needed.

    Raises :class:`InputError` when the image file is missing, remote or unreadable, and
    :class:`ParameterError` for a size not in :data:`SIZES`.
    """
    if size not in SIZES:
        raise ParameterError(f"size must be one of {', '.join(map(str, SIZES))}, got {size!r}")
    out = Path(cache) / f"{int(image_id)}_{size}.jpg"
    if out.is_file():
        return out
    src = local_path(uri)
    if src is None:
        raise InputError("the image is not a local file", path=uri)
    if not src.is_file():
        raise InputError("image file not found", path=str(src))
    from PIL import Image, UnidentifiedImageError

    try:
        with Image.open(src) as im:
            im.draft("RGB", (size, size))  # JPEG: decode at reduced scale
            im = _to_8bit(im)
            im.thumbnail((size, size))
            out.parent.mkdir(parents=True, exist_ok=True)
            fd, tmp = tempfile.mkstemp(dir=out.parent, suffix=".part")
            with os.fdopen(fd, "wb") as fh:
                im.save(fh, "JPEG", quality=85)
            os.replace(tmp, out)
    except (OSError, UnidentifiedImageError, ValueError) as exc:
        raise InputError(f"cannot make a thumbnail: {exc}", path=str(src)) from None
    return out
