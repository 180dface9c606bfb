"""The training loop: a CPU smoke run, bit-reproducibility, resume, checkpoints."""

import json

import numpy as np
import pytest
import torch

from xtalscreen.errors import InputError, ParameterError
from xtalscreen.train import TrainConfig, load_labels, load_model, read_checkpoint, save_checkpoint, train
from xtalscreen.train.loop import build_model

FAST = dict(model="ke2018", img_size=32, target="binary", batch_size=16, batches_per_epoch=5,
            lr=0.05, lr_end=0.005, preprocess={"max_shift": 4})


@pytest.fixture(scope="module")
def splits(sim_dataset):
    data = load_labels(sim_dataset, target="binary")
    return data.split("train"), data.split("val")


@pytest.fixture(scope="module")
def smoke(splits, tmp_path_factory):
    tr, va = splits
    out = tmp_path_factory.mktemp("smoke")
    return train(TrainConfig(epochs=12, **FAST), tr, val=va, out_dir=out, progress=False), out


def test_smoke_run_learns_an_easy_problem(smoke):
    res, out = smoke
    losses = [h["train_loss"] for h in res.history]
    assert np.mean(losses[-3:]) < 0.5 * losses[0]  # the loss goes down
    assert res.best["val_accuracy"] >= 0.9  # chance is 0.5
    assert res.history[0]["lr"] == pytest.approx(0.05) and res.history[-1]["lr"] == pytest.approx(0.005)
    lines = (out / "metrics.jsonl").read_text().splitlines()
    assert [json.loads(ln)["epoch"] for ln in lines] == list(range(12))
    side = json.loads((out / "train.json").read_text())
    assert side["config"]["model"] == "ke2018" and side["classes"] == ["hit", "miss"]
    assert side["data"]["train_items"] == 40 and "torch" in side["provenance"]


def test_best_checkpoint_rebuilds_the_model(smoke, splits):
    res, out = smoke
    model, pp, meta = load_model(out / "best.pt")
    assert meta["classes"] == ["hit", "miss"] and meta["target"] == "binary"
    assert meta["model_name"] == "ke2018" and meta["epoch"] == res.best["epoch"] + 1
    assert pp.crop == (32, 32) and pp.max_shift == 4
    assert not model.training
    from xtalscreen.train import FrameDataset, predict
    probs, labels = predict(model, FrameDataset(splits[1], pp))
    assert (probs.argmax(1) == labels).mean() == pytest.approx(res.best["val_accuracy"])


def _weights(path):
    return read_checkpoint(path)["state_dict"]


def _interrupted_and_resumed(cfg, tr, va, out, *, after: int):
    """Train ``cfg`` into ``out``, stopped after epoch ``after`` (0-based), then resumed from
    its ``last.pt`` to the end; returns the resumed run's result."""

    class Stop(Exception):
        pass

    def interrupt(epoch, metrics):
        if epoch == after:
            raise Stop

    with pytest.raises(Stop):
        train(cfg, tr, val=va, out_dir=out, progress=False, on_epoch=interrupt)
    assert read_checkpoint(out / "last.pt")["epoch"] == after + 1
    return train(cfg, tr, val=va, out_dir=out, resume=out / "last.pt", progress=False)


@pytest.mark.parametrize("bn_batches", [0, 3])
def test_same_seed_same_weights_and_resume_continues_identically(splits, tmp_path, bn_batches):
    """Also with precise BatchNorm statistics before each validation (``bn_batches``): they
    draw from their own sampler and leave the torch RNG (dropout) alone."""
    tr, va = splits
    cfg = TrainConfig(epochs=4, **FAST, model_kwargs={"drop_rate": 0.2},  # dropout uses the torch RNG
                      bn_batches=bn_batches)
    train(cfg, tr, val=va, out_dir=tmp_path / "a", progress=False)
    res = _interrupted_and_resumed(cfg, tr, va, tmp_path / "b", after=1)
    assert res.epochs_run == 4
    a, b = _weights(tmp_path / "a" / "last.pt"), _weights(tmp_path / "b" / "last.pt")
    assert all(torch.equal(a[k], b[k]) for k in a)
    la = (tmp_path / "a" / "metrics.jsonl").read_text().splitlines()
    lb = (tmp_path / "b" / "metrics.jsonl").read_text().splitlines()
    strip = lambda ln: {k: v for k, v in json.loads(ln).items() if k != "seconds"}  # noqa: E731
    assert [strip(x) for x in la] == [strip(x) for x in lb]


