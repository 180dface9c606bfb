"""Detector corrections: dark (pedestal) subtraction, gain, mixed-gain scaling.

Pure functions on arrays, plus :func:`apply_corrections` that returns a corrected
:class:`~xtalscreen.io.frame.Frame`. The order is the physical one:

1. ``data - dark``: remove the pedestal (ADU the detector reads without X-rays);
2. ``data * low_gain_factor`` where ``low_gain_map`` is True: put pixels read in a low-gain
   mode on the high-gain scale (CSPAD low gain: about 6.85, as in LCLS experiment LG36,
   Ke et al. 2018);
3. gain: by default ``gain`` is **ADU per photon** and the data are divided by it
   (``gain_mode="divide"``: ADU -> photons); with ``gain_mode="multiply"`` it is a
   multiplicative correction map (photons per ADU, flat-field factors) and the data are
   multiplied by it.

Dark, gain and low-gain maps may be arrays or files (``.npy``, ``.npz``, ``.h5`` with
``dataset=``, ``.tif``); :func:`load_array` reads them.
"""

from __future__ import annotations

import os
from collections.abc import Iterable
from pathlib import Path

import numpy as np

from xtalscreen.errors import InputError, ParameterError, check_positive
from xtalscreen.io.frame import Frame

__all__ = ["CSPAD_LOW_GAIN_FACTOR", "load_array", "subtract_dark", "apply_gain",
           "scale_low_gain", "average_dark", "apply_corrections"]

#: Ratio of CSPAD high-gain to low-gain ADU per photon (LCLS LG36 used "about seven").
CSPAD_LOW_GAIN_FACTOR = 6.85

_PEDESTAL_DATASETS = ("/dark", "/pedestal", "/data/data", "/entry/data/data", "/data")


def load_array(source, *, dataset: str | None = None, name: str = "array") -> np.ndarray:
    """An array given directly or read from a file (``.npy``, ``.npz``, ``.h5``, ``.tif``).

    Parameters
    ----------
    source : array-like, float, str or path-like
        The array, or a file holding it.
    dataset : str, keyword-only
        HDF5 dataset path / NPZ array name. HDF5 default: the first of ``/dark``, ``/pedestal``,
        ``/data/data``, ``/entry/data/data``, ``/data`` present, else the only numeric dataset.
    name : str, keyword-only
        What the array is ("dark", "gain" ...), for messages.
    """
    if not isinstance(source, (str, os.PathLike)):
        return np.asarray(source)
    p = str(source)
    if not os.path.exists(p):
        raise InputError(f"{name} file not found; check the path", path=p)
    ext = Path(p).suffix.lower()
    try:
        if ext == ".npy":
            return np.load(p, allow_pickle=False)
        if ext == ".npz":
            with np.load(p, allow_pickle=False) as z:
                return z[dataset or (name if name in z.files else z.files[0])]
        if ext in (".tif", ".tiff"):
            import tifffile

            return tifffile.imread(p)
        if ext in (".h5", ".hdf5", ".hdf", ".cxi", ".nxs"):
            import hdf5plugin  # noqa: F401
            import h5py

            with h5py.File(p, "r") as f:
                key = dataset
                if key is None:
                    key = next((k for k in _PEDESTAL_DATASETS
                                if k in f and isinstance(f[k], h5py.Dataset)), None)
                if key is None:
                    found: list[str] = []
                    f.visititems(lambda n, o: found.append("/" + n)
                                 if isinstance(o, h5py.Dataset) and o.dtype.kind in "iuf" else None)
                    if len(found) != 1:
                        raise InputError(f"cannot tell which dataset holds the {name}; give it with "
                                         f"dataset=; numeric datasets: {found or 'none'}", path=p)
                    key = found[0]
                if key not in f:
                    raise InputError(f"dataset {key!r} not found in the {name} file", path=p)
                return np.asarray(f[key][()])
    except InputError:
        raise
    except (OSError, ValueError, KeyError) as exc:
        raise InputError(f"cannot read the {name} file ({exc}); check it is complete", path=p) from None
    raise InputError(f"unknown {name} file type {ext!r}; use .npy, .npz, .h5 or .tif", path=p)


def _check_shape(arr: np.ndarray, shape: tuple, name: str, label: str = "") -> None:
    if arr.ndim and arr.shape != tuple(shape):
        where = f" of {label}" if label else ""
        raise InputError(f"{name} shape {arr.shape} does not match the data shape {tuple(shape)}"
                         f"{where}; use the {name} recorded for this detector")


def subtract_dark(data: np.ndarray, dark) -> np.ndarray:
    """``data - dark`` as float32 (``dark``: same shape as ``data``, or a scalar)."""
    data = np.asarray(data, dtype=np.float32)
    dark = np.asarray(dark, dtype=np.float32)
    _check_shape(dark, data.shape, "dark")
    return data - dark


