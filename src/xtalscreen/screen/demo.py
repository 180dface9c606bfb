"""The main job end to end on a small simulated run (what ``make demo`` shows).

:func:`demo` simulates ``n`` frames over three detector presets (DiffraNet CCD, CSPAD,
Pilatus 2M), screens them with the shipped default model and prints the confusion matrix of the
true Ke class against the decision, the per-preset Hit+Maybe vs Miss sensitivity/specificity and
the screening throughput.
"""

from __future__ import annotations

import csv
import time
from pathlib import Path

import numpy as np

__all__ = ["demo", "pilatus2m_config", "DEMO_PRESETS"]

#: presets of the demo run (and of the default model's training data)
DEMO_PRESETS = ("diffranet", "cspad", "pilatus2m")


def pilatus2m_config():
    """The ``pilatus6m`` preset cut to a Pilatus 2M (3 x 8 modules, 1475 x 1679 px)."""
    from xtalscreen.simulate import get_preset

    cfg = get_preset("pilatus6m").copy()
    cfg.name = "pilatus2m"
    cfg.detector.name = "PILATUS 2M (pilatus6m preset, 3 x 8 modules)"
    cfg.detector.shape = (8 * 195 + 7 * 17, 3 * 487 + 2 * 7)
    return cfg.validate()


def demo(out_dir, *, n: int = 60, seed: int = 2026, workers: int = 1, model="default",
         echo=print) -> dict:
    """Simulate, screen, report. Returns ``{"confusion": 3x3 list, "frames_per_s": float, ...}``.

    Parameters
    ----------
    out_dir : path
        Receives ``sim/`` (the simulated run) and ``screen/<preset>/`` (screening outputs).
    n : int, keyword-only
        Frames in all (split evenly over :data:`DEMO_PRESETS`).
    seed : int, keyword-only
    workers : int, keyword-only
        Screening worker processes.
    model : keyword-only
        ``"default"`` or a checkpoint path.
    echo : callable, keyword-only
        Where the report lines go.
    """
    from xtalscreen.screen.engine import screen
    from xtalscreen.simulate import simulate_dataset

    out = Path(out_dir)
    t0 = time.perf_counter()
    from xtalscreen.simulate import get_preset

    # the shipped model's label rule: a spot counts when its SNR measured in the frame is >= 5
    configs = {p: pilatus2m_config() if p == "pilatus2m" else get_preset(p) for p in DEMO_PRESETS}
    for cfg in configs.values():
        cfg.labels.visibility = "measured"
    simulate_dataset(out / "sim", presets=DEMO_PRESETS, n=n, seed=seed, split=(0, 0, 100),
                     spots="none", configs=configs, progress=False,
                     shard_size=max(1, -(-n // len(DEMO_PRESETS))))
    echo(f"== simulated {n} frames over {', '.join(DEMO_PRESETS)} in {time.perf_counter() - t0:.1f} s")
    truth = {}
    with open(out / "sim" / "labels.csv", newline="") as fh:
        for r in csv.DictReader(fh):
            truth[(str((out / "sim" / r["file"]).resolve()), int(r["frame"]))] = (r["preset"], r["ke_class"])
    classes = ("hit", "maybe", "miss")
    cm = np.zeros((3, 4), int)
    per: dict[str, np.ndarray] = {}
    frames = 0
    seconds = 0.0
    for preset in DEMO_PRESETS:
        geom = out / "sim" / f"{preset}.geom"
        s = screen([str(out / "sim" / preset)], out=out / "screen" / preset, model=model,
                   workers=workers, live=False, geometry=str(geom) if geom.is_file() else None)
        frames += s.frames
        seconds += s.seconds
        echo(f"   {preset:10s} {s.line()}")
        with open(out / "screen" / preset / "results.csv", newline="") as fh:
            for r in csv.DictReader(fh):
                key = (str(Path(r["file"]).resolve()), int(r["frame"]))
                if key not in truth:
                    continue
                t = classes.index(truth[key][1])
                d = ("hit", "maybe", "miss", "bad").index(r["decision"])
                cm[t, d] += 1
                per.setdefault(preset, np.zeros((2, 2), int))[int(t == 2), int(d >= 2)] += 1
    echo("== confusion matrix (rows: true Ke class; columns: decision)")
    echo(f"   {'':8s}" + "".join(f"{c:>8s}" for c in ("hit", "maybe", "miss", "bad")))
    for i, c in enumerate(classes):
        echo(f"   {c:8s}" + "".join(f"{v:8d}" for v in cm[i]))
    acc = np.trace(cm[:, :3]) / max(cm.sum(), 1)
    echo(f"   3-class accuracy {100 * acc:.1f} %")
    echo("== Hit+Maybe vs Miss per preset")
    for preset, m in per.items():
        sens = m[0, 0] / max(m[0].sum(), 1)
        spec = m[1, 1] / max(m[1].sum(), 1)
        echo(f"   {preset:10s} sensitivity {100 * sens:5.1f} %  specificity {100 * spec:5.1f} %  "
             f"({m.sum()} frames)")
    fps = frames / seconds if seconds else 0.0
    echo(f"== throughput: {frames} frames screened in {seconds:.2f} s = {fps:.1f} frames/s "
         f"({workers} worker{'s' if workers > 1 else ''}; outputs in {out / 'screen'})")
    return {"confusion": cm.tolist(), "frames": frames, "seconds": seconds, "frames_per_s": fps,
            "per_preset": {k: v.tolist() for k, v in per.items()}}
