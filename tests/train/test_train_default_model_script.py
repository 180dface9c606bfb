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
    """With --prefilter-sigma the windows are smoothed before they are binned, so the training
    input cut from a window equals the shipped preprocessing (filter, bin, crop, LCN) of the raw
    frame, and the run's settings carry the filter."""
    import numpy as np

    from xtalscreen.preprocess import PreprocessConfig
    from xtalscreen.simulate import simulate_dataset
    from xtalscreen.train import FrameDataset, load_labels
    from xtalscreen.train.windows import window_preprocess

    raw = tmp_path / "raw"
    simulate_dataset(raw, presets="diffranet", n=3, seed=2, split=(0, 0, 100), spots="none",
                     classes="strong", progress=False)
    shipped = PreprocessConfig(bin=4, bin_reduce="max", crop=(64, 64), lcn_window=9, max_shift=8,
                               prefilter_sigma=1.2)
    assert tdm.windows_preprocess(shipped) == {"bin": 4, "bin_reduce": "max", "unbinned_up_to": 1,
                                               "prefilter_sigma": 1.2, "max_shift": 8, "lcn_window": 9}
    red = tdm.reduce(raw, tmp_path / "red", shipped=shipped)
    got = FrameDataset(red, window_preprocess(shipped))
    want = FrameDataset(load_labels(raw, target="ke"), shipped)
    for i in range(3):
        np.testing.assert_allclose(got[i][0].numpy(), want[i][0].numpy(), atol=1e-5)
    unfiltered = FrameDataset(load_labels(raw, target="ke"), shipped.replace(prefilter_sigma=0.0))
    assert not np.allclose(got[0][0].numpy(), unfiltered[0][0].numpy(), atol=1e-3)


def test_the_script_trains_on_windows_and_ships_the_raw_frame_model(tmp_path):
    """A tiny end-to-end run of the script: simulate, cut windows, train, ship, test on the raw
    frames; the shipped file's preprocessing bins raw frames and the card has the timings."""
    import json

    rc = tdm.main(["--work", str(tmp_path / "w"), "--frames", "30", "--seed", "3", "--presets", "diffranet",
                   "--img-size", "64", "--max-shift", "4", "--epochs", "1", "--batches-per-epoch", "2",
                   "--sim-workers", "1", "--threads", "1", "--out", str(tmp_path / "ship"),
                   "--report", str(tmp_path / "ship" / "report.md")])
    assert rc == 0
    card = json.loads((tmp_path / "ship" / "default_ke.json").read_text())
    assert card["preprocess"]["bin"] == "auto" and card["preprocess"]["margin"] == 0
    assert card["preprocess"]["bin_reduce"] == "max" and card["training"]["windows"] is True
    assert set(card["seconds"]) == {"simulate", "reduce", "train"}
    assert card["test"]["overall"]["n"] == 4  # 15 % of 30, rounded by the exact split
    from xtalscreen.train import load_model

    _, pp, _ = load_model(tmp_path / "ship" / "default_ke.pt")
    assert pp.plan((512, 512)) == (8, (64, 64))
