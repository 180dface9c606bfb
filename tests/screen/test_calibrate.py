"""``calibrate``: per-detector operating points fitted on labelled frames, used by ``screen``."""

from __future__ import annotations

import csv

import numpy as np
import pytest

from xtalscreen.errors import InputError, ParameterError
from xtalscreen.io import write_hdf5_run
from xtalscreen.screen import screen
from xtalscreen.screen.calibrate import calibrate
from xtalscreen.train import load_model, read_checkpoint


def rows(out):
    with open(out / "results.csv", newline="") as fh:
        return list(csv.DictReader(fh))


@pytest.fixture()
def labelled(tmp_path, frames_factory):
    """Two detectors (60 x 64 and 200 x 180), 30 frames each; frames with spots are hits."""
    small, large = tmp_path / "small.h5", tmp_path / "large.h5"
    write_hdf5_run(frames_factory(30, (60, 64), beam_center=(32.0, 30.0), spots_every=2), small)
    write_hdf5_run(frames_factory(30, (200, 180), seed=4, spots_every=3), large)
    with open(tmp_path / "labels.csv", "w", newline="") as fh:
        w = csv.writer(fh)
        w.writerow(["file", "frame", "label", "split", "preset"])
        for name, every in (("small.h5", 2), ("large.h5", 3)):
            for i in range(30):
                w.writerow([name, i, "hit" if i % every == 0 else "miss", "val", name[:-3]])
    return tmp_path


@pytest.fixture(scope="module")
def model_any_size(tmp_path_factory):
    import torch

    from xtalscreen.models import create_model
    from xtalscreen.preprocess import PreprocessConfig
    from xtalscreen.train import save_checkpoint

    torch.manual_seed(1)
    path = tmp_path_factory.mktemp("m") / "any_size.pt"
    save_checkpoint(path, create_model("spotcount", num_classes=3, img_size=32),
                    preprocess=PreprocessConfig(bin="auto", crop=(32, 32), unbinned_up_to=2, bin_reduce="max"),
                    classes=("hit", "maybe", "miss"), target="ke")
    return path


def test_calibrated_points_are_what_screen_applies(labelled, model_any_size, tmp_path):
    out = tmp_path / "cal.pt"
    res = calibrate(str(model_any_size), labelled, out=out, min_sensitivity=0.9, min_frames=20)
    assert res.frames == 60 and not res.skipped and not res.bad_items
    assert set(res.points) == {"60x64", "200x180", "*"}
    for k, op in res.points.items():
        assert op.sensitivity >= 0.9 and op.n_positive + op.n_negative == (60 if k == "*" else 30)
    assert "| 60x64 | 15 / 15 |" in res.table()
    # the weights are untouched; the points travel in the file
    a, b = read_checkpoint(model_any_size), read_checkpoint(out)
    assert all(np.array_equal(a["state_dict"][k], b["state_dict"][k]) for k in a["state_dict"])
    assert set(load_model(out)[2]["operating_points"]) == {"60x64", "200x180", "*"}

    with open(labelled / "labels.csv", newline="") as fh:
        labels = {(r[0], int(r[1])): r[2] for r in csv.reader(fh) if r[0] != "file"}
    for workers in (1, 2):
        s = screen([labelled / "small.h5", labelled / "large.h5"], out=tmp_path / f"s{workers}",
                   model=str(out), workers=workers, live=False)
        assert set(s.operating_points) == {"60x64", "200x180", "*"} and s.threshold is None
        got = rows(tmp_path / f"s{workers}")
        for key, name in (("60x64", "small.h5"), ("200x180", "large.h5")):
            op = res.points[key]
            mine = [r for r in got if r["file"].endswith(name)]
            keep = np.array([r["decision"] in ("hit", "maybe") for r in mine])
            score = np.array([float(r["p_hit"]) + float(r["p_maybe"]) for r in mine])
            clear = np.abs(score - op.threshold) > 1e-5  # results.csv holds 5 decimals
            assert np.array_equal(keep[clear], score[clear] >= op.threshold)
            pos = np.array([labels[(name, int(r["frame"]))] == "hit" for r in mine])
            # screen reproduces the calibration figures: same frames, same path
            assert keep[pos].mean() == pytest.approx(op.sensitivity)
            assert (~keep[~pos]).mean() == pytest.approx(op.specificity)


