"""``xtalscreen simulate``: write a labelled simulated dataset (thin wrapper over
:func:`xtalscreen.simulate.simulate_dataset`)."""

from __future__ import annotations

from xtalscreen.cli import add_command

EXAMPLES = """\
  xtalscreen simulate --preset diffranet --n 1000 --out sim/diffranet
  xtalscreen simulate --preset cspad --n 200 --out sim/cspad --workers 2 --seed 7
  xtalscreen simulate --preset diffranet,cspad,rayonix_mx340 --n 3000 --out sim/mixed
  xtalscreen simulate --preset diffranet --n 500 --out sim/png --format png --split 40,9.6,50.4
  xtalscreen simulate --preset cspad --n 100 --out sim/hits --classes weak,good,strong
  xtalscreen simulate --preset cspad --geom my_detector.geom --n 100 --out sim/mine
  xtalscreen simulate --preset cspad --n 500 --out sim/measured --visibility measured
  xtalscreen simulate --preset jungfrau4m --n 1000 --out sim/jet --set background.jet_streak=3.0 \
      --set background.ice_prob=0.25 --set crystal.size_um=[0.5,5]
  xtalscreen simulate --list-presets
(run the same command again to resume an interrupted run)"""


def register(sub) -> None:
    p = add_command(
        sub, "simulate", help="simulate labelled diffraction frames (DiffraNet / Ke labels, spot lists)",
        description=(
            "Simulate serial-crystallography frames with exact labels: DiffraNet class "
            "(blank, no-crystal, weak, good, strong), Ke class (hit >= 10 visible spots, maybe 4-9, "
            "miss), and the ground-truth spot list. Writes HDF5 shards (/entry/data/data) or a "
            "DiffraNet-style PNG tree, plus DIR/labels.csv and DIR/spots.csv. The same seed gives "
            "identical output whatever the number of workers; rerunning resumes."),
        examples=EXAMPLES)
    p.add_argument("--preset", action="append", default=None, metavar="NAME",
                   help="detector/beam preset (repeat or comma-separate for a mixed set); "
                        "see --list-presets [default: diffranet]")
    p.add_argument("--n", type=int, default=100, help="number of frames")
    p.add_argument("--out", metavar="DIR", help="output directory (created; resumed if it exists)")
    p.add_argument("--seed", type=int, default=0, help="random seed")
    p.add_argument("--workers", type=int, default=1, help="worker processes")
    p.add_argument("--classes", default=None, metavar="LIST",
                   help="DiffraNet classes to make, with optional weights: 'weak,good,strong' or "
                        "'blank=1,good=3' [default: all five, equal]")
    p.add_argument("--split", default="40,9.6,50.4", metavar="TRAIN,VAL,TEST", help="split percentages")
    p.add_argument("--format", dest="fmt", choices=("h5", "png"), default="h5", help="output format")
    p.add_argument("--shard-size", type=int, default=100, help="frames per HDF5 shard / unit of resume")
    p.add_argument("--spots", choices=("visible", "all", "none"), default="visible",
                   help="which ground-truth spots to write to spots.csv")
    p.add_argument("--geom", metavar="FILE", default=None,
                   help="CrystFEL .geom file: imitate this detector (keeps the preset's beam and crystal)")
    p.add_argument("--visibility", choices=("expected", "measured"), default="expected",
                   help="label rule: a spot is visible when its expected SNR reaches 5 (default), or its "
                        "SNR as measured in the recorded frame (LabelConfig.visibility); both counts "
                        "go to labels.csv either way")
    p.add_argument("--set", dest="changes", action="append", default=[], metavar="SECTION.FIELD=VALUE",
                   help="change one setting of every preset used, e.g. background.jet_streak=3.0, "
                        "background.ice_prob=0.25, beam.wavelength=1.0, crystal.size_um=[0.5,5] "
                        "(sections crystal, beam, detector, background, labels; repeatable): "
                        "simulate your own setup")
    p.add_argument("--list-presets", action="store_true", help="list the presets and exit")
    p.add_argument("--no-progress", action="store_true", help="no progress bar")
    p.set_defaults(func=run)


def run(args) -> int:
    from xtalscreen.errors import ParameterError
    from xtalscreen.simulate import get_preset, list_presets, preset_from_geom, simulate_dataset

    if args.list_presets:
        for name in list_presets():
            cfg = get_preset(name)
            d = cfg.detector
            shape = "x".join(map(str, d.geometry.data_shape())) if d.geometry is not None else "x".join(map(str, d.shape))
            print(f"{name:14s} {d.name:18s} {shape:>14s}  {cfg.beam.wavelength:.3f} A  "
                  f"cell {'/'.join(f'{v:g}' for v in cfg.crystal.cell[:3])} A")
        return 0
    if not args.out:
        raise ParameterError("--out DIR is required (where the dataset is written)")
    presets = [p.strip() for item in (args.preset or ["diffranet"]) for p in item.split(",") if p.strip()]
    configs = None
    if args.geom:
        if len(presets) != 1:
            raise ParameterError("--geom works with exactly one --preset (the base for beam and crystal)")
        configs = {presets[0]: preset_from_geom(args.geom, base=presets[0])}
    if args.visibility != "expected":
        configs = configs or {p: get_preset(p) for p in presets}
        for cfg in configs.values():
            cfg.labels.visibility = args.visibility
    if args.changes:
        changes = parse_changes(args.changes)
        configs = configs or {p: get_preset(p) for p in presets}
        configs = {name: cfg.with_changes(changes) for name, cfg in configs.items()}
    summary = simulate_dataset(args.out, presets=presets, n=args.n, seed=args.seed, workers=args.workers,
                               classes=args.classes, split=args.split, fmt=args.fmt, shard_size=args.shard_size,
                               spots=args.spots, configs=configs, progress=False if args.no_progress else None)
    rate = summary.n_good / summary.seconds if summary.seconds > 0 else float("nan")
    classes = ", ".join(f"{k} {v}" for k, v in sorted(summary.class_counts.items()))
    ke = ", ".join(f"{k} {v}" for k, v in sorted(summary.ke_counts.items()))
    print(f"wrote {summary.n_good} frames to {summary.out_dir} ({summary.shards_done} shards new, "
          f"{summary.shards_resumed} resumed, {summary.n_bad} bad) in {summary.seconds:.1f} s ({rate:.1f} frames/s)")
    print(f"DiffraNet classes: {classes}")
    print(f"Ke classes: {ke}")
    return 0 if summary.n_bad == 0 else 1


def parse_changes(items) -> dict:
    """``["background.jet_streak=3.0", ...]`` -> ``{"background.jet_streak": 3.0}``; values are
    read as JSON (numbers, lists, true/false, null), else kept as text."""
    import json

    from xtalscreen.errors import ParameterError

    out = {}
    for item in items:
        key, sep, text = str(item).partition("=")
        if not sep or not key.strip() or not text.strip():
            raise ParameterError(f"--set {item!r}: give SECTION.FIELD=VALUE, e.g. background.jet_streak=3.0")
        try:
            value = json.loads(text)
        except ValueError:
            value = text.strip()
        out[key.strip()] = value
    return out
