"""Ashes: collect the images where people and the model disagree, and queue them for Cinder.

Paper 000 section 6: every week, the images whose latest human score (as its MARCO class)
differs from the latest machine score are collected and scored again by several experts
(:mod:`xtalscreen.web`'s Cinder page) until they agree (:mod:`xtalscreen.drops.consensus`).
Optionally the ``uncertain`` images the model is least sure about (lowest top probability,
i.e. closest to a coin toss) are queued too, even without a human score.

Images already queued, or already carrying a consensus label, are not queued again.

Examples
--------
>>> from xtalscreen.drops.ashes import parse_since
>>> parse_since("7d")
datetime.timedelta(days=7)
>>> parse_since("12h")
datetime.timedelta(seconds=43200)
"""

from __future__ import annotations

import datetime as _dt
import math
import re
from dataclasses import dataclass, field

from sqlalchemy import select
from sqlalchemy.engine import Engine
from sqlalchemy.orm import Session

from xtalscreen.drops import schema as S
from xtalscreen.drops.consensus import marco_classes
from xtalscreen.errors import ParameterError

_SINCE = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*([mhdw])\s*$", re.IGNORECASE)
_UNITS = {"m": "minutes", "h": "hours", "d": "days", "w": "weeks"}
#: Images per IN (...) query.
_CHUNK = 500


def parse_since(text: str) -> _dt.timedelta:
    """``"30m"``, ``"12h"``, ``"7d"``, ``"2w"`` as a :class:`~datetime.timedelta`."""
    m = _SINCE.match(str(text))
    if m is None or float(m.group(1)) <= 0:
        raise ParameterError(f"--since must be a positive duration like 30m, 12h, 7d or 2w, got {text!r}")
    return _dt.timedelta(**{_UNITS[m.group(2).lower()]: float(m.group(1))})


@dataclass
class ImageScores:
    """The latest machine score and each person's latest score of one image (MARCO classes)."""

    image_id: int
    machine: str | None = None
    machine_at: _dt.datetime | None = None
    probabilities: dict | None = None
    human: str | None = None
    human_at: _dt.datetime | None = None

    @property
    def disagree(self) -> bool:
        return self.machine is not None and self.human is not None and self.machine != self.human

    @property
    def top_probability(self) -> float:
        """Largest class probability of the machine score (1.0 when unknown)."""
        p = [float(v) for v in (self.probabilities or {}).values() if _finite(v)]
        return max(p) if p else 1.0

    @property
    def entropy(self) -> float:
        """Shannon entropy (nats) of the machine probabilities."""
        p = [float(v) for v in (self.probabilities or {}).values() if _finite(v) and float(v) > 0]
        return -sum(x * math.log(x) for x in p)


def _finite(v) -> bool:
    try:
        return math.isfinite(float(v))
    except (TypeError, ValueError):
        return False


def latest_scores(session: Session, *, since: _dt.datetime | None = None,
                  image_ids: list[int] | None = None) -> dict[int, ImageScores]:
    """Latest human and machine score (MARCO class) of images scored at or after ``since``.

    ``image_ids`` restricts the images; by default every image with a score since ``since``.
    """
    marco = marco_classes(session)
    if image_ids is None:
        q = select(S.Score.image_id).distinct()
        if since is not None:
            q = q.where(S.Score.scored_at >= since)
        image_ids = list(session.scalars(q))
    out: dict[int, ImageScores] = {}
    for i in range(0, len(image_ids), _CHUNK):
        chunk = image_ids[i:i + _CHUNK]
        rows = session.execute(
            select(S.Score.image_id, S.Score.scorer_kind, S.Score.class_id, S.Score.scored_at,
                   S.Score.probabilities, S.Score.id)
            .where(S.Score.image_id.in_(chunk))
            .order_by(S.Score.scored_at, S.Score.id)).all()
        for image_id, kind, class_id, at, probs, _id in rows:  # ascending: the last one wins
            cls = marco.get(class_id)
            if cls is None:
                continue
            rec = out.setdefault(image_id, ImageScores(image_id))
            if kind == S.ScorerKind.machine:
                rec.machine, rec.machine_at, rec.probabilities = cls.name, at, probs
            else:
                rec.human, rec.human_at = cls.name, at
    return out


