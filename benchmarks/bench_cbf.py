"""CBF readers and CrystFEL geometry on the real frames in ../shared/data/real/xray.

Run:  .venv/bin/python benchmarks/bench_cbf.py [--repeat 7]

For each real CBF file, the time of ``xtalscreen.io.cbf.read_cbf`` (decode, float32 Frame,
mask, metadata, geometry) is compared with the bare decoder in the same process:
``fabio.open(path).data`` for miniCBF, pycbf's ``read_buffer`` + ``get_integerarray_as_string``
of every array for the multi-array CSPAD files. The CSPAD geometry is built once per detector
(cold) and then reused from a cache keyed on the header (warm). CrystFEL rows time
``read_geom``/``write_geom`` of the 64-panel CSPAD geometry and one assembly of a CSPAD frame.
Median of ``--repeat`` runs.
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
REAL = Path(os.environ.get("XTALSCREEN_REAL_DATA", ROOT.parent / "shared" / "data" / "real")) / "xray"


def _median_time(fn, repeat: int) -> float:
    times = []
    for _ in range(repeat):
        t = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t)
    return statistics.median(times)


def _fabio_baseline(path: Path):
    import fabio

    return lambda: fabio.open(str(path)).data


def _pycbf_baseline(path: Path):
    from xtalscreen.io.cbf import _pycbf

    pycbf = _pycbf()
    raw = path.read_bytes()

    def run():
        h = pycbf.cbf_handle_struct()
        h.read_buffer(raw, pycbf.MSG_DIGEST | pycbf.CBF_PARSE_WIDE)
        h.find_category(b"array_data")
        for i in range(h.count_rows()):
            h.find_column(b"array_id")
            h.select_row(i)
            h.find_column(b"data")
            h.get_integerarray_as_string()
    return run


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--repeat", type=int, default=7)
    args = ap.parse_args(argv)
    if not REAL.is_dir():
        print(f"real frames not found at {REAL}", file=sys.stderr)
        return 1
    from xtalscreen.io import cbf
    from xtalscreen.io.crystfel import read_geom, write_geom

    files = [("Pilatus 2M miniCBF (1679x1475 int32)", "l-cyst_01_00001.cbf", "fabio"),
             ("Pilatus3 6M miniCBF .gz (2527x2463 int32)", "DLS_I03_smargon_0001.cbf.gz", "fabio"),
             ("CSPAD full CBF (4 arrays 8x185x388, 64 ASICs)", "idx-20130301060858401.cbf", "pycbf")]
    rows = []
    for label, name, kind in files:
        path = REAL / name
        base = _fabio_baseline(path) if kind == "fabio" else _pycbf_baseline(path)
        base()
        cbf.read_cbf(path)  # imports, geometry cache
        tb = _median_time(base, args.repeat)
        tr = _median_time(lambda: cbf.read_cbf(path), args.repeat)
        mpx = cbf.read_cbf(path).data.size / 1e6
        rows.append((label, f"read_cbf ({'fabio' if kind == 'fabio' else 'pycbf'} decode + Frame)",
                     tr * 1e3, mpx / tr, tr / tb))
        rows.append((label, f"baseline: bare {kind} decode", tb * 1e3, mpx / tb, 1.0))
    # CSPAD geometry cold vs warm
    path = REAL / "idx-20130301060858401.cbf"

    def cold():
        cbf._GEOM_CACHE.clear()
        return cbf.read_cbf(path)
    tc = _median_time(cold, args.repeat)
    tw = _median_time(lambda: cbf.read_cbf(path), args.repeat)
    rows.append(("CSPAD full CBF", "read_cbf, geometry cache cleared (cold)", tc * 1e3,
                 2.29696 / tc, tc / tw))
    rows.append(("CSPAD full CBF", "read_cbf, geometry cached (warm, as in a run)", tw * 1e3,
                 2.29696 / tw, 1.0))
    f = cbf.read_cbf(path)
    g = f.geometry
    text = write_geom(g)
    tw_ = _median_time(lambda: write_geom(g), args.repeat)
    trd = _median_time(lambda: read_geom(text), args.repeat)
    g2 = read_geom(text)
    tcold = _median_time(lambda: read_geom(text).assemble(f.data, f.mask), args.repeat) - trd
    g2.assemble(f.data, f.mask)
    tasm = _median_time(lambda: g2.assemble(f.data, f.mask), args.repeat)
    rows.append(("CrystFEL .geom, 64 panels", "write_geom", tw_ * 1e3, None, None))
    rows.append(("CrystFEL .geom, 64 panels", "read_geom", trd * 1e3, None, None))
    rows.append(("CSPAD assemble (1724x1727)", "first call (builds the index)", tcold * 1e3,
                 2.29696 / tcold, tcold / tasm))
    rows.append(("CSPAD assemble (1724x1727)", "cached index", tasm * 1e3, 2.29696 / tasm, 1.0))

    print("| data | operation | ms | Mpx/s | time vs row below/baseline |")
    print("|---|---|---:|---:|---:|")
    for label, op, ms, mpxs, ratio in rows:
        print(f"| {label} | {op} | {ms:.1f} | {'-' if mpxs is None else f'{mpxs:.0f}'} | "
              f"{'-' if ratio is None else f'{ratio:.2f}x'} |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
