"""Database queries behind the web pages, returning plain records for the templates.

Each page is a handful of indexed queries (no per-drop queries): the plate view of a 96-well
inspection reads the plate, its inspections, its drops, the inspection's images and their
scores, which keeps it far below 200 ms even with 10,000 plates in the database
(``benchmarks/bench_web.py``).
"""

from __future__ import annotations

import datetime as _dt
from dataclasses import dataclass, field

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from xtalscreen.drops import schema as S
from xtalscreen.drops.schema import _row_index
from xtalscreen.drops.schemes import MARCO_CLASSES, TARGET_SCHEME
from xtalscreen.web.auth import visible_plates

#: Border colour of a half that has no score yet.
UNSCORED = "#d9d9d9"


class NotFound(LookupError):
    """A plate, drop, image or inspection that does not exist or that the user may not see."""


@dataclass(frozen=True)
class ClassInfo:
    id: int
    name: str
    colour: str
    scheme: str
    marco: str | None  # the MARCO class it counts as


def class_table(session: Session) -> dict[int, ClassInfo]:
    """Every scheme class by id, with its colour and MARCO class."""
    rows = session.execute(select(S.SchemeClass.id, S.SchemeClass.name, S.SchemeClass.colour,
                                  S.ClassScheme.name, S.SchemeClass.maps_to_id, S.SchemeClass.order)
                           .join(S.ClassScheme)).all()
    names = {r[0]: r[1] for r in rows}
    out = {}
    for cid, name, colour, scheme, maps_to, _o in rows:
        marco = names.get(maps_to) if maps_to is not None else (name if scheme == TARGET_SCHEME else None)
        out[cid] = ClassInfo(cid, name, colour, scheme, marco)
    return out


@dataclass
class ScoreRec:
    kind: str
    scorer: str
    cls: ClassInfo
    at: _dt.datetime
    probabilities: dict | None = None
    model_version: str | None = None


@dataclass
class DropCell:
    """One drop in the plate view: its image and the scores that colour its border."""

    drop_id: int
    position: str
    image_id: int | None
    humans: list[ScoreRec] = field(default_factory=list)  # latest per person, oldest first
    machine: ScoreRec | None = None

    @property
    def disagree(self) -> bool:
        return (self.machine is not None and bool(self.humans)
                and self.humans[-1].cls.marco != self.machine.cls.marco)

    @property
    def border(self) -> str:
        """CSS conic-gradient: from 9 o'clock clockwise, humans over the upper half, machine below."""
        parts = []
        if self.humans:
            step = 180.0 / len(self.humans)
            for i, h in enumerate(self.humans):
                parts.append(f"{h.cls.colour} {i * step:.4g}deg {(i + 1) * step:.4g}deg")
        else:
            parts.append(f"{UNSCORED} 0deg 180deg")
        colour = self.machine.cls.colour if self.machine is not None else UNSCORED
        parts.append(f"{colour} 180deg 360deg")
        return "conic-gradient(from 270deg, " + ", ".join(parts) + ")"

    @property
    def title(self) -> str:
        bits = [f"{h.scorer}: {h.cls.name}" for h in self.humans]
        if self.machine is not None:
            p = (self.machine.probabilities or {}).get(self.machine.cls.name)
            bits.append(f"{self.machine.scorer}: {self.machine.cls.name}"
                        + (f" ({float(p):.0%})" if isinstance(p, (int, float)) else ""))
        return f"{self.position} — " + ("; ".join(bits) if bits else "not scored")

    def classes(self) -> set[str]:
        out = {h.cls.marco for h in self.humans}
        if self.machine is not None:
            out.add(self.machine.cls.marco)
        return out


def get_plate(session: Session, user: S.User, barcode: str) -> S.Plate:
    plate = session.scalars(select(S.Plate).where(S.Plate.barcode == barcode,
                                                  visible_plates(user))).first()
    if plate is None:
        raise NotFound(f"no plate with barcode {barcode!r} (or it is not shared with you)")
    return plate


