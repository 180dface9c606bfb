"""Fixtures of the feature-baseline tests: a toy 5-class diffraction-like image generator."""

from __future__ import annotations

import numpy as np
import pytest

CLASSES = ("blank", "no-crystal", "weak", "good", "strong")
N_SPOTS = {"blank": 0, "no-crystal": 0, "weak": 4, "good": 30, "strong": 150}


def toy_image(cls: str, *, size: int = 96, rng=None) -> np.ndarray:
    rng = np.random.default_rng(rng)
    yy, xx = np.mgrid[0:size, 0:size] + 0.5
    r = np.hypot(xx - size / 2, yy - size / 2)
    if cls == "blank":
        lam = np.full((size, size), 0.2)
    else:
        lam = 3.0 + 20.0 * np.exp(-((r - 0.3 * size) ** 2) / (2 * (0.06 * size) ** 2))
    for _ in range(N_SPOTS[cls]):
        x, y = rng.uniform(3, size - 3, 2)
        j, i = int(y), int(x)
        lam[j - 1:j + 2, i - 1:i + 2] += rng.uniform(20, 80)
    return rng.poisson(lam).astype(np.float32)


def toy_set(n_per_class: int, *, size: int = 96, rng=0):
    rng = np.random.default_rng(rng)
    images, labels = [], []
    for k in range(n_per_class):
        for c in CLASSES:
            images.append(toy_image(c, size=size, rng=rng))
            labels.append(c)
    return images, labels


@pytest.fixture(scope="session")
def toy_image_fn():
    return toy_image


@pytest.fixture(scope="session")
def toy_set_fn():
    return toy_set
