"""Train on some detector presets, test on others: DiffraNet 5-class and cross-preset figures.

Reuses the simulated frames of ``scripts/train_default_model.py`` (same ``--work`` folder; run
that first, or this script simulates them itself with the same arguments), cuts them once to
training windows (:mod:`xtalscreen.train.windows`, kept in ``--work``), trains ``--model`` (``ke2018`` or ``spotcount``) on the *train* split of ``--train-presets`` and reports, on the
*test* split (never used for model selection) of each of ``--test-presets``:

- ``--target diffranet``: 5-class accuracy, the confusion matrix, and blank/no-crystal vs
  diffraction (weak+good+strong) accuracy -- paper 002's two DeepFreak figures (98.51 %,
  99.83 %);
- ``--target ke``: 3-class accuracy and Hit+Maybe vs Miss sensitivity / specificity -- paper
  001's cross-dataset tables (a preset in ``--test-presets`` but not in ``--train-presets`` is a
  held-out detector).

``--draw-counts '{"weak": [5, 16], "good": [40, 100], "strong": [240, null]}'`` simulates its own
data (the test presets only, into ``--work``) with separated class populations
(:class:`~xtalscreen.simulate.config.LabelConfig` ``draw_counts``: labels are still the exact
counts, but frames near the class boundaries are not made), the closest the simulator comes to
DiffraNet's distinct weak/good/strong settings.

Writes ``OUT.json`` and ``OUT.md`` (``--out``, default under ``reports/``).

    .venv/bin/python scripts/preset_study.py --target diffranet --train-presets diffranet \\
        --test-presets diffranet --out reports/diffranet5
    .venv/bin/python scripts/preset_study.py --target ke --train-presets diffranet,cspad \\
        --test-presets pilatus2m,diffranet,cspad --out reports/cross_preset_pilatus2m
"""

from __future__ import annotations

import argparse
import json
import sys
import time
import warnings
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "scripts"))

