"""Benchmark: the drop-scoring pipeline end to end (``xtalscreen drops run --once``).

Renders a pool of drop images once, then builds plates of N images whose files are hard links
into the pool (every image has its own URI, as the database requires, but rendering 10,000
drops would take longer than the benchmark), imports them with the CSV importer, and times one
pipeline run with the shipped demonstration model on SQLite and on PostgreSQL (a scratch schema
at $XTALSCREEN_TEST_PG, default postgresql+psycopg://postgres@127.0.0.1:5432/test; skipped when
unreachable). It also times one C4-sized inspection of 200 images (C4: under two minutes;
target: under 10 s on 2 CPU cores).

    .venv/bin/python benchmarks/bench_drops_pipeline.py [--n 10000] [--pool 200] [--size 512]
                                                        [--workers 0] [--no-pg]

Prints a Markdown table: images/s end to end and the share of the run spent in fetch, decode,
model, database (find + upload) and the rest (checkpoints, archive, start-up).
"""

from __future__ import annotations

import argparse
import csv
import os
import secrets
import sys
import tempfile
import time
from pathlib import Path
from urllib.parse import quote

import sqlalchemy as sa

from xtalscreen.drops.db import init_db
from xtalscreen.drops.importer import CSV_COLUMNS, import_source
from xtalscreen.drops.pipeline import PipelineConfig, run_pipeline
from xtalscreen.drops.render import render_plates

PG_URL = os.environ.get("XTALSCREEN_TEST_PG", "postgresql+psycopg://postgres@127.0.0.1:5432/test")


def build_plates(root: Path, pool: Path, n: int, per_inspection: int) -> Path:
    """CSV of ``n`` images in inspections of ``per_inspection``, files hard-linked from ``pool``."""
    files = sorted(pool.glob("*/*/*.jpg"))
    rows = []
    wells = [f"{chr(65 + r)}{c + 1}" for r in range(16) for c in range(24)]   # 384 wells
    for i in range(n):
        insp, k = divmod(i, per_inspection)
        plate = f"BENCH-{insp:05d}"
        d = root / plate
        d.mkdir(parents=True, exist_ok=True)
        dst = d / f"{k:04d}.jpg"
        if not dst.exists():
            os.link(files[i % len(files)], dst)
        well, drop = wells[k % len(wells)], k // len(wells) + 1
        rows.append({"barcode": plate, "plate_type": "bench", "screen": "", "owner": "",
                     "inspection_time": f"2026-01-01T{insp % 24:02d}:00:00Z", "imager": "bench",
                     "imaging_complete": "true", "well": well, "drop": drop,
                     "image_uri": str(dst), "um_per_pixel": "", "kind": "visible"})
    path = root / "bench.csv"
    with open(path, "w", newline="") as fh:
        w = csv.DictWriter(fh, fieldnames=list(CSV_COLUMNS))
        w.writeheader()
        w.writerows(rows)
    return path


def one(label: str, db: str, csv_path: Path, tmp: Path, workers: int) -> dict:
    init_db(db)
    t0 = time.perf_counter()
    rep_imp = import_source(db, csv_path, check_files=False)
    t_import = time.perf_counter() - t0
    cfg = PipelineConfig(scratch=tmp / f"scratch-{label}", archive=tmp / f"archive-{label}.csv",
                         workers=workers)
    rep = run_pipeline(db, cfg)
    s = rep.seconds
    total = s["total"]
    db_s = s["find"] + s["database"]
    work = s["fetch"] + s["decode"] + s["model"]
    scale = 1.0 if workers <= 1 else min(1.0, (total - db_s) / work if work else 1.0)
    return {"label": label, "images": rep.scored + len(rep.failed), "import_s": t_import,
            "total": total, "rate": (rep.scored + len(rep.failed)) / total,
            "fetch": s["fetch"] * scale / total, "decode": s["decode"] * scale / total,
            "model": s["model"] * scale / total, "database": db_s / total,
            "imported": rep_imp.images}


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--n", type=int, default=10000, help="images in the full run")
    ap.add_argument("--pool", type=int, default=200, help="distinct rendered images")
    ap.add_argument("--size", type=int, default=512, help="rendered image size, px")
    ap.add_argument("--per-inspection", type=int, default=200, help="images per inspection")
    ap.add_argument("--workers", type=int, default=0, help="dask workers (0: in-process)")
    ap.add_argument("--no-pg", action="store_true", help="skip PostgreSQL")
    args = ap.parse_args(argv)
    import torch

    print(f"torch threads {torch.get_num_threads()}, CPUs {os.cpu_count()}", file=sys.stderr)
    with tempfile.TemporaryDirectory() as tmpd:
        tmp = Path(tmpd)
        t0 = time.perf_counter()
        wells = min(96, args.pool)
        plates = -(-args.pool // wells)
        render_plates(tmp / "pool", plates=plates, wells=wells, size=args.size, seed=11,
                      progress=False)
        print(f"rendered pool of {plates * wells} images at {args.size} px in "
              f"{time.perf_counter() - t0:.0f} s", file=sys.stderr)
        rows = []
        c4_csv = build_plates(tmp / "c4", tmp / "pool", args.per_inspection, args.per_inspection)
        rows.append(one(f"1 inspection of {args.per_inspection} (SQLite)",
                        str(tmp / "c4.sqlite"), c4_csv, tmp, args.workers))
        full_csv = build_plates(tmp / "full", tmp / "pool", args.n, args.per_inspection)
        rows.append(one(f"{args.n} images (SQLite)", str(tmp / "full.sqlite"), full_csv, tmp,
                        args.workers))
        if not args.no_pg:
            admin = sa.create_engine(PG_URL, poolclass=sa.pool.NullPool)
            schema = f"xts_bench_{secrets.token_hex(4)}"
            try:
                with admin.begin() as c:
                    c.exec_driver_sql(f'CREATE SCHEMA "{schema}"')
            except sa.exc.DBAPIError as e:
                print(f"PostgreSQL skipped: {str(e).splitlines()[0]}", file=sys.stderr)
                schema = None
            if schema:
                sep = "&" if "?" in PG_URL else "?"
                url = f"{PG_URL}{sep}options={quote(f'-csearch_path={schema}')}"
                try:
                    rows.append(one(f"{args.n} images (PostgreSQL)", url, full_csv, tmp,
                                    args.workers))
                finally:
                    with admin.begin() as c:
                        c.exec_driver_sql(f'DROP SCHEMA IF EXISTS "{schema}" CASCADE')
                    admin.dispose()
    print(f"\nDrop pipeline, {args.size} px JPEG drops, demonstration model, "
          f"workers={args.workers or 'in-process'}, {os.cpu_count()} CPU(s)\n")
    print("| run | images | end-to-end s | images/s | fetch | decode | model | database | other |")
    print("|---|---:|---:|---:|---:|---:|---:|---:|---:|")
    for r in rows:
        other = max(0.0, 1 - r["fetch"] - r["decode"] - r["model"] - r["database"])
        print(f"| {r['label']} | {r['images']} | {r['total']:.1f} | {r['rate']:.0f} | "
              f"{r['fetch']:.0%} | {r['decode']:.0%} | {r['model']:.0%} | {r['database']:.0%} | "
              f"{other:.0%} |")
    c4 = rows[0]["total"]
    print(f"\nC4-sized inspection ({args.per_inspection} images): {c4:.1f} s end to end "
          f"(target < 10 s; C4 < 120 s): {120 / c4:.0f}x faster than C4's bound")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
