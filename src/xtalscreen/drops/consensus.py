"""Consensus labels from several human scorers (Cinder, paper 000 section 6).

Rule: an image gets a consensus label when at least ``min_scorers`` different people have scored
it and at least ``min_agreement`` (a fraction, 0-1) of them put it in the same MARCO class.
Each person counts once, with their latest score; scores in other schemes count as the MARCO class
they map to. A tie for the top class is never a consensus (possible only with
``min_agreement <= 0.5``). The rule is stored in the database (table ``consensus_rule``; the
newest row is in force, :data:`DEFAULT_RULE` until an admin sets one).

Examples
--------
>>> from xtalscreen.drops.consensus import Rule, decide
>>> decide({"ann": "crystal", "bob": "crystal", "cy": "clear"}, Rule(3, 0.6))
Decision(label='crystal', n_scorers=3, agreement=0.6666666666666666)
>>> decide({"ann": "crystal", "bob": "clear"}, Rule(3, 0.6)).label is None
True
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Mapping
from dataclasses import dataclass

from sqlalchemy import delete, select
from sqlalchemy.orm import Session

from xtalscreen.drops import schema as S
from xtalscreen.drops.schemes import TARGET_SCHEME
from xtalscreen.errors import ParameterError

#: Agreement is compared to 0.01 percentage point, so 2 of 3 meets "66.67 %".
_EPS = 1e-4


@dataclass(frozen=True)
class Rule:
    """``min_scorers`` people (>= 1) and ``min_agreement`` (fraction in (0, 1]) on one class."""

    min_scorers: int
    min_agreement: float

    def __post_init__(self):
        check_rule(self.min_scorers, self.min_agreement)

    def __str__(self) -> str:
        return f"at least {self.min_scorers} scorer(s) and {100 * self.min_agreement:g} % agreement"


@dataclass(frozen=True)
class Decision:
    """Outcome of :func:`decide`: the label (None: no consensus), people counted, top fraction."""

    label: str | None
    n_scorers: int
    agreement: float


def check_rule(min_scorers, min_agreement) -> tuple[int, float]:
    """Validate a rule; raise :class:`ParameterError` naming the bad value."""
    try:
        n = int(min_scorers)
    except (TypeError, ValueError):
        raise ParameterError(f"min_scorers must be a whole number >= 1, got {min_scorers!r}") from None
    if n != min_scorers and not (isinstance(min_scorers, str) and str(n) == min_scorers.strip()):
        raise ParameterError(f"min_scorers must be a whole number >= 1, got {min_scorers!r}")
    if n < 1:
        raise ParameterError(f"min_scorers must be >= 1, got {min_scorers!r}")
    try:
        x = float(min_agreement)
    except (TypeError, ValueError):
        raise ParameterError(f"min_agreement must be a fraction in (0, 1], got {min_agreement!r}") from None
    if not 0 < x <= 1:
        raise ParameterError(f"min_agreement must be a fraction in (0, 1] (e.g. 0.75 for 75 %), "
                             f"got {min_agreement!r}")
    return n, x


#: The rule in force until an admin sets one: 3 people, two thirds agreeing.
DEFAULT_RULE = Rule(3, 2 / 3)


def decide(votes: Mapping[str, str], rule: Rule | None = None) -> Decision:
    """Apply ``rule`` (default :data:`DEFAULT_RULE`) to ``votes`` (scorer -> MARCO class, one each)."""
    rule = DEFAULT_RULE if rule is None else rule
    n = len(votes)
    if n == 0:
        return Decision(None, 0, 0.0)
    counts = Counter(votes.values()).most_common()
    top, k = counts[0]
    agreement = k / n
    tie = len(counts) > 1 and counts[1][1] == k
    ok = n >= rule.min_scorers and agreement + _EPS >= rule.min_agreement and not tie
    return Decision(top if ok else None, n, agreement)


# ----------------------------------------------------------------------------- database
def current_rule(session: Session) -> tuple[Rule, int | None]:
    """The rule in force and its row id (None for :data:`DEFAULT_RULE`)."""
    row = session.scalars(select(S.ConsensusRule).order_by(S.ConsensusRule.id.desc()).limit(1)).first()
    if row is None:
        return DEFAULT_RULE, None
    return Rule(row.min_scorers, row.min_agreement), row.id


def set_rule(session: Session, *, min_scorers, min_agreement, by: str | None = None) -> S.ConsensusRule:
    """Store a new rule (validated) and re-evaluate every queued or labelled image under it."""
    n, x = check_rule(min_scorers, min_agreement)
    row = S.ConsensusRule(min_scorers=n, min_agreement=x, created_by=by)
    session.add(row)
    session.flush()
    image_ids = set(session.scalars(select(S.CinderItem.image_id)))
    image_ids |= set(session.scalars(select(S.ConsensusLabel.image_id)))
    for image_id in sorted(image_ids):
        update_consensus(session, image_id)
    return row


def marco_classes(session: Session) -> dict[int, S.SchemeClass]:
    """Every scheme class id -> the MARCO :class:`SchemeClass` it counts as."""
    rows = session.scalars(select(S.SchemeClass).join(S.ClassScheme)).all()
    by_id = {r.id: r for r in rows}
    out = {}
    for r in rows:
        if r.maps_to_id is not None:
            out[r.id] = by_id[r.maps_to_id]
        elif r.scheme.name == TARGET_SCHEME:
            out[r.id] = r
    return out


def human_votes(session: Session, image_id: int, *, marco: dict[int, S.SchemeClass] | None = None
                ) -> dict[str, str]:
    """Each human scorer's latest score of ``image_id`` as a MARCO class name."""
    marco = marco_classes(session) if marco is None else marco
    rows = session.execute(
        select(S.Score.scorer, S.Score.class_id, S.Score.scored_at, S.Score.id)
        .where(S.Score.image_id == image_id, S.Score.scorer_kind == S.ScorerKind.human)
        .order_by(S.Score.scored_at, S.Score.id)).all()
    votes = {}
    for scorer, class_id, _t, _id in rows:  # later rows overwrite earlier ones
        if class_id in marco:
            votes[scorer] = marco[class_id].name
    return votes


