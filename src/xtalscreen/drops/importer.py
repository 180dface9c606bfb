"""Import plates, inspections and images (folder tree or CSV export) and human scores (CSV).

Folder tree (what :func:`xtalscreen.drops.render.render_plates` writes; imagers write similar)::

    ROOT/
      <barcode>/                      one folder per plate
        plate.json                    optional: {"plate_type", "screen", "owner"}
        <inspection time>/            UTC, ISO 8601 basic: 20261121T102500Z
          inspection.json             optional: {"imager", "complete", "um_per_pixel", "kind"}
          <row><col:02d>_<drop>[_<kind>].<jpg|jpeg|png|tif|tiff>
                                      e.g. F01_2.jpg (visible), F01_2_uv.png (UV), F01_2_shg.png

An inspection folder without ``inspection.json`` counts as complete, with no imager and unknown
µm per pixel. Image URIs of local files are stored as absolute paths.

CSV export (one row per image; header names as below, order free)::

    barcode, plate_type, screen, owner, inspection_time, imager, imaging_complete,
    well, drop, image_uri, um_per_pixel, kind

``well`` is ``F1`` (or ``F01``) and ``drop`` the drop number (or ``well`` empty and ``drop`` a full
position ``F1.2``); ``inspection_time`` is ISO 8601 (UTC unless it carries an offset);
``imaging_complete`` is true/false (empty: true); ``kind`` is visible/uv/shg (empty: visible).
A relative ``image_uri`` is relative to the CSV's folder; URLs (``http://``, ``s3://``, ...) are
stored as they are and not checked.

Human scores CSV: ``scorer, class, time`` and either ``image_uri`` or ``barcode,
inspection_time, drop`` (a position ``F1.2``; optional ``kind``), optionally ``scheme`` (default
given by the caller, ``marco``). The class is stored in its own scheme (it maps to MARCO through
the scheme's mapping).

Everything is idempotent: an image whose URI is already in the database, or a human score with
the same image, scorer and time, is counted as ``existing`` and not written again. Bad rows are
reported with their line number (or path) and the reason, skipped, and counted.
"""

from __future__ import annotations

import csv
import datetime as _dt
import json
import re
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

from sqlalchemy import exc, insert, select
from sqlalchemy.engine import Engine
from sqlalchemy.orm import Session

from xtalscreen.drops import schema as S
from xtalscreen.drops.schemes import TARGET_SCHEME, normalise_label
from xtalscreen.errors import InputError, ParameterError

IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png", ".tif", ".tiff")
CSV_COLUMNS = ("barcode", "plate_type", "screen", "owner", "inspection_time", "imager",
               "imaging_complete", "well", "drop", "image_uri", "um_per_pixel", "kind")
_REQUIRED = ("barcode", "inspection_time", "drop", "image_uri")
SCORE_COLUMNS = ("image_uri", "barcode", "inspection_time", "drop", "kind", "scorer", "class",
                 "time", "scheme")
_URL = re.compile(r"^[A-Za-z][A-Za-z0-9+.\-]*://")
_STEM = re.compile(r"^(?P<pos>[A-Za-z]{1,2}\d{1,3}[_.\-]\d{1,2})(?:[_\-](?P<kind>visible|vis|uv|shg))?$",
                   re.IGNORECASE)
_KINDS = {"": S.ImageKind.visible, "visible": S.ImageKind.visible, "vis": S.ImageKind.visible,
          "uv": S.ImageKind.uv, "shg": S.ImageKind.shg}
_TRUE = {"", "1", "true", "t", "yes", "y"}
_FALSE = {"0", "false", "f", "no", "n"}
_CHUNK = 500


@dataclass
class ImportReport:
    """Counts of what an import created, found already present, or skipped as bad.

    ``bad`` lists ``(where, reason)``: ``where`` is ``file:line`` for CSV rows, a path for files.
    """

    source: str
    plates: int = 0
    inspections: int = 0
    images: int = 0
    scores: int = 0
    existing: int = 0
    updated: int = 0
    bad: list[tuple[str, str]] = field(default_factory=list)

    @property
    def created(self) -> int:
        return self.plates + self.inspections + self.images + self.scores

    def merge(self, other: ImportReport) -> ImportReport:
        for name in ("plates", "inspections", "images", "scores", "existing", "updated"):
            setattr(self, name, getattr(self, name) + getattr(other, name))
        self.bad.extend(other.bad)
        return self

    def summary(self) -> str:
        return (f"{self.plates} plate(s), {self.inspections} inspection(s), {self.images} image(s), "
                f"{self.scores} score(s) created; {self.existing} already present; "
                f"{self.updated} updated; {len(self.bad)} bad")


