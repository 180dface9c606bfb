"""``xtalscreen train --target marco``: drop images in the MARCO layout, image preprocessing,
fine-tuning with ``--init`` and the drop pipeline reading the checkpoints it writes."""

from __future__ import annotations

import datetime as dt
import json
import math
from pathlib import Path

import cv2
import numpy as np
import pytest

from xtalscreen.cli import main
from xtalscreen.drops.classifier import Preprocess, load_classifier, read_image
from xtalscreen.drops.render import render_drop
from xtalscreen.drops.schemes import MARCO_CLASSES
from xtalscreen.errors import InputError, ParameterError
from xtalscreen.preprocess.pipeline import ImagePreprocessConfig, PreprocessConfig, image_to_tensor
from xtalscreen.train.datasets import load_labels, split_of
from xtalscreen.train.loop import TrainConfig, build_model

N_PER_CLASS = 12
# a slim c4_cnn so a CPU epoch takes a fraction of a second
SMALL = ["--model-arg", "widths=[8,16,16,16]", "--model-arg", "hidden=32"]
FAST = ["--epochs", "2", "--batch-size", "16", "--batches-per-epoch", "3", "--device", "cpu",
        "--no-progress", "--optimizer", "adamw", "--lr", "1e-3"]


def _write(path: Path, img: np.ndarray) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    if img.ndim == 3:
        img = cv2.cvtColor(img, cv2.COLOR_RGB2BGR)
    assert cv2.imwrite(str(path), img)


@pytest.fixture(scope="module")
def marco_dir(tmp_path_factory) -> Path:
    """4 classes x 12 rendered drops at 64 px: grey PNGs and colour JPEGs, MARCO layout."""
    root = tmp_path_factory.mktemp("marco")
    for k, c in enumerate(MARCO_CLASSES):
        for i in range(N_PER_CLASS):
            img = render_drop(c, size=64, rng=100 * k + i, colour=i % 2 == 1)
            _write(root / c / f"{c}_{i:02d}.{'jpg' if i % 2 else 'png'}", img)
    return root


