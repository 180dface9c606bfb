"""Speed of the training input pipeline and of ke2018 training/inference steps on CPU.

Run:  .venv/bin/python benchmarks/bench_train.py [--frames N] [--threads T]

Measures, in one process, on a simulate-layout HDF5 shard of 1440 x 1440 int32 frames
(gzip level 1 + shuffle, one chunk per frame, as ``xtalscreen simulate`` writes them):

- random access to one frame: the baseline re-opens the file for every frame
  (``xtalscreen.io.read_frame(path, i)``), :class:`xtalscreen.train.FrameDataset` keeps the
  reader open (one cache per worker process);
- one training item: read + ke2018 preprocessing with augmentation (2 x 2 binning, 720 x 720
  crop with random shift, LCN, flips/turns);
- one SGD step of ke2018 on a batch of 64 720 x 720 tensors (forward, backward, update) and
  inference, with torch on ``--threads`` threads.

Prints a Markdown table. The issue's target for training ke2018 (10,000 simulated frames,
<= 15 minutes on 2 CPU cores) is put in numbers in the last rows: frames per second through
the whole training step and what that allows in 15 minutes.
"""

from __future__ import annotations

import argparse
import csv
import os
import platform
import tempfile
import time
from pathlib import Path

import numpy as np


def write_shard(root: Path, n: int, size: int = 1440) -> Path:
    import h5py

    rng = np.random.default_rng(0)
    yy, xx = np.mgrid[0:size, 0:size]
    frames = []
    for i in range(n):
        img = rng.poisson(3.0, (size, size)).astype(np.int32)
        if i % 2 == 0:
            for cy, cx in rng.uniform(50, size - 50, (40, 2)):
                s = (slice(int(cy) - 4, int(cy) + 5), slice(int(cx) - 4, int(cx) + 5))
                img[s] += (200 * np.exp(-((yy[s] - cy) ** 2 + (xx[s] - cx) ** 2) / 3.0)).astype(np.int32)
        frames.append(img)
    with h5py.File(root / "shard-00000.h5", "w") as f:
        f.create_dataset("/entry/data/data", data=np.stack(frames), chunks=(1, size, size),
                         compression="gzip", compression_opts=1, shuffle=True)
        f.create_dataset("/entry/instrument/detector/beam_center_x", data=np.full(n, size / 2))
        f.create_dataset("/entry/instrument/detector/beam_center_y", data=np.full(n, size / 2))
    with open(root / "labels.csv", "w", newline="") as fh:
        w = csv.writer(fh)
        w.writerow(["file", "frame", "split", "preset", "diffranet_class", "ke_class", "n_spots"])
        for i in range(n):
            w.writerow(["shard-00000.h5", i, "train", "bench", "strong" if i % 2 == 0 else "no-crystal",
                        "hit" if i % 2 == 0 else "miss", 40 if i % 2 == 0 else 0])
    return root


def per_item(fn, idx, reps: int = 1) -> float:
    fn(idx[0])  # warm-up
    best = np.inf
    for _ in range(reps):
        t = time.perf_counter()
        for i in idx:
            fn(i)
        best = min(best, (time.perf_counter() - t) / len(idx))
    return best * 1e3


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--frames", type=int, default=32)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--batch", type=int, default=64)
    args = ap.parse_args()

    import torch

    from xtalscreen.io import read_frame
    from xtalscreen.train import FrameDataset, TrainConfig, build_model, load_labels

    torch.set_num_threads(args.threads)
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        root = write_shard(Path(tmp), args.frames)
        data = load_labels(root, target="ke")
        cfg = TrainConfig(target="ke")
        model, pp = build_model(cfg)
        ds = FrameDataset(data, pp, augment=True, seed=0)
        idx = np.random.default_rng(1).permutation(len(data))
        path = data.files[0]
        t_base = per_item(lambda i: read_frame(path, int(i)), idx, reps=2)
        t_ds = per_item(lambda i: ds.read(int(i)), idx, reps=2)
        rows.append(("random-access read, re-open per frame (baseline)", "1440² int32 gzip", t_base, ""))
        rows.append(("random-access read, FrameDataset (cached handle)", "1440² int32 gzip", t_ds,
                     f"{t_base / t_ds:.1f}x"))
        t_item = per_item(lambda i: ds[int(i)], idx, reps=2)
        rows.append(("training item: read + ke2018 preprocessing + augmentation", "1440² -> 720²", t_item, ""))
        ds.close()

    x = torch.randn(args.batch, 1, 720, 720)
    y = torch.randint(0, 3, (args.batch,))
    opt = torch.optim.SGD(model.parameters(), lr=0.01, momentum=0.9, weight_decay=1e-4)
    loss_fn = torch.nn.CrossEntropyLoss()

    def step():
        opt.zero_grad(set_to_none=True)
        loss_fn(model(x), y).backward()
        opt.step()

    model.train()
    step()
    ts = []
    for _ in range(3):
        t = time.perf_counter()
        step()
        ts.append(time.perf_counter() - t)
    t_step = min(ts) / args.batch * 1e3
    rows.append((f"ke2018 SGD step (batch {args.batch}, {args.threads} torch threads)", "720²", t_step, ""))
    model.eval()
    with torch.no_grad():
        model(x)
        t = time.perf_counter()
        model(x)
        t_inf = (time.perf_counter() - t) / args.batch * 1e3
    rows.append((f"ke2018 inference (batch {args.batch}, {args.threads} torch threads)", "720²", t_inf, ""))
    total = t_item + t_step
    fps = 1e3 / total
    rows.append(("whole training step per frame (item + SGD, one process)", "", total, ""))

    print(f"CPU: {platform.processor() or platform.machine()}, {os.cpu_count()} cores visible; "
          f"torch {torch.__version__}; {args.frames} frames\n")
    print("| what | size | ms / frame | vs baseline |")
    print("|---|---|---:|---:|")
    for name, size, ms, ratio in rows:
        print(f"| {name} | {size} | {ms:.2f} | {ratio} |")
    print(f"\nTraining throughput: {fps:.1f} frames/s -> {fps * 900:,.0f} frame presentations in 15 minutes "
          f"({fps * 900 / 10000:.1f} passes over 10,000 frames; paper 001's schedule is "
          f"120 x 100 x 64 = 768,000).")


if __name__ == "__main__":
    main()