@dataclass
class _ImageRow:
    where: str
    barcode: str
    time: _dt.datetime
    pos: S.DropPosition
    uri: str
    kind: S.ImageKind = S.ImageKind.visible
    um_per_pixel: float | None = None
    imager: str | None = None
    complete: bool = True
    plate_type: str | None = None
    screen: str | None = None
    owner: str | None = None


class _BadRow(Exception):
    pass


# ----------------------------------------------------------------------------- parsing helpers
def parse_time(text: str, *, name: str = "time") -> _dt.datetime:
    """Parse an ISO 8601 time (extended or basic, ``Z`` or offset allowed) to naive UTC."""
    s = str(text).strip()
    try:
        return S.utc(_dt.datetime.fromisoformat(s))
    except ValueError:
        raise _BadRow(f"{name} must be an ISO 8601 time like 2026-11-21T10:25:00Z, got {s!r}") from None


def format_time(t: _dt.datetime) -> str:
    """The folder-name form of a naive-UTC time: ``20261121T102500Z``."""
    return S.utc(t).strftime("%Y%m%dT%H%M%SZ")


def _kind(text: str) -> S.ImageKind:
    k = _KINDS.get(str(text or "").strip().lower())
    if k is None:
        raise _BadRow(f"kind must be visible, uv or shg, got {text!r}")
    return k


def _um(text) -> float | None:
    if text is None or str(text).strip() == "":
        return None
    try:
        v = float(text)
    except ValueError:
        raise _BadRow(f"um_per_pixel must be a number, got {text!r}") from None
    if not v > 0 or v == float("inf"):
        raise _BadRow(f"um_per_pixel must be > 0 µm, got {text!r}")
    return v


def _flag(text) -> bool:
    if isinstance(text, bool):
        return text
    s = str(text if text is not None else "").strip().lower()
    if s in _TRUE:
        return True
    if s in _FALSE:
        return False
    raise _BadRow(f"imaging_complete must be true or false, got {text!r}")


def _position(well: str, drop: str) -> S.DropPosition:
    try:
        if str(well or "").strip():
            return S.DropPosition.parse(well, drop)
        return S.DropPosition.parse(drop)
    except ParameterError as exc:
        raise _BadRow(f"unknown drop position (well {well!r}, drop {drop!r}): {exc}") from None


def _local_uri(uri: str, base: Path, check_files: bool) -> str:
    """Absolute path for a local URI (relative to ``base``); URLs are returned unchanged."""
    uri = uri.strip()
    if uri.startswith("file://"):
        uri = uri[len("file://"):]
    elif _URL.match(uri):
        return uri
    path = Path(uri).expanduser()
    if not path.is_absolute():
        path = base / path
    path = path.resolve()
    if check_files and not path.is_file():
        raise _BadRow(f"missing image file {path}")
    return str(path)


def _clean(v) -> str | None:
    v = (v or "").strip()
    return v or None


def _open_csv(path: Path, required: Iterable[str], what: str) -> tuple[csv.DictReader, object]:
    if not path.is_file():
        raise InputError("no such file" if not path.exists() else "not a file", path=str(path))
    fh = path.open(newline="", encoding="utf-8-sig")
    reader = csv.DictReader(fh)
    header = [h.strip().lower() for h in (reader.fieldnames or [])]
    if not header:
        fh.close()
        raise InputError(f"empty {what} CSV (no header line)", path=str(path))
    reader.fieldnames = header
    missing = [c for c in required if c not in header]
    if missing:
        fh.close()
        raise InputError(f"{what} CSV lacks column(s) {', '.join(missing)}; header is "
                         f"{', '.join(header)}", path=str(path))
    return reader, fh


