"""Consensus labels: several people's scores give a label exactly when the rule says so."""

from __future__ import annotations

import datetime as dt

import pytest
from sqlalchemy import select

from xtalscreen.drops import schema as S
from xtalscreen.drops.consensus import (DEFAULT_RULE, Rule, check_rule, current_rule, decide,
                                        human_votes, set_rule, update_consensus)
from xtalscreen.drops.db import scheme_classes, session_scope
from xtalscreen.drops.schemes import normalise_label
from xtalscreen.errors import ParameterError

T0 = dt.datetime(2026, 3, 1, 8, 0, 0)


@pytest.mark.parametrize("votes, rule, label", [
    ({}, Rule(1, 0.5), None),
    ({"a": "crystal"}, Rule(1, 1.0), "crystal"),
    ({"a": "crystal"}, Rule(2, 0.5), None),                                   # too few people
    ({"a": "crystal", "b": "crystal", "c": "clear"}, Rule(3, 2 / 3), "crystal"),
    ({"a": "crystal", "b": "crystal", "c": "clear"}, Rule(3, 0.6667), "crystal"),  # 66.67 % typed
    ({"a": "crystal", "b": "crystal", "c": "clear"}, Rule(3, 0.75), None),    # 67 % < 75 %
    ({"a": "crystal", "b": "crystal", "c": "clear"}, Rule(4, 0.5), None),
    ({"a": "crystal", "b": "clear"}, Rule(2, 0.5), None),                     # a tie is no consensus
    ({"a": "crystal", "b": "crystal", "c": "crystal", "d": "other"}, Rule(4, 0.75), "crystal"),
    ({"a": "other", "b": "clear", "c": "precipitate", "d": "crystal"}, Rule(1, 0.25), None),
])
def test_decide(votes, rule, label):
    d = decide(votes, rule)
    assert d.label == label
    assert d.n_scorers == len(votes)
    if votes:
        assert 0 < d.agreement <= 1


@pytest.mark.parametrize("n, x", [(0, 0.5), (-1, 0.5), (2.5, 0.5), ("two", 0.5), (2, 0),
                                  (2, 1.5), (2, "most"), (2, -0.1)])
def test_bad_rules_are_refused(n, x):
    with pytest.raises(ParameterError, match="min_scorers|min_agreement"):
        check_rule(n, x)


def test_rule_text():
    assert str(Rule(3, 0.75)) == "at least 3 scorer(s) and 75 % agreement"
    assert DEFAULT_RULE == Rule(3, 2 / 3)


def _image(s) -> int:
    plate = S.Plate(barcode="C1", owner="ann")
    well = S.Well(plate=plate, row="A", column=1)
    drop = S.Drop(well=well, plate=plate, number=1)
    insp = S.Inspection(plate=plate, imaged_at=T0, complete=True)
    img = S.Image(drop=drop, inspection=insp, uri="/x/C1/A01_1.jpg")
    s.add_all([plate, well, drop, insp, img])
    s.flush()
    s.add(S.CinderItem(image_id=img.id, reason="disagree", queued_at=T0))
    s.flush()
    return img.id


def _score(s, image_id, who, cls, minutes, scheme="marco"):
    c = scheme_classes(s, scheme)[normalise_label(cls)]
    s.add(S.Score(image_id=image_id, scorer_kind=S.ScorerKind.human, scorer=who, class_id=c.id,
                  scored_at=T0 + dt.timedelta(minutes=minutes)))
    s.flush()


@pytest.mark.parametrize("rule, votes, label", [
    ((2, 1.0), [("ann", "crystal"), ("bob", "crystal")], "crystal"),
    ((2, 1.0), [("ann", "crystal"), ("bob", "clear")], None),
    ((3, 0.6), [("ann", "crystal"), ("bob", "crystal")], None),
    ((3, 0.6), [("ann", "crystal"), ("bob", "crystal"), ("cy", "other")], "crystal"),
    # one person counts once, with the latest score: ann changes her mind
    ((2, 1.0), [("ann", "clear"), ("bob", "crystal"), ("ann", "crystal")], "crystal"),
    ((2, 1.0), [("ann", "crystal"), ("ann", "crystal")], None),
])
def test_label_exactly_when_the_rule_says_so(engine, rule, votes, label):
    with session_scope(engine, write=True) as s:
        set_rule(s, min_scorers=rule[0], min_agreement=rule[1], by="admin")
        image = _image(s)
        for i, (who, cls) in enumerate(votes):
            _score(s, image, who, cls, i + 1)
            got = update_consensus(s, image)
        row = s.scalars(select(S.ConsensusLabel).where(S.ConsensusLabel.image_id == image)).first()
        item = s.scalars(select(S.CinderItem).where(S.CinderItem.image_id == image)).one()
        if label is None:
            assert got is None and row is None and item.done_at is None
        else:
            assert row is not None and row.scheme_class.name == label
            assert row.n_scorers == len({w for w, _ in votes}) and item.done_at is not None
            assert row.rule_id == current_rule(s)[1]


def test_other_schemes_count_as_their_marco_class(engine):
    with session_scope(engine, write=True) as s:
        set_rule(s, min_scorers=2, min_agreement=1.0)
        image = _image(s)
        _score(s, image, "ann", "Crystals high", 1, scheme="one_year")
        _score(s, image, "bob", "crystal", 2)
        assert human_votes(s, image) == {"ann": "crystal", "bob": "crystal"}
        assert update_consensus(s, image).scheme_class.name == "crystal"


def test_changing_the_rule_re_evaluates_labels(engine):
    with session_scope(engine, write=True) as s:
        assert current_rule(s) == (DEFAULT_RULE, None)
        set_rule(s, min_scorers=2, min_agreement=0.5)
        image = _image(s)
        for i, (who, cls) in enumerate([("ann", "crystal"), ("bob", "crystal"), ("cy", "clear")]):
            _score(s, image, who, cls, i)
        assert update_consensus(s, image) is not None
        set_rule(s, min_scorers=3, min_agreement=0.9)  # stricter: the label goes
        assert s.scalars(select(S.ConsensusLabel)).first() is None
        assert s.scalars(select(S.CinderItem)).one().done_at is None
        set_rule(s, min_scorers=3, min_agreement=0.6)  # looser again: it comes back
        assert s.scalars(select(S.ConsensusLabel)).one().agreement == pytest.approx(2 / 3)