def test_given_threshold_overrides_and_temperature_stays(labelled, model_any_size, tmp_path):
    out = tmp_path / "cal.pt"
    res = calibrate(str(model_any_size), labelled, out=out, min_sensitivity=0.9, min_frames=20)
    screen([labelled / "small.h5"], out=tmp_path / "plain", model=str(model_any_size), live=False)
    s = screen([labelled / "small.h5"], out=tmp_path / "fixed", model=str(out), threshold=0.5, live=False)
    assert s.threshold == 0.5 and s.operating_points["60x64"]["threshold"] == 0.5
    plain, fixed = rows(tmp_path / "plain"), rows(tmp_path / "fixed")
    t = res.points["60x64"].temperature
    for p, f in zip(plain, fixed):
        z = np.log([float(p["p_hit"]), float(p["p_maybe"]), float(p["p_miss"])]) / t
        q = np.exp(z - z.max()) / np.exp(z - z.max()).sum()
        assert float(f["p_hit"]) == pytest.approx(q[0], abs=1e-5)
        if abs(q[0] + q[1] - 0.5) > 1e-4:  # results.csv holds 5 decimals
            assert (f["decision"] != "miss") == (q[0] + q[1] >= 0.5)


def test_recalibrating_one_detector_keeps_the_others(labelled, model_any_size, tmp_path):
    first = calibrate(str(model_any_size), labelled, out=tmp_path / "a.pt", min_sensitivity=0.9, min_frames=20)
    with open(labelled / "labels.csv") as fh:
        lines = [ln for ln in fh if not ln.startswith("large.h5")]
    (labelled / "only_small").mkdir()
    (labelled / "only_small" / "labels.csv").write_text(
        "".join(ln.replace("small.h5", "../small.h5") for ln in lines))
    second = calibrate(str(tmp_path / "a.pt"), labelled / "only_small", out=tmp_path / "a.pt",
                       min_sensitivity=None, min_specificity=0.8, min_frames=20)
    assert set(second.points) == {"60x64"} and set(second.kept) == {"200x180", "*"}
    pts = load_model(tmp_path / "a.pt")[2]["operating_points"]
    assert pts["200x180"] == first.points["200x180"].to_dict()
    assert pts["60x64"]["rule"].startswith("lowest threshold with specificity")


def test_bad_frames_small_detectors_and_bad_arguments(labelled, model_any_size, tmp_path):
    with open(labelled / "labels.csv", "a") as fh:
        fh.write("small.h5,99,hit,val,small\nmissing.h5,0,miss,val,small\n")
    res = calibrate(str(model_any_size), labelled, out=tmp_path / "c.pt", min_frames=30)
    assert len(res.bad_items) == 2 and any("missing.h5" in b for b in res.bad_items)
    assert res.frames == 60
    with pytest.raises(InputError, match="no detector got an operating point.*fewer than min_frames=31"):
        calibrate(str(model_any_size), labelled, out=tmp_path / "d.pt", min_frames=31)
    assert not (tmp_path / "d.pt").exists()
    with pytest.raises(InputError, match="no labelled frames in split 'test'"):
        calibrate(str(model_any_size), labelled, out=tmp_path / "d.pt", split="test")
    with pytest.raises(InputError, match="model not found"):
        calibrate(str(tmp_path / "nope.pt"), labelled, out=tmp_path / "d.pt")
    for kw in ({"min_sensitivity": 0.985, "min_specificity": 0.9, "confidence": 0.9},
               {"min_sensitivity": 0.99, "min_specificity": 1.0}, {"min_sensitivity": 2.0},
               {"min_frames": 1}, {"batch": 0}, {"limit": 0}):
        with pytest.raises(ParameterError):
            calibrate(str(model_any_size), labelled, out=tmp_path / "d.pt", **kw)


def test_only_misses_on_a_detector_is_skipped_with_the_reason(labelled, model_any_size, tmp_path):
    text = (labelled / "labels.csv").read_text().replace("large.h5,0,hit", "large.h5,0,miss")
    text = "\n".join(ln.replace(",hit,", ",miss,") if ln.startswith("large.h5") else ln
                     for ln in text.splitlines()) + "\n"
    (labelled / "labels.csv").write_text(text)
    res = calibrate(str(model_any_size), labelled, out=tmp_path / "c.pt", min_frames=20)
    assert set(res.points) == {"60x64"}
    assert len(res.skipped) == 1
    assert res.skipped[0].startswith("detector 200x180: ") and res.skipped[0].endswith(
        ": a threshold needs both hits/maybes and misses; got 0 and 30")


