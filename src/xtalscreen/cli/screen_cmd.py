"""``xtalscreen screen``: classify frames as hit / maybe / miss with a trained model;
``xtalscreen calibrate``: choose its per-detector operating points on labelled frames."""

from __future__ import annotations

import sys

from xtalscreen.cli import add_command
from xtalscreen.errors import ParameterError


def register(sub) -> None:
    p = add_command(
        sub, "screen", help="screen frames with a hit-finding CNN: results.csv, hits.lst, hits.h5",
        description="Read frames (any supported file, folder, glob, list file or HDF5 run, or a live "
                    "ZeroMQ stream), classify each as hit / maybe / miss with the shipped model or a "
                    "checkpoint from 'xtalscreen train', and write OUT/results.csv (file, frame, "
                    "p_hit, p_maybe, p_miss, decision[, class][, n_spots], flags; class: the model's "
                    "own class when its classes are not hit/maybe/miss, e.g. DiffraNet's for "
                    "--model diffranet5), OUT/hits.lst (CrystFEL list "
                    "of the kept frames: hit or maybe), OUT/hits.h5 (the kept frames) and OUT/bad.txt. "
                    "A frame is kept when p_hit + p_maybe >= --threshold; without --threshold, "
                    "each detector's operating point stored in the model by 'xtalscreen "
                    "calibrate' (else 0.5); such a model's probabilities are temperature-scaled "
                    "per detector. Without --geometry, a CrystFEL file beside the data (geometry.geom "
                    "in the file's folder, or FOLDER.geom one level up, as 'xtalscreen simulate' "
                    "writes them) is used for the frames whose shape it describes. "
                    "Flags: no_geometry (multi-panel frames without a geometry; pass "
                    "--geometry), no_beam_center (cropped around the image centre), saturated "
                    "(over 5 % of the pixels at the file's saturation level). Frames with no valid pixel "
                    "get decision 'bad'. Unreadable files/frames are reported, skipped and counted. "
                    "A live hit rate goes to stderr, the summary to stdout.",
        examples="  xtalscreen screen run_0001.h5 --out screen_out/\n"
                 "  xtalscreen screen 'runs/*.h5' --geometry cspad.geom --workers 2 --batch 32 --out out/\n"
                 "  xtalscreen screen cbf_folder/ --spots --threshold 0.3 --out out/\n"
                 "  xtalscreen screen frames.lst --model runs/ke/best.pt --out out/\n"
                 "  xtalscreen screen --zmq tcp://127.0.0.1:5555 --max-frames 1000 --out live/")
    p.add_argument("paths", nargs="*", metavar="PATH", help="files, folders, globs or .lst list files")
    p.add_argument("--model", default="default",
                   help="'default' (the shipped model), 'diffranet5' (the same network with "
                        "DiffraNet's five classes) or a checkpoint file from xtalscreen train")
    p.add_argument("--out", default="screen_out", help="output folder")
    p.add_argument("--workers", type=int, default=1, help="worker processes (reading + inference)")
    p.add_argument("--batch", type=int, default=32, help="frames per inference batch / work unit")
    p.add_argument("--spots", action="store_true", help="also count Bragg spots (n_spots column)")
    p.add_argument("--threshold", type=float, default=None,
                   help="keep a frame when p_hit + p_maybe >= this, on every detector (default: "
                        "the model's operating point for the frame's detector, else 0.5); a "
                        "calibrated model's temperatures still scale the probabilities")
    p.add_argument("--views", type=int, choices=[1, 2, 4, 8], default=None,
                   help="test-time views averaged per frame (rotations/mirrors, one forward pass "
                        "each; default: those of the detector's operating point, else the model "
                        "file's own (train-head records them), else 1)")
    p.add_argument("--geometry", help="CrystFEL .geom file of the detector (multi-panel data; "
                                      "default: a geometry.geom beside the data, where it fits)")
    p.add_argument("--no-geometry-beside", action="store_true",
                   help="do not look for a geometry file beside the data")
    p.add_argument("--mask", help="mask file (nonzero = bad) ORed into every frame's mask")
    p.add_argument("--dataset", help="HDF5 dataset holding the frames (auto-detected when not given)")
    p.add_argument("--beam-center", nargs=2, type=float, metavar=("FS", "SS"),
                   help="direct-beam position in pixels, overriding the files'")
    p.add_argument("--no-auto-mask", action="store_true",
                   help="trust the files' masks: do not also mask what the data reveal (sentinel "
                        "values, zero-filled gaps); saves a few ms per multi-megapixel frame")
    p.add_argument("--no-hits-h5", action="store_true", help="do not write hits.h5")
    p.add_argument("--zmq", metavar="ADDRESS", help="read frames from a ZeroMQ PUSH socket instead of files")
    p.add_argument("--zmq-bind", action="store_true", help="bind ADDRESS (the sender connects)")
    p.add_argument("--max-frames", type=int, help="ZeroMQ: stop after this many frames")
    p.add_argument("--timeout", type=float, help="ZeroMQ: stop after this many seconds without a frame")
    p.add_argument("--device", default="cpu",
                   help="where inference runs: cpu (default), cuda, cuda:N or auto (a GPU when "
                        "present); reading and preprocessing stay on the CPU workers")
    p.add_argument("--quiet", action="store_true", help="no live hit-rate lines")
    p.set_defaults(func=run)

    c = add_command(
        sub, "calibrate", help="choose a screening model's per-detector thresholds on labelled frames",
        description="Run a screening model over labelled frames as 'screen' does, and per detector "
                    "(told apart by the raw data shape) fit a softmax temperature (calibrated "
                    "probabilities) and the keep threshold: the highest threshold keeping at least "
                    "--min-sensitivity of the hits and maybes (or the lowest rejecting "
                    "--min-specificity of the misses; with both, the one where the smaller margin "
                    "over the two minima, in standard errors, is largest; or with --balanced the one "
                    "maximising sensitivity + specificity). Writes a copy of the model with these "
                    "operating points; 'screen --model OUT' then uses each frame's own detector's. "
                    "Use frames the model was not trained on: a validation split, frames simulated "
                    "for your detector, or frames labelled with 'xtalscreen label'.",
        examples="  xtalscreen simulate --preset cspad --n 1500 --visibility measured --out sim_cspad/\n"
                 "  xtalscreen calibrate sim_cspad/ --split val --out cspad_calibrated.pt\n"
                 "  xtalscreen calibrate labelled/ --model run/best.pt --split all "
                 "--min-specificity 0.97 --out run/calibrated.pt\n"
                 "  xtalscreen calibrate sim_all/ --split all --min-sensitivity 0.985 --confidence 0.9 "
                 "--out held.pt\n"
                 "  xtalscreen calibrate sim_all/ --split all --min-sensitivity 0.985 --min-specificity 0.97 "
                 "--out both.pt\n"
                 "  xtalscreen calibrate sim_rayonix/ --split all --min-sensitivity 0.985 --min-specificity 0.97 "
                 "--preprocess prefilter_sigma=1.2,bin=3 --out rayonix.pt\n"
                 "  xtalscreen screen 'runs/*.h5' --model cspad_calibrated.pt --out out/")
    c.add_argument("data", help="labelled frames: xtalscreen simulate output, a labels.csv, or "
                                "DiffraNet-style class folders")
    c.add_argument("--model", default="default", help="'default' or a checkpoint file")
    c.add_argument("--out", required=True, help="calibrated model file to write")
    c.add_argument("--split", default="val", help="which split to use (train/val/test, or 'all')")
    c.add_argument("--min-sensitivity", type=float, default=None,
                   help="keep at least this share of hits+maybes (default 0.985)")
    c.add_argument("--min-specificity", type=float, default=None,
                   help="instead: reject at least this share of misses; with --min-sensitivity too: "
                        "the threshold with the largest smaller margin over both minima")
    c.add_argument("--balanced", action="store_true",
                   help="instead: the threshold maximising sensitivity + specificity")
    c.add_argument("--confidence", type=float, default=None, metavar="C",
                   help="hold the minimum rate on new frames with confidence C (e.g. 0.9; a one-sided "
                        "Clopper-Pearson bound: with 1000 hits, 0.985 at 0.9 keeps ~99.0 %% of "
                        "these); default: on these frames only, met on new ones about half the time")
    c.add_argument("--min-frames", type=int, default=50, help="frames a detector needs for a point")
    c.add_argument("--no-pooled", action="store_true",
                   help="do not fit the pooled point ('*') that serves other detectors")
    c.add_argument("--views", type=int, choices=[1, 2, 4, 8], default=None,
                   help="score with the logits averaged over this many rotations/mirrors of the "
                        "input (recorded in the points; screen then uses as many for those "
                        "detectors); default: the model file's own views (train-head records "
                        "them), else 1")
    c.add_argument("--preprocess", default=None, metavar="KEY=VALUE[,KEY=VALUE]",
                   help="change the model's preprocessing for these detectors (recorded in their "
                        "points; screen does the same): prefilter_sigma (Gaussian matched filter "
                        "before binning, in detector pixels: for spots spread by a wide point-spread "
                        "function, e.g. 1.2 on a Rayonix), bin, bin_reduce (max/mean/sum), crop (N or "
                        "HxW); e.g. prefilter_sigma=1.2,bin=3")
    c.add_argument("--pooled-rule", choices=["each", "all"], default="each",
                   help="the pooled point meets the rate on each calibrated detector, under one "
                        "temperature (default: sensitivity first for an unseen detector), or on "
                        "all frames together")
    c.add_argument("--limit", type=int, help="score at most this many frames")
    c.add_argument("--batch", type=int, default=32, help="frames per inference batch")
    c.add_argument("--device", default="cpu", help="cpu, cuda or auto")
    c.add_argument("--json", help="also write the points to this JSON file")
    c.set_defaults(func=run_calibrate)


