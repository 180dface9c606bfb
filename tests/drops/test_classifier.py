"""Drop classifiers: the shipped demo model, checkpoints, ONNX, mappings, thresholds, images."""

from __future__ import annotations

import json

import cv2
import numpy as np
import pytest

from xtalscreen.drops.classifier import (MappedClassifier, Preprocess, ThresholdClassifier,
                                         decode_image, load_classifier, roc_threshold,
                                         save_checkpoint, to_scheme)
from xtalscreen.drops.render import render_drop
from xtalscreen.drops.schemes import MARCO_CLASSES
from xtalscreen.errors import InputError, ParameterError


class Fake:
    """A black-box model with its own classes: probability 1 on ``hot``."""

    name, version, threshold = "fake", "7", None

    def __init__(self, classes, hot=0):
        self.classes, self.hot = tuple(classes), hot

    def predict_proba(self, images):
        p = np.full((len(images), len(self.classes)), 0.0)
        p[:, self.hot] = 1.0
        return p


@pytest.fixture(scope="module")
def demo():
    return load_classifier("demo")


@pytest.fixture(scope="module")
def drops():
    imgs = [render_drop(c, size=128, rng=np.random.default_rng([77, k, i]))
            for k, c in enumerate(MARCO_CLASSES) for i in range(6)]
    return imgs, np.repeat(np.arange(4), 6)


def test_demo_model_loads_and_sees_rendered_classes(demo, drops):
    imgs, y = drops
    assert demo.classes == MARCO_CLASSES and demo.name == "xtalscreen-demo"
    assert 0 < demo.threshold < 1
    p = demo.predict_proba(imgs)
    assert p.shape == (len(imgs), 4)
    np.testing.assert_allclose(p.sum(1), 1.0, atol=1e-5)
    # Demonstration quality on rendered drops: far better than chance (0.25).
    assert (p.argmax(1) == y).mean() >= 0.6
    # Rendered clear drops are the easiest class.
    assert (p[y == 2].argmax(1) == 2).mean() >= 0.8


def test_demo_checkpoint_is_small_and_documented():
    from xtalscreen.drops.classifier import demo_model_path
    import torch

    path = demo_model_path()
    assert path.stat().st_size < 5_000_000
    ck = torch.load(path, weights_only=True)
    assert "demonstration only" in ck["metrics"]["note"]
    assert ck["metrics"]["test_accuracy"] > 0.7


def test_any_image_size_is_resized_colour_or_grey(demo, drops):
    img = drops[0][0]
    big = cv2.resize(img, (300, 300))
    rgb = np.repeat(img[..., None], 3, axis=2)
    p = demo.predict_proba([img, big, rgb])
    np.testing.assert_allclose(p[0], p[2], atol=1e-5)   # grey == grey-as-RGB
    assert p[1].argmax() == p[0].argmax()


@pytest.mark.parametrize("shape", [(20, 20), (128, 300), (0, 0)])
def test_unexpected_size_is_refused(shape):
    with pytest.raises(InputError, match="unexpected"):
        Preprocess().one(np.zeros(shape, np.uint8))


