"""Class schemes of drop scores and their mappings to the MARCO 4 classes, kept as data.

The schemes live in ``xtalscreen/drops/data/schemes.json`` (shipped in the wheel): the MARCO
scheme (crystal, precipitate, clear, other) that machine scores are written in, and the three
schemes of paper 000, Table 1 ("Well Scored", "One Year", the DeepCrystal model) with the class
each label maps to. ``xtalscreen drops init`` copies them into the database
(:class:`xtalscreen.drops.schema.ClassScheme`); this module is the database-free view.

Labels are matched case-insensitively, with runs of spaces, ``-`` and ``_`` read as one space, so
``"crystals_high"``, ``"Crystals High"`` and ``"crystals-high"`` are the same label.

Examples
--------
>>> from xtalscreen.drops.schemes import map_class, MARCO_CLASSES
>>> map_class("one_year", "Crystals high")
'crystal'
>>> map_class("deepcrystal", "skin")
'other'
>>> MARCO_CLASSES
('crystal', 'precipitate', 'clear', 'other')
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass, field
from functools import lru_cache
from importlib import resources
from pathlib import Path

from xtalscreen.errors import InputError, ParameterError

#: The 4 classes of the MARCO scheme, in their canonical order (probability-vector order).
MARCO_CLASSES: tuple[str, ...] = ("crystal", "precipitate", "clear", "other")
#: Name of the scheme every other scheme maps to.
TARGET_SCHEME = "marco"

_HEX = re.compile(r"^#[0-9a-fA-F]{6}$")
_SEP = re.compile(r"[\s_\-]+")


@dataclass(frozen=True)
class ClassDef:
    """One class of a scheme: its label, display colour (``#rrggbb``), order and MARCO class."""

    name: str
    colour: str
    order: int
    maps_to: str | None = None


@dataclass(frozen=True)
class SchemeDef:
    """A class scheme: name, description and classes in display order."""

    name: str
    description: str
    classes: tuple[ClassDef, ...] = field(default_factory=tuple)

    @property
    def labels(self) -> tuple[str, ...]:
        return tuple(c.name for c in self.classes)

    def find(self, label: str) -> ClassDef | None:
        """The class whose label matches ``label`` (see :func:`normalise_label`), or None."""
        key = normalise_label(label)
        for c in self.classes:
            if normalise_label(c.name) == key:
                return c
        return None


def normalise_label(label: str) -> str:
    """Lower-case ``label`` and collapse spaces, ``-`` and ``_`` into single spaces."""
    return _SEP.sub(" ", str(label)).strip().lower()


def _parse(doc: dict, source: str) -> dict[str, SchemeDef]:
    if not isinstance(doc, dict) or not isinstance(doc.get("schemes"), list):
        raise InputError("expected a JSON object with a 'schemes' list", path=source)
    out: dict[str, SchemeDef] = {}
    for si, s in enumerate(doc["schemes"]):
        name = s.get("name") if isinstance(s, dict) else None
        if not name or not isinstance(s.get("classes"), list) or not s["classes"]:
            raise InputError(f"scheme #{si} needs a 'name' and a non-empty 'classes' list", path=source)
        classes = []
        seen = set()
        for ci, c in enumerate(s["classes"]):
            label = c.get("name") if isinstance(c, dict) else None
            if not label:
                raise InputError(f"scheme {name!r}: class #{ci} has no 'name'", path=source)
            colour = c.get("colour", "#808080")
            if not _HEX.match(colour):
                raise InputError(f"scheme {name!r}: class {label!r} colour must be '#rrggbb', "
                                 f"got {colour!r}", path=source)
            key = normalise_label(label)
            if key in seen:
                raise InputError(f"scheme {name!r}: class {label!r} appears twice", path=source)
            seen.add(key)
            classes.append(ClassDef(label, colour.lower(), ci, c.get("maps_to")))
        out[name] = SchemeDef(name, s.get("description", ""), tuple(classes))
    target = out.get(TARGET_SCHEME)
    if target is None:
        raise InputError(f"no {TARGET_SCHEME!r} scheme defined", path=source)
    for s in out.values():
        for c in s.classes:
            if s.name == TARGET_SCHEME:
                continue
            if c.maps_to is None or target.find(c.maps_to) is None:
                raise InputError(f"scheme {s.name!r}: class {c.name!r} must map to one of "
                                 f"{', '.join(target.labels)} ('maps_to'), got {c.maps_to!r}",
                                 path=source)
    return out


@lru_cache(maxsize=8)
def _load_cached(path: str | None) -> dict[str, SchemeDef]:
    if path is None:
        text = resources.files("xtalscreen.drops").joinpath("data/schemes.json").read_text("utf-8")
        source = "xtalscreen/drops/data/schemes.json"
    else:
        source = path
        try:
            text = Path(path).read_text("utf-8")
        except OSError as exc:
            raise InputError(f"cannot read the scheme file: {exc.strerror or exc}", path=path) from None
    try:
        doc = json.loads(text)
    except json.JSONDecodeError as exc:
        raise InputError(f"not valid JSON ({exc.msg}, line {exc.lineno})", path=source) from None
    return _parse(doc, source)


def load_schemes(path: str | Path | None = None) -> dict[str, SchemeDef]:
    """Return the class schemes by name.

    Parameters
    ----------
    path : str or Path, optional
        A JSON file in the format of the shipped ``data/schemes.json``; default: the shipped one.

    Returns
    -------
    dict of str to SchemeDef
        Always contains ``"marco"``; every class of the other schemes maps to a MARCO class.
    """
    return dict(_load_cached(None if path is None else str(path)))


def get_scheme(name: str) -> SchemeDef:
    """The shipped scheme called ``name``; :class:`ParameterError` listing the known ones if none."""
    schemes = load_schemes()
    if name not in schemes:
        raise ParameterError(f"unknown class scheme {name!r}; known schemes: {', '.join(sorted(schemes))}")
    return schemes[name]


def map_class(scheme_from: str, label: str) -> str:
    """Map ``label`` of scheme ``scheme_from`` to its MARCO class.

    Parameters
    ----------
    scheme_from : str
        A scheme name: ``"marco"``, ``"well_scored"``, ``"one_year"`` or ``"deepcrystal"``.
    label : str
        A class label of that scheme (case and ``-``/``_``/space differences are ignored).

    Returns
    -------
    str
        One of :data:`MARCO_CLASSES`.

    Raises
    ------
    ParameterError
        Unknown scheme, or a label the scheme does not have (the message lists its labels).
    """
    scheme = get_scheme(scheme_from)
    c = scheme.find(label)
    if c is None:
        raise ParameterError(f"unknown class {label!r} in scheme {scheme_from!r}; "
                             f"its classes are: {', '.join(scheme.labels)}")
    return c.name if scheme.name == TARGET_SCHEME else normalise_label(c.maps_to)


def marco_colour(label: str) -> str:
    """The display colour (``#rrggbb``) of MARCO class ``label``."""
    c = get_scheme(TARGET_SCHEME).find(label)
    if c is None:
        raise ParameterError(f"unknown MARCO class {label!r}; classes are: {', '.join(MARCO_CLASSES)}")
    return c.colour