@pytest.fixture(scope="module")
def trained(marco_dir, tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("run")
    rc = main(["train", "--data", str(marco_dir), "--target", "marco", "--img-size", "64",
               "--val-fraction", "0.25", "--out", str(out), *SMALL, *FAST])
    assert rc == 0
    return out


# ----------------------------------------------------------------------------- datasets
def test_marco_layout_loads_with_a_fixed_split(marco_dir):
    data = load_labels(marco_dir, target="marco")
    assert len(data) == 4 * N_PER_CLASS
    assert data.classes == MARCO_CLASSES
    assert data.class_counts() == {c: N_PER_CLASS for c in MARCO_CLASSES}
    for f, y in zip(data.files, data.labels):
        assert Path(f).parent.name == MARCO_CLASSES[y]
    # the split is a function of the file name: the same on every load, all three present
    assert data.splits == load_labels(marco_dir, target="marco").splits
    assert set(data.splits) <= {"train", "val", "test"}
    vf = load_labels(marco_dir, target="marco", val_fraction=0.25)
    assert set(vf.splits) == {"train", "val"}
    assert 4 <= vf.splits.count("val") <= 20
    assert [split_of(Path(f).name, 0, val_fraction=0.25) for f in vf.files] == vf.splits
    assert len(load_labels(marco_dir, target="marco", split="train", val_fraction=0.25)) \
        == vf.splits.count("train")
    with pytest.raises(ParameterError, match="val_fraction"):
        load_labels(marco_dir, target="marco", val_fraction=1.5)


def test_split_level_and_mapped_class_names(tmp_path):
    for split in ("train", "val"):
        for name in ("Crystals high", "Skin", "clear", "Precipitate amorphous"):
            _write(tmp_path / split / name / "a.png", render_drop("clear", size=64, rng=1))
    data = load_labels(tmp_path, target="marco")
    got = sorted((s, Path(f).parent.name, data.classes[y])
                 for f, s, y in zip(data.files, data.splits, data.labels))
    assert ("train", "Crystals high", "crystal") in got
    assert ("val", "Skin", "other") in got
    assert ("train", "Precipitate amorphous", "precipitate") in got
    assert len(got) == 8


def test_unknown_class_folder_is_one_line_error(tmp_path, capsys):
    _write(tmp_path / "crystal" / "a.png", render_drop("crystal", size=64, rng=0))
    _write(tmp_path / "crystall" / "b.png", render_drop("crystal", size=64, rng=1))
    with pytest.raises(InputError, match="crystall") as ei:
        load_labels(tmp_path, target="marco")
    assert "crystal, precipitate, clear, other" in str(ei.value)
    rc = main(["train", "--data", str(tmp_path), "--target", "marco", "--out", str(tmp_path / "o"),
               "--epochs", "1", "--no-progress"])
    err = capsys.readouterr().err.strip().splitlines()
    assert rc == 1 and len(err) == 1 and "crystall" in err[0] and "precipitate" in err[0]
    assert not (tmp_path / "o" / "best.pt").exists()


# ----------------------------------------------------------------------------- preprocessing
def test_image_preprocess_matches_drop_pipeline_and_round_trips():
    rgb = render_drop("crystal", size=96, rng=3, colour=True)
    for ch in (1, 3):
        cfg = ImagePreprocessConfig(size=(48, 48), channels=ch)
        x = cfg.apply_image(rgb)
        assert x.shape == (ch, 48, 48) and x.dtype == np.float32
        # identical to what the drop pipeline feeds a model of the same settings
        np.testing.assert_array_equal(x, Preprocess(ch, (48, 48), 0.5, 0.25).one(rgb))
        assert PreprocessConfig.from_dict(cfg.to_dict()) == cfg
        assert ImagePreprocessConfig.from_dict(Preprocess(ch, (48, 48)).to_dict()) == cfg
    # [0, 1] pixels standardised with mean 0.5, std 0.25
    x = image_to_tensor(np.full((40, 40), 255, np.uint8), size=(16, 16), channels=1)
    np.testing.assert_allclose(x, 2.0)
    assert ImagePreprocessConfig(channels=3).apply_image(np.zeros((40, 40), np.uint8)).shape[0] == 3


def test_image_augmentation_is_seeded_and_label_preserving():
    img = render_drop("crystal", size=64, rng=5)
    cfg = ImagePreprocessConfig(size=(64, 64), channels=1, brightness_range=(1.0, 1.0))
    a = cfg.apply_image(img, rng=7, augment=True)
    np.testing.assert_array_equal(a, cfg.apply_image(img, rng=7, augment=True))
    plain = cfg.apply_image(img)
    outs = [cfg.apply_image(img, rng=s, augment=True) for s in range(12)]
    assert any(not np.array_equal(o, plain) for o in outs)
    # flips and turns only move pixels: the sorted values are unchanged
    for o in outs:
        np.testing.assert_array_equal(np.sort(o, axis=None), np.sort(plain, axis=None))
    dim = ImagePreprocessConfig(size=(64, 64), channels=1, flips=False, rot90=False,
                                brightness_range=(0.5, 0.5)).apply_image(img, rng=0, augment=True)
    assert dim.mean() < plain.mean()


@pytest.mark.parametrize("kw, match", [({"channels": 2}, "channels"), ({"size": (4, 4)}, "size"),
                                       ({"std": 0}, "std"), ({"brightness_range": (2, 1)}, "brightness")])
def test_image_preprocess_rejects_bad_settings(kw, match):
    with pytest.raises(ParameterError, match=match):
        ImagePreprocessConfig(**kw)
    with pytest.raises(ParameterError, match="unknown"):
        ImagePreprocessConfig.from_dict({"mode": "image", "bin": 2})


# ----------------------------------------------------------------------------- training
def test_train_writes_a_drop_checkpoint(trained):
    import torch

    for name in ("best.pt", "last.pt", "metrics.jsonl", "train.json"):
        assert (trained / name).is_file()
    lines = [json.loads(ln) for ln in (trained / "metrics.jsonl").read_text().splitlines()]
    assert len(lines) == 2
    assert all(math.isfinite(m["train_loss"]) and math.isfinite(m["val_loss"]) for m in lines)
    ck = torch.load(trained / "last.pt", map_location="cpu", weights_only=True)
    assert ck["target"] == "marco" and ck["classes"] == list(MARCO_CLASSES)
    assert ck["model_name"] == "c4_cnn"
    assert ck["preprocess"]["mode"] == "image" and ck["preprocess"]["size"] == [64, 64]
    assert 0.0 < ck["best"]["crystal_threshold"] < 1.0


def test_finetune_with_init_then_score_with_drops(trained, marco_dir, tmp_path, capsys):
    import torch

    out = tmp_path / "ft"
    assert main(["train", "--data", str(marco_dir), "--target", "marco", "--init",
                 str(trained / "best.pt"), "--out", str(out), *FAST]) == 0
    text = capsys.readouterr().out
    assert "fine-tuning from" in text and "14 of 14 tensors loaded" in text
    old = torch.load(trained / "best.pt", map_location="cpu", weights_only=True)
    new = torch.load(out / "best.pt", map_location="cpu", weights_only=True)
    assert new["model_kwargs"]["widths"] == [8, 16, 16, 16]  # the architecture came from --init
    assert new["preprocess"] == old["preprocess"]
    assert not torch.equal(new["state_dict"]["classifier.weight"], old["state_dict"]["classifier.weight"])
    # the drop pipeline reads the checkpoint: 4 probabilities summing to 1
    clf = load_classifier(out / "best.pt")
    assert clf.classes == MARCO_CLASSES and clf.name == "c4_cnn"
    imgs = [read_image(marco_dir / "crystal" / "crystal_00.png"),
            read_image(marco_dir / "clear" / "clear_01.jpg")]
    p = clf.predict_proba(imgs)
    assert p.shape == (2, 4)
    np.testing.assert_allclose(p.sum(1), 1.0, atol=1e-6)
    capsys.readouterr()
    assert main(["drops", "score", str(marco_dir / "crystal" / "crystal_00.png"),
                 str(marco_dir / "clear" / "clear_01.jpg"), "--model", str(out / "best.pt")]) == 0
    rows = [ln for ln in capsys.readouterr().out.splitlines() if ln.strip()]
    assert len(rows) == 2
    for ln in rows:
        probs = [float(t.split("=")[1]) for t in ln.split() if "=" in t][:4]
        assert len(probs) == 4 and abs(sum(probs) - 1.0) < 0.01


def test_init_with_other_classes_resets_only_the_head(trained):
    import torch

    cfg = TrainConfig(model="c4_cnn", target="binary", init=str(trained / "best.pt"))
    report: list[str] = []
    model, pp = build_model(cfg, report=report)
    old = torch.load(trained / "best.pt", map_location="cpu", weights_only=True)["state_dict"]
    assert model.num_classes == 2 and isinstance(pp, ImagePreprocessConfig)
    assert "started afresh" in report[0]
    sd = model.state_dict()
    assert torch.equal(sd["features.0.weight"], old["features.0.weight"])
    assert sd["classifier.weight"].shape == (2, 32)
    with pytest.raises(ParameterError, match="--init"):
        build_model(TrainConfig(model="ke2018", target="marco", init=str(trained / "best.pt")))


def test_init_from_demo_model_and_missing_file(tmp_path):
    model, pp = build_model(TrainConfig(model="c4_cnn", target="marco", init="demo"))
    assert pp.channels == 1 and pp.size == (64, 64) and model.num_classes == 4
    with pytest.raises(InputError, match="not found"):
        build_model(TrainConfig(model="c4_cnn", target="marco", init=str(tmp_path / "no.pt")))


def test_drops_refuse_an_xray_checkpoint(tmp_path):
    from xtalscreen.models import create_model
    from xtalscreen.train.checkpoint import save_checkpoint

    m = create_model("c4_cnn", num_classes=3, img_size=64, in_chans=1, widths=(8, 8), hidden=8)
    save_checkpoint(tmp_path / "x.pt", m, preprocess=PreprocessConfig(crop=(64, 64), bin=1),
                    classes=("hit", "maybe", "miss"), target="ke")
    with pytest.raises(InputError, match="X-ray frame classifier"):
        load_classifier(tmp_path / "x.pt")


def test_export_training_output_is_accepted(tmp_path):
    from xtalscreen.drops import schema as S
    from xtalscreen.drops.db import connect, init_db, scheme_classes, session_scope
    from xtalscreen.drops.export import export_training

    eng = connect(str(tmp_path / "d.sqlite"))
    init_db(eng)
    with session_scope(eng, write=True) as s:
        marco = scheme_classes(s)
        plate = S.Plate(barcode="P1", owner="ann")
        insp = S.Inspection(plate=plate, imaged_at=dt.datetime(2026, 1, 1), complete=True)
        s.add_all([plate, insp])
        for i in range(8):
            c = MARCO_CLASSES[i % 4]
            f = tmp_path / "img" / f"A{i + 1:02d}_1.jpg"
            _write(f, render_drop(c, size=64, rng=i, colour=True))
            well = S.Well(plate=plate, row="A", column=i + 1)
            drop = S.Drop(well=well, plate=plate, number=1)
            img = S.Image(drop=drop, inspection=insp, uri=str(f))
            s.add_all([well, drop, img])
            s.flush()
            s.add(S.ConsensusLabel(image_id=img.id, class_id=marco[c].id, n_scorers=2, agreement=1.0))
    rep = export_training(eng, tmp_path / "agreed")
    eng.dispose()
    assert rep.written == 8
    data = load_labels(tmp_path / "agreed", target="marco", val_fraction=0.25)
    assert data.class_counts() == {c: 2 for c in MARCO_CLASSES}
    out = tmp_path / "run"
    assert main(["train", "--data", str(tmp_path / "agreed"), "--target", "marco", "--img-size", "64",
                 "--epochs", "1", "--batch-size", "8", "--batches-per-epoch", "1", "--init", "demo",
                 "--out", str(out), "--device", "cpu", "--no-progress"]) == 0
    assert (out / "best.pt").is_file()


def test_resume_and_evaluate_a_drop_model(trained, marco_dir, tmp_path):
    import shutil

    run = tmp_path / "run"
    shutil.copytree(trained, run)
    assert main(["train", "--data", str(marco_dir), "--target", "marco", "--out", str(run),
                 "--resume", str(run / "last.pt"), "--epochs", "3", "--device", "cpu",
                 "--no-progress"]) == 0
    lines = (run / "metrics.jsonl").read_text().splitlines()
    assert [json.loads(ln)["epoch"] for ln in lines] == [0, 1, 2]
    side = json.loads((run / "train.json").read_text())
    assert side["config"]["val_fraction"] == 0.25 and side["config"]["target"] == "marco"
    rep = tmp_path / "rep"
    assert main(["evaluate", "--model", str(run / "last.pt"), "--data", str(marco_dir),
                 "--split", "all", "--out", str(rep), "--device", "cpu", "--no-progress"]) == 0
    m = json.loads((rep / "metrics.json").read_text())
    assert m["n"] == 4 * N_PER_CLASS and m["binary"]["positive"] == ["crystal"]
