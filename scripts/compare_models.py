"""Compare screening models on an independent simulated test set, per detector preset.

The set is simulated with a seed no model was trained or selected on (``--seed``, default 777;
the shipped model's data used seed 0), with the training mix of
``scripts/train_default_model.py`` (DiffraNet CCD, CSPAD, Pilatus 2M; DiffraNet classes in
equal numbers, ice in a quarter of the frames). Each model screens the **raw** frames through
its own shipped preprocessing. Printed as Markdown, per preset and overall:

- Hit+Maybe vs Miss sensitivity / specificity at the model's argmax decision;
- ROC AUC of ``p_hit + p_maybe``;
- the sensitivity reached at >= 97 % specificity (the issue's operating point) when the
  threshold is chosen on the *first half* of the set and checked on the *second half*;
- for a model carrying per-detector operating points (``xtalscreen calibrate``, chosen on other
  frames), the figures at those points (temperature and threshold per detector, applied to
  the probabilities of the training-style preprocessing used for the other columns).

    .venv/bin/python scripts/compare_models.py --data /tmp/evalset --frames 1500 \\
        --model old=/tmp/old_default_ke.pt --model new=default
"""

from __future__ import annotations

import argparse
import json
import sys
import warnings
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "scripts"))


def simulate(out: Path, n: int, seed: int, workers: int) -> None:
    import train_default_model as tdm

    from xtalscreen.simulate import simulate_dataset

    if (out / "labels.csv").is_file():
        return
    cfgs = tdm.training_configs()
    simulate_dataset(out, presets=tuple(cfgs), n=n, seed=seed, workers=workers, split=(0, 0, 100),
                     spots="none", configs=cfgs, progress=False)


def _auc(pos_scores, neg_scores) -> float:
    from sklearn.metrics import roc_auc_score

    y = np.r_[np.ones(len(pos_scores)), np.zeros(len(neg_scores))]
    return float(roc_auc_score(y, np.r_[pos_scores, neg_scores])) if len(pos_scores) and len(neg_scores) else float("nan")


def operating_point(score, pos, first, spec: float = 0.97) -> dict:
    """Threshold with >= ``spec`` specificity on the ``first`` half; figures on the other half."""
    neg_a = np.sort(score[first & ~pos])
    # smallest threshold leaving at most (1 - spec) of the first half's misses at or above it
    k = int(np.floor((1 - spec) * len(neg_a)))
    thr = float(np.nextafter(neg_a[len(neg_a) - k - 1], np.inf)) if len(neg_a) > k else 0.5
    b = ~first
    return {"threshold": thr,
            "sensitivity": float(np.mean(score[b & pos] >= thr)),
            "specificity": float(np.mean(score[b & ~pos] < thr))}


def relabel(data, rule: str):
    """``data`` with its Ke labels recomputed from the ``n_spots_<rule>`` column (paper 001's
    counts: Hit from 10 visible spots, Maybe from 4)."""
    import dataclasses

    from xtalscreen.simulate.config import LabelConfig
    from xtalscreen.simulate.labels import ke_class
    from xtalscreen.train.datasets import map_label

    col = f"n_spots_{rule}"
    if not all(col in m for m in data.meta):
        sys.exit(f"--labels {rule}: labels.csv has no {col} column (simulated before it was recorded); "
                 "simulate the set again")
    lab = LabelConfig()
    y = np.array([map_label(ke_class(int(m[col]), lab), "ke") for m in data.meta])
    return dataclasses.replace(data, labels=y)


def preset_frames(path, preset: str, split: str = "test", limit: int | None = None):
    """``(frames, idx)``: the ``split`` frames of detector ``preset`` in the simulated set at
    ``path``, labelled by their measured spot count (:func:`relabel`), and their indices in the
    split; at most ``limit`` of them, spread over the set. Exits naming the set when it has none."""
    from xtalscreen.train import load_labels

    data = relabel(load_labels(path, target="ke").split(split), "measured")
    idx = np.flatnonzero(np.array([m["preset"] for m in data.meta]) == preset)
    if not len(idx):
        sys.exit(f"{path}: no {split} frames of preset {preset!r}")
    if limit and limit < len(idx):
        idx = idx[np.linspace(0, len(idx) - 1, limit).round().astype(int)]
    return data.subset(idx), idx


