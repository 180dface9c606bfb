"""Bad-pixel masks: found in the data itself, loaded from files, combined by OR.

Convention everywhere in xtalscreen: a mask is a bool array, **True = bad** (excluded).

What :func:`data_mask` finds in a raw frame:

- **Pilatus / miniCBF sentinels**: ``-1`` (module gaps) and ``-2`` (bad pixels) in signed
  integer data. They are masked only when every negative value of the frame is ``-1`` or ``-2``;
  dark-subtracted ADU data (CSPAD, Jungfrau), whose negatives are noise, keep them.
- **Eiger sentinels**: ``2**n - 1`` for the original unsigned dtype (65535 for uint16,
  4294967295 for uint32). With ``pixel_mask_applied`` the Eiger firmware writes this value into
  gaps and bad pixels; heavily saturated pixels may carry it too, and are excluded with them.
  ``2**n - 2`` is not a standard Eiger sentinel and is left alone.
- **Zero-filled tile gaps**: stretches of exactly-zero pixels along a row or column that are too
  long to be counting statistics. The run length needed grows with the fraction of genuine
  zeros in the frame (so a low-count frame full of zero-photon pixels is not masked), see
  :func:`zero_gap_mask`.
- **NaN and ±inf** in float data.

User mask files (:func:`load_mask`): HDF5 dataset, NPY/NPZ, PNG/TIFF. Default convention
**nonzero = bad** (Eiger ``pixel_mask``, Pilatus/XDS style). CrystFEL and Cheetah masks use
1 = good: pass ``invert=True`` (or ``good_value=1``).
"""

from __future__ import annotations

import math
import os
from pathlib import Path

import numpy as np

from xtalscreen.errors import InputError, ParameterError

__all__ = ["data_mask", "zero_gap_mask", "sentinel_mask", "load_mask", "combine_masks",
           "KNOWN_MASK_DATASETS"]

#: HDF5 paths tried (in order) by :func:`load_mask` when ``dataset`` is not given.
KNOWN_MASK_DATASETS = (
    "/entry/instrument/detector/detectorSpecific/pixel_mask",
    "/entry/data/mask",
    "/entry_1/data_1/mask",
    "/entry_1/instrument_1/detector_1/mask",
    "/data/mask",
    "/mask",
)

_UNSIGNED_SENTINEL_DTYPES = ("uint16", "uint32")


def sentinel_mask(raw: np.ndarray, dtype=None) -> np.ndarray:
    """Pixels carrying a detector's "no data" value (Pilatus -1/-2, Eiger 2**n - 1).

    Parameters
    ----------
    raw : ndarray, shape (H, W) or (P, H, W)
        Pixel values, ideally in their original dtype.
    dtype : numpy dtype or str, optional
        The dtype the values had in the file, when ``raw`` has already been converted
        (float32 holds 65535 exactly; uint32 sentinels are compared after the same rounding).

    Returns
    -------
    ndarray of bool, same shape as ``raw``
    """
    raw = np.asarray(raw)
    dt = np.dtype(dtype) if dtype is not None else raw.dtype
    out = np.zeros(raw.shape, dtype=bool)
    if dt.kind == "i":
        if raw.size and raw.min() < 0 and raw.min() >= -2:  # every negative is -1 or -2
            out |= raw < 0
    elif dt.kind == "u" and dt.name in _UNSIGNED_SENTINEL_DTYPES:
        top = np.iinfo(dt).max
        target = np.asarray(top, dtype=raw.dtype) if raw.dtype.kind == "f" else top
        out |= raw == target
    return out


_KERNELS: dict = {}

#: :func:`zero_gap_mask` defaults (also what :func:`data_mask` applies): chance runs tolerated
#: per frame, and the zero fraction above which a frame counts as sparse photon-counting data.
GAP_FALSE_ALARM = 1e-3
GAP_SPARSE_LIMIT = 0.5


