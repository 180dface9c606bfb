"""The shipped default model: packaged, small, documented, loads offline, screens sensibly."""

from __future__ import annotations

import os

import numpy as np
import pytest

from xtalscreen.errors import InputError
from xtalscreen.models.pretrained import load_default, model_card, resolve_model
from xtalscreen.preprocess import PreprocessConfig


def test_shipped_files_small_and_documented():
    from xtalscreen.simulate import get_preset

    path = resolve_model("default")
    assert os.path.getsize(path) < 2_000_000
    card = model_card("default")
    for key in ("command", "training_data", "test", "validation_accuracy", "trained_on", "preprocess"):
        assert key in card
    per = card["test"]["per_preset"]
    assert set(per) == {"diffranet", "cspad", "pilatus2m"}
    for m in per.values():
        assert 0.0 <= m["sensitivity"] <= 1.0 and 0.0 <= m["specificity"] <= 1.0
    lo, hi = card["trained_on"]["angular_pixel"]
    assert 0 < lo < hi
    # the detector measured to fail (session 13) is named so that screen warns on its frames
    (rayonix,) = card["trained_on"]["unreliable"]
    assert any(m in get_preset("rayonix_mx340").detector.name.lower() for m in rayonix["match"])
    assert not any(m in get_preset(p).detector.name.lower() for m in rayonix["match"]
                   for p in ("diffranet", "cspad", "pilatus6m", "eiger16m", "jungfrau4m"))


def test_load_default_offline():
    model, pp, meta = load_default()
    assert tuple(meta["classes"]) == ("hit", "maybe", "miss") and meta["target"] == "ke"
    assert pp.bin == "auto" and pp.bin_reduce == "max" and not model.training
    assert PreprocessConfig.from_dict(model_card()["preprocess"]) == pp
    assert meta["card"]["file"] == "default_ke.pt"


def test_unknown_model_names_fail_clearly(tmp_path):
    with pytest.raises(InputError, match="not found"):
        resolve_model(tmp_path / "missing.pt")
    assert model_card(str(tmp_path / "x.pt")) == {}


def test_default_model_separates_strong_from_blank(tmp_path):
    """Simulated DiffraNet frames: strong diffraction is kept, blank frames are not."""
    from xtalscreen.io import write_hdf5_run
    from xtalscreen.screen import screen
    from xtalscreen.simulate import get_preset, simulate_frame

    cfg = get_preset("diffranet")
    frames = []
    for i, cls in enumerate(["strong", "blank", "strong", "blank", "strong", "blank"]):
        f, _ = simulate_frame(cfg, rng=100 + i, frame_class=cls)
        frames.append(f.replace(index=i))
    write_hdf5_run(frames, tmp_path / "run.h5")
    s = screen([tmp_path / "run.h5"], out=tmp_path / "o", live=False)
    lines = (tmp_path / "o" / "results.csv").read_text().splitlines()[1:]
    decisions = [ln.split(",")[5] for ln in lines]
    kept = np.array([d in ("hit", "maybe") for d in decisions])
    assert kept[0::2].sum() >= 2 and kept[1::2].sum() <= 1, decisions
    assert s.frames == 6


def test_shipped_diffranet5_is_the_default_network_with_a_five_class_head():
    import torch

    from xtalscreen.models.pretrained import load_screening_model

    base, pp0, _ = load_default()
    model, pp, meta = load_screening_model("diffranet5")
    assert tuple(meta["classes"]) == ("blank", "no-crystal", "weak", "good", "strong")
    assert meta["target"] == "diffranet" and meta["views"] == 8 and pp == pp0
    assert "operating_points" not in meta  # the keep points belong to default's outputs
    old, new = base.state_dict(), model.state_dict()
    assert set(old) == set(new)
    for k in old:  # (the plain running_mean/var only hold the last input size used: sizebn)
        if not k.startswith("classifier.") and not k.endswith((".running_mean", ".running_var")):
            assert torch.equal(old[k], new[k]), k
    assert new["classifier.weight"].shape == (5, base.num_features)
    card = model_card("diffranet5")
    assert card["file"] == "diffranet5.pt" and card["views"] == 8
    assert card["training_data"]["seed"] != card["test_data"]["seed"]
    at8 = next(r for r in card["test"] if r["views"] == 8)
    assert at8["n"] == sum(map(sum, at8["confusion"])) > 0
    assert 0.0 <= at8["accuracy"] <= 1.0 and 0.0 <= at8["diffraction_accuracy"] <= 1.0


