"""Join simulated sets into one labelled set for ``xtalscreen calibrate``, with measured labels.

``scripts/compare_models.py`` simulates its sets with the simulator's default label rule and
relabels them by the spot count measured in the frame when it scores them. ``xtalscreen
calibrate`` reads ``labels.csv`` as it is, so this script writes a set whose ``ke_class`` is
recomputed from the ``n_spots_<rule>`` column (Hit from 10 visible spots, Maybe from 4), with
each input set linked under ``a/``, ``b/``, ... (no frame is copied)::

    .venv/bin/python scripts/make_calibration_set.py /tmp/evalset781 /tmp/evalset783 --out /tmp/cal12k
    xtalscreen calibrate /tmp/cal12k --split all --min-sensitivity 0.985 --confidence 0.9 --out cal.pt
"""

from __future__ import annotations

import argparse
import csv
import os
import string
import sys
from pathlib import Path


def make_set(sets, out: Path, rule: str = "measured") -> int:
    """Write ``out/labels.csv`` over ``sets`` (linked as ``out/a``, ``out/b``, ...); returns the
    number of rows. Geometry files (``*.geom``) of the first set are linked too (the sets of one
    simulator have the same)."""
    from xtalscreen.simulate.config import LabelConfig
    from xtalscreen.simulate.labels import ke_class

    lab = LabelConfig()
    col = f"n_spots_{rule}"
    out.mkdir(parents=True, exist_ok=True)
    rows, fields = [], None
    for tag, src in zip(string.ascii_lowercase, sets):
        src = Path(src).resolve()
        labels = src / "labels.csv"
        if not labels.is_file():
            raise SystemExit(f"{src}: no labels.csv (not an xtalscreen simulate output)")
        link = out / tag
        if link.is_symlink() or link.exists():
            link.unlink()
        os.symlink(src, link)
        with open(labels, newline="") as fh:
            reader = csv.DictReader(fh)
            fields = fields or reader.fieldnames
            for r in reader:
                if col not in r:
                    raise SystemExit(f"{labels}: no {col} column (simulated before it was recorded)")
                r["ke_class"] = ke_class(int(r[col]), lab)
                r["file"] = f"{tag}/{r['file']}"
                rows.append(r)
    for geom in Path(sets[0]).resolve().glob("*.geom"):
        link = out / geom.name
        if link.is_symlink() or link.exists():
            link.unlink()
        os.symlink(geom, link)
    with open(out / "labels.csv", "w", newline="") as fh:
        w = csv.DictWriter(fh, fieldnames=fields)
        w.writeheader()
        w.writerows(rows)
    return len(rows)


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("sets", nargs="+", help="xtalscreen simulate outputs (folders with labels.csv)")
    ap.add_argument("--out", required=True, help="folder to write labels.csv and the links into")
    ap.add_argument("--labels", default="measured", choices=["expected", "measured"],
                    help="which visible-spot count names the Ke class")
    args = ap.parse_args(argv)
    n = make_set(args.sets, Path(args.out), args.labels)
    print(f"{n} frames from {len(args.sets)} sets -> {Path(args.out) / 'labels.csv'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
