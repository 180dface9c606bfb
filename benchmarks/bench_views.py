"""Cost of test-time views: inference time per frame of the shipped model at 1, 2, 4 and 8 views.

Run:  .venv/bin/python benchmarks/bench_views.py [--reps N] [--batch B]

The shipped ``spotcount`` model on random inputs of the two sizes it sees: 256 x 256 (a CSPAD or
Pilatus binned to fit) and 512 x 512 (the DiffraNet CCD, kept at full resolution), batches of
``--batch`` frames, one torch thread (as each ``screen`` worker runs). The baseline is one view
(``model(x)``), timed in the same process; each extra view is one more forward pass, so the
ratio should be close to the number of views. Prints a Markdown table (median of ``--reps``).
"""

from __future__ import annotations

import argparse
import platform
import time

import numpy as np
import torch

from xtalscreen.models.pretrained import load_screening_model
from xtalscreen.models.tta import view_logits


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--reps", type=int, default=7)
    ap.add_argument("--batch", type=int, default=32)
    args = ap.parse_args()
    torch.set_num_threads(1)
    model, _, _ = load_screening_model("default")
    model.eval()
    print(f"Test-time views, shipped model, batch {args.batch}, 1 torch thread, "
          f"{platform.machine()}, torch {torch.__version__}\n")
    print("| input | views | ms / frame | x one view |")
    print("|---|---|---|---|")
    for size in (256, 512):
        x = torch.randn(args.batch, 1, size, size)
        base = None
        for v in (1, 2, 4, 8):
            with torch.inference_mode():
                view_logits(model, x, v)  # warm-up
                ts = []
                for _ in range(args.reps):
                    t = time.perf_counter()
                    view_logits(model, x, v)
                    ts.append(time.perf_counter() - t)
            ms = float(np.median(ts)) * 1e3 / args.batch
            base = base or ms
            print(f"| {size} x {size} | {v} | {ms:.2f} | {ms / base:.2f} |")


if __name__ == "__main__":
    main()
