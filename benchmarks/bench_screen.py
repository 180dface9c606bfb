"""Throughput of ``xtalscreen screen`` end to end on CSPAD-sized frames from an HDF5 run.

Writes (once) a bitshuffle-LZ4 HDF5 run of ``--frames`` simulated CSPAD frames (32 x 185 x 388
= 2.3 Mpx, float32, the CSPAD geometry stored in the file; crystals in ``--hit-fraction`` of
them, the rest blank or no-crystal), then measures in one process:

1. **baseline**: a naive loop (``open_frames`` -> ``PreprocessConfig.apply`` (assemble the
   whole detector, bin, crop, LCN) -> model on one frame -> CSV row), one torch thread;
2. ``screen(..., workers=1)`` (fused assemble+bin+crop of the crop's pixels only, batched
   inference, one torch thread);
3. ``screen(..., workers=2)`` (two worker processes forked from a parent that built and warmed
   the processor, one torch thread each, 8 frames held at a time; a kept frame travels to the
   collector as a reference to its compressed source chunk, which the collector copies into
   ``hits.h5``);
4. both again with ``write_hits=False`` (``--no-hits-h5``).

Prints a Markdown table: wall frames/s, CPU-seconds per frame (all processes; meaningful on a
shared machine), the speed-up over the baseline, and the time split per stage.

    .venv/bin/python benchmarks/bench_screen.py [--frames 240] [--model default]
"""

from __future__ import annotations

import argparse
import csv
import os
import resource
import sys
import tempfile
import time
from pathlib import Path

import numpy as np


def cpu_s() -> float:
    a = resource.getrusage(resource.RUSAGE_SELF)
    b = resource.getrusage(resource.RUSAGE_CHILDREN)
    return a.ru_utime + a.ru_stime + b.ru_utime + b.ru_stime


_CFG: list = []


def _sim_one(job):
    from xtalscreen.simulate import get_preset, simulate_frame

    if not _CFG:  # building the preset (structure factors) is costly: once per process
        _CFG.append(get_preset("cspad"))
    i, cls, seed = job
    f, _ = simulate_frame(_CFG[0], rng=np.random.default_rng([seed, i]), frame_class=cls)
    return f.replace(source="bench", index=i)


def make_run(path: Path, n: int, hit_fraction: float, seed: int = 0, workers: int = 1) -> None:
    """``n`` simulated CSPAD frames (``xtalscreen.simulate``, preset ``cspad``): a fraction
    ``hit_fraction`` with crystals (DiffraNet classes good/strong), the rest blank or no-crystal.

    ``workers > 1`` simulates in that many processes (frame ``i`` then has its own seed
    ``[seed, i]``, so the frames differ from the one-stream ``workers=1`` run)."""
    from xtalscreen.io import write_hdf5_run
    from xtalscreen.simulate import get_preset, simulate_frame

    cfg = get_preset("cspad")
    rng = np.random.default_rng(seed)

    def draw():
        return str(rng.choice(["good", "strong"]) if rng.random() < hit_fraction
                   else rng.choice(["blank", "no-crystal"]))

    def frames():
        for i in range(n):
            f, _ = simulate_frame(cfg, rng=rng, frame_class=draw())
            yield f.replace(source="bench", index=i)

    if workers <= 1:
        write_hdf5_run(frames(), path, overwrite=True)
        return
    import multiprocessing as mp

    jobs = [(i, draw(), seed) for i in range(n)]
    with mp.get_context("spawn").Pool(workers) as pool:
        write_hdf5_run(pool.imap(_sim_one, jobs, chunksize=4), path, overwrite=True)