def test_precise_batchnorm_sets_the_running_statistics_from_training_batches(splits, tmp_path):
    """``bn_batches``: the checkpoint's running statistics are the recalibrated ones, not the
    momentum estimates; and a checkpoint written before the setting existed still resumes."""
    tr, va = splits
    plain = train(TrainConfig(epochs=1, **FAST), tr, val=va, out_dir=tmp_path / "a", progress=False)
    precise = train(TrainConfig(epochs=1, **FAST, bn_batches=4), tr, val=va, out_dir=tmp_path / "b",
                    progress=False)
    a, b = _weights(plain.last_path), _weights(precise.last_path)
    weights = [k for k in a if not k.endswith(("running_mean", "running_var", "num_batches_tracked"))]
    assert all(torch.equal(a[k], b[k]) for k in weights)  # same training
    var = next(k for k in a if k.endswith("running_var"))
    assert not torch.allclose(a[var], b[var])
    assert read_checkpoint(precise.last_path)["config"]["bn_batches"] == 4
    with pytest.raises(ParameterError, match="bn_batches"):
        TrainConfig(bn_batches=-1)
    # a last.pt of an older version has no bn_batches in its config: resumed with the default
    state = torch.load(plain.last_path, weights_only=True)
    del state["config"]["bn_batches"]
    torch.save(state, tmp_path / "old.pt")
    res = train(TrainConfig(epochs=2, **FAST), tr, val=va, out_dir=tmp_path / "a", resume=tmp_path / "old.pt",
                progress=False)
    assert res.epochs_run == 2


def test_recalibrate_a_trained_model_on_two_input_sizes(tmp_path):
    """``recalibrate``: a model trained before (one set of statistics) gets statistics per
    input size from the training items, and keeps them through a checkpoint."""
    from xtalscreen.models import create_model
    from xtalscreen.models.sizebn import batchnorm_sizes
    from xtalscreen.preprocess import PreprocessConfig
    from xtalscreen.train import recalibrate, save_checkpoint

    data = load_labels(_two_detector_set(tmp_path / "d"), target="binary").split("train")
    model = create_model("spotcount", num_classes=2, img_size=48)
    pp = PreprocessConfig(bin="auto", crop=(48, 48), unbinned_up_to=2, max_shift=2)
    assert recalibrate(model, data, pp, batches=6, batch_size=8) == 6
    assert batchnorm_sizes(model)["features.1"] == ["24x24", "48x48"]
    bn = model.features[1]
    assert not torch.allclose(bn.running_mean_s24x24, bn.running_mean_s48x48)
    save_checkpoint(tmp_path / "m.pt", model, preprocess=pp, classes=data.classes, target="binary")
    m2, _, _ = load_model(tmp_path / "m.pt")
    torch.testing.assert_close(m2.features[1].running_var_s48x48, bn.running_var_s48x48)
    with pytest.raises(ParameterError, match="batches"):
        recalibrate(model, data, pp, batches=0)


def test_resume_with_other_settings_is_refused(smoke, splits, tmp_path):
    _, out = smoke
    cfg = TrainConfig(epochs=14, **{**FAST, "lr": 0.01})
    with pytest.raises(InputError, match="other settings \\(lr\\)"):
        train(cfg, splits[0], out_dir=tmp_path, resume=out / "last.pt", progress=False)


def test_early_stopping(splits, tmp_path):
    tr, va = splits
    cfg = TrainConfig(epochs=30, patience=1, **{**FAST, "lr": 1e-9, "lr_end": 1e-9, "schedule": "constant"})
    res = train(cfg, tr, val=va, out_dir=tmp_path, progress=False)
    assert res.stopped_early and res.epochs_run < 30
    assert res.epochs_run - 1 - res.best["epoch"] == 1