# ----------------------------------------------------------------------------- readers
def read_image_csv(path: str | Path, *, check_files: bool = True,
                   bad: list | None = None) -> Iterator[_ImageRow]:
    """Yield the image rows of an imager CSV export; bad rows go to ``bad`` as (where, reason)."""
    path = Path(path)
    bad = [] if bad is None else bad
    reader, fh = _open_csv(path, _REQUIRED, "image")
    base = path.resolve().parent
    with fh:
        for rec in reader:
            where = f"{path}:{reader.line_num}"
            try:
                if None in rec:
                    raise _BadRow(f"{len(rec[None])} more field(s) than the header has")
                barcode = _clean(rec.get("barcode"))
                if not barcode:
                    raise _BadRow("empty barcode")
                uri = _clean(rec.get("image_uri"))
                if not uri:
                    raise _BadRow("empty image_uri")
                yield _ImageRow(
                    where=where, barcode=barcode,
                    time=parse_time(rec.get("inspection_time") or "", name="inspection_time"),
                    pos=_position(rec.get("well") or "", rec.get("drop") or ""),
                    uri=_local_uri(uri, base, check_files), kind=_kind(rec.get("kind")),
                    um_per_pixel=_um(rec.get("um_per_pixel")), imager=_clean(rec.get("imager")),
                    complete=_flag(rec.get("imaging_complete")),
                    plate_type=_clean(rec.get("plate_type")), screen=_clean(rec.get("screen")),
                    owner=_clean(rec.get("owner")))
            except _BadRow as exc:
                bad.append((where, str(exc)))


def _read_json(path: Path, bad: list) -> dict:
    if not path.is_file():
        return {}
    try:
        doc = json.loads(path.read_text("utf-8"))
        if not isinstance(doc, dict):
            raise ValueError("expected a JSON object")
        return doc
    except (ValueError, OSError) as exc:
        bad.append((str(path), f"ignored: not a valid JSON object ({exc})"))
        return {}


def read_image_tree(root: str | Path, *, bad: list | None = None) -> Iterator[_ImageRow]:
    """Yield the image rows of an imager-style folder tree (layout in the module docstring)."""
    root = Path(root).resolve()
    bad = [] if bad is None else bad
    for plate_dir in sorted(p for p in root.iterdir() if p.is_dir() and not p.name.startswith(".")):
        pmeta = _read_json(plate_dir / "plate.json", bad)
        for insp_dir in sorted(p for p in plate_dir.iterdir() if p.is_dir() and not p.name.startswith(".")):
            try:
                t = parse_time(insp_dir.name, name="inspection folder name")
            except _BadRow as exc:
                bad.append((str(insp_dir), str(exc)))
                continue
            imeta = _read_json(insp_dir / "inspection.json", bad)
            try:
                complete = _flag(imeta.get("complete", True))
                um = _um(imeta.get("um_per_pixel"))
                default_kind = _kind(imeta.get("kind", ""))
            except _BadRow as exc:
                bad.append((str(insp_dir / "inspection.json"), str(exc)))
                continue
            for f in sorted(insp_dir.iterdir()):
                if not f.is_file() or f.suffix.lower() not in IMAGE_SUFFIXES:
                    continue
                m = _STEM.match(f.stem)
                try:
                    if m is None:
                        raise _BadRow("file name is not a drop position like F01_2.jpg "
                                      "(row, column, _, drop number[, _uv|_shg])")
                    pos = _position("", m.group("pos"))
                    kind = _kind(m.group("kind")) if m.group("kind") else default_kind
                except _BadRow as exc:
                    bad.append((str(f), str(exc)))
                    continue
                yield _ImageRow(where=str(f), barcode=plate_dir.name, time=t, pos=pos, uri=str(f),
                                kind=kind, um_per_pixel=um, imager=_clean(imeta.get("imager")),
                                complete=complete, plate_type=_clean(pmeta.get("plate_type")),
                                screen=_clean(pmeta.get("screen")), owner=_clean(pmeta.get("owner")))


# ----------------------------------------------------------------------------- writers
def _chunks(items: list, n: int = _CHUNK) -> Iterator[list]:
    for i in range(0, len(items), n):
        yield items[i:i + n]


def _insert_ids(session: Session, model, params: list[dict]) -> list[int]:
    """Bulk INSERT of ``params`` (one executemany), returning the new ids in parameter order."""
    if not params:
        return []
    out: list[int] = []
    for chunk in _chunks(params, 2000):
        stmt = insert(model).returning(model.id, sort_by_parameter_order=True)
        out.extend(session.scalars(stmt, chunk).all())
    return out


