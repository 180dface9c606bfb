"""``xtalscreen info``, ``view`` and ``convert``: look at what xtalscreen reads."""

from __future__ import annotations

import json
import sys
from pathlib import Path

from xtalscreen.cli import add_command
from xtalscreen.errors import InputError, ParameterError


def _add_reader_args(p) -> None:
    p.add_argument("--dataset", metavar="H5PATH",
                   help="HDF5 dataset holding the frames (default: detected)")
    p.add_argument("--geometry", metavar="GEOM", help="CrystFEL .geom file for multi-panel data")
    p.add_argument("--mask", metavar="FILE", help="user mask file (HDF5/NPY/PNG; nonzero = bad)")
    p.add_argument("--beam-center", metavar="FS,SS",
                   help="direct-beam position in pixels, overriding the file's")


def _reader_kwargs(args) -> dict:
    kw: dict = {}
    if getattr(args, "dataset", None):
        kw["dataset"] = args.dataset
    if getattr(args, "geometry", None):
        from xtalscreen.io.crystfel import read_geom

        kw["geometry"] = read_geom(args.geometry)
    if getattr(args, "mask", None):
        kw["mask"] = args.mask
    if getattr(args, "beam_center", None):
        try:
            fs, ss = (float(v) for v in args.beam_center.split(","))
        except ValueError:
            raise ParameterError(f"--beam-center must be FS,SS in pixels, got {args.beam_center!r}") from None
        kw["beam_center"] = (fs, ss)
    return kw


def _fmt(v, spec: str = "") -> str:
    if v is None:
        return "-"
    if isinstance(v, (tuple, list)):
        return "(" + ", ".join(format(x, spec) for x in v) + ")"
    return format(v, spec)


# ----------------------------------------------------------------------------- info
def run_info(args) -> int:
    from xtalscreen.io import open_frames

    errors: list = []
    n = 0
    out = sys.stdout
    first = True
    if args.json:
        out.write("[")
    for frame in open_frames(args.paths, on_error="skip", errors=errors, **_reader_kwargs(args)):
        n += 1
        if args.json:
            out.write(("" if first else ",") + "\n  " + json.dumps(frame.metadata()))
            first = False
            continue
        px = None if frame.pixel_size is None else frame.pixel_size * 1e6
        dist = None if frame.distance is None else frame.distance * 1e3
        print(f"{frame.source} [{frame.index}]  {frame.format}  shape={'x'.join(map(str, frame.shape))}"
              f"  dtype={frame.dtype}  masked={100 * frame.masked_fraction:.2f}%"
              f"  beam={_fmt(frame.beam_center, '.1f')} px  pixel={_fmt(px, '.1f')} um"
              f"  distance={_fmt(dist, '.2f')} mm  wavelength={_fmt(frame.wavelength, '.4f')} A",
              file=out)
    if args.json:
        out.write("\n]\n")
    for path, index, reason in errors:
        where = path if index is None else f"{path} (frame {index})"
        print(f"skipped {where}: {reason}", file=sys.stderr)
    print(f"{n} frame(s) read, {len(errors)} bad item(s) skipped", file=sys.stderr)
    if n == 0:
        raise InputError("no frame could be read from " + ", ".join(map(str, args.paths)))
    return 0 if not errors else 2


# ----------------------------------------------------------------------------- view
def run_view(args) -> int:
    from xtalscreen.evaluate.render import render_frame, save_png
    from xtalscreen.io import open_frames

    frame = None
    for frame in open_frames([args.path], frames=[args.frame], **_reader_kwargs(args)):
        break
    if frame is None:
        raise InputError(f"frame {args.frame} not found", path=args.path)
    spots = None
    if args.spots:
        spots = _load_spot_positions(Path(args.spots), frame)
    rgb = render_frame(frame, contrast=args.contrast, dark_on_light=not args.light_on_dark,
                       spots=spots)
    out = save_png(rgb, args.out)
    extra = "" if spots is None else f", {len(spots)} spot(s) circled"
    print(f"wrote {out} ({rgb.shape[1]}x{rgb.shape[0]}{extra})")
    return 0


def _load_spot_positions(path: Path, frame):
    """(x, y) of the spots of ``frame`` from a spots CSV (simulator truth or ``xtalscreen spots``)."""
    import csv

    import numpy as np

    if path.is_dir():
        path = path / "spots.csv"
    if not path.is_file():
        raise InputError("spot list not found; give the spots.csv written by 'xtalscreen simulate' "
                         "or 'xtalscreen spots'", path=str(path))
    src = Path(frame.source).resolve()
    rows = []
    with open(path, newline="") as fh:
        reader = csv.DictReader(fh)
        need = {"file", "frame", "x", "y"}
        if not need <= set(reader.fieldnames or ()):
            raise InputError(f"spot list needs columns {sorted(need)}, has {reader.fieldnames}",
                             path=str(path))
        for row in reader:
            f = Path(row["file"])
            f = f if f.is_absolute() else (path.parent / f)
            if int(row["frame"]) == frame.index and f.resolve() == src:
                rows.append((float(row["x"]), float(row["y"])))
    return np.array(rows, dtype=float).reshape(-1, 2)


