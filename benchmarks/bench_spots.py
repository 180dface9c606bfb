"""Spot-finder benchmark: speed (ms per megapixel) and accuracy on simulated frames.

Run:  .venv/bin/python benchmarks/bench_spots.py [--quick] [--skip-accuracy] [--skip-speed]

Speed: full pipeline from a float32 frame to a spot table (``find_spots``), one process, on 1 Mpx
(1024²) and 16 Mpx (4096²) synthetic frames (Poisson background, 0.2 spots per kpx), against the
straightforward numpy/scipy implementation of the same algorithm (``xtalscreen.spots.reference``)
in the same process; then frames per second with ``--workers``-style process pools.

Accuracy: frames from ``xtalscreen.simulate`` with exact ground truth. A found spot matches a
true spot on the same panel within 2 px. Recall is over the *visible* spots (simulator SNR >= 5)
and, separately, over those with SNR >= 10; precision is over all found spots (any true
reflection counts). Hit accuracy: truth hit = Ke class "hit" (>= 10 visible spots) vs
``n_found >= 10``. Hard cases change one physical setting at a time.

Prints Markdown tables.
"""

from __future__ import annotations

import argparse
import os
import sys
import time

import numpy as np

os.environ.setdefault("NUMBA_NUM_THREADS", "1")

from xtalscreen.io import Frame  # noqa: E402
from xtalscreen.spots import find_spots  # noqa: E402
from xtalscreen.spots.dispersion import DispersionParams, estimate_gain  # noqa: E402
from xtalscreen.spots.peakfinder8 import Peakfinder8Params, radius_bins  # noqa: E402
from xtalscreen.spots.reference import dispersion_reference, peakfinder8_reference  # noqa: E402


# ---------------------------------------------------------------------------------------------
def synthetic_frame(h: int, w: int, *, rng=0, background=1.5, density=2e-4, photons=300.0):
    rng = np.random.default_rng(rng)
    lam = np.full((h, w), background, dtype=np.float32)
    n = int(density * h * w)
    ys = rng.uniform(4, h - 4, n)
    xs = rng.uniform(4, w - 4, n)
    yy, xx = np.mgrid[-3:4, -3:4]
    for y, x in zip(ys, xs):
        j, i = int(y), int(x)
        g = np.exp(-(((xx + i + 0.5 - x) ** 2) + ((yy + j + 0.5 - y) ** 2)) / (2 * 0.8 ** 2))
        lam[j - 3:j + 4, i - 3:i + 4] += (photons * g / g.sum()).astype(np.float32)
    return rng.poisson(lam).astype(np.float32), n


def best_time(fn, repeats: int, clock=time.perf_counter) -> float:
    ts = []
    for _ in range(repeats):
        t0 = clock()
        fn()
        ts.append(clock() - t0)
    return min(ts)


