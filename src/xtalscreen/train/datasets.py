"""Labelled frames for training and evaluation: layouts on disk, targets, random access.

Layouts :func:`load_labels` understands (``path`` is a directory or a file):

1. **simulate output**: ``path/labels.csv`` with columns ``file, frame, split, preset,
   diffranet_class, ke_class, ...`` (as written by ``xtalscreen simulate``); frames are read
   from the HDF5 shards (or PNGs) the ``file`` column names, relative to ``path``. A
   ``geometry.geom`` (one multi-panel preset) or ``<preset>.geom`` next to labels.csv is
   attached to the frames so multi-panel shards are assembled.
2. **labels.csv over any readable files**: columns ``file, frame, label[, split]`` (e.g. from
   ``xtalscreen label``); ``file`` absolute or relative to the CSV's folder.
3. **DiffraNet folders**: ``path/<split>/<class>/*.png`` (any image the readers take), with
   ``<split>`` in train/val/test (also ``validation``) and ``<class>`` a class name; or the
   **MARCO layout** ``path/<class>/*.jpg|png`` (one folder per class, no split level; every
   image gets a fixed split from a hash of its name). ``xtalscreen drops export-training``
   writes either.
4. **Ke's idh5 + annotation file**: ``path`` is an idh5 (or any multi-frame HDF5) file and
   ``annotations`` a text/CSV file with one frame per line: ``frame label [split]``
   (comma, tab or space separated; a header line ``frame,label[,split]`` and ``#`` comments
   are allowed). Without ``annotations``, ``<file stem>.labels.csv`` or
   ``<file stem>.annotations.csv`` next to the file is used.

Targets (:data:`TARGETS`): ``diffranet`` (blank / no-crystal / weak / good / strong), ``ke``
(hit / maybe / miss, paper 001), ``binary`` (hit / miss) and ``marco`` (crystallisation-drop
photographs: crystal / precipitate / clear / other; a class folder may also be named after a
class of another scheme of :mod:`xtalscreen.drops.schemes`, e.g. ``Crystals High``, and is
mapped to its MARCO class; an unknown folder name is an error listing the valid ones).
Binary labels come from Ke classes by paper 001's collapse (hit and maybe -> hit) or, for
DiffraNet classes, as diffraction (weak, good, strong -> hit) vs none (blank, no-crystal ->
miss); plain ``hit`` / ``miss`` labels are taken as they are.

Rows without a split get a fixed one from a hash of ``file:frame`` (80 % train, 10 % val,
10 % test; or train / val only with ``val_fraction``), so the same frame is always in the same
split.
"""

from __future__ import annotations

import csv
import logging
import os
import re
import zlib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from xtalscreen.errors import InputError, ParameterError

__all__ = ["TARGETS", "IMAGE_TARGETS", "LabelledSet", "FrameDataset", "load_labels", "map_label",
           "split_of"]

log = logging.getLogger("xtalscreen.train")

#: Class names of each target, in the order of the model outputs.
TARGETS: dict[str, tuple[str, ...]] = {
    "diffranet": ("blank", "no-crystal", "weak", "good", "strong"),
    "ke": ("hit", "maybe", "miss"),
    "binary": ("hit", "miss"),
    "marco": ("crystal", "precipitate", "clear", "other"),
}
#: Targets whose items are photographs (drop images), read as RGB/grey pictures, not frames.
IMAGE_TARGETS = ("marco",)
_KE = set(TARGETS["ke"])
_DN = set(TARGETS["diffranet"])
_SPLITS = {"train": "train", "val": "val", "valid": "val", "validation": "val", "test": "test"}
_IMAGE_EXT = (".png", ".jpg", ".jpeg", ".tif", ".tiff", ".pgm", ".npy", ".cbf", ".h5")
_PHOTO_EXT = (".png", ".jpg", ".jpeg", ".tif", ".tiff", ".bmp")


def check_target(target: str) -> str:
    if target not in TARGETS:
        raise ParameterError(f"target must be one of {', '.join(TARGETS)}, got {target!r}")
    return target