def parse_preprocess_changes(text: str | None) -> dict:
    """``--preprocess`` as a dict: ``"prefilter_sigma=1.2,bin=3"`` ->
    ``{"prefilter_sigma": 1.2, "bin": 3}``; ``crop`` as ``N`` or ``HxW``. The values are
    checked by :func:`~xtalscreen.evaluate.operating.check_point_preprocess`."""
    from xtalscreen.evaluate.operating import POINT_PREPROCESS, check_point_preprocess

    if not text:
        return {}
    out: dict = {}
    for item in text.split(","):
        key, eq, value = (part.strip() for part in item.partition("="))
        if not eq or not key or not value:
            raise ParameterError(f"--preprocess {item!r}: give KEY=VALUE, e.g. prefilter_sigma=1.2 "
                                 f"(keys: {', '.join(POINT_PREPROCESS)})")
        if key not in POINT_PREPROCESS:
            raise ParameterError(f"--preprocess {item!r}: an operating point may change only the "
                                 f"preprocessing settings {', '.join(POINT_PREPROCESS)}")
        try:
            if key == "bin_reduce":
                out[key] = value
            elif key == "crop":
                out[key] = [int(v) for v in value.lower().split("x")] * (1 if "x" in value.lower() else 2)
            elif key == "bin":
                out[key] = value if value == "auto" else int(value)
            else:
                out[key] = float(value)
        except ValueError:
            raise ParameterError(f"--preprocess {item!r}: {value!r} is not a valid {key}") from None
    return check_point_preprocess(out)


