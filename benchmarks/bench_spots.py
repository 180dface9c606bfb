"""Spot-finder benchmark: speed (ms per megapixel) and accuracy on simulated frames.

Run:  .venv/bin/python benchmarks/bench_spots.py [--quick] [--skip-accuracy] [--skip-speed]

Speed: full pipeline from a float32 frame to a spot table (``find_spots``), one process, on 1 Mpx
(1024²) and 16 Mpx (4096²) synthetic frames (Poisson background, 0.2 spots per kpx), against the
straightforward numpy/scipy implementation of the same algorithm (``xtalscreen.spots.reference``)
in the same process (dispersion also with ``gain_per='frame'`` and with the gain given); then
frames per second of ``run_spots`` on an HDF5 file with 1, 2, 4, ... worker processes that
read their own frames.

Accuracy: frames from ``xtalscreen.simulate`` with exact ground truth. A found spot matches a
true spot on the same panel within 2 px. Recall is over the *visible* spots (simulator SNR >= 5),
over those with an expected peak-pixel SNR >= 3, and over those with SNR >= 10; precision is
over all found spots (any true reflection counts); strong and good frames are also reported
separately. ``--algorithm`` picks the finder, ``--params`` passes its parameters,
``--seed-base`` picks the simulator seeds (tune on other seeds than the reported 1000+). Hit
accuracy: truth hit = Ke class "hit" (>= 10 visible spots) vs ``n_found >= 10``. Hard cases
change one physical setting at a time. ``--bound`` adds the recall an ideal matched filter could
reach at precision 0.99 (:func:`bound`); ``--speed-extended`` times ``dispersion_extended``.

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
        for label, kw in (("dispersion, gain_per='frame'", {"gain_per": "frame"}),
                          ("dispersion, gain=1 given", {"gain": 1.0})):
            find_spots(img, **kw)
            t_v = best_time(lambda: find_spots(img, **kw), reps)
            c_v = best_time(lambda: find_spots(img, **kw), reps, time.process_time)
            n_v = len(find_spots(img, **kw))
            print(f"| {label} | {h}x{w} | {n_v} / {n} | {1e3 * t_v / mpx:.2f} | "
                  f"{1e3 * c_v / mpx:.2f} | {1e3 * t_ref / mpx:.1f} | {t_ref / t_v:.1f}x |")
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
    """Frames/s of ``run_spots`` on an HDF5 file of 1 Mpx frames: workers read their own frames."""
    import tempfile

    from xtalscreen.io import write_hdf5_run
    from xtalscreen.spots.batch import run_spots

    n_cpu = os.cpu_count() or 1
    workers = [w for w in (1, 2, 4, 8, 16) if w <= n_cpu]
    n_frames = 32 if quick else 192
    imgs = [synthetic_frame(1024, 1024, rng=100 + i)[0] for i in range(4)]
    with tempfile.TemporaryDirectory() as tmp:
        path = os.path.join(tmp, "run.h5")
        write_hdf5_run([Frame(data=imgs[i % 4], index=i) for i in range(n_frames)], path)
        print(f"## Scaling with worker processes ({n_frames} frames of 1 Mpx in one HDF5 file, "
              f"read by the workers; {n_cpu} CPUs visible)\n")
        print("| workers | frames/s | ms/Mpx (wall) | speed-up vs 1 | pool start-up + 1 frame (s) |")
        print("|---|---|---|---|---|")
        base = None
        for wk in workers:
            t0 = time.perf_counter()
            run_spots(path, workers=wk, progress=False, open_kw={"frames": [0]})
            t_start = time.perf_counter() - t0
            t0 = time.perf_counter()
            s = run_spots(path, workers=wk, progress=False)
            dt = time.perf_counter() - t0
            assert s.frames == n_frames, s.errors
            base = base or dt
            print(f"| {wk} | {n_frames / dt:.1f} | {1e3 * dt / n_frames:.2f} | {base / dt:.2f}x | "
                  f"{t_start:.2f} |")
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
        "DiffraNet-like counts (float32 photon counts, no sqrt)": (
            cfg("diffranet", **{"detector.output": "counts", "detector.dtype": "float32"}), None),
    }


def accuracy(quick: bool, only: str | None = None, params: dict | None = None,
             seed_base: int = 1000, algorithm: str = "dispersion") -> None:
    from xtalscreen.simulate import simulate_frame

    params = dict(params or {})
    seeds = range(2 if quick else 4)
    classes = ["strong", "good", "weak", "no-crystal"]
    print(f"## Accuracy on simulated frames ({algorithm} finder, parameters {params or 'default'}, "
          f"seeds {seed_base}+)\n")
    print("| case | frames | recall (visible, SNR>=5) | recall (visible, peak-pixel SNR>=3) | "
          "recall (SNR>=10) | precision | hit/miss accuracy | recall weak frames | "
          "recall / precision strong frames | recall / precision good frames |")
    print("|---|---|---|---|---|---|---|---|---|---|")
    for name, (cfg, mode) in _case_configs().items():
        if only and only not in name:
            continue
        tp_v = n_v = tp_10 = n_10 = tp_f = n_f = tp_p = n_p = 0
        hit_ok = n_frames = 0
        wk_tp = wk_n = 0
        per = {c: [0, 0, 0, 0] for c in ("strong", "good")}  # tp_vis, n_vis, tp_found, n_found
        for cls in classes:
            for s in seeds:
                frame, truth = simulate_frame(cfg, rng=seed_base + s, frame_class=cls)
                if mode == "unmask_hot":
                    sat = float(cfg.detector.saturation) * float(cfg.detector.gain)
                    frame = frame.replace(mask=frame.mask & ~(frame.data >= 0.99 * sat))
                t = find_spots(frame, algorithm=algorithm, ice_rings=(mode == "ice_filter"),
                               **params)
                sp = truth.spots
                vis = sp[sp["visible"]]
                m_v = _match(vis, t.records)
                hi = vis[vis["snr"] >= 10]
                pk = vis["peak_snr"] >= 3
                if cls in ("strong", "good"):
                    tp_v += int(m_v.sum())
                    n_v += len(vis)
                    tp_p += int(m_v[pk].sum())
                    n_p += int(pk.sum())
                    tp_10 += int(_match(hi, t.records).sum())
                    n_10 += len(hi)
                if cls == "weak":
                    wk_tp += int(m_v.sum())
                    wk_n += len(vis)
                tp_found = int(_match(t.records, sp).sum())
                tp_f += tp_found
                n_f += len(t)
                if cls in per:
                    per[cls][0] += int(m_v.sum())
                    per[cls][1] += len(vis)
                    per[cls][2] += tp_found
                    per[cls][3] += len(t)
                hit_ok += int((truth.ke_class == "hit") == (len(t) >= 10))
                n_frames += 1
        f = lambda a, b: f"{a / b:.3f}" if b else "-"  # noqa: E731
        print(f"| {name} | {n_frames} | {f(tp_v, n_v)} ({n_v}) | {f(tp_p, n_p)} ({n_p}) | "
              f"{f(tp_10, n_10)} ({n_10}) | "
              f"{f(tp_f, n_f)} ({n_f}) | {f(hit_ok, n_frames)} | {f(wk_tp, wk_n)} ({wk_n}) | "
              + " | ".join(f"{f(per[c][0], per[c][1])} / {f(per[c][2], per[c][3])}"
                           for c in ("strong", "good")) + " |")
    print()


def speed_extended(quick: bool) -> None:
    """CPU ms/Mpx (``time.process_time``, best of 3-5) of ``dispersion_extended`` next to
    ``dispersion`` on the speed benchmark's synthetic frames, measured in the same process."""
    sizes = [(1024, 1024)] + ([] if quick else [(4096, 4096)])
    print("## Speed of the extended finder (CPU ms/Mpx, one process, frame -> spot table)\n")
    print("| frame | dispersion CPU ms/Mpx | dispersion_extended CPU ms/Mpx | ratio | "
          "spots dispersion / extended / planted |")
    print("|---|---|---|---|---|")
    for h, w in sizes:
        img, n = synthetic_frame(h, w, rng=1)
        mpx = h * w / 1e6
        reps = 5 if h <= 1024 else 3
        out = []
        for alg in ("dispersion", "dispersion_extended"):
            find_spots(img, algorithm=alg)
            c = best_time(lambda: find_spots(img, algorithm=alg), reps, time.process_time)
            out.append((1e3 * c / mpx, len(find_spots(img, algorithm=alg))))
        print(f"| {h}x{w} | {out[0][0]:.2f} | {out[1][0]:.2f} | {out[1][0] / out[0][0]:.1f}x | "
              f"{out[0][1]} / {out[1][1]} / {n} |")
    print()


