"""``xtalscreen drops run | score | train-demo``: the scoring pipeline and drop models.

Registered under ``xtalscreen drops`` by :func:`xtalscreen.cli.drops_cmd.register`.
"""

from __future__ import annotations

import csv
import json
import os
import sys

from xtalscreen.cli import add_command


def _model_args(q) -> None:
    q.add_argument("--model", default="demo", metavar="FILE",
                   help="'demo' (the shipped demonstration model: rendered drops only), a .pt "
                        "checkpoint of a registry model, or a .onnx file with a .onnx.json sidecar")
    q.add_argument("--mapping", metavar="JSON",
                   help="map the model's own classes to the MARCO 4: JSON {\"their class\": "
                        "\"marco class\"}; probabilities are summed")
    q.add_argument("--threshold-class", metavar="NAME",
                   help="use only this class of the model as crystal probability (as C4 did with "
                        "its closed model); the rest counts as 'other'")
    q.add_argument("--interesting-threshold", type=float, metavar="P",
                   help="crystal probability above which a drop is 'interesting' (default: the "
                        "threshold stored with the model, chosen at TPR 0.8 on validation)")


def _spec(args):
    from xtalscreen.drops.classifier import ModelSpec

    return ModelSpec(model=args.model, mapping=args.mapping, threshold_class=args.threshold_class,
                     threshold=args.interesting_threshold)


def run_run(args) -> int:
    from xtalscreen.drops.pipeline import (PipelineConfig, configure_logging, parse_every,
                                           run_every, run_pipeline)

    if args.once and args.every:
        from xtalscreen.errors import ParameterError
        raise ParameterError("give --once or --every, not both")
    opts = {}
    for kv in args.cluster_option or []:
        k, sep, v = kv.partition("=")
        if not sep or not k.strip():
            from xtalscreen.errors import ParameterError
            raise ParameterError(f"--cluster-option must be KEY=VALUE, got {kv!r}")
        try:
            opts[k.strip()] = json.loads(v)      # numbers, true/false, lists
        except ValueError:
            opts[k.strip()] = v                  # plain text: queue=gpu, memory=8GB
    cfg = PipelineConfig(model=_spec(args), batch=args.batch, workers=args.workers,
                         scratch=args.scratch, archive=args.archive, notify=args.notify,
                         max_connections=args.connections, copy_local=args.copy_local,
                         cluster=args.cluster, cluster_options=opts, limit=args.limit)
    every = parse_every(args.every) if args.every else None
    cleanup = configure_logging(args.log_file, verbose=args.verbose)
    try:
        if every:
            run_every(args.db, cfg, every)
            return 0
        rep = run_pipeline(args.db, cfg)
    finally:
        cleanup()
    print(rep.summary())
    for uri, reason in rep.failed:
        print(f"failed {uri}: {reason}", file=sys.stderr)
    return 0


def run_score(args) -> int:
    from xtalscreen.drops.pipeline import score_images
    from xtalscreen.drops.schemes import MARCO_CLASSES

    clf, rows = score_images(args.images, _spec(args), batch=args.batch)
    cols = ["image", "class", *[f"p_{c}" for c in MARCO_CLASSES], "interesting", "error"]
    bad = 0
    for r in rows:
        if "error" in r:
            bad += 1
            print(f"{r['image']}: FAILED: {r['error']}", file=sys.stderr)
        else:
            probs = " ".join(f"{c}={r['p_' + c]:.3f}" for c in MARCO_CLASSES)
            star = " *interesting*" if r["interesting"] else ""
            print(f"{r['image']}: {r['class']}  {probs}{star}")
    if args.out:
        with open(args.out, "w", newline="") as fh:
            w = csv.DictWriter(fh, fieldnames=cols)
            w.writeheader()
            w.writerows(rows)
    print(f"{len(rows) - bad} image(s) scored, {bad} failed (model {clf.name} {clf.version})"
          + (f"; wrote {args.out}" if args.out else ""), file=sys.stderr)
    return 0 if bad < len(rows) or not rows else 1


def run_train_demo(args) -> int:
    from xtalscreen.drops.demo_model import DemoConfig, train_demo

    m = train_demo(args.out, config=DemoConfig(seed=args.seed, per_class=args.per_class,
                                               epochs=args.epochs))
    print(json.dumps(m, indent=1))
    return 0


