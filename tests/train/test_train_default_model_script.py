"""scripts/train_default_model.py: the detector mix and the card's trained_on range."""

import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "scripts"))
import train_default_model as tdm  # noqa: E402


def test_presets_name_the_training_mix_or_any_simulator_preset():
    assert tdm.parse_presets(None) == tdm.TRAINING_PRESETS
    assert tdm.parse_presets("rayonix_mx340, diffranet,diffranet") == ("rayonix_mx340", "diffranet", "diffranet")
    with pytest.raises(SystemExit, match="--presets: give names from"):
        tdm.parse_presets("pilatus9m")
    cfgs = tdm.training_configs("measured", ("rayonix_mx340",))
    assert cfgs["rayonix_mx340"].background.ice_prob == tdm.ICE_PROB
    assert cfgs["rayonix_mx340"].labels.visibility == "measured"


def test_trained_on_follows_the_runs_detectors():
    assert set(tdm.trained_on()["detectors"]) == {"diffranet", "cspad", "pilatus2m"}
    own = tdm.trained_on(("rayonix_mx340",))
    assert set(own["detectors"]) == {"rayonix_mx340"}
    lo, hi = own["angular_pixel"]
    assert lo == hi == pytest.approx(177e-6 / 0.14)
    tuned = tdm.trained_on(("rayonix_mx340",), fine_tune=True)  # --init: the shipped mix too
    assert set(tuned["detectors"]) == {"rayonix_mx340", "diffranet", "cspad", "pilatus2m"}


def test_reduced_windows_with_the_matched_filter_give_the_shipped_input(tmp_path):
    """With --prefilter-sigma the reduction smooths before it bins, so the training input cut
    from a reduced window equals the shipped preprocessing (filter, bin, crop, LCN) of the raw
    frame, and the shipped settings carry the filter."""
    import numpy as np

    from xtalscreen.preprocess import PreprocessConfig
    from xtalscreen.simulate import simulate_dataset
    from xtalscreen.train import FrameDataset, load_labels

    raw = tmp_path / "raw"
    simulate_dataset(raw, presets="diffranet", n=3, seed=2, split=(0, 0, 100), spots="none",
                     classes="strong", progress=False)
    shipped = PreprocessConfig(bin=4, bin_reduce="max", crop=(64, 64), lcn_window=9, max_shift=8,
                               prefilter_sigma=1.2)
    tdm.reduce(raw, tmp_path / "red", shipped=shipped, margin=8)
    red = load_labels(tmp_path / "red", target="ke")
    train_cfg = PreprocessConfig(crop=(64, 64), **tdm.training_preprocess(shipped, 8))
    got = FrameDataset(red, train_cfg)
    want = FrameDataset(load_labels(raw, target="ke"), shipped)
    for i in range(3):
        np.testing.assert_allclose(got[i][0].numpy(), want[i][0].numpy(), atol=1e-5)
    unfiltered = FrameDataset(load_labels(raw, target="ke"), shipped.replace(prefilter_sigma=0.0))
    assert not np.allclose(got[0][0].numpy(), unfiltered[0][0].numpy(), atol=1e-3)
