"""Hit rules: turn a spot count into a decision.

- :class:`SpotCountRule`: hit if ``min_spots <= n <= max_spots`` (the upper bound rejects ice,
  saturation and other frames with absurd numbers of "spots"); the usual Cheetah/OM hit rule.
- :class:`KeBands`: Ke et al. (2018) classes *hit* / *maybe* / *miss* from two spot-count
  thresholds (a "maybe" frame holds only a few Bragg spots).
- :class:`LiLabeller`: Po-Nan Li's labeller for turning an unlabelled run into a training set:
  fewer than 2 peaks → miss, more than 10 → hit, frames in between are dropped (label None).

Every rule is a small frozen dataclass with ``decide(n_spots) -> str | None`` and a ``name``;
:func:`make_rule` builds one from a name and keywords (CLI use).
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

import numpy as np

from xtalscreen.errors import ParameterError

HIT, MAYBE, MISS = "hit", "maybe", "miss"


def _check_count(name: str, v, allow_none: bool = False) -> None:
    if v is None and allow_none:
        return
    if isinstance(v, bool) or not isinstance(v, (int, np.integer)) or v < 0:
        raise ParameterError(f"{name} must be a whole number of spots >= 0, got {v!r}")


def _check_n(n) -> int:
    if isinstance(n, bool) or not isinstance(n, (int, np.integer)) or n < 0:
        raise ParameterError(f"n_spots must be a whole number >= 0, got {n!r}")
    return int(n)


@dataclass(frozen=True)
class SpotCountRule:
    """Hit when ``min_spots <= n_spots <= max_spots`` (``max_spots`` None: no upper bound)."""

    min_spots: int = 10
    max_spots: int | None = None
    name: str = "count"

    def __post_init__(self) -> None:
        _check_count("min_spots", self.min_spots)
        _check_count("max_spots", self.max_spots, allow_none=True)
        if self.max_spots is not None and self.max_spots < self.min_spots:
            raise ParameterError(f"max_spots ({self.max_spots}) must be >= min_spots ({self.min_spots})")

    def decide(self, n_spots: int) -> str:
        n = _check_n(n_spots)
        ok = n >= self.min_spots and (self.max_spots is None or n <= self.max_spots)
        return HIT if ok else MISS

    def as_dict(self) -> dict:
        return asdict(self)


@dataclass(frozen=True)
class KeBands:
    """Ke et al. classes: ``n >= hit_min`` → hit, ``maybe_min <= n < hit_min`` → maybe, else miss.

    The defaults are paper 001's annotation rule (ten or more Bragg spots: Hit; four to nine:
    Maybe; otherwise Miss), the same bands the simulator uses for its exact Ke labels.

    ``max_spots`` (optional) turns frames with more spots than that into misses (ice, saturation).
    """

    maybe_min: int = 4
    hit_min: int = 10
    max_spots: int | None = None
    name: str = "ke"

    def __post_init__(self) -> None:
        _check_count("maybe_min", self.maybe_min)
        _check_count("hit_min", self.hit_min)
        _check_count("max_spots", self.max_spots, allow_none=True)
        if self.hit_min < self.maybe_min:
            raise ParameterError(f"hit_min ({self.hit_min}) must be >= maybe_min ({self.maybe_min})")

    def decide(self, n_spots: int) -> str:
        n = _check_n(n_spots)
        if self.max_spots is not None and n > self.max_spots:
            return MISS
        if n >= self.hit_min:
            return HIT
        return MAYBE if n >= self.maybe_min else MISS

    def as_dict(self) -> dict:
        return asdict(self)


@dataclass(frozen=True)
class LiLabeller:
    """Po-Nan Li: ``n < miss_below`` → miss, ``n > hit_above`` → hit, otherwise None (dropped)."""

    miss_below: int = 2
    hit_above: int = 10
    name: str = "li"

    def __post_init__(self) -> None:
        _check_count("miss_below", self.miss_below)
        _check_count("hit_above", self.hit_above)
        if self.hit_above < self.miss_below:
            raise ParameterError(f"hit_above ({self.hit_above}) must be >= miss_below ({self.miss_below})")

    def decide(self, n_spots: int) -> str | None:
        n = _check_n(n_spots)
        if n < self.miss_below:
            return MISS
        if n > self.hit_above:
            return HIT
        return None

    def as_dict(self) -> dict:
        return asdict(self)


RULES = {"count": SpotCountRule, "ke": KeBands, "li": LiLabeller}


def make_rule(name: str = "count", **params):
    """Build a rule by name (``count``, ``ke``, ``li``); unknown names/keys raise ParameterError."""
    if name not in RULES:
        raise ParameterError(f"unknown hit rule {name!r}; known: {sorted(RULES)}")
    cls = RULES[name]
    known = set(cls.__dataclass_fields__) - {"name"}
    bad = sorted(k for k in params if k not in known)
    if bad:
        raise ParameterError(f"unknown parameter(s) {bad} for hit rule {name!r}; known: {sorted(known)}")
    return cls(**params)
