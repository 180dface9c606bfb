"""``xtalscreen spots``, ``label`` and ``baseline``: classical spot finding, hit labelling and the
feature + RF/SVM baselines."""

from __future__ import annotations

import csv
import json
import sys
import zlib
from pathlib import Path

from xtalscreen.cli import add_command
from xtalscreen.errors import InputError, ParameterError


# ----------------------------------------------------------------------------- shared options
def _add_finder_args(p) -> None:
    from xtalscreen.cli.io_cmds import _add_reader_args
    from xtalscreen.spots.find import ALGORITHMS

    _add_reader_args(p)
    p.add_argument("--algorithm", choices=ALGORITHMS, default="dispersion",
                   help="spot finder")
    p.add_argument("--param", "-p", action="append", default=[], metavar="NAME=VALUE",
                   help="finder parameter, repeatable (dispersion: kernel_size, gain, "
                        "sigma_background, sigma_strong, min_local, global_threshold, "
                        "min_spot_size, max_spot_size; dispersion_extended: those and "
                        "sigma_sum, sigma_peak, filter_sigma, streak_sigma, streak_width, "
                        "streak_prescreen, background_size, inner_size, exclude_radius, "
                        "min_background; peakfinder8: adc_threshold, min_snr, "
                        "threshold_sigma, min_pix, max_pix, local_bg_radius, min_res, max_res)")
    p.add_argument("--d-min", type=float, metavar="A", help="keep spots with d >= this (Å)")
    p.add_argument("--d-max", type=float, metavar="A", help="keep spots with d <= this (Å)")
    p.add_argument("--ice-rings", action="store_true", help="drop spots on ice rings")
    p.add_argument("--workers", type=int, default=1, metavar="N", help="worker processes")
    p.add_argument("--no-progress", action="store_true", help="never show a progress bar")


def _parse_params(items: list[str]) -> dict:
    out = {}
    for item in items:
        if "=" not in item:
            raise ParameterError(f"--param must be NAME=VALUE, got {item!r}")
        k, v = item.split("=", 1)
        k = k.strip().replace("-", "_")
        v = v.strip()
        if v.lower() in ("none", "auto"):
            out[k] = None
            continue
        try:
            out[k] = int(v)
        except ValueError:
            try:
                out[k] = float(v)
            except ValueError:
                raise ParameterError(f"--param {k}: {v!r} is not a number") from None
    return out


def _filters(args) -> dict:
    f = {}
    if args.d_min is not None:
        f["d_min"] = args.d_min
    if args.d_max is not None:
        f["d_max"] = args.d_max
    if args.ice_rings:
        f["ice_rings"] = True
    return f


def _open_kw(args) -> dict:
    from xtalscreen.cli.io_cmds import _reader_kwargs

    return _reader_kwargs(args)


def _report(msg: str) -> None:
    print(f"skipped {msg}", file=sys.stderr)


def _quiet_reader_log() -> None:
    """Bad items are reported once, by us: keep the readers' log warnings off stderr."""
    import logging

    logging.getLogger("xtalscreen.io").addHandler(logging.NullHandler())


# ----------------------------------------------------------------------------- spots
def run_spots_cmd(args) -> int:
    from xtalscreen.spots.batch import run_spots
    from xtalscreen.spots.find import make_params
    from xtalscreen.spots.hitrules import SpotCountRule

    _quiet_reader_log()
    params = _parse_params(args.param)
    make_params(args.algorithm, **params)
    rule = SpotCountRule(min_spots=args.min_spots, max_spots=args.max_spots)
    summary = run_spots(args.paths, algorithm=args.algorithm, params=params, filters=_filters(args),
                        rule=rule, out_dir=args.out, workers=args.workers,
                        max_peaks=args.max_peaks, progress=False if args.no_progress else None,
                        report=_report, open_kw=_open_kw(args))
    if args.json:
        print(json.dumps(summary.as_dict(), indent=1, default=str))
    else:
        for line in summary.lines():
            print(line)
    if summary.frames == 0:
        raise InputError("no frame could be searched in " + ", ".join(map(str, args.paths)))
    return 0 if summary.bad == 0 else 2


# ----------------------------------------------------------------------------- label
SPLITS = ("train", "val", "test")


def _split_of(path: str, frame: int, fractions, seed: int) -> str:
    """Deterministic split from a hash of (seed, file name, frame)."""
    h = zlib.crc32(f"{seed}:{Path(path).name}:{frame}".encode()) / 2 ** 32
    edges = [sum(fractions[: i + 1]) / sum(fractions) for i in range(3)]
    for name, e in zip(SPLITS, edges):
        if h < e:
            return name
    return "test"


