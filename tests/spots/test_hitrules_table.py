"""Hit rules and the spot table."""

from __future__ import annotations

import io

import numpy as np
import pytest

from xtalscreen.errors import ParameterError
from xtalscreen.spots import KeBands, LiLabeller, SpotCountRule, SpotTable, make_rule
from xtalscreen.spots.table import FIELDS


def test_spot_count_rule_with_upper_bound():
    r = SpotCountRule(min_spots=10, max_spots=300)
    assert [r.decide(n) for n in (0, 9, 10, 300, 301)] == ["miss", "miss", "hit", "hit", "miss"]
    assert SpotCountRule().decide(10**6) == "hit"


def test_ke_bands_and_li_labeller():
    k = KeBands(maybe_min=3, hit_min=15)
    assert [k.decide(n) for n in (0, 2, 3, 14, 15)] == ["miss", "miss", "maybe", "maybe", "hit"]
    assert KeBands(max_spots=100).decide(101) == "miss"
    li = LiLabeller()  # < 2 miss, > 10 hit, in between dropped
    assert [li.decide(n) for n in (0, 1, 2, 10, 11)] == ["miss", "miss", None, None, "hit"]


def test_rules_validate_their_arguments():
    with pytest.raises(ParameterError, match="max_spots"):
        SpotCountRule(min_spots=10, max_spots=5)
    with pytest.raises(ParameterError, match="hit_min"):
        KeBands(maybe_min=10, hit_min=5)
    with pytest.raises(ParameterError, match="n_spots"):
        SpotCountRule().decide(-1)
    with pytest.raises(ParameterError, match="unknown hit rule"):
        make_rule("magic")
    with pytest.raises(ParameterError, match="unknown parameter"):
        make_rule("li", min_spots=3)
    assert make_rule("count", min_spots=3).decide(3) == "hit"


def test_table_roundtrip_and_csv():
    t = SpotTable.from_columns(3, panel=[0, 1, 1], fs=[1.5, 2.5, 3.5], ss=[4.0, 5.0, 6.0],
                               intensity=[10.0, 20.0, 30.0], n_pixels=[2, 3, 4])
    assert len(t) == 3 and np.isnan(t["d"]).all()
    assert len(t[t["panel"] == 1]) == 2
    both = SpotTable.concatenate([t, t[:1]])
    assert len(both) == 4 and both["intensity"][-1] == 10.0
    assert t.sort("intensity")["intensity"][0] == 10.0
    buf = io.StringIO()
    t.to_csv(buf, extra={"file": "a.h5", "frame": 7})
    lines = buf.getvalue().strip().splitlines()
    assert lines[0].split(",") == ["file", "frame", *FIELDS]
    assert lines[1].startswith("a.h5,7,0,1.5,4,")
    assert len(lines) == 4
    assert SpotTable(t.to_records()) == t
    with pytest.raises(KeyError):
        SpotTable.from_columns(1, bogus=1)


def test_ke_bands_default_to_paper_001_and_the_simulator_labels():
    from xtalscreen.simulate.config import LabelConfig
    from xtalscreen.simulate.labels import ke_class

    k = KeBands()
    for n in (0, 3, 4, 9, 10, 250):
        assert k.decide(n) == ke_class(n, LabelConfig())
    assert [k.decide(n) for n in (3, 4, 9, 10)] == ["miss", "maybe", "maybe", "hit"]