def test_cli_calibrate_then_screen(labelled, model_any_size, tmp_path, capsys):
    from xtalscreen.cli import main

    out = tmp_path / "cli.pt"
    rc = main(["calibrate", str(labelled), "--model", str(model_any_size), "--out", str(out),
               "--min-frames", "20", "--min-sensitivity", "0.95", "--json", str(tmp_path / "p.json")])
    text = capsys.readouterr().out
    assert rc == 0 and "60 frames scored" in text and "| 200x180 |" in text and f"wrote {out}" in text
    import json

    assert set(json.loads((tmp_path / "p.json").read_text())) == {"60x64", "200x180", "*"}
    rc = main(["screen", str(labelled / "small.h5"), "--model", str(out), "--out", str(tmp_path / "o"),
               "--quiet", "--no-hits-h5"])
    text = capsys.readouterr().out
    assert rc == 0 and "thresholds (model's operating points): 200x180 keep >= " in text
    rc = main(["calibrate", str(labelled), "--model", str(model_any_size), "--out", str(tmp_path / "b.pt"),
               "--min-frames", "20", "--balanced"])
    assert rc == 0 and all(v["rule"] == "threshold maximising sensitivity + specificity"
                           for v in load_model(tmp_path / "b.pt")[2]["operating_points"].values())
    rc = main(["calibrate", str(labelled), "--model", str(model_any_size), "--out", str(tmp_path / "c.pt"),
               "--min-frames", "20", "--min-sensitivity", "0.95", "--confidence", "0.9"])
    held = load_model(tmp_path / "c.pt")[2]["operating_points"]
    plain = load_model(out)[2]["operating_points"]
    assert rc == 0 and all("at 0.9 confidence" in v["rule"] for v in held.values())
    assert all(held[k]["threshold"] <= plain[k]["threshold"] for k in held)  # keeps at least as many
    rc = main(["calibrate", str(labelled), "--model", str(model_any_size), "--out", str(tmp_path / "d.pt"),
               "--min-frames", "20", "--min-sensitivity", "0.95", "--pooled-rule", "all"])
    every = load_model(tmp_path / "d.pt")[2]["operating_points"]["*"]["rule"]
    assert rc == 0 and "on each of" in plain["*"]["rule"] and "on each of" not in every
    rc = main(["calibrate", str(labelled), "--model", str(model_any_size), "--out", str(tmp_path / "e.pt"),
               "--min-frames", "20", "--views", "2"])
    assert rc == 0 and {v["views"] for v in load_model(tmp_path / "e.pt")[2]["operating_points"].values()} == {2}
    capsys.readouterr()
    rc = main(["screen", str(labelled / "small.h5"), "--model", str(tmp_path / "e.pt"), "--out",
               str(tmp_path / "o2"), "--quiet", "--no-hits-h5"])
    assert rc == 0 and "2 views)" in capsys.readouterr().out
    rc = main(["screen", str(labelled / "small.h5"), "--model", str(tmp_path / "e.pt"), "--out",
               str(tmp_path / "o3"), "--quiet", "--no-hits-h5", "--views", "1"])
    assert rc == 0 and "views)" not in capsys.readouterr().out
    capsys.readouterr()
    rc = main(["calibrate", str(labelled), "--model", str(model_any_size), "--out", str(out),
               "--confidence", "1.5"])
    assert rc != 0 and "confidence must be in (0, 1)" in capsys.readouterr().err
    rc = main(["calibrate", str(labelled), "--model", str(model_any_size), "--out", str(tmp_path / "f.pt"),
               "--min-frames", "20", "--min-sensitivity", "0.9", "--min-specificity", "0.9"])
    both = load_model(tmp_path / "f.pt")[2]["operating_points"]
    assert rc == 0 and all("largest smaller margin over sensitivity >= 0.9 and specificity >= 0.9"
                           in v["rule"] for v in both.values())
    capsys.readouterr()
    rc = main(["calibrate", str(labelled), "--model", str(model_any_size), "--out", str(out),
               "--min-sensitivity", "0.9", "--balanced"])
    assert rc != 0 and "--balanced replaces" in capsys.readouterr().err
    rc = main(["calibrate", str(labelled), "--model", str(tmp_path / "nope.pt"), "--out", str(out)])
    assert rc != 0 and "model not found" in capsys.readouterr().err