def _existing(session: Session, barcodes: list[str]):
    """What the database already holds for the plates ``barcodes``, keyed by natural keys."""
    plates: dict[str, S.Plate] = {}
    for chunk in _chunks(barcodes):
        plates.update({p.barcode: p for p in session.scalars(select(S.Plate).where(S.Plate.barcode.in_(chunk)))})
    by_id = {p.id: p.barcode for p in plates.values()}
    wells: dict[tuple, int] = {}
    drops: dict[tuple, int] = {}
    insps: dict[tuple, S.Inspection] = {}
    taken: set[tuple] = set()  # (barcode, time, position, kind) already holding an image
    for chunk in _chunks(list(by_id)):
        for wid, pid, row, col in session.execute(
                select(S.Well.id, S.Well.plate_id, S.Well.row, S.Well.column).where(S.Well.plate_id.in_(chunk))):
            wells[(by_id[pid], row, col)] = wid
        for did, pid, row, col, num in session.execute(
                select(S.Drop.id, S.Drop.plate_id, S.Well.row, S.Well.column, S.Drop.number)
                .join(S.Well, S.Drop.well_id == S.Well.id).where(S.Drop.plate_id.in_(chunk))):
            drops[(by_id[pid], row, col, num)] = did
        for i in session.scalars(select(S.Inspection).where(S.Inspection.plate_id.in_(chunk))):
            insps[(by_id[i.plate_id], i.imaged_at)] = i
        q = (select(S.Inspection.plate_id, S.Inspection.imaged_at, S.Well.row, S.Well.column,
                    S.Drop.number, S.Image.kind)
             .join(S.Inspection, S.Image.inspection_id == S.Inspection.id)
             .join(S.Drop, S.Image.drop_id == S.Drop.id).join(S.Well, S.Drop.well_id == S.Well.id)
             .where(S.Inspection.plate_id.in_(chunk)))
        for pid, t, row, col, num, kind in session.execute(q):
            taken.add((by_id[pid], t, S.DropPosition(row, col, num), S.ImageKind(kind)))
    return plates, wells, drops, insps, taken


def _store_images(session: Session, rows: list[_ImageRow], report: ImportReport) -> None:
    """Get-or-create plates, wells, drops, inspections and images for ``rows``.

    Plans first (what is new, keyed by barcode / position / time), then inserts level by level
    with one bulk INSERT ... RETURNING each, so an import costs a handful of statements.
    """
    plates, wells, drops, insps, taken = _existing(session, sorted({r.barcode for r in rows}))
    existing_uris: set[str] = set()
    for chunk in _chunks(sorted({r.uri for r in rows})):
        existing_uris.update(session.scalars(select(S.Image.uri).where(S.Image.uri.in_(chunk))))
    new_plates: dict[str, dict] = {}
    new_wells: dict[tuple, dict] = {}
    new_drops: dict[tuple, dict] = {}
    new_insps: dict[tuple, dict] = {}
    new_images: list[tuple] = []
    for r in rows:
        insp = insps.get((r.barcode, r.time))
        if insp is not None and r.complete and not insp.complete:
            insp.complete = True  # the imager has finished since the last import
            report.updated += 1
        if r.uri in existing_uris:
            report.existing += 1
            continue
        key = (r.barcode, r.time, r.pos, r.kind)
        if key in taken:
            report.bad.append((r.where, f"plate {r.barcode} drop {r.pos} already has a {r.kind.value} "
                                        f"image in the inspection of {r.time.isoformat()}Z "
                                        f"(under another URI); not imported: {r.uri}"))
            continue
        plate = plates.get(r.barcode)
        if plate is not None:
            for attr in ("plate_type", "screen", "owner"):
                if getattr(plate, attr) is None and getattr(r, attr) is not None:
                    setattr(plate, attr, getattr(r, attr))
        elif r.barcode not in new_plates:
            new_plates[r.barcode] = {"barcode": r.barcode, "plate_type": r.plate_type,
                                     "screen": r.screen, "owner": r.owner, "created_at": S.now_utc()}
        wkey = (r.barcode, r.pos.row, r.pos.column)
        if wkey not in wells and wkey not in new_wells:
            new_wells[wkey] = {"row": r.pos.row, "column": r.pos.column}
        dkey = wkey + (r.pos.drop,)
        if dkey not in drops and dkey not in new_drops:
            new_drops[dkey] = {"number": r.pos.drop}
        ikey = (r.barcode, r.time)
        if insp is None and ikey not in new_insps:
            new_insps[ikey] = {"imaged_at": r.time, "imager": r.imager, "complete": r.complete}
        new_images.append((dkey, ikey, r))
        taken.add(key)
        existing_uris.add(r.uri)
    # Insert level by level; each level's ids feed the foreign keys of the next.
    plate_ids = {b: p.id for b, p in plates.items()}
    plate_ids.update(zip(new_plates, _insert_ids(session, S.Plate, list(new_plates.values()))))
    for (b, _, _), p in new_wells.items():
        p["plate_id"] = plate_ids[b]
    wells.update(zip(new_wells, _insert_ids(session, S.Well, list(new_wells.values()))))
    for dkey, p in new_drops.items():
        p["well_id"], p["plate_id"] = wells[dkey[:3]], plate_ids[dkey[0]]
    drops.update(zip(new_drops, _insert_ids(session, S.Drop, list(new_drops.values()))))
    for (b, _), p in new_insps.items():
        p["plate_id"] = plate_ids[b]
    insp_ids = {k: i.id for k, i in insps.items()}
    insp_ids.update(zip(new_insps, _insert_ids(session, S.Inspection, list(new_insps.values()))))
    _insert_ids(session, S.Image, [{"drop_id": drops[dkey], "inspection_id": insp_ids[ikey],
                                    "uri": r.uri, "um_per_pixel": r.um_per_pixel, "kind": r.kind}
                                   for dkey, ikey, r in new_images])
    report.plates += len(new_plates)
    report.inspections += len(new_insps)
    report.images += len(new_images)
    session.flush()