def list_plates(session: Session, user: S.User, *, q: str = "", page: int = 1, per_page: int = 50):
    """(plates of this page, total count) visible to ``user``, by barcode; ``q`` filters barcodes."""
    where = [visible_plates(user)]
    if q:
        where.append(S.Plate.barcode.contains(q, autoescape=True))
    total = session.scalar(select(func.count(S.Plate.id)).where(*where))
    rows = session.scalars(select(S.Plate).where(*where).order_by(S.Plate.barcode)
                           .offset((page - 1) * per_page).limit(per_page)).all()
    return rows, total


def _scores_by_image(session: Session, image_ids: list[int], classes: dict[int, ClassInfo]):
    out: dict[int, list[ScoreRec]] = {}
    for i in range(0, len(image_ids), 900):
        rows = session.execute(
            select(S.Score.image_id, S.Score.scorer_kind, S.Score.scorer, S.Score.class_id,
                   S.Score.scored_at, S.Score.probabilities, S.Score.model_version)
            .where(S.Score.image_id.in_(image_ids[i:i + 900]))
            .order_by(S.Score.scored_at, S.Score.id)).all()
        for image_id, kind, scorer, cid, at, probs, ver in rows:
            out.setdefault(image_id, []).append(
                ScoreRec(kind.value, scorer, classes[cid], at, probs, ver))
    return out


def _summarise(cell: DropCell, scores: list[ScoreRec]) -> None:
    humans: dict[str, ScoreRec] = {}
    for s in scores:  # ascending time: later ones replace earlier ones
        if s.kind == "machine":
            cell.machine = s
        else:
            humans.pop(s.scorer, None)
            humans[s.scorer] = s
    cell.humans = list(humans.values())


@dataclass
class PlateView:
    plate: S.Plate
    inspections: list
    inspection: object | None
    rows: list[str]
    columns: list[int]
    wells: dict  # (row, column) -> list[DropCell]
    shown: int
    total: int
    legend: list[ClassInfo]


def plate_view(session: Session, user: S.User, barcode: str, *, inspection_id: int | None = None,
               cls: str | None = None, disagree: bool = False) -> PlateView:
    """The grid of one inspection of plate ``barcode`` (default: the latest inspection)."""
    plate = get_plate(session, user, barcode)
    classes = class_table(session)
    inspections = session.execute(
        select(S.Inspection.id, S.Inspection.imaged_at, S.Inspection.complete)
        .where(S.Inspection.plate_id == plate.id).order_by(S.Inspection.imaged_at)).all()
    chosen = None
    if inspection_id is not None:
        chosen = next((i for i in inspections if i.id == inspection_id), None)
        if chosen is None:
            raise NotFound(f"plate {barcode!r} has no inspection {inspection_id}")
    elif inspections:
        chosen = inspections[-1]
    drops = session.execute(
        select(S.Drop.id, S.Well.row, S.Well.column, S.Drop.number)
        .join(S.Well, S.Drop.well_id == S.Well.id).where(S.Drop.plate_id == plate.id)).all()
    image_of: dict[int, int] = {}
    if chosen is not None:
        for image_id, drop_id, kind in session.execute(
                select(S.Image.id, S.Image.drop_id, S.Image.kind)
                .where(S.Image.inspection_id == chosen.id).order_by(S.Image.id)):
            if kind == S.ImageKind.visible or drop_id not in image_of:
                image_of[drop_id] = image_id
    scores = _scores_by_image(session, list(image_of.values()), classes)
    wells: dict[tuple[str, int], list[DropCell]] = {}
    shown = 0
    for drop_id, row, col, number in sorted(drops, key=lambda d: (_row_index(d[1]), d[2], d[3])):
        cell = DropCell(drop_id, f"{row}{col}.{number}", image_of.get(drop_id))
        _summarise(cell, scores.get(cell.image_id, []))
        keep = (cls is None or cls in cell.classes()) and (not disagree or cell.disagree)
        wells.setdefault((row, col), []).append(cell if keep else None)
        shown += keep
    rows = sorted({r for r, _ in wells}, key=_row_index)
    columns = sorted({c for _, c in wells})
    used = {s.cls.id for ss in scores.values() for s in ss}
    legend = sorted((c for c in classes.values() if c.id in used or c.scheme == TARGET_SCHEME),
                    key=lambda c: (c.scheme != TARGET_SCHEME, c.scheme, c.id))
    return PlateView(plate, inspections, chosen, rows, columns, wells, shown, len(drops), legend)