def test_diffranet5_calls_simulated_classes(tmp_path):
    """One DiffraNet-CCD frame of each class through the shipped 5-class file at its 8 views."""
    import torch

    from xtalscreen.models.pretrained import load_screening_model
    from xtalscreen.models.tta import view_logits
    from xtalscreen.screen.prepare import FastPreprocess
    from xtalscreen.simulate import get_preset, simulate_frame

    model, pp, meta = load_screening_model("diffranet5")
    cfg = get_preset("diffranet")
    cfg.labels.draw_counts = {"weak": (5, 16), "good": (40, 100), "strong": (240, None)}
    prep = FastPreprocess(pp)
    for i, cls in enumerate(meta["classes"]):
        f, info = simulate_frame(cfg, rng=300 + i, frame_class=cls)
        x = torch.from_numpy(prep(f).x[None])
        with torch.no_grad():
            pred = meta["classes"][int(view_logits(model, x, 8).argmax())]
        assert pred == cls, (cls, pred)


@pytest.mark.parametrize("workers", [1, 2])
def test_screen_with_diffranet5_writes_its_classes(tmp_path, workers):
    """results.csv gets a ``class`` column (DiffraNet's) next to the Hit/Maybe/Miss decision,
    the same with worker processes; the 8 recorded views are used."""
    import csv

    from xtalscreen.io import write_hdf5_run
    from xtalscreen.screen import screen
    from xtalscreen.simulate import get_preset, simulate_frame

    cfg = get_preset("diffranet")
    cfg.labels.draw_counts = {"weak": (5, 16), "good": (40, 100), "strong": (240, None)}
    classes = ["strong", "blank", "good", "no-crystal"]
    frames = [simulate_frame(cfg, rng=400 + i, frame_class=c)[0].replace(index=i)
              for i, c in enumerate(classes)]
    write_hdf5_run(frames, tmp_path / "run.h5")
    screen([tmp_path / "run.h5"], out=tmp_path / "o", model="diffranet5", workers=workers, live=False)
    with open(tmp_path / "o" / "results.csv", newline="") as fh:
        rows = list(csv.DictReader(fh))
    assert [r["class"] for r in rows] == classes
    assert [r["decision"] for r in rows] == ["hit", "miss", "hit", "miss"]
    # the default model's results have no class column
    screen([tmp_path / "run.h5"], out=tmp_path / "d", workers=1, live=False)
    assert "class" not in (tmp_path / "d" / "results.csv").read_text().splitlines()[0].split(",")


def test_jungfrau_stored_stacked_gets_the_jungfrau_point():
    """The shipped JUNGFRAU 4M point (raw key 8x512x1024) also serves the same detector stored
    as 4096 x 1024 with a geometry that stacks its 8 modules (the point's recorded layout)."""
    import dataclasses

    from xtalscreen.evaluate.operating import point_key
    from xtalscreen.io.frame import Frame
    from xtalscreen.io.geometry import DetectorGeometry
    from xtalscreen.screen.workers import parse_operating_points
    from xtalscreen.simulate import get_preset

    _, _, meta = load_default()
    points = parse_operating_points(meta["operating_points"])
    geom = get_preset("jungfrau4m").detector.geometry
    stacked = DetectorGeometry([dataclasses.replace(p, slab=None, min_ss=p.min_ss + 512 * p.slab,
                                                    max_ss=p.max_ss + 512 * p.slab)
                                for p in geom.panels])
    f = Frame(np.zeros((4096, 1024), np.float32), geometry=stacked)
    assert point_key(points, f) == "8x512x1024"
    assert point_key(points, Frame(np.zeros((4096, 1024), np.float32))) == "4096x1024"  # no geometry
    assert points["32x185x388"].layout == "32x185x388"


