"""Speed of local contrast normalisation (LCN) and of the whole preprocessing chain.

Run:  .venv/bin/python benchmarks/bench_preprocess.py [--reps N]

Target (issue 5): paper 001's LCN took 5.7 s per batch of 64 images on 8 cores, i.e.
5.7 / 64 * 8 = 712 ms per 720 x 720 image per core; we want >= 100x that per core (<= 7.1 ms).
Everything here runs on one core (numba and scipy are single-threaded for these calls; torch
is not used). The baseline is a straightforward vectorised scipy implementation
(``scipy.ndimage.uniform_filter`` with mode "mirror", i.e. numpy's reflect padding) of the same
masked equations, measured in the same process and checked to give the same numbers.
Prints a Markdown table.
"""

from __future__ import annotations

import argparse
import os
import platform
import time

import numpy as np
from scipy import ndimage

from xtalscreen.io.frame import Frame
from xtalscreen.preprocess import PreprocessConfig, lcn

PAPER_MS_PER_IMAGE_PER_CORE = 5.7 / 64 * 8 * 1e3  # 712.5 ms


def lcn_scipy(image, *, window=9, mask=None, eps=1e-3):
    """The baseline: eqs 6-9 with uniform_filter (mean over the window, masked pixels out)."""
    img = np.asarray(image, np.float64)
    valid = np.isfinite(img) if mask is None else (np.isfinite(img) & ~mask)
    mu, sd = img[valid].mean(), img[valid].std()
    g = np.where(valid, (img - mu) / (sd if sd > 0 else 1.0), 0.0)
    v = valid.astype(np.float64)
    s0 = ndimage.uniform_filter(v, window, mode="mirror")
    s1 = ndimage.uniform_filter(g, window, mode="mirror")
    s2 = ndimage.uniform_filter(g * g, window, mode="mirror")
    with np.errstate(invalid="ignore", divide="ignore"):
        m = s1 / s0
        local_sd = np.maximum(np.sqrt(np.maximum(s2 / s0 - m * m, 0.0)), eps)
        out = (g - m) / local_sd
    out[~valid] = 0.0
    return out.astype(np.float32)


def timeit(fn, reps):
    fn()  # warm-up (numba compile / caches)
    ts = []
    for _ in range(reps):
        t = time.perf_counter()
        fn()
        ts.append(time.perf_counter() - t)
    return float(np.median(ts)) * 1e3, float(np.min(ts)) * 1e3


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--reps", type=int, default=30)
    args = ap.parse_args()
    rng = np.random.default_rng(0)

    img = rng.poisson(20.0, (720, 720)).astype(np.float32)
    img[rng.integers(0, 720, 200), rng.integers(0, 720, 200)] += 2000.0  # Bragg-like spikes
    mask = rng.random(img.shape) < 0.03
    mask[:, 350:360] = True                                              # a module gap

    diff = float(np.abs(lcn(img, window=9, mask=mask) - lcn_scipy(img, window=9, mask=mask)).max())

    rows = []
    base = timeit(lambda: lcn_scipy(img, window=9, mask=mask), args.reps)
    rows.append(("LCN, scipy uniform_filter baseline", "720x720, w=9", base, None))
    for w in (9, 31):
        t = timeit(lambda w=w: lcn(img, window=w, mask=mask), args.reps)
        rows.append(("LCN, xtalscreen.preprocess.lcn", f"720x720, w={w}", t,
                     base[1] / t[1] if w == 9 else None))

    # whole chain: 1440 x 1440 detector -> bin 2 -> 720 x 720 crop -> LCN (paper 001 settings)
    raw = rng.poisson(5.0, (1440, 1440)).astype(np.float32)
    fr = Frame(raw, mask=rng.random(raw.shape) < 0.01, beam_center=(720.0, 720.0))
    cfg = PreprocessConfig.ke2018()
    rows.append(("PreprocessConfig.ke2018().apply", "1440x1440 frame",
                 timeit(lambda: cfg.apply(fr), args.reps), None))
    rows.append(("  ... with augment=True", "1440x1440 frame",
                 timeit(lambda: cfg.apply(fr, rng=1, augment=True), args.reps), None))
    # Pilatus 2M sized frame, the l-cysteine test data's shape
    p2m = Frame(rng.poisson(2.0, (1679, 1475)).astype(np.float32), beam_center=(737.5, 839.5))
    rows.append(("PreprocessConfig.ke2018().apply", "1679x1475 (Pilatus 2M)",
                 timeit(lambda: cfg.apply(p2m), args.reps), None))

    # the Rayonix MX340 point's matched filter (session 14): 1920 x 1920 frame, filter 1.2 px,
    # bin 2 -> 256 px; screen's FastPreprocess smooths only the crop's window, the reference
    # PreprocessConfig.apply the whole frame (same values)
    from xtalscreen.screen.prepare import FastPreprocess

    rx = Frame(rng.poisson(12.0, (1920, 1920)).astype(np.float32), beam_center=(960.3, 958.7))
    plain = PreprocessConfig(bin="auto", crop=(256, 256), bin_reduce="max", unbinned_up_to=2, margin=0)
    filt = plain.replace(prefilter_sigma=1.2, bin=2)
    fast_plain, fast_filt = FastPreprocess(plain), FastPreprocess(filt)
    assert np.array_equal(fast_filt(rx).x, filt.apply(rx))
    t_plain = timeit(lambda: fast_plain(rx), args.reps)
    rows.append(("screen's FastPreprocess, max-bin 8 (no filter; baseline)", "1920x1920 (Rayonix)", t_plain, None))
    rows.append(("screen's FastPreprocess, filter 1.2 px + bin 2 (the point)", "1920x1920 (Rayonix)",
                 timeit(lambda: fast_filt(rx), args.reps), None))
    rows.append(("PreprocessConfig.apply, filter 1.2 px + bin 2 (whole frame)", "1920x1920 (Rayonix)",
                 timeit(lambda: filt.apply(rx), args.reps), None))

    print(f"machine: {platform.processor() or platform.machine()}, {os.cpu_count()} CPUs visible; "
          f"{args.reps} runs each, one core; 'best' is the fastest run (least disturbed by other "
          "processes), ratios use it")
    print(f"max |lcn - baseline| = {diff:.2e}\n")
    print("| what | input | ms / image (median) | ms / image (best) | vs baseline | "
          "vs paper 001 per core (712 ms) |")
    print("|---|---|---:|---:|---:|---:|")
    for name, inp, (med, best), ratio in rows:
        r = f"{ratio:.1f}x" if ratio else ""
        print(f"| {name} | {inp} | {med:.2f} | {best:.2f} | {r} | "
              f"{PAPER_MS_PER_IMAGE_PER_CORE / best:.0f}x |")


if __name__ == "__main__":
    main()
