"""Labelled datasets on disk: HDF5 shards or a DiffraNet-style PNG tree, with labels.csv/spots.csv.

Layout of ``out_dir``:

- ``shard-00000.h5`` ... (one preset) or ``<preset>/shard-00000.h5`` (several presets): frames
  at ``/entry/data/data`` (N, H, W) or (N, panels, H, W) in the preset's dtype (bitshuffle-LZ4
  compressed: read with ``import hdf5plugin``, as xtalscreen's readers do), the detector
  mask at ``/entry/data/mask`` (one per shard: it is constant), per-frame wavelength (Å) at
  ``/entry/instrument/beam/incident_wavelength``, nominal beam centre (px) at
  ``/entry/instrument/detector/beam_center_x|y``, and scalar ``distance`` and ``x_pixel_size``
  (m) under ``/entry/instrument/detector``;
- with ``fmt="png"``: ``<split>/<class>/<preset>-<index>.png`` (8-bit square root of counts,
  multi-panel frames assembled through their geometry);
- ``labels.csv``: one row per frame (see :data:`LABEL_COLUMNS`); ``spots.csv``: the
  ground-truth spots (:data:`SPOT_COLUMNS`; visible ones by default);
- ``geometry.geom`` (or ``<preset>.geom``) for multi-panel presets when the CrystFEL writer is
  available; ``dataset.json`` with the arguments.

Determinism: frame ``i`` uses ``np.random.SeedSequence([seed, i])``; its class, split and preset
are fixed before any work is shared out, so the output is identical whatever ``workers``.
Resume: each shard is written to temporary files, renamed, then marked done
(``.shards/<name>.done``); a restarted run skips done shards and rebuilds the CSVs at the end.
"""

from __future__ import annotations

import csv
import hashlib
import json
import math
import os
import time
from concurrent.futures import ProcessPoolExecutor, as_completed
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from xtalscreen.errors import InputError, ParameterError, XtalscreenError
from xtalscreen.simulate.config import DIFFRANET_CLASSES, SimulationConfig, get_preset
from xtalscreen.simulate.detector import output_saturation

LABEL_COLUMNS = ("file", "frame", "index", "split", "preset", "diffranet_class", "ke_class", "n_spots",
                 "resolution", "fluence", "wavelength", "a", "b", "c", "alpha", "beta", "gamma", "n_crystals",
                 "crystal_size_um", "crystal_volume_um3", "mosaicity_deg", "beam_center_x", "beam_center_y",
                 "requested_class", "n_spots_expected", "n_spots_measured")
SPOT_COLUMNS = ("file", "frame", "panel", "fs", "ss", "x", "y", "h", "k", "l", "photons", "snr", "peak_snr", "d",
                "visible", "crystal", "snr_measured")
SPLITS = ("train", "val", "test")


@dataclass
class DatasetSummary:
    """What :func:`simulate_dataset` did."""

    out_dir: str
    n_frames: int
    n_good: int = 0
    n_bad: int = 0
    shards_done: int = 0
    shards_resumed: int = 0
    class_counts: dict = field(default_factory=dict)
    ke_counts: dict = field(default_factory=dict)
    seconds: float = 0.0
    bad: list = field(default_factory=list)


# ---------------------------------------------------------------------------------- planning
def _exact_counts(n: int, weights) -> np.ndarray:
    w = np.asarray(weights, dtype=float)
    w = w / w.sum()
    raw = w * n
    counts = np.floor(raw).astype(int)
    rem = n - counts.sum()
    order = np.argsort(-(raw - counts), kind="stable")
    counts[order[:rem]] += 1
    return counts


def _parse_classes(classes) -> dict:
    if classes is None:
        return {c: 1.0 for c in DIFFRANET_CLASSES}
    if isinstance(classes, str):
        classes = [c for c in classes.replace(" ", "").split(",") if c]
    if isinstance(classes, dict):
        out = {str(k): float(v) for k, v in classes.items()}
    else:
        out = {}
        for c in classes:
            name, _, w = str(c).partition("=")
            out[name] = float(w) if w else 1.0
    unknown = set(out) - set(DIFFRANET_CLASSES)
    if unknown or not out:
        raise ParameterError(f"classes: unknown {sorted(unknown) or 'empty list'}; known: {', '.join(DIFFRANET_CLASSES)}")
    if any(v < 0 for v in out.values()) or sum(out.values()) <= 0:
        raise ParameterError(f"classes: weights must be >= 0 with a positive sum, got {out}")
    return out