def _spot_model(sp):
    """Per truth spot: photons ``I``, background variance per pixel ``b`` (photons², background
    + read noise²) and the profile's σ² (pixels², isotropic with the same covariance
    determinant), recovered from the simulator's exact ``snr`` (footprint) and ``peak_snr``.

    The simulator defines (``simulate/engine.py``) ``snr = 0.865 I / sqrt(0.865 I + n b)`` over
    a footprint of ``n = 4π sqrt(det C)`` pixels and ``peak_snr = I f / sqrt(I f + b)`` with
    peak fraction ``f = min(1, 1 / (2π sqrt(det C)))``; both are solved for ``b`` and
    ``sqrt(det C)``.
    """
    ph = sp["photons"].astype(np.float64)
    pf = 0.865 * ph
    snr = sp["snr"].astype(np.float64)
    ps = sp["peak_snr"].astype(np.float64)
    with np.errstate(divide="ignore", invalid="ignore"):
        b_fp = pf * pf / (snr * snr) - pf             # n · b
        n = 4.0 * ph * ph / (ps * ps * (b_fp + 2.0 * ph))   # f = 2 / n
        b = b_fp / n
        # peak fraction capped at 1 (tiny spots): f = 1, n from b
        b1 = ph * ph / (ps * ps) - ph
        n1 = b_fp / b1
        small = n <= 2.0
        b = np.where(small, b1, b)
        n = np.where(small, np.maximum(n1, 1.0), n)
    sig2 = n / (4.0 * np.pi)
    return ph, np.maximum(b, 1e-6), np.maximum(sig2, 1e-3)