def _kernels():
    """Numba kernels (compiled on first use, so importing the readers does not load numba).

    ``stats(data) -> (n_zero, row_all, col_all)``: zero pixels, and which rows/columns are
    entirely zero, in one pass. ``runs(data, min_len, out)``: mark runs of >= ``min_len`` zeros
    along rows and columns. A window of ``min_len`` pixels is tested from its right end; a nonzero
    pixel lets the search jump past it, so a frame with few long runs costs about ``2 / min_len``
    reads per pixel.
    """
    if not _KERNELS:
        from numba import njit

        @njit(cache=True, nogil=True)
        def stats(d):  # pragma: no cover - compiled
            h, w = d.shape
            row_all = np.ones(h, np.bool_)
            col_all = np.ones(w, np.bool_)
            n = 0
            for r in range(h):
                nr = 0
                for c in range(w):
                    if d[r, c] == 0:
                        nr += 1
                    else:
                        col_all[c] = False
                if nr < w:
                    row_all[r] = False
                n += nr
            return n, row_all, col_all

        @njit(cache=True, nogil=True)
        def runs(z, min_len, out):  # pragma: no cover - compiled
            h, w = z.shape
            for r in range(h):  # horizontal runs
                i = 0
                while i + min_len <= w:
                    j = i + min_len - 1  # test the window [i, i + min_len) from its right end
                    while j >= i and z[r, j] == 0:
                        j -= 1
                    if j >= i:
                        i = j + 1  # a nonzero at j: no run can start before j + 1
                        continue
                    e = i + min_len  # all zero, and z[r, i - 1] is not: a run starts at i
                    while e < w and z[r, e] == 0:
                        e += 1
                    for k in range(i, e):
                        out[r, k] = True
                    i = e + 1
            for c in range(w):  # vertical runs, same search down each column
                i = 0
                while i + min_len <= h:
                    j = i + min_len - 1
                    while j >= i and z[j, c] == 0:
                        j -= 1
                    if j >= i:
                        i = j + 1
                        continue
                    e = i + min_len
                    while e < h and z[e, c] == 0:
                        e += 1
                    for k in range(i, e):
                        out[k, c] = True
                    i = e + 1

        @njit(cache=True, nogil=True)
        def float_stats(d, out, mark):  # pragma: no cover - compiled
            # one pass over (P, H, W) float data: out = non-finite (when ``mark``; ``out``
            # starts all False), and per panel the zero statistics of ``stats`` (zeros,
            # all-zero rows, all-zero columns). No branch per pixel: on noise a branch
            # mispredicts, and this form is ~3x faster on a CSPAD frame (3.0 -> 0.9 ms)
            p_, h, w = d.shape
            n = np.zeros(p_, np.int64)
            row_all = np.ones((p_, h), np.bool_)
            col_all = np.ones((p_, w), np.bool_)
            for p in range(p_):
                for r in range(h):
                    nr = 0
                    for c in range(w):
                        v = d[p, r, c]
                        z = v == 0
                        nr += z
                        col_all[p, c] &= z
                        if mark:
                            out[p, r, c] = not np.isfinite(v)
                    row_all[p, r] = nr == w
                    n[p] += nr
            return n, row_all, col_all

        _KERNELS.update(stats=stats, runs=runs, float_stats=float_stats)
    return _KERNELS


def zero_gap_mask(data: np.ndarray, *, min_run: int = 16, false_alarm: float = GAP_FALSE_ALARM,
                  sparse_limit: float = GAP_SPARSE_LIMIT) -> np.ndarray:
    """Zero-filled gaps: rows/columns of exactly-zero pixels too long to be chance.

    A pixel is masked when it lies in a horizontal or vertical run of zeros of at least
    ``L = max(min_run, log(false_alarm / n_pixels) / log(p0))`` pixels, where ``p0`` is the
    fraction of zero pixels outside entirely-zero rows and columns. In a frame where genuine zero
    counts are rare (``p0`` small) a 16-pixel run is a gap; in a low-count frame where most
    pixels are 0, only runs longer than chance allows (often none) are masked.

    Parameters
    ----------
    data : ndarray, shape (H, W) or (P, H, W)
        Pixel values (any dtype). Panels of 3-D data are treated separately.
    min_run : int, keyword-only
        Shortest run (pixels) ever masked.
    false_alarm : float, keyword-only
        Expected number of chance runs per frame tolerated (sets ``L``).
    sparse_limit : float, keyword-only
        When more than this fraction of the pixels are 0 (sparse photon-counting data), only
        entirely-zero rows and columns are masked: zero runs are then physical.

    Returns
    -------
    ndarray of bool, same shape as ``data``

    Examples
    --------
    >>> img = np.ones((64, 64)); img[:, 30:33] = 0
    >>> int(zero_gap_mask(img).sum())
    192
    """
    data = np.asarray(data)
    if int(min_run) < 2:
        raise ParameterError(f"min_run must be >= 2 pixels, got {min_run}")
    if not 0 < false_alarm < 1:
        raise ParameterError(f"false_alarm must be in (0, 1), got {false_alarm}")
    if data.dtype == np.bool_ or data.dtype.kind == "c":
        data = data.astype(np.float64) if data.dtype.kind == "c" else data.view(np.uint8)
    data = np.ascontiguousarray(data)
    out = np.zeros(data.shape, dtype=bool)
    for d, o in zip(data, out) if data.ndim == 3 else [(data, out)]:
        _zero_gaps_into(d, o, min_run, false_alarm, sparse_limit)
    return out