def _parse_split(split) -> tuple[float, float, float]:
    if isinstance(split, str):
        split = [s for s in split.split(",") if s.strip()]
    try:
        vals = tuple(float(v) for v in split)
    except (TypeError, ValueError):
        raise ParameterError(f"split must be three numbers train,val,test (percent), got {split!r}") from None
    if len(vals) != 3 or any(v < 0 for v in vals) or sum(vals) <= 0:
        raise ParameterError(f"split must be three non-negative numbers train,val,test, got {split!r}")
    return vals


def plan(n: int, *, presets, seed: int, classes=None, split=(40, 9.6, 50.4)) -> list[dict]:
    """Per-frame plan (index, preset, class, split): exact class and split counts, seeded order."""
    cls = _parse_classes(classes)
    names = list(cls)
    sp = _parse_split(split)
    rng = np.random.default_rng(np.random.SeedSequence([int(seed), 0x5EED]))
    class_list = np.repeat(np.arange(len(names)), _exact_counts(n, [cls[c] for c in names]))
    rng.shuffle(class_list)
    split_list = np.repeat(np.arange(3), _exact_counts(n, sp))
    rng.shuffle(split_list)
    return [dict(index=i, preset=presets[i % len(presets)], cls=names[class_list[i]], split=SPLITS[split_list[i]])
            for i in range(n)]


# ---------------------------------------------------------------------------------- workers
def _row(file: str, frame_no: int, item: dict, frame, truth) -> dict:
    p = truth.params
    cr = p.get("crystals") or []
    cell = p.get("cell", (math.nan,) * 6)
    bct = p.get("beam_center_true", (math.nan, math.nan))
    return dict(file=file, frame=frame_no, index=item["index"], split=item["split"], preset=item["preset"],
                diffranet_class=truth.diffranet_class, ke_class=truth.ke_class, n_spots=truth.n_visible,
                resolution=f"{truth.resolution_limit:.4g}", fluence=f"{p['fluence']:.6g}",
                wavelength=f"{p['wavelength']:.6g}", a=cell[0], b=cell[1], c=cell[2], alpha=cell[3], beta=cell[4],
                gamma=cell[5], n_crystals=p.get("n_crystals", 0),
                crystal_size_um=f"{cr[0]['size_um']:.4g}" if cr else "",
                crystal_volume_um3=f"{sum(c['volume_um3'] for c in cr):.4g}" if cr else "",
                mosaicity_deg=f"{cr[0]['mosaic_deg']:.4g}" if cr else "",
                beam_center_x=f"{bct[0]:.3f}", beam_center_y=f"{bct[1]:.3f}",
                requested_class=truth.requested_class, n_spots_expected=p.get("n_visible_expected", ""),
                n_spots_measured=p.get("n_visible_measured", ""))


_SPOT_FMT = "%d,%.3f,%.3f,%.3f,%.3f,%d,%d,%d,%.4g,%.4g,%.4g,%.4f,%d,%d,%.4g\n"


def _spot_rows(file: str, frame_no: int, truth, which: str) -> list:
    """CSV lines (file, frame, then :data:`SPOT_COLUMNS`) of a frame's spots."""
    sp = truth.spots
    if which == "none" or not len(sp):
        return []
    if which == "visible":
        sp = sp[sp["visible"]]
    head = f"{file},{frame_no},"
    return [head + _SPOT_FMT % t for t in sp.tolist()]


def to_8bit(frame) -> np.ndarray:
    """DiffraNet 8-bit picture of a frame: round(sqrt(clip(counts, 0, 65025))), assembled 2-D."""
    if frame.dtype == "uint8":
        img = frame.data
    else:
        img = np.sqrt(np.clip(frame.data, 0, 65025.0))
    if img.ndim == 3:
        img, _ = frame.replace(data=img.astype(np.float32)).assembled(fill=0.0)
    return np.round(np.nan_to_num(img)).astype(np.uint8)