def speed(quick: bool) -> None:
    sizes = [(1024, 1024)] + ([] if quick else [(4096, 4096)])
    print("## Speed: one process, full pipeline frame -> spot table\n")
    print("| finder | frame | spots found / planted | xtalscreen ms/Mpx (wall) | xtalscreen CPU ms/Mpx "
          "| numpy/scipy reference ms/Mpx (wall) | speed-up |")
    print("|---|---|---|---|---|---|---|")
    for h, w in sizes:
        img, n = synthetic_frame(h, w, rng=1)
        mpx = h * w / 1e6
        bad = np.zeros(img.shape, bool)
        reps = 5 if h <= 1024 else 3
        # dispersion
        find_spots(img)  # compile / warm
        t_fast = best_time(lambda: find_spots(img), reps)
        c_fast = best_time(lambda: find_spots(img), reps, time.process_time)
        n_fast = len(find_spots(img))
        g = estimate_gain([(img, bad)])
        p = DispersionParams()
        t_ref = best_time(lambda: dispersion_reference(img, bad, p, gain=g), 1 if h > 1024 else 2)
        print(f"| dispersion | {h}x{w} | {n_fast} / {n} | {1e3 * t_fast / mpx:.2f} | "
              f"{1e3 * c_fast / mpx:.2f} | {1e3 * t_ref / mpx:.1f} | {t_ref / t_fast:.1f}x |")
        # peakfinder8
        find_spots(img, algorithm="peakfinder8")
        t_fast = best_time(lambda: find_spots(img, algorithm="peakfinder8"), reps)
        c_fast = best_time(lambda: find_spots(img, algorithm="peakfinder8"), reps, time.process_time)
        n_fast = len(find_spots(img, algorithm="peakfinder8"))
        pp = Peakfinder8Params()
        r = np.hypot(np.arange(w) + 0.5 - w / 2, (np.arange(h) + 0.5 - h / 2)[:, None]).astype(np.float32)

        def ref_pf8():
            rb = radius_bins(r, pp)
            return peakfinder8_reference(img, bad, rb, pp)

        t_ref = best_time(ref_pf8, 1)
        print(f"| peakfinder8 | {h}x{w} | {n_fast} / {n} | {1e3 * t_fast / mpx:.2f} | "
              f"{1e3 * c_fast / mpx:.2f} | {1e3 * t_ref / mpx:.1f} | {t_ref / t_fast:.1f}x |")
    print()
    print("Published single-core figures quoted in the issue (ms/Mpx): OM peakfinder8 ~15 "
          "(4.4 fast mode), CrystFEL peakfinder8 ~12.7 (8.4 fast), DIALS dispersion ~11.2.\n")


def scaling(quick: bool) -> None:
    from xtalscreen.spots.batch import process_frames

    n_cpu = os.cpu_count() or 1
    workers = [w for w in (1, 2, 4, 8, 16) if w <= n_cpu]
    img, _ = synthetic_frame(1024, 1024, rng=2)
    n_frames = 16 if quick else 48
    frames = [Frame(data=img, index=i) for i in range(n_frames)]
    print(f"## Scaling with worker processes ({n_frames} frames of 1 Mpx, {n_cpu} CPUs visible)\n")
    print("| workers | frames/s | ms/Mpx (wall) |")
    print("|---|---|---|")
    for wk in workers:
        list(process_frames(frames[:2], workers=wk))  # start-up, compile in workers
        t0 = time.perf_counter()
        res = list(process_frames(frames, workers=wk, keep_spots=False))
        dt = time.perf_counter() - t0
        assert len(res) == n_frames
        print(f"| {wk} | {n_frames / dt:.1f} | {1e3 * dt / n_frames:.2f} |")
    print()


# ---------------------------------------------------------------------------------------------
def _match(a, b, tol=2.0):
    out = np.zeros(len(a), bool)
    if len(a) == 0 or len(b) == 0:
        return out
    for p in np.unique(a["panel"]):
        ia = np.where(a["panel"] == p)[0]
        ib = np.where(b["panel"] == p)[0]
        if len(ib) == 0:
            continue
        d = np.hypot(a["fs"][ia][:, None] - b["fs"][ib][None], a["ss"][ia][:, None] - b["ss"][ib][None])
        out[ia] = d.min(axis=1) <= tol
    return out


