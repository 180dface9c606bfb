"""Paper 001's studies on a tiny two-preset dataset (shape of the tables, not the numbers)."""

import csv
import sys
from pathlib import Path

import pytest
import torch

from xtalscreen.errors import InputError, ParameterError
from xtalscreen.evaluate.studies import cross_dataset, training_size
from xtalscreen.train import TrainConfig, load_labels

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "train"))
from train_synthetic import make_sim_dataset  # noqa: E402

CFG = TrainConfig(model="ke2018", img_size=32, target="ke", epochs=2, batch_size=8, batches_per_epoch=2,
                  lr=0.05, preprocess={"max_shift": 4})


@pytest.fixture(scope="module")
def two_presets(tmp_path_factory):
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    root = make_sim_dataset(tmp_path_factory.mktemp("two"), n=70)
    rows = list(csv.DictReader(open(root / "labels.csv")))
    for r in rows:
        r["preset"] = "a" if int(r["frame"]) % 4 < 2 else "b"
    with open(root / "labels.csv", "w", newline="") as fh:
        w = csv.DictWriter(fh, fieldnames=list(rows[0]))
        w.writeheader()
        w.writerows(rows)
    yield load_labels(root, target="ke")
    torch.set_num_threads(before)


def test_cross_dataset_matrix(two_presets, tmp_path):
    res = cross_dataset(two_presets, config=CFG, out_dir=tmp_path)
    assert set(res["matrix"]) == {"a", "b"} and set(res["matrix"]["a"]) == {"a", "b"}
    assert set(res["held_out"]) == {"a", "b"}
    cell = res["matrix"]["a"]["b"]
    assert 0 <= cell["accuracy"] <= 1 and cell["n"] > 0
    md = (tmp_path / "study.md").read_text()
    assert "| train \\ test | a | b |" in md and "Held-out preset" in md
    assert (tmp_path / "train-a" / "best.pt").is_file() and (tmp_path / "all-but-b" / "best.pt").is_file()


def test_training_size_rows(two_presets, tmp_path):
    res = training_size(two_presets, config=CFG, out_dir=tmp_path, sizes=[4, 12])
    assert list(res["rows"]) == ["4", "12"]
    assert "| 12 |" in res["markdown"]
    with pytest.raises(ParameterError, match="exceeds"):
        training_size(two_presets, config=CFG, out_dir=tmp_path, sizes=[10_000])


def test_study_bad_input(two_presets, tmp_path):
    with pytest.raises(ParameterError, match="not in the data"):
        cross_dataset(two_presets, config=CFG, out_dir=tmp_path, presets=["a", "zzz"])
    no_meta = two_presets.subset(slice(None))
    no_meta.meta = []
    with pytest.raises(InputError, match="no 'preset' column"):
        cross_dataset(no_meta, config=CFG, out_dir=tmp_path)