def _write_csv(path: Path, header, rows) -> None:
    tmp = path.with_name(path.name + ".tmp")
    with open(tmp, "w", newline="") as fh:
        w = csv.writer(fh)
        w.writerow(header)
        for r in rows:
            w.writerow([r[k] for k in header] if isinstance(r, dict) else r)
    os.replace(tmp, path)


def _run_shard(job: dict) -> dict:
    """Simulate and write one shard (runs in a worker process); frames are written as they come."""
    from xtalscreen.simulate.engine import simulate_frame

    out = Path(job["out_dir"])
    cfg: SimulationConfig = job["config"]
    name = job["name"]
    rows, spots, bad = [], [], []
    h5 = _H5Shard(out / f"{name}.h5", cfg, len(job["items"])) if job["fmt"] == "h5" else None
    try:
        for item in job["items"]:
            try:
                frame, truth = simulate_frame(cfg, rng=np.random.SeedSequence([job["seed"], item["index"]]),
                                              frame_class=item["cls"])
            except (XtalscreenError, ValueError, ArithmeticError) as exc:
                bad.append(f"frame {item['index']} ({item['preset']}, {item['cls']}): {exc}")
                continue
            if h5 is not None:
                rel, k = f"{name}.h5", h5.append(frame)
            else:
                from PIL import Image

                rel, k = f"{item['split']}/{truth.diffranet_class}/{item['preset']}-{item['index']:07d}.png", 0
                dest = out / rel
                dest.parent.mkdir(parents=True, exist_ok=True)
                tmp = dest.with_name(dest.name + ".tmp")
                Image.fromarray(to_8bit(frame)).save(tmp, format="PNG")
                os.replace(tmp, dest)
            rows.append(_row(rel, k, item, frame, truth))
            spots += _spot_rows(rel, k, truth, job["spots"])
        if h5 is not None:
            h5.close()
    finally:
        if h5 is not None:
            h5.abort()
    meta = out / ".shards"
    stem = name.replace("/", "__")
    _write_csv(meta / f"{stem}.labels.csv", LABEL_COLUMNS, rows)
    tmp = meta / f"{stem}.spots.csv.tmp"
    with open(tmp, "w", newline="") as fh:
        fh.write(",".join(SPOT_COLUMNS) + "\n")
        fh.writelines(spots)
    os.replace(tmp, meta / f"{stem}.spots.csv")
    (meta / f"{stem}.done").write_text(json.dumps({"frames": len(rows), "bad": bad}))
    return {"name": name, "rows": len(rows), "bad": bad}