@dataclass
class DropView:
    drop: S.Drop
    plate: S.Plate
    position: str
    images: list  # [(image row, inspection time, DropCell, [ScoreRec...])]
    probabilities: list  # [(ClassInfo, p)] of the latest machine score


def drop_view(session: Session, user: S.User, drop_id: int) -> DropView:
    """A drop with all its images (time course across inspections) and all their scores."""
    drop = session.get(S.Drop, drop_id)
    if drop is None:
        raise NotFound(f"no drop with id {drop_id}")
    plate = session.scalars(select(S.Plate).where(S.Plate.id == drop.plate_id, visible_plates(user))).first()
    if plate is None:
        raise NotFound(f"no drop with id {drop_id} (or it is not shared with you)")
    classes = class_table(session)
    imgs = session.execute(select(S.Image, S.Inspection.imaged_at)
                           .join(S.Inspection, S.Image.inspection_id == S.Inspection.id)
                           .where(S.Image.drop_id == drop_id)
                           .order_by(S.Inspection.imaged_at, S.Image.id)).all()
    scores = _scores_by_image(session, [im.id for im, _ in imgs], classes)
    pos = str(drop.position)
    images, latest = [], None
    for im, at in imgs:
        cell = DropCell(drop.id, pos, im.id)
        _summarise(cell, scores.get(im.id, []))
        images.append((im, at, cell, scores.get(im.id, [])))
        if cell.machine is not None:
            latest = cell.machine
    probs = []
    if latest is not None and latest.probabilities:
        by_name = {(c.scheme, c.name): c for c in classes.values()}
        for name, p in latest.probabilities.items():
            c = by_name.get((latest.cls.scheme, name))
            if c is not None and isinstance(p, (int, float)):
                probs.append((c, float(p)))
    return DropView(drop, plate, pos, images, probs)


@dataclass
class RankedRow:
    image_id: int
    drop_id: int
    barcode: str
    position: str
    imaged_at: _dt.datetime
    probability: float
    machine: str
    colour: str


def ranked(session: Session, user: S.User, *, limit: int = 100, cls: str = "crystal") -> list[RankedRow]:
    """Drops most likely to be ``cls`` first: each drop's latest machine-scored image, its latest
    machine score.

    Takes the ``k`` machine scores with the highest P(``cls``) (one top-k sort, no grouping),
    keeps those that are their image's latest machine score, and widens ``k`` until ``limit``
    drops are found or the scores run out.
    """
    classes = class_table(session)
    prob = S.Score.probabilities[cls].as_float()
    k = max(4 * limit, 64)
    while True:
        q = (select(S.Score.image_id, prob, S.Score.scored_at, S.Score.class_id)
             .where(S.Score.scorer_kind == S.ScorerKind.machine, prob.is_not(None)))
        if user.role != S.Role.admin:
            visible_images = (select(S.Image.id).join(S.Drop, S.Drop.id == S.Image.drop_id)
                              .join(S.Plate, S.Plate.id == S.Drop.plate_id).where(visible_plates(user)))
            q = q.where(S.Score.image_id.in_(visible_images))
        cands = session.execute(q.order_by(prob.desc(), S.Score.image_id).limit(k)).all()
        out = _ranked_rows(session, classes, cands, limit)
        if len(out) >= limit or len(cands) < k:
            return out
        k *= 4