def _profile_sums(sig2, fs, ss, r=6):
    """Σp² and Σp³ of a Gaussian of variance ``sig2`` sampled at pixel centres around the
    sub-pixel position (fs, ss) and normalised, as the simulator splats spots."""
    d = np.arange(-r, r + 1, dtype=np.float64)
    ox = 0.5 - (fs - np.floor(fs))
    oy = 0.5 - (ss - np.floor(ss))
    gx = np.exp(-(d[None, :] + ox[:, None]) ** 2 / (2 * sig2[:, None]))
    gy = np.exp(-(d[None, :] + oy[:, None]) ** 2 / (2 * sig2[:, None]))
    p = gx[:, None, :] * gy[:, :, None]
    p /= p.sum(axis=(1, 2), keepdims=True)
    return (p ** 2).sum(axis=(1, 2)), p


def bound(quick: bool, only: str | None = None, seed_base: int = 1000,
          precision: float = 0.99) -> None:
    """Best recall an ideal matched filter could reach at the given precision (see the doc of
    ``benchmarks/results/spots.md``): per visible spot of strong+good frames, the probability
    that ``T = Σ p_i (x_i - b)`` (known profile ``p`` and background ``b``, position unknown)
    exceeds the threshold ``t`` whose per-pixel false-alarm rate, over every good pixel of the
    case's frames, leaves ``(1/precision - 1)`` false spots per visible spot."""
    from scipy.stats import norm

    from xtalscreen.simulate import simulate_frame

    seeds = range(2 if quick else 4)
    print(f"## Matched-filter bound (precision {precision}, seeds {seed_base}+)\n")
    print("| case | visible spots (strong+good) | allowed false spots | threshold t (sigmas) "
          "| ideal recall | ideal recall, SNR 5-10 |")
    print("|---|---|---|---|---|---|")
    for name, (cfg, _mode) in _case_configs().items():
        if only and only not in name:
            continue
        n_pix = 0
        n_vis_all = 0
        rows = []
        for cls in ("strong", "good", "weak", "no-crystal"):
            for s in seeds:
                frame, truth = simulate_frame(cfg, rng=seed_base + s, frame_class=cls)
                n_pix += int((~frame.mask).sum())
                vis = truth.spots[truth.spots["visible"]]
                n_vis_all += len(vis)
                if cls in ("strong", "good") and len(vis):
                    rows.append(vis)
        vis = np.concatenate(rows)
        ph, b, sig2 = _spot_model(vis)
        p2, p = _profile_sums(sig2, vis["fs"].astype(float), vis["ss"].astype(float))
        allowed = max(n_vis_all * (1.0 / precision - 1.0), 1e-9)
        t = float(norm.isf(allowed / n_pix))
        mean = ph * p2
        sd0 = np.sqrt(b * p2)
        sd1 = np.sqrt(b * p2 + ph * (p ** 3).sum(axis=(1, 2)))
        pdet = norm.sf((t * sd0 - mean) / sd1)
        mid = (vis["snr"] >= 5) & (vis["snr"] < 10)
        print(f"| {name} | {len(vis)} | {allowed:.1f} | {t:.2f} | {pdet.mean():.3f} | "
              f"{pdet[mid].mean():.3f} ({int(mid.sum())}) |")
    print()


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--quick", action="store_true", help="1 Mpx only, fewer frames")
    ap.add_argument("--skip-speed", action="store_true")
    ap.add_argument("--skip-accuracy", action="store_true")
    ap.add_argument("--cases", default=None, help="only accuracy cases whose name contains this")
    ap.add_argument("--params", default="", help="finder parameters for the accuracy run, e.g. "
                    "\"hot_pixels=True,gain_per='frame'\"")
    ap.add_argument("--algorithm", default="dispersion",
                    help="finder of the accuracy run: dispersion, dispersion_extended, "
                         "peakfinder8")
    ap.add_argument("--speed-extended", action="store_true",
                    help="only the CPU time of dispersion_extended next to dispersion")
    ap.add_argument("--bound", action="store_true",
                    help="also print the ideal matched-filter recall bound of the accuracy cases")
    ap.add_argument("--seed-base", type=int, default=1000,
                    help="first simulator seed (tune on other seeds than the reported 1000+)")
    a = ap.parse_args(argv)
    print(f"# bench_spots ({time.strftime('%Y-%m-%d %H:%M')}, {os.cpu_count()} CPUs, "
          f"python {sys.version.split()[0]})\n")
    if a.speed_extended:
        speed_extended(a.quick)
        return 0
    if not a.skip_speed:
        speed(a.quick)
        scaling(a.quick)
    if not a.skip_accuracy:
        params = eval(f"dict({a.params})", {"__builtins__": {"dict": dict, "True": True,
                                                              "False": False, "None": None}})
        accuracy(a.quick, a.cases, params, a.seed_base, a.algorithm)
    if a.bound:
        bound(a.quick, a.cases, a.seed_base)
    return 0


if __name__ == "__main__":
    sys.exit(main())
