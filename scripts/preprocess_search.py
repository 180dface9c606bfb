"""Which preprocessing suits a detector: score one preset's frames under several candidates.

For a detector the model was not trained on, the model's own preprocessing may not be the
best input (a wide point-spread function, say: ``xtalscreen.preprocess.smooth``). This scores
the frames of ``--preset`` in a simulated set (labels by the measured spot count) at ``--views``
views under each ``--try`` (changes of the model's preprocessing, as ``xtalscreen calibrate
--preprocess`` takes them; ``--try none`` is the model's own) and prints, per candidate, the AUC
of ``p_hit + p_maybe`` and the best specificity at 98.5 % sensitivity. Choose on one set, fit the
point on frames that include it or not (``xtalscreen calibrate --preprocess ...``) and measure on
a fresh set (``scripts/points_on_set.py``).

    .venv/bin/python scripts/preprocess_search.py /tmp/rx863 --preset rayonix_mx340 \\
        --try none --try prefilter_sigma=1.2 --try prefilter_sigma=1.2,bin=2 --views 8
"""

from __future__ import annotations

import argparse
import sys
import time
import warnings
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "scripts"))


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("data", help="a simulated set (labels.csv with n_spots_measured)")
    ap.add_argument("--preset", required=True, help="the detector preset whose frames to score")
    ap.add_argument("--try", dest="candidates", action="append", required=True, metavar="KEY=VALUE,...",
                    help="preprocessing changes to score ('none': the model's own); repeat")
    ap.add_argument("--model", default="default")
    ap.add_argument("--views", type=int, default=1, help="test-time views (1, 2, 4 or 8)")
    ap.add_argument("--limit", type=int, help="score at most this many frames (spread over the set)")
    ap.add_argument("--split", default="test")
    ap.add_argument("--threads", type=int, default=2)
    args = ap.parse_args(argv)

    import torch
    from sklearn.metrics import roc_auc_score

    import compare_models as cm
    from xtalscreen.cli.screen_cmd import parse_preprocess_changes
    from xtalscreen.evaluate.operating import point_preprocess
    from xtalscreen.models.pretrained import load_screening_model
    from xtalscreen.train import FrameDataset, predict

    torch.set_num_threads(args.threads)
    cands = [{} if c.strip().lower() == "none" else parse_preprocess_changes(c) for c in args.candidates]
    sub, idx = cm.preset_frames(args.data, args.preset, args.split, args.limit)
    model, pp, _ = load_screening_model(args.model)
    pos = np.asarray(sub.labels) != 2
    print(f"{args.data}: {len(idx)} {args.preset} frames ({int(pos.sum())} hit+maybe, "
          f"{int((~pos).sum())} miss), {args.views} view(s)\n")
    print("| preprocessing | input | AUC | spec. at 98.5 % sens. | seconds |")
    print("|---|---|---|---|---|")
    for changes in cands:
        cfg = point_preprocess(pp, changes)
        t0 = time.perf_counter()
        ds = FrameDataset(sub, cfg)
        shape = cfg.output_shape_for(ds.read(0).assembled()[0].shape)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            probs, _ = predict(model, ds, batch_size=32, views=args.views)
        ds.close()
        s = probs[:, 0] + probs[:, 1]
        cut = np.quantile(s[pos], 0.015)
        name = ", ".join(f"{k}={v}" for k, v in changes.items()) or "model's"
        print(f"| {name} | {shape[1]} x {shape[2]} | {roc_auc_score(pos, s):.5f} | "
              f"{100 * np.mean(s[~pos] < cut):.2f} % | {time.perf_counter() - t0:.0f} |", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
