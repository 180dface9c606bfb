"""One module per file-format family; each provides a :class:`FileReader` subclass.

A reader opens one file, knows how many frames it holds (``len``) and reads frame ``i`` on
demand (:meth:`FileReader.read`), so a run of thousands of frames is streamed, never loaded.
:func:`xtalscreen.io.readers.open_frames` picks the reader from the file name.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from xtalscreen.errors import InputError
from xtalscreen.io.frame import Frame
from xtalscreen.io.masks import combine_masks, data_mask

__all__ = ["FileReader", "make_frame"]


class FileReader:
    """Base class: one open file of frames.

    Subclasses set :attr:`format`, open the file in ``__init__`` (raising
    :class:`~xtalscreen.errors.InputError` naming the file when it cannot be read) and
    implement ``__len__`` and :meth:`read`. Use as a context manager to close the file.
    """

    format = ""

    def __init__(self, path: str, **options: Any) -> None:
        self.path = str(path)

    def __len__(self) -> int:  # pragma: no cover - abstract
        raise NotImplementedError

    def read(self, index: int) -> Frame:  # pragma: no cover - abstract
        """Frame ``index`` (0-based within this file); InputError naming file and frame on failure."""
        raise NotImplementedError

    def close(self) -> None:
        """Release the file (no-op by default)."""

    def info(self) -> dict[str, Any]:
        """Plain-type description of the file (format, frames, ...), for ``xtalscreen info``."""
        return {"path": self.path, "format": self.format, "frames": len(self)}

    def __enter__(self) -> "FileReader":
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def _check_index(self, index: int) -> int:
        n = len(self)
        i = int(index)
        if not 0 <= i < n:
            raise InputError(f"frame {i} does not exist: the file holds {n} frame(s) "
                             f"(indices 0..{n - 1})", path=self.path)
        return i


def make_frame(raw: np.ndarray, *, path: str, index: int, fmt: str, file_mask=None,
               auto_mask: bool = True, **fields: Any) -> Frame:
    """Build a :class:`Frame` from raw pixels: float32 data, mask = data mask | file mask."""
    raw = np.asarray(raw)
    if raw.ndim not in (2, 3):
        raise InputError(f"frame data must be 2-D or 3-D, got shape {raw.shape}", path=path,
                         frame=index)
    mask = data_mask(raw) if auto_mask else None
    if file_mask is not None:
        fm = np.asarray(file_mask, dtype=bool)
        if fm.shape != raw.shape:
            raise InputError(f"the file's pixel mask has shape {fm.shape} but the frame has "
                             f"{raw.shape}", path=path, frame=index)
        if mask is None:
            mask = combine_masks(fm)  # a copy: the file's mask may be shared between frames
        else:
            np.logical_or(mask, fm, out=mask)  # the data mask is this frame's own array
    fields = {k: v for k, v in fields.items() if v is not None}
    return Frame(data=raw, mask=mask, source=path, index=int(index), format=fmt,
                 dtype=str(raw.dtype), **fields)
