"""Images and labels for the feature baselines.

:func:`load_dataset` accepts

- a folder written by ``xtalscreen simulate`` (``labels.csv`` with ``file`` relative to the
  folder, ``frame``, ``split`` and label columns such as ``diffranet_class``/``ke_class``), or a
  ``labels.csv`` written by ``xtalscreen label`` (``label`` column);
- a folder with one sub-folder of images per class (``blank/``, ``strong/``, ...; a DiffraNet
  tree ``train/<class>/`` works when ``split`` names the sub-folder).

Frames are read with :func:`xtalscreen.io.open_frames`, multi-panel frames assembled, and every
image area-averaged to ``size`` × ``size`` straight away so that a dataset fits in memory.
8-bit source images (PNG/JPEG) stay ``uint8``.
"""

from __future__ import annotations

import csv
from collections import OrderedDict
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from xtalscreen.errors import InputError, ParameterError
from xtalscreen.features.baselines import class_order
from xtalscreen.features.extractors import resize

IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".tif", ".tiff", ".npy", ".cbf", ".h5", ".cxi", ".img")


@dataclass
class Dataset:
    images: list = field(default_factory=list)
    labels: list = field(default_factory=list)
    classes: list = field(default_factory=list)
    items: list = field(default_factory=list)     # (file, frame) of each image


def frame_image(frame, size: int | None) -> np.ndarray:
    """The 2-D (assembled) image of a frame, area-averaged to size × size; uint8 kept."""
    img, msk = frame.assembled(fill=0.0)
    img = np.where(msk | ~np.isfinite(img), 0.0, img).astype(np.float32)
    if str(frame.dtype) == "uint8":
        img = np.clip(img, 0, 255).astype(np.uint8)
    return resize(img, size) if size else img


def _read_rows(csv_path: Path) -> list[dict]:
    with open(csv_path, newline="") as fh:
        rows = list(csv.DictReader(fh))
    if rows and ("file" not in rows[0] or "frame" not in rows[0]):
        raise InputError("labels file needs the columns file and frame", path=str(csv_path))
    return rows


def load_dataset(path, *, split: str | None = "train", label: str = "diffranet_class",
                 size: int | None = 512, limit: int | None = None, classes=None) -> Dataset:
    """Load images and labels (see module doc).

    Parameters
    ----------
    path : str or Path
        Dataset folder, labels CSV, or folder of class sub-folders.
    split : str or None
        Rows of this ``split`` only (``None`` or ``"all"``: every row).
    label : str
        Label column; falls back to ``label`` when the CSV has no such column.
    size : int or None
        Side of the square images (pixels); None keeps the frame size.
    limit : int, optional
        At most this many images (the first ones, in file order).
    classes : list of str, optional
        Class order (e.g. a trained pipeline's); default from the labels.
    """
    from xtalscreen.io import open_frames

    p = Path(path)
    split = None if split in (None, "all", "") else split
    if limit is not None and (isinstance(limit, bool) or int(limit) < 1):
        raise ParameterError(f"limit must be >= 1, got {limit!r}")
    csv_path = p if p.suffix.lower() == ".csv" else p / "labels.csv"
    ds = Dataset()
    if csv_path.is_file():
        root = csv_path.parent
        rows = _read_rows(csv_path)
        if rows and label not in rows[0]:
            if "label" in rows[0]:
                label = "label"
            else:
                raise ParameterError(f"labels.csv has no column {label!r}; columns: {list(rows[0])}")
        if split is not None:
            if rows and "split" not in rows[0]:
                raise ParameterError("labels.csv has no split column; use split='all'")
            rows = [r for r in rows if r.get("split") == split]
        if limit is not None:
            rows = rows[: int(limit)]
        if not rows:
            raise InputError(f"no rows for split {split!r} in the labels", path=str(csv_path))
        by_file: "OrderedDict[str, dict[int, str]]" = OrderedDict()
        for r in rows:
            by_file.setdefault(r["file"], {})[int(r["frame"])] = r[label]
        for f, wanted in by_file.items():
            fp = Path(f) if Path(f).is_absolute() else root / f
            got = {}
            for fr in open_frames(str(fp), frames=sorted(wanted)):
                if fr.index in wanted:
                    got[fr.index] = frame_image(fr, size)
            for idx in sorted(wanted):
                if idx not in got:
                    raise InputError("frame listed in labels.csv not found", path=str(fp), frame=idx)
                ds.images.append(got[idx])
                ds.labels.append(wanted[idx])
                ds.items.append((str(fp), idx))
    elif p.is_dir():
        base = p / split if split is not None and (p / split).is_dir() else p
        subs = sorted(d for d in base.iterdir() if d.is_dir())
        if not subs:
            raise InputError("no labels.csv and no class sub-folders here", path=str(p))
        for d in subs:
            for f in sorted(d.iterdir()):
                if f.suffix.lower() not in IMAGE_SUFFIXES:
                    continue
                for fr in open_frames(str(f)):
                    ds.images.append(frame_image(fr, size))
                    ds.labels.append(d.name)
                    ds.items.append((str(f), fr.index))
                    if limit is not None and len(ds.images) >= limit:
                        break
                if limit is not None and len(ds.images) >= limit:
                    break
        if not ds.images:
            raise InputError("no images found in the class sub-folders", path=str(base))
    else:
        raise InputError("no such dataset (a folder with labels.csv, a labels CSV, or a folder "
                         "of class sub-folders)", path=str(p))
    ds.classes = list(classes) if classes else class_order(ds.labels)
    return ds
