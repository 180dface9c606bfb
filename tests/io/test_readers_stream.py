"""A 2000-frame HDF5 run streams frame by frame: memory stays far below the run's size."""

from __future__ import annotations

import tracemalloc

import h5py
import hdf5plugin
import numpy as np
import pytest

from xtalscreen.io import open_frames, read_frame

N, H, W = 2000, 256, 256


def _rss_bytes() -> int:
    with open("/proc/self/statm") as fh:
        return int(fh.read().split()[1]) * 4096


@pytest.fixture(scope="module")
def big_run(tmp_path_factory):
    path = tmp_path_factory.mktemp("stream") / "run_2000.h5"
    rng = np.random.default_rng(7)
    base = rng.poisson(3.0, (H, W)).astype(np.uint16)
    with h5py.File(path, "w") as f:
        ds = f.create_dataset("/entry/data/data", shape=(N, H, W), dtype=np.uint16,
                              chunks=(1, H, W), **hdf5plugin.Bitshuffle(cname="lz4"))
        for i in range(N):
            frame = np.roll(base, i, axis=1)
            frame[0, 0] = i  # a per-frame tag to check order
            ds[i] = frame
    return path


@pytest.mark.slow
def test_2000_frame_run_streams_in_small_memory(big_run):
    uncompressed = N * H * W * 2  # 262 MB
    read_frame(str(big_run), 0)  # one-time costs (imports, numba kernel) outside the measure
    rss0 = _rss_bytes()
    tracemalloc.start()
    try:
        count = 0
        total = 0.0
        for frame in open_frames(str(big_run)):
            assert frame.index == count and frame.data[0, 0] == count % 65536
            total += float(frame.data[1, 1])
            count += 1
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    rss_growth = _rss_bytes() - rss0
    assert count == N
    assert peak < uncompressed / 20, f"python peak {peak / 1e6:.1f} MB"
    assert rss_growth < uncompressed / 4, f"RSS grew {rss_growth / 1e6:.1f} MB"