def _norm(label: str) -> str:
    s = str(label).strip().lower().replace("_", "-").replace(" ", "-")
    return {"nocrystal": "no-crystal", "no-xtal": "no-crystal", "empty": "blank"}.get(s, s)


def map_label(label: str, target: str) -> int:
    """Index of ``label`` (a class name of any scheme) among ``TARGETS[target]``.

    Raises
    ------
    ValueError
        When the label has no meaning for the target (e.g. a DiffraNet class for ``ke``).
    """
    if target == "marco":
        return TARGETS["marco"].index(_marco_class(label))
    s = _norm(label)
    classes = TARGETS[target]
    if s in classes:
        return classes.index(s)
    if target == "binary":
        if s == "maybe":
            return 0
        if s in ("weak", "good", "strong"):
            return 0
        if s in ("blank", "no-crystal"):
            return 1
    raise ValueError(f"label {label!r} is not a class of target {target!r} "
                     f"({', '.join(classes)})")


def _marco_class(label: str) -> str:
    """The MARCO class of a class name of any scheme in :mod:`xtalscreen.drops.schemes`."""
    from xtalscreen.drops.schemes import MARCO_CLASSES, load_schemes, normalise_label

    key = normalise_label(label)
    for c in MARCO_CLASSES:
        if key == c:
            return c
    hits = {}
    for name, scheme in load_schemes().items():
        c = scheme.find(label)
        if c is not None and c.maps_to is not None:
            hits.setdefault(normalise_label(c.maps_to), []).append(name)
    if len(hits) == 1:
        return next(iter(hits))
    if len(hits) > 1:
        raise ValueError(f"class {label!r} maps to different MARCO classes in different schemes "
                         f"({', '.join(f'{k} in {v}' for k, v in sorted(hits.items()))}); rename "
                         f"the folder to one of {', '.join(MARCO_CLASSES)}")
    raise ValueError(f"class {label!r} is not a MARCO class ({', '.join(MARCO_CLASSES)}) nor a "
                     f"class of a mapped scheme ({_mapped_names()})")


def _mapped_names() -> str:
    from xtalscreen.drops.schemes import TARGET_SCHEME, load_schemes

    names = [c.name for n, sc in load_schemes().items() if n != TARGET_SCHEME for c in sc.classes]
    return ", ".join(dict.fromkeys(names))


def split_of(file: str, frame: int, *, val_fraction: float | None = None) -> str:
    """Fixed split of a row that has none, by a hash of ``file:frame`` (file name only).

    Default 80 / 10 / 10 % train / val / test; with ``val_fraction`` (0 < f < 1) train / val
    only, ``val_fraction`` of the rows in val.
    """
    key = f"{Path(file).name}:{int(frame)}".encode()
    if val_fraction is not None:
        return "val" if zlib.crc32(key) % 10000 < round(float(val_fraction) * 10000) else "train"
    h = zlib.crc32(key) % 100
    return "train" if h < 80 else ("val" if h < 90 else "test")


def check_val_fraction(val_fraction) -> float | None:
    if val_fraction is None:
        return None
    if isinstance(val_fraction, bool) or not isinstance(val_fraction, (int, float, np.floating)) \
            or not 0.0 < float(val_fraction) < 1.0:
        raise ParameterError(f"val_fraction must be in (0, 1) (fraction of unsplit items used for "
                             f"validation), got {val_fraction!r}")
    return float(val_fraction)