@pytest.mark.parametrize("points, msg", [
    ({"60x64": {"threshold": 1.5}}, "operating point for detector 60x64 is damaged"),
    ({"60x64": {"temperature": 1.0}}, "operating point for detector 60x64 is damaged"),
    ({"60x64": {"threshold": 0.5, "views": 3}}, "operating point for detector 60x64 is damaged"),
    ([0.5], "operating_points is a list"),
])
def test_damaged_operating_points_name_the_model_file(labelled, model_any_size, tmp_path, points, msg):
    from xtalscreen.train import update_checkpoint

    bad = update_checkpoint(model_any_size, tmp_path / "bad.pt", operating_points=points)
    for workers in (1, 2):
        with pytest.raises(InputError, match=msg) as err:
            screen([labelled / "small.h5"], out=tmp_path / f"o{workers}", model=str(bad),
                   workers=workers, live=False)
        assert "bad.pt" in str(err.value)
    with pytest.raises(InputError, match=msg):
        calibrate(str(bad), labelled, out=tmp_path / "c.pt", min_frames=20)


def test_temperature_at_the_search_limit_is_reported(labelled, model_any_size, tmp_path):
    """An untrained model's outputs carry no information: its temperature runs to the limit."""
    res = calibrate(str(model_any_size), labelled, out=tmp_path / "c.pt", min_frames=20)
    assert res.warnings and all("search limit" in w for w in res.warnings)


def test_evaluate_reports_the_figures_at_the_operating_points(labelled, model_any_size, tmp_path):
    from xtalscreen.evaluate.report import evaluate_model

    res = calibrate(str(model_any_size), labelled, out=tmp_path / "c.pt", min_sensitivity=0.9, min_frames=20)
    m = evaluate_model(tmp_path / "c.pt", labelled, out_dir=tmp_path / "rep", split="val", progress=False)
    o = m["operating_points"]
    assert o["n"] == 60 and set(o["per_detector"]) == {"60x64", "200x180"}
    for k, op in res.points.items():
        if k == "*":
            continue
        v = o["per_detector"][k]
        assert v["threshold"] == op.threshold and v["temperature"] == op.temperature and v["calibrated"]
        # evaluate's training-style preprocessing gives the screen path's tensors: same decisions
        # up to a frame sitting on the threshold
        assert abs(v["sensitivity"] - op.sensitivity) <= 1 / op.n_positive + 1e-9
        assert abs(v["specificity"] - op.specificity) <= 1 / op.n_negative + 1e-9
    assert "## At the model's operating points" in (tmp_path / "rep" / "report.md").read_text()
    plain = evaluate_model(model_any_size, labelled, out_dir=tmp_path / "rep0", split="val", progress=False)
    assert "operating_points" not in plain


def test_pooled_point_serves_a_detector_without_its_own(labelled, model_any_size, tmp_path, frames_factory):
    res = calibrate(str(model_any_size), labelled, out=tmp_path / "c.pt", min_sensitivity=0.9, min_frames=20)
    star = res.points["*"]
    assert star.n_positive + star.n_negative == 60 and "2 detectors" in star.source
    # sensitivity first (the default rule): the pooled point keeps >= 90 % of each detector's
    # hits under its own temperature, so it is at most the loosest per-detector need
    assert "on each of 2 detectors" in star.rule
    assert res.points["*"].sensitivity >= 0.9
    all_frames = calibrate(str(model_any_size), labelled, out=tmp_path / "a.pt", min_sensitivity=0.9,
                           min_frames=20, pooled_rule="all")
    assert "detectors" not in all_frames.points["*"].rule.split(">=")[1]
    assert all_frames.points["*"].temperature == pytest.approx(star.temperature)
    assert star.threshold <= all_frames.points["*"].threshold + 1e-12
    with pytest.raises(ParameterError, match="pooled_rule"):
        calibrate(str(model_any_size), labelled, out=tmp_path / "b.pt", pooled_rule="every")
    other = tmp_path / "other.h5"  # a third detector shape, never calibrated
    write_hdf5_run(frames_factory(8, (100, 90), beam_center=(45.0, 50.0), seed=9), other)
    screen([other], out=tmp_path / "plain", model=str(model_any_size), live=False)
    screen([other], out=tmp_path / "o", model=str(tmp_path / "c.pt"), live=False)
    for p, r in zip(rows(tmp_path / "plain"), rows(tmp_path / "o")):
        z = np.log([float(p["p_hit"]), float(p["p_maybe"]), float(p["p_miss"])]) / star.temperature
        q = np.exp(z - z.max()) / np.exp(z - z.max()).sum()
        assert float(r["p_hit"]) == pytest.approx(q[0], abs=1e-5)  # the pooled temperature
        if abs(q[0] + q[1] - star.threshold) > 1e-4:
            assert (r["decision"] != "miss") == (q[0] + q[1] >= star.threshold)
    one = calibrate(str(model_any_size), labelled, out=tmp_path / "d.pt", min_frames=20, pooled=False)
    assert "*" not in one.points