def _ranked_rows(session: Session, classes, cands, limit: int) -> list[RankedRow]:
    ids = list({c[0] for c in cands})
    latest, info = {}, {}
    for i in range(0, len(ids), 900):
        chunk = ids[i:i + 900]
        latest.update(session.execute(
            select(S.Score.image_id, func.max(S.Score.scored_at))
            .where(S.Score.image_id.in_(chunk), S.Score.scorer_kind == S.ScorerKind.machine)
            .group_by(S.Score.image_id)).all())
        for row in session.execute(
                select(S.Image.id, S.Image.drop_id, S.Plate.barcode, S.Well.row, S.Well.column,
                       S.Drop.number, S.Inspection.imaged_at)
                .join(S.Inspection, S.Inspection.id == S.Image.inspection_id)
                .join(S.Drop, S.Drop.id == S.Image.drop_id)
                .join(S.Well, S.Well.id == S.Drop.well_id)
                .join(S.Plate, S.Plate.id == S.Drop.plate_id)
                .where(S.Image.id.in_(chunk))):
            info[row[0]] = row
    # The drop's current image: the one of its latest inspection that has a machine score.
    drops = list({r[1] for r in info.values()})
    current: dict[int, tuple] = {}
    scored = (select(S.Score.id).where(S.Score.image_id == S.Image.id,
                                       S.Score.scorer_kind == S.ScorerKind.machine).exists())
    for i in range(0, len(drops), 900):
        for image_id, drop_id, imaged in session.execute(
                select(S.Image.id, S.Image.drop_id, S.Inspection.imaged_at)
                .join(S.Inspection, S.Inspection.id == S.Image.inspection_id)
                .where(S.Image.drop_id.in_(drops[i:i + 900]), scored)):
            if drop_id not in current or (imaged, image_id) > current[drop_id]:
                current[drop_id] = (imaged, image_id)
    out, seen = [], set()
    for image_id, p, at, cid in cands:
        if latest.get(image_id) != at:
            continue  # an older machine score of this image
        _, drop_id, barcode, row, col, num, imaged = info[image_id]
        if drop_id in seen or current[drop_id][1] != image_id:
            continue  # an earlier inspection of this drop
        seen.add(drop_id)
        c = classes[cid]
        out.append(RankedRow(image_id, drop_id, barcode, f"{row}{col}.{num}", imaged, float(p), c.name, c.colour))
        if len(out) >= limit:
            break
    return out


@dataclass
class CinderTask:
    item_id: int
    image_id: int
    remaining: int


def cinder_next(session: Session, user: S.User, *, after: int = 0) -> CinderTask | None:
    """The next open queue item (id > ``after``, wrapping round) ``user`` has not scored yet."""
    mine = (select(S.Score.id)
            .where(S.Score.image_id == S.CinderItem.image_id,
                   S.Score.scorer_kind == S.ScorerKind.human, S.Score.scorer == user.name,
                   S.Score.scored_at >= S.CinderItem.queued_at).exists())
    base = (select(S.CinderItem.id, S.CinderItem.image_id)
            .join(S.Image, S.Image.id == S.CinderItem.image_id)
            .join(S.Drop, S.Drop.id == S.Image.drop_id)
            .join(S.Plate, S.Plate.id == S.Drop.plate_id)
            .where(S.CinderItem.done_at.is_(None), ~mine, visible_plates(user)))
    row = session.execute(base.where(S.CinderItem.id > after).order_by(S.CinderItem.id).limit(1)).first()
    if row is None:
        row = session.execute(base.order_by(S.CinderItem.id).limit(1)).first()
    if row is None:
        return None
    remaining = session.scalar(select(func.count()).select_from(base.subquery()))
    return CinderTask(row[0], row[1], remaining)


def cinder_item(session: Session, user: S.User, item_id: int) -> S.CinderItem:
    """Open queue item ``item_id`` if ``user`` may see its plate."""
    row = session.execute(
        select(S.CinderItem)
        .join(S.Image, S.Image.id == S.CinderItem.image_id)
        .join(S.Drop, S.Drop.id == S.Image.drop_id)
        .join(S.Plate, S.Plate.id == S.Drop.plate_id)
        .where(S.CinderItem.id == item_id, visible_plates(user))).scalar()
    if row is None:
        raise NotFound(f"no Cinder queue item {item_id}")
    return row


def image_for_user(session: Session, user: S.User, image_id: int) -> S.Image:
    row = session.execute(
        select(S.Image).join(S.Drop, S.Drop.id == S.Image.drop_id)
        .join(S.Plate, S.Plate.id == S.Drop.plate_id)
        .where(S.Image.id == image_id, visible_plates(user))).scalar()
    if row is None:
        raise NotFound(f"no image with id {image_id} (or it is not shared with you)")
    return row


def marco_choices(session: Session) -> list[ClassInfo]:
    """The MARCO classes in display order (the classes Cinder scores in)."""
    classes = [c for c in class_table(session).values() if c.scheme == TARGET_SCHEME]
    order = {n: i for i, n in enumerate(MARCO_CLASSES)}
    return sorted(classes, key=lambda c: order.get(c.name, len(order)))