def run_calibrate(args) -> int:
    import json

    from xtalscreen.screen.calibrate import calibrate

    min_sens = args.min_sensitivity
    if args.balanced and (min_sens is not None or args.min_specificity is not None):
        raise ParameterError("--balanced replaces --min-sensitivity / --min-specificity; give one rule")
    if min_sens is None and args.min_specificity is None and not args.balanced:
        min_sens = 0.985
    res = calibrate(args.model, args.data, out=args.out,
                    split=None if args.split == "all" else args.split, min_sensitivity=min_sens,
                    min_specificity=args.min_specificity, balanced=args.balanced,
                    confidence=args.confidence, min_frames=args.min_frames, pooled=not args.no_pooled,
                    pooled_rule=args.pooled_rule, views=args.views,
                    preprocess=parse_preprocess_changes(args.preprocess), batch=args.batch, limit=args.limit, device=args.device,
                    echo=lambda m: print(m, file=sys.stderr))
    print(f"{res.frames} frames scored; operating points (on these frames):\n")
    print(res.table())
    for line in res.skipped:
        print(f"skipped {line}", file=sys.stderr)
    for line in res.warnings:
        print(f"warning: {line}", file=sys.stderr)
    if res.bad_items:
        print(f"{len(res.bad_items)} frame(s) left out, the first: {res.bad_items[0]}", file=sys.stderr)
    if res.kept:
        print(f"kept the model's points for {', '.join(sorted(res.kept))}")
    print(f"wrote {res.out}")
    if args.json:
        from pathlib import Path

        Path(args.json).write_text(json.dumps({k: v.to_dict() for k, v in res.points.items()},
                                              indent=2) + "\n")
    return 0


