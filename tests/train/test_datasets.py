"""Dataset layouts, label targets and random access to frames."""

import csv

import h5py
import numpy as np
import pytest
from PIL import Image

from xtalscreen.errors import InputError, ParameterError
from xtalscreen.preprocess import PreprocessConfig
from xtalscreen.train.datasets import TARGETS, FrameDataset, load_labels, map_label, split_of

SIZE = 96
PP = PreprocessConfig(bin=2, crop=(32, 32), contrast="lcn", max_shift=4)


def test_map_label_targets():
    assert map_label("Hit", "ke") == 0 and map_label("miss", "ke") == 2
    assert map_label("no_crystal", "diffranet") == 1
    # binary: paper 001 collapse for Ke classes, diffraction vs none for DiffraNet classes
    assert [map_label(c, "binary") for c in ("hit", "maybe", "miss")] == [0, 0, 1]
    assert [map_label(c, "binary") for c in TARGETS["diffranet"]] == [1, 1, 0, 0, 0]
    with pytest.raises(ValueError, match="not a class of target 'ke'"):
        map_label("strong", "ke")


def test_split_of_is_fixed_and_roughly_80_10_10():
    s = [split_of("run.h5", i) for i in range(2000)]
    assert s == [split_of("run.h5", i) for i in range(2000)]
    frac = {k: s.count(k) / len(s) for k in ("train", "val", "test")}
    assert 0.75 < frac["train"] < 0.85 and 0.06 < frac["val"] < 0.14


def test_simulate_layout_targets_and_splits(sim_dataset):
    ke = load_labels(sim_dataset, target="ke")
    assert len(ke) == 80 and ke.classes == ("hit", "maybe", "miss")
    assert set(ke.labels.tolist()) == {0, 2}
    dn = load_labels(sim_dataset, target="diffranet", split="train")
    assert set(dn.splits) == {"train"} and len(dn) < 80
    assert {dn.classes[i] for i in dn.labels} == {"strong", "no-crystal"}
    assert dn.meta[0]["preset"] == "tiny"


def test_frame_dataset_reads_and_preprocesses(sim_dataset):
    data = load_labels(sim_dataset, target="binary")
    ds = FrameDataset(data, PP, augment=True, seed=1)
    x, y, i = ds[3]
    assert tuple(x.shape) == (1, 32, 32) and y == int(data.labels[3]) and i == 3
    again = FrameDataset(data, PP, augment=True, seed=1)[3][0]
    assert np.array_equal(x.numpy(), again.numpy())  # same (seed, epoch, item): same tensor
    ds.set_epoch(1)
    assert not np.array_equal(x.numpy(), ds[3][0].numpy())  # another epoch: another crop
    ds.close()


def test_unreadable_frame_gives_label_minus_one(sim_dataset, tmp_path):
    data = load_labels(sim_dataset, target="ke")
    data.frames[5] = 999  # past the end of the shard
    ds = FrameDataset(data, PP)
    x, y, _ = ds[5]
    assert y == -1 and float(x.abs().sum()) == 0.0
    assert "frame 999" in ds.bad[5]


def test_generic_labels_csv_relative_paths(tmp_path, frame_maker):
    rng = np.random.default_rng(0)
    for k in range(4):
        np.save(tmp_path / f"f{k}.npy", frame_maker(rng, 10 * (k % 2)))
    with open(tmp_path / "mine.csv", "w", newline="") as fh:
        w = csv.writer(fh)
        w.writerow(["file", "frame", "label", "split"])
        for k in range(4):
            w.writerow([f"f{k}.npy", 0, "miss" if k % 2 == 0 else "hit", "train"])
        w.writerow(["f0.npy", 0, "banana", "train"])
    data = load_labels(tmp_path / "mine.csv", target="binary")
    assert len(data) == 4 and data.labels.tolist() == [1, 0, 1, 0]
    assert len(data.skipped) == 1 and "banana" in data.skipped[0]
    x, y, _ = FrameDataset(data, PP)[1]
    assert y == 0 and tuple(x.shape) == (1, 32, 32)


def test_diffranet_folders(tmp_path, frame_maker):
    rng = np.random.default_rng(0)
    for split in ("train", "validation"):
        for cls in ("blank", "strong"):
            d = tmp_path / split / cls
            d.mkdir(parents=True)
            for k in range(2):
                img = np.clip(frame_maker(rng, 20 if cls == "strong" else 0), 0, 255).astype(np.uint8)
                Image.fromarray(img).save(d / f"img{k}.png")
    data = load_labels(tmp_path, target="diffranet")
    assert len(data) == 8 and sorted(set(data.splits)) == ["train", "val"]
    assert data.class_counts() == {"blank": 4, "no-crystal": 0, "weak": 0, "good": 0, "strong": 4}
    binary = load_labels(tmp_path, target="binary", split="val")
    assert sorted(binary.labels.tolist()) == [0, 0, 1, 1]
    x, y, _ = FrameDataset(data, PP)[0]
    assert tuple(x.shape) == (1, 32, 32)
    with pytest.raises(InputError, match="no frame with a label usable"):
        load_labels(tmp_path, target="ke")  # DiffraNet classes have no Ke meaning


def test_idh5_with_annotation_file(tmp_path, frame_maker):
    rng = np.random.default_rng(0)
    frames = np.stack([frame_maker(rng, 20 * (i % 2)) for i in range(6)]).astype(np.int32)
    h5 = tmp_path / "run7.h5"
    with h5py.File(h5, "w") as f:
        f.create_dataset("data/chunk0/images", data=frames[:4])
        f.create_dataset("data/chunk1/images", data=frames[4:])
    (tmp_path / "run7.labels.csv").write_text(
        "frame,label,split\n# Ke annotation\n0 miss train\n1,hit,train\n2\tmiss\tval\n3 hit\n5 maybe test\n")
    data = load_labels(h5, target="ke")  # annotation file found next to the HDF5 file
    assert data.frames.tolist() == [0, 1, 2, 3, 5]
    assert [data.classes[i] for i in data.labels] == ["miss", "hit", "miss", "hit", "maybe"]
    assert data.splits[:3] == ["train", "train", "val"]
    ds = FrameDataset(data, PP)
    assert ds[4][1] == 1 and ds.read(4).data.shape == (SIZE, SIZE)


@pytest.mark.parametrize("make, match", [
    (lambda p: p / "missing", "dataset not found"),
    (lambda p: (p / "empty").mkdir() or p / "empty", "no labels.csv and no DiffraNet"),
    (lambda p: (p / "x.csv").write_text("a,b\n1,2\n") and p / "x.csv", "no 'file' column"),
    (lambda p: (p / "y.h5").write_bytes(b"") or p / "y.h5", "needs an annotation file"),
])
def test_bad_datasets_raise_input_error_naming_the_path(tmp_path, make, match):
    path = make(tmp_path)
    with pytest.raises(InputError, match=match) as exc:
        load_labels(path, target="ke")
    assert str(path) in str(exc.value)


def test_bad_target_and_split(sim_dataset):
    with pytest.raises(ParameterError, match="target must be one of"):
        load_labels(sim_dataset, target="hits")
    with pytest.raises(ParameterError, match="split must be"):
        load_labels(sim_dataset, split="training-set")
