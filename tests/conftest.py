"""Shared fixtures: the real frames in ../shared/data/real and small synthetic data."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
REAL_DIR = Path(os.environ.get("XTALSCREEN_REAL_DATA", ROOT.parent / "shared" / "data" / "real"))


@pytest.fixture(scope="session")
def real_dir() -> Path:
    """``../shared/data/real``; tests using it skip (with this reason) where it is absent."""
    if not REAL_DIR.is_dir():
        if os.environ.get("CI"):
            pytest.fail(f"CI must have the real frames at {REAL_DIR}")
        pytest.skip(f"real frames not found at {REAL_DIR} (they live in ../shared/data/real)")
    return REAL_DIR


@pytest.fixture
def panel_run():
    """``make(path, n=3, shape=(4, 40, 50), geometry=True)``: an HDF5 run of ``n`` four-panel
    frames at ``path``, with (``geometry=True``) the layout's CrystFEL file written beside it as
    ``geometry.geom``, as ``xtalscreen simulate`` writes one multi-panel preset. The
    geometry: 2 x 2 slabs of (40, 50) panels around the beam."""
    import numpy as np

    from xtalscreen.io import write_hdf5_run
    from xtalscreen.io.crystfel import write_geom
    from xtalscreen.io.frame import Frame
    from xtalscreen.io.geometry import DetectorGeometry, Panel

    def make(path, n=3, shape=(4, 40, 50), geometry=True):
        rng = np.random.default_rng(0)
        write_hdf5_run([Frame(rng.poisson(3.0, shape).astype(np.float32), index=i,
                              pixel_size=110e-6, distance=0.1, wavelength=1.3) for i in range(n)], path)
        if geometry:
            panels = [Panel(name=f"p{k}", min_fs=0, max_fs=49, min_ss=0, max_ss=39, slab=k,
                            corner_x=-52.0 + 52.0 * (k % 2), corner_y=-42.0 + 42.0 * (k // 2),
                            res=1 / 110e-6, clen=0.1) for k in range(4)]
            write_geom(DetectorGeometry(panels, name="four"), Path(path).parent / "geometry.geom")
        return Path(path)

    return make
