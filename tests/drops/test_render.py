"""The procedural drop renderer: determinism, class distinctness, plate folders."""

from __future__ import annotations

import csv
import hashlib

import cv2
import numpy as np
import pytest

from xtalscreen.drops.render import contact_sheet, render_drop, render_plates
from xtalscreen.drops.schemes import MARCO_CLASSES
from xtalscreen.errors import ParameterError


@pytest.mark.parametrize("cls", MARCO_CLASSES)
def test_same_seed_same_image_other_seed_other_image(cls):
    a = render_drop(cls, size=96, rng=7)
    assert a.shape == (96, 96) and a.dtype == np.uint8
    assert np.array_equal(a, render_drop(cls, size=96, rng=7))
    assert not np.array_equal(a, render_drop(cls, size=96, rng=8))
    assert np.array_equal(render_drop(cls, size=96, rng=np.random.default_rng(7)), a)


def test_colour_images_are_rgb_with_warm_light():
    img = render_drop("precipitate", size=96, rng=1, colour=True)
    assert img.shape == (96, 96, 3)
    r, g, b = (img[..., k].astype(float).mean() for k in range(3))
    assert r >= g >= b and r > b


@pytest.mark.parametrize("cls", MARCO_CLASSES)
def test_well_is_bright_and_its_surroundings_dark(cls):
    for seed in range(4):
        img = render_drop(cls, size=128, rng=seed).astype(float)
        centre = img[48:80, 48:80].mean()
        corners = np.mean([img[:6, :6].mean(), img[:6, -6:].mean(), img[-6:, :6].mean(), img[-6:, -6:].mean()])
        assert centre > corners + 40


def _texture(img: np.ndarray) -> list[float]:
    """Percentiles (50, 90, 99) of fine (< 1.5 px) and medium (1.5-4 px) band-pass magnitude
    in the central 48 x 48 px of a 128 px image, which lies inside the drop."""
    f = img.astype(np.float32) / 255
    fine = np.abs(f - cv2.GaussianBlur(f, (0, 0), 1.5))[40:88, 40:88]
    mid = np.abs(cv2.GaussianBlur(f, (0, 0), 1.5) - cv2.GaussianBlur(f, (0, 0), 4))[40:88, 40:88]
    return [np.percentile(a, q) for a in (fine, mid) for q in (50, 90, 99)]


@pytest.fixture(scope="module")
def features():
    return {c: np.array([_texture(render_drop(c, size=128, rng=s)) for s in range(32)])
            for c in MARCO_CLASSES}


def test_clear_drops_have_the_least_fine_texture(features):
    p90 = {c: np.median(features[c][:, 1]) for c in MARCO_CLASSES}
    for c in ("crystal", "precipitate", "other"):
        assert p90["clear"] < 0.5 * p90[c], p90


def test_crystals_are_sparse_sharp_edges_precipitate_dense_grain(features):
    """Crystal edges are the strongest details; precipitate texture is the most widespread."""
    med = {c: np.median(features[c], axis=0) for c in MARCO_CLASSES}
    assert med["crystal"][2] > 1.5 * med["precipitate"][2]     # p99: sharp facet edges
    assert med["precipitate"][0] > 1.5 * med["crystal"][0]     # p50: grain everywhere
    ratio = {c: med[c][2] / med[c][0] for c in MARCO_CLASSES}
    assert ratio["crystal"] > 2 * ratio["precipitate"]


def test_classes_are_separable_by_simple_statistics_but_not_trivially(features):
    """A nearest-centroid rule on 6 texture statistics beats chance (0.25) by far."""
    x = np.concatenate([features[c] for c in MARCO_CLASSES])
    y = np.repeat(np.arange(4), 32)
    train = np.tile(np.arange(32) < 16, 4)
    mu, sd = x[train].mean(0), x[train].std(0)
    z = (x - mu) / sd
    centres = np.array([z[train & (y == k)].mean(0) for k in range(4)])
    pred = np.argmin(((z[~train][:, None] - centres[None]) ** 2).sum(-1), axis=1)
    acc = (pred == y[~train]).mean()
    assert 0.4 <= acc < 1.0, acc


