"""``ensemble``: the mean of trained members' probabilities, built from checkpoints."""

from __future__ import annotations

import pytest
import torch

from xtalscreen.errors import InputError, ParameterError
from xtalscreen.models import create_model
from xtalscreen.models.ensemble import ensemble_checkpoints
from xtalscreen.models.sizebn import split_batchnorm
from xtalscreen.preprocess import PreprocessConfig
from xtalscreen.train import load_model, save_checkpoint

PP = PreprocessConfig(bin="auto", crop=(32, 32), unbinned_up_to=2, bin_reduce="max")
SPEC = {"model_name": "spotcount", "model_kwargs": {"img_size": 32}}


def _trained_like(seed, sizes=((32, 32), (64, 64))):
    """A spotcount with random weights and per-size BatchNorm statistics of its own."""
    torch.manual_seed(seed)
    m = create_model("spotcount", num_classes=3, img_size=32)
    split_batchnorm(m)
    m.train()
    with torch.no_grad():
        for h, w in sizes:
            for _ in range(3):
                m(torch.randn(8, 1, h, w) * (1 + seed) + seed)
    return m.eval()


def test_output_is_the_log_of_the_mean_probability():
    torch.manual_seed(0)
    e = create_model("ensemble", members=[SPEC, SPEC, SPEC]).eval()
    x = torch.randn(4, 1, 32, 32)
    with torch.no_grad():
        want = torch.stack([torch.softmax(m(x), 1) for m in e.members]).mean(0)
        torch.testing.assert_close(torch.softmax(e(x), 1), want)
        torch.testing.assert_close(e(x).exp().sum(1), torch.ones(4))


def test_checkpoints_keep_member_weights_and_per_size_statistics(tmp_path):
    members = [_trained_like(1), _trained_like(2)]
    paths = []
    for i, m in enumerate(members):
        paths.append(tmp_path / f"m{i}.pt")
        save_checkpoint(paths[-1], m, preprocess=PP, classes=("hit", "maybe", "miss"), target="ke")
    out = ensemble_checkpoints(paths, tmp_path / "ens.pt")
    ens, pp, meta = load_model(out)
    assert pp == PP and meta["model_name"] == "ensemble" and meta["classes"] == ["hit", "maybe", "miss"]
    for hw in ((32, 32), (64, 64)):  # each input size meets each member's own statistics
        x = torch.randn(3, 1, *hw)
        with torch.no_grad():
            want = torch.stack([torch.softmax(m(x), 1) for m in members]).mean(0)
            torch.testing.assert_close(torch.softmax(ens(x), 1), want)
    assert ens.default_cfg["paper"] == "ensemble of spotcount, spotcount"


def test_screen_takes_an_ensemble(tmp_path):
    import numpy as np

    from xtalscreen.io import Frame, write_hdf5_run
    from xtalscreen.screen import screen

    paths = []
    for i in range(2):
        paths.append(tmp_path / f"m{i}.pt")
        save_checkpoint(paths[-1], _trained_like(i + 3), preprocess=PP, classes=("hit", "maybe", "miss"),
                        target="ke")
    ens = ensemble_checkpoints(paths, tmp_path / "ens.pt")
    run = tmp_path / "run.h5"
    rng = np.random.default_rng(0)
    write_hdf5_run([Frame(rng.poisson(4.0, (60, 64)).astype(np.float32), beam_center=(32.0, 30.0),
                          index=i, pixel_size=172e-6, distance=0.2, wavelength=1.0) for i in range(6)], run)
    s = screen([run], out=tmp_path / "out", model=str(ens), live=False)
    assert s.frames == 6 and s.bad_frames == 0


def test_mismatched_members_are_refused_by_name(tmp_path):
    a, b, c = tmp_path / "a.pt", tmp_path / "b.pt", tmp_path / "c.pt"
    m = _trained_like(0)
    save_checkpoint(a, m, preprocess=PP, classes=("hit", "maybe", "miss"), target="ke")
    save_checkpoint(b, m, preprocess=PP.replace(bin_reduce="sum"), classes=("hit", "maybe", "miss"), target="ke")
    save_checkpoint(c, m, preprocess=PP, classes=("miss", "maybe", "hit"), target="ke")
    with pytest.raises(InputError, match=r"b\.pt.*preprocessing differ"):
        ensemble_checkpoints([a, b], tmp_path / "x.pt")
    with pytest.raises(InputError, match=r"c\.pt.*classes differ"):
        ensemble_checkpoints([a, c], tmp_path / "x.pt")
    with pytest.raises(ParameterError, match="at least 2"):
        ensemble_checkpoints([a], tmp_path / "x.pt")
    with pytest.raises(InputError, match="not found"):
        ensemble_checkpoints([a, tmp_path / "nope.pt"], tmp_path / "x.pt")
    ensemble_checkpoints([a, a], tmp_path / "e.pt")
    with pytest.raises(InputError, match="ensemble already"):
        ensemble_checkpoints([tmp_path / "e.pt", a], tmp_path / "x.pt")
    assert not (tmp_path / "x.pt").exists()


def test_bad_specs_and_head():
    with pytest.raises(ParameterError, match="at least 2 members"):
        create_model("ensemble", members=[SPEC])
    with pytest.raises(ParameterError, match="must be a dict"):
        create_model("ensemble", members=[SPEC, "spotcount"])
    with pytest.raises(ParameterError, match="cannot be an ensemble"):
        create_model("ensemble", members=[SPEC, {"model_name": "ensemble", "model_kwargs": {}}])
    with pytest.raises(ParameterError, match="share classes"):
        create_model("ensemble", members=[SPEC, {"model_name": "spotcount", "model_kwargs": {"num_classes": 5}}])
    with pytest.raises(ParameterError, match="num_classes=5"):
        create_model("ensemble", members=[SPEC, SPEC], num_classes=5)
    e = create_model("ensemble", members=[SPEC, SPEC])
    with pytest.raises(ParameterError, match="one classifier per member"):
        e.get_classifier()
    with pytest.raises(ParameterError, match=r"\(N, 128, 1, 1\)"):
        e.forward_head(torch.zeros(2, 10))


def test_cli(tmp_path, capsys):
    from xtalscreen.cli import main

    a = tmp_path / "a.pt"
    save_checkpoint(a, _trained_like(0), preprocess=PP, classes=("hit", "maybe", "miss"), target="ke")
    assert main(["ensemble", str(a), str(a), "--out", str(tmp_path / "e.pt")]) == 0
    assert "ensemble of 2 (spotcount, spotcount)" in capsys.readouterr().out
    assert main(["ensemble", str(a), str(tmp_path / "nope.pt"), "--out", str(tmp_path / "f.pt")]) != 0
