"""Speed of the diffraction simulator (issue 3): images/s per core and scaling with workers.

Run:  .venv/bin/python benchmarks/bench_simulate.py [--quick]

Prints Markdown tables. "Per core" = frames / CPU-second of this process (single process),
which is robust to other load on the machine; wall-clock rates are printed beside it. All the
physics is on (presets as shipped: 300 mosaic domains for diffranet, bandwidth, divergence,
partiality, air + water + Compton + crystal diffuse, beamstop, PSF, Poisson, gain error, read
noise, offset, saturation, dead/hot pixels, gaps), with the class mix of a default dataset
(blank, no-crystal, weak, good, strong in equal numbers). Compilation (numba cache) and the
per-detector set-up are excluded by a warm-up.

Baseline (same process, same frames): a straightforward numpy implementation of the two
per-pixel stages — spots rendered one by one with numpy windows, then ``Generator.poisson`` and
two ``Generator.normal`` fields for gain error and read noise — without any of the physics
before them. The ratio shows what the fused numba kernels buy.
"""

from __future__ import annotations

import argparse
import os
import shutil
import sys
import tempfile
import time

import numpy as np

from xtalscreen.simulate import get_preset, simulate_frame
from xtalscreen.simulate.dataset import simulate_dataset

CLASSES = ("blank", "no-crystal", "weak", "good", "strong")


def _frames(name: str, n: int):
    cfg = get_preset(name)
    for i in range(3):  # warm-up: compile, detector context
        simulate_frame(cfg, rng=10_000 + i, frame_class=CLASSES[i + 2])
    c0, w0 = time.process_time(), time.perf_counter()
    truths = []
    for i in range(n):
        _, t = simulate_frame(cfg, rng=i, frame_class=CLASSES[i % 5])
        truths.append(t)
    return cfg, n / (time.process_time() - c0), n / (time.perf_counter() - w0), truths


def _baseline(cfg, n: int) -> float:
    """numpy-only spot rendering + noise for the same frames: frames per CPU-second."""
    from xtalscreen.simulate import detector as detm

    ctx = detm.context(cfg.detector)
    shape = ctx.data_shape
    rng = np.random.default_rng(0)
    total = 0.0
    for i in range(n):
        _, truth = simulate_frame(cfg, rng=i, frame_class=CLASSES[i % 5])
        t0 = time.process_time()
        img = np.full(shape, 30.0)
        img3 = img.reshape((-1,) + shape[-2:])
        for s in truth.spots:
            x, y = int(s["fs"]), int(s["ss"])
            slab = ctx.slabs[s["panel"]]
            yy, xx = np.mgrid[max(y - 3, 0):min(y + 4, shape[-2]), max(x - 3, 0):min(x + 4, shape[-1])]
            w = np.exp(-((xx + 0.5 - s["fs"]) ** 2 + (yy + 0.5 - s["ss"]) ** 2) / (2 * 0.7 ** 2))
            img3[slab, yy, xx] += s["photons"] * w / w.sum()
        counts = rng.poisson(img)
        out = counts * (1 + 0.04 * rng.normal(size=shape)) + 3 * rng.normal(size=shape) + 10
        np.clip(out, 0, 65025, out=out)
        total += time.process_time() - t0
    return n / total


def _cpu() -> float:
    import resource

    s, c = resource.getrusage(resource.RUSAGE_SELF), resource.getrusage(resource.RUSAGE_CHILDREN)
    return s.ru_utime + s.ru_stime + c.ru_utime + c.ru_stime


def _workers(name: str, n: int, workers: int) -> tuple[float, float]:
    """(frames/s wall, frames per CPU-second of this process and its workers) for a dataset run."""
    d = tempfile.mkdtemp(prefix="bench_sim_")
    try:
        t0, c0 = time.perf_counter(), _cpu()
        simulate_dataset(d, presets=[name], n=n, seed=1, workers=workers, shard_size=max(1, n // (2 * workers)),
                         progress=False)
        return n / (time.perf_counter() - t0), n / (_cpu() - c0)
    finally:
        shutil.rmtree(d, ignore_errors=True)


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--quick", action="store_true", help="fewer frames")
    args = ap.parse_args(argv)
    n_by = {"diffranet": 20 if args.quick else 100, "cspad": 5 if args.quick else 20}
    target = {"diffranet": 20.0, "cspad": 2.0}
    print(f"machine: {os.cpu_count()} logical CPUs, load average {os.getloadavg()[0]:.1f} at start; "
          f"python {sys.version.split()[0]}\n")
    print("| preset | pixels | frames | per core (frames/CPU-s) | wall (frames/s) | target | "
          "numpy baseline (frames/CPU-s, noise + spots only) | ratio |")
    print("|---|---|---|---|---|---|---|---|")
    results = {}
    for name, n in n_by.items():
        cfg, per_core, wall, truths = _frames(name, n)
        from xtalscreen.simulate import detector as detm

        npx = int(np.prod(detm.context(cfg.detector).data_shape))
        base = _baseline(cfg, max(3, n // 5))
        results[name] = per_core
        print(f"| {name} | {npx:,} | {n} | {per_core:.1f} | {wall:.1f} | >= {target[name]:g} | {base:.1f} | "
              f"{per_core / base:.1f}x |")
    print("\n| preset | workers | frames | wall (frames/s, incl. HDF5 writing) | per core (frames/CPU-s, all processes) |")
    print("|---|---|---|---|---|")
    for name, n in n_by.items():
        for w in (1, 2):
            wall, core = _workers(name, n, w)
            print(f"| {name} | {w} | {n} | {wall:.1f} | {core:.1f} |")
    print(f"\nload average at end: {os.getloadavg()[0]:.1f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