def _zero_gaps_into(data, out, min_run, false_alarm, sparse_limit) -> None:
    """:func:`zero_gap_mask` of one contiguous 2-D panel, written into ``out`` (all False)."""
    n_zero, row_all, col_all = _kernels()["stats"](data)
    _gaps_from_stats(data, out, n_zero, row_all, col_all, min_run, false_alarm, sparse_limit)


def _gaps_from_stats(data, out, n_zero, row_all, col_all, min_run, false_alarm,
                     sparse_limit) -> None:
    """The zero-gap rule of :func:`zero_gap_mask` for one panel, given its zero statistics;
    marks gaps in ``out`` (which may already hold other bad pixels: only True is written)."""
    h, w = data.shape
    if n_zero < min_run:
        return
    full_rows = int(np.count_nonzero(row_all))
    full_cols = int(np.count_nonzero(col_all))
    rest = (h - full_rows) * (w - full_cols)
    rest_zero = n_zero - full_rows * w - full_cols * h + full_rows * full_cols
    p0 = rest_zero / rest if rest else 1.0
    if p0 >= 1.0:
        return  # an all-zero frame: nothing to tell gaps from signal
    if p0 > sparse_limit:
        # Photon-counting frames where most pixels are 0 (low-count Pilatus/Eiger data): the
        # background varies across the detector, so long zero runs are physical, not gaps.
        # Only whole zero rows/columns are masked; such detectors mark gaps with sentinels.
        out[row_all, :] = True
        out[:, col_all] = True
        return
    need = float(min_run)
    if p0 > 0:
        need = max(need, math.log(false_alarm / data.size) / math.log(p0))
    length = int(math.ceil(need))
    if length <= max(h, w):
        _kernels()["runs"](data, length, out)


def _float_data_mask(raw: np.ndarray, min_gap_run: int, gaps: bool, nonfinite: bool) -> np.ndarray:
    """:func:`data_mask` of float data in one compiled pass: non-finite pixels and the zero
    statistics together, then the zero-gap rule per panel (no sentinels exist in float data)."""
    d = np.ascontiguousarray(raw)
    d3 = d if d.ndim == 3 else d[None]
    out = np.zeros(d3.shape, dtype=bool)
    n_zero, row_all, col_all = _kernels()["float_stats"](d3, out, nonfinite)
    if gaps:
        for p in range(d3.shape[0]):
            _gaps_from_stats(d3[p], out[p], int(n_zero[p]), row_all[p], col_all[p], min_gap_run,
                             GAP_FALSE_ALARM, GAP_SPARSE_LIMIT)
    return out if d.ndim == 3 else out[0]


def data_mask(raw: np.ndarray, dtype=None, *, sentinels: bool = True, gaps: bool = True,
              nonfinite: bool = True, min_gap_run: int = 16) -> np.ndarray:
    """Bad pixels that the data reveal by themselves (see the module docstring).

    Parameters
    ----------
    raw : ndarray, shape (H, W) or (P, H, W)
        Pixel values, ideally in their original dtype.
    dtype : numpy dtype or str, optional
        Original dtype when ``raw`` has already been converted to float.
    sentinels, gaps, nonfinite : bool, keyword-only
        Which kinds of bad pixel to look for.
    min_gap_run : int, keyword-only
        Shortest zero run counted as a gap, see :func:`zero_gap_mask`.

    Returns
    -------
    ndarray of bool, same shape as ``raw``; True = bad.

    Examples
    --------
    >>> raw = np.array([[5, -1], [-2, 0]], dtype=np.int32)
    >>> data_mask(raw).tolist()
    [[False, True], [True, False]]
    """
    raw = np.asarray(raw)
    if raw.ndim not in (2, 3):
        raise ParameterError(f"raw must be 2-D (H, W) or 3-D (P, H, W), got shape {raw.shape}")
    if int(min_gap_run) < 2:
        raise ParameterError(f"min_gap_run must be >= 2 pixels, got {min_gap_run}")
    if raw.dtype.kind == "f" and (dtype is None or np.dtype(dtype).kind == "f") and raw.size:
        return _float_data_mask(raw, int(min_gap_run), gaps, nonfinite)  # no sentinels in floats
    out = sentinel_mask(raw, dtype) if sentinels else np.zeros(raw.shape, dtype=bool)
    if nonfinite and raw.dtype.kind == "f":
        out |= ~np.isfinite(raw)
    if gaps:
        out |= zero_gap_mask(raw, min_run=min_gap_run)
    return out


