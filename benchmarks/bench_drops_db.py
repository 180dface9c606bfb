"""Drop database: import throughput (SQLite, PostgreSQL), the pipeline's query, drop rendering.

Import: a CSV export of N images (96-image plates, one inspection each, http URIs so that no
file is touched) is loaded with ``import_source`` -- one transaction, bulk lookups -- into a fresh
database, then loaded again (idempotent: everything already present). Baseline, measured in the
same process on the same database: a naive importer that looks every level up with its own
query and commits once per image (what a straightforward per-row script does). The ratio is the
speed-up of the one-transaction import.

Query: ``pending_inspections`` (complete inspections lacking a machine score of a model version)
on the loaded database after half of the plates were machine-scored.

Render: ``render_drop`` images/s at 256 and 512 px (grey), and with JPEG encoding.

PostgreSQL is used at $XTALSCREEN_TEST_PG (default postgresql+psycopg://postgres@127.0.0.1:5432/test)
in a scratch schema dropped afterwards; its rows are left out if the server is unreachable.

Run: ``.venv/bin/python benchmarks/bench_drops_db.py [--images N]`` (about 30-60 s).
"""

from __future__ import annotations

import argparse
import csv
import os
import sys
import tempfile
import time

sys.path.insert(0, os.path.join(os.path.dirname(__file__), "..", "src"))

import cv2  # noqa: E402
import sqlalchemy as sa  # noqa: E402
from sqlalchemy import select  # noqa: E402

from xtalscreen.drops import schema as S  # noqa: E402
from xtalscreen.drops.db import (connect, init_db, pending_inspections, scheme_classes,  # noqa: E402
                                 session_scope)
from xtalscreen.drops.importer import CSV_COLUMNS, import_source, parse_time  # noqa: E402
from xtalscreen.drops.render import render_drop  # noqa: E402

from _dbtargets import backends  # noqa: E402  (benchmarks/ is on sys.path when run as a script)


def _rows(n: int) -> list[dict]:
    rows = []
    for k in range(n):
        p, w = divmod(k, 96)
        r, c = divmod(w, 12)
        rows.append({"barcode": f"BENCH-{p:05d}", "plate_type": "96-well", "screen": "JCSG+",
                     "owner": "bench", "inspection_time": f"2026-01-01T{p % 24:02d}:00:00Z",
                     "imager": "RI1000", "imaging_complete": "true", "well": f"{chr(65 + r)}{c + 1}",
                     "drop": "1", "image_uri": f"http://imager/BENCH-{p:05d}/{chr(65 + r)}{c + 1:02d}_1.jpg",
                     "um_per_pixel": "3.5", "kind": "visible"})
    return rows


def _naive_import(engine, rows) -> None:
    """Baseline: one query per level and one commit per image."""
    for r in rows:
        with session_scope(engine) as s:
            plate = s.scalar(select(S.Plate).where(S.Plate.barcode == r["barcode"]))
            if plate is None:
                plate = S.Plate(barcode=r["barcode"], plate_type=r["plate_type"], screen=r["screen"],
                                owner=r["owner"])
                s.add(plate)
                s.flush()
            row, col = r["well"][0], int(r["well"][1:])
            well = s.scalar(select(S.Well).where(S.Well.plate_id == plate.id, S.Well.row == row,
                                                 S.Well.column == col))
            if well is None:
                well = S.Well(plate=plate, row=row, column=col)
                s.add(well)
                s.flush()
            drop = s.scalar(select(S.Drop).where(S.Drop.well_id == well.id, S.Drop.number == 1))
            if drop is None:
                drop = S.Drop(well=well, plate=plate, number=1)
                s.add(drop)
            t = parse_time(r["inspection_time"])
            insp = s.scalar(select(S.Inspection).where(S.Inspection.plate_id == plate.id,
                                                       S.Inspection.imaged_at == t))
            if insp is None:
                insp = S.Inspection(plate=plate, imaged_at=t, imager=r["imager"], complete=True)
                s.add(insp)
            if s.scalar(select(S.Image.id).where(S.Image.uri == r["image_uri"])) is None:
                s.add(S.Image(drop=drop, inspection=insp, uri=r["image_uri"], um_per_pixel=3.5))


