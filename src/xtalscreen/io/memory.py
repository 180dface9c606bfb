"""Keep freed frame buffers in the process instead of returning them to the kernel.

A streaming reader allocates one frame-sized array per frame (9 MB for a 2.3 Mpx float32
CSPAD frame) and frees it a moment later. glibc serves such large blocks with ``mmap`` or from
the top of the heap and, by default, gives them back to the kernel on ``free`` (unmap, or trim
the heap top), so the next frame's array page-faults and the kernel zeroes every page again.
On the development VM that costs more than decompressing the frame: reading a bitshuffle-LZ4
CSPAD frame with h5py took 11-13 ms of CPU with glibc's defaults and 4-6 ms after
:func:`keep_freed_memory` (``/tmp`` micro-benchmark quoted in BENCHMARKS.md, screen section).

:func:`keep_freed_memory` raises glibc's mmap and trim thresholds (``mallopt``), so freed
blocks are reused. Resident memory then stays at the process's peak instead of shrinking,
which is what a long-running screening or spot-finding worker wants. It does nothing where the
C library is not glibc.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import sys

__all__ = ["keep_freed_memory"]

_M_TRIM_THRESHOLD = -1
_M_MMAP_THRESHOLD = -3
_DONE: list[bool] = []


def keep_freed_memory(mmap_threshold: int = 256 << 20, trim_threshold: int = 1 << 30) -> bool:
    """Make glibc keep freed blocks up to ``mmap_threshold`` bytes for reuse (idempotent).

    Parameters
    ----------
    mmap_threshold : int
        Blocks smaller than this (bytes) come from the heap, not from their own ``mmap``.
    trim_threshold : int
        Free memory at the heap top is returned to the kernel only above this (bytes).

    Returns
    -------
    bool
        True when the settings were applied (Linux with glibc), False otherwise.
    """
    if _DONE:
        return _DONE[0]
    ok = False
    if sys.platform.startswith("linux"):
        try:
            libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6")
            mallopt = libc.mallopt
        except (OSError, AttributeError):  # not glibc (e.g. musl has no mallopt)
            mallopt = None
        if mallopt is not None:
            mallopt.argtypes = (ctypes.c_int, ctypes.c_int)
            ok = bool(mallopt(_M_MMAP_THRESHOLD, int(mmap_threshold))) and \
                bool(mallopt(_M_TRIM_THRESHOLD, int(trim_threshold)))
    _DONE.append(ok)
    return ok
