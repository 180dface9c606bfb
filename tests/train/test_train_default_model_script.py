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
