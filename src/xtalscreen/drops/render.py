"""Procedural crystallisation-drop images and imager-style plate folders.

:func:`render_drop` draws one bright-field image of a drop in a well, looking from above: a round
(or rounded-square) well with a dark wall, a drop with an irregular outline and a dark meniscus,
and inside it the content of one MARCO class:

- ``clear``: nothing but the odd speck of dust;
- ``precipitate``: granular, clumped, brownish texture of varying density and grain size;
- ``crystal``: faceted polygons with sharp dark edges (hexagons, rhombs, bipyramids, plates,
  needles; one big crystal to showers of small ones), sometimes over light precipitate;
- ``other``: a wrinkled protein skin, phase separation (oily droplets) or fibres/spherulites.

Lighting, drop size and position, focus blur and noise vary from image to image, so the classes
are distinct but not trivial. No real drop is rendered; this feeds the demonstration model and
tests, not real use.

:func:`render_plates` writes plates of such images as the folder tree that
:func:`xtalscreen.drops.importer.import_images` reads (``<barcode>/<time>/<row><col>_<drop>.jpg``),
plus ``plates.csv`` (the CSV import format) and ``truth.csv`` (the class of every image).
Everything is a function of the seed.
"""

from __future__ import annotations

import csv
import datetime as _dt
import json
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np

from xtalscreen.drops.schemes import MARCO_CLASSES
from xtalscreen.errors import InputError, ParameterError
from xtalscreen.progress import track

#: Scorer name of the ground-truth rows in truth.csv (importable with ``drops import --scores``).
TRUTH_SCORER = "render-truth"
#: Plate layouts: rows x columns.
PLATE_TYPES = {"96-well": (8, 12), "24-well": (4, 6), "48-well": (6, 8)}
_MIN_SIZE = 64


