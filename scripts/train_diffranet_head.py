"""Make the shipped DiffraNet 5-class model (``--model diffranet5``): a new head on ``default``.

DiffraNet's five classes (blank, no-crystal, weak, good, strong) from the shipped hit-screening
network's spot-count features: :func:`xtalscreen.train.head.fit_head` fits a multinomial
logistic regression to the ``default`` model's pre-logit features (averaged over ``--views``
test-time orientations) on simulated DiffraNet-CCD frames, and writes it into a copy of the
network as its last layer. Then the new file is tested on frames simulated with another seed
and never used for fitting.

Data (both sets): the ``diffranet`` preset with ice in a quarter of the frames (the training
mix of ``scripts/train_default_model.py``), classes in equal numbers, labels by the spot count
*measured* in the frame, and DiffraNet's separated populations (``draw_counts``: weak frames
made with 5-15 visible spots, good 40-99, strong from 240; labels are still the exact count
rule, :class:`~xtalscreen.simulate.config.LabelConfig`), as in session 6's 5-class study.

    .venv/bin/python scripts/train_diffranet_head.py --work /tmp/d5head
        # writes src/xtalscreen/models/weights/diffranet5.pt + diffranet5.json and prints the
        # Markdown tables of reports/diffranet5_head.md

Steps and defaults: simulate 3000 training frames (seed 823) and 3000 test frames (seed 825)
under ``--work`` (kept and reused when there), fit the head at 8 views (``C`` by 5-fold
cross-validation), test at 1 view and at 8 views.
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
WEIGHTS = ROOT / "src" / "xtalscreen" / "models" / "weights"
#: DiffraNet's separated populations (visible spots drawn per crystal class).
DRAW_COUNTS = {"weak": (5, 16), "good": (40, 100), "strong": (240, None)}


def simulate(out: Path, n: int, seed: int, workers: int) -> None:
    """DiffraNet-CCD frames of the training mix, measured labels, separated populations."""
    import train_default_model as tdm

    from xtalscreen.simulate import simulate_dataset

    if (out / "labels.csv").is_file():  # made before: only when it is the set asked for
        try:
            made = json.loads((out / "dataset.json").read_text())
        except (OSError, ValueError):
            made = {}
        if (made.get("seed"), made.get("n")) != (seed, n):
            raise SystemExit(f"{out} holds a set of seed {made.get('seed')}, {made.get('n')} frames, "
                             f"not seed {seed}, {n} frames: give another --work or remove it")
        return
    cfg = tdm.training_configs("measured")["diffranet"]
    cfg.labels.draw_counts = dict(DRAW_COUNTS)
    simulate_dataset(out, presets=("diffranet",), n=n, seed=seed, workers=workers, split=(0, 0, 100),
                     spots="none", configs={"diffranet": cfg}, progress=False)


def trained_on() -> dict:
    """The head's detector (``screen`` warns about frames far from it): the DiffraNet CCD."""
    from xtalscreen.simulate import get_preset

    d = get_preset("diffranet").detector
    a = d.pixel_size / d.distance
    return {"angular_pixel": [a, a],
            "detectors": {"diffranet": {"pixel_size_m": d.pixel_size, "distance_m": d.distance}},
            "note": "the network saw three detectors; its five-class head only the DiffraNet CCD"}


def scores(model, pp, data, views: int) -> dict:
    """5-class accuracy, blank/no-crystal vs diffraction accuracy and the confusion matrix."""
    from xtalscreen.train import FrameDataset, predict

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        probs, labels = predict(model, FrameDataset(data, pp), batch_size=64, views=views)
    ok = labels >= 0
    pred, y = probs[ok].argmax(1), labels[ok]
    k = len(data.classes)
    conf = np.zeros((k, k), int)
    np.add.at(conf, (y, pred), 1)
    diff = [data.classes.index(c) for c in ("weak", "good", "strong")]
    return {"views": views, "n": int(ok.sum()), "accuracy": float(np.mean(pred == y)),
            "diffraction_accuracy": float(np.mean(np.isin(pred, diff) == np.isin(y, diff))),
            "errors": int(np.sum(pred != y)),
            "diffraction_errors": int(np.sum(np.isin(pred, diff) != np.isin(y, diff))),
            "confusion": conf.tolist()}