def apply_gain(data: np.ndarray, gain, *, mode: str = "divide") -> np.ndarray:
    """Convert with a gain map or scalar.

    Parameters
    ----------
    data : ndarray
    gain : float or ndarray of the data's shape
        ``mode="divide"``: ADU per photon (must be > 0). ``mode="multiply"``: a correction map.
    mode : {"divide", "multiply"}, keyword-only
    """
    data = np.asarray(data, dtype=np.float32)
    g = np.asarray(gain, dtype=np.float32)
    _check_shape(g, data.shape, "gain")
    if mode == "divide":
        if g.ndim == 0:
            check_positive("gain", float(g), "ADU/photon")
        elif not np.all(g[np.isfinite(g)] > 0):
            raise ParameterError("gain map (ADU per photon) must be > 0 everywhere; "
                                 "mask bad pixels instead of setting their gain to 0")
        return data / g
    if mode == "multiply":
        return data * g
    raise ParameterError(f"gain mode must be 'divide' or 'multiply', got {mode!r}")


def scale_low_gain(data: np.ndarray, low_gain_map, *,
                   factor: float = CSPAD_LOW_GAIN_FACTOR) -> np.ndarray:
    """Multiply pixels flagged low-gain (bool map, True = low gain) by ``factor``."""
    data = np.asarray(data, dtype=np.float32)
    lg = np.asarray(low_gain_map, dtype=bool)
    _check_shape(lg, data.shape, "low_gain_map")
    factor = check_positive("low_gain_factor", factor)
    return np.where(lg, data * np.float32(factor), data).astype(np.float32, copy=False)


def average_dark(frames: Iterable, *, method: str = "mean") -> np.ndarray:
    """The pedestal of a dark run: per-pixel mean (streamed) or median of frames.

    Parameters
    ----------
    frames : iterable of Frame or ndarray
        Dark frames, all of one shape. ``mean`` keeps only a float64 sum in memory;
        ``median`` stacks the frames (use it on short runs).
    method : {"mean", "median"}, keyword-only

    Returns
    -------
    ndarray of float32
    """
    if method not in ("mean", "median"):
        raise ParameterError(f"method must be 'mean' or 'median', got {method!r}")
    total = None
    stack = []
    n = 0
    for fr in frames:
        arr = fr.data if isinstance(fr, Frame) else np.asarray(fr)
        label = fr.label if isinstance(fr, Frame) else f"dark frame {n}"
        if total is None:
            total = np.zeros(arr.shape, dtype=np.float64)
        elif arr.shape != total.shape:
            raise InputError(f"dark frame shape {arr.shape} differs from the first {total.shape} "
                             f"at {label}; use one detector's dark run")
        if method == "mean":
            total += arr
        else:
            stack.append(np.asarray(arr, dtype=np.float32))
        n += 1
    if n == 0:
        raise InputError("no dark frames to average; check the dark run path")
    if method == "median":
        return np.median(np.stack(stack), axis=0).astype(np.float32)
    return (total / n).astype(np.float32)


def apply_corrections(frame: Frame, *, dark=None, gain=None, gain_mode: str = "divide",
                      low_gain_map=None, low_gain_factor: float = CSPAD_LOW_GAIN_FACTOR) -> Frame:
    """A corrected copy of ``frame`` (dark, then low-gain scaling, then gain; see module doc).

    Arrays may be given as files (see :func:`load_array`). Each step applied is recorded in
    ``frame.meta["corrections"]``. The mask is unchanged; NaN produced by a correction (e.g. a
    NaN in a gain map) is masked.

    Examples
    --------
    >>> f = Frame(np.full((2, 2), 110, np.int16))
    >>> apply_corrections(f, dark=np.full((2, 2), 10.0), gain=25.0).data.tolist()
    [[4.0, 4.0], [4.0, 4.0]]
    """
    data = frame.data
    steps = list(frame.meta.get("corrections", []))
    try:
        if dark is not None:
            data = subtract_dark(data, load_array(dark, name="dark"))
            steps.append("dark")
        if low_gain_map is not None:
            data = scale_low_gain(data, load_array(low_gain_map, name="low_gain_map"),
                                  factor=low_gain_factor)
            steps.append(f"low_gain x{float(low_gain_factor):g}")
        if gain is not None:
            data = apply_gain(data, load_array(gain, name="gain"), mode=gain_mode)
            steps.append(f"gain ({gain_mode})")
    except InputError as exc:
        if exc.path is not None:
            raise
        raise InputError(exc.reason, path=frame.source or None, frame=frame.index) from None
    mask = frame.mask
    if data is not frame.data:
        bad = ~np.isfinite(data)
        if bad.any():
            mask = mask | bad
    return frame.replace(data=data, mask=mask, meta={**frame.meta, "corrections": steps})