def test_adamw_and_unbalanced_run(splits, tmp_path):
    cfg = TrainConfig(epochs=1, optimizer="adamw", balanced=False, **{**FAST, "lr": 1e-3})
    res = train(cfg, splits[0], out_dir=tmp_path, progress=False)
    assert res.epochs_run == 1 and np.isfinite(res.history[0]["train_loss"])
    assert "val_accuracy" not in res.history[0]


@pytest.mark.parametrize("select", ["keep_auc", "loss"])
def test_model_selection_by_keep_auc_or_loss(sim_dataset, tmp_path, select):
    """``best.pt`` is the epoch with the best chosen validation figure, not the best accuracy."""
    data = load_labels(sim_dataset, target="ke")
    cfg = TrainConfig(epochs=4, select=select, **{**FAST, "target": "ke"})
    res = train(cfg, data.split("train"), val=data.split("val"), out_dir=tmp_path, progress=False)
    figs = [h["val_keep_auc"] if select == "keep_auc" else -h["val_loss"] for h in res.history]
    assert all(np.isfinite(figs)) and all(0.0 <= h["val_keep_auc"] <= 1.0 for h in res.history)
    assert res.best["select"] == select and res.best["epoch"] == int(np.argmax(figs))
    assert res.best["score"] == pytest.approx(max(figs))
    assert read_checkpoint(tmp_path / "best.pt")["epoch"] == res.best["epoch"] + 1


def test_keep_auc_averages_detectors_and_skips_one_class_groups():
    from xtalscreen.train.loop import keep_auc

    probs = np.array([[0.6, 0.2, 0.2], [0.1, 0.1, 0.8], [0.3, 0.3, 0.4],   # A: perfect
                      [0.1, 0.1, 0.8], [0.5, 0.4, 0.1],                    # B: reversed
                      [0.9, 0.05, 0.05]])                                   # C: hits only
    labels = np.array([0, 2, 1, 0, 2, 0])
    groups = ["A", "A", "A", "B", "B", "C"]
    assert keep_auc(probs, labels, groups) == pytest.approx(0.5)  # mean of A (1) and B (0)
    assert keep_auc(probs[:3], labels[:3]) == 1.0
    assert np.isnan(keep_auc(probs[5:], labels[5:]))
    unreadable = labels.copy()
    unreadable[4] = -1  # left out: B has one class only
    assert keep_auc(probs, unreadable, groups) == 1.0


@pytest.mark.parametrize("kw, match", [
    (dict(select="auc"), "select"), (dict(select="keep_auc", target="diffranet"), "ke target"),
    (dict(optimizer="adam"), "optimizer"), (dict(epochs=0), "epochs"), (dict(momentum=1.0), "momentum"),
    (dict(target="hits"), "target"), (dict(schedule="cosine"), "schedule"), (dict(patience=0), "patience"),
    (dict(img_size=4), "img_size"), (dict(lr=-1), "lr"),
])
def test_config_validation(kw, match):
    with pytest.raises(ParameterError, match=match):
        TrainConfig(**kw)


def test_build_model_checks_preprocess_against_input_size():
    with pytest.raises(ParameterError, match="set img_size instead"):
        build_model(TrainConfig(img_size=32, preprocess={"crop": [40, 40]}))


def test_load_model_refuses_bad_files(smoke, tmp_path):
    _, out = smoke
    junk = tmp_path / "junk.pt"
    junk.write_bytes(b"not a checkpoint")
    with pytest.raises(InputError, match="not an xtalscreen model checkpoint") as exc:
        load_model(junk)
    assert str(junk) in str(exc.value)
    with pytest.raises(InputError, match="model file not found"):
        load_model(tmp_path / "nope.pt")
    torch.save({"weights": torch.zeros(3)}, tmp_path / "other.pt")
    with pytest.raises(InputError, match="no 'format"):
        load_model(tmp_path / "other.pt")
    state = read_checkpoint(out / "best.pt")
    torch.save({**state, "schema": 99}, tmp_path / "future.pt")
    with pytest.raises(InputError, match="schema version 99") as exc:
        load_model(tmp_path / "future.pt")
    assert "future.pt" in str(exc.value)
    torch.save({**state, "task": "drop-scoring"}, tmp_path / "drops.pt")
    with pytest.raises(InputError, match="for task 'drop-scoring'"):
        load_model(tmp_path / "drops.pt")
    bad_w = {**state, "state_dict": {k: v[..., :1] if v.ndim else v for k, v in state["state_dict"].items()}}
    torch.save(bad_w, tmp_path / "badw.pt")
    with pytest.raises(InputError, match="does not rebuild"):
        load_model(tmp_path / "badw.pt")