@dataclass
class LabelledSet:
    """Frames with labels: what a dataset on disk holds for one target (and split).

    Attributes
    ----------
    files : list of str
        Absolute path of each item's file.
    frames : ndarray of int, shape (N,)
        Frame index inside the file.
    labels : ndarray of int, shape (N,)
        Index into ``classes``.
    classes : tuple of str
    target : str
    splits : list of str
    meta : list of dict
        Extra columns per item (preset, ke_class, diffranet_class, n_spots ... when known).
    geometry : dict
        ``{file: DetectorGeometry or path}`` for multi-panel files.
    root : str
        Where the set came from (for messages and provenance).
    skipped : list of str
        Rows that could not be used (one line each, naming the row and why).
    auto_mask : bool
        Whether readers add the bad pixels the data reveal (:func:`xtalscreen.io.masks.data_mask`)
        to each frame's mask (default). False for files whose masks are complete, such as
        training windows (:mod:`xtalscreen.train.windows`), where a run of zeros is data.
    """

    files: list
    frames: np.ndarray
    labels: np.ndarray
    classes: tuple
    target: str
    splits: list
    meta: list = field(default_factory=list)
    geometry: dict = field(default_factory=dict)
    root: str = ""
    skipped: list = field(default_factory=list)
    auto_mask: bool = True

    def __len__(self) -> int:
        return len(self.files)

    def subset(self, which) -> "LabelledSet":
        """Items selected by an index array or boolean mask."""
        idx = np.arange(len(self))[which]
        return LabelledSet(files=[self.files[i] for i in idx], frames=self.frames[idx],
                           labels=self.labels[idx], classes=self.classes, target=self.target,
                           splits=[self.splits[i] for i in idx],
                           meta=[self.meta[i] for i in idx] if self.meta else [],
                           geometry=self.geometry, root=self.root, skipped=list(self.skipped),
                           auto_mask=self.auto_mask)

    def split(self, name: str | None) -> "LabelledSet":
        """The items of one split (``None``: all)."""
        if name is None:
            return self
        name = _SPLITS.get(name, name)
        if name not in ("train", "val", "test"):
            raise ParameterError(f"split must be train, val or test, got {name!r}")
        return self.subset(np.array([s == name for s in self.splits], dtype=bool))

    def groups(self) -> list:
        """Group of each item for batching inputs of one size together: its ``group`` column,
        else its ``preset``, else one group for all."""
        if not self.meta:
            return [""] * len(self)
        return [str(m.get("group") or m.get("preset") or "") for m in self.meta]

    def class_counts(self) -> dict[str, int]:
        counts = np.bincount(self.labels, minlength=len(self.classes))
        return {c: int(n) for c, n in zip(self.classes, counts)}


# ---------------------------------------------------------------------------------- layouts
def load_labels(path, *, target: str = "ke", split: str | None = None,
                annotations=None, val_fraction: float | None = None) -> LabelledSet:
    """Read the labels of a dataset in any supported layout (module docstring).

    Parameters
    ----------
    path : str or path-like
        Dataset directory, a labels CSV, or an (id)h5 file.
    target : {"diffranet", "ke", "binary", "marco"}, keyword-only
    split : {"train", "val", "test"} or None, keyword-only
        Keep one split only.
    annotations : path, keyword-only
        Annotation file for an HDF5 file (layout 4).
    val_fraction : float or None, keyword-only
        Items without a split of their own go to val with this probability (by hash), else
        train; None: 80 / 10 / 10 % train / val / test.

    Returns
    -------
    LabelledSet
        Rows whose label does not fit the target are left out and listed in ``skipped``.

    Raises
    ------
    InputError
        Missing path, unknown layout, a CSV without the needed columns, or no usable row.
    """
    check_target(target)
    vf = check_val_fraction(val_fraction)
    p = Path(path)
    if not p.exists():
        raise InputError("dataset not found; give a folder with labels.csv (xtalscreen simulate "
                         "/ label output), a DiffraNet-style <split>/<class>/ tree, a MARCO-style "
                         "<class>/ tree, or an HDF5 file with --annotations", path=str(p))
    if p.is_dir() and (p / "labels.csv").is_file():
        out = _from_csv(p / "labels.csv", target, vf)
    elif p.is_file() and p.suffix.lower() in (".csv", ".txt") and annotations is None:
        out = _from_csv(p, target, vf)
    elif p.is_file() and p.suffix.lower() in (".h5", ".hdf5", ".cxi", ".nxs"):
        out = _from_annotated_h5(p, annotations, target, vf)
    elif p.is_dir():
        out = _from_folders(p, target, vf)
    else:
        raise InputError("not a dataset: expected a folder, a labels .csv or an HDF5 file",
                         path=str(p))
    if not len(out):
        why = ("; ".join(out.skipped[:3]) + (" ..." if len(out.skipped) > 3 else "")) or "no rows"
        raise InputError(f"no frame with a label usable for target {target!r} ({why})",
                         path=str(p))
    for line in out.skipped[:5]:
        log.warning("%s", line)
    return out.split(split)