def _score_half(engine) -> None:
    with session_scope(engine) as s:
        crystal = scheme_classes(s)["crystal"]
        ids = s.scalars(select(S.Image.id).order_by(S.Image.id)).all()
        half = ids[: len(ids) // 2]  # the first half of the plates, as images are in plate order
        s.execute(sa.insert(S.Score), [
            {"image_id": i, "scorer_kind": S.ScorerKind.machine, "scorer": "marco",
             "model_version": "1", "class_id": crystal.id,
             "probabilities": {"crystal": 0.9, "precipitate": 0.05, "clear": 0.03, "other": 0.02}}
            for i in half])


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--images", type=int, default=4800, help="images to import (96 per plate)")
    ap.add_argument("--naive", type=int, default=480, help="images for the naive baseline")
    args = ap.parse_args(argv)
    rows = _rows(args.images)
    table = []
    with tempfile.TemporaryDirectory() as tmp:
        path = os.path.join(tmp, "export.csv")
        with open(path, "w", newline="") as fh:
            w = csv.DictWriter(fh, fieldnames=list(CSV_COLUMNS))
            w.writeheader()
            w.writerows(rows)
        for backend, make_url in backends(tmp, "xts_bench"):
            naive = connect(make_url("naive"))
            init_db(naive)
            t = time.perf_counter()
            _naive_import(naive, rows[: args.naive])
            t_naive = (time.perf_counter() - t) / args.naive
            naive.dispose()
            engine = connect(make_url("bulk"))
            init_db(engine)
            t = time.perf_counter()
            rep = import_source(engine, path)
            t_bulk = (time.perf_counter() - t) / args.images
            assert rep.images == args.images and not rep.bad
            t = time.perf_counter()
            rep2 = import_source(engine, path)
            t_again = (time.perf_counter() - t) / args.images
            assert rep2.existing == args.images and rep2.created == 0
            _score_half(engine)
            with session_scope(engine) as s:
                s.scalars(pending_inspections("marco", "1")).all()
                t = time.perf_counter()
                for _ in range(5):
                    pending = s.scalars(pending_inspections("marco", "1")).all()
                t_query = (time.perf_counter() - t) / 5
            engine.dispose()
            table.append((backend, "naive: query per level, commit per image (baseline)",
                          args.naive, 1 / t_naive, 1.0))
            table.append((backend, "import_source, one transaction", args.images, 1 / t_bulk,
                          t_naive / t_bulk))
            table.append((backend, "import_source again (all already present)", args.images,
                          1 / t_again, t_naive / t_again))
            table.append((backend, f"pending_inspections query: {len(pending)} of "
                                   f"{args.images // 96} inspections, {t_query * 1e3:.1f} ms",
                          args.images, float("nan"), float("nan")))
    print(f"Drop database import, {args.images} images in {args.images // 96} plates "
          f"(baseline on {args.naive} images), 1 process\n")
    print("| database | method | images | images/s | speed-up vs baseline |")
    print("|---|---|---:|---:|---:|")
    for backend, name, n, rate, ratio in table:
        r = "-" if rate != rate else f"{rate:,.0f}"
        x = "-" if ratio != ratio else f"{ratio:.1f}x"
        print(f"| {backend} | {name} | {n} | {r} | {x} |")

    print("\nrender_drop (grey), images/s, 1 process\n")
    print("| size | render only | render + JPEG q90 encode |")
    print("|---:|---:|---:|")
    for size in (256, 512):
        n = 24 if size == 512 else 48
        t = time.perf_counter()
        imgs = [render_drop(("crystal", "precipitate", "clear", "other")[k % 4], size=size, rng=k)
                for k in range(n)]
        t_r = time.perf_counter() - t
        t = time.perf_counter()
        for im in imgs:
            cv2.imencode(".jpg", im, [cv2.IMWRITE_JPEG_QUALITY, 90])
        t_e = time.perf_counter() - t
        print(f"| {size} | {n / t_r:.1f} | {n / (t_r + t_e):.1f} |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