def test_save_checkpoint_round_trip(tmp_path):
    model, pp = build_model(TrainConfig(img_size=32, target="ke"))
    save_checkpoint(tmp_path / "m.pt", model, preprocess=pp, classes=("hit", "maybe", "miss"), target="ke")
    m2, pp2, meta = load_model(tmp_path / "m.pt")
    assert pp2 == pp and meta["epoch"] == 0
    x = torch.randn(2, 1, 32, 32)
    model.eval()
    assert torch.equal(model(x), m2(x))


def test_unreadable_training_frames_are_reported_and_skipped(splits, tmp_path):
    tr, va = splits
    tr = tr.subset(slice(None))
    tr.frames = tr.frames.copy()
    tr.frames[:3] = [997, 998, 999]  # not in the shard
    res = train(TrainConfig(epochs=2, **FAST), tr, val=va, out_dir=tmp_path, progress=False)
    assert res.epochs_run == 2 and np.isfinite(res.history[-1]["train_loss"])
    assert len(res.bad_items) == 3 and all("does not exist" in b for b in res.bad_items)
    assert len(json.loads((tmp_path / "train.json").read_text())["bad_items"]) == 3


def _two_detector_set(root):
    """A simulate-layout folder with two detectors: 96 px frames (preset ``ccd``) and 48 px
    frames (``small``), hit = bright spots, miss = background."""
    import train_synthetic as ts

    ts.make_sim_dataset(root, n=48, size=96, preset="ccd", shard="ccd.h5")
    return ts.make_sim_dataset(root, n=48, seed=1, size=48, preset="small", shard="small.h5", append=True)


def test_training_on_two_input_sizes_batches_each_detector_apart(tmp_path):
    """``unbinned_up_to``: the 96 px detector is kept at full resolution (96 px inputs), the
    48 px one fills the 48 px crop; batches never mix them, a bad item takes its batch's size,
    prediction over both works, and a checkpoint keeps the rule."""
    from xtalscreen.train import FrameDataset, predict

    data = load_labels(_two_detector_set(tmp_path / "d"), target="binary")
    tr, va = data.split("train"), data.split("val")
    tr.frames = tr.frames.copy()
    tr.frames[0] = 999  # unreadable (a 96 px item): zero input of its batch's size
    cfg = TrainConfig(model="spotcount", img_size=48, target="binary", batch_size=8, batches_per_epoch=6,
                      lr=0.01, epochs=4, optimizer="adamw",
                      preprocess={"bin": "auto", "unbinned_up_to": 2, "max_shift": 2})
    res = train(cfg, tr, val=va, out_dir=tmp_path / "run", progress=False)
    assert res.epochs_run == 4 and np.isfinite(res.history[-1]["train_loss"]) and len(res.bad_items) == 1
    model, pp, _ = load_model(res.best_path)
    assert pp.unbinned_up_to == 2 and pp.output_shape_for((96, 96)) == (1, 96, 96)
    # BatchNorm running statistics were kept per input size (the stem halves the input)
    from xtalscreen.models.sizebn import batchnorm_sizes

    assert batchnorm_sizes(model)["features.1"] == ["24x24", "48x48"]
    probs, labels = predict(model, FrameDataset(va, pp), batch_size=5)
    assert np.isfinite(probs).all() and (labels >= 0).all()
    # without groups (no preset column) a batch would mix sizes: refused with what to do
    va.meta = []
    with pytest.raises(ParameterError, match="different sizes.*'preset' or 'group'"):
        predict(model, FrameDataset(va, pp), batch_size=64)