def _read_rows(csv_path: Path) -> tuple[list[str], list[dict]]:
    try:
        with open(csv_path, newline="") as fh:
            reader = csv.DictReader(fh)
            rows = list(reader)
            cols = [c.strip() for c in (reader.fieldnames or [])]
    except (OSError, UnicodeDecodeError, csv.Error) as exc:
        raise InputError(f"cannot read the labels file ({exc})", path=str(csv_path)) from None
    return cols, rows


def _from_csv(csv_path: Path, target: str, val_fraction: float | None = None) -> LabelledSet:
    cols, rows = _read_rows(csv_path)
    root = csv_path.parent
    if "file" not in cols:
        raise InputError(f"labels file has no 'file' column (columns: {', '.join(cols) or 'none'});"
                         " expected file,frame,label[,split] or xtalscreen simulate's labels.csv",
                         path=str(csv_path))
    if target == "diffranet" and "diffranet_class" in cols:
        col = "diffranet_class"
    elif target in ("ke", "binary") and "ke_class" in cols:
        col = "ke_class"
    elif "label" in cols:
        col = "label"
    elif "diffranet_class" in cols:
        col = "diffranet_class"
    else:
        raise InputError(f"labels file has no label column for target {target!r} (columns: "
                         f"{', '.join(cols)}); expected 'label', 'ke_class' or 'diffranet_class'",
                         path=str(csv_path))
    files, frames, labels, splits, meta, skipped = [], [], [], [], [], []
    for n, r in enumerate(rows, start=2):
        where = f"{csv_path} line {n}"
        f = (r.get("file") or "").strip()
        if not f:
            skipped.append(f"{where}: empty file name")
            continue
        try:
            frame = int(r.get("frame") or 0)
            y = map_label(r.get(col, ""), target)
        except ValueError as exc:
            skipped.append(f"{where}: {exc}")
            continue
        fp = f if os.path.isabs(f) else str(root / f)
        s = (_SPLITS.get((r.get("split") or "").strip().lower(), None)
             or split_of(f, frame, val_fraction=val_fraction))
        files.append(fp)
        frames.append(frame)
        labels.append(y)
        splits.append(s)
        meta.append({k: r[k] for k in ("preset", "ke_class", "diffranet_class", "n_spots", "n_spots_expected",
                                       "n_spots_measured") if r.get(k)})
    geometry = {}
    if "preset" in cols:
        for fp, m in zip(files, meta):
            g = _geom_for(root, m.get("preset"))
            if g is not None:
                geometry[fp] = g
    return LabelledSet(files=files, frames=np.array(frames, dtype=np.int64),
                       labels=np.array(labels, dtype=np.int64), classes=TARGETS[target],
                       target=target, splits=splits, meta=meta, geometry=geometry,
                       root=str(csv_path), skipped=skipped)


def _geom_for(root: Path, preset: str | None) -> str | None:
    from xtalscreen.io.readers import GEOMETRY_NAME

    for cand in ((root / f"{preset}.geom") if preset else None, root / GEOMETRY_NAME):
        if cand is not None and cand.is_file():
            return str(cand)
    return None


