"""``xtalscreen geom``: show a detector geometry (CrystFEL .geom or a CBF's imgCIF axes) and
export it as a CrystFEL .geom file."""

from __future__ import annotations

import json
import math
from collections import Counter
from pathlib import Path

from xtalscreen.cli import add_command
from xtalscreen.errors import InputError


def register(sub) -> None:
    p = add_command(
        sub, "geom", help="show a detector geometry and export it as a CrystFEL .geom",
        description="Read a detector geometry from a CrystFEL .geom file or from a CBF file "
                    "(imgCIF axes of multi-panel full CBF such as the LCLS CSPAD, or the header "
                    "of a Pilatus miniCBF), print a summary, and optionally write it as a "
                    "CrystFEL .geom file. Multi-panel CBF frames are read as (panels, H, W) "
                    "with one slab per detector element; the exported file says so with "
                    "dim0 = <slab>, dim1 = ss, dim2 = fs.",
        examples="  xtalscreen geom idx-20130301060858401.cbf --out cspad.geom\n"
                 "  xtalscreen geom cspad.geom\n"
                 "  xtalscreen geom jungfrau.geom --clen 0.12 --json\n")
    p.add_argument("input", help="a .geom file or a .cbf/.cbf.gz/.cbf.bz2 file")
    p.add_argument("--out", metavar="FILE", help="write the geometry as a CrystFEL .geom file")
    p.add_argument("--clen", type=float, metavar="M",
                   help="camera length (m) for panels whose clen is an HDF5 path")
    p.add_argument("--json", action="store_true", help="print the summary as JSON")
    p.set_defaults(func=run)


def summary(geometry) -> dict:
    """Plain-type summary of a :class:`~xtalscreen.io.geometry.DetectorGeometry`."""
    panels = geometry.panels
    clens = [p.clen for p in panels if not math.isnan(p.clen)]
    sizes = Counter((h, w) for _, h, w in geometry.modules())
    out = {"name": geometry.name, "panels": len(panels),
           # panels joined into the sensors they tile (the layout operating points are found by)
           "sensors": ", ".join(f"{n} x {h}x{w}" for (h, w), n in sorted(sizes.items())),
           "data_shape": list(geometry.data_shape()),
           "pixel_size_um": round(1e6 / panels[0].res, 4),
           "wavelength_A": geometry.wavelength,
           "clen_m": [min(clens), max(clens)] if clens else None,
           "clen_path": next((p.meta.get("clen_path") for p in panels if p.meta.get("clen_path")),
                             None),
           "bad_regions": len((geometry.meta or {}).get("bad_regions") or []),
           "rigid_groups": len((geometry.meta or {}).get("rigid_groups") or {})}
    if not out["clen_path"] or clens:
        out["assembled_shape"] = list(geometry.assembled_shape())
        out["beam_center_px"] = [round(v, 3) for v in geometry.beam_center_px()]
    return out


def run(args) -> int:
    from xtalscreen.io.cbf import geometry_from_cbf, is_cbf
    from xtalscreen.io.crystfel import read_geom, set_clen, write_geom

    src = Path(args.input)
    if is_cbf(src):
        g = geometry_from_cbf(src)
        if g is None:
            raise InputError("the CBF header gives no pixel size/distance, so there is no "
                             "geometry to show", path=str(src))
    else:
        g = read_geom(src, clen=args.clen)
    if args.clen is not None and any(math.isnan(p.clen) for p in g.panels):
        g = set_clen(g, args.clen)
    info = summary(g)
    if args.json:
        print(json.dumps(info, indent=1))
    else:
        for k, v in info.items():
            print(f"{k:16s} {v}")
    if args.out:
        write_geom(g, args.out, comment=f"exported from {src}")
        if not args.json:
            print(f"wrote {args.out}")
    return 0