import train_default_model as tdm  # noqa: E402


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--work", default="/tmp/xtalscreen_default_model")
    ap.add_argument("--frames", type=int, default=3000, help="as given to train_default_model.py")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--target", choices=["diffranet", "ke"], required=True)
    ap.add_argument("--train-presets", required=True, help="comma-separated")
    ap.add_argument("--test-presets", required=True, help="comma-separated")
    ap.add_argument("--img-size", type=int, default=256)
    ap.add_argument("--max-shift", type=int, default=32)
    ap.add_argument("--bin", default="auto")
    ap.add_argument("--bin-reduce", default="max", choices=["sum", "mean", "max"])
    ap.add_argument("--unbinned-up-to", type=int, default=1,
                    help="keep detectors whose auto factor is at most this at full resolution")
    ap.add_argument("--epochs", type=int, default=30)
    ap.add_argument("--batches-per-epoch", type=int, default=40)
    ap.add_argument("--lr", type=float, default=0.002)
    ap.add_argument("--model", default="ke2018", choices=["ke2018", "spotcount"])
    ap.add_argument("--widths", default=None, help="default: ke2018 8,16,32,64; spotcount 8,16,32,32")
    ap.add_argument("--patience", type=int, default=10)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--bn-batches", type=int, default=0,
                    help="precise BatchNorm statistics from this many training batches before each "
                         "validation (TrainConfig.bn_batches); 0: momentum estimates")
    ap.add_argument("--draw-counts", default=None, help="JSON class -> [lo, hi) visible spots to draw")
    ap.add_argument("--visibility", default="measured", choices=["expected", "measured"],
                    help="labels by the expected or the measured SNR of each spot (LabelConfig.visibility), "
                         "when this script simulates")
    ap.add_argument("--views", default="1",
                    help="test-time views to report, comma-separated (1, 2, 4, 8: logits averaged "
                         "over that many rotations/mirrors); the first one fills the main table")
    ap.add_argument("--out", required=True, help="output path without extension")
    args = ap.parse_args(argv)

    import torch

    from xtalscreen.preprocess import PreprocessConfig
    from xtalscreen.train import TrainConfig, train
    from xtalscreen.train.windows import window_preprocess

    torch.set_num_threads(args.threads)
    work = Path(args.work)
    t0 = time.perf_counter()
    if args.draw_counts:
        from xtalscreen.simulate import simulate_dataset

        draw = {k: tuple(v) for k, v in json.loads(args.draw_counts).items()}
        cfgs = {k: v for k, v in tdm.training_configs(args.visibility).items()
                if k in args.test_presets.split(",")}
        for c in cfgs.values():
            c.labels.draw_counts = draw
        if not (work / "raw" / "labels.csv").is_file():
            simulate_dataset(work / "raw", presets=tuple(cfgs), n=args.frames, seed=args.seed, workers=2,
                             split=(70, 15, 15), spots="none", configs=cfgs, progress=False)
    elif not (work / "raw" / "labels.csv").is_file():
        tdm.simulate(work / "raw", args.frames, args.seed, 2, visibility=args.visibility)
    bin_arg = args.bin if args.bin == "auto" else int(args.bin)
    shipped = PreprocessConfig(bin=bin_arg, bin_reduce=args.bin_reduce, crop=(args.img_size, args.img_size),
                               lcn_window=9, max_shift=args.max_shift, unbinned_up_to=args.unbinned_up_to)
    windows = work / (f"windows_{args.target}_{args.bin}_{args.bin_reduce}_{args.img_size}_{args.max_shift}"
                      + (f"_u{args.unbinned_up_to}" if args.unbinned_up_to > 1 else ""))
    data = tdm.reduce(work / "raw", windows, shipped=shipped, target=args.target, workers=2)
    presets = np.array([m["preset"] for m in data.meta])
    train_p = args.train_presets.split(",")
    test_p = args.test_presets.split(",")
    chosen = data.subset(np.flatnonzero(np.isin(presets, train_p)))
    if args.widths is None:
        args.widths = "8,16,32,64" if args.model == "ke2018" else "8,16,32,32"
    cfg = TrainConfig(model=args.model, img_size=args.img_size, target=args.target, epochs=args.epochs,
                      model_kwargs={"widths": [int(v) for v in args.widths.split(",")]}, optimizer="adamw",
                      batch_size=64, batches_per_epoch=args.batches_per_epoch, lr=args.lr, lr_end=1e-4,
                      preprocess={k: v for k, v in window_preprocess(shipped).to_dict().items() if k != "schema"},
                      patience=args.patience, seed=args.seed, device="cpu",
                      bn_batches=args.bn_batches)
    name = Path(args.out).name
    t1 = time.perf_counter()
    res = train(cfg, chosen.split("train"), val=chosen.split("val"), out_dir=work / f"study_{name}",
                echo=print, progress=False)
    t_train = time.perf_counter() - t1
    from xtalscreen.train import load_model

    model, pp, meta = load_model(res.best_path)
    classes = list(meta["classes"])
    from xtalscreen.preprocess.views import check_views

    views = [check_views(int(v)) for v in str(args.views).split(",") if v.strip()]
    by_views = {}
    for v in views:
        by_views[v] = _test(args, model, pp, classes, data, presets, train_p, test_p, v)
    results = by_views[views[0]]
    card = {"target": args.target, "classes": classes, "train_presets": train_p, "test_presets": test_p,
            "frames_per_split": {s: int(len(chosen.split(s))) for s in ("train", "val", "test")},
            "best": meta["best"], "train_seconds": round(t_train), "total_seconds": round(time.perf_counter() - t0),
            "command": ".venv/bin/python scripts/preset_study.py " + " ".join(sys.argv[1:] if argv is None else argv),
            "preprocess": shipped.to_dict(), "draw_counts": args.draw_counts, "views": views[0],
            "results": results, "results_by_views": {str(v): r for v, r in by_views.items()}}
    write_report(args, card, meta, by_views)
    return 0