def _from_folders(root: Path, target: str, val_fraction: float | None = None) -> LabelledSet:
    files, frames, labels, splits, meta, skipped = [], [], [], [], [], []
    subdirs = sorted(d for d in root.iterdir() if d.is_dir() and not d.name.startswith("."))
    split_dirs = [(d, _SPLITS[d.name.lower()]) for d in subdirs if d.name.lower() in _SPLITS]
    # DiffraNet: <split>/<class>/; MARCO: <class>/ with a split from a hash of each file name
    groups = ([(c, s) for d, s in split_dirs for c in sorted(x for x in d.iterdir() if x.is_dir())]
              if split_dirs else [(d, None) for d in subdirs])
    ext = _PHOTO_EXT if target in IMAGE_TARGETS else _IMAGE_EXT
    for cdir, s in groups:
        try:
            y = map_label(cdir.name, target)
        except ValueError as exc:
            if target in IMAGE_TARGETS:  # a typo must not silently drop a class
                raise InputError(f"class folder {cdir.name!r} is not one of "
                                 f"{', '.join(TARGETS[target])} (nor a class of a mapped "
                                 f"scheme: {_mapped_names()}); rename or remove it",
                                 path=str(cdir)) from None
            skipped.append(f"{cdir}: {exc}")
            continue
        for fp in sorted(cdir.iterdir(), key=lambda q: _natural(q.name)):
            if fp.suffix.lower() not in ext or fp.name.startswith(".") or not fp.is_file():
                continue
            files.append(str(fp))
            frames.append(0)
            labels.append(y)
            splits.append(s or split_of(fp.name, 0, val_fraction=val_fraction))
            meta.append({"class_dir": cdir.name})
    if not files and not skipped:
        raise InputError("no labels.csv and no DiffraNet-style <split>/<class>/ folders (split "
                         "= train/val/test) or MARCO-style <class>/ folders of images here",
                         path=str(root))
    return LabelledSet(files=files, frames=np.array(frames, dtype=np.int64),
                       labels=np.array(labels, dtype=np.int64), classes=TARGETS[target],
                       target=target, splits=splits, meta=meta, root=str(root), skipped=skipped)


def _natural(s: str):
    return [int(t) if t.isdigit() else t for t in re.split(r"(\d+)", s)]


def _from_annotated_h5(h5: Path, annotations, target: str,
                       val_fraction: float | None = None) -> LabelledSet:
    if annotations is None:
        for cand in (h5.with_suffix(".labels.csv"), h5.with_suffix(".annotations.csv"),
                     h5.with_suffix(".annotations.txt")):
            if cand.is_file():
                annotations = cand
                break
        else:
            raise InputError("an HDF5 dataset needs an annotation file (frame label [split] per "
                             "line): pass --annotations, or put it next to the file as "
                             f"{h5.with_suffix('.labels.csv').name}", path=str(h5))
    ann = Path(annotations)
    try:
        text = ann.read_text().splitlines()
    except (OSError, UnicodeDecodeError) as exc:
        raise InputError(f"cannot read the annotation file ({exc})", path=str(ann)) from None
    files, frames, labels, splits, meta, skipped = [], [], [], [], [], []
    for n, line in enumerate(text, start=1):
        line = line.split("#", 1)[0].strip()
        if not line:
            continue
        parts = [t for t in re.split(r"[,\t ]+", line) if t]
        if n == 1 and parts and parts[0].lower() in ("frame", "index", "event"):
            continue
        where = f"{ann} line {n}"
        if len(parts) < 2:
            skipped.append(f"{where}: expected 'frame label [split]', got {line!r}")
            continue
        try:
            frame = int(parts[0])
            y = map_label(parts[1], target)
        except ValueError as exc:
            skipped.append(f"{where}: {exc}")
            continue
        files.append(str(h5))
        frames.append(frame)
        labels.append(y)
        s = _SPLITS.get(parts[2].lower()) if len(parts) > 2 else None
        splits.append(s or split_of(str(h5), frame, val_fraction=val_fraction))
        meta.append({"label": parts[1]})
    return LabelledSet(files=files, frames=np.array(frames, dtype=np.int64),
                       labels=np.array(labels, dtype=np.int64), classes=TARGETS[target],
                       target=target, splits=splits, meta=meta, root=str(ann), skipped=skipped)


# ---------------------------------------------------------------------------------- access
class _Readers:
    """Open file readers, cached per process (HDF5 handles must not cross a fork)."""

    def __init__(self, geometry: dict, max_open: int = 64, auto_mask: bool = True):
        self.geometry = geometry
        self.max_open = max_open
        self.auto_mask = bool(auto_mask)
        self._pid = None
        self._open: dict[str, Any] = {}
        self._geoms: dict[str, Any] = {}

    def get(self, path: str):
        """``(reader, geometry or None)`` of ``path``, opened on first use in this process."""
        if self._pid != os.getpid():
            self._open = {}
            self._pid = os.getpid()
        r = self._open.get(path)
        if r is None:
            from xtalscreen.io.readers import _geometry, open_file

            if len(self._open) >= self.max_open:
                old = next(iter(self._open))
                self._open.pop(old)[0].close()
            geom = self._geoms.get(path)
            if geom is None and self.geometry.get(path) is not None:
                geom = _geometry(self.geometry[path])
                self._geoms[path] = geom
            r = (open_file(path, geometry=geom, auto_mask=self.auto_mask), geom)
            self._open[path] = r
        return r

    def close(self) -> None:
        for r, _ in self._open.values():
            r.close()
        self._open = {}

    def __getstate__(self):
        return {"geometry": self.geometry, "max_open": self.max_open, "auto_mask": self.auto_mask,
                "_pid": None, "_open": {}, "_geoms": {}}


