"""Tiny synthetic datasets in the layouts xtalscreen reads, made by the tests themselves.

``make_sim_dataset`` writes a folder in the ``xtalscreen simulate`` layout (labels.csv and an
HDF5 shard with frames at /entry/data/data): "hit" frames carry bright Gaussian spots on a
Poisson background, "miss" frames background only, so a small CNN separates them quickly.
(A plainly named module, not conftest, so other test folders can import it.)
"""

from __future__ import annotations

import csv
from pathlib import Path

import numpy as np

SIZE = 96


def spot_frame(rng, n_spots: int, size: int = SIZE) -> np.ndarray:
    img = rng.poisson(2.0, (size, size)).astype(np.float32)
    yy, xx = np.mgrid[0:size, 0:size]
    for _ in range(n_spots):
        cy, cx = rng.uniform(8, size - 8, 2)
        img += 60.0 * np.exp(-((yy - cy) ** 2 + (xx - cx) ** 2) / (2 * 1.2 ** 2))
    return np.round(img).astype(np.float32)


def make_sim_dataset(root: Path, *, n: int = 60, seed: int = 0, maybe: bool = False, size: int = SIZE,
                     preset: str = "tiny", shard: str = "shard-00000.h5", append: bool = False) -> Path:
    """A simulate-layout dataset of ``n`` frames (hit / miss, optionally maybe) of ``size`` px
    from detector ``preset`` in ``shard``; ``append`` adds them to the folder's labels.csv (a
    folder holding several detectors)."""
    import h5py

    rng = np.random.default_rng(seed)
    root.mkdir(parents=True, exist_ok=True)
    kinds = ["hit", "miss", "maybe"] if maybe else ["hit", "miss"]
    frames, rows = [], []
    for i in range(n):
        ke = kinds[i % len(kinds)]
        ns = {"hit": 25, "maybe": 6, "miss": 0}[ke]
        frames.append(spot_frame(rng, ns, size))
        dn = {"hit": "strong", "maybe": "weak", "miss": "no-crystal"}[ke]
        split = ("train", "train", "train", "val", "test")[i % 5] if i % 7 else "test"
        rows.append(dict(file=shard, frame=i, index=i, split=split, preset=preset,
                         diffranet_class=dn, ke_class=ke, n_spots=ns))
    with h5py.File(root / shard, "w") as f:
        f.create_dataset("/entry/data/data", data=np.stack(frames).astype(np.int32),
                         chunks=(1, size, size))
        f.create_dataset("/entry/instrument/detector/beam_center_x", data=np.full(n, size / 2))
        f.create_dataset("/entry/instrument/detector/beam_center_y", data=np.full(n, size / 2))
    add = append and (root / "labels.csv").is_file()
    with open(root / "labels.csv", "a" if add else "w", newline="") as fh:
        w = csv.DictWriter(fh, fieldnames=list(rows[0]))
        if not add:
            w.writeheader()
        w.writerows(rows)
    return root