def test_views_are_calibrated_recorded_and_applied_by_screen(labelled, model_any_size, tmp_path):
    import torch

    from xtalscreen.evaluate.operating import OperatingPoint
    from xtalscreen.evaluate.report import evaluate_model
    from xtalscreen.models.tta import view_logits
    from xtalscreen.screen.prepare import FastPreprocess
    from xtalscreen.io import open_frames

    res = calibrate(str(model_any_size), labelled, out=tmp_path / "v.pt", min_sensitivity=0.9,
                    min_frames=20, views=8)
    assert all(op.views == 8 for op in res.points.values()) and "| 8 |" in res.table()
    stored = load_model(tmp_path / "v.pt")[2]["operating_points"]
    assert all(v["views"] == 8 for v in stored.values())
    # screen averages the logits of 8 orientations for these detectors, then the point's temperature
    screen([labelled / "small.h5"], out=tmp_path / "o", model=str(tmp_path / "v.pt"), live=False,
           write_hits=False)
    net, pp, _ = load_model(model_any_size)
    prep = FastPreprocess(pp)
    frames = list(open_frames(labelled / "small.h5"))
    x = torch.from_numpy(np.stack([prep(f).x for f in frames]))
    with torch.no_grad():
        z = view_logits(net.eval(), x, 8).numpy() / res.points["60x64"].temperature
    p = np.exp(z - z.max(1, keepdims=True))
    p /= p.sum(1, keepdims=True)
    got = np.array([[float(r["p_hit"]), float(r["p_maybe"])] for r in rows(tmp_path / "o")])
    np.testing.assert_allclose(got, p[:, :2], atol=1e-4)
    # --views overrides the points' count
    screen([labelled / "small.h5"], out=tmp_path / "o1", model=str(tmp_path / "v.pt"), live=False,
           write_hits=False, views=1)
    assert [r["p_hit"] for r in rows(tmp_path / "o1")] != [r["p_hit"] for r in rows(tmp_path / "o")]
    with pytest.raises(ParameterError, match="views must be one of"):
        screen([labelled / "small.h5"], out=tmp_path / "o3", model=str(tmp_path / "v.pt"), views=3)
    # evaluate applies the points on the same 8-view logits: the calibration's figures again
    o = evaluate_model(tmp_path / "v.pt", labelled, out_dir=tmp_path / "rep", split="val",
                       progress=False)["operating_points"]
    for k, v in o["per_detector"].items():
        op = res.points[k]
        assert v["views"] == 8
        assert abs(v["sensitivity"] - op.sensitivity) <= 1 / op.n_positive + 1e-9
        assert abs(v["specificity"] - op.specificity) <= 1 / op.n_negative + 1e-9
    with pytest.raises(ParameterError, match="views must be one of"):
        OperatingPoint(threshold=0.5, views=3)
    with pytest.raises(ParameterError, match="views must be one of"):
        calibrate(str(model_any_size), labelled, out=tmp_path / "w.pt", views=5)