@dataclass
class AshesReport:
    """What :func:`queue_ashes` did."""

    disagreements: int = 0
    uncertain: int = 0
    already: int = 0
    considered: int = 0
    queued_ids: list[int] = field(default_factory=list)

    def summary(self) -> str:
        return (f"queued {self.disagreements} disagreement(s) and {self.uncertain} uncertain "
                f"image(s) for Cinder; {self.already} already queued or agreed; "
                f"{self.considered} scored image(s) considered")


def queue_ashes(db, *, since: _dt.timedelta | str | None = "7d", uncertain: int = 0,
                now: _dt.datetime | None = None) -> AshesReport:
    """Queue disagreements (and the ``uncertain`` least-sure machine scores) for Cinder.

    Parameters
    ----------
    db : str, Path, URL or Engine
        The drop database.
    since : timedelta, str or None
        Only images with a score (human or machine) at or after ``now - since``; None or
        ``"all"``: every scored image.
    uncertain : int
        Also queue this many images with the lowest top machine probability (ties: higher
        entropy first), among images not already queued or agreed.
    now : datetime, optional
        Reference time (naive UTC); default: now.
    """
    from xtalscreen.drops.db import connect, db_errors, require_schema, session_scope

    if isinstance(since, str):
        since = None if since.strip().lower() in ("", "all") else parse_since(since)
    if isinstance(uncertain, bool) or not isinstance(uncertain, int) or uncertain < 0:
        raise ParameterError(f"--uncertain must be a whole number >= 0, got {uncertain!r}")
    start = None if since is None else S.utc(now or S.now_utc()) - since
    own = not isinstance(db, Engine)
    engine = connect(db, must_exist=True) if own else db
    try:
        require_schema(engine)
        with db_errors(engine, "queue Ashes in"), session_scope(engine, write=True) as session:
            return _queue(session, start, uncertain)
    finally:
        if own:
            engine.dispose()


def _queue(session: Session, start, uncertain: int) -> AshesReport:
    scores = latest_scores(session, since=start)
    taken = set(session.scalars(select(S.CinderItem.image_id)))
    taken |= set(session.scalars(select(S.ConsensusLabel.image_id)))
    rep = AshesReport(considered=len(scores))
    disagree = sorted(r.image_id for r in scores.values() if r.disagree)
    new = []
    for image_id in disagree:
        if image_id in taken:
            rep.already += 1
        else:
            new.append((image_id, "disagree"))
            taken.add(image_id)
    rep.disagreements = len(new)
    if uncertain:
        cand = [r for r in scores.values() if r.machine is not None and r.image_id not in taken]
        cand.sort(key=lambda r: (r.top_probability, -r.entropy, r.image_id))
        for r in cand[:uncertain]:
            new.append((r.image_id, "uncertain"))
        rep.uncertain = min(uncertain, len(cand))
    now = S.now_utc()
    session.add_all(S.CinderItem(image_id=i, reason=why, queued_at=now) for i, why in new)
    session.flush()
    rep.queued_ids = [i for i, _ in new]
    return rep


def queue_images(session: Session, image_ids, *, reason: str = "manual") -> int:
    """Queue ``image_ids`` for Cinder (those not queued yet); return how many were added."""
    taken = set(session.scalars(select(S.CinderItem.image_id)))
    new = [i for i in dict.fromkeys(image_ids) if i not in taken]
    session.add_all(S.CinderItem(image_id=i, reason=reason) for i in new)
    session.flush()
    return len(new)


__all__ = ["parse_since", "ImageScores", "latest_scores", "AshesReport", "queue_ashes", "queue_images"]
