"""A new last layer on a trained network (xtalscreen.train.head): exactness, files, errors."""

import numpy as np
import pytest
import torch

from xtalscreen.errors import ParameterError
from xtalscreen.models import create_model
from xtalscreen.preprocess import PreprocessConfig
from xtalscreen.train import FrameDataset, load_labels, load_model, predict, save_checkpoint
from xtalscreen.train.head import _regression, fit_head, pre_logit_features, save_head

from train_synthetic import make_sim_dataset

PP = PreprocessConfig(bin=2, crop=(48, 48), max_shift=0)


@pytest.fixture(scope="module")
def three_class(tmp_path_factory):
    """hit / maybe / miss frames (Ke classes; DiffraNet strong / weak / no-crystal)."""
    return make_sim_dataset(tmp_path_factory.mktemp("head"), n=60, maybe=True, seed=3)


@pytest.fixture(scope="module")
def base():
    torch.manual_seed(0)
    return create_model("spotcount", img_size=48, widths=(4, 8, 8, 8), detectors=8).eval()


@pytest.mark.parametrize("target,views", [("ke", 1), ("ke", 4), ("binary", 2)])
def test_the_new_layer_is_the_regression(three_class, base, target, views):
    data = load_labels(three_class, target=target)
    ds = FrameDataset(data, PP)
    new, info = fit_head(base, ds, views=views, c=0.5)
    assert new.num_classes == len(data.classes) and new is not base
    assert info["views"] == views and info["n_train"] == len(data) and info["c"] == 0.5
    assert info["class_counts"] == data.class_counts() and info["features"] == base.num_features
    # every other tensor is the base model's
    old, now = base.state_dict(), new.state_dict()
    for k, v in old.items():
        if not k.startswith("classifier."):
            assert torch.equal(v, now[k]), k
    # the model's probabilities at those views are the regression's on the averaged features
    x, y = pre_logit_features(base, ds, views=views)
    reg = _regression(0.5, 0).fit(x, y)
    probs, labels = predict(new, ds, views=views)
    assert np.array_equal(labels, data.labels)
    np.testing.assert_allclose(probs, reg.predict_proba(x), atol=1e-4)  # float32 network
    assert info["train_accuracy"] == pytest.approx(np.mean(reg.predict(x) == y))


def test_c_is_chosen_by_cross_validation(three_class, base):
    data = load_labels(three_class, target="ke")
    new, info = fit_head(base, FrameDataset(data, PP), grid=(0.01, 1.0), folds=3)
    assert set(info["cv"]) == {0.01, 1.0} and info["c"] in (0.01, 1.0)
    best = min(info["cv"].values(), key=lambda v: v["log_loss"])
    assert info["cv"][info["c"]] == best
    assert all(0 <= v["accuracy"] <= 1 for v in info["cv"].values())


def test_saved_head_records_views_and_evaluate_uses_them(three_class, base, tmp_path):
    from xtalscreen.evaluate.report import evaluate_model

    data = load_labels(three_class, target="ke")
    new, info = fit_head(base, FrameDataset(data, PP), views=2, c=1.0)
    out = save_head(tmp_path / "h.pt", new, PP, data, info,
                    base={"path": "/x/base.pt", "model_name": "spotcount", "classes": ["a"]})
    model, pp, meta = load_model(out)
    assert meta["views"] == 2 and meta["classes"] == ["hit", "maybe", "miss"] and meta["target"] == "ke"
    assert meta["config"]["head"]["c"] == 1.0 and meta["config"]["base"]["path"] == "/x/base.pt"
    assert "operating_points" not in meta
    two = evaluate_model(out, three_class, out_dir=tmp_path / "r2", split=None, progress=False)
    one = evaluate_model(out, three_class, out_dir=tmp_path / "r1", split=None, progress=False, views=1)
    assert two["provenance"]["views"] == 2 and one["provenance"]["views"] == 1
    probs, _ = predict(new, FrameDataset(data, PP), views=2)
    assert two["accuracy"] == pytest.approx(np.mean(probs.argmax(1) == data.labels))