# ----------------------------------------------------------------------------- convert
def run_convert(args) -> int:
    from xtalscreen.io import open_frames
    from xtalscreen.io.writers import write_hdf5_run, write_image
    from xtalscreen.progress import track

    errors: list = []
    frames = open_frames(args.paths, on_error="skip", errors=errors, **_reader_kwargs(args))
    frames = track(frames, description="converting")
    out = Path(args.out)
    fmt = args.format or ("h5" if out.suffix in (".h5", ".hdf5", ".cxi", ".nxs") else None)
    if fmt is None:
        raise ParameterError(f"cannot tell the output format from {out}; give --format "
                             "h5|npy|tif|cbf (or an .h5 file name)")
    if fmt == "h5":
        n = write_hdf5_run(frames, out, compression=None if args.compression == "none" else args.compression)
    else:
        out.mkdir(parents=True, exist_ok=True)
        n = 0
        for frame in frames:
            stem = Path(frame.source).name.split(".")[0] or "frame"
            write_image(frame, out / f"{stem}_{frame.index:05d}.{fmt}")
            n += 1
    for path, index, reason in errors:
        where = path if index is None else f"{path} (frame {index})"
        print(f"skipped {where}: {reason}", file=sys.stderr)
    print(f"wrote {n} frame(s) to {out}; {len(errors)} bad item(s) skipped")
    if n == 0:
        raise InputError("nothing was converted: no readable frame in " + ", ".join(map(str, args.paths)))
    return 0 if not errors else 2


def register(sub) -> None:
    p = add_command(
        sub, "info", help="print what xtalscreen reads from detector files",
        description="Print, per file and frame: format, shape, dtype, masked fraction, beam "
                    "centre, pixel size, distance and wavelength. Bad files are reported and "
                    "skipped (exit code 2 when any were).",
        examples="  xtalscreen info run0042.h5\n"
                 "  xtalscreen info 'images/*.cbf' --json > info.json\n"
                 "  xtalscreen info data/ --dataset /entry/data/data",
    )
    p.add_argument("paths", nargs="+", metavar="PATH",
                   help="files, directories, glob patterns or .lst list files")
    p.add_argument("--json", action="store_true", help="print a JSON list, one object per frame")
    _add_reader_args(p)
    p.set_defaults(func=run_info)

    p = add_command(
        sub, "view", help="render one frame as a PNG",
        description="Render a frame the way crystallographers look at it: display value "
                    "min(1, M*P/P90), dark spots on a light background, masked pixels in blue, "
                    "multi-panel data assembled through their geometry.",
        examples="  xtalscreen view run.h5 --frame 12 --out frame12.png\n"
                 "  xtalscreen view cspad.cbf --out cspad.png --contrast 1.0\n"
                 "  xtalscreen view sim/shard-00000.h5 --frame 3 --spots sim/spots.csv --out f3.png",
    )
    p.add_argument("path", metavar="PATH")
    p.add_argument("--frame", type=int, default=0, help="frame index inside the file")
    p.add_argument("--out", required=True, metavar="FILE.png")
    p.add_argument("--contrast", type=float, default=0.4, help="the factor M in min(1, M*P/P90)")
    p.add_argument("--light-on-dark", action="store_true", help="bright spots on black instead")
    p.add_argument("--spots", metavar="CSV", help="circle the spots listed in this spots.csv")
    _add_reader_args(p)
    p.set_defaults(func=run_view)

    p = add_command(
        sub, "convert", help="convert between HDF5 and the other formats",
        description="Write the frames of any readable input as one HDF5 run (NeXus/CXI-like, "
                    "/entry/data/data) or as one file per frame (npy, tif, cbf).",
        examples="  xtalscreen convert 'images/*.cbf' --out run.h5\n"
                 "  xtalscreen convert run.h5 --out frames/ --format tif\n"
                 "  xtalscreen convert data/ --out run.h5 --compression gzip",
    )
    p.add_argument("paths", nargs="+", metavar="PATH")
    p.add_argument("--out", required=True, help="output .h5 file, or a folder for per-frame files")
    p.add_argument("--format", choices=["h5", "npy", "tif", "cbf"],
                   help="output format (default: from the --out suffix)")
    p.add_argument("--compression", default="bitshuffle-lz4",
                   choices=["bitshuffle-lz4", "gzip", "none"], help="HDF5 compression")
    _add_reader_args(p)
    p.set_defaults(func=run_convert)