class FrameDataset:
    """Map-style dataset (torch ``Dataset`` protocol): item ``i`` -> ``(x, y, i)``.

    ``x`` is the preprocessed ``(C, H, W)`` float32 tensor, ``y`` the class index, or ``-1``
    when the frame could not be read (it is reported once on the ``xtalscreen.train`` logger
    and listed in :attr:`bad`; the loss ignores it).

    Parameters
    ----------
    data : LabelledSet
    preprocess : PreprocessConfig or ImagePreprocessConfig
        With an :class:`~xtalscreen.preprocess.pipeline.ImagePreprocessConfig` the items are
        read as photographs (drop images: JPEG/PNG/TIFF, grey or RGB) instead of frames.
    augment : bool, keyword-only
        Random crops, flips, turns and intensity scale (training only).
    seed : int, keyword-only
        Augmentation of item ``i`` in epoch ``e`` uses ``SeedSequence([seed, e, i])``: the
        same whatever the worker count or order (call :meth:`set_epoch` each epoch).
    """

    def __init__(self, data: LabelledSet, preprocess, *, augment: bool = False, seed: int = 0):
        self.data = data
        self.preprocess = preprocess
        self.augment = bool(augment)
        self.seed = int(seed)
        self.epoch = 0
        self.bad: dict[int, str] = {}
        self._readers = _Readers(data.geometry, auto_mask=getattr(data, "auto_mask", True))

    def __len__(self) -> int:
        return len(self.data)

    def set_epoch(self, epoch: int) -> None:
        self.epoch = int(epoch)

    @property
    def photos(self) -> bool:
        """Items are photographs (drop images, :class:`ImagePreprocessConfig` preprocessing)."""
        return hasattr(self.preprocess, "apply_image")

    def read_image(self, i: int) -> np.ndarray:
        """The decoded picture of item ``i``: uint8 (H, W) grey or (H, W, 3) RGB."""
        from xtalscreen.drops.classifier import read_image

        return read_image(self.data.files[i])

    def read(self, i: int):
        """The :class:`~xtalscreen.io.frame.Frame` of item ``i`` (with the dataset's detector
        geometry attached, for multi-panel frames)."""
        reader, geom = self._readers.get(self.data.files[i])
        frame = reader.read(int(self.data.frames[i]))
        if geom is not None:
            geom.check_data(frame.shape, frame.source)
            frame = frame.replace(geometry=geom)
        return frame

    def __getitem__(self, i: int):
        import torch
        import warnings

        i = int(i)
        try:
            rng = np.random.default_rng(np.random.SeedSequence([self.seed, self.epoch, i]))
            if self.photos:
                x = self.preprocess.apply_image(self.read_image(i), rng=rng, augment=self.augment)
            else:
                frame = self.read(i)
                with warnings.catch_warnings():
                    warnings.simplefilter("ignore")  # missing beam centres: image centre, by design
                    x = self.preprocess.apply(frame, rng=rng, augment=self.augment)
            y = int(self.data.labels[i])
        except (InputError, ParameterError, OSError, ValueError) as exc:
            named = isinstance(exc, InputError) and exc.path is not None
            msg = str(exc) if named else f"{self.data.files[i]} (frame {int(self.data.frames[i])}): {exc}"
            if i not in self.bad:
                log.warning("skipped %s", msg)
            self.bad[i] = msg
            x = np.zeros(self.preprocess.output_shape, dtype=np.float32)
            y = -1
        return torch.from_numpy(np.ascontiguousarray(x)), y, i

    def close(self) -> None:
        self._readers.close()
