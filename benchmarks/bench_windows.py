"""Training items from raw frames vs from training windows (``xtalscreen.train.windows``).

Run:  .venv/bin/python benchmarks/bench_windows.py [--data SIM_DIR] [--frames N] [--preset cspad]

Measures, in one process, on simulated frames of one detector (``--data``: an ``xtalscreen
simulate`` folder; default: ``--frames`` new CSPAD frames simulated into a temporary folder):

- baseline: one augmented training item read from the **raw** frame and preprocessed with the
  shipped model's rules (assemble the 32 panels, max-bin by 7, 256 px beam-centred crop with a
  random shift, LCN, flips, turns, intensity scale): ``FrameDataset(raw, pp, augment=True)``;
- the one-time cut of each frame to its window (``cut_windows``, one process), per frame;
- one augmented training item read from its **window** (``FrameDataset(windows,
  window_preprocess(pp), augment=True)``): the same tensor (checked), far less work.

Prints a Markdown table with the ratio of the two item costs and what one training epoch of
80 batches of 64 items spends preparing inputs each way.
"""

from __future__ import annotations

import argparse
import shutil
import tempfile
import time
import warnings
from pathlib import Path

import numpy as np


def per_item(ds, n: int, reps: int) -> float:
    t = time.perf_counter()
    for r in range(reps):
        ds.set_epoch(r)
        for i in range(n):
            ds[i]
    return (time.perf_counter() - t) / (n * reps)


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--data", help="an xtalscreen simulate folder (default: simulate --frames new ones)")
    ap.add_argument("--preset", default="cspad")
    ap.add_argument("--frames", type=int, default=48)
    ap.add_argument("--reps", type=int, default=2)
    args = ap.parse_args(argv)

    from xtalscreen.preprocess import PreprocessConfig
    from xtalscreen.train import FrameDataset, load_labels
    from xtalscreen.train.windows import cut_windows, window_preprocess

    warnings.simplefilter("ignore")
    tmp = Path(tempfile.mkdtemp(prefix="bench_windows_"))
    if args.data is None:
        from xtalscreen.simulate import simulate_dataset

        simulate_dataset(tmp / "raw", presets=args.preset, n=args.frames, seed=1, split=(100, 0, 0),
                         spots="none", progress=False)
        args.data = tmp / "raw"
    raw = load_labels(args.data, target="ke")
    raw = raw.subset(np.arange(min(args.frames, len(raw))))
    pp = PreprocessConfig(bin="auto", bin_reduce="max", crop=(256, 256), lcn_window=9, max_shift=32)
    base = FrameDataset(raw, pp, augment=True, seed=3)
    base[0]  # open the file, warm the caches
    t_raw = per_item(base, len(raw), args.reps)
    t = time.perf_counter()
    win = cut_windows(raw, tmp / "windows", pp, workers=1)
    t_cut = (time.perf_counter() - t) / len(raw)
    fast = FrameDataset(win, window_preprocess(pp), augment=True, seed=3)
    fast[0]
    t_win = per_item(fast, len(win), args.reps)
    for i in range(min(4, len(raw))):  # the same tensors
        base.set_epoch(0)
        fast.set_epoch(0)
        np.testing.assert_allclose(base[i][0].numpy(), fast[i][0].numpy(), atol=1e-5)
    shape = base.read(0).shape
    print(f"{len(raw)} {args.preset} frames {shape} from {args.data}; 256 px input, max-bin "
          f"{pp.plan(base.read(0).assembled()[0].shape)[0]}, LCN, augmentation; {args.reps} passes\n")
    print("| what | ms per item | vs baseline | one epoch (80 x 64 items) |")
    print("|---|---:|---:|---:|")
    print(f"| training item from the raw frame (baseline) | {1000 * t_raw:.2f} | 1.0x | {5120 * t_raw:.0f} s |")
    print(f"| cut the frame to its window (once per frame) | {1000 * t_cut:.2f} | | |")
    print(f"| training item from its window | {1000 * t_win:.2f} | {t_raw / t_win:.1f}x | {5120 * t_win:.1f} s |")
    base.close()
    fast.close()
    shutil.rmtree(tmp, ignore_errors=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
