"""Fixtures of the screening tests: a tiny untrained model and small HDF5 runs."""

from __future__ import annotations

import numpy as np
import pytest

from xtalscreen.io.frame import Frame


def make_frames(n, shape=(200, 180), *, seed=0, spots_every=2, beam_center=(90.0, 100.0),
                source="", pixel_size=172e-6, distance=0.2):
    """Poisson background; every ``spots_every``-th frame gets 30 bright spots."""
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[0:shape[0], 0:shape[1]]
    out = []
    for i in range(n):
        img = rng.poisson(4.0, shape).astype(np.float32)
        if spots_every and i % spots_every == 0:
            for cy, cx in rng.uniform(10, min(shape) - 10, size=(30, 2)):
                img += (400 * np.exp(-((yy - cy) ** 2 + (xx - cx) ** 2) / 2.0)).astype(np.float32)
        out.append(Frame(img, beam_center=beam_center, source=source, index=i,
                         pixel_size=pixel_size, distance=distance, wavelength=1.0))
    return out


@pytest.fixture(scope="session")
def frames_factory():
    """:func:`make_frames` (test modules cannot import conftest under importlib mode)."""
    return make_frames


@pytest.fixture(scope="session")
def tiny_model(tmp_path_factory):
    """An untrained ke2018 (64 x 64 input, bin 2) checkpoint: fast, deterministic outputs."""
    import torch

    from xtalscreen.models import create_model
    from xtalscreen.preprocess import PreprocessConfig
    from xtalscreen.train import save_checkpoint

    torch.manual_seed(0)
    m = create_model("ke2018", num_classes=3, img_size=64)
    path = tmp_path_factory.mktemp("model") / "tiny.pt"
    save_checkpoint(path, m, preprocess=PreprocessConfig(bin=2, crop=(64, 64)),
                    classes=("hit", "maybe", "miss"), target="ke")
    return path


@pytest.fixture(scope="session")
def run_h5(tmp_path_factory):
    """A 12-frame bitshuffle-LZ4 HDF5 run of 200 x 180 frames (half of them with spots)."""
    from xtalscreen.io import write_hdf5_run

    path = tmp_path_factory.mktemp("run") / "run.h5"
    write_hdf5_run(make_frames(12), path)
    return path