def _image_rows(source: Path, *, check_files: bool, bad: list) -> list[_ImageRow]:
    if not source.exists():
        raise InputError("no such file or folder; give an imager folder tree or a CSV export",
                         path=str(source))
    if source.is_dir():
        n_bad = len(bad)
        rows = list(read_image_tree(source, bad=bad))
        if not rows and len(bad) == n_bad:
            raise InputError("no drop images found; expected <barcode>/<YYYYMMDDTHHMMSSZ>/"
                             "<row><col>_<drop>.jpg below this folder (give the folder that holds "
                             "the plate folders)", path=str(source))
        return rows
    return list(read_image_csv(source, check_files=check_files, bad=bad))


def import_images(session: Session, source: str | Path, *, check_files: bool = True) -> ImportReport:
    """Import plates, inspections and images from a folder tree or a CSV export into ``session``.

    Parameters
    ----------
    session : Session
        An open session; the caller commits (see :func:`import_source` for the one-call form).
    source : str or Path
        A folder (imager-style tree) or a ``.csv`` file (columns in the module docstring).
    check_files : bool
        For CSV imports, report rows whose local image file does not exist as bad.

    Returns
    -------
    ImportReport
    """
    source = Path(source)
    report = ImportReport(str(source))
    rows = _image_rows(source, check_files=check_files, bad=report.bad)
    _store_images(session, rows, report)
    return report