class _H5Shard:
    """One HDF5 shard written frame by frame into ``<path>.tmp``, renamed on :meth:`close`."""

    def __init__(self, path: Path, cfg: SimulationConfig, capacity: int):
        self.path, self.cfg, self.capacity = path, cfg, capacity
        self.tmp = path.with_name(path.name + ".tmp")
        self.f = None
        self.n = 0
        self.wavelength, self.bc, self.first = [], [], None

    def _open(self, frame) -> None:
        import h5py

        self.path.parent.mkdir(parents=True, exist_ok=True)
        self.f = h5py.File(self.tmp, "w", track_order=False)
        data = self.f.create_group("entry").create_group("data")
        self.f["entry"].attrs["NX_class"] = "NXentry"
        data.attrs["NX_class"] = "NXdata"
        data.attrs["signal"] = "data"
        try:  # bitshuffle-LZ4, as xtalscreen convert writes (readers import hdf5plugin)
            import hdf5plugin

            comp = dict(hdf5plugin.Bitshuffle(cname="lz4"))
        except ImportError:  # pragma: no cover
            comp = dict(compression="gzip", compression_opts=1, shuffle=True)
        shape = frame.data.shape
        self.ds = data.create_dataset("data", shape=(self.capacity,) + shape, maxshape=(None,) + shape,
                                      dtype=np.dtype(self.cfg.detector.dtype), chunks=(1,) + shape,
                                      track_times=False, **comp)
        data.create_dataset("mask", data=frame.mask.astype(np.uint8), compression="gzip", track_times=False)
        self.first = frame

    def append(self, frame) -> int:
        if self.f is None:
            self._open(frame)
        self.ds[self.n] = frame.data.astype(self.ds.dtype)
        self.wavelength.append(frame.wavelength)
        self.bc.append(frame.beam_center)
        self.n += 1
        return self.n - 1

    def close(self) -> None:
        if self.f is None:  # every frame failed: an empty but valid shard
            import h5py

            self.path.parent.mkdir(parents=True, exist_ok=True)
            with h5py.File(self.tmp, "w") as f:
                f.create_group("entry/data")
            os.replace(self.tmp, self.path)
            return
        f, first = self.f, self.first
        self.ds.resize(self.n, axis=0)
        inst = f["entry"].create_group("instrument")
        beam = inst.create_group("beam")
        beam.create_dataset("incident_wavelength", data=np.array(self.wavelength, float),
                            track_times=False).attrs["units"] = "angstrom"
        det = inst.create_group("detector")
        det.attrs["description"] = self.cfg.detector.name
        det.create_dataset("distance", data=float(first.distance), track_times=False).attrs["units"] = "m"
        det.create_dataset("x_pixel_size", data=float(first.pixel_size), track_times=False).attrs["units"] = "m"
        det.create_dataset("saturation_value", data=output_saturation(self.cfg.detector), track_times=False)
        bc = np.array(self.bc, float).reshape(-1, 2)
        det.create_dataset("beam_center_x", data=bc[:, 0], track_times=False).attrs["units"] = "pixel"
        det.create_dataset("beam_center_y", data=bc[:, 1], track_times=False).attrs["units"] = "pixel"
        f["entry"].attrs["xtalscreen_preset"] = self.cfg.name
        f.close()
        self.f = None
        os.replace(self.tmp, self.path)

    def abort(self) -> None:
        """After an error: close and remove the temporary file (no-op once closed)."""
        if self.f is not None:
            self.f.close()
            self.f = None
            self.tmp.unlink(missing_ok=True)


