"""NumPy files: ``.npy`` (memory-mapped, read frame by frame) and ``.npz``.

Shapes: ``(H, W)`` one frame, ``(N, H, W)`` a stack of N frames, ``(N, P, H, W)`` N
multi-panel frames (a 3-D array is one multi-panel frame only when a 3-D geometry is given).

NPZ: frames from the array ``data`` (else the first array), optional ``mask`` (nonzero = bad;
(H, W) or one per frame) and optional scalar or per-frame metadata arrays ``wavelength`` (Å),
``distance`` (m), ``pixel_size`` (m), ``exposure`` (s), ``beam_center`` ((2,) or (N, 2), pixels).
"""

from __future__ import annotations

import zipfile
from typing import Any

import numpy as np

from xtalscreen.errors import InputError
from xtalscreen.io.formats import FileReader, make_frame

__all__ = ["NpyReader", "NpzReader"]


def _frames_of(arr: np.ndarray, path: str, geometry) -> tuple[bool, int]:
    """(single, n): whether ``arr`` is one frame, and how many frames it holds."""
    if arr.ndim == 2 or (arr.ndim == 3 and geometry is not None and geometry.is_3d):
        return True, 1
    if arr.ndim in (3, 4):
        return False, int(arr.shape[0])
    raise InputError(f"array of shape {arr.shape} is not an image or a stack of images; expected "
                     "(H, W), (N, H, W) or (N, panels, H, W)", path=path)


class NpyReader(FileReader):
    """Frames of an ``.npy`` file, memory-mapped so a big stack is never loaded whole."""

    format = "npy"

    def __init__(self, path: str, *, geometry=None, auto_mask: bool = True, **_: Any) -> None:
        super().__init__(path)
        self.auto_mask = auto_mask
        try:
            self._arr = np.load(self.path, mmap_mode="r", allow_pickle=False)
        except FileNotFoundError:
            raise InputError("file not found; check the path", path=self.path) from None
        except (OSError, ValueError, EOFError) as exc:
            raise InputError(f"not a readable .npy file ({exc}); it may be truncated or corrupt",
                             path=self.path) from None
        if self._arr.dtype.kind not in "iufb":
            raise InputError(f"array holds {self._arr.dtype}, not pixel values", path=self.path)
        self._single, self._n = _frames_of(self._arr, self.path, geometry)

    def __len__(self) -> int:
        return self._n

    def read(self, index: int):
        i = self._check_index(index)
        raw = np.array(self._arr if self._single else self._arr[i])
        return make_frame(raw, path=self.path, index=i, fmt="npy", auto_mask=self.auto_mask)

    def close(self) -> None:
        mm = getattr(self._arr, "_mmap", None)
        self._arr = None
        if mm is not None:
            mm.close()


class NpzReader(FileReader):
    """Frames of an ``.npz`` archive (see the module docstring for the array names)."""

    format = "npz"

    def __init__(self, path: str, *, dataset: str | None = None, geometry=None,
                 auto_mask: bool = True, **_: Any) -> None:
        super().__init__(path)
        self.auto_mask = auto_mask
        try:
            with np.load(self.path, allow_pickle=False) as z:
                files = list(z.files)
                if not files:
                    raise InputError("the .npz archive holds no array", path=self.path)
                key = dataset or ("data" if "data" in files else files[0])
                if key not in files:
                    raise InputError(f"array {key!r} not in the archive; arrays: {files}",
                                     path=self.path)
                self._arr = z[key]
                self._mask = z["mask"] if "mask" in files and key != "mask" else None
                self._md = {k: z[k] for k in ("wavelength", "distance", "pixel_size", "exposure",
                                               "beam_center") if k in files}
        except InputError:
            raise
        except FileNotFoundError:
            raise InputError("file not found; check the path", path=self.path) from None
        except (OSError, ValueError, EOFError, zipfile.BadZipFile, KeyError) as exc:
            raise InputError(f"not a readable .npz file ({exc}); it may be truncated or corrupt",
                             path=self.path) from None
        self.dataset = key
        self._single, self._n = _frames_of(self._arr, self.path, geometry)

    def __len__(self) -> int:
        return self._n

    def _value(self, name: str, i: int):
        v = self._md.get(name)
        if v is None:
            return None
        v = np.asarray(v, dtype=np.float64)
        if name == "beam_center":
            v = v if v.ndim == 1 else v[i]
            return (float(v[0]), float(v[1]))
        return float(v if v.ndim == 0 else v[i])

    def read(self, index: int):
        i = self._check_index(index)
        raw = self._arr if self._single else self._arr[i]
        mask = None
        if self._mask is not None:
            mask = self._mask if self._mask.shape == raw.shape else self._mask[i]
            mask = np.asarray(mask) != 0
        try:
            fields = {k: self._value(k, i) for k in self._md}
        except (IndexError, TypeError, ValueError) as exc:
            raise InputError(f"metadata arrays do not match the frames ({exc})", path=self.path,
                             frame=i) from None
        return make_frame(raw, path=self.path, index=i, fmt="npz", file_mask=mask,
                          auto_mask=self.auto_mask, meta={"array": self.dataset}, **fields)