def baseline(path: Path, model, pp, out: Path) -> dict:
    import torch

    from xtalscreen.io import open_frames

    t = {"read": 0.0, "preprocess": 0.0, "infer": 0.0, "write": 0.0}
    n = 0
    t0, c0 = time.perf_counter(), cpu_s()
    with open(out / "baseline.csv", "w", newline="") as fh:
        w = csv.writer(fh)
        it = iter(open_frames(path))
        while True:
            a = time.perf_counter()
            f = next(it, None)
            b = time.perf_counter()
            t["read"] += b - a
            if f is None:
                break
            x = pp.apply(f)
            c = time.perf_counter()
            with torch.inference_mode():
                p = torch.softmax(model(torch.from_numpy(x[None])), 1).numpy()[0]
            d = time.perf_counter()
            w.writerow([f.source, f.index, *p])
            fh.flush()
            t["preprocess"] += c - b
            t["infer"] += d - c
            t["write"] += time.perf_counter() - d
            n += 1
    return {"frames": n, "seconds": time.perf_counter() - t0, "cpu": cpu_s() - c0, "timings": t}


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--frames", type=int, default=240)
    ap.add_argument("--hit-fraction", type=float, default=0.1)
    ap.add_argument("--model", default="default")
    ap.add_argument("--batch", type=int, default=32)
    ap.add_argument("--work", default=os.path.join(tempfile.gettempdir(), "xtalscreen_bench_screen"))
    ap.add_argument("--baseline-frames", type=int, default=60, help="frames for the naive loop")
    ap.add_argument("--repeat", type=int, default=2, help="screen the run file this many times "
                    "(amortises the per-worker start-up)")
    ap.add_argument("--workers", default="1,2", help="worker counts to run, comma-separated")
    ap.add_argument("--device", default="cpu", help="inference device of the screen runs (cpu, cuda)")
    ap.add_argument("--sim-workers", type=int, default=1,
                    help="processes simulating the run file (>1: per-frame seeds, other frames)")
    ap.add_argument("--no-baseline", action="store_true", help="skip the naive-loop baseline")
    args = ap.parse_args(argv)

    import torch

    from xtalscreen.models.pretrained import load_screening_model
    from xtalscreen.screen import screen

    torch.set_num_threads(1)
    work = Path(args.work)
    work.mkdir(parents=True, exist_ok=True)
    run = work / f"cspad_sim_{args.frames}.h5"
    if not run.is_file():
        t = time.perf_counter()
        make_run(run, args.frames, args.hit_fraction, workers=args.sim_workers)
        print(f"wrote {run} ({run.stat().st_size / 1e6:.0f} MB) in {time.perf_counter() - t:.1f} s",
              file=sys.stderr)
    model, pp, meta = load_screening_model(args.model)
    rows = []
    # warm-up: numba kernels, the assembly index maps, torch
    screen([run], out=work / "warm", model=args.model, frames=slice(0, 4), live=False,
           device=args.device)

    base_run = work / f"cspad_sim_baseline_{args.baseline_frames}.h5"
    b_row = None
    if not args.no_baseline:
        if not base_run.is_file():
            make_run(base_run, args.baseline_frames, args.hit_fraction, workers=args.sim_workers)
        b = baseline(base_run, model, pp, work)
        b_row = ("naive loop (baseline)", 1, b["frames"], "-", b["seconds"], b["cpu"], b["timings"])
    counts = [int(v) for v in args.workers.split(",")]
    dev = "" if args.device == "cpu" else f" --device {args.device}"
    print(f"CSPAD frames 32 x 185 x 388 (2.3 Mpx, float32, bitshuffle-LZ4), {args.frames} frames, "
          f"screened {args.repeat} times, {args.hit_fraction:.0%} simulated with crystals, model {args.model} "
          f"(input {pp.output_shape}, bin {pp.bin}), torch {torch.__version__}, "
          f"{os.cpu_count()} CPUs, load average {os.getloadavg()[0]:.1f}, inference on {args.device}"
          + (f" ({torch.cuda.get_device_name()})" if args.device.startswith("cuda") else "")
          + ("" if not args.no_baseline else "; speed-ups against the first row") + "\n")
    print("| run | workers | frames | kept | wall frames/s | vs baseline | CPU ms/frame | vs baseline | "
          "read | preprocess | infer | write |")
    print("|---|---|---|---|---|---|---|---|---|---|---|---|", flush=True)

    def report(name, w, n, kept, sec, cpu, t):
        if not rows:
            rows.append((n / sec, cpu / n))
        base_fps, base_cpu = rows[0]
        fps, cpf = n / sec, cpu / n
        split = " | ".join(f"{1e3 * t.get(k, 0.0) / n:.1f} ms" for k in ("read", "preprocess", "infer", "write"))
        print(f"| {name} | {w} | {n} | {kept} | {fps:.1f} | {fps / base_fps:.1f}x | {1e3 * cpf:.1f} | "
              f"{base_cpu / cpf:.1f}x | {split} |", flush=True)

    if b_row is not None:
        report(*b_row)
    for write_hits in (True, False):
        for workers in counts:
            c0 = cpu_s()
            s = screen([run] * args.repeat, out=work / f"w{workers}{write_hits}", model=args.model,
                       workers=workers, batch=args.batch, live=False, write_hits=write_hits,
                       device=args.device)
            name = (f"screen --workers {workers} --batch {args.batch}{dev}"
                    + ("" if write_hits else " --no-hits-h5"))
            report(name, workers, s.frames, s.hits, s.seconds, cpu_s() - c0, s.timings)
    print("\nStage times are per frame, summed over worker processes (wall time inside each stage).")
    return 0


if __name__ == "__main__":
    sys.exit(main())