# ---------------------------------------------------------------------------------- driver
def simulate_dataset(out_dir, *, presets=("diffranet",), n: int = 100, seed: int = 0, workers: int = 1,
                     classes=None, split=(40, 9.6, 50.4), fmt: str = "h5", shard_size: int = 100,
                     spots: str = "visible", configs: dict | None = None, progress: bool | None = None,
                     report=None) -> DatasetSummary:
    """Write a labelled simulated dataset (see the module docstring for the layout).

    Parameters
    ----------
    out_dir : path
        Created if needed; an interrupted run into the same directory with the same arguments
        resumes (done shards are kept).
    presets : str or sequence of str
        Preset names; several give a mixed-detector set (frame ``i`` uses ``presets[i % len]``).
    n : int
        Number of frames.
    seed : int
        Same seed, same output (bit for bit) whatever ``workers``.
    workers : int
        Processes (1 = in this process).
    classes : None, str, sequence or dict
        DiffraNet classes and weights, e.g. ``"weak,good,strong"`` or
        ``{"blank": 1, "good": 3}``; counts are exact (largest remainder), order shuffled.
    split : three numbers
        Train/val/test percentages (DiffraNet: 40, 9.6, 50.4); counts exact.
    fmt : {"h5", "png"}
    shard_size : int
        Frames per shard (unit of work, of resume and of HDF5 files).
    spots : {"visible", "all", "none"}
        Which ground-truth spots go to ``spots.csv``.
    configs : dict, optional
        ``{preset_name: SimulationConfig}`` overriding the named presets (e.g. edited copies or
        :func:`preset_from_geom`).
    report : callable, optional
        Called with one line per bad frame (default: print to stderr).
    """
    import sys

    t0 = time.perf_counter()
    if isinstance(presets, str):
        presets = [p for p in presets.split(",") if p.strip()]
    presets = [p.strip() for p in presets]
    if not presets:
        raise ParameterError("presets: give at least one preset name")
    if int(n) != n or n < 1:
        raise ParameterError(f"n must be a positive integer number of frames, got {n!r}")
    if int(workers) != workers or workers < 1:
        raise ParameterError(f"workers must be an integer >= 1, got {workers!r}")
    if fmt not in ("h5", "png"):
        raise ParameterError(f"fmt must be 'h5' or 'png', got {fmt!r}")
    if spots not in ("visible", "all", "none"):
        raise ParameterError(f"spots must be 'visible', 'all' or 'none', got {spots!r}")
    if int(shard_size) != shard_size or shard_size < 1:
        raise ParameterError(f"shard_size must be a positive integer, got {shard_size!r}")
    configs = dict(configs or {})
    cfgs = {p: (configs[p] if p in configs else get_preset(p)).validate() for p in dict.fromkeys(presets)}
    out = Path(out_dir)
    try:
        (out / ".shards").mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise InputError(f"cannot create the output directory: {exc}", path=str(out)) from None
    args = dict(presets=presets, n=int(n), seed=int(seed), classes=_parse_classes(classes),
                split=list(_parse_split(split)), fmt=fmt, shard_size=int(shard_size), spots=spots)
    # each preset's settings by a digest of their repr (deterministic: dataclasses of numbers,
    # strings and tuples), so a resumed run cannot mix frames of other settings (--set, --geom,
    # --visibility) into a folder; a dataset.json without it (written before) is not checked for it
    args["configs"] = {p: hashlib.sha256(repr(c).encode()).hexdigest()[:16] for p, c in cfgs.items()}
    meta = out / "dataset.json"
    if meta.exists():
        old = json.loads(meta.read_text())
        mine = args if "configs" in old else {k: v for k, v in args.items() if k != "configs"}
        if old != mine:
            changed = sorted(k for k in set(old) | set(mine) if old.get(k) != mine.get(k))
            raise InputError(f"holds a dataset made with different arguments ({', '.join(changed)} "
                             f"differ; it was made with {old}); choose another --out or delete it",
                             path=str(out))
    else:
        meta.write_text(json.dumps(args, indent=1))
    items = plan(int(n), presets=presets, seed=seed, classes=classes, split=split)
    jobs = []
    for p in cfgs:
        mine = [it for it in items if it["preset"] == p]
        for k in range(0, len(mine), shard_size):
            name = f"shard-{k // shard_size:05d}" if len(cfgs) == 1 else f"{p}/shard-{k // shard_size:05d}"
            jobs.append(dict(out_dir=str(out), config=cfgs[p], name=name, items=mine[k:k + shard_size],
                             seed=int(seed), fmt=fmt, spots=spots))
    _write_geometries(out, cfgs)
    summary = DatasetSummary(out_dir=str(out), n_frames=int(n))
    todo = []
    for j in jobs:
        if (out / ".shards" / f"{j['name'].replace('/', '__')}.done").exists():
            summary.shards_resumed += 1
        else:
            todo.append(j)
    report = report or (lambda line: print(line, file=sys.stderr))
    from xtalscreen.progress import track

    if workers > 1 and len(todo) > 1:
        # warm up here so that forked workers inherit compiled kernels and detector set-ups
        from xtalscreen.simulate import detector as detm
        from xtalscreen.simulate.engine import simulate_frame

        for cfg in cfgs.values():
            detm.context(cfg.detector)
        simulate_frame(cfgs[presets[0]], rng=0, frame_class="blank")

    def results():
        if workers == 1 or len(todo) <= 1:
            for j in todo:
                yield _run_shard(j)
        else:
            with ProcessPoolExecutor(max_workers=int(workers), mp_context=_mp_context()) as ex:
                futs = [ex.submit(_run_shard, j) for j in todo]
                for fut in as_completed(futs):
                    yield fut.result()

    for res in track(results(), total=len(todo), description="simulating shards", enabled=progress):
        summary.shards_done += 1
        for line in res["bad"]:
            report(f"{res['name']}: {line}")
    _merge(out, jobs, summary)
    summary.seconds = time.perf_counter() - t0
    return summary