def test_the_jungfrau_point_serves_a_geometry_of_64_asics():
    """A JUNGFRAU 4M geometry file that describes the 64 ASICs (256 x 256, 2 px apart) of its 8
    modules, as CrystFEL's often do: its sensors are the 8 modules, so it finds the shipped
    JUNGFRAU point (its raw key, 4096 x 1024, has none)."""
    import dataclasses

    from xtalscreen.evaluate.operating import layout_key, panel_layout_key, point_key
    from xtalscreen.io.frame import Frame
    from xtalscreen.io.geometry import DetectorGeometry
    from xtalscreen.screen.workers import parse_operating_points
    from xtalscreen.simulate import get_preset

    points = parse_operating_points(load_default()[2]["operating_points"])
    asics = [dataclasses.replace(p, name=f"{p.name}a{r}{c}", slab=None, min_fs=256 * c, max_fs=256 * c + 255,
                                 min_ss=512 * p.slab + 256 * r, max_ss=512 * p.slab + 256 * r + 255,
                                 corner_x=p.corner_x + 258 * c, corner_y=p.corner_y + 258 * r)
             for p in get_preset("jungfrau4m").detector.geometry.panels for r in range(2) for c in range(4)]
    f = Frame(np.zeros((4096, 1024), np.float32), geometry=DetectorGeometry(asics))
    assert panel_layout_key(f) == "64x256x256" and layout_key(f) == "8x512x1024"
    assert point_key(points, f) == "8x512x1024"


def test_real_cspad_cbf_gets_the_cspad_point(real_dir):
    """The LCLS CSPAD CBFs read as 64 ASICs of 185 x 194 (raw key 64x185x194, not the
    simulator's 32x185x388); their ASICs join into 32 two-by-ones (3 px apart), the layout of
    the shipped CSPAD point."""
    import warnings

    from xtalscreen.evaluate.operating import detector_key, layout_key, point_key
    from xtalscreen.io import open_frames
    from xtalscreen.screen.workers import parse_operating_points

    points = parse_operating_points(load_default()[2]["operating_points"])
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        f = next(iter(open_frames(real_dir / "xray" / "idx-20130301060858401.cbf")))
    assert detector_key(f.data.shape) == "64x185x194" and "64x185x194" not in points
    assert layout_key(f) == "32x185x388"
    assert point_key(points, f) == "32x185x388"


def test_rayonix_frames_are_screened_through_their_points_matched_filter(tmp_path, capsys):
    """The shipped Rayonix MX340-HS point (1920 x 1920) smooths its frames with the matched
    filter and bins them by 2 before the network (session 14); screen applies it, reports it,
    and still warns by the detector's name with the point's measured figures."""
    from xtalscreen.cli import main
    from xtalscreen.screen.workers import parse_operating_points
    from xtalscreen.simulate import simulate_dataset

    points = parse_operating_points(load_default()[2]["operating_points"])
    op = points["1920x1920"]
    assert op.preprocess == {"bin": 2, "prefilter_sigma": 1.2} and op.views == 8
    assert all(not p.preprocess for k, p in points.items() if k != "1920x1920")
    simulate_dataset(tmp_path / "rx", presets="rayonix_mx340", n=2, seed=1, split=(0, 0, 100),
                     spots="none", classes="strong", progress=False)
    run = next((tmp_path / "rx").glob("*.h5"))
    rc = main(["screen", str(run), "--out", str(tmp_path / "o"), "--quiet", "--no-hits-h5"])
    captured = capsys.readouterr()
    assert rc == 0 and "1920x1920 keep >= 0.894 (temperature 3.83, 8 views, bin 2, prefilter_sigma 1.2)" in captured.out
    assert "vetoes only 96.3 % of the misses" in captured.err and "--model rayonix" in captured.err


