"""RF/SVM baselines: accuracy on a toy 5-class set, search reproducibility, files, CLI."""

from __future__ import annotations

import csv
import json

import numpy as np
import pytest

from xtalscreen.cli import main
from xtalscreen.errors import InputError, ParameterError
from xtalscreen.features import baselines, datasets


CLASSES = ("blank", "no-crystal", "weak", "good", "strong")


@pytest.fixture(scope="module")
def toy(toy_set_fn):
    return toy_set_fn(12, rng=0), toy_set_fn(6, rng=1)


@pytest.mark.parametrize("clf", ["rf", "svm"])
def test_glcm_classifiers_learn_the_toy_classes(toy, clf):
    (xtr, ytr), (xte, yte) = toy
    pipe = baselines.make_pipeline("glcm", clf, rng=0,
                                   extractor_params={"distances": [1, 2], "angles": [0, 90], "levels": 64})
    pipe.fit(xtr, ytr)
    assert pipe.classes == list(CLASSES)
    rep = baselines.evaluate(pipe, xte, yte)
    assert rep["accuracy"] >= 0.8
    assert rep["binary_accuracy"] >= 0.95
    cm = np.array(rep["confusion"])
    assert cm.shape == (5, 5) and cm.sum() == len(yte)
    assert np.array(rep["binary_confusion"]).sum() == len(yte)


def test_any_sklearn_estimator_is_accepted(toy):
    from sklearn.linear_model import LogisticRegression

    (xtr, ytr), (xte, yte) = toy
    pipe = baselines.make_pipeline("lbp", LogisticRegression(max_iter=500),
                                   extractor_params={"points": 8, "radius": 1}).fit(xtr, ytr)
    assert pipe.classifier_name == "LogisticRegression"
    assert len(pipe.predict(xte)) == len(yte)


def test_search_is_reproducible(toy):
    (xtr, ytr), _ = toy
    space = {**baselines.TABLE8, "rf": {**baselines.TABLE8["rf"], "n_estimators": [10, 30]},
             "glcm": {"distances": [1, 2], "angles": [0, 90]}}
    kw = dict(extractors=("glcm", "lbp"), classifiers=("rf", "svm"), n_trials=3, cv=2, rng=5,
              space=space)
    a = baselines.search(xtr, ytr, **kw)
    b = baselines.search(xtr, ytr, **kw)
    assert a.best_params == b.best_params and a.best_score == b.best_score
    assert [t["value"] for t in a.trials] == [t["value"] for t in b.trials]
    assert 0 <= a.best_score <= 1 and a.n_trials == 3
    with pytest.raises(ParameterError, match="search space"):
        baselines.search(xtr, ytr, extractors=("hog",))


def test_save_load_and_schema_check(toy, tmp_path):
    (xtr, ytr), (xte, _) = toy
    pipe = baselines.make_pipeline("lbp", "rf", rng=0, classifier_params={"n_estimators": 20},
                                   extractor_params={"points": 8, "radius": 1}).fit(xtr, ytr)
    path = baselines.save_pipeline(pipe, tmp_path / "m.joblib")
    meta = json.loads((tmp_path / "m.joblib.json").read_text())
    assert meta["schema_version"] == baselines.SCHEMA_VERSION and meta["classes"] == list(CLASSES)
    assert meta["extractor"]["name"] == "lbp"
    back = baselines.load_pipeline(path)
    assert back.predict(xte) == pipe.predict(xte)
    meta["schema_version"] = 999
    (tmp_path / "m.joblib.json").write_text(json.dumps(meta))
    with pytest.raises(InputError, match="schema"):
        baselines.load_pipeline(path)
    (tmp_path / "junk.joblib").write_text("junk")
    with pytest.raises(InputError):
        baselines.load_pipeline(tmp_path / "junk.joblib")
    with pytest.raises(InputError, match="no such"):
        baselines.load_pipeline(tmp_path / "missing.joblib")


def test_classifier_arguments_are_checked():
    with pytest.raises(ParameterError, match="unknown classifier"):
        baselines.make_classifier("knn")
    with pytest.raises(ParameterError, match="unknown parameter"):
        baselines.make_classifier("svm", n_estimators=3)
    with pytest.raises(ParameterError, match="two classes"):
        baselines.make_pipeline("raw", "rf").fit([np.zeros((8, 8))] * 2, ["a", "a"])


def _write_dataset(root, n, rng, toy_set):
    images, labels = toy_set(n, rng=rng)
    rows = []
    for k, (img, lab) in enumerate(zip(images, labels)):
        np.save(root / f"img{k:03d}.npy", img)
        rows.append({"file": f"img{k:03d}.npy", "frame": 0, "split": "train" if k % 3 else "test",
                     "diffranet_class": lab})
    with open(root / "labels.csv", "w", newline="") as fh:
        w = csv.DictWriter(fh, fieldnames=list(rows[0]))
        w.writeheader()
        w.writerows(rows)
    return labels


def test_dataset_loading_and_cli(tmp_path, capsys, toy_set_fn):
    _write_dataset(tmp_path, 9, 0, toy_set_fn)
    ds = datasets.load_dataset(tmp_path, split="train", size=64)
    assert len(ds.images) == 30 and ds.images[0].shape == (64, 64) and ds.classes == list(CLASSES)
    # class-folder layout
    for c in ("a", "b"):
        (tmp_path / "folders" / c).mkdir(parents=True)
        np.save(tmp_path / "folders" / c / "x.npy", np.ones((16, 16), np.float32))
    ds2 = datasets.load_dataset(tmp_path / "folders", split=None, size=None)
    assert ds2.labels == ["a", "b"]
    with pytest.raises(InputError):
        datasets.load_dataset(tmp_path / "nothing")
    model = tmp_path / "m.joblib"
    assert main(["baseline", "train", str(tmp_path), "--model", str(model), "--size", "64",
                 "--extractor", "glcm", "--classifier", "rf"]) == 0
    capsys.readouterr()
    assert main(["baseline", "evaluate", str(tmp_path), "--model", str(model), "--size", "64",
                 "--json"]) == 0
    rep = json.loads(capsys.readouterr().out)
    assert rep["frames"] == 15 and rep["accuracy"] >= 0.6 and len(rep["confusion"]) == 5
    assert main(["baseline", "evaluate", str(tmp_path), "--model", str(tmp_path / "none.joblib")]) == 1
