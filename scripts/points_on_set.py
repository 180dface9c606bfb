"""Score one detector's frames of a simulated set at models' operating points (measured labels).

The figures ``screen`` would give on a new set, for one detector preset at a time: the frames of
``--preset`` in a ``xtalscreen simulate`` / ``scripts/compare_models.py`` set are scored once
at ``--views`` test-time views (logits averaged, as ``screen`` does), labelled Hit / Maybe /
Miss by the spot count measured in the frame, and each ``--model``'s point for that detector
(its own by raw shape or sensor layout, else the pooled point) is applied to the
probabilities of the frames preprocessed as that point says (the model's preprocessing, or the
point's changes to it, e.g. a matched filter: scored once per distinct preprocessing). The models must share their weights (they differ in their points only); a
point fitted on other views than ``--views`` is refused.

    .venv/bin/python scripts/points_on_set.py /tmp/cs837 --preset cspad --views 2 \\
        --model default --model old=/tmp/old_default_ke.pt

Prints sensitivity / specificity (with counts), the AUC of ``p_hit + p_maybe`` and the best
specificity at 98.5 % sensitivity, per model. ``--save F.npz`` keeps the probabilities.
"""

from __future__ import annotations

import argparse
import sys
import warnings
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "scripts"))


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("data", help="a simulated set (labels.csv with n_spots_measured)")
    ap.add_argument("--preset", required=True, help="the detector preset whose frames to score")
    ap.add_argument("--views", type=int, default=1, help="test-time views (1, 2, 4 or 8)")
    ap.add_argument("--model", action="append", required=True, metavar="[LABEL=]MODEL",
                    help="default, a shipped name or a checkpoint; repeat to compare points")
    ap.add_argument("--split", default="test")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--save", help="write probabilities and labels to this .npz")
    args = ap.parse_args(argv)

    import torch
    from sklearn.metrics import roc_auc_score

    import compare_models as cm
    from xtalscreen.evaluate.operating import keep_scores, point_for, point_key, point_preprocess
    from xtalscreen.models.pretrained import load_screening_model
    from xtalscreen.screen.workers import parse_operating_points
    from xtalscreen.train import FrameDataset, predict

    torch.set_num_threads(args.threads)
    sub, idx = cm.preset_frames(args.data, args.preset, args.split)
    refs = [(s.partition("=")[0], s.partition("=")[2]) if "=" in s else (s, s) for s in args.model]
    loaded = [load_screening_model(ref) for _, ref in refs]
    model, pp, _ = loaded[0]
    weights = model.state_dict()
    for (label, _), (other, _, _) in zip(refs[1:], loaded[1:]):
        sd = other.state_dict()
        if sd.keys() != weights.keys() or any(not torch.equal(sd[k], weights[k]) for k in sd):
            sys.exit(f"{label}: its weights differ from {refs[0][0]}'s; this script compares "
                     "the points of one network (run it once per network)")
    y = np.asarray(sub.labels)
    pos = y != 2
    frame = FrameDataset(sub, pp).read(0)
    scored: dict = {}  # probabilities per preprocessing (a point may change it for its detector)

    def probs_for(cfg):
        key = repr(cfg.to_dict())
        if key not in scored:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                scored[key] = predict(model, FrameDataset(sub, cfg), batch_size=32, views=args.views)[0]
        return scored[key]

    print(f"{args.data}: {len(idx)} {args.preset} frames ({int(pos.sum())} hit+maybe, "
          f"{int((~pos).sum())} miss), {args.views} view(s)\n")
    print("| model | point | preprocessing | T | threshold | sensitivity | specificity | AUC | "
          "spec. at 98.5 % sens. |")
    print("|---|---|---|---|---|---|---|---|---|")
    saved = {}
    for (label, _), (_, _, meta) in zip(refs, loaded):
        points = parse_operating_points(meta.get("operating_points"), path=meta.get("path"))
        key = point_key(points, frame) if points else ""
        op = point_for(points, key) if points else None
        if op is None:
            t, thr, name = 1.0, 0.5, "none (0.5)"
        else:
            if op.views != args.views:
                sys.exit(f"{label}: its point for {key} was fitted at {op.views} view(s); "
                         f"give --views {op.views}")
            t, thr, name = op.temperature, op.threshold, key if key in points else "* (pooled)"
        probs = probs_for(point_preprocess(pp, op))
        saved[f"probs_{label}"] = probs
        z = np.log(np.clip(probs, 1e-300, None))
        s = keep_scores(z, np.eye(3), t)
        keep = s >= thr
        cut = np.quantile(s[pos], 0.015)
        changes = ", ".join(f"{k}={v}" for k, v in (op.preprocess if op else {}).items()) or "model's"
        print(f"| {label} | {name} | {changes} | {t:.3f} | {thr:.4f} | {100 * keep[pos].mean():.2f} % "
              f"({int(keep[pos].sum())}/{int(pos.sum())}) | {100 * (~keep[~pos]).mean():.2f} % "
              f"({int((~keep[~pos]).sum())}/{int((~pos).sum())}) | {roc_auc_score(pos, s):.5f} | "
              f"{100 * np.mean(s[~pos] < cut):.2f} % |")
    if args.save:
        np.savez(args.save, probs=saved[f"probs_{refs[0][0]}"], labels=y, idx=idx, **saved)
    return 0


if __name__ == "__main__":
    sys.exit(main())
