"""keep_freed_memory: glibc keeps freed frame buffers, so re-reading frames stops page-faulting."""

from __future__ import annotations

import subprocess
import sys

import h5py
import hdf5plugin
import numpy as np
import pytest

from xtalscreen.io.memory import keep_freed_memory

_CHILD = """
import resource, sys
import h5py, hdf5plugin
if sys.argv[2] == "1":
    from xtalscreen.io.memory import keep_freed_memory
    assert keep_freed_memory() and keep_freed_memory()  # idempotent
d = h5py.File(sys.argv[1], "r")["data"]
d[0]
before = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
for i in range(30):
    d[i % 4]  # read and drop, as a streaming screen does
print(resource.getrusage(resource.RUSAGE_SELF).ru_minflt - before)
"""


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="glibc mallopt")
def test_freed_frame_buffers_are_reused_without_page_faults(tmp_path):
    path = tmp_path / "run.h5"
    rng = np.random.default_rng(0)
    with h5py.File(path, "w") as f:  # four CSPAD-sized float32 frames, bitshuffle-LZ4, a chunk each
        f.create_dataset("data", data=rng.poisson(2.0, (4, 32, 185, 388)).astype(np.float32),
                         chunks=(1, 32, 185, 388), **hdf5plugin.Bitshuffle(cname="lz4"))
    faults = {}
    for mode in ("0", "1"):
        out = subprocess.run([sys.executable, "-c", _CHILD, str(path), mode], capture_output=True,
                             text=True, check=True)
        faults[mode] = int(out.stdout.strip())
    # glibc defaults: the 9 MB buffers go back to the kernel and fault in again on every read
    assert faults["0"] > 30 * 500, faults
    assert faults["1"] < faults["0"] / 20, faults


def test_keep_freed_memory_returns_a_bool():
    assert keep_freed_memory() in (True, False)