def evaluate(model_ref: str, data, presets: np.ndarray, first: np.ndarray) -> dict:
    import torch

    from xtalscreen.models.pretrained import load_screening_model
    from xtalscreen.train import FrameDataset, predict

    torch.set_num_threads(2)
    model, pp, meta = load_screening_model(model_ref)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        probs, _ = predict(model, FrameDataset(data, pp), batch_size=64)
    score = probs[:, 0] + probs[:, 1]
    pred_keep = np.nan_to_num(probs, nan=-1.0).argmax(1) != 2
    pos = data.labels != 2
    # the model's own per-detector operating points (xtalscreen calibrate), as `screen` applies them
    op_keep = None
    if meta.get("operating_points"):
        from xtalscreen.evaluate.operating import keep_at_points, point_for, point_key
        from xtalscreen.screen.workers import parse_operating_points

        points = parse_operating_points(meta["operating_points"], path=meta["path"])
        ds = FrameDataset(data, pp)
        key_of = {p: point_key(points, ds.read(int(np.flatnonzero(presets == p)[0])))
                  for p in set(presets)}
        op_probs = probs.copy()
        for p in set(presets):  # a point fitted on several test-time views gets them here too
            v = getattr(point_for(points, key_of[p]), "views", 1)
            if v > 1:
                idx = np.flatnonzero(presets == p)
                with warnings.catch_warnings():
                    warnings.simplefilter("ignore")
                    op_probs[idx] = predict(model, FrameDataset(data.subset(idx), pp), batch_size=64,
                                            views=v)[0]
        op_keep = keep_at_points(op_probs, [key_of[p] for p in presets], points)
    out = {}
    for name in sorted(set(presets)) + ["all"]:
        k = np.ones(len(pos), bool) if name == "all" else presets == name
        out[name] = {
            "n": int(k.sum()),
            "sensitivity": float(np.mean(pred_keep[k & pos])),
            "specificity": float(np.mean(~pred_keep[k & ~pos])),
            "auc": _auc(score[k & pos], score[k & ~pos]),
            "at_97": operating_point(score[k], pos[k], first[k]),
        }
        if op_keep is not None:
            out[name]["operating_points"] = {"sensitivity": float(np.mean(op_keep[k & pos])),
                                             "specificity": float(np.mean(~op_keep[k & ~pos]))}
    out["_scores"] = (score, pos, presets)
    out["_model"] = {"name": getattr(model, "model_name", "") or type(model).__name__,
                     "parameters": int(sum(p.numel() for p in model.parameters()))}
    return out


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--data", default="/tmp/xtalscreen_evalset", help="simulated set (made when absent)")
    ap.add_argument("--frames", type=int, default=1500)
    ap.add_argument("--seed", type=int, default=777)
    ap.add_argument("--workers", type=int, default=2)
    ap.add_argument("--model", action="append", required=True, metavar="LABEL=MODEL",
                    help="a model to compare: LABEL=default or LABEL=path/to/checkpoint.pt")
    ap.add_argument("--labels", default="measured", choices=["file", "expected", "measured"],
                    help="Hit/Maybe/Miss truth: labels.csv's ke_class (file), or recomputed from the "
                         "visible-spot count of either rule (LabelConfig.visibility)")
    ap.add_argument("--json", help="also write the figures to this JSON file")
    ap.add_argument("--thresholds", default="0.7,0.6,0.5,0.4,0.3,0.2",
                    help="print each model's sensitivity / specificity at these --threshold values")
    args = ap.parse_args(argv)

    from xtalscreen.train import load_labels

    data_dir = Path(args.data)
    simulate(data_dir, args.frames, args.seed, args.workers)
    data = load_labels(data_dir, target="ke").split("test")
    if args.labels != "file":
        data = relabel(data, args.labels)
    presets = np.array([m["preset"] for m in data.meta])
    # first / second half of each preset, by position in the (seeded) set
    first = np.zeros(len(presets), bool)
    for p in set(presets):
        idx = np.flatnonzero(presets == p)
        first[idx[: len(idx) // 2]] = True
    results = {}
    for spec in args.model:
        label, _, ref = spec.partition("=")
        results[label] = evaluate(ref or label, data, presets, first)
    names = sorted(set(presets)) + ["all"]
    try:  # the set's own record (it may have been simulated by another script)
        made = json.loads((data_dir / "dataset.json").read_text())
    except (OSError, ValueError):
        made = {}
    print(f"Simulated test frames: {len(presets)} "
          f"({', '.join(f'{n} {int((presets == n).sum())}' for n in sorted(set(presets)))}), "
          f"seed {made.get('seed', '?')}, class weights {made.get('classes', '?')}, "
          f"{int(np.sum(data.labels != 2))} Hit+Maybe.\n")
    print("| model | preset | sensitivity / specificity (argmax) | AUC | at >= 97 % spec. (T from half A, on half B): T, sens. / spec. |")
    print("|---|---|---|---|---|")
    for label, r in results.items():
        for n in names:
            m = r[n]
            a = m["at_97"]
            print(f"| {label} ({r['_model']['name']}) | {n} | {100 * m['sensitivity']:.1f} / "
                  f"{100 * m['specificity']:.1f} % | {m['auc']:.4f} | {a['threshold']:.3f}, "
                  f"{100 * a['sensitivity']:.1f} / {100 * a['specificity']:.1f} % |")
    with_points = [label for label, r in results.items() if "operating_points" in r["all"]]
    if with_points:
        print("\nAt each model's own per-detector operating points (`xtalscreen calibrate`; "
              "sensitivity / specificity, %):\n")
        print("| model | " + " | ".join(names) + " |")
        print("|---" * (len(names) + 1) + "|")
        for label in with_points:
            cells = [f"{100 * results[label][n]['operating_points']['sensitivity']:.1f} / "
                     f"{100 * results[label][n]['operating_points']['specificity']:.1f}" for n in names]
            print(f"| {label} | " + " | ".join(cells) + " |")
    thresholds = [float(v) for v in args.thresholds.split(",") if v]
    for label, r in results.items():
        score, pos, pr = r.pop("_scores")
        if not thresholds:
            continue
        print(f"\n`--threshold` trade-off, {label} (keep when p_hit + p_maybe >= T; sensitivity / specificity, %):\n")
        print("| T | " + " | ".join(names) + " |")
        print("|---" * (len(names) + 1) + "|")
        for t in thresholds:
            cells = []
            for n in names:
                k = np.ones(len(score), bool) if n == "all" else pr == n
                cells.append(f"{100 * np.mean(score[k & pos] >= t):.1f} / {100 * np.mean(score[k & ~pos] < t):.1f}")
            print(f"| {t:g} | " + " | ".join(cells) + " |")
    if args.json:
        Path(args.json).write_text(json.dumps(results, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