def run_label_cmd(args) -> int:
    from xtalscreen.spots.batch import run_spots
    from xtalscreen.spots.find import make_params
    from xtalscreen.spots.hitrules import make_rule

    _quiet_reader_log()
    params = _parse_params(args.param)
    make_params(args.algorithm, **params)
    rule_kw = _parse_params(args.rule_param)
    rule = make_rule(args.rule, **rule_kw)
    try:
        fractions = [float(v) for v in args.split.split(",")]
    except ValueError:
        raise ParameterError(f"--split must be three numbers train,val,test, got {args.split!r}") from None
    if len(fractions) != 3 or min(fractions) < 0 or sum(fractions) <= 0:
        raise ParameterError(f"--split must be three non-negative numbers, got {args.split!r}")
    out = Path(args.out)
    if out.exists() and not args.overwrite:
        raise InputError("output exists; choose another --out or pass --overwrite", path=str(out))
    out.parent.mkdir(parents=True, exist_ok=True)
    rows = []

    def keep(r) -> None:
        if r.decision is None:
            return
        rows.append([str(Path(r.source).resolve()) if r.source else "", r.index,
                     _split_of(r.source, r.index, fractions, args.seed), r.decision, r.n_spots])

    summary = run_spots(args.paths, algorithm=args.algorithm, params=params,
                        filters=_filters(args), rule=rule, out_dir=None, workers=args.workers,
                        progress=False if args.no_progress else None, report=_report,
                        open_kw=_open_kw(args), on_result=keep)
    with open(out, "w", newline="") as fh:
        w = csv.writer(fh)
        w.writerow(["file", "frame", "split", "label", "n_spots"])
        w.writerows(rows)
    dropped = summary.decisions.get("dropped", 0)
    counts = {k: v for k, v in summary.decisions.items() if k != "dropped"}
    info = {"labels": str(out), "frames": summary.frames, "labelled": len(rows),
            "dropped": dropped, "bad": summary.bad, "classes": counts, "rule": rule.as_dict()}
    if args.json:
        print(json.dumps(info, indent=1))
    else:
        print(f"frames: {summary.frames} good, {summary.bad} bad (skipped)")
        print(f"labelled: {len(rows)} (" + ", ".join(f"{k}={v}" for k, v in sorted(counts.items()))
              + f"), dropped as ambiguous: {dropped}")
        print(f"labels: {out}")
    if summary.frames == 0:
        raise InputError("no frame could be searched in " + ", ".join(map(str, args.paths)))
    return 0 if summary.bad == 0 else 2


# ----------------------------------------------------------------------------- baseline
def run_baseline_cmd(args) -> int:
    from xtalscreen.features import baselines, datasets

    if args.action == "train":
        size = args.size or 512
        data = datasets.load_dataset(args.data, split=args.train_split, label=args.label,
                                     size=size, limit=args.limit)
        if args.search:
            result = baselines.search(data.images, data.labels, classes=data.classes,
                                      classifiers=tuple(args.classifier.split(",")),
                                      extractors=tuple(args.extractor.split(",")),
                                      n_trials=args.trials, cv=args.cv, rng=args.seed,
                                      timeout=args.timeout)
            pipe = result.pipeline
            extra = {"search": {"best_params": result.best_params, "cv_accuracy": result.best_score,
                                "n_trials": result.n_trials}}
        else:
            pipe = baselines.make_pipeline(args.extractor.split(",")[0], args.classifier.split(",")[0],
                                           classes=data.classes, rng=args.seed)
            pipe.fit(data.images, data.labels)
            extra = {}
        pipe.input_size = size
        saved = baselines.save_pipeline(pipe, args.model, extra=extra)
        info = {"model": str(saved), "train_frames": len(data.labels), "classes": data.classes,
                "extractor": pipe.extractor_spec(), "classifier": pipe.classifier_name, **extra}
    else:
        pipe = baselines.load_pipeline(args.model)
        size = args.size or getattr(pipe, "input_size", None) or 512
        data = datasets.load_dataset(args.data, split=args.eval_split, label=args.label,
                                     size=size, limit=args.limit, classes=pipe.classes)
        info = baselines.evaluate(pipe, data.images, data.labels)
        info["frames"] = len(data.labels)
    if args.json:
        print(json.dumps(info, indent=1, default=str))
    else:
        print(baselines.format_report(info))
    return 0


