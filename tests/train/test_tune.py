"""Optuna search with Hyperband pruning, resumable through SQLite."""

import json

import optuna
import pytest

from xtalscreen.errors import ParameterError
from xtalscreen.train import TrainConfig, load_labels
from xtalscreen.train.tune import suggest, tune

BASE = TrainConfig(model="ke2018", img_size=32, target="binary", epochs=2, batches_per_epoch=2,
                   preprocess={"max_shift": 4})


def test_tune_runs_resumes_and_writes_the_table(sim_dataset, tmp_path):
    data = load_labels(sim_dataset, target="binary")
    storage = f"sqlite:///{tmp_path / 'tune.db'}"
    study, table = tune(data.split("train"), data.split("val"), base=BASE, out_dir=tmp_path,
                        n_trials=2, storage=storage)
    assert len(study.trials) == 2
    assert table.startswith("| trial | state | val accuracy | epochs |") and "lr" in table
    # every trial reported one value per epoch to the pruner
    assert all(len(t.intermediate_values) >= 1 for t in study.trials)
    assert isinstance(study.pruner, optuna.pruners.HyperbandPruner)
    # same storage, 3 trials wanted: only one more runs
    study2, _ = tune(data.split("train"), data.split("val"), base=BASE, out_dir=tmp_path,
                     n_trials=3, storage=storage)
    assert len(study2.trials) == 3
    saved = json.loads((tmp_path / "results.json").read_text())
    assert len(saved["trials"]) == 3 and saved["best"]["value"] is not None
    assert len((tmp_path / "results.md").read_text().strip().splitlines()) == 5  # header, rule, 3 trials


def test_search_space_covers_topology():
    trial = optuna.trial.FixedTrial({"topology": 8, "lr": 1e-3, "momentum": 0.56, "weight_decay": 3.5e-5,
                                     "batch_size": 8})
    cfg = suggest(trial, TrainConfig(model="deepfreak", target="diffranet"))
    assert cfg.model_kwargs == {"topology": 8} and cfg.batch_size == 8 and cfg.lr == 1e-3
    trial = optuna.trial.FixedTrial({"widths": "8-16-32-64", "first_kernel": 5, "lr": 0.1, "momentum": 0.9,
                                     "weight_decay": 1e-5, "batch_size": 64})
    assert suggest(trial, BASE).model_kwargs == {"widths": (8, 16, 32, 64), "first_kernel": 5}
    trial = optuna.trial.FixedTrial({"sc_widths": "16-32-48-48", "detectors": 64, "lr": 0.01,
                                     "momentum": 0.9, "weight_decay": 1e-5, "batch_size": 32})
    cfg = suggest(trial, TrainConfig(model="spotcount", target="ke"))
    assert cfg.model_kwargs == {"widths": (16, 32, 48, 48), "detectors": 64}
    from xtalscreen.models import create_model
    assert create_model(cfg.model, **cfg.model_kwargs).num_features == 128


def test_tune_needs_validation_items(sim_dataset, tmp_path):
    data = load_labels(sim_dataset, target="binary")
    with pytest.raises(ParameterError, match="validation"):
        tune(data.split("train"), data.split("train").subset([]), base=BASE, out_dir=tmp_path)