def table(res: dict, classes) -> str:
    rows = ["| true \\ predicted | " + " | ".join(classes) + " |", "|---" * (len(classes) + 1) + "|"]
    rows += [f"| {c} | " + " | ".join(str(v) for v in r) + " |" for c, r in zip(classes, res["confusion"])]
    return "\n".join(rows)


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--work", default="/tmp/xtalscreen_d5head", help="folder for the simulated sets")
    ap.add_argument("--base", default="default", help="the network whose features are used")
    ap.add_argument("--train-frames", type=int, default=3000)
    ap.add_argument("--train-seed", type=int, default=823)
    ap.add_argument("--test-frames", type=int, default=3000)
    ap.add_argument("--test-seed", type=int, default=825)
    ap.add_argument("--views", type=int, default=8, choices=[1, 2, 4, 8])
    ap.add_argument("--sim-workers", type=int, default=2)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--out", default=str(WEIGHTS / "diffranet5.pt"))
    args = ap.parse_args(argv)

    import torch

    from xtalscreen.models.pretrained import load_screening_model
    from xtalscreen.train import FrameDataset, load_labels, load_model
    from xtalscreen.train.head import fit_head, save_head

    torch.set_num_threads(args.threads)
    work = Path(args.work)
    t0 = time.perf_counter()
    simulate(work / "train", args.train_frames, args.train_seed, args.sim_workers)
    simulate(work / "test", args.test_frames, args.test_seed, args.sim_workers)
    t_sim = time.perf_counter() - t0
    train = load_labels(work / "train", target="diffranet", split=None)
    test = load_labels(work / "test", target="diffranet", split=None)
    base, pp, meta = load_screening_model(args.base)
    t0 = time.perf_counter()
    new, info = fit_head(base, FrameDataset(train, pp), views=args.views)
    t_fit = time.perf_counter() - t0
    out = Path(args.out)
    save_head(out, new, pp, train, info, base=meta)
    model, pp2, _ = load_model(out)  # test what was written
    t0 = time.perf_counter()
    res = [scores(model, pp2, test, v) for v in sorted({1, args.views})]
    t_test = time.perf_counter() - t0
    card = {
        "name": "diffranet5", "file": out.name, "task": "frame-classification", "target": "diffranet",
        "classes": list(train.classes), "model": meta.get("model_name"),
        "parameters": int(sum(p.numel() for p in model.parameters())),
        "base": {"model": args.base, "file": Path(meta["path"]).name,
                 "note": "every layer but the last is the base model's, unchanged"},
        "head": {k: v for k, v in info.items() if k != "unreadable"},
        "views": args.views,
        "trained_on": trained_on(),
        "training_data": {"preset": "diffranet", "frames": args.train_frames, "seed": args.train_seed,
                          "ice_prob": 0.25, "labels": "measured", "draw_counts": DRAW_COUNTS},
        "test_data": {"preset": "diffranet", "frames": args.test_frames, "seed": args.test_seed,
                      "ice_prob": 0.25, "labels": "measured", "draw_counts": DRAW_COUNTS},
        "test": res,
        "targets": {"accuracy": 0.986, "diffraction_accuracy": 0.999,
                    "source": "issue 5 (DeepFreak: 98.51 % / 99.83 %)"},
        "seconds": {"simulate": round(t_sim, 1), "fit": round(t_fit, 1), "test": round(t_test, 1)},
        "command": "scripts/train_diffranet_head.py " + " ".join(argv if argv is not None else sys.argv[1:]),
        "torch": torch.__version__,
    }
    out.with_suffix(".json").write_text(json.dumps(card, indent=2) + "\n")
    print(f"wrote {out} (+ {out.with_suffix('.json').name}); C = {info['c']}, training accuracy "
          f"{100 * info['train_accuracy']:.2f} % on {info['n_train']} frames; simulate {t_sim:.0f} s, "
          f"fit {t_fit:.0f} s, test {t_test:.0f} s\n")
    print("| test-time views | 5-class accuracy | blank/no-crystal vs diffraction | errors |")
    print("|---|---|---|---|")
    for r in res:
        print(f"| {r['views']} | {100 * r['accuracy']:.2f} % | {100 * r['diffraction_accuracy']:.2f} % | "
              f"{r['errors']} / {r['diffraction_errors']} of {r['n']} |")
    print(f"\nConfusion at {res[-1]['views']} views:\n\n{table(res[-1], train.classes)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