def test_shipped_rayonix_model_filters_every_frame_and_serves_its_detector(tmp_path, capsys):
    """``--model rayonix``: the default network fine-tuned through the matched filter; its own
    preprocessing is the filter and bin 2, its one point is the 2x2-binned MX340-HS's, its card
    says it is for that detector only, and screen runs it on simulated Rayonix frames."""
    import torch

    from xtalscreen.cli import main
    from xtalscreen.models.pretrained import load_screening_model, model_card
    from xtalscreen.simulate import simulate_dataset

    net, pp, meta = load_screening_model("rayonix")
    assert pp.prefilter_sigma == 1.2 and pp.bin == 2 and pp.crop == (256, 256)
    assert set(meta["operating_points"]) == {"1920x1920"} and meta["operating_points"]["1920x1920"]["views"] == 8
    base = load_screening_model("default")[0]
    assert net.num_features == base.num_features
    assert any(not torch.equal(a, b) for a, b in zip(net.state_dict().values(), base.state_dict().values()))
    card = model_card("rayonix")
    assert card["file"] == "rayonix_ke.pt" and set(card["trained_on"]["detectors"]) == {"rayonix_mx340"}
    assert "this detector only" in card["task"] and "rayonix" in card["trained_on"]["only"]["match"]
    t = card["independent_test"]["seeds_881_883"]
    assert t["sensitivity"] >= 0.985 and t["specificity"] >= 0.97
    simulate_dataset(tmp_path / "rx", presets="rayonix_mx340", n=2, seed=1, split=(0, 0, 100),
                     spots="none", classes="strong", progress=False)
    run = next((tmp_path / "rx").glob("*.h5"))
    rc = main(["screen", str(run), "--model", "rayonix", "--out", str(tmp_path / "o"), "--quiet", "--no-hits-h5"])
    assert rc == 0 and "1920x1920 keep >= 0.547 (temperature 0.66, 8 views)" in capsys.readouterr().out


def test_shipped_ke2018_cspad_is_paper_001s_network_with_its_cspad_point(tmp_path, capsys):
    """``--model ke2018_cspad``: paper 001's layer sizes (6,463 parameters), the shipped binning
    preprocessing, one point (the CSPAD's, 8 views) whose independent test meets both minima;
    screen runs it on simulated CSPAD frames and warns on another detector's."""
    from xtalscreen.cli import main
    from xtalscreen.models.pretrained import load_screening_model, model_card
    from xtalscreen.simulate import simulate_dataset

    net, pp, meta = load_screening_model("ke2018_cspad")
    assert net.model_name == "ke2018" and tuple(net.model_kwargs["widths"]) == (4, 8, 16, 32)
    assert sum(p.numel() for p in net.parameters()) == 6463
    assert pp.bin == "auto" and pp.bin_reduce == "max" and pp.crop == (256, 256) and pp.margin == 0
    assert set(meta["operating_points"]) == {"32x185x388"} and meta["operating_points"]["32x185x388"]["views"] == 8
    card = model_card("ke2018_cspad")
    assert card["file"] == "ke2018_cspad.pt" and set(card["trained_on"]["detectors"]) == {"cspad"}
    for pooled in ("both", "all_three"):  # 4000 and 6000 fresh frames
        t = card["independent_test"][pooled]
        assert t["sensitivity"] >= 0.985 and t["specificity"] >= 0.97
    assert card["seconds"]["train"] <= 900
    simulate_dataset(tmp_path / "cs", presets="cspad", n=2, seed=1, split=(0, 0, 100), spots="none",
                     classes="strong", progress=False)
    rc = main(["screen", str(tmp_path / "cs"), "--model", "ke2018_cspad", "--out", str(tmp_path / "o"),
               "--quiet", "--no-hits-h5", "--workers", "1"])
    out = capsys.readouterr()
    assert rc == 0 and "32x185x388 keep >= 0.424 (temperature 0.70, 8 views)" in out.out
    assert "trained on CSPAD frames only" not in out.err
    simulate_dataset(tmp_path / "dn", presets="diffranet", n=1, seed=1, split=(0, 0, 100), spots="none",
                     classes="blank", progress=False)
    rc = main(["screen", str(tmp_path / "dn"), "--model", "ke2018_cspad", "--out", str(tmp_path / "o2"),
               "--quiet", "--no-hits-h5", "--workers", "1"])
    assert rc == 0 and "trained on CSPAD frames only" in capsys.readouterr().err
