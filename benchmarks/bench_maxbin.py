"""Block-maximum binning: the branch-free kernels against the branching loop they replaced.

``bin_reduce="max"`` (the shipped model's binning) runs once per frame over every pixel:
``bin_image`` for monolithic 2-D detectors, ``FastPreprocess``'s run gather for multi-panel
ones. The baseline is the session-2 loop (a branch per pixel: finite? masked? larger?), kept
here only as the baseline, compiled in the same process; both give identical results (checked
here, and in the tests against a numpy statement of the rule).

    .venv/bin/python benchmarks/bench_maxbin.py
"""

from __future__ import annotations

import time

import numba
import numpy as np


@numba.njit(cache=False, nogil=True)
def branching_max(img, mask, has_mask, f, out, out_mask):  # the session-2 kernel (max path)
    hb, wb = out.shape
    best = np.zeros(wb, np.float64)
    counts = np.zeros(wb, np.int64)
    for bi in range(hb):
        best[:] = 0.0
        counts[:] = 0
        for i in range(bi * f, bi * f + f):
            for bj in range(wb):
                acc = 0.0
                n = 0
                for j in range(bj * f, bj * f + f):
                    x = img[i, j]
                    if np.isfinite(x) and not (has_mask and mask[i, j]):
                        if n == 0 or x > acc:
                            acc = x
                        n += 1
                if n > 0 and (counts[bj] == 0 or acc > best[bj]):
                    best[bj] = acc
                counts[bj] += n
        for bj in range(wb):
            out_mask[bi, bj] = counts[bj] == 0
            out[bi, bj] = 0.0 if counts[bj] == 0 else best[bj]


def best_of(fn, reps=7, calls=10) -> float:
    t = []
    for _ in range(reps):
        c = time.process_time()
        for _ in range(calls):
            fn()
        t.append((time.process_time() - c) / calls)
    return 1e3 * min(t)


def main() -> None:
    from xtalscreen.preprocess.binning import _bin_max

    rng = np.random.default_rng(0)
    img = rng.poisson(0.5, (1679, 1475)).astype(np.float32)  # Pilatus 2M, low background
    img[rng.integers(0, 1679, 50), rng.integers(0, 1475, 50)] = np.nan
    mask = rng.random(img.shape) < 0.08
    f = 7
    hb, wb = img.shape[0] // f, img.shape[1] // f
    print("| frame | mask | branching loop (baseline) CPU ms | branch-free CPU ms | speed-up |")
    print("|---|---|---:|---:|---:|")
    for has in (True, False):
        m = mask if has else np.zeros((1, 1), bool)
        a, am = np.empty((hb, wb), np.float32), np.empty((hb, wb), bool)
        b, bm = np.empty((hb, wb), np.float32), np.empty((hb, wb), bool)
        branching_max(img, m, has, f, a, am)
        _bin_max(img, m, has, f, b, bm)
        if not (np.array_equal(a, b) and np.array_equal(am, bm)):
            raise SystemExit("kernels disagree")
        base = best_of(lambda: branching_max(img, m, has, f, a, am))
        new = best_of(lambda: _bin_max(img, m, has, f, b, bm))
        print(f"| 1679 x 1475 float32, factor {f} | {'8 %' if has else 'none'} | {base:.2f} | "
              f"{new:.2f} | {base / new:.2f}x |")


if __name__ == "__main__":
    main()
