"""Fixtures of the spot-finder tests: synthetic frames (Gaussian spots on Poisson background)."""

from __future__ import annotations

import numpy as np
import pytest

def make_image(shape=(256, 256), *, n_spots=20, background=2.0, photons=400.0, sigma=0.8,
               gain=1.0, margin=8, rng=0, min_sep=10.0):
    """Return (image float32, true positions (N, 2) as (fs, ss) continuous pixel coordinates)."""
    rng = np.random.default_rng(rng)
    h, w = shape
    pos = []
    tries = 0
    while len(pos) < n_spots and tries < 10000:
        tries += 1
        p = rng.uniform([margin, margin], [w - margin, h - margin])
        if all(np.hypot(*(p - q)) >= min_sep for q in pos):
            pos.append(p)
    pos = np.array(pos).reshape(-1, 2)
    lam = np.full(shape, background, dtype=np.float64)
    yy, xx = np.mgrid[0:h, 0:w]
    for fs, ss in pos:
        j0, j1 = max(int(ss) - 5, 0), min(int(ss) + 6, h)
        i0, i1 = max(int(fs) - 5, 0), min(int(fs) + 6, w)
        dx = xx[j0:j1, i0:i1] + 0.5 - fs
        dy = yy[j0:j1, i0:i1] + 0.5 - ss
        lam[j0:j1, i0:i1] += photons * np.exp(-(dx ** 2 + dy ** 2) / (2 * sigma ** 2)) / (2 * np.pi * sigma ** 2)
    img = rng.poisson(lam).astype(np.float32) * np.float32(gain)
    return img, pos


def match(found_xy, true_xy, tol=2.0):
    """(n_true_matched, n_found_matched) with greedy nearest matching within tol pixels."""
    found_xy = np.asarray(found_xy, float).reshape(-1, 2)
    true_xy = np.asarray(true_xy, float).reshape(-1, 2)
    if len(found_xy) == 0 or len(true_xy) == 0:
        return 0, 0
    d = np.hypot(found_xy[:, None, 0] - true_xy[None, :, 0], found_xy[:, None, 1] - true_xy[None, :, 1])
    tm = int((d.min(axis=0) <= tol).sum())
    fm = int((d.min(axis=1) <= tol).sum())
    return tm, fm


@pytest.fixture
def synth():
    return make_image


@pytest.fixture
def matcher():
    return match
