"""Sensitivity / specificity of Hit+Maybe vs Miss by decision threshold, per detector preset.

``xtalscreen screen --threshold T`` keeps a frame when ``p_hit + p_maybe >= T``. This prints,
for a screening model and the simulated dataset it was trained on (the ``raw`` folder of
``scripts/train_default_model.py --work DIR``), the trade-off on the validation split (to choose
T) and on the test split (to check it), as a Markdown table.

    .venv/bin/python scripts/threshold_table.py --work /tmp/xtalscreen_default_model [--model default]
"""

from __future__ import annotations

import argparse
import sys
import warnings

import numpy as np


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--work", default="/tmp/xtalscreen_default_model")
    ap.add_argument("--model", default="default")
    ap.add_argument("--thresholds", default="0.5,0.4,0.3,0.2,0.1")
    args = ap.parse_args(argv)

    import torch

    from xtalscreen.models.pretrained import load_screening_model
    from xtalscreen.train import FrameDataset, load_labels, predict

    torch.set_num_threads(2)
    raw = load_labels(f"{args.work}/raw", target="ke")
    model, pp, _ = load_screening_model(args.model)
    scores = {}
    for split in ("val", "test"):
        d = raw.split(split)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            probs, _ = predict(model, FrameDataset(d, pp), batch_size=64)
        presets = np.array([m["preset"] for m in d.meta])
        scores[split] = (probs[:, 0] + probs[:, 1], d.labels != 2, presets)
    names = sorted(set(scores["val"][2]))
    print("| T | " + " | ".join(f"val {n}" for n in names) + " | val all | test all |")
    print("|---" * (len(names) + 3) + "|")
    for thr in (float(v) for v in args.thresholds.split(",")):
        cells = []
        for split, which in [("val", n) for n in names] + [("val", None), ("test", None)]:
            s, pos, pr = scores[split]
            k = np.ones(len(s), bool) if which is None else pr == which
            sens = 100 * np.mean(s[k & pos] >= thr)
            spec = 100 * np.mean(s[k & ~pos] < thr)
            cells.append(f"{sens:.1f} / {spec:.1f}")
        print(f"| {thr:g} | " + " | ".join(cells) + " |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