def _test(args, model, pp, classes, data, presets, train_p, test_p, views: int) -> dict:
    """Figures on the test split of each preset in ``test_p``, logits averaged over ``views``."""
    from xtalscreen.train import FrameDataset, predict

    results = {}
    for p in test_p:
        test = data.subset(np.flatnonzero(presets == p)).split("test")
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            probs, _ = predict(model, FrameDataset(test, pp), batch_size=64, views=views)
        pred = np.nan_to_num(probs, nan=-1.0).argmax(1)
        true = test.labels
        k = len(classes)
        cm = np.zeros((k, k), int)
        for t, q in zip(true, pred):
            cm[t, q] += 1
        r = {"n": int(len(true)), "accuracy": float(np.mean(true == pred)), "confusion": cm.tolist(),
             "held_out": p not in train_p}
        if args.target == "diffranet":
            diff_t, diff_p = true >= 2, pred >= 2  # weak, good, strong
            r["diffraction_vs_none_accuracy"] = float(np.mean(diff_t == diff_p))
        else:
            r.update(tdm.hm_vs_miss(true, pred))
        results[p] = r
    return results


def write_report(args, card: dict, meta: dict, by_views: dict) -> None:
    """``--out``.json and .md."""
    results, train_p, test_p, classes = card["results"], card["train_presets"], card["test_presets"], card["classes"]
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.with_suffix(".json").write_text(json.dumps(card, indent=2) + "\n")
    lines = [f"# {args.target} study: train on {', '.join(train_p)}, test on {', '.join(test_p)}", "",
             f"Command: `{card['command']}`", "",
             f"{args.model} (widths {args.widths}) at {args.img_size} px, preprocessing bin {args.bin} ({args.bin_reduce}"
             + (f"; detectors with a factor <= {args.unbinned_up_to} unbinned at full resolution"
                if args.unbinned_up_to > 1 else "") + ") "
             f"+ LCN; train/val/test frames {card['frames_per_split']}; best epoch {meta['best'].get('epoch')}; "
             f"training {card['train_seconds']} s on the shared 2-core VM."
             + (f" Data simulated with separated classes, draw_counts {args.draw_counts}, labels by the "
                f"{args.visibility} SNR." if args.draw_counts else ""), "",
             f"Test split (never used for model selection), test-time views {card['views']}:", ""]
    if args.target == "diffranet":
        lines += ["| test preset | frames | 5-class accuracy | blank/no-crystal vs diffraction | target |",
                  "|---|---|---|---|---|"]
        for p, r in results.items():
            lines.append(f"| {p}{' (held out)' if r['held_out'] else ''} | {r['n']} | {100 * r['accuracy']:.1f} % | "
                         f"{100 * r['diffraction_vs_none_accuracy']:.2f} % | 98.6 % / 99.9 % |")
    else:
        lines += ["| test preset | frames | 3-class accuracy | sensitivity (Hit+Maybe) | specificity (Miss) | target |",
                  "|---|---|---|---|---|---|"]
        for p, r in results.items():
            tgt = ">= 90 % (cross-preset)" if r["held_out"] else "98.5 % / 97 %"
            lines.append(f"| {p}{' (held out)' if r['held_out'] else ''} | {r['n']} | {100 * r['accuracy']:.1f} % | "
                         f"{100 * r['sensitivity']:.1f} % | {100 * r['specificity']:.1f} % | {tgt} |")
    if len(by_views) > 1:
        lines += ["", "By test-time views (logits averaged over rotations/mirrors of the input):", "",
                  "| views | " + " | ".join(test_p) + " |", "|---" * (len(test_p) + 1) + "|"]
        for v, res in by_views.items():
            cells = [f"{100 * r['accuracy']:.1f} %" + (f" / {100 * r['diffraction_vs_none_accuracy']:.2f} %"
                                                      if "diffraction_vs_none_accuracy" in r else
                                                      f" / {100 * r['sensitivity']:.1f} / {100 * r['specificity']:.1f} %")
                     for r in (res[p] for p in test_p)]
            lines.append(f"| {v} | " + " | ".join(cells) + " |")
    for p, r in results.items():
        lines += ["", f"Confusion matrix, {p} (rows true, columns predicted: {', '.join(classes)}):", "",
                  "| true \\ predicted | " + " | ".join(classes) + " |", "|---" * (len(classes) + 1) + "|"]
        for c, row in zip(classes, r["confusion"]):
            lines.append(f"| {c} | " + " | ".join(str(v) for v in row) + " |")
    out.with_suffix(".md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))


if __name__ == "__main__":
    sys.exit(main())