def _mp_context():
    """fork where available (workers inherit the compiled kernels, no re-import of __main__),
    else spawn; frames do not depend on it."""
    import multiprocessing as mp

    return mp.get_context("fork" if "fork" in mp.get_all_start_methods() else "spawn")


def _write_geometries(out: Path, cfgs: dict) -> None:
    for name, cfg in cfgs.items():
        if cfg.detector.geometry is None:
            continue
        try:
            from xtalscreen.io.crystfel import write_geom
        except ImportError:
            return
        from xtalscreen.io.readers import GEOMETRY_NAME  # where readers look for it

        dest = out / (GEOMETRY_NAME if len(cfgs) == 1 else f"{name}.geom")
        if not dest.exists():
            write_geom(cfg.detector.geometry, dest)


def _merge(out: Path, jobs: list, summary: DatasetSummary) -> None:
    """(Re)build labels.csv and spots.csv from the per-shard files, in shard order."""
    label_rows, spot_lines = [], []
    for j in jobs:
        stem = out / ".shards" / j["name"].replace("/", "__")
        done = Path(f"{stem}.done")
        if not done.exists():
            continue
        info = json.loads(done.read_text())
        summary.n_bad += len(info.get("bad", []))
        summary.bad += info.get("bad", [])
        with open(f"{stem}.labels.csv", newline="") as fh:
            label_rows += list(csv.DictReader(fh))
        with open(f"{stem}.spots.csv", newline="") as fh:
            next(fh)
            spot_lines += fh.readlines()
    _write_csv(out / "labels.csv", LABEL_COLUMNS, label_rows)
    tmp = out / "spots.csv.tmp"
    with open(tmp, "w", newline="") as fh:
        csv.writer(fh).writerow(SPOT_COLUMNS)
        fh.writelines(spot_lines)
    os.replace(tmp, out / "spots.csv")
    summary.n_good = len(label_rows)
    for r in label_rows:
        summary.class_counts[r["diffranet_class"]] = summary.class_counts.get(r["diffranet_class"], 0) + 1
        summary.ke_counts[r["ke_class"]] = summary.ke_counts.get(r["ke_class"], 0) + 1


_SPOT_CACHE: dict = {}


def read_spots(dataset_dir, file: str, frame: int = 0) -> np.ndarray:
    """Ground-truth spots of one frame of a simulated dataset (for ``view --spots`` overlays).

    Returns a structured array of :data:`xtalscreen.simulate.labels.SPOT_DTYPE` (panel, fs, ss,
    x, y, h, k, l, photons, snr, peak_snr, d, visible, crystal, snr_measured); empty when the
    frame has none.
    ``file`` is the path relative to ``dataset_dir`` as in labels.csv (an absolute path inside
    the dataset also works).
    """
    root = Path(dataset_dir)
    path = root / "spots.csv"
    if not path.is_file():
        raise InputError("no spots.csv here: not a simulated dataset directory", path=str(root))
    key = (str(path), path.stat().st_mtime_ns)
    table = _SPOT_CACHE.get(key)
    if table is None:
        table = {}
        with open(path, newline="") as fh:
            for r in csv.DictReader(fh):
                table.setdefault((r["file"], int(r["frame"])), []).append(r)
        _SPOT_CACHE.clear()
        _SPOT_CACHE[key] = table
    f = str(file)
    if os.path.isabs(f):
        try:
            f = str(Path(f).resolve().relative_to(root.resolve()))
        except ValueError:
            pass
    rows = table.get((f, int(frame)), [])
    from xtalscreen.simulate.labels import SPOT_DTYPE as dt

    outa = np.zeros(len(rows), dt)
    for name in dt.names:
        outa[name] = [float(r.get(name) or "nan") for r in rows] if rows else []  # older files: no snr_measured
    return outa


__all__ = ["simulate_dataset", "read_spots", "DatasetSummary", "plan", "to_8bit", "LABEL_COLUMNS", "SPOT_COLUMNS"]