def _two_panel_geometry(path, *, stacked: bool):
    """Two 40 x 64 panels 10 px apart: as slabs of (2, 40, 64) data, or stacked in (80, 64)."""
    from xtalscreen.io.crystfel import write_geom
    from xtalscreen.io.geometry import DetectorGeometry, Panel

    panels = [Panel(name=f"p{i}", min_fs=0, max_fs=63, min_ss=40 * i if stacked else 0,
                    max_ss=40 * i + 39 if stacked else 39, corner_x=-32.0, corner_y=-45.0 + 50.0 * i,
                    res=1 / 172e-6, clen=0.2, slab=None if stacked else i) for i in range(2)]
    write_geom(DetectorGeometry(panels), path)
    return path


def test_a_point_serves_the_same_panel_layout_stored_another_way(model_any_size, tmp_path, frames_factory):
    """A JUNGFRAU-like case: calibrated on (2, 40, 64) slabs, the point also serves the same
    detector stored as (80, 64) with its geometry; its raw key differs, its layout does not."""
    from xtalscreen.evaluate.operating import layout_key, point_key
    from xtalscreen.io import open_frames

    frames = frames_factory(40, (80, 64), beam_center=(32.0, 45.0), spots_every=2, seed=7)
    cal = tmp_path / "cal"
    cal.mkdir()
    write_hdf5_run([f.replace(data=f.data.reshape(2, 40, 64), mask=None) for f in frames], cal / "slabs.h5")
    _two_panel_geometry(cal / "geometry.geom", stacked=False)
    with open(cal / "labels.csv", "w", newline="") as fh:
        w = csv.writer(fh)
        w.writerow(["file", "frame", "label", "split", "preset"])  # preset: geometry.geom applies
        for i in range(40):
            w.writerow(["slabs.h5", i, "hit" if i % 2 == 0 else "miss", "val", "jf"])
    res = calibrate(str(model_any_size), cal, out=tmp_path / "c.pt", min_sensitivity=0.9, min_frames=20)
    assert set(res.points) == {"2x40x64"} and res.points["2x40x64"].layout == "2x40x64"
    meta = load_model(tmp_path / "c.pt")[2]
    assert meta["operating_points"]["2x40x64"]["layout"] == "2x40x64"

    write_hdf5_run(frames, tmp_path / "stacked.h5")
    geom = _two_panel_geometry(tmp_path / "stacked.geom", stacked=True)
    f0 = next(iter(open_frames(tmp_path / "stacked.h5", geometry=geom)))
    assert f0.data.shape == (80, 64) and layout_key(f0) == "2x40x64"
    assert point_key(res.points, f0) == "2x40x64"
    assert point_key(res.points, f0.replace(geometry=None)) == "80x64"  # no geometry: raw key
    a = screen([cal / "slabs.h5"], out=tmp_path / "a", model=str(tmp_path / "c.pt"),
               geometry=str(cal / "geometry.geom"), live=False)
    b = screen([tmp_path / "stacked.h5"], out=tmp_path / "b", model=str(tmp_path / "c.pt"),
               geometry=str(geom), live=False)
    ra, rb = rows(tmp_path / "a"), rows(tmp_path / "b")
    assert [r["decision"] for r in ra] == [r["decision"] for r in rb]
    assert [r["p_hit"] for r in ra] == [r["p_hit"] for r in rb]  # same temperature, same input
    assert a.hits == b.hits
    # without the layout the stacked frames would get no point: other probabilities
    op = res.points["2x40x64"]
    assert abs(op.temperature - 1.0) > 0.05, op


def test_calibrate_uses_the_files_recorded_views_and_a_damaged_entry_is_named(labelled, model_any_size,
                                                                             tmp_path):
    from xtalscreen.errors import InputError
    from xtalscreen.train import update_checkpoint

    head = update_checkpoint(model_any_size, tmp_path / "head.pt", views=2)  # as train-head writes
    res = calibrate(str(head), labelled, out=tmp_path / "c.pt", min_sensitivity=0.9, min_frames=20)
    assert {op.views for op in res.points.values()} == {2}
    res1 = calibrate(str(head), labelled, out=tmp_path / "c1.pt", min_sensitivity=0.9, min_frames=20,
                     views=1)
    assert {op.views for op in res1.points.values()} == {1}
    bad = update_checkpoint(model_any_size, tmp_path / "bad.pt", views=3)
    with pytest.raises(InputError, match="views entry is damaged") as e:
        load_model(bad)
    assert "bad.pt" in str(e.value)