@pytest.mark.parametrize("kw, match", [({"cls": "crystals"}, "cls must be one of"),
                                       ({"cls": "clear", "size": 10}, "size must be"),
                                       ({"cls": "clear", "size": 100.5}, "size must be")])
def test_bad_arguments(kw, match):
    cls = kw.pop("cls")
    with pytest.raises(ParameterError, match=match):
        render_drop(cls, **kw)


def _digest(folder) -> dict:
    return {p.relative_to(folder).as_posix(): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(folder.rglob("*")) if p.is_file()}


def test_render_plates_writes_the_documented_tree(tmp_path):
    rep = render_plates(tmp_path / "a", plates=2, seed=5, size=64, wells=3, drops_per_well=2,
                        inspections=2, fmt="png", progress=False)
    assert rep.images == 2 * 2 * 3 * 2 and sum(rep.counts.values()) == rep.images
    imgs = sorted((tmp_path / "a").glob("XS005-000?/2026*/*.png"))
    assert len(imgs) == rep.images
    assert {p.name for p in imgs} == {"A01_1.png", "A01_2.png", "A02_1.png", "A02_2.png",
                                      "A03_1.png", "A03_2.png"}
    assert (tmp_path / "a" / "XS005-0001" / "plate.json").is_file()
    assert len(list((tmp_path / "a").glob("*/*/inspection.json"))) == 4
    with open(rep.csv) as fh:
        rows = list(csv.DictReader(fh))
    with open(rep.truth) as fh:
        truth = list(csv.DictReader(fh))
    assert len(rows) == len(truth) == rep.images
    assert all((tmp_path / "a" / r["image_uri"]).is_file() for r in rows)
    # A drop keeps its class across inspections.
    by_drop = {}
    for t in truth:
        by_drop.setdefault((t["barcode"], t["drop"]), set()).add(t["class"])
    assert all(len(v) == 1 for v in by_drop.values())
    img = cv2.imread(str(imgs[0]), cv2.IMREAD_UNCHANGED)
    assert img.shape == (64, 64)


def test_render_plates_is_deterministic_by_seed(tmp_path):
    kw = dict(plates=1, size=64, wells=4, fmt="png", progress=False)
    render_plates(tmp_path / "a", seed=1, **kw)
    render_plates(tmp_path / "b", seed=1, **kw)
    render_plates(tmp_path / "c", seed=2, **kw)
    assert _digest(tmp_path / "a") == _digest(tmp_path / "b")
    da, dc = _digest(tmp_path / "a"), _digest(tmp_path / "c")
    assert da.keys() != dc.keys() or da != dc


def test_class_weights_select_classes(tmp_path):
    rep = render_plates(tmp_path, plates=1, size=64, wells=5, class_weights={"crystal": 1.0},
                        progress=False)
    assert rep.counts == {"crystal": 5, "precipitate": 0, "clear": 0, "other": 0}


@pytest.mark.parametrize("kw", [{"plates": 0}, {"plate_type": "6-well"}, {"fmt": "gif"},
                                {"wells": 97}, {"drops_per_well": 4}, {"size": 8},
                                {"class_weights": {"crystal": -1.0}}, {"class_weights": {"gem": 1.0}},
                                {"inspections": 0}])
def test_render_plates_bad_arguments(tmp_path, kw):
    with pytest.raises(ParameterError):
        render_plates(tmp_path, **kw)


def test_contact_sheet_tiles_images():
    imgs = [np.full((8, 8), k, np.uint8) for k in range(5)]
    sheet = contact_sheet(imgs, columns=2)
    assert sheet.shape == (24, 16, 3)
    assert sheet[16, 0, 0] == 4 and sheet[16, 8, 0] == 255
