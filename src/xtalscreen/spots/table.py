"""The typed spot table every spot finder returns: :class:`SpotTable`."""

from __future__ import annotations

import csv
from collections.abc import Iterable, Sequence
from pathlib import Path

import numpy as np

#: Fields of a spot table, with dtypes and units.
SPOT_DTYPE = np.dtype([
    ("panel", "i2"),        # panel number (geometry order, or slab of 3-D data)
    ("fs", "f8"),           # centroid, fast-scan pixel coordinate in the data slab (pixel i spans [i, i+1))
    ("ss", "f8"),           # centroid, slow-scan pixel coordinate in the data slab
    ("x", "f8"),            # centroid on the assembled 2-D image (pixels)
    ("y", "f8"),
    ("intensity", "f8"),    # background-subtracted integrated intensity (detector units)
    ("n_pixels", "i4"),     # pixels in the spot
    ("max_pixel", "f4"),    # highest raw pixel value in the spot
    ("background", "f4"),   # local background per pixel (detector units)
    ("snr", "f4"),          # signal-to-noise ratio of the integrated intensity
    ("d", "f4"),            # d-spacing of the centroid (Å); NaN without geometry/wavelength
])

FIELDS: tuple[str, ...] = tuple(SPOT_DTYPE.names)


class SpotTable:
    """A list of spots: a thin wrapper around a numpy structured array of :data:`SPOT_DTYPE`.

    ``len(table)`` is the spot count; ``table["fs"]`` a column; ``table[3]`` one spot (a
    numpy record); ``table[mask]`` a sub-table.

    Examples
    --------
    >>> t = SpotTable.empty()
    >>> len(t)
    0
    >>> SpotTable.concatenate([t, t]).records.dtype.names[:3]
    ('panel', 'fs', 'ss')
    """

    __slots__ = ("records",)

    def __init__(self, records: np.ndarray | None = None):
        if records is None:
            records = np.zeros(0, dtype=SPOT_DTYPE)
        records = np.asarray(records)
        if records.dtype != SPOT_DTYPE:
            out = np.zeros(records.shape[0], dtype=SPOT_DTYPE)
            for name in SPOT_DTYPE.names:
                if records.dtype.names and name in records.dtype.names:
                    out[name] = records[name]
                elif name == "d":
                    out[name] = np.nan
            records = out
        self.records = records

    # ------------------------------------------------------------------ construction
    @classmethod
    def empty(cls) -> "SpotTable":
        return cls(np.zeros(0, dtype=SPOT_DTYPE))

    @classmethod
    def from_columns(cls, n: int, **columns) -> "SpotTable":
        """Build from columns of length ``n``; missing fields are 0 (``d``: NaN)."""
        rec = np.zeros(int(n), dtype=SPOT_DTYPE)
        rec["d"] = np.nan
        for name, values in columns.items():
            if name not in FIELDS:
                raise KeyError(f"unknown spot field {name!r}; fields are {FIELDS}")
            rec[name] = values
        return cls(rec)

    @classmethod
    def concatenate(cls, tables: Iterable["SpotTable"]) -> "SpotTable":
        parts = [t.records for t in tables]
        if not parts:
            return cls.empty()
        return cls(np.concatenate(parts))

    # ------------------------------------------------------------------ access
    def __len__(self) -> int:
        return int(self.records.shape[0])

    def __getitem__(self, key):
        if isinstance(key, str):
            return self.records[key]
        if isinstance(key, (int, np.integer)):
            return self.records[key]
        return SpotTable(self.records[key])

    def __iter__(self):
        return iter(self.records)

    def __repr__(self) -> str:
        return f"SpotTable({len(self)} spots)"

    def __eq__(self, other) -> bool:
        if not isinstance(other, SpotTable):
            return NotImplemented
        return len(self) == len(other) and bool(np.all(
            [np.array_equal(self.records[f], other.records[f], equal_nan=True) for f in FIELDS]))

    @property
    def fields(self) -> tuple[str, ...]:
        return FIELDS

    def sort(self, by: str | Sequence[str] = ("panel", "ss", "fs")) -> "SpotTable":
        """A copy sorted by the given field(s)."""
        by = [by] if isinstance(by, str) else list(by)
        order = np.lexsort([self.records[f] for f in reversed(by)])
        return SpotTable(self.records[order])

    # ------------------------------------------------------------------ export
    def to_records(self) -> np.ndarray:
        """The structured array (a copy)."""
        return self.records.copy()

    def to_dicts(self) -> list[dict]:
        return [{f: r[f].item() for f in FIELDS} for r in self.records]

    def to_csv(self, path_or_file, *, extra: dict | None = None, header: bool = True) -> None:
        """Write the spots as CSV, one row per spot; ``extra`` columns (e.g. file, frame) first."""
        extra = extra or {}
        own = not hasattr(path_or_file, "write")
        fh = open(Path(path_or_file), "w", newline="") if own else path_or_file
        try:
            w = csv.writer(fh)
            if header:
                w.writerow(list(extra) + list(FIELDS))
            pre = list(extra.values())
            for r in self.records:
                w.writerow(pre + [_fmt(r[f]) for f in FIELDS])
        finally:
            if own:
                fh.close()


def _fmt(v) -> str:
    v = v.item() if hasattr(v, "item") else v
    if isinstance(v, float):
        return "nan" if v != v else f"{v:.6g}"
    return str(v)