def _case_configs():
    from xtalscreen.simulate import get_preset

    def cfg(preset, **changes):
        c = get_preset(preset).copy()
        for path, value in changes.items():
            obj = c
            parts = path.split(".")
            for part in parts[:-1]:
                obj = getattr(obj, part)
            setattr(obj, parts[-1], value)
        return c

    return {
        "cspad (64 ASICs with tile gaps; reference case)": (cfg("cspad"), None),
        "jungfrau4m (8 modules with gaps; reference case)": (cfg("jungfrau4m"), None),
        "ice rings (cspad, ice in every frame)": (cfg("cspad", **{"background.ice_prob": 1.0,
                                                                   "background.ice_um": (2.0, 5.0)}), None),
        "ice rings, with ice_rings=True filter": (cfg("cspad", **{"background.ice_prob": 1.0,
                                                                   "background.ice_um": (2.0, 5.0)}), "ice_filter"),
        "water ring (cspad, 40-60 µm water)": (cfg("cspad", **{"background.water_um": (40.0, 60.0)}), None),
        "jet streak (jungfrau4m, 10x streak)": (cfg("jungfrau4m", **{"background.jet_streak": 3.0}), None),
        "hot pixels (jungfrau4m, 0.1 %, not masked)": (cfg("jungfrau4m", **{"detector.hot_fraction": 1e-3}), "unmask_hot"),
        "saturated spots (jungfrau4m, saturation 500 ph)": (cfg("jungfrau4m", **{"detector.saturation": 500.0}), None),
        "broad fibre PSF, offset (rayonix_mx340 CCD)": (cfg("rayonix_mx340"), None),
        "DiffraNet 8-bit images": (cfg("diffranet"), None),
    }


def accuracy(quick: bool, only: str | None = None) -> None:
    from xtalscreen.simulate import simulate_frame

    seeds = range(2 if quick else 4)
    classes = ["strong", "good", "weak", "no-crystal"]
    print("## Accuracy on simulated frames (dispersion finder, default parameters)\n")
    print("| case | frames | recall (visible, SNR>=5) | recall (SNR>=10) | precision | hit/miss accuracy | "
          "recall weak frames |")
    print("|---|---|---|---|---|---|---|")
    for name, (cfg, mode) in _case_configs().items():
        if only and only not in name:
            continue
        tp_v = n_v = tp_10 = n_10 = tp_f = n_f = 0
        hit_ok = n_frames = 0
        wk_tp = wk_n = 0
        for cls in classes:
            for s in seeds:
                frame, truth = simulate_frame(cfg, rng=1000 + s, frame_class=cls)
                if mode == "unmask_hot":
                    sat = float(cfg.detector.saturation) * float(cfg.detector.gain)
                    frame = frame.replace(mask=frame.mask & ~(frame.data >= 0.99 * sat))
                t = find_spots(frame, ice_rings=(mode == "ice_filter"))
                sp = truth.spots
                vis = sp[sp["visible"]]
                m_v = _match(vis, t.records)
                hi = vis[vis["snr"] >= 10]
                if cls in ("strong", "good"):
                    tp_v += int(m_v.sum())
                    n_v += len(vis)
                    tp_10 += int(_match(hi, t.records).sum())
                    n_10 += len(hi)
                if cls == "weak":
                    wk_tp += int(m_v.sum())
                    wk_n += len(vis)
                tp_f += int(_match(t.records, sp).sum())
                n_f += len(t)
                hit_ok += int((truth.ke_class == "hit") == (len(t) >= 10))
                n_frames += 1
        f = lambda a, b: f"{a / b:.3f}" if b else "-"  # noqa: E731
        print(f"| {name} | {n_frames} | {f(tp_v, n_v)} ({n_v}) | {f(tp_10, n_10)} ({n_10}) | "
              f"{f(tp_f, n_f)} ({n_f}) | {f(hit_ok, n_frames)} | {f(wk_tp, wk_n)} ({wk_n}) |")
    print()


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--quick", action="store_true", help="1 Mpx only, fewer frames")
    ap.add_argument("--skip-speed", action="store_true")
    ap.add_argument("--skip-accuracy", action="store_true")
    ap.add_argument("--cases", default=None, help="only accuracy cases whose name contains this")
    a = ap.parse_args(argv)
    print(f"# bench_spots ({time.strftime('%Y-%m-%d %H:%M')}, {os.cpu_count()} CPUs, "
          f"python {sys.version.split()[0]})\n")
    if not a.skip_speed:
        speed(a.quick)
        scaling(a.quick)
    if not a.skip_accuracy:
        accuracy(a.quick, a.cases)
    return 0


if __name__ == "__main__":
    sys.exit(main())
