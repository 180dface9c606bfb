"""Write the images with a consensus label as a training set in the MARCO folder layout.

``out/<class>/<image id>_<file name>`` (``out/<split>/<class>/...`` with ``split``, the
DiffraNet-style tree that ``xtalscreen train`` reads), one folder per MARCO class
(crystal, precipitate, clear, other). Running it again copies only what is new; images whose
file is missing or not local are reported and skipped.

Examples
--------
>>> # rep = export_training("drops.sqlite", "agreed/", split="train"); print(rep.summary())
"""

from __future__ import annotations

import os
import shutil
from dataclasses import dataclass, field
from pathlib import Path

from sqlalchemy import select
from sqlalchemy.engine import Engine

from xtalscreen.drops import schema as S
from xtalscreen.drops.schemes import MARCO_CLASSES
from xtalscreen.errors import InputError, ParameterError


@dataclass
class ExportReport:
    """What :func:`export_training` wrote: counts per class, files skipped as present, bad ones."""

    out: str
    counts: dict[str, int] = field(default_factory=dict)
    unchanged: int = 0
    bad: list[tuple[str, str]] = field(default_factory=list)

    @property
    def written(self) -> int:
        return sum(self.counts.values())

    def summary(self) -> str:
        per = ", ".join(f"{n} {c}" for c, n in self.counts.items() if n) or "none"
        return (f"wrote {self.written} image(s) to {self.out} ({per}); {self.unchanged} already "
                f"there; {len(self.bad)} skipped")


def _local_path(uri: str) -> Path | None:
    if uri.startswith("file://"):
        uri = uri[len("file://"):]
    elif "://" in uri:
        return None
    return Path(uri)


def export_training(db, out: str | Path, *, split: str | None = None) -> ExportReport:
    """Copy every consensus-labelled image into ``out/[split/]<class>/``.

    Parameters
    ----------
    db : str, Path, URL or Engine
        The drop database.
    out : str or Path
        Output folder (created).
    split : str, optional
        Write under ``out/<split>/`` (e.g. ``train``) for ``xtalscreen train``.
    """
    from xtalscreen.drops.db import connect, db_errors, require_schema, session_scope

    if split is not None and (not split or "/" in split or split in (".", "..")):
        raise ParameterError(f"--split must be a plain folder name like 'train', got {split!r}")
    root = Path(out) / split if split else Path(out)
    try:
        for cls in MARCO_CLASSES:
            (root / cls).mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise InputError(f"cannot create the output folder: {exc.strerror or exc}", path=str(out)) from None
    own = not isinstance(db, Engine)
    engine = connect(db, must_exist=True) if own else db
    try:
        require_schema(engine)
        with db_errors(engine, "read"), session_scope(engine) as session:
            rows = session.execute(
                select(S.ConsensusLabel.image_id, S.Image.uri, S.SchemeClass.name)
                .join(S.Image, S.Image.id == S.ConsensusLabel.image_id)
                .join(S.SchemeClass, S.SchemeClass.id == S.ConsensusLabel.class_id)
                .order_by(S.ConsensusLabel.image_id)).all()
    finally:
        if own:
            engine.dispose()
    rep = ExportReport(str(root), {c: 0 for c in MARCO_CLASSES})
    for image_id, uri, cls in rows:
        src = _local_path(uri)
        if src is None:
            rep.bad.append((uri, "not a local file (download it first)"))
            continue
        if not src.is_file():
            rep.bad.append((uri, "file not found"))
            continue
        dst = root / cls / f"{image_id}_{src.name}"
        if dst.is_file() and dst.stat().st_size == src.stat().st_size:
            rep.unchanged += 1
            continue
        tmp = dst.with_name(dst.name + ".part")
        try:
            shutil.copyfile(src, tmp)
            os.replace(tmp, dst)
        except OSError as exc:
            rep.bad.append((uri, f"cannot copy: {exc.strerror or exc}"))
            continue
        rep.counts[cls] = rep.counts.get(cls, 0) + 1
    return rep


__all__ = ["ExportReport", "export_training"]
