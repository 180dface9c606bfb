"""``xtalscreen demo``: the main job end to end on embedded defaults (what ``make demo`` runs)."""

from __future__ import annotations

import time
from pathlib import Path

import numpy as np

from xtalscreen.cli import add_command


def _default_real_dir() -> Path | None:
    for cand in (Path.cwd().parent / "shared" / "data" / "real",
                 Path(__file__).resolve().parents[4] / "shared" / "data" / "real"):
        if cand.is_dir():
            return cand
    return None


def _synthetic_frames(out: Path) -> list[Path]:
    """A few synthetic frames (NPY) for machines without the real data folder."""
    rng = np.random.default_rng(0)
    out.mkdir(parents=True, exist_ok=True)
    paths = []
    yy, xx = np.mgrid[0:256, 0:256]
    for i in range(3):
        img = rng.poisson(5.0, size=(256, 256)).astype(np.float64)
        for _ in range(20 * i):
            cy, cx = rng.uniform(10, 246, size=2)
            img += 300 * np.exp(-((yy - cy) ** 2 + (xx - cx) ** 2) / 2.0)
        p = out / f"synthetic_{i}.npy"
        np.save(p, img.astype(np.int32))
        paths.append(p)
    return paths


def stage_read(real_dir: Path | None, out: Path) -> list:
    """Read every real frame (or synthetic ones) and print what was read."""
    from xtalscreen.evaluate.render import render_frame, save_png
    from xtalscreen.io import open_frames

    if real_dir is not None:
        inputs = [real_dir / "xray"]
        print(f"== reading the real frames in {real_dir / 'xray'}")
    else:
        inputs = _synthetic_frames(out / "synthetic")
        print("== ../shared/data/real not found: reading 3 synthetic frames instead")
    errors: list = []
    frames = []
    t0 = time.perf_counter()
    for frame in open_frames(inputs, on_error="skip", errors=errors):
        frames.append(frame)
        px = "-" if frame.pixel_size is None else f"{frame.pixel_size * 1e6:.0f} um"
        wl = "-" if frame.wavelength is None else f"{frame.wavelength:.4f} A"
        bc = "-" if frame.beam_center is None else f"({frame.beam_center[0]:.1f}, {frame.beam_center[1]:.1f})"
        print(f"  {Path(frame.source).name:32s} {frame.format:10s} {'x'.join(map(str, frame.shape)):>14s} "
              f"{frame.dtype:6s} masked {100 * frame.masked_fraction:5.2f}%  beam {bc}  pixel {px}  "
              f"wavelength {wl}")
    dt = time.perf_counter() - t0
    for path, index, reason in errors:
        print(f"  skipped {path}: {reason}")
    print(f"  {len(frames)} frame(s) read in {dt:.2f} s, {len(errors)} bad file(s)")
    # Render the first multi-panel frame (assembled through its geometry), else the first frame.
    if frames:
        pick = next((f for f in frames if f.is_multipanel), frames[0])
        png = save_png(render_frame(pick), out / "view_first.png")
        print(f"  rendered {Path(pick.source).name} -> {png}")
    return frames


def stage_simulate_and_spots(out: Path, *, n: int = 12, seed: int = 0) -> None:
    """Simulate a small labelled CSPAD run and call each frame with the dispersion spot finder."""
    from xtalscreen.simulate import simulate_dataset
    from xtalscreen.spots import KeBands, find_spots
    from xtalscreen.train.datasets import load_labels

    print(f"\n== simulating {n} labelled CSPAD frames (exact Hit/Maybe/Miss labels)")
    t0 = time.perf_counter()
    ds_dir = out / "sim_cspad"
    simulate_dataset(ds_dir, presets=("cspad",), n=n, seed=seed, classes="no-crystal,weak,good,strong",
                     shard_size=n, progress=False)
    print(f"  wrote {ds_dir} in {time.perf_counter() - t0:.1f} s")

    print("== dispersion spot finder on every frame, Ke bands (>= 10 hit, 4-9 maybe)")
    data = load_labels(ds_dir, target="ke")
    rule = KeBands()
    classes = ["hit", "maybe", "miss"]
    confusion = np.zeros((3, 3), dtype=int)
    t_find = 0.0
    mpx = 0.0
    from xtalscreen.io import open_frames

    truth = {(Path(p).name, int(i)): data.classes[k] for p, i, k in zip(data.files, data.frames, data.labels)}
    geom = next(iter(sorted(ds_dir.glob("*.geom"))), None)
    n_timed = 0
    for frame in open_frames(sorted(ds_dir.glob("*.h5")), geometry=geom):
        t1 = time.perf_counter()
        spots = find_spots(frame)
        if n_timed:  # the first call compiles the numba kernels: not timed
            t_find += time.perf_counter() - t1
            mpx += frame.data.size / 1e6
        n_timed += 1
        decided = rule.decide(len(spots))
        true = truth[(Path(frame.source).name, frame.index)]
        confusion[classes.index(true), classes.index(decided)] += 1
    print("  true \\ found   " + "  ".join(f"{c:>5s}" for c in classes))
    for c, row in zip(classes, confusion):
        print(f"  {c:14s} " + "  ".join(f"{v:5d}" for v in row))
    print(f"  spot finding: {1e3 * t_find / max(mpx, 1e-9):.1f} ms per megapixel "
          "(first frame not timed: it compiles the kernels)")


def stage_screen(out: Path) -> None:
    """Simulate a small mixed-detector run and screen it with the shipped model."""
    from xtalscreen.screen import demo

    print("\n== screening a simulated mixed-detector run with the shipped model")
    demo(out / "screen")


def stage_drops(out: Path) -> None:
    """Render a plate of drops, score it with the drop pipeline in a fresh SQLite database."""
    from xtalscreen.drops.pipeline import demo

    print("\n== crystallisation drops: render a plate, import it into SQLite, run the pipeline once")
    demo(out / "drops")


def run(args) -> int:
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    real_dir = Path(args.real_data) if args.real_data else _default_real_dir()
    if real_dir is not None and not real_dir.is_dir():
        real_dir = None
    t0 = time.perf_counter()
    stage_read(real_dir, out)
    stage_simulate_and_spots(out)
    stage_screen(out)
    stage_drops(out)
    print(f"demo finished in {time.perf_counter() - t0:.1f} s; outputs in {out}/")
    return 0


def register(sub) -> None:
    p = add_command(
        sub, "demo", help="run the main job end to end on embedded defaults",
        description="Read the real frames in ../shared/data/real (or synthetic ones) and render "
                    "one; simulate a labelled CSPAD run and spot-find it; screen a mixed simulated "
                    "run with the shipped model; render a plate of drops and score it with the "
                    "drop pipeline in a fresh SQLite database.",
        examples="  xtalscreen demo --out demo_out",
    )
    p.add_argument("--out", default="demo_out", help="folder for the demo's outputs")
    p.add_argument("--real-data", metavar="DIR", help="folder of real frames (default: ../shared/data/real)")
    p.set_defaults(func=run)
