"""Turning what a user typed into a list of files: paths, directories, globs, list files.

- a **file** with a known extension (:data:`KNOWN_EXTENSIONS`) is itself;
- a **directory** gives every file with a known extension below it, recursing, in natural
  order (``img_2`` before ``img_10``), hidden files skipped; Eiger data files
  (``X_data_000001.h5``) whose master (``X_master.h5``) is there are left out, since the master
  reads them;
- a **glob** pattern (``runs/*.h5``, ``**`` recurses) gives the matching files, natural order;
- a **list file** (``.lst`` / ``.txt``) gives one path per line (``#`` comments and blank lines
  skipped; relative paths are relative to the list file's folder), optionally followed by a
  CrystFEL-style event ``//N`` selecting frame N of that file. Consecutive lines naming the same
  file are merged into one item.
"""

from __future__ import annotations

import glob
import os
import re
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path

from xtalscreen.errors import InputError

__all__ = ["SourceItem", "KNOWN_EXTENSIONS", "LIST_EXTENSIONS", "expand_sources", "iter_sources",
           "format_of", "natural_key"]

#: file-name endings read by :func:`xtalscreen.io.open_frames`, mapped to the reader family.
KNOWN_EXTENSIONS = {
    ".cbf.gz": "cbf", ".cbf.bz2": "cbf", ".cbf": "cbf",
    ".h5": "hdf5", ".hdf5": "hdf5", ".hdf": "hdf5", ".cxi": "hdf5", ".nxs": "hdf5", ".nx5": "hdf5",
    ".tif": "tiff", ".tiff": "tiff",
    ".png": "image", ".jpg": "image", ".jpeg": "image", ".pgm": "image", ".ppm": "image",
    ".pnm": "image", ".bmp": "image",
    ".npy": "npy", ".npz": "npz",
}
LIST_EXTENSIONS = (".lst", ".txt")
_EIGER_DATA = re.compile(r"^(?P<prefix>.+)_data_\d{6}\.(h5|hdf5|nxs)$")
_GLOB_CHARS = re.compile(r"[*?\[]")
_EVENT = re.compile(r"^(?P<path>.*?)\s+//(?P<event>\S*)\s*$")


@dataclass(frozen=True)
class SourceItem:
    """One file to read, and optionally which of its frames (None = all)."""

    path: str
    frames: tuple[int, ...] | None = None


def natural_key(s: str):
    """Sort key putting ``img_2`` before ``img_10``."""
    return [int(t) if t.isdigit() else t.lower() for t in re.split(r"(\d+)", str(s))]


def format_of(path: str) -> str | None:
    """Reader family of ``path`` from its name (``"hdf5"``, ``"cbf"`` ...), None if unknown."""
    name = os.path.basename(str(path)).lower()
    for ext, fam in KNOWN_EXTENSIONS.items():  # longest endings (.cbf.gz) come first
        if name.endswith(ext):
            return fam
    return None


def _known_list() -> str:
    return " ".join(KNOWN_EXTENSIONS)


def _walk(directory: str) -> list[str]:
    found: list[str] = []
    for root, dirs, files in os.walk(directory, followlinks=True):
        dirs[:] = [d for d in dirs if not d.startswith(".")]
        for f in files:
            if not f.startswith(".") and format_of(f) is not None:
                found.append(os.path.join(root, f))
    masters = {os.path.join(os.path.dirname(p), os.path.basename(p).lower()[: -len("_master.h5")])
               for p in found if p.lower().endswith("_master.h5")}
    kept = []
    for p in found:
        m = _EIGER_DATA.match(os.path.basename(p))
        if m and os.path.join(os.path.dirname(p), m.group("prefix").lower()) in masters:
            continue
        kept.append(p)
    return sorted(kept, key=natural_key)


def _read_list(path: str) -> list[SourceItem]:
    base = os.path.dirname(os.path.abspath(path))
    items: list[SourceItem] = []
    try:
        with open(path, encoding="utf-8", errors="replace") as fh:
            lines = fh.read().splitlines()
    except OSError as exc:
        raise InputError(f"cannot read the list file ({exc})", path=path) from None
    for n, line in enumerate(lines, start=1):
        line = line.strip()
        if not line or line.startswith("#"):
            continue
        event = None
        m = _EVENT.match(line)
        if m:
            line, ev = m.group("path"), m.group("event")
            if not ev.isdigit():
                raise InputError(f"line {n}: event '//{ev}' is not a frame number; write lines as "
                                 "'path' or 'path //N'", path=path)
            event = int(ev)
        p = line if os.path.isabs(line) else os.path.join(base, line)
        if not os.path.exists(p) and os.path.exists(line):
            p = line  # relative to the working directory, as CrystFEL reads them
        if items and items[-1].path == p and event is not None and items[-1].frames is not None:
            items[-1] = SourceItem(p, items[-1].frames + (event,))
        else:
            items.append(SourceItem(p, None if event is None else (event,)))
    return items


def _expand_one(spec: str) -> list[SourceItem]:
    if os.path.isdir(spec):
        files = _walk(spec)
        if not files:
            raise InputError(f"the directory holds no readable image files (known endings: "
                             f"{_known_list()})", path=spec)
        return [SourceItem(f) for f in files]
    if os.path.isfile(spec):
        if spec.lower().endswith(LIST_EXTENSIONS):
            items = _read_list(spec)
            if not items:
                raise InputError("the list file names no files", path=spec)
            return items
        if format_of(spec) is None:
            raise InputError(f"unknown file type; readable endings are: {_known_list()} "
                             "(and .lst/.txt list files)", path=spec)
        return [SourceItem(spec)]
    if _GLOB_CHARS.search(spec):
        matches = [m for m in glob.glob(spec, recursive=True)
                   if os.path.isfile(m) and format_of(m) is not None]
        if not matches:
            raise InputError("the pattern matches no readable image files; check the pattern "
                             "(quote it so the shell does not expand it)", path=spec)
        return [SourceItem(m) for m in sorted(matches, key=natural_key)]
    raise InputError("no such file or directory; check the path", path=spec)


def iter_sources(spec) -> Iterator[SourceItem | InputError]:
    """Expand ``spec`` (a path or a sequence of paths), yielding items or the error for a bad one."""
    specs: Iterable = [spec] if isinstance(spec, (str, os.PathLike)) else spec
    for s in specs:
        if isinstance(s, SourceItem):
            yield s
            continue
        try:
            yield from _expand_one(os.fspath(s))
        except InputError as exc:
            yield exc


def expand_sources(spec) -> list[SourceItem]:
    """All files named by ``spec``; raises :class:`InputError` on the first bad entry.

    Examples
    --------
    >>> expand_sources("/no/such/dir")  # doctest: +IGNORE_EXCEPTION_DETAIL
    Traceback (most recent call last):
    xtalscreen.errors.InputError: /no/such/dir: no such file or directory; check the path
    """
    out = []
    for item in iter_sources(spec):
        if isinstance(item, InputError):
            raise item
        out.append(item)
    return out


def is_list_file(path: str) -> bool:
    """True when ``path`` is an existing list file (``.lst`` / ``.txt``)."""
    return os.path.isfile(path) and Path(path).suffix.lower() in LIST_EXTENSIONS
