"""Does BatchNorm's shared running statistics hurt a model trained on inputs of several sizes?

With ``PreprocessConfig(unbinned_up_to=2)`` the DiffraNet CCD reaches the network at 512 px and
the large detectors at 256 px. Training batches one detector at a time, but BatchNorm keeps one
set of running statistics, an average over both. This script scores the validation frames of
each detector twice: in eval mode (the running statistics, as ``screen`` runs it) and with the
statistics of that detector's own batches (train-mode BatchNorm, no gradient, weights restored
between modes). A large gap for one detector means the shared statistics are the problem.

    .venv/bin/python scripts/bn_group_check.py <run dir>/best.pt <the run's data folder> [--frames 256]

Session 5, 256 validation frames per detector. A mixed model trained from scratch with
``--unbinned-up-to 2`` (best checkpoint of a run stopped after 12 epochs) gave on the DiffraNet
CCD 89.8 % (sensitivity 81.5 %, specificity 100 %) in eval mode against 92.2 % (90.8 / 99.2 %)
with its own batch statistics: the Miss-leaning bias that session 4 saw. The CSPAD and the
Pilatus moved by 0-1.2 points. The binned model (all inputs 256 px, 36 epochs) shows no such
bias: eval mode is as good or better on every detector (DiffraNet 94.9 % vs 92.6 %).

Since session 6 a model trained on several input sizes keeps BatchNorm running statistics per
input size (:mod:`xtalscreen.models.sizebn`), so eval mode reads the statistics of its own
size; this script checks that it does (eval mode should then be at least as good as own-batch
statistics on every detector). Session 6, the step-4 training run's best checkpoint (mixed,
DiffraNet unbinned, per-size statistics; 256 validation frames per detector): eval mode
cspad 92.2 % (own batch statistics 92.2 %), diffranet 94.5 % (91.8 %; sensitivity 97.6 vs
97.0 %), pilatus2m 94.5 % (94.1 %): the Miss-leaning bias is gone.
"""

from __future__ import annotations

import argparse
import sys
import warnings

import numpy as np


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("checkpoint", help="a training checkpoint (best.pt of a run)")
    ap.add_argument("data", help="the run's data (labels.csv; raw frames: the checkpoint's preprocessing bins them)")
    ap.add_argument("--frames", type=int, default=256, help="validation frames per detector")
    args = ap.parse_args(argv)

    import torch

    from xtalscreen.train import FrameDataset, load_labels, load_model

    torch.set_num_threads(2)
    model, pp, _ = load_model(args.checkpoint)
    data = load_labels(args.data, target="ke").split("val")
    presets = np.array([m.get("preset", "") for m in data.meta])
    ds = FrameDataset(data, pp)
    state = {k: v.clone() for k, v in model.state_dict().items()}
    print("| detector | input px | eval mode: accuracy, sens. / spec. | own batch statistics: accuracy, sens. / spec. |")
    print("|---|---|---|---|")
    for p in sorted(set(presets)):
        idx = np.flatnonzero(presets == p)[: args.frames]
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            x = torch.stack([torch.as_tensor(ds[i][0]) for i in idx])
        y = data.labels[idx]
        cells = []
        for batch_stats in (False, True):
            model.load_state_dict(state)
            model.train(batch_stats)
            with torch.no_grad():
                pred = torch.cat([model(x[k:k + 64]) for k in range(0, len(x), 64)]).argmax(1).numpy()
            kept, pos = pred != 2, y != 2
            cells.append(f"{100 * np.mean(pred == y):.1f} %, {100 * np.mean(kept[pos]):.1f} / "
                         f"{100 * np.mean(~kept[~pos]):.1f} %")
        print(f"| {p} | {x.shape[-1]} | {cells[0]} | {cells[1]} |")
    model.load_state_dict(state)
    return 0


if __name__ == "__main__":
    sys.exit(main())
