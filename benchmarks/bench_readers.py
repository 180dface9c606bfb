"""Reader throughput: frames/s and MB/s (uncompressed-equivalent) of ``open_frames``.

Formats: HDF5 uncompressed, HDF5 bitshuffle-LZ4 (Eiger/Jungfrau style, one frame per chunk),
miniCBF (byte-offset, written with fabio), on a Pilatus-2M-like frame (1679 x 1475 = 2.5 Mpx,
int32) and an Eiger-4M-like frame (2167 x 2070 = 4.5 Mpx, uint16). Baseline, measured in the
same process on the same bytes: ``np.fromfile`` of the raw frames (a plain read from the page
cache) -- the ratio says how close to a bare read each path is. ``open_frames`` timings include
building each Frame (float32 conversion and the automatic data mask); ``auto_mask=False``
shows the mask's share.

Run: ``.venv/bin/python benchmarks/bench_readers.py [--frames N]`` (about 30-60 s).
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time

import numpy as np

sys.path.insert(0, os.path.join(os.path.dirname(__file__), "..", "src"))

import h5py  # noqa: E402
import hdf5plugin  # noqa: E402

from xtalscreen.io import open_frames  # noqa: E402

SHAPES = {"2.5 Mpx (Pilatus 2M, int32)": ((1679, 1475), np.int32),
          "4.5 Mpx (Eiger 4M, uint16)": ((2167, 2070), np.uint16)}


def _frames(shape, dtype, n, rng):
    base = rng.poisson(0.8, shape).astype(dtype)
    base[:, shape[1] // 3: shape[1] // 3 + 7] = -1 if np.dtype(dtype).kind == "i" else np.iinfo(dtype).max
    for i in range(n):
        yield np.roll(base, 13 * i, axis=0)


def _time(fn, repeat=2):
    best = np.inf
    for _ in range(repeat):
        t = time.perf_counter()
        count = fn()
        best = min(best, time.perf_counter() - t)
    return best, count


def _stream(path, **kw):
    def run():
        n = 0
        for f in open_frames(path, **kw):
            n += 1
        return n
    return run


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--frames", type=int, default=12, help="frames per file")
    args = ap.parse_args(argv)
    rng = np.random.default_rng(0)
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        for label, (shape, dtype) in SHAPES.items():
            n = args.frames
            frame_mb = np.prod(shape) * np.dtype(dtype).itemsize / 1e6
            raw_path = os.path.join(tmp, "raw.bin")
            with open(raw_path, "wb") as fh:
                for fr in _frames(shape, dtype, n, rng):
                    fh.write(fr.tobytes())
            for name, filt in (("hdf5 uncompressed", {}),
                               ("hdf5 bitshuffle-lz4", dict(hdf5plugin.Bitshuffle(cname="lz4")))):
                p = os.path.join(tmp, name.replace(" ", "_") + ".h5")
                with h5py.File(p, "w") as f:
                    ds = f.create_dataset("/entry/data/data", shape=(n,) + shape, dtype=dtype,
                                          chunks=(1,) + shape, **filt)
                    for i, fr in enumerate(_frames(shape, dtype, n, rng)):
                        ds[i] = fr
            cbf_dir = os.path.join(tmp, "cbf")
            os.makedirs(cbf_dir, exist_ok=True)
            import fabio.cbfimage

            for i, fr in enumerate(_frames(shape, dtype, n, rng)):
                fabio.cbfimage.CbfImage(data=fr.astype(np.int32)).write(
                    os.path.join(cbf_dir, f"img_{i:05d}.cbf"))

            def baseline():
                k = 0
                with open(raw_path, "rb") as fh:
                    for _ in range(n):
                        np.fromfile(fh, dtype=dtype, count=int(np.prod(shape))).reshape(shape)
                        k += 1
                return k

            t_base, _ = _time(baseline)
            rows.append((label, "baseline np.fromfile (raw bytes)", n / t_base, n * frame_mb / t_base, 1.0))
            for name in ("hdf5 uncompressed", "hdf5 bitshuffle-lz4"):
                p = os.path.join(tmp, name.replace(" ", "_") + ".h5")
                size = os.path.getsize(p) / 1e6
                for am in (True, False):
                    t, k = _time(_stream(p, auto_mask=am))
                    assert k == n
                    rows.append((label, f"{name} ({size / n:.1f} MB/frame on disk)"
                                 + ("" if am else ", auto_mask=False"),
                                 n / t, n * frame_mb / t, t / t_base))
            t, k = _time(_stream(cbf_dir), repeat=1)
            assert k == n
            rows.append((label, "miniCBF byte-offset (fabio via xtalscreen.io.cbf)", n / t,
                         n * frame_mb / t, t / t_base))
            os.remove(raw_path)
            for f in os.listdir(cbf_dir):
                os.remove(os.path.join(cbf_dir, f))
    print(f"open_frames throughput, {args.frames} frames per file, best of 2 "
          "(MB/s of uncompressed pixels in the file's dtype)\n")
    print("| frame | reader | frames/s | MB/s | time vs baseline |")
    print("|---|---|---:|---:|---:|")
    for label, name, fps, mbs, ratio in rows:
        print(f"| {label} | {name} | {fps:.1f} | {mbs:.0f} | {ratio:.1f}x |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
