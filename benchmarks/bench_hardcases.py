"""The learned screen against xtalscreen's own spot finder on the spot-finder issue's hard cases.

For each case (one physical setting changed at a time, as in ``bench_spots.py``) frames are
simulated with every DiffraNet class in equal numbers, on seeds the shipped model never saw
(``--seed-base``, default 5000; training used seeds from 0). The truth is the simulator's Ke
label collapsed to Hit+Maybe (>= 4 visible spots) vs Miss; ``--visibility`` picks the label
rule (default ``measured``: spots whose SNR measured in the frame is >= 5, the shipped model's). Both screens decide on the same
frames:

- **model**: ``FrameProcessor`` exactly as ``xtalscreen screen`` runs it (fast preprocessing of
  the raw frame, the model, ``p_hit + p_maybe >= 0.5``);
- **spot finder**: ``find_spots`` with default parameters (and the case's filter, e.g.
  ``ice_rings=True`` for the ice case) then paper 001's bands (>= 4 spots: Hit or Maybe).

Prints one Markdown table: accuracy, sensitivity and specificity of each screen per case.

    .venv/bin/python benchmarks/bench_hardcases.py [--frames-per-class 8] [--model default] \
        [--visibility measured|expected]
"""

from __future__ import annotations

import argparse
import os
import sys
import time
import warnings

import numpy as np

os.environ.setdefault("NUMBA_NUM_THREADS", "1")

CLASSES = ("blank", "no-crystal", "weak", "good", "strong")


def case_configs(visibility: str = "measured") -> dict:
    """name -> (SimulationConfig, spot-finder options); labels by ``visibility``
    (:class:`xtalscreen.simulate.config.LabelConfig`; the shipped model's rule by default)."""
    from xtalscreen.screen.demo import pilatus2m_config
    from xtalscreen.simulate import get_preset

    def cfg(base, **changes):
        c = (pilatus2m_config() if base == "pilatus2m" else get_preset(base)).copy()
        for path, value in changes.items():
            obj = c
            parts = path.split(".")
            for part in parts[:-1]:
                obj = getattr(obj, part)
            setattr(obj, parts[-1], value)
        c.labels.visibility = visibility
        return c

    ice = {"background.ice_prob": 1.0, "background.ice_um": (2.0, 5.0)}
    return {
        "cspad, tile gaps (reference)": (cfg("cspad"), {}),
        "pilatus2m, module gaps": (cfg("pilatus2m"), {}),
        "diffranet (512 px CCD, 8-bit)": (cfg("diffranet"), {}),
        "weak frames only (cspad)": (cfg("cspad"), {}),
        "ice rings (cspad, ice in every frame)": (cfg("cspad", **ice), {"ice_rings": True}),
        "water ring (cspad, 40-60 um water)": (cfg("cspad", **{"background.water_um": (40.0, 60.0)}), {}),
        "jet streak (jungfrau4m, 10x streak)": (cfg("jungfrau4m", **{"background.jet_streak": 3.0}), {}),
    }


def decide_spots(frame, opts) -> bool:
    from xtalscreen.spots import find_spots

    return len(find_spots(frame, **opts)) >= 4


def run(frames_per_class: int, model: str, seed_base: int, only: str | None, visibility: str = "measured") -> None:
    import torch

    from xtalscreen.models.pretrained import load_screening_model
    from xtalscreen.screen.workers import FrameProcessor
    from xtalscreen.simulate import simulate_frame

    torch.set_num_threads(1)
    net, pp, meta = load_screening_model(model)
    net.eval()
    proc = FrameProcessor(net, pp, meta["classes"], threshold=None,
                          operating_points=meta.get("operating_points"))  # as `screen` decides
    cases = case_configs(visibility)
    for cfg, opts in list(cases.values())[:3]:  # compile and warm both screens
        frame, _ = simulate_frame(cfg, rng=1, frame_class="good")
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            proc.process([frame])
        decide_spots(frame, opts)
    print(f"## Hit+Maybe vs Miss: shipped model vs spot finder on the hard cases\n")
    print(f"Model `{model}` ({pp.output_shape[1]} x {pp.output_shape[2]} input, bin {pp.bin}, "
          f"{pp.bin_reduce}); spot finder: dispersion defaults, >= 4 spots = Hit or Maybe. "
          f"{frames_per_class} frames per DiffraNet class per case, seeds {seed_base}+; labels by "
          f"{visibility} SNR.\n")
    print("| case | frames | positives | model accuracy | model sens. / spec. | spot finder accuracy "
          "| spot finder sens. / spec. | model ms/frame | spot finder ms/frame |")
    print("|---|---|---|---|---|---|---|---|---|")
    for ci, (name, (cfg, opts)) in enumerate(cases.items()):
        if only and only not in name:
            continue
        classes = ("weak",) * len(CLASSES) if name.startswith("weak") else CLASSES
        truth, by_model, by_spots = [], [], []
        t_model = t_spots = 0.0
        for k, cls in enumerate(classes):
            for s in range(frames_per_class):
                frame, tr = simulate_frame(cfg, rng=seed_base + 1000 * ci + 100 * k + s, frame_class=cls)
                truth.append(tr.ke_class != "miss")
                t0 = time.process_time()
                with warnings.catch_warnings():
                    warnings.simplefilter("ignore")
                    r = proc.process([frame])[0]
                t1 = time.process_time()
                by_spots.append(decide_spots(frame, opts))
                t2 = time.process_time()
                by_model.append(r.decision in ("hit", "maybe"))
                t_model += t1 - t0
                t_spots += t2 - t1
        t, m, sp = (np.array(v, bool) for v in (truth, by_model, by_spots))

        def score(p):
            acc = float(np.mean(p == t))
            sens = float(np.mean(p[t])) if t.any() else float("nan")
            spec = float(np.mean(~p[~t])) if (~t).any() else float("nan")
            return f"{100 * acc:.1f} %", f"{100 * sens:.1f} % / {100 * spec:.1f} %"

        (ma, msens), (sa, ssens) = score(m), score(sp)
        n = len(t)
        print(f"| {name} | {n} | {int(t.sum())} | {ma} | {msens} | {sa} | {ssens} | "
              f"{1e3 * t_model / n:.1f} | {1e3 * t_spots / n:.1f} |", flush=True)
    print()


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--frames-per-class", type=int, default=8)
    ap.add_argument("--model", default="default")
    ap.add_argument("--seed-base", type=int, default=5000)
    ap.add_argument("--cases", default=None, help="only cases whose name contains this")
    ap.add_argument("--visibility", default="measured", choices=["measured", "expected"],
                    help="label rule of the truth (LabelConfig.visibility)")
    a = ap.parse_args(argv)
    run(a.frames_per_class, a.model, a.seed_base, a.cases, a.visibility)
    return 0


if __name__ == "__main__":
    sys.exit(main())