# ----------------------------------------------------------------------------- helpers
def _smooth_noise(rng, shape, sigma: float) -> np.ndarray:
    """White noise blurred with a Gaussian of ``sigma`` px, rescaled to zero mean, unit std."""
    f = int(min(8, max(1, sigma // 3)))  # broad fields: draw at low resolution, then upsample
    n = rng.standard_normal((-(-shape[0] // f), -(-shape[1] // f))).astype(np.float32)
    if sigma / f > 0.3:
        n = cv2.GaussianBlur(n, (0, 0), sigma / f)
    if f > 1:
        n = cv2.resize(n, (n.shape[1] * f, n.shape[0] * f), interpolation=cv2.INTER_LINEAR)
        n = np.ascontiguousarray(n[: shape[0], : shape[1]])
    s = float(n.std())
    return (n - n.mean()) / (s if s > 0 else 1.0)


def _smoothstep(x: np.ndarray) -> np.ndarray:
    x = np.clip(x, 0.0, 1.0)
    return x * x * (3 - 2 * x)


@dataclass
class _Scene:
    size: int
    scale: float          # pixels per pixel-at-512
    yy: np.ndarray
    xx: np.ndarray
    drop_c: tuple[float, float]
    drop_r: np.ndarray    # drop radius as a function of angle, per pixel (px)
    drop_rmean: float
    inside: np.ndarray    # soft drop mask in [0, 1]


def _background(rng, size: int, scale: float):
    """The well seen from above: bright centre, dark wall, dark plate outside; light gradients."""
    yy, xx = np.mgrid[0:size, 0:size].astype(np.float32)
    cy, cx = (size / 2 + rng.uniform(-0.05, 0.05, 2) * size)
    rw = rng.uniform(0.44, 0.56) * size
    p = 2.0 if rng.random() < 0.65 else rng.uniform(5.0, 9.0)  # round or rounded-square well
    d = (np.abs(xx - cx) ** p + np.abs(yy - cy) ** p) ** (1.0 / p) / rw
    level = rng.uniform(0.62, 0.92)
    gx, gy = rng.uniform(-0.12, 0.12, 2)
    light = level * (1 + gx * (xx / size - 0.5) + gy * (yy / size - 0.5))
    light *= 1 - rng.uniform(0.05, 0.25) * d ** 2              # vignetting
    wall_w = rng.uniform(0.04, 0.12)
    wall = _smoothstep((d - (1 - wall_w)) / wall_w)            # 0 inside, 1 in the wall
    outside = rng.uniform(0.05, 0.3)
    img = light * (1 - wall) + outside * wall * (1 + 0.12 * _smooth_noise(rng, (size, size), 12 * scale))
    rim = np.exp(-(((d - (1 - wall_w)) * rw) / (1.2 * scale)) ** 2)  # thin bright moulding line
    img += rng.uniform(0.0, 0.12) * rim
    return img.astype(np.float32), yy, xx, (cy, cx), rw


def _drop(rng, img, yy, xx, well_c, well_r, scale) -> _Scene:
    size = img.shape[0]
    rd = rng.uniform(0.2, 0.38) * size
    rd = min(rd, 0.8 * well_r)
    off = rng.uniform(0, 0.45) * (0.85 * well_r - rd)
    ang = rng.uniform(0, 2 * np.pi)
    cy, cx = well_c[0] + off * np.sin(ang), well_c[1] + off * np.cos(ang)
    # Outline radius as a function of angle: a few low harmonics, looked up from a table.
    a = np.linspace(-np.pi, np.pi, 1025)
    table = np.ones_like(a)
    for k in range(2, 6):
        table += rng.normal(0, 0.05 / k) * np.cos(k * a + rng.uniform(0, 2 * np.pi))
    table = (table * rd).astype(np.float32)
    theta = cv2.phase(xx - cx, yy - cy)  # [0, 2 pi), float32
    r_theta = table[np.minimum((theta * (1024 / (2 * np.pi))).astype(np.int32), 1024)]
    rr = cv2.magnitude(xx - cx, yy - cy)
    edge_w = rng.uniform(1.2, 3.5) * scale
    inside = _smoothstep((r_theta - rr) / edge_w + 0.5)
    # Drop body: slightly darker, darker still towards the edge (lens effect).
    tone = rng.uniform(0.8, 0.97)
    lens = 1 - rng.uniform(0.03, 0.15) * np.clip(rr / r_theta, 0, 1) ** 4
    img *= 1 - inside * (1 - tone * lens)
    # Meniscus: a dark band on the outline, with a faint bright line just inside it.
    band = np.exp(-((rr - r_theta) / (rng.uniform(1.5, 5.0) * scale)) ** 2)
    img *= 1 - rng.uniform(0.25, 0.6) * band
    inner = np.exp(-((rr - r_theta + 5 * scale) / (1.5 * scale)) ** 2)
    img += rng.uniform(0.0, 0.08) * inner
    return _Scene(size, scale, yy, xx, (cy, cx), r_theta, rd, inside)


def _dust(rng, img, scene: _Scene, n: int) -> None:
    s = scene.scale
    for _ in range(n):
        y, x = rng.uniform(0.1, 0.9, 2) * scene.size
        r = rng.uniform(0.8, 2.5) * s
        cv2.circle(img, (int(x * 16), int(y * 16)), max(1, int(r * 16)), float(rng.uniform(0.1, 0.4)),
                   -1, cv2.LINE_AA, 4)


def _point_in_drop(rng, scene: _Scene, frac: float = 0.85) -> tuple[float, float]:
    r = scene.drop_rmean * frac * np.sqrt(rng.uniform(0, 1))
    a = rng.uniform(0, 2 * np.pi)
    return scene.drop_c[0] + r * np.sin(a), scene.drop_c[1] + r * np.cos(a)


# ----------------------------------------------------------------------------- class content
def _precipitate(rng, img, brown, scene: _Scene, strength: float = 1.0) -> None:
    """Granular texture: thresholded fine noise, clumped by a low-frequency field."""
    shape = img.shape
    grain = rng.uniform(0.6, 2.2) * scene.scale
    fine = _smooth_noise(rng, shape, grain)
    clump = _smooth_noise(rng, shape, rng.uniform(10, 40) * scene.scale)
    density = rng.uniform(0.25, 0.85)
    thresh = np.quantile(fine, 1 - density)
    granules = _smoothstep((fine - thresh) / 1.2) * _smoothstep(0.5 + 0.6 * clump + rng.uniform(0, 0.6))
    amount = strength * rng.uniform(0.15, 0.45) * granules * scene.inside
    haze = strength * rng.uniform(0.0, 0.25) * scene.inside * _smoothstep(0.5 + 0.5 * clump)
    img *= 1 - amount - haze
    brown += amount + haze


def _polygon(rng, kind: str, length: float) -> np.ndarray:
    """Vertices (x, y) of a crystal outline centred on the origin, before rotation."""
    if kind == "hexagon":
        a = np.arange(6) * np.pi / 3
        pts = np.c_[np.cos(a), np.sin(a) * rng.uniform(0.6, 1.0)] * length / 2
    elif kind == "rhomb":
        w = rng.uniform(0.35, 0.8)
        pts = np.array([[1, 0], [0, w], [-1, 0], [0, -w]], float) * length / 2
    elif kind == "bipyramid":
        w = rng.uniform(0.25, 0.45)
        pts = np.array([[1, 0], [0.3, w], [-0.3, w], [-1, 0], [-0.3, -w], [0.3, -w]], float) * length / 2
    elif kind == "plate":
        w = rng.uniform(0.4, 1.0)
        pts = np.array([[1, w], [-1, w], [-1, -w], [1, -w]], float) * length / 2
    else:  # needle
        w = rng.uniform(0.04, 0.1)
        pts = np.array([[1, w], [-1, w], [-1, -w], [1, -w]], float) * length / 2
    return pts


def _crystals(rng, img, scene: _Scene) -> None:
    s = scene.scale
    if rng.random() < 0.35:
        _precipitate(rng, img, np.zeros_like(img), scene, strength=rng.uniform(0.2, 0.5))
    n = int(rng.choice([1, 2, 3, rng.integers(4, 12), rng.integers(10, 40)]))
    kinds = ["hexagon", "rhomb", "bipyramid", "plate", "needle"]
    favourite = rng.choice(kinds)  # crystals of one drop tend to share a habit
    max_len = scene.drop_rmean * (0.55 if n <= 3 else 0.3 if n < 12 else 0.15)
    sub = 4  # sub-pixel bits for cv2 drawing
    for _ in range(n):
        kind = favourite if rng.random() < 0.7 else rng.choice(kinds)
        length = max(5 * s, rng.uniform(0.35, 1.0) * max_len)
        pts = _polygon(rng, kind, length)
        a = rng.uniform(0, np.pi)
        rot = np.array([[np.cos(a), -np.sin(a)], [np.sin(a), np.cos(a)]])
        cy, cx = _point_in_drop(rng, scene)
        pts = pts @ rot.T + [cx, cy]
        ipts = np.round(pts * (1 << sub)).astype(np.int32)
        # Facets: triangles from an off-centre apex, each its own brightness.
        apex = pts.mean(axis=0) + rng.uniform(-0.15, 0.15, 2) * length
        bright = rng.random() < 0.5
        for i in range(len(pts)):
            tri = np.array([apex, pts[i], pts[(i + 1) % len(pts)]])
            shade = rng.uniform(0.05, 0.3) * (1 if bright else -1) + rng.uniform(-0.08, 0.08)
            local = float(img[int(np.clip(cy, 0, scene.size - 1)), int(np.clip(cx, 0, scene.size - 1))])
            val = float(np.clip(local * (1 + shade), 0.02, 1.0))
            cv2.fillPoly(img, [np.round(tri * (1 << sub)).astype(np.int32)], val, cv2.LINE_AA, sub)
        edge = float(rng.uniform(0.05, 0.3))
        thick = max(1, int(round(rng.uniform(0.8, 2.0) * s)))
        cv2.polylines(img, [ipts], True, edge, thick, cv2.LINE_AA, sub)
        if kind != "needle" and rng.random() < 0.7:  # facet ridges
            for p in pts[:: max(1, len(pts) // 3)]:
                cv2.line(img, tuple(np.round(apex * (1 << sub)).astype(int)),
                         tuple(np.round(p * (1 << sub)).astype(int)), edge * 1.5, 1, cv2.LINE_AA, sub)


def _skin(rng, img, scene: _Scene) -> None:
    """Wrinkled protein skin: creases along the ridges of a warped low-frequency field."""
    shape = img.shape
    f = _smooth_noise(rng, shape, rng.uniform(6, 16) * scene.scale)
    f2 = _smooth_noise(rng, shape, rng.uniform(20, 50) * scene.scale)
    phase = (f * rng.uniform(4, 9) + f2 * 3)
    creases = np.exp(-(np.sin(phase) / rng.uniform(0.12, 0.3)) ** 2)
    cover = scene.inside * _smoothstep(0.6 + 0.8 * f2)
    img *= 1 - rng.uniform(0.15, 0.4) * creases * cover - rng.uniform(0.02, 0.1) * cover


def _phase_separation(rng, img, scene: _Scene) -> None:
    """Oily droplets: round, dark-rimmed, bright-centred circles of many sizes."""
    s = scene.scale
    n = int(rng.integers(25, 220))
    rmax = rng.uniform(4, 18) * s
    for _ in range(n):
        cy, cx = _point_in_drop(rng, scene, 0.9)
        r = max(1.5 * s, rmax * rng.uniform(0.2, 1.0) ** 2)
        c = (int(cx * 16), int(cy * 16))
        cv2.circle(img, c, int(r * 16), float(rng.uniform(0.15, 0.4)), max(1, int(s)), cv2.LINE_AA, 4)
        if r > 3 * s:
            cv2.circle(img, c, int(0.4 * r * 16), float(rng.uniform(0.8, 1.0)), -1, cv2.LINE_AA, 4)


def _fibres(rng, img, scene: _Scene) -> None:
    """Fibres (long thin curves) or spherulites (radial bursts of short needles)."""
    s = scene.scale
    if rng.random() < 0.5:
        for _ in range(int(rng.integers(5, 30))):
            y, x = _point_in_drop(rng, scene)
            a = rng.uniform(0, 2 * np.pi)
            pts = []
            for _ in range(int(rng.integers(10, 40))):
                pts.append((x, y))
                a += rng.normal(0, 0.15)
                x, y = x + 3 * s * np.cos(a), y + 3 * s * np.sin(a)
            cv2.polylines(img, [np.round(np.array(pts) * 16).astype(np.int32)], False,
                          float(rng.uniform(0.2, 0.5)), 1, cv2.LINE_AA, 4)
    else:
        for _ in range(int(rng.integers(2, 12))):
            cy, cx = _point_in_drop(rng, scene)
            rad = rng.uniform(6, 30) * s
            for a in rng.uniform(0, 2 * np.pi, int(rng.integers(20, 60))):
                r = rad * rng.uniform(0.6, 1.0)
                p1 = (int(cx * 16), int(cy * 16))
                p2 = (int((cx + r * np.cos(a)) * 16), int((cy + r * np.sin(a)) * 16))
                cv2.line(img, p1, p2, float(rng.uniform(0.2, 0.5)), 1, cv2.LINE_AA, 4)


def _other(rng, img, scene: _Scene) -> None:
    pick = rng.choice(["skin", "phase", "fibres"])
    {"skin": _skin, "phase": _phase_separation, "fibres": _fibres}[pick](rng, img, scene)


# ----------------------------------------------------------------------------- public
def render_drop(cls: str, *, size: int = 512, rng=None, colour: bool = False) -> np.ndarray:
    """Render one drop image of MARCO class ``cls``.

    Parameters
    ----------
    cls : {"crystal", "precipitate", "clear", "other"}
        What the drop contains.
    size : int
        Width and height in pixels (>= 64); features scale with it.
    rng : int, numpy.random.Generator or None
        Randomness; the same seed gives the same image.
    colour : bool
        RGB with a warm light tint and brownish precipitate instead of grey.

    Returns
    -------
    ndarray of uint8, shape (size, size) or (size, size, 3)

    Examples
    --------
    >>> img = render_drop("crystal", size=128, rng=0)
    >>> img.shape, img.dtype
    ((128, 128), dtype('uint8'))
    """
    if cls not in MARCO_CLASSES:
        raise ParameterError(f"cls must be one of {', '.join(MARCO_CLASSES)}, got {cls!r}")
    if isinstance(size, bool) or not isinstance(size, (int, np.integer)) or size < _MIN_SIZE:
        raise ParameterError(f"size must be an integer >= {_MIN_SIZE} px, got {size!r}")
    size = int(size)
    rng = np.random.default_rng(rng)
    scale = size / 512.0
    img, yy, xx, well_c, well_r = _background(rng, size, scale)
    scene = _drop(rng, img, yy, xx, well_c, well_r, scale)
    brown = np.zeros_like(img)
    _dust(rng, img, scene, int(rng.integers(0, 5)))
    if cls == "precipitate":
        _precipitate(rng, img, brown, scene)
    elif cls == "crystal":
        _crystals(rng, img, scene)
    elif cls == "other":
        _other(rng, img, scene)
    # Camera: focus blur, gain, noise.
    blur = rng.uniform(0.0, 1.6) * scale
    if blur > 0.3:
        img = cv2.GaussianBlur(img, (0, 0), blur)
        brown = cv2.GaussianBlur(brown, (0, 0), blur)
    img = img * rng.uniform(0.9, 1.1)
    noise = rng.uniform(0.004, 0.025)
    if colour:
        g = rng.uniform(0.93, 1.0)
        tint = np.array([1.0, g, g * rng.uniform(0.8, 0.97)], np.float32)
        out = img[..., None] * tint - brown[..., None] * np.array([0.0, 0.08, 0.2], np.float32)
        out += rng.normal(0, noise, out.shape).astype(np.float32)
    else:
        out = img + rng.normal(0, noise, img.shape).astype(np.float32)
    return (np.clip(out, 0, 1) * 255 + 0.5).astype(np.uint8)


@dataclass
class RenderReport:
    """What :func:`render_plates` wrote."""

    out: Path
    plates: int
    images: int
    csv: Path
    truth: Path
    counts: dict[str, int]


def _save(img: np.ndarray, path: Path, quality: int = 90) -> None:
    if img.ndim == 3:
        img = img[..., ::-1]  # RGB -> BGR for OpenCV
    params = [cv2.IMWRITE_JPEG_QUALITY, quality] if path.suffix == ".jpg" else []
    if not cv2.imwrite(str(path), img, params):
        raise InputError("cannot write the image", path=str(path))


def render_plates(out: str | Path, *, plates: int = 1, seed: int = 0, size: int = 512,
                  plate_type: str = "96-well", wells: int | None = None, drops_per_well: int = 1,
                  inspections: int = 1, colour: bool = False, fmt: str = "jpg",
                  class_weights: dict[str, float] | None = None,
                  start: _dt.datetime = _dt.datetime(2026, 1, 5, 9, 0, 0),
                  progress: bool | None = None) -> RenderReport:
    """Write ``plates`` generated plates as an imager-style folder tree under ``out``.

    Layout: ``out/<barcode>/<YYYYMMDDTHHMMSSZ>/<row><col:02d>_<drop>.<fmt>`` plus ``plate.json``
    and ``inspection.json``; ``out/plates.csv`` lists every image in the CSV import format
    (image URIs relative to ``out``); ``out/truth.csv`` gives the rendered class of each image
    in the human-scores CSV format (scorer ``render-truth``, time = inspection time), so
    ``xtalscreen drops import --scores out/truth.csv`` loads the ground truth as scores.

    Parameters
    ----------
    out : str or Path
        Output folder (created).
    plates : int
        Number of plates; barcodes are ``XS<seed:03d>-<n:04d>``.
    seed : int
        Everything (classes, images, times) is a function of the seed.
    size : int
        Image width and height, px.
    plate_type : {"96-well", "48-well", "24-well"}
        Layout of the wells.
    wells : int, optional
        Use only the first ``wells`` wells of each plate (row by row); default all.
    drops_per_well : int
        Drops per well (1-3).
    inspections : int
        Inspections per plate, one day apart; a drop keeps its class in all of them.
    colour : bool
        RGB images (else grey).
    fmt : {"jpg", "png"}
        Image format.
    class_weights : dict, optional
        Relative frequency of each MARCO class; default equal.
    start : datetime
        Time (UTC) of the first inspection of the first plate; plate ``n`` starts ``n`` hours later.
    """
    if int(plates) < 1:
        raise ParameterError(f"--plates must be >= 1, got {plates!r}")
    if plate_type not in PLATE_TYPES:
        raise ParameterError(f"plate_type must be one of {', '.join(PLATE_TYPES)}, got {plate_type!r}")
    if fmt not in ("jpg", "png"):
        raise ParameterError(f"fmt must be jpg or png, got {fmt!r}")
    if not 1 <= int(drops_per_well) <= 3:
        raise ParameterError(f"drops_per_well must be 1..3, got {drops_per_well!r}")
    if int(inspections) < 1:
        raise ParameterError(f"inspections must be >= 1, got {inspections!r}")
    if isinstance(size, bool) or not isinstance(size, (int, np.integer)) or size < _MIN_SIZE:
        raise ParameterError(f"size must be an integer >= {_MIN_SIZE} px, got {size!r}")
    weights = np.array([(class_weights or {}).get(c, 0.0 if class_weights else 1.0)
                        for c in MARCO_CLASSES], float)
    if class_weights and set(class_weights) - set(MARCO_CLASSES):
        raise ParameterError(f"class_weights keys must be among {', '.join(MARCO_CLASSES)}, "
                             f"got {sorted(class_weights)}")
    if not (weights >= 0).all() or weights.sum() <= 0:
        raise ParameterError(f"class_weights must be >= 0 with a positive sum, got {class_weights}")
    weights = weights / weights.sum()
    nrows, ncols = PLATE_TYPES[plate_type]
    positions = [(chr(65 + r), c + 1) for r in range(nrows) for c in range(ncols)]
    if wells is not None:
        if not 1 <= int(wells) <= len(positions):
            raise ParameterError(f"wells must be 1..{len(positions)} for a {plate_type} plate, got {wells!r}")
        positions = positions[: int(wells)]
    out = Path(out)
    try:
        out.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise InputError(f"cannot create the output folder: {exc.strerror or exc}", path=str(out)) from None
    um_per_pixel = round(5.0 * 512 / size, 4)
    start = start.replace(tzinfo=None)

    jobs = []
    for p in range(int(plates)):
        barcode = f"XS{int(seed) % 1000:03d}-{p + 1:04d}"
        for i in range(int(inspections)):
            t = start + _dt.timedelta(hours=p, days=i)
            for wi, (row, col) in enumerate(positions):
                for d in range(1, int(drops_per_well) + 1):
                    jobs.append((p, barcode, i, t, wi, row, col, d))
    rows_csv, rows_truth = [], []
    counts = dict.fromkeys(MARCO_CLASSES, 0)
    for p, barcode, i, t, wi, row, col, d in track(jobs, total=len(jobs), description="rendering",
                                                  enabled=progress):
        folder = out / barcode / t.strftime("%Y%m%dT%H%M%SZ")
        if wi == 0 and d == 1:
            folder.mkdir(parents=True, exist_ok=True)
            (out / barcode / "plate.json").write_text(json.dumps(
                {"plate_type": plate_type, "screen": f"Generated screen {p % 3 + 1}",
                 "owner": "xtalscreen render", "seed": int(seed)}, indent=1) + "\n")
            (folder / "inspection.json").write_text(json.dumps(
                {"imager": "render", "complete": True, "um_per_pixel": um_per_pixel,
                 "kind": "visible"}, indent=1) + "\n")
        cls_rng = np.random.default_rng([int(seed), p, wi, d])
        cls = MARCO_CLASSES[int(cls_rng.choice(len(MARCO_CLASSES), p=weights))]
        img = render_drop(cls, size=size, rng=np.random.default_rng([int(seed), p, i, wi, d, 1]),
                          colour=colour)
        name = f"{row}{col:02d}_{d}.{fmt}"
        _save(img, folder / name)
        rel = f"{barcode}/{folder.name}/{name}"
        rows_csv.append({"barcode": barcode, "plate_type": plate_type,
                         "screen": f"Generated screen {p % 3 + 1}", "owner": "xtalscreen render",
                         "inspection_time": t.strftime("%Y-%m-%dT%H:%M:%SZ"), "imager": "render",
                         "imaging_complete": "true", "well": f"{row}{col}", "drop": d,
                         "image_uri": rel, "um_per_pixel": um_per_pixel, "kind": "visible"})
        rows_truth.append({"image_uri": rel, "barcode": barcode,
                           "inspection_time": t.strftime("%Y-%m-%dT%H:%M:%SZ"),
                           "drop": f"{row}{col}.{d}", "class": cls, "scorer": TRUTH_SCORER,
                           "time": t.strftime("%Y-%m-%dT%H:%M:%SZ")})
        counts[cls] += 1
    from xtalscreen.drops.importer import CSV_COLUMNS

    csv_path, truth_path = out / "plates.csv", out / "truth.csv"
    with csv_path.open("w", newline="") as fh:
        w = csv.DictWriter(fh, fieldnames=list(CSV_COLUMNS))
        w.writeheader()
        w.writerows(rows_csv)
    with truth_path.open("w", newline="") as fh:
        w = csv.DictWriter(fh, fieldnames=["image_uri", "barcode", "inspection_time", "drop", "class",
                                           "scorer", "time"])
        w.writeheader()
        w.writerows(rows_truth)
    return RenderReport(out, int(plates), len(jobs), csv_path, truth_path, counts)


def contact_sheet(images: list[np.ndarray], *, columns: int = 4) -> np.ndarray:
    """Tile equally sized images (grey or RGB uint8) into one image, row by row."""
    if not images:
        raise ParameterError("contact_sheet needs at least one image")
    imgs = [np.repeat(im[..., None], 3, axis=2) if im.ndim == 2 else im for im in images]
    h, w, _ = imgs[0].shape
    rows = -(-len(imgs) // columns)
    sheet = np.full((rows * h, columns * w, 3), 255, np.uint8)
    for k, im in enumerate(imgs):
        r, c = divmod(k, columns)
        sheet[r * h:(r + 1) * h, c * w:(c + 1) * w] = im
    return sheet


__all__ = ["render_drop", "render_plates", "contact_sheet", "RenderReport", "PLATE_TYPES"]