def update_consensus(session: Session, image_id: int, *, rule: Rule | None = None,
                     marco: dict[int, S.SchemeClass] | None = None) -> S.ConsensusLabel | None:
    """Re-evaluate ``image_id``: write, change or remove its consensus label; close its queue item.

    Returns the label row, or None when the image has no consensus under the rule.
    """
    rule_id = None
    if rule is None:
        rule, rule_id = current_rule(session)
    marco = marco_classes(session) if marco is None else marco
    d = decide(human_votes(session, image_id, marco=marco), rule)
    label = session.scalars(select(S.ConsensusLabel).where(S.ConsensusLabel.image_id == image_id)).first()
    item = session.scalars(select(S.CinderItem).where(S.CinderItem.image_id == image_id)).first()
    if d.label is None:
        if label is not None:
            session.execute(delete(S.ConsensusLabel).where(S.ConsensusLabel.id == label.id))
        if item is not None:
            item.done_at = None
        session.flush()
        return None
    cls = next(c for c in marco.values() if c.name == d.label)
    if label is None:
        label = S.ConsensusLabel(image_id=image_id)
        session.add(label)
    label.class_id, label.n_scorers, label.agreement, label.rule_id = cls.id, d.n_scorers, d.agreement, rule_id
    label.labelled_at = S.now_utc()
    if item is not None and item.done_at is None:
        item.done_at = S.now_utc()
    session.flush()
    return label


__all__ = ["Rule", "Decision", "DEFAULT_RULE", "check_rule", "decide", "current_rule", "set_rule",
           "marco_classes", "human_votes", "update_consensus"]
