"""Precise BatchNorm statistics for a trained checkpoint (``xtalscreen.train.recalibrate``).

BatchNorm's running statistics are a momentum average (0.1) of the last training batches, so a
checkpoint's eval-mode behaviour depends on which classes its last ~10 batches held. This
re-estimates them as the plain mean over ``--batches`` augmented batches of a labelled set (the
training split of the data the model was trained on), per input size for a model that takes
several (``unbinned_up_to``), and writes a new checkpoint with everything else unchanged.

    .venv/bin/python scripts/recalibrate_bn.py RUN/best.pt REDUCED_FOLDER --out /tmp/best_bn.pt [--batches 60]

For the shipped file (raw-frame preprocessing) give the raw simulated folder instead of the
reduced one: the preprocessing stored in the checkpoint is the one applied.
"""

from __future__ import annotations

import argparse
import sys
import warnings


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("checkpoint")
    ap.add_argument("data", help="a folder with labels.csv (its --split items are used)")
    ap.add_argument("--out", required=True)
    ap.add_argument("--split", default="train")
    ap.add_argument("--batches", type=int, default=60)
    ap.add_argument("--batch-size", type=int, default=64)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--threads", type=int, default=2)
    args = ap.parse_args(argv)

    import torch

    from xtalscreen.train import load_labels, load_model, read_checkpoint, recalibrate, save_checkpoint

    torch.set_num_threads(args.threads)
    model, pp, meta = load_model(args.checkpoint)
    data = load_labels(args.data, target=meta["target"]).split(args.split)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        n = recalibrate(model, data, pp, batches=args.batches, batch_size=args.batch_size, seed=args.seed)
    state = read_checkpoint(args.checkpoint)
    config = dict(state.get("config") or {})
    config["bn_recalibrated"] = {"batches": n, "batch_size": args.batch_size, "split": args.split,
                                 "data": str(args.data), "seed": args.seed}
    save_checkpoint(args.out, model, preprocess=pp, classes=state["classes"], target=state["target"],
                    epoch=state.get("epoch", 0), history=state.get("history"), best=state.get("best"),
                    config=config)
    print(f"{args.out}: BatchNorm statistics from {n} batches of {args.batch_size} ({args.split} split of {args.data})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
