"""Dataset writer: layout, labels, exact class/split counts, determinism across workers, resume."""

from __future__ import annotations

import csv
import filecmp
import json

import h5py
import numpy as np
import pytest

from xtalscreen.errors import InputError, ParameterError
from xtalscreen.simulate import read_spots, simulate_dataset
from xtalscreen.simulate.dataset import LABEL_COLUMNS, SPOT_COLUMNS, plan


def _labels(d):
    with open(d / "labels.csv", newline="") as fh:
        return list(csv.DictReader(fh))


def test_plan_gives_exact_class_and_split_counts():
    items = plan(50, presets=["diffranet"], seed=1, classes="blank=2,weak=1,good=1", split="40,9.6,50.4")
    cls = [it["cls"] for it in items]
    assert (cls.count("blank"), cls.count("weak"), cls.count("good")) == (25, 13, 12) or \
        (cls.count("blank"), cls.count("weak"), cls.count("good")) == (25, 12, 13)
    sp = [it["split"] for it in items]
    assert (sp.count("train"), sp.count("val"), sp.count("test")) == (20, 5, 25)
    assert plan(50, presets=["diffranet"], seed=1, classes="blank=2,weak=1,good=1") == items
    assert plan(50, presets=["diffranet"], seed=2, classes="blank=2,weak=1,good=1") != items


def test_h5_dataset_layout_labels_and_spots(tmp_path):
    out = tmp_path / "ds"
    s = simulate_dataset(out, presets="diffranet", n=10, seed=3, shard_size=4, progress=False)
    assert s.n_good == 10 and s.n_bad == 0 and s.shards_done == 3
    assert sorted(p.name for p in out.glob("shard-*.h5")) == ["shard-00000.h5", "shard-00001.h5", "shard-00002.h5"]
    rows = _labels(out)
    assert list(rows[0]) == list(LABEL_COLUMNS)
    assert len(rows) == 10 and sorted(int(r["index"]) for r in rows) == list(range(10))
    counts = {c: sum(r["diffranet_class"] == c for r in rows) for c in ("blank", "no-crystal", "weak", "good", "strong")}
    assert counts == {"blank": 2, "no-crystal": 2, "weak": 2, "good": 2, "strong": 2}  # balance as requested
    for r in rows:
        n = int(r["n_spots"])
        assert r["ke_class"] == ("hit" if n >= 10 else "maybe" if n >= 4 else "miss")
        assert r["diffranet_class"] == r["requested_class"]
        assert int(r["n_spots_expected"]) == n  # the default rule; the measured count is kept too
        assert int(r["n_spots_measured"]) >= 0
    with h5py.File(out / "shard-00001.h5") as f:
        data = f["/entry/data/data"]
        assert data.shape == (4, 512, 512) and data.dtype == np.uint8
        assert f["/entry/data/mask"].shape == (512, 512)
        wl = f["/entry/instrument/beam/incident_wavelength"][()]
        assert wl.shape == (4,) and np.all(np.abs(wl - 1.5) < 0.05)
        assert f["/entry/instrument/detector/distance"][()] == pytest.approx(0.08)
        assert f["/entry/instrument/detector/saturation_value"][()] == 255  # sqrt(65025): 8-bit output
        frame_rows = [r for r in rows if r["file"] == "shard-00001.h5"]
        assert sorted(int(r["frame"]) for r in frame_rows) == [0, 1, 2, 3]
    with open(out / "spots.csv", newline="") as fh:
        spots = list(csv.DictReader(fh))
    assert list(spots[0]) == list(SPOT_COLUMNS)
    r = max(rows, key=lambda r: int(r["n_spots"]))
    sp = read_spots(out, r["file"], int(r["frame"]))
    assert len(sp) == int(r["n_spots"]) and sp["visible"].all()
    assert np.isfinite(sp["snr_measured"]).all()
    assert float(r["resolution"]) == pytest.approx(sp["d"].min(), rel=1e-3)
    assert json.loads((out / "dataset.json").read_text())["n"] == 10


def test_same_seed_same_bytes_whatever_the_worker_count_and_resume(tmp_path):
    a, b = tmp_path / "a", tmp_path / "b"
    kw = dict(presets=["diffranet"], n=6, seed=11, shard_size=2, progress=False)
    simulate_dataset(a, workers=1, **kw)
    simulate_dataset(b, workers=2, **kw)
    for name in ("labels.csv", "spots.csv", "shard-00000.h5", "shard-00002.h5"):
        assert filecmp.cmp(a / name, b / name, shallow=False), name
    # interrupted run: one shard missing (no done marker) -> only that one is redone
    (b / "shard-00001.h5").unlink()
    (b / ".shards" / "shard-00001.done").unlink()
    (b / "labels.csv").unlink()
    s = simulate_dataset(b, workers=1, **kw)
    assert s.shards_resumed == 2 and s.shards_done == 1
    for name in ("labels.csv", "spots.csv", "shard-00001.h5"):
        assert filecmp.cmp(a / name, b / name, shallow=False), name
    with pytest.raises(InputError, match="different arguments"):
        simulate_dataset(b, presets=["diffranet"], n=7, seed=11, shard_size=2, progress=False)


def test_png_tree_and_mixed_presets(tmp_path):
    out = tmp_path / "png"
    s = simulate_dataset(out, presets=["diffranet", "cspad"], n=4, seed=5, fmt="png", classes="good,strong",
                         split=(50, 0, 50), progress=False)
    assert s.n_good == 4
    rows = _labels(out)
    assert {r["preset"] for r in rows} == {"diffranet", "cspad"}
    from PIL import Image

    for r in rows:
        path = out / r["file"]
        assert path.parts[-3] == r["split"] and path.parts[-2] == r["diffranet_class"]
        img = np.asarray(Image.open(path))
        assert img.dtype == np.uint8 and img.ndim == 2
        if r["preset"] == "diffranet":
            assert img.shape == (512, 512)
    assert {r["split"] for r in rows} == {"train", "test"}


@pytest.mark.parametrize("kw, match", [
    (dict(n=0), "n must be"), (dict(workers=0), "workers"), (dict(fmt="tiff"), "fmt"),
    (dict(classes="great"), "classes"), (dict(split="40,60"), "split"), (dict(presets="nope"), "unknown preset"),
])
def test_bad_dataset_arguments(tmp_path, kw, match):
    args = dict(presets="diffranet", n=2, progress=False)
    args.update(kw)
    with pytest.raises(ParameterError, match=match):
        simulate_dataset(tmp_path / "x", **args)


def test_read_spots_outside_a_dataset(tmp_path):
    with pytest.raises(InputError, match="spots.csv"):
        read_spots(tmp_path, "shard-00000.h5", 0)
