"""Web app: plate-view server time with 10,000 plates in the database; thumbnail cache.

Database: N plates (default 10,000) of 96 wells x 1 drop, each with one complete inspection and
one image per drop (http URIs: no file is read), a machine score (with probabilities) for every
image and a human score for 1 image in 8 -- about 4 million rows, bulk-inserted directly
(executemany on SQLite, COPY on PostgreSQL; no image is rendered).

Plate view: ``GET /plates/<barcode>`` through the ASGI app in-process (FastAPI TestClient: the
whole server path -- cookie check, user lookup, queries, template -- without network), logged in
as an admin, for randomly chosen plates; median and 95th percentile. Baseline, measured in the
same process: the same request on a database of 10 plates, so the ratio shows how the page
scales with the size of the database (1.0 = not at all). The ranked list (top 100 drops by
P(crystal) over all plates) is timed too; it has no target.

Thumbnails: 96 real 512 px JPEG drop images: first request (decode + resize + encode + write)
vs. cached request (file served from the cache).

PostgreSQL is used at $XTALSCREEN_TEST_PG (default postgresql+psycopg://postgres@127.0.0.1:5432/test)
in a scratch schema dropped afterwards; its rows are left out if the server is unreachable.

Run: ``.venv/bin/python benchmarks/bench_web.py [--plates 10000] [--requests 40]``
(several minutes at 10,000 plates: most of it is the bulk insert).
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import random
import secrets
import statistics
import sys
import tempfile
import time

sys.path.insert(0, os.path.join(os.path.dirname(__file__), "..", "src"))

import sqlalchemy as sa  # noqa: E402

from xtalscreen.drops.db import connect, init_db, scheme_classes, session_scope  # noqa: E402
from xtalscreen.drops.schemes import MARCO_CLASSES  # noqa: E402

from _dbtargets import backends  # noqa: E402  (benchmarks/ is on sys.path when run as a script)
PASSWORD = "bench-password-1"
T0 = dt.datetime(2026, 1, 1, 8, 0, 0)


def _tables(n_plates: int, marco: dict[str, int], rng: random.Random):
    """Rows per table, ids assigned here (1-based), in foreign-key order."""
    plate, well, drop, insp, image, score = [], [], [], [], [], []
    for p in range(1, n_plates + 1):
        t = T0 + dt.timedelta(minutes=p)
        plate.append((p, f"BENCH-{p:05d}", "96-well", "JCSG+", "bench", t))
        insp.append((p, p, t, "RI1000", True))
        for w in range(96):
            k = (p - 1) * 96 + w + 1
            r, c = divmod(w, 12)
            well.append((k, p, chr(65 + r), c + 1))
            drop.append((k, k, p, 1))
            image.append((k, k, p, f"http://imager/BENCH-{p:05d}/{chr(65 + r)}{c + 1:02d}_1.jpg", 3.5, "visible"))
            probs = [rng.random() for _ in MARCO_CLASSES]
            s = sum(probs)
            probs = {cl: round(v / s, 4) for cl, v in zip(MARCO_CLASSES, probs)}
            top = max(probs, key=probs.get)
            score.append((k, "machine", "marco", "1.0", marco[top], json.dumps(probs), t + dt.timedelta(hours=1)))
            if w % 8 == 0:
                score.append((k, "human", "ann", None, marco[rng.choice(MARCO_CLASSES)], None,
                              t + dt.timedelta(hours=2)))
    cols = {
        "plate": ("id", "barcode", "plate_type", "screen", "owner", "created_at"),
        "inspection": ("id", "plate_id", "imaged_at", "imager", "complete"),
        "well": ("id", "plate_id", "row_label", "col"),
        "well_drop": ("id", "well_id", "plate_id", "number"),
        "image": ("id", "drop_id", "inspection_id", "uri", "um_per_pixel", "kind"),
        "score": ("image_id", "scorer_kind", "scorer", "model_version", "class_id", "probabilities",
                  "scored_at"),
    }
    data = {"plate": plate, "inspection": insp, "well": well, "well_drop": drop, "image": image,
            "score": score}
    return cols, data


def _sqlite_value(v):
    # the text form SQLAlchemy writes DateTime columns in on SQLite
    return v.strftime("%Y-%m-%d %H:%M:%S.%f") if isinstance(v, dt.datetime) else v


def _bulk_insert(engine, cols, data) -> None:
    raw = engine.raw_connection()
    try:
        cur = raw.cursor()
        if engine.dialect.name == "postgresql":
            for table, names in cols.items():
                with cur.copy(f"COPY {table} ({', '.join(names)}) FROM STDIN") as cp:
                    for row in data[table]:
                        cp.write_row(row)
            cur.execute("ANALYZE")
        else:
            cur.execute("BEGIN")  # the engine's connections are in autocommit mode
            for table, names in cols.items():
                marks = ", ".join("?" for _ in names)
                rows = ([_sqlite_value(v) for v in r] for r in data[table])
                cur.executemany(f"INSERT INTO {table} ({', '.join(names)}) VALUES ({marks})", rows)
            cur.execute("COMMIT")
        raw.commit()
        if engine.dialect.name == "sqlite":
            raw.cursor().execute("ANALYZE")
            raw.commit()
    finally:
        raw.close()


def _build(url: str, n_plates: int) -> tuple[float, int]:
    from xtalscreen.web.auth import add_user

    engine = connect(url)
    init_db(engine)
    with session_scope(engine, write=True) as s:
        marco = {k: c.id for k, c in scheme_classes(s).items()}
        add_user(s, "admin", role="admin", password=PASSWORD)
    cols, data = _tables(n_plates, marco, random.Random(0))
    t = time.perf_counter()
    _bulk_insert(engine, cols, data)
    elapsed = time.perf_counter() - t
    engine.dispose()
    return elapsed, sum(len(v) for v in data.values())


def _client(url: str, cache: str):
    import re

    from fastapi.testclient import TestClient

    from xtalscreen.web import create_app

    app = create_app(url, secret_key=secrets.token_hex(16), thumb_cache=cache)
    c = TestClient(app, follow_redirects=False)
    page = c.get("/login").text
    token = re.search(r'name="csrf" value="([^"]+)"', page).group(1)
    r = c.post("/login", data={"name": "admin", "password": PASSWORD, "csrf": token})
    assert r.status_code == 303, r.text
    return c


def _time_pages(c, barcodes, n: int, rng: random.Random) -> list[float]:
    out = []
    for b in (rng.choice(barcodes) for _ in range(n)):
        t = time.perf_counter()
        r = c.get(f"/plates/{b}")
        out.append(time.perf_counter() - t)
        assert r.status_code == 200 and r.text.count('class="drop') == 96, r.status_code
    return out


def _p95(xs):
    xs = sorted(xs)
    return xs[min(len(xs) - 1, int(round(0.95 * (len(xs) - 1))))]



def _thumbs(tmp: str) -> tuple[float, float]:
    """(ms per first thumbnail, ms per cached thumbnail) for 96 512-px JPEG drops."""
    import numpy as np
    from PIL import Image

    from xtalscreen.drops.render import render_drop
    from xtalscreen.web.thumbs import thumbnail

    rng = np.random.default_rng(0)
    files = []
    for i in range(96):
        img = render_drop(MARCO_CLASSES[i % 4], size=512, rng=rng)
        path = os.path.join(tmp, f"d{i:02d}.jpg")
        a = np.asarray(img)
        a = np.clip(a * (255.0 if a.dtype.kind == "f" and a.max() <= 1.0 else 1.0), 0, 255).astype(np.uint8)
        Image.fromarray(a).save(path, quality=90)
        files.append(path)
    cache = os.path.join(tmp, "thumbcache")
    t = time.perf_counter()
    for i, f in enumerate(files):
        thumbnail(cache, i + 1, f, 96)
    first = (time.perf_counter() - t) / len(files)
    t = time.perf_counter()
    for _ in range(5):
        for i, f in enumerate(files):
            with open(thumbnail(cache, i + 1, f, 96), "rb") as fh:
                fh.read()
    cached = (time.perf_counter() - t) / (5 * len(files))
    return first * 1e3, cached * 1e3


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--plates", type=int, default=10_000, help="plates in the big database")
    ap.add_argument("--requests", type=int, default=40, help="plate views timed per database")
    ap.add_argument("--sqlite-only", action="store_true", help="leave PostgreSQL out")
    args = ap.parse_args(argv)
    rng = random.Random(1)
    table = []
    with tempfile.TemporaryDirectory() as tmp:
        for backend, make_url in backends(tmp, "xts_benchweb"):
            if args.sqlite_only and backend != "SQLite":
                break
            results = {}
            for tag, n in (("small", 10), ("big", args.plates)):
                url = make_url(tag)
                t_ins, rows = _build(url, n)
                print(f"{backend}: {n} plates, {rows:,} rows inserted in {t_ins:.1f} s", file=sys.stderr)
                c = _client(url, os.path.join(tmp, f"cache-{backend}-{tag}"))
                barcodes = [f"BENCH-{p:05d}" for p in range(1, n + 1)]
                t = time.perf_counter()
                c.get(f"/plates/{barcodes[0]}")
                cold = time.perf_counter() - t
                times = _time_pages(c, barcodes, args.requests, rng)
                t = time.perf_counter()
                r = c.get("/ranked?limit=100")
                t_ranked = time.perf_counter() - t
                assert r.status_code == 200
                results[tag] = (n, rows, cold, statistics.median(times), _p95(times), t_ranked)
                c.app.state.engine.dispose()
                c.close()
            base = results["small"][3]
            for tag in ("small", "big"):
                n, rows, cold, med, p95, t_ranked = results[tag]
                table.append((backend, n, rows, cold * 1e3, med * 1e3, p95 * 1e3, med / base,
                              t_ranked * 1e3, "baseline" if tag == "small" else ""))
        first, cached = _thumbs(tmp)
    print("| database | plates | rows | first view, ms | median, ms | p95, ms | vs 10 plates | ranked top 100, ms |")
    print("|---|---:|---:|---:|---:|---:|---:|---:|")
    for backend, n, rows, cold, med, p95, ratio, rk, note in table:
        label = f"{ratio:.2f}x" + (" (baseline)" if note else "")
        print(f"| {backend} | {n:,} | {rows:,} | {cold:.1f} | {med:.1f} | {p95:.1f} | {label} | {rk:.0f} |")
    print()
    print("| thumbnail (96 px from a 512 px JPEG) | ms per image | speed-up |")
    print("|---|---:|---:|")
    print(f"| first request: decode, resize, encode, write (baseline) | {first:.2f} | 1.0x |")
    print(f"| cached | {cached:.3f} | {first / cached:.0f}x |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
