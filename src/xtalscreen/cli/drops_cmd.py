"""``xtalscreen drops``: the crystallisation-drop database (init, import) and drop renderer."""

from __future__ import annotations

import os
import sys

from xtalscreen.cli import add_command

#: Database used when --db is not given: $XTALSCREEN_DB, else this SQLite file in the current folder.
DEFAULT_DB = "drops.sqlite"


def _db_arg(p) -> None:
    p.add_argument("--db", metavar="PATH_OR_URL", default=os.environ.get("XTALSCREEN_DB", DEFAULT_DB),
                   help="SQLite file or database URL (postgresql+psycopg://USER@HOST:PORT/DB); "
                        "default: $XTALSCREEN_DB, else ./drops.sqlite")


def run_init(args) -> int:
    from xtalscreen.drops.db import init_db

    rep = init_db(args.db)
    if rep.created:
        print(f"created the drop database {rep.url} (schema revision {rep.revision}); "
              f"{rep.classes_added} scheme classes loaded")
    elif rep.previous_revision != rep.revision:
        print(f"upgraded {rep.url} from revision {rep.previous_revision} to {rep.revision}")
    else:
        print(f"{rep.url} is up to date (schema revision {rep.revision}); "
              f"{rep.classes_added} scheme classes added")
    return 0


def run_import(args) -> int:
    from xtalscreen.drops.importer import import_source

    rep = import_source(args.db, args.source, scores=args.scores, scheme=args.scheme,
                        check_files=not args.no_check_files)
    for where, reason in rep.bad:
        print(f"skipped {where}: {reason}", file=sys.stderr)
    print(f"imported into {args.db}: {rep.summary()}")
    return 0


def run_render(args) -> int:
    from xtalscreen.drops.render import render_plates

    rep = render_plates(args.out, plates=args.plates, seed=args.seed, size=args.size,
                        plate_type=args.plate_type, wells=args.wells,
                        drops_per_well=args.drops_per_well, inspections=args.inspections,
                        colour=args.colour, fmt=args.format)
    counts = ", ".join(f"{n} {c}" for c, n in rep.counts.items())
    print(f"rendered {rep.images} drop image(s) on {rep.plates} plate(s) into {rep.out}/ ({counts})")
    print(f"  import list: {rep.csv}\n  ground truth: {rep.truth}")
    return 0


def register(sub) -> None:
    p = add_command(
        sub, "drops", help="crystallisation-drop database: create, import, render test plates",
        description="Crystallisation-drop scoring: create the database (SQLite file by default, "
                    "PostgreSQL by URL), import plates/inspections/images and human scores, and "
                    "render generated plates for demonstrations and tests.",
        examples="  xtalscreen drops init --db drops.sqlite\n"
                 "  xtalscreen drops render --plates 2 --out plates/ --seed 1\n"
                 "  xtalscreen drops import --db drops.sqlite plates/\n"
                 "  xtalscreen drops import --db postgresql+psycopg://me@dbhost/c3 export.csv "
                 "--scores scores.csv\n"
                 "  xtalscreen drops run --db drops.sqlite --once --archive scores.csv\n"
                 "  xtalscreen drops score plates/*/*/A01_1.jpg --model demo\n")
    dsub = p.add_subparsers(dest="drops_command", metavar="SUBCOMMAND", required=True)

    q = add_command(
        dsub, "init", help="create or upgrade the drop database (idempotent)",
        description="Create the tables (Alembic 'upgrade head') and load the class schemes: MARCO's "
                    "4 classes with colours and the paper-000 Table 1 mappings. Running it again "
                    "changes nothing; after an xtalscreen upgrade it migrates the schema.",
        examples="  xtalscreen drops init --db drops.sqlite\n"
                 "  xtalscreen drops init --db postgresql+psycopg://postgres@127.0.0.1:5432/test\n")
    _db_arg(q)
    q.set_defaults(func=run_init)

    q = add_command(
        dsub, "import", help="import plates/inspections/images and human scores",
        description="Load plates, inspections and images from an imager-style folder tree "
                    "(<barcode>/<YYYYMMDDTHHMMSSZ>/<row><col>_<drop>.jpg, as 'drops render' "
                    "writes) or a CSV export (columns barcode, plate_type, screen, owner, "
                    "inspection_time, imager, imaging_complete, well, drop, image_uri, "
                    "um_per_pixel, kind), and human scores from CSV (--scores: image_uri or "
                    "barcode, inspection_time, drop; scorer, class, time). One transaction; "
                    "importing the same thing twice creates nothing twice. Bad rows are reported "
                    "with their line number and skipped.",
        examples="  xtalscreen drops import --db drops.sqlite plates/\n"
                 "  xtalscreen drops import --db drops.sqlite plates/plates.csv\n"
                 "  xtalscreen drops import --db drops.sqlite --scores human.csv --scheme one_year\n")
    _db_arg(q)
    q.add_argument("source", nargs="?", metavar="SOURCE",
                   help="folder tree or CSV export of plates/inspections/images")
    q.add_argument("--scores", metavar="FILE", help="CSV of human scores")
    q.add_argument("--scheme", default="marco",
                   help="class scheme of the score labels (marco, well_scored, one_year, "
                        "deepcrystal) where the CSV has no 'scheme' column")
    q.add_argument("--no-check-files", action="store_true",
                   help="do not check that local image files named in a CSV exist")
    q.set_defaults(func=run_import)

    q = add_command(
        dsub, "render", help="render generated plates of drop images (demonstration, tests)",
        description="Write generated plates as an imager-style folder tree of drop images "
                    "(round drop in a well: clear, precipitate, crystals, skin/phase separation/"
                    "fibres as 'other'), plus plates.csv (the import format) and truth.csv (the "
                    "rendered class of each image). Deterministic by seed. For demonstrations and "
                    "tests only: these are not real drops.",
        examples="  xtalscreen drops render --plates 1 --out plates/\n"
                 "  xtalscreen drops render --plates 4 --out plates/ --seed 7 --size 256 --colour\n")
    q.add_argument("--plates", type=int, default=1, help="number of plates")
    q.add_argument("--out", required=True, metavar="DIR", help="output folder")
    q.add_argument("--seed", type=int, default=0, help="random seed")
    q.add_argument("--size", type=int, default=512, help="image width and height, px")
    q.add_argument("--plate-type", default="96-well", choices=["96-well", "48-well", "24-well"],
                   help="well layout")
    q.add_argument("--wells", type=int, default=None, help="use only the first N wells of a plate")
    q.add_argument("--drops-per-well", type=int, default=1, help="drops per well (1-3)")
    q.add_argument("--inspections", type=int, default=1, help="inspections per plate, a day apart")
    q.add_argument("--colour", action="store_true", help="RGB images (default grey)")
    q.add_argument("--format", default="jpg", choices=["jpg", "png"], help="image format")
    q.set_defaults(func=run_render)

    from xtalscreen.cli.drops_pipeline import register_pipeline

    register_pipeline(dsub)  # run, score, train-demo

    from xtalscreen.cli.web_cmd import register_drops_commands

    register_drops_commands(dsub)  # adduser, share, ashes, export-training
