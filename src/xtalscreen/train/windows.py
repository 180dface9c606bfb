"""Training windows: each frame assembled, binned and cut once to what training reads.

A model that bins a 2.3 Mpx CSPAD frame by 7 to a 256 px input needs, per training item, the
whole frame read, assembled and binned, every epoch, only to crop a small beam-centred window
out of it. :func:`cut_windows` does that work once per frame: it applies the model's
preprocessing up to the crop (assembly, the matched filter ``prefilter_sigma``, the binning of
:meth:`~xtalscreen.preprocess.PreprocessConfig.plan`) and keeps the beam-centred window of the
input size plus ``max_shift`` pixels on each side (room for the random crop shifts). Cropping
the input out of that window with :func:`window_preprocess` gives **exactly** what the model's
preprocessing gives on the raw frame (same pixels, LCN, augmentation), so a model trained on
windows is used on raw frames with its own preprocessing, unchanged.

A CSPAD window at a 256 px input is 320 x 320 float32 (0.4 MB, 0.1 Mpx) instead of 2.3 Mpx of
int32 to decompress and assemble: training on 10,000 frames of one detector then fits 15
minutes on 2 CPU cores (``BENCHMARKS.md``).

>>> from xtalscreen.train import TrainConfig, load_labels, train       # doctest: +SKIP
>>> data = load_labels("sim_cspad/", target="ke")
>>> cfg = TrainConfig(model="spotcount", img_size=256, preprocess={"bin": "auto"}, windows=True)
>>> res = train(cfg, data.split("train"), val=data.split("val"), out_dir="run/")
>>> # run/best.pt screens raw CSPAD frames; run/windows/ holds the windows (reused on --resume)

The windows of a set are kept in a folder with ``windows.json`` (the preprocessing, a hash of
the items, where each item's window is) and HDF5 files of windows, one per detector (items are
cut grouped by their ``group`` / ``preset`` column, then by file); a second call with
the same items and preprocessing reuses them, anything else cuts them again. A frame that
cannot be read or cut is reported, left out and listed in the returned set's ``skipped``.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import shutil
import time
import warnings
from pathlib import Path
from typing import Callable

import numpy as np

from xtalscreen.errors import InputError, ParameterError

__all__ = ["cut_window", "cut_windows", "window_preprocess", "WINDOWS_VERSION"]

log = logging.getLogger("xtalscreen.train")

#: Layout version of ``windows.json``.
WINDOWS_VERSION = 1
_INDEX = "windows.json"


def _check_pp(pp):
    from xtalscreen.preprocess import PreprocessConfig

    if not isinstance(pp, PreprocessConfig):
        raise ParameterError(f"training windows are for X-ray frames (PreprocessConfig); "
                             f"{type(pp).__name__} preprocessing resizes whole images: train without windows")
    if pp.margin:
        raise ParameterError(f"the preprocessing already reads windows (margin={pp.margin}); cut windows "
                             "with the raw-frame preprocessing (margin 0)")
    return pp


def window_preprocess(pp):
    """The preprocessing that, applied to a window :func:`cut_window` cut with ``pp``, gives
    what ``pp`` gives on the raw frame.

    The binning and the matched filter are done already; the window holds ``pp.max_shift``
    pixels of margin on each side (``margin``), whose beam centre it carries. With
    ``bin="auto"`` and ``unbinned_up_to > 1`` the size rule stays automatic (a window of a
    detector kept at full resolution keeps its larger input); otherwise the windows are
    used at factor 1.
    """
    pp = _check_pp(pp)
    over = {"margin": pp.max_shift, "prefilter_sigma": 0.0, "center": "beam"}
    if pp.bin == "auto" and pp.unbinned_up_to > 1:
        over["bin"] = "auto"
    else:
        over.update(bin=1, unbinned_up_to=1)
    return pp.replace(**over)


def cut_window(frame, pp):
    """``frame`` assembled, filtered, binned and cut to its training window under ``pp``.

    Returns a 2-D :class:`~xtalscreen.io.frame.Frame`: the input size of ``pp.plan`` plus
    ``pp.max_shift`` pixels on each side, centred where ``pp`` centres its crop (the beam, or
    the image centre), its ``beam_center`` that point in window pixels, its mask the binned
    mask (pixels outside the detector masked).
    """
    from xtalscreen.io.frame import Frame
    from xtalscreen.preprocess import bin_image, center_crop, crop_origin, gaussian_prefilter

    pp = _check_pp(pp)
    img, mask = frame.assembled()
    if pp.prefilter_sigma > 0:  # the matched filter comes before the binning, as in pp.apply
        img = gaussian_prefilter(img, pp.prefilter_sigma, mask=mask)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # no beam centre: the image centre, as pp.apply does
        c = pp._frame_center(frame, img.shape)
    factor, size = pp.plan(img.shape)
    m = pp.max_shift
    window = (size[0] + 2 * m, size[1] + 2 * m)
    b, bm = bin_image(img, factor, mask=mask, reduce=pp.bin_reduce)
    cb = (c[0] / factor, c[1] / factor)
    r0, c0 = crop_origin(cb, window)
    crop, cm = center_crop(b, window, center=cb, mask=bm)
    return Frame(np.ascontiguousarray(crop, dtype=np.float32), mask=cm,
                 beam_center=(cb[0] - c0, cb[1] - r0), source=frame.source, index=frame.index)


# ----------------------------------------------------------------------------- the worker
_WORKER: dict = {}


def _init_worker(data, pp_dict: dict) -> None:
    from xtalscreen.preprocess import PreprocessConfig
    from xtalscreen.train.datasets import FrameDataset

    pp = PreprocessConfig.from_dict(pp_dict)
    _WORKER.update(ds=FrameDataset(data, pp), pp=pp)


def _cut_one(i: int):
    """``(i, window Frame, None)`` or ``(i, None, message)`` for an item that fails."""
    ds, pp = _WORKER["ds"], _WORKER["pp"]
    try:
        return i, cut_window(ds.read(i), pp), None
    except (InputError, ParameterError, OSError, ValueError) as exc:
        named = isinstance(exc, InputError) and exc.path is not None
        msg = str(exc) if named else f"{ds.data.files[i]} (frame {int(ds.data.frames[i])}): {exc}"
        return i, None, msg


# ----------------------------------------------------------------------------- the folder
def _items_key(data, pp) -> str:
    h = hashlib.sha1()
    h.update(json.dumps(pp.to_dict(), sort_keys=True).encode())
    for f, fr, y in zip(data.files, data.frames, data.labels):
        h.update(f"{os.path.abspath(f)}\0{int(fr)}\0{int(y)}\n".encode())
    return h.hexdigest()


def _load_index(folder: Path, key: str) -> dict | None:
    p = folder / _INDEX
    try:
        idx = json.loads(p.read_text())
    except (OSError, ValueError):
        return None
    if idx.get("version") != WINDOWS_VERSION or idx.get("key") != key:
        return None
    if not all((folder / f).is_file() for f in idx.get("files", [])):
        return None
    return idx


def _windowed_set(data, folder: Path, idx: dict):
    """The :class:`LabelledSet` of the windows in ``folder`` (items that were cut)."""
    from xtalscreen.train.datasets import LabelledSet

    keep = [i for i, w in enumerate(idx["where"]) if w is not None]
    files = [str(folder / idx["files"][idx["where"][i][0]]) for i in keep]
    frames = np.array([idx["where"][i][1] for i in keep], dtype=np.int64)
    meta = []
    for i in keep:
        m = dict(data.meta[i]) if data.meta else {}
        m.setdefault("raw_file", data.files[i])
        m.setdefault("raw_frame", int(data.frames[i]))
        meta.append(m)
    return LabelledSet(files=files, frames=frames, labels=data.labels[keep], classes=data.classes,
                       target=data.target, splits=[data.splits[i] for i in keep], meta=meta,
                       geometry={}, root=str(folder), auto_mask=False,
                       skipped=list(data.skipped) + [f"(window) {s}" for s in idx.get("skipped", [])])


def cut_windows(data, folder, pp, *, workers: int = 1, progress: bool | None = False,
                echo: Callable[[str], None] | None = None):
    """Cut every item of ``data`` once to its training window (:func:`cut_window`) into
    ``folder``; return the :class:`~xtalscreen.train.datasets.LabelledSet` of the windows.

    Parameters
    ----------
    data : LabelledSet
        Raw frames (any readable layout, multi-panel frames with their geometry).
    folder : path
        Receives the windows (HDF5, one file per run of one shape) and ``windows.json``. Windows already there
        for the same items and preprocessing are reused; anything else there is replaced.
    pp : PreprocessConfig
        The model's raw-frame preprocessing (train on the windows with
        :func:`window_preprocess` of it).
    workers : int, keyword-only
        Processes reading and cutting frames (the windows do not depend on it).
    progress : bool or None, keyword-only
        Progress bar (None: when stderr is a terminal).
    echo : callable, keyword-only
        Receives one line saying what was cut or reused.

    Returns
    -------
    LabelledSet
        Items in the order of ``data`` less those that failed (reported on the
        ``xtalscreen.train`` logger and listed in ``skipped``); ``meta`` gains each item's
        ``raw_file`` and ``raw_frame``.
    """
    from xtalscreen.io.writers import write_hdf5_run
    from xtalscreen.progress import track

    pp = _check_pp(pp)
    if isinstance(workers, bool) or not isinstance(workers, (int, np.integer)) or workers < 1:
        raise ParameterError(f"workers must be an integer >= 1, got {workers!r}")
    folder = Path(folder)
    key = _items_key(data, pp)
    idx = _load_index(folder, key)
    if idx is not None:
        if echo is not None:
            echo(f"training windows: reusing {sum(w is not None for w in idx['where'])} in {folder}")
        return _windowed_set(data, folder, idx)
    if folder.exists():
        shutil.rmtree(folder)
    folder.mkdir(parents=True)
    t0 = time.perf_counter()
    n = len(data)
    where: list = [None] * n
    skipped: list[str] = []
    files: list[str] = []
    shapes: dict[str, tuple] = {}  # file -> window shape
    # items of one detector (group / preset column), then of one file, together: consecutive
    # windows of one shape go into one file, and none is held in memory
    groups = data.groups()
    order = sorted(range(n), key=lambda i: (str(groups[i]), data.files[i]))

    def results():
        init = (data, pp.to_dict())
        if workers == 1 or n < 2:
            _init_worker(*init)
            try:
                yield from (_cut_one(i) for i in order)
            finally:
                _WORKER["ds"].close()
                _WORKER.clear()
            return
        import multiprocessing as mp

        # fork where there is one: no re-import of the caller's __main__ (a script without a
        # main guard works); the children open their own files and never use torch
        ctx = mp.get_context("fork" if "fork" in mp.get_all_start_methods() else "spawn")
        with ctx.Pool(min(workers, n), initializer=_init_worker, initargs=init) as pool:
            yield from pool.imap(_cut_one, order, chunksize=4)

    def cut():
        for i, win, err in track(results(), total=n, description="cutting training windows", enabled=progress):
            if err is None:
                yield i, win
            else:
                log.warning("skipped %s", err)
                skipped.append(err)

    it = cut()
    head = next(it, None)
    while head is not None:  # one file per run of windows of one shape
        name, shape = f"windows-{len(files):02d}.h5", tuple(head[1].shape)
        files.append(name)
        shapes[name] = shape

        def run(k=len(files) - 1, shape=shape):
            nonlocal head
            j = 0
            while head is not None and tuple(head[1].shape) == shape:
                where[head[0]] = (k, j)
                j += 1
                yield head[1]
                head = next(it, None)

        write_hdf5_run(run(), folder / name)
    if not files:
        raise InputError(f"no frame could be cut to a training window ({len(skipped)} failed; first: "
                         f"{skipped[0] if skipped else 'no items'})", path=data.root)
    idx = {"version": WINDOWS_VERSION, "key": key, "preprocess": pp.to_dict(), "source": data.root,
           "items": n, "files": files, "shapes": {f: list(v) for f, v in shapes.items()},
           "where": where, "skipped": skipped, "seconds": round(time.perf_counter() - t0, 3)}
    (folder / _INDEX).write_text(json.dumps(idx))
    if echo is not None:
        echo(f"training windows: cut {n - len(skipped)} of {n} frames in {idx['seconds']:.0f} s into "
             f"{folder} ({', '.join(dict.fromkeys('x'.join(map(str, v)) for v in shapes.values()))} px)"
             + (f"; {len(skipped)} skipped" if skipped else ""))
    return _windowed_set(data, folder, idx)