# ----------------------------------------------------------------------------- registration
def register(sub) -> None:
    p = add_command(
        sub, "spots", help="find Bragg spots and hits with a classical spot finder",
        description="Find Bragg spots in every frame (DIALS dispersion or peakfinder8), decide "
                    "hits by spot count, and write frames.csv, spots.csv, CXI peak arrays "
                    "(peaks.h5) and a CrystFEL list of hits (hits.lst).",
        examples="  xtalscreen spots run_0001.h5 --out spots_out\n"
                 "  xtalscreen spots cbf_dir/ --algorithm peakfinder8 -p min_snr=6 --workers 4\n"
                 "  xtalscreen spots run.h5 --min-spots 15 --max-spots 500 --d-min 2.0 --ice-rings\n"
                 "  xtalscreen spots run.h5 --geometry cspad.geom -p gain=7.5 --json")
    p.add_argument("paths", nargs="+", help="image files, folders, globs or .lst files")
    _add_finder_args(p)
    p.add_argument("--out", metavar="DIR", help="write frames.csv, spots.csv, peaks.h5, hits.lst here")
    p.add_argument("--min-spots", type=int, default=10, metavar="N", help="hit if n_spots >= N")
    p.add_argument("--max-spots", type=int, default=None, metavar="N",
                   help="... and n_spots <= N (rejects ice/saturated frames)")
    p.add_argument("--max-peaks", type=int, default=2048, metavar="N",
                   help="peaks kept per frame in peaks.h5 (the strongest)")
    p.add_argument("--json", action="store_true", help="print the summary as JSON")
    p.set_defaults(func=run_spots_cmd)

    p = add_command(
        sub, "label", help="label a real run hit/miss from spot counts (a training set)",
        description="Run a spot finder over unlabelled frames and write labels.csv (file, frame, "
                    "split, label, n_spots) with a hit rule: 'li' (Po-Nan Li: < 2 spots miss, "
                    "> 10 hit, in between dropped), 'count' (hit if >= min_spots) or 'ke' "
                    "(hit / maybe / miss bands).",
        examples="  xtalscreen label run_0001.h5 --out labels.csv\n"
                 "  xtalscreen label cbf_dir/ --rule ke -r maybe_min=5 -r hit_min=20 --out l.csv\n"
                 "  xtalscreen label run.h5 --rule count -r min_spots=15 --split 80,10,10")
    p.add_argument("paths", nargs="+", help="image files, folders, globs or .lst files")
    _add_finder_args(p)
    p.add_argument("--out", required=True, metavar="CSV", help="labels.csv to write")
    p.add_argument("--overwrite", action="store_true", help="replace an existing --out")
    p.add_argument("--rule", choices=("li", "count", "ke"), default="li", help="hit rule")
    p.add_argument("--rule-param", "-r", action="append", default=[], metavar="NAME=VALUE",
                   help="rule parameter (li: miss_below, hit_above; count: min_spots, max_spots; "
                        "ke: maybe_min, hit_min, max_spots)")
    p.add_argument("--split", default="80,10,10", help="train,val,test shares (deterministic hash)")
    p.add_argument("--seed", type=int, default=0, help="seed of the split hash")
    p.add_argument("--json", action="store_true", help="print the summary as JSON")
    p.set_defaults(func=run_label_cmd)

    p = add_command(
        sub, "baseline", help="train/evaluate GLCM/LBP/SIFT + random forest/SVM baselines",
        description="Feature-extractor + classifier baselines of DiffraNet (paper 002): GLCM, LBP, "
                    "SIFT bag of visual words or raw pixels with a random forest or an SVM; "
                    "optional Optuna search over the Table 8 space. DATA is a folder written by "
                    "'xtalscreen simulate' (labels.csv), a labels.csv, or a folder with one "
                    "sub-folder of images per class.",
        examples="  xtalscreen baseline train sim_diffranet/ --model rf_glcm.joblib\n"
                 "  xtalscreen baseline train sim/ --search --trials 30 --model best.joblib\n"
                 "  xtalscreen baseline evaluate sim/ --model rf_glcm.joblib --json")
    p.add_argument("action", choices=("train", "evaluate"))
    p.add_argument("data", help="dataset folder, labels.csv, or folder of class sub-folders")
    p.add_argument("--model", required=True, metavar="FILE", help="pipeline file (.joblib)")
    p.add_argument("--extractor", default="glcm", help="glcm, lbp, sift, raw (comma list with --search)")
    p.add_argument("--classifier", default="rf", help="rf or svm (comma list with --search)")
    p.add_argument("--label", default="diffranet_class",
                   help="labels.csv column to learn (diffranet_class, ke_class, label)")
    p.add_argument("--train-split", default="train", help="split used by train ('all' for every row)")
    p.add_argument("--eval-split", default="test", help="split used by evaluate ('all' for every row)")
    p.add_argument("--size", type=int, default=None, metavar="PX",
                   help="images are resized to PX x PX (area average) before feature extraction "
                        "(train: 512; evaluate: the size the pipeline was trained on)")
    p.add_argument("--limit", type=int, default=None, metavar="N", help="use at most N frames")
    p.add_argument("--search", action="store_true", help="Optuna search (paper 002 Table 8 space)")
    p.add_argument("--trials", type=int, default=20, help="search trials")
    p.add_argument("--cv", type=int, default=3, help="cross-validation folds of the search")
    p.add_argument("--timeout", type=float, default=None, metavar="S", help="search time limit")
    p.add_argument("--seed", type=int, default=0, help="random seed (search, forest, codebook)")
    p.add_argument("--json", action="store_true", help="print the report as JSON")
    p.set_defaults(func=run_baseline_cmd)