def test_a_points_preprocessing_is_calibrated_recorded_and_applied(labelled, model_any_size, tmp_path, capsys):
    """A point may change the preprocessing of its detector's frames (a matched filter for a
    wide point-spread function): calibrate scores with it and records it, screen and evaluate
    preprocess that detector's frames so, and the other detectors keep the model's own."""
    import json

    import torch

    from xtalscreen.cli import main
    from xtalscreen.evaluate.operating import OperatingPoint, point_preprocess
    from xtalscreen.evaluate.report import evaluate_model
    from xtalscreen.io import open_frames
    from xtalscreen.screen.prepare import FastPreprocess

    changes = {"prefilter_sigma": 1.2, "bin": 3}
    res = calibrate(str(model_any_size), labelled, out=tmp_path / "p.pt", min_sensitivity=0.9,
                    min_frames=20, preprocess=changes, pooled=False)
    assert all(op.preprocess == changes for op in res.points.values())
    assert "preprocessing changed for these detectors: bin=3, prefilter_sigma=1.2" in res.table()
    stored = load_model(tmp_path / "p.pt")[2]["operating_points"]
    assert stored["200x180"]["preprocess"] == changes
    # screen: the large detector through the filter and bin 3, as the point says
    s = screen([labelled / "large.h5", labelled / "small.h5"], out=tmp_path / "o",
               model=str(tmp_path / "p.pt"), live=False, write_hits=False)
    assert s.operating_points["200x180"]["preprocess"] == changes
    net, pp, _ = load_model(model_any_size)
    cfg = point_preprocess(pp, res.points["200x180"])
    assert cfg.prefilter_sigma == 1.2 and cfg.bin == 3 and pp.prefilter_sigma == 0
    frames = list(open_frames(labelled / "large.h5"))
    for c, differs in ((cfg, False), (pp, True)):
        x = torch.from_numpy(np.stack([FastPreprocess(c)(f).x for f in frames]))
        with torch.no_grad():
            z = net.eval()(x).numpy() / res.points["200x180"].temperature
        p = np.exp(z - z.max(1, keepdims=True))
        p /= p.sum(1, keepdims=True)
        got = np.array([float(r["p_hit"]) for r in rows(tmp_path / "o") if r["file"].endswith("large.h5")])
        assert (not np.allclose(got, p[:, 0], atol=1e-4)) == differs
    # evaluate reproduces the calibration's figures on the same preprocessing
    o = evaluate_model(tmp_path / "p.pt", labelled, out_dir=tmp_path / "rep", split="val",
                       progress=False)["operating_points"]
    for k, v in o["per_detector"].items():
        op = res.points[k]
        assert v["preprocess"] == changes
        assert abs(v["sensitivity"] - op.sensitivity) <= 1 / op.n_positive + 1e-9
        assert abs(v["specificity"] - op.specificity) <= 1 / op.n_negative + 1e-9
    # the command line; bad settings are named
    rc = main(["calibrate", str(labelled), "--model", str(model_any_size), "--out", str(tmp_path / "c.pt"),
               "--min-frames", "20", "--preprocess", "prefilter_sigma=1.2,bin=3,crop=24x20",
               "--json", str(tmp_path / "p.json")])
    assert rc == 0
    assert {json.dumps(v["preprocess"], sort_keys=True) for v in json.loads((tmp_path / "p.json").read_text()).values()} \
        == {json.dumps({"bin": 3, "crop": [24, 20], "prefilter_sigma": 1.2}, sort_keys=True)}
    for bad, msg in (("lcn_window=5", "may change only"), ("prefilter_sigma=-1", "prefilter_sigma must"),
                     ("bin", "give KEY=VALUE"), ("bin=two", "not a valid bin"),
                     ("bin_reduce=median", "bin_reduce must")):
        capsys.readouterr()
        rc = main(["calibrate", str(labelled), "--model", str(model_any_size), "--out", str(tmp_path / "x.pt"),
                   "--preprocess", bad])
        assert rc != 0 and msg in capsys.readouterr().err
    with pytest.raises(ParameterError, match="may change only"):
        OperatingPoint(threshold=0.5, preprocess={"contrast": "none"})
    with pytest.raises(InputError, match="operating point for detector 60x64 is damaged"):
        from xtalscreen.screen.workers import parse_operating_points
        parse_operating_points({"60x64": {"threshold": 0.5, "preprocess": {"bin": 0}}}, path="m.pt")