def run(args) -> int:
    from xtalscreen.screen import ZmqSource, screen

    if not args.paths and not args.zmq:
        raise ParameterError("give at least one PATH to screen (or --zmq ADDRESS)")
    if args.paths and args.zmq:
        raise ParameterError("give PATHs or --zmq, not both")
    read = {k: v for k, v in (("geometry", args.geometry), ("mask", args.mask),
                              ("dataset", args.dataset)) if v is not None}
    if args.no_auto_mask:
        read["auto_mask"] = False
    if args.no_geometry_beside:
        read["geometry_beside"] = False
    if args.beam_center is not None:
        read["beam_center"] = tuple(args.beam_center)
    source = None
    if args.zmq:
        source = ZmqSource(args.zmq, bind=args.zmq_bind, max_frames=args.max_frames,
                           timeout=args.timeout)
    s = screen(args.paths or None, out=args.out, model=args.model, workers=args.workers,
               batch=args.batch, spots=args.spots, threshold=args.threshold, source=source,
               write_hits=not args.no_hits_h5, live=False if args.quiet else True,
               device=args.device, views=args.views, **read)
    print(f"screened {s.line()}")
    for g, n in sorted(s.geometries.items()):
        print(f"geometry {g} (found beside {n} data file{'s' if n != 1 else ''}; "
              "--no-geometry-beside: do not use it)")
    if s.operating_points:
        from xtalscreen.evaluate.operating import ANY_DETECTOR

        pts = s.operating_points
        how = "given --threshold" if s.threshold is not None else "model's operating points"
        other = (f"{s.threshold:g}" if s.threshold is not None
                 else f"{pts[ANY_DETECTOR]['threshold']:.3f} (pooled point)" if ANY_DETECTOR in pts
                 else "0.5")
        print(f"thresholds ({how}): " + ", ".join(
            f"{k} keep >= {v['threshold']:.3f} (temperature {v['temperature']:.2f}"
            + (f", {v['views']} views" if v.get("views", 1) > 1 else "")
            + "".join(f", {pk} {pv}" for pk, pv in v.get("preprocess", {}).items()) + ")"
            for k, v in sorted(pts.items()) if k != ANY_DETECTOR)
            + f"; other detectors {other} (a point of the same sensor layout first)")
    t = s.timings
    print("time per stage (s, summed over workers): " + ", ".join(
        f"{k} {t.get(k, 0.0):.2f}" for k in ("read", "preprocess", "infer", "spots", "write")))
    print(f"outputs: {s.outputs['results']}, {s.outputs['hits_lst']}"
          + "".join(f", {h}" for h in s.outputs["hits_h5"]))
    if s.bad_items:
        print(f"{len(s.bad_items)} bad item(s) skipped, listed in {s.outputs['bad']}", file=sys.stderr)
    return 0