def test_screen_uses_the_recorded_views_without_an_operating_point(three_class, base):
    from xtalscreen.models.tta import view_logits
    from xtalscreen.screen.workers import FrameProcessor

    ds = FrameDataset(load_labels(three_class, target="ke"), PP)
    frames = [ds.read(i) for i in range(4)]
    proc = FrameProcessor(base, PP, ["hit", "maybe", "miss"], default_views=4)
    res = proc.process(frames)
    x = torch.from_numpy(np.stack([proc.prepare(f).x for f in frames]))
    with torch.no_grad():
        p = torch.softmax(view_logits(base, x, 4), 1).numpy()
    np.testing.assert_allclose([r.p_hit for r in res], p[:, 0], atol=1e-5)
    one = FrameProcessor(base, PP, ["hit", "maybe", "miss"], default_views=4, views=1).process(frames)
    assert not np.allclose([r.p_hit for r in one], p[:, 0], atol=1e-5)  # --views wins
    with pytest.raises(ParameterError, match="views"):
        FrameProcessor(base, PP, ["hit", "maybe", "miss"], default_views=3)


def test_bad_requests_are_refused(three_class, base, tmp_path):
    ds_ke = FrameDataset(load_labels(three_class, target="ke"), PP)
    # DiffraNet classes: this set has no blank and no good frame
    with pytest.raises(ParameterError, match=r"blank \(0\).*good \(0\)"):
        fit_head(base, FrameDataset(load_labels(three_class, target="diffranet"), PP))
    for c in (0, -1.0, float("nan"), "1"):
        with pytest.raises(ParameterError, match="c must be"):
            fit_head(base, ds_ke, c=c)
    with pytest.raises(ParameterError, match="folds"):
        fit_head(base, ds_ke, folds=1)
    with pytest.raises(ParameterError, match="views"):
        fit_head(base, ds_ke, views=3)
    # an ensemble has several last layers
    from xtalscreen.models.ensemble import ensemble_checkpoints

    paths = []
    for k in range(2):
        torch.manual_seed(k)
        m = create_model("spotcount", img_size=48, widths=(4, 8, 8, 8), detectors=8)
        paths.append(save_checkpoint(tmp_path / f"m{k}.pt", m, preprocess=PP,
                                     classes=["hit", "maybe", "miss"], target="ke"))
    ens = load_model(ensemble_checkpoints(paths, tmp_path / "e.pt"))[0]
    with pytest.raises(ParameterError, match="ensemble"):
        fit_head(ens, ds_ke, c=1.0)


def test_a_head_that_is_not_linear_in_the_features_is_refused(three_class, base):
    import copy

    odd = copy.deepcopy(base)
    odd.forward_head = lambda x, pre_logits=False: (base.forward_head(x, pre_logits=True) if pre_logits
                                                    else base.forward_head(x) ** 2)
    with pytest.raises(ParameterError, match="not its last linear layer"):
        fit_head(odd, FrameDataset(load_labels(three_class, target="ke"), PP), c=1.0)


def test_unreadable_frames_are_left_out_and_named(three_class, base, tmp_path):
    import shutil

    root = tmp_path / "bad"
    shutil.copytree(three_class, root)
    text = (root / "labels.csv").read_text().splitlines()
    text.append(text[1].replace("shard-00000.h5", "missing.h5", 1))
    (root / "labels.csv").write_text("\n".join(text) + "\n")
    data = load_labels(root, target="ke")
    new, info = fit_head(base, FrameDataset(data, PP), c=1.0)
    assert info["n_train"] == len(data) - 1
    assert len(info["unreadable"]) == 1 and "missing.h5" in info["unreadable"][0]


def test_the_new_layer_follows_the_models_dtype(three_class, base):
    import copy

    dbl = copy.deepcopy(base).double()
    ds = FrameDataset(load_labels(three_class, target="ke"), PP)
    new, _ = fit_head(dbl, ds, c=1.0)
    assert new.get_classifier().weight.dtype == torch.float64
    with torch.no_grad():
        x = torch.from_numpy(ds[0][0][None].numpy()).double()
        assert new(x).shape == (1, 3)
