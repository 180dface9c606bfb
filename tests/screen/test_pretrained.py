"""The shipped default model: packaged, small, documented, loads offline, screens sensibly."""

from __future__ import annotations

import os

import numpy as np
import pytest

from xtalscreen.errors import InputError
from xtalscreen.models.pretrained import load_default, model_card, resolve_model
from xtalscreen.preprocess import PreprocessConfig


def test_shipped_files_small_and_documented():
    path = resolve_model("default")
    assert os.path.getsize(path) < 2_000_000
    card = model_card("default")
    for key in ("command", "training_data", "test", "validation_accuracy", "trained_on", "preprocess"):
        assert key in card
    per = card["test"]["per_preset"]
    assert set(per) == {"diffranet", "cspad", "pilatus2m"}
    for m in per.values():
        assert 0.0 <= m["sensitivity"] <= 1.0 and 0.0 <= m["specificity"] <= 1.0
    lo, hi = card["trained_on"]["angular_pixel"]
    assert 0 < lo < hi


def test_load_default_offline():
    model, pp, meta = load_default()
    assert tuple(meta["classes"]) == ("hit", "maybe", "miss") and meta["target"] == "ke"
    assert pp.bin == "auto" and pp.bin_reduce == "max" and not model.training
    assert PreprocessConfig.from_dict(model_card()["preprocess"]) == pp
    assert meta["card"]["file"] == "default_ke.pt"


def test_unknown_model_names_fail_clearly(tmp_path):
    with pytest.raises(InputError, match="not found"):
        resolve_model(tmp_path / "missing.pt")
    assert model_card(str(tmp_path / "x.pt")) == {}


def test_default_model_separates_strong_from_blank(tmp_path):
    """Simulated DiffraNet frames: strong diffraction is kept, blank frames are not."""
    from xtalscreen.io import write_hdf5_run
    from xtalscreen.screen import screen
    from xtalscreen.simulate import get_preset, simulate_frame

    cfg = get_preset("diffranet")
    frames = []
    for i, cls in enumerate(["strong", "blank", "strong", "blank", "strong", "blank"]):
        f, _ = simulate_frame(cfg, rng=100 + i, frame_class=cls)
        frames.append(f.replace(index=i))
    write_hdf5_run(frames, tmp_path / "run.h5")
    s = screen([tmp_path / "run.h5"], out=tmp_path / "o", live=False)
    lines = (tmp_path / "o" / "results.csv").read_text().splitlines()[1:]
    decisions = [ln.split(",")[5] for ln in lines]
    kept = np.array([d in ("hit", "maybe") for d in decisions])
    assert kept[0::2].sum() >= 2 and kept[1::2].sum() <= 1, decisions
    assert s.frames == 6