def test_count_loss_trains_a_readout_resumes_it_and_leaves_the_model_unchanged(sim_dataset, tmp_path):
    """``count_loss``: an ordinal spot-count read-out trained beside the classifier; it learns
    (its loss falls), resumes identically from ``last.pt`` and is not part of the model."""
    from xtalscreen.train.loop import COUNT_THRESHOLDS

    data = load_labels(sim_dataset, target="ke")
    tr, va = data.split("train"), data.split("val")
    cfg = TrainConfig(epochs=6, count_loss=0.5, count_column="n_spots", **{**FAST, "target": "ke"})
    res = train(cfg, tr, val=va, out_dir=tmp_path / "a", progress=False)
    c = [h["train_count_loss"] for h in res.history]
    assert all(np.isfinite(c)) and c[-1] < 0.9 * c[0] and c == sorted(c, reverse=True)
    last = read_checkpoint(tmp_path / "a" / "last.pt")
    model, _, _ = load_model(tmp_path / "a" / "best.pt")
    assert last["count_head"]["weight"].shape == (len(COUNT_THRESHOLDS), model.num_features)
    plain = train(TrainConfig(epochs=1, **{**FAST, "target": "ke"}), tr, out_dir=tmp_path / "p", progress=False)
    assert set(_weights(plain.last_path)) == set(last["state_dict"])  # no extra model tensors
    assert "count_head" not in read_checkpoint(plain.last_path)
    _interrupted_and_resumed(cfg, tr, va, tmp_path / "b", after=2)
    b = read_checkpoint(tmp_path / "b" / "last.pt")
    assert all(torch.equal(last["state_dict"][k], b["state_dict"][k]) for k in last["state_dict"])
    assert torch.equal(last["count_head"]["weight"], b["count_head"]["weight"])


def test_count_loss_bad_settings_and_missing_counts(sim_dataset, tmp_path):
    import csv

    from xtalscreen.train.loop import item_counts

    for kw, match in [(dict(count_loss=-1.0), "count_loss"), (dict(count_loss=float("nan")), "count_loss"),
                      (dict(count_loss=0.5, target="marco"), "spot counts"),
                      (dict(count_loss=0.5, count_column="spots"), "count_column must be one of n_spots_measured")]:
        with pytest.raises(ParameterError, match=match):
            TrainConfig(**kw)
    data = load_labels(sim_dataset, target="ke")
    with pytest.raises(InputError, match="n_spots_measured"):  # the simulate column; this set lacks it
        train(TrainConfig(epochs=1, count_loss=0.5, **{**FAST, "target": "ke"}), data.split("train"),
              out_dir=tmp_path / "x", progress=False)
    assert not (tmp_path / "x" / "last.pt").exists()
    counts = item_counts(data, "n_spots")
    assert counts.shape == (len(data),) and set(np.unique(counts)) <= {0.0, 25.0}
    rows = list(csv.DictReader(open(sim_dataset / "labels.csv")))
    rows[0]["n_spots"] = "many"
    rows[1]["n_spots"] = ""
    bad = tmp_path / "bad"
    bad.mkdir()
    (bad / "shard-00000.h5").symlink_to(sim_dataset / "shard-00000.h5")
    with open(bad / "labels.csv", "w", newline="") as fh:
        w = csv.DictWriter(fh, fieldnames=list(rows[0]))
        w.writeheader()
        w.writerows(rows)
    bdata = load_labels(bad, target="ke")
    with pytest.raises(InputError, match="'many', not a number of spots"):
        item_counts(bdata, "n_spots")
    rows[0]["n_spots"] = "3"
    with open(bad / "labels.csv", "w", newline="") as fh:
        w = csv.DictWriter(fh, fieldnames=list(rows[0]))
        w.writeheader()
        w.writerows(rows)
    vals = item_counts(load_labels(bad, target="ke"), "n_spots")
    assert vals[0] == 3.0 and np.isnan(vals[1])  # an item without a count: left out of that loss


def test_count_head_refuses_models_it_cannot_read():
    from torch import nn

    from xtalscreen.models import create_model
    from xtalscreen.train.loop import _count_head

    head = _count_head(create_model("spotcount", img_size=32))
    assert head.in_features == 64 and head.out_features == 12
    with pytest.raises(ParameterError, match="auxiliary classifier"):
        _count_head(create_model("inception_v3", num_classes=3))
    with pytest.raises(ParameterError, match="forward_features / forward_head"):
        _count_head(nn.Linear(4, 2))
