"""Fixtures of the training tests: tiny synthetic datasets (see train_synthetic.py)."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest
import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from train_synthetic import make_sim_dataset, spot_frame  # noqa: E402



@pytest.fixture(scope="session")
def sim_dataset(tmp_path_factory) -> Path:
    return make_sim_dataset(tmp_path_factory.mktemp("sim"), n=80)


@pytest.fixture(autouse=True, scope="module")
def _one_torch_thread():
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


@pytest.fixture(scope="session")
def frame_maker():
    """``frame_maker(rng, n_spots)``: a SIZE x SIZE frame with that many bright spots."""
    return spot_frame


@pytest.fixture(scope="session")
def sim_factory():
    """``sim_factory(root, n=..., seed=..., maybe=...)``: write a simulate-layout dataset."""
    return make_sim_dataset