def combine_masks(*masks: np.ndarray | None) -> np.ndarray | None:
    """OR of the masks given (None entries ignored); None when none is given.

    Raises :class:`ParameterError` naming both shapes when they differ.
    """
    out = None
    for m in masks:
        if m is None:
            continue
        m = np.asarray(m, dtype=bool)
        if out is None:
            out = m.copy()
        elif m.shape != out.shape:
            raise ParameterError(f"cannot combine masks of shapes {out.shape} and {m.shape}")
        else:
            out |= m
    return out


def _find_mask_dataset(f, path: str) -> str:
    for name in KNOWN_MASK_DATASETS:
        if name in f and hasattr(f[name], "shape") and len(f[name].shape) >= 2:
            return name
    found: list[str] = []

    def visit(name, obj):
        if hasattr(obj, "shape") and len(obj.shape) >= 2:
            found.append("/" + name)

    f.visititems(visit)
    if len(found) == 1:
        return found[0]
    raise InputError(
        "no mask dataset found at the usual paths; give it with dataset= (--mask-dataset); "
        f"2-D+ datasets in the file: {found or 'none'}", path=path)


def load_mask(path: str | os.PathLike, *, dataset: str | None = None, good_value=None,
              invert: bool = False) -> np.ndarray:
    """Read a user mask file into a bool array (True = bad).

    Parameters
    ----------
    path : str or path-like
        ``.h5/.hdf5/.cxi/.nxs`` (dataset auto-found at :data:`KNOWN_MASK_DATASETS` or the only
        2-D dataset), ``.npy``, ``.npz`` (array ``mask`` or the first), ``.png``, ``.tif``.
    dataset : str, keyword-only
        HDF5 dataset path (or NPZ array name).
    good_value : number, keyword-only
        Pixels equal to this are good, every other value bad (e.g. ``good_value=1`` for
        Cheetah masks). Overrides the default "nonzero = bad".
    invert : bool, keyword-only
        Nonzero = good (CrystFEL / Cheetah convention).

    Returns
    -------
    ndarray of bool, shape (H, W) or (P, H, W)
    """
    p = str(path)
    if not os.path.exists(p):
        raise InputError("mask file not found; check the path", path=p)
    ext = Path(p).suffix.lower()
    try:
        if ext in (".h5", ".hdf5", ".hdf", ".cxi", ".nxs", ".nx5"):
            import hdf5plugin  # noqa: F401  (compression filters)
            import h5py

            with h5py.File(p, "r") as f:
                name = dataset or _find_mask_dataset(f, p)
                if name not in f:
                    raise InputError(f"dataset {name!r} not found in the mask file", path=p)
                arr = np.asarray(f[name][()])
        elif ext == ".npy":
            arr = np.load(p, allow_pickle=False)
        elif ext == ".npz":
            with np.load(p, allow_pickle=False) as z:
                key = dataset or ("mask" if "mask" in z.files else z.files[0])
                arr = z[key]
        elif ext in (".tif", ".tiff"):
            import tifffile

            arr = tifffile.imread(p)
        elif ext in (".png", ".pgm", ".bmp"):
            from PIL import Image

            with Image.open(p) as im:
                arr = np.asarray(im)
        else:
            raise InputError(f"unknown mask file type {ext!r}; use .h5, .npy, .npz, .png or .tif",
                             path=p)
    except InputError:
        raise
    except (OSError, ValueError, KeyError, IndexError) as exc:
        raise InputError(f"cannot read the mask file ({exc}); check it is complete", path=p) from None
    if arr.ndim == 3 and arr.shape[-1] in (3, 4) and ext in (".png", ".tif", ".tiff"):
        arr = arr[..., :3].max(axis=-1)  # colour mask image: any channel set
    if arr.ndim < 2:
        raise InputError(f"mask must be 2-D or 3-D, got shape {arr.shape}", path=p)
    if good_value is not None:
        bad = arr != good_value
    else:
        bad = arr != 0
        if invert:
            bad = ~bad
    return np.ascontiguousarray(bad)