def register_pipeline(dsub) -> None:
    """Add ``run``, ``score`` and ``train-demo`` to the ``drops`` sub-parsers."""
    q = add_command(
        dsub, "run", help="score new drop images (the C4 pipeline)",
        description="Find complete inspections without a machine score from the model's current "
                    "version, fetch their images to --scratch (at most --connections at once), "
                    "classify them in batches, checkpoint, and upload all scores of the run in one "
                    "transaction; failed images are recorded with the reason. Safe to kill and "
                    "rerun: nothing is lost or written twice. A lock stops overlapping runs.",
        examples="  xtalscreen drops run --db drops.sqlite --once\n"
                 "  xtalscreen drops run --db postgresql+psycopg://c4@db/c3 --every 1h --workers 4 "
                 "--archive scores.csv --notify https://hooks.slack.com/services/...\n"
                 "  xtalscreen drops run --db drops.sqlite --once --model marco.onnx "
                 "--mapping marco-map.json\n"
                 "  xtalscreen drops run --db drops.sqlite --once --cluster slurm "
                 "--cluster-option queue=gpu --cluster-option memory=8GB --workers 8\n")
    q.add_argument("--db", metavar="PATH_OR_URL",
                   default=os.environ.get("XTALSCREEN_DB", "drops.sqlite"),
                   help="SQLite file or database URL; default $XTALSCREEN_DB, else ./drops.sqlite")
    q.add_argument("--once", action="store_true", help="one run, then exit (the default)")
    q.add_argument("--every", metavar="PERIOD", help="run every PERIOD (30m, 1h, 1d) until stopped")
    _model_args(q)
    q.add_argument("--batch", type=int, default=32, help="images per model batch")
    q.add_argument("--workers", type=int, default=0,
                   help="dask worker processes (0 or 1: in this process)")
    q.add_argument("--cluster", default="local", choices=["local", "slurm"],
                   help="local dask cluster, or Slurm through dask-jobqueue (pip install dask-jobqueue)")
    q.add_argument("--cluster-option", action="append", metavar="KEY=VALUE",
                   help="dask_jobqueue.SLURMCluster argument (queue=, account=, memory=, walltime=)")
    q.add_argument("--connections", type=int, default=10,
                   help="most simultaneous image transfers (C4: 10)")
    q.add_argument("--scratch", default=".xtalscreen-scratch", metavar="DIR",
                   help="node-local folder for image copies and checkpoints")
    q.add_argument("--copy-local", action="store_true",
                   help="copy local image files to --scratch too (default: read them in place)")
    q.add_argument("--archive", metavar="FILE", help="append-only CSV archive of all probabilities")
    q.add_argument("--notify", metavar="URL",
                   help="send run summaries and failures to a chat webhook (https://...) or "
                        "e-mail (smtp://HOST:PORT?to=ADDR, mailto:ADDR?smtp=HOST:PORT)")
    q.add_argument("--log-file", metavar="FILE", help="rotating debug log file")
    q.add_argument("--limit", type=int, metavar="N", help="at most N inspections this run")
    q.add_argument("-v", "--verbose", action="store_true", help="debug messages on the console")
    q.set_defaults(func=run_run)

    q = add_command(
        dsub, "score", help="score drop images without a database",
        description="Classify image files or URLs with a drop model and print the class and the "
                    "4 probabilities per image (CSV with --out). Unreadable images are reported "
                    "and skipped.",
        examples="  xtalscreen drops score plates/XS000-0001/*/A01_1.jpg\n"
                 "  xtalscreen drops score *.jpg --model model.onnx --mapping map.json --out s.csv\n")
    q.add_argument("images", nargs="+", metavar="IMAGE", help="image files or URLs")
    _model_args(q)
    q.add_argument("--batch", type=int, default=32, help="images per model batch")
    q.add_argument("--out", metavar="CSV", help="write the scores as CSV")
    q.set_defaults(func=run_score)

    q = add_command(
        dsub, "train-demo", help="train the demonstration drop model on rendered drops",
        description="Reproduce the shipped demonstration model: render drops, train a small CNN "
                    "(a few minutes on 2 CPU cores), choose the interesting-drop threshold at TPR "
                    "0.8 on validation, and report held-out accuracy. Demonstration only: it has "
                    "never seen a real drop.",
        examples="  xtalscreen drops train-demo --out demo_drop_model.pt --seed 0\n")
    q.add_argument("--out", required=True, metavar="FILE", help="checkpoint to write (.pt)")
    q.add_argument("--seed", type=int, default=0, help="random seed")
    q.add_argument("--per-class", type=int, default=300, help="training images per class")
    q.add_argument("--epochs", type=int, default=16, help="training epochs")
    q.set_defaults(func=run_train_demo)
