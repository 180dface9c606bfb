"""Image files: TIFF (tifffile; every page a frame) and PNG / JPEG / PGM (Pillow).

Colour images (RGB, RGBA, palette) become grey by luminance, ``0.299 R + 0.587 G + 0.114 B``
(ITU-R 601), kept as float without rounding or rescaling: an 8-bit DiffraNet PNG keeps values
0..255. Pilatus-style TIFF headers (``# Pixel_size``, ``# Exposure_time``, ``# Wavelength``,
``# Detector_distance``, ``# Beam_xy``) in the ImageDescription fill the frame's metadata.
"""

from __future__ import annotations

import re
from typing import Any

import numpy as np

from xtalscreen.errors import InputError
from xtalscreen.io.formats import FileReader, make_frame

__all__ = ["TiffReader", "PillowReader", "to_grey", "parse_pilatus_header"]

_LUMA = np.array([0.299, 0.587, 0.114], dtype=np.float32)
_NUM = r"([-+0-9.eE]+)"


def to_grey(arr: np.ndarray) -> np.ndarray:
    """(H, W, 3|4) colour -> (H, W) float32 luminance (alpha dropped); 2-D passes through."""
    arr = np.asarray(arr)
    if arr.ndim == 3 and arr.shape[-1] in (3, 4):
        return arr[..., :3].astype(np.float32) @ _LUMA
    if arr.ndim == 3 and arr.shape[-1] == 2:  # grey + alpha
        return arr[..., 0]
    return arr


def parse_pilatus_header(text: str) -> dict[str, Any]:
    """Frame fields from a Pilatus ``# key value`` header (lengths in m, wavelength in Å)."""
    out: dict[str, Any] = {}
    if not text or "#" not in text:
        return out
    m = re.search(r"#\s*Detector:\s*([^,\r\n]+)", text)
    if m:
        out["detector"] = m.group(1).strip()
    m = re.search(r"#\s*Pixel_size\s+" + _NUM + r"\s*m", text)
    if m:
        out["pixel_size"] = float(m.group(1))
    m = re.search(r"#\s*Exposure_time\s+" + _NUM, text)
    if m:
        out["exposure"] = float(m.group(1))
    m = re.search(r"#\s*Wavelength\s+" + _NUM, text)
    if m:
        out["wavelength"] = float(m.group(1))
    m = re.search(r"#\s*Detector_distance\s+" + _NUM, text)
    if m:
        out["distance"] = float(m.group(1))
    m = re.search(r"#\s*Beam_xy\s*\(\s*" + _NUM + r"\s*,\s*" + _NUM + r"\s*\)", text)
    if m:
        out["beam_center"] = (float(m.group(1)), float(m.group(2)))
    return out


class TiffReader(FileReader):
    """Frames of a TIFF file: one per page (multi-page stacks = many frames)."""

    format = "tiff"

    def __init__(self, path: str, *, auto_mask: bool = True, **_: Any) -> None:
        super().__init__(path)
        import tifffile

        self.auto_mask = auto_mask
        try:
            self._tif = tifffile.TiffFile(self.path)
            self._pages = self._tif.pages
            self._n = len(self._pages)
        except FileNotFoundError:
            raise InputError("file not found; check the path", path=self.path) from None
        except (OSError, ValueError, tifffile.TiffFileError) as exc:
            raise InputError(f"not a readable TIFF file ({exc}); it may be truncated or corrupt",
                             path=self.path) from None
        if self._n == 0:
            self._tif.close()
            raise InputError("the TIFF file holds no image", path=self.path)

    def __len__(self) -> int:
        return self._n

    def read(self, index: int):
        import tifffile

        i = self._check_index(index)
        try:
            page = self._pages[i]
            arr = page.asarray()
            desc = getattr(page, "description", "") or ""
        except (OSError, ValueError, IndexError, tifffile.TiffFileError) as exc:
            raise InputError(f"cannot read this page ({exc}); the file may be truncated",
                             path=self.path, frame=i) from None
        if arr.ndim == 3 and arr.shape[0] in (3, 4) and arr.shape[-1] not in (3, 4):
            arr = np.moveaxis(arr, 0, -1)  # planar (separate) RGB samples
        raw = to_grey(arr)
        if raw.ndim != 2:
            raise InputError(f"page has shape {arr.shape}, not a 2-D image", path=self.path, frame=i)
        fields = parse_pilatus_header(desc)
        frame = make_frame(raw, path=self.path, index=i, fmt="tiff", auto_mask=self.auto_mask,
                           meta={"description": desc[:2000]} if desc else {}, **fields)
        frame.dtype = str(arr.dtype)
        return frame

    def close(self) -> None:
        self._tif.close()


class PillowReader(FileReader):
    """PNG / JPEG / PGM / BMP / GIF via Pillow (multi-frame files give several frames)."""

    format = "png"

    def __init__(self, path: str, *, auto_mask: bool = True, **_: Any) -> None:
        super().__init__(path)
        from PIL import Image, UnidentifiedImageError

        self.auto_mask = auto_mask
        try:
            self._im = Image.open(self.path)
            self._n = int(getattr(self._im, "n_frames", 1))
            self.format = (self._im.format or "png").lower().replace("jpg", "jpeg")
            if self.format == "ppm":  # Pillow names the whole PNM family PPM
                self.format = "pgm" if self._im.mode in ("L", "I", "I;16", "I;16B") else "ppm"
        except FileNotFoundError:
            raise InputError("file not found; check the path", path=self.path) from None
        except (OSError, ValueError, UnidentifiedImageError) as exc:
            raise InputError(f"not a readable image file ({exc}); it may be truncated or corrupt",
                             path=self.path) from None

    def __len__(self) -> int:
        return self._n

    def read(self, index: int):
        i = self._check_index(index)
        try:
            self._im.seek(i)
            im = self._im
            if im.mode == "P":
                im = im.convert("RGBA" if "transparency" in im.info else "RGB")
            elif im.mode == "CMYK":
                im = im.convert("RGB")
            arr = np.asarray(im)
        except (OSError, ValueError, EOFError, SyntaxError) as exc:
            raise InputError(f"cannot decode this image ({exc}); the file may be truncated",
                             path=self.path, frame=i) from None
        raw = to_grey(arr)
        if raw.ndim != 2:
            raise InputError(f"image has shape {arr.shape}, not 2-D", path=self.path, frame=i)
        meta = {"mode": self._im.mode}
        frame = make_frame(raw, path=self.path, index=i, fmt=self.format,
                           auto_mask=self.auto_mask and arr.dtype != np.uint8, meta=meta)
        frame.dtype = str(arr.dtype)
        return frame

    def close(self) -> None:
        self._im.close()
