"""Class schemes and the paper-000 Table 1 mappings."""

from __future__ import annotations

import json
import re

import pytest

from xtalscreen.drops.schemes import (MARCO_CLASSES, get_scheme, load_schemes, map_class,
                                      marco_colour, normalise_label)
from xtalscreen.errors import InputError, ParameterError

# Paper 000, Table 1 "Simplified four class mapping", read column by column.
TABLE_1 = {
    "well_scored": {"Crystal": "crystal", "Precipitate": "precipitate", "Clear": "clear",
                    "Other": "other"},
    "one_year": {"Crystals high": "crystal", "Crystals mid": "crystal", "Crystals low": "crystal",
                 "Crystal": "crystal", "Crystalline": "crystal", "Salt crystals": "crystal",
                 "Bad precipitate": "precipitate", "Precipitate": "precipitate",
                 "Good precipitate": "precipitate", "Clear": "clear",
                 "Phase separation": "other", "Spherulites": "other", "Clear with stuff": "other",
                 "Indeterminate": "other", "Null experiment": "other"},
    "deepcrystal": {"Alternate spectrum positive": "crystal", "Macro": "crystal",
                    "Micro": "crystal", "Precipitate amorphous": "precipitate",
                    "Precipitate non-amorphous": "precipitate", "Clear": "clear",
                    "Alternate spectrum negative": "other", "Spherulites": "other", "Dry": "other",
                    "Skin": "other", "Contaminants": "other"},
}


def test_marco_scheme_has_four_coloured_classes_in_order():
    s = get_scheme("marco")
    assert s.labels == MARCO_CLASSES == ("crystal", "precipitate", "clear", "other")
    colours = [c.colour for c in s.classes]
    assert all(re.fullmatch(r"#[0-9a-f]{6}", c) for c in colours)
    assert len(set(colours)) == 4  # distinguishable in a plate view
    assert marco_colour("Crystal") == colours[0]


@pytest.mark.parametrize("scheme", sorted(TABLE_1))
def test_table_1_mapping_is_complete_and_exact(scheme):
    s = get_scheme(scheme)
    assert set(s.labels) == set(TABLE_1[scheme])
    for label, target in TABLE_1[scheme].items():
        assert map_class(scheme, label) == target


def test_every_class_of_every_scheme_maps_to_marco():
    for s in load_schemes().values():
        for c in s.classes:
            assert map_class(s.name, c.name) in MARCO_CLASSES


@pytest.mark.parametrize("label", ["crystals_high", "CRYSTALS HIGH", " crystals-high ", "Crystals  high"])
def test_labels_match_ignoring_case_and_separators(label):
    assert normalise_label(label) == "crystals high"
    assert map_class("one_year", label) == "crystal"


def test_unknown_label_names_scheme_and_lists_labels():
    with pytest.raises(ParameterError) as e:
        map_class("one_year", "shiny")
    msg = str(e.value)
    assert "'shiny'" in msg and "one_year" in msg and "Crystals high" in msg


def test_unknown_scheme_lists_known_ones():
    with pytest.raises(ParameterError, match="known schemes: deepcrystal, marco, one_year, well_scored"):
        map_class("marcoo", "crystal")


def _write(tmp_path, doc) -> str:
    p = tmp_path / "schemes.json"
    p.write_text(json.dumps(doc) if not isinstance(doc, str) else doc)
    return str(p)


MARCO = {"name": "marco", "classes": [{"name": c, "colour": "#000000"} for c in MARCO_CLASSES]}


def test_custom_scheme_file_loads(tmp_path):
    doc = {"schemes": [MARCO, {"name": "mine", "classes": [{"name": "Xtal", "colour": "#00ff00",
                                                            "maps_to": "crystal"}]}]}
    schemes = load_schemes(_write(tmp_path, doc))
    assert schemes["mine"].find("xtal").maps_to == "crystal"


@pytest.mark.parametrize("doc, match", [
    ("{not json", "not valid JSON"),
    ({"schemes": [MARCO, {"name": "mine", "classes": [{"name": "X", "colour": "#00ff00"}]}]},
     "must map to one of"),
    ({"schemes": [MARCO, {"name": "mine", "classes": [{"name": "X", "colour": "green",
                                                       "maps_to": "clear"}]}]}, "#rrggbb"),
    ({"schemes": [{"name": "mine", "classes": [{"name": "X", "maps_to": "clear"}]}]}, "no 'marco'"),
    ({"schemes": [MARCO, {"name": "mine", "classes": [{"name": "X", "maps_to": "clear"},
                                                      {"name": "x", "maps_to": "other"}]}]},
     "appears twice"),
])
def test_bad_scheme_files_are_rejected_naming_the_file(tmp_path, doc, match):
    path = _write(tmp_path, doc)
    with pytest.raises(InputError, match=match) as e:
        load_schemes(path)
    assert path in str(e.value)