def import_scores(session: Session, path: str | Path, *, scheme: str = TARGET_SCHEME) -> ImportReport:
    """Import human scores from CSV (columns in the module docstring) into ``session``."""
    from xtalscreen.drops.db import scheme_classes

    path = Path(path)
    report = ImportReport(str(path))
    reader, fh = _open_csv(path, ("scorer", "class", "time"), "scores")
    header = set(reader.fieldnames)
    if "image_uri" not in header and not {"barcode", "inspection_time", "drop"} <= header:
        fh.close()
        raise InputError("scores CSV needs an image_uri column or barcode, inspection_time and "
                         "drop columns", path=str(path))
    classes: dict[str, dict] = {}
    base = path.resolve().parent
    rows = []
    with fh:
        for rec in reader:
            where = f"{path}:{reader.line_num}"
            try:
                scorer = _clean(rec.get("scorer"))
                if not scorer:
                    raise _BadRow("empty scorer")
                sname = _clean(rec.get("scheme")) or scheme
                if sname not in classes:
                    try:
                        classes[sname] = scheme_classes(session, sname)
                    except ParameterError as exc:
                        raise _BadRow(str(exc)) from None
                label = normalise_label(rec.get("class") or "")
                cls = classes[sname].get(label)
                if cls is None:
                    raise _BadRow(f"unknown class {rec.get('class')!r} in scheme {sname!r}; its "
                                  f"classes are: {', '.join(c.name for c in classes[sname].values())}")
                t = parse_time(rec.get("time") or "", name="time")
                uri = _clean(rec.get("image_uri"))
                if uri:
                    key = ("uri", _local_uri(uri, base, check_files=False))
                else:
                    barcode = _clean(rec.get("barcode"))
                    if not barcode:
                        raise _BadRow("needs image_uri or barcode, inspection_time and drop")
                    key = ("pos", barcode, parse_time(rec.get("inspection_time") or "",
                                                       name="inspection_time"),
                           _position("", rec.get("drop") or ""), _kind(rec.get("kind")))
                rows.append((where, key, scorer, cls, t))
            except _BadRow as exc:
                report.bad.append((where, str(exc)))
    # Resolve images: URIs in bulk, positions one query each.
    image_ids: dict[tuple, int] = {}
    uris = sorted({k[1] for _, k, *_ in rows if k[0] == "uri"})
    for chunk in _chunks(uris):
        for iid, uri in session.execute(select(S.Image.id, S.Image.uri).where(S.Image.uri.in_(chunk))):
            image_ids[("uri", uri)] = iid
    for _, key, *_ in rows:
        if key[0] == "pos" and key not in image_ids:
            _, barcode, t, pos, kind = key
            q = (select(S.Image.id).join(S.Inspection, S.Image.inspection_id == S.Inspection.id)
                 .join(S.Plate, S.Inspection.plate_id == S.Plate.id)
                 .join(S.Drop, S.Image.drop_id == S.Drop.id).join(S.Well, S.Drop.well_id == S.Well.id)
                 .where(S.Plate.barcode == barcode, S.Inspection.imaged_at == t, S.Well.row == pos.row,
                        S.Well.column == pos.column, S.Drop.number == pos.drop, S.Image.kind == kind))
            iid = session.scalar(q)
            if iid is not None:
                image_ids[key] = iid
    scorers = sorted({r[2] for r in rows})
    done: set[tuple] = set()
    for chunk in _chunks(scorers):
        q = select(S.Score.image_id, S.Score.scorer, S.Score.scored_at).where(
            S.Score.scorer_kind == S.ScorerKind.human, S.Score.scorer.in_(chunk))
        done.update(tuple(r) for r in session.execute(q))
    for where, key, scorer, cls, t in rows:
        iid = image_ids.get(key)
        if iid is None:
            what = f"URI {key[1]}" if key[0] == "uri" else f"plate {key[1]} inspection {key[2].isoformat()}Z drop {key[3]} ({key[4].value})"
            report.bad.append((where, f"no image in the database for {what}; import the images first"))
            continue
        if (iid, scorer, t) in done:
            report.existing += 1
            continue
        session.add(S.Score(image_id=iid, scorer_kind=S.ScorerKind.human, scorer=scorer,
                            class_id=cls.id, scored_at=t))
        done.add((iid, scorer, t))
        report.scores += 1
    session.flush()
    return report


def import_source(db, source: str | Path | None = None, *, scores: str | Path | None = None,
                  scheme: str = TARGET_SCHEME, check_files: bool = True) -> ImportReport:
    """Import images from ``source`` and/or human scores from ``scores`` in one transaction.

    Parameters
    ----------
    db : str, Path, URL or Engine
        The database (must have been created with :func:`xtalscreen.drops.db.init_db`).
    source : str or Path, optional
        Folder tree or CSV export of plates/inspections/images.
    scores : str or Path, optional
        CSV of human scores.
    scheme : str
        Class scheme of the score labels when the CSV has no ``scheme`` column.

    Either everything is written or, on a database error, nothing.
    """
    from xtalscreen.drops.db import connect, db_errors, require_schema, session_scope

    if source is None and scores is None:
        raise ParameterError("give a SOURCE (folder or CSV) and/or --scores FILE to import")
    own = not isinstance(db, Engine)
    engine = connect(db, must_exist=True) if own else db
    try:
        require_schema(engine)
        report = ImportReport(str(source if source is not None else scores))
        try:
            with db_errors(engine, "write to"), session_scope(engine, write=True) as session:
                if source is not None:
                    report.merge(import_images(session, source, check_files=check_files))
                if scores is not None:
                    report.merge(import_scores(session, scores, scheme=scheme))
        except exc.IntegrityError as e:  # another writer got there first; nothing was written
            reason = str(getattr(e, "orig", e)).strip().splitlines()[0]
            raise InputError(f"conflicting write ({reason}); nothing was imported, run the import "
                             f"again", path=str(source if source is not None else scores)) from e
        return report
    finally:
        if own:
            engine.dispose()


__all__ = ["ImportReport", "import_images", "import_scores", "import_source", "read_image_csv",
           "read_image_tree", "parse_time", "format_time", "CSV_COLUMNS", "IMAGE_SUFFIXES"]