def test_decode_rejects_truncated_and_garbage():
    img = render_drop("clear", size=64, rng=1)
    ok, buf = cv2.imencode(".jpg", img)
    data = buf.tobytes()
    assert decode_image(data).shape == (64, 64)
    with pytest.raises(InputError, match="truncated JPEG"):
        decode_image(data[: len(data) // 2], where="x.jpg")
    with pytest.raises(InputError, match="not a readable image"):
        decode_image(b"GIF89a nonsense", where="x.gif")
    with pytest.raises(InputError, match="empty"):
        decode_image(b"", where="x.jpg")


def test_checkpoint_round_trip_registry_model(tmp_path, drops):
    from xtalscreen.models import create_model

    torch = pytest.importorskip("torch")
    torch.manual_seed(0)
    m = create_model("c4_cnn", num_classes=4, img_size=32, in_chans=3, widths=(4, 8), hidden=8)
    prep = Preprocess(in_chans=3, size=(32, 32))
    path = save_checkpoint(tmp_path / "m.pt", m, classes=["other", "clear", "precipitate", "crystal"],
                           name="tiny", version="0.1", preprocess=prep, threshold=0.3)
    clf = load_classifier(path)
    assert clf.classes == MARCO_CLASSES and clf.version == "0.1" and clf.threshold == 0.3
    # reordered to MARCO order: the raw model's column 3 (crystal) becomes column 0
    raw = clf.base.predict_proba(drops[0][:3])
    np.testing.assert_allclose(clf.predict_proba(drops[0][:3]), raw[:, [3, 2, 1, 0]])
    assert load_classifier(path, threshold=0.9).threshold == 0.9


def test_classes_not_matching_scheme_is_clear_error(tmp_path):
    from xtalscreen.models import create_model

    m = create_model("c4_cnn", num_classes=3, img_size=32, in_chans=1, widths=(4,), hidden=4)
    path = save_checkpoint(tmp_path / "m.pt", m, classes=["hit", "maybe", "miss"], name="x",
                           version="1", preprocess=Preprocess(1, (32, 32)))
    with pytest.raises(ParameterError, match=r"not the MARCO scheme.*--mapping"):
        load_classifier(path)
    with pytest.raises(ParameterError, match="not the MARCO scheme"):
        to_scheme(Fake(["crystal", "precipitate", "clear", "skin"]))
    mapping = tmp_path / "map.json"
    mapping.write_text(json.dumps({"hit": "crystal", "maybe": "Crystal", "miss": "clear"}))
    clf = load_classifier(path, mapping=mapping)
    assert clf.classes == MARCO_CLASSES
    with pytest.raises(ParameterError, match="either a mapping file or a threshold class"):
        load_classifier(path, mapping=mapping, threshold_class="hit")
    with pytest.raises(InputError, match="no such model file"):
        load_classifier(tmp_path / "nope.pt")
    (tmp_path / "junk.pt").write_bytes(b"junk")
    with pytest.raises(InputError, match="not a readable model checkpoint"):
        load_classifier(tmp_path / "junk.pt")


def test_mapping_sums_probabilities_and_checks_every_class():
    base = Fake(["Crystals high", "crystals_low", "skin", "clear"], hot=1)
    m = MappedClassifier(base, {"crystals high": "crystal", "crystals low": "crystal",
                                "skin": "other", "clear": "clear"})
    np.testing.assert_allclose(m.predict_proba([0, 0]), [[1, 0, 0, 0]] * 2)
    with pytest.raises(ParameterError, match="'skin' is not mapped"):
        MappedClassifier(base, {"crystals high": "crystal", "crystals low": "crystal", "clear": "clear"})
    with pytest.raises(ParameterError, match="not one of"):
        MappedClassifier(base, {"crystals high": "gem", "crystals low": "crystal", "skin": "other",
                                "clear": "clear"})


def test_threshold_on_one_class_as_c4():
    base = Fake(["xtal", "no xtal"], hot=0)
    t = ThresholdClassifier(base, "xtal", threshold=0.7)
    p = t.predict_proba([0])
    assert t.threshold == 0.7 and p[0, 0] == 1.0 and p[0].sum() == 1.0
    with pytest.raises(ParameterError, match="not a class of model"):
        ThresholdClassifier(base, "gem")
    with pytest.raises(ParameterError, match="threshold must be in"):
        ThresholdClassifier(base, "xtal", threshold=1.5)


def test_roc_threshold_keeps_min_tpr():
    rng = np.random.default_rng(0)
    y = rng.random(500) < 0.3
    p = np.clip(np.where(y, 0.7, 0.3) + rng.normal(0, 0.2, 500), 0, 1)
    t = roc_threshold(p, y, min_tpr=0.8)
    assert (p[y] >= t).mean() >= 0.8
    assert (p[y] >= t + 1e-9).mean() < 0.8       # the highest such threshold
    with pytest.raises(ParameterError, match="no positive"):
        roc_threshold(p, np.zeros(500, bool))


@pytest.mark.filterwarnings("ignore::DeprecationWarning", "ignore::torch.jit.TracerWarning")
def test_onnx_model_with_sidecar(tmp_path, drops):
    pytest.importorskip("onnxruntime")
    pytest.importorskip("onnx")
    import torch

    from xtalscreen.models import create_model

    torch.manual_seed(0)
    m = create_model("c4_cnn", num_classes=4, img_size=32, in_chans=1, widths=(4, 8), hidden=8).eval()
    path = tmp_path / "tiny.onnx"
    torch.onnx.export(m, (torch.zeros(1, 1, 32, 32),), str(path), input_names=["x"],
                      output_names=["logits"], dynamic_axes={"x": {0: "n"}, "logits": {0: "n"}},
                      dynamo=False)
    with pytest.raises(InputError, match="sidecar"):
        load_classifier(path)
    (tmp_path / "tiny.onnx.json").write_text(json.dumps(
        {"classes": list(MARCO_CLASSES), "name": "tiny-onnx", "version": "3", "threshold": 0.4,
         "input_size": [1, 32, 32]}))
    clf = load_classifier(path)
    assert (clf.name, clf.version, clf.threshold) == ("tiny-onnx", "3", 0.4)
    p = clf.predict_proba(drops[0][:5])
    with torch.inference_mode():
        ref = torch.softmax(m(torch.from_numpy(Preprocess(1, (32, 32)).batch(drops[0][:5]))), 1).numpy()
    np.testing.assert_allclose(p, ref, atol=1e-4)


def test_train_demo_smoke(tmp_path):
    from xtalscreen.drops.demo_model import DemoConfig, train_demo

    cfg = DemoConfig(per_class=2, val_per_class=2, test_per_class=1, epochs=1, batch=4)
    msgs = []
    m = train_demo(tmp_path / "d.pt", config=cfg, progress=msgs.append)
    clf = load_classifier(tmp_path / "d.pt")
    assert clf.classes == MARCO_CLASSES and clf.version == "demo-1" and 0 <= clf.threshold <= 1
    assert 0 <= m["test_accuracy"] <= 1 and "demonstration only" in m["note"]
    assert any("epoch 1/1" in s for s in msgs)
    with pytest.raises(ParameterError, match="sizes must all be >= 1"):
        train_demo(tmp_path / "e.pt", config=DemoConfig(epochs=0))
