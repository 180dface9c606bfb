"""Feature + classifier pipelines (paper 002's RF/SVM baselines), their search, scoring and files.

- :class:`FeaturePipeline` — an :class:`~xtalscreen.features.extractors.Extractor`, a
  standard scaler and any scikit-learn classifier; ``fit(images, labels)``, ``predict(images)``.
- :func:`make_classifier` — ``"rf"`` (random forest) or ``"svm"`` (RBF SVM) with paper 002's
  hyper-parameters; any scikit-learn estimator instance is accepted by :func:`make_pipeline`.
- :func:`search` — joint Optuna (TPE) search over extractor and classifier hyper-parameters,
  cross-validated, reproducible by seed; default space :data:`TABLE8` (paper 002, Table 8).
- :func:`evaluate` — accuracy and confusion matrices in the DiffraNet 5-class form and the binary
  form (no diffraction = blank/no-crystal/miss vs diffraction).
- :func:`save_pipeline` / :func:`load_pipeline` — joblib file + JSON sidecar with the feature
  parameters, class names and a schema version; loading refuses another schema with a message.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from xtalscreen.errors import InputError, ParameterError
from xtalscreen.features.extractors import Extractor, make_extractor

SCHEMA_VERSION = 1
DIFFRANET_CLASSES = ("blank", "no-crystal", "weak", "good", "strong")
KE_CLASSES = ("miss", "maybe", "hit")
#: Classes that mean "no diffraction" in the binary form.
NEGATIVE_CLASSES = frozenset({"blank", "no-crystal", "miss"})

#: Paper 002, Table 8: the search space of the RF/SVM baselines. (LBP radius 0 of the table is
#: left out: a radius must be > 0.)
TABLE8 = {
    "svm": {"C": [1.0] + [2.0 ** x for x in range(-5, 16, 2)],
            "gamma": ["scale"] + [2.0 ** x for x in range(-15, 4, 2)],
            "class_weight": ["none", "balanced", "w35", "w30"]},
    "rf": {"n_estimators": [10, 100, 1000], "max_features": ["sqrt", 0.25, 0.5, 0.75],
           "max_depth": [0, 2, 4, 6, 8, 10, 20], "class_weight": ["none"]},
    "glcm": {"distances": [1, 2, 4, 5, 8], "angles": [0, 45, 90, 135]},
    "lbp": {"points": [4, 8, 16, 24], "radius": [1, 2, 3]},
    "sift": {"n_clusters": [10, 25, 50, 100, 250, 500, 1000, 5000]},
    "raw": {"size": [16, 32, 64]},
}

_CLASS_WEIGHTS = {"none": None, "balanced": "balanced",
                  "w35": [0.35, 0.35, 0.1, 0.1, 0.1], "w30": [0.3, 0.3, 0.133, 0.133, 0.133]}


def class_order(labels) -> list[str]:
    """DiffraNet order, Ke order, or sorted, depending on which labels occur."""
    u = set(map(str, labels))
    for ref in (DIFFRANET_CLASSES, KE_CLASSES):
        if u <= set(ref):
            return [c for c in ref if c in u]
    return sorted(u)


def _class_weight(spec, classes):
    if spec is None or isinstance(spec, dict) or (isinstance(spec, str) and spec == "balanced"):
        return spec
    w = _CLASS_WEIGHTS.get(spec, spec) if isinstance(spec, str) else list(spec)
    if w is None or w == "balanced":
        return w
    if len(w) != len(classes):
        raise ParameterError(f"class weights {spec!r} need {len(w)} classes, the data have {len(classes)}")
    return {i: float(v) for i, v in enumerate(w)}


def make_classifier(name: str = "rf", *, rng=None, classes=None, **params):
    """A scikit-learn classifier: ``"rf"`` RandomForestClassifier or ``"svm"`` SVC (RBF).

    Parameters (paper 002 names): rf — ``n_estimators`` (100), ``max_features`` ("sqrt"),
    ``max_depth`` (None; 0 also means None), ``class_weight``; svm — ``C`` (1), ``gamma``
    ("scale"; 0 also means "scale"), ``class_weight`` (None, "balanced", "w35", "w30" or a list
    per class).
    """
    seed = int(np.random.default_rng(rng).integers(2 ** 31 - 1))
    classes = classes or []
    if name == "rf":
        from sklearn.ensemble import RandomForestClassifier

        known = {"n_estimators", "max_features", "max_depth", "class_weight", "min_samples_leaf"}
        _check_keys(name, params, known)
        md = params.get("max_depth")
        return RandomForestClassifier(
            n_estimators=int(params.get("n_estimators", 100)),
            max_features=params.get("max_features", "sqrt"),
            max_depth=None if not md else int(md),
            min_samples_leaf=int(params.get("min_samples_leaf", 1)),
            class_weight=_class_weight(params.get("class_weight"), classes),
            random_state=seed, n_jobs=1)
    if name == "svm":
        from sklearn.svm import SVC

        _check_keys(name, params, {"C", "gamma", "class_weight"})
        gamma = params.get("gamma", "scale")
        gamma = "scale" if gamma in (0, 0.0, None) else gamma
        return SVC(C=float(params.get("C", 1.0)), gamma=gamma, kernel="rbf",
                   class_weight=_class_weight(params.get("class_weight"), classes),
                   random_state=seed)
    raise ParameterError(f"unknown classifier {name!r}; known: 'rf', 'svm' (or pass an estimator)")


def _check_keys(name, params, known):
    bad = sorted(set(params) - set(known))
    if bad:
        raise ParameterError(f"unknown parameter(s) {bad} for classifier {name!r}; known: {sorted(known)}")


# ---------------------------------------------------------------------------------------------
@dataclass
class FeaturePipeline:
    """Extractor → standard scaler → classifier, on lists of 2-D images and string labels."""

    extractor: Extractor
    classifier: object
    classes: list[str] = field(default_factory=list)
    classifier_name: str = ""
    classifier_params: dict = field(default_factory=dict)
    input_size: int | None = None   # side of the square images it was trained on (pixels)
    scaler_: object = field(default=None, repr=False)

    def features(self, images) -> np.ndarray:
        return self.extractor.transform(images)

    def fit(self, images, labels, *, features: np.ndarray | None = None) -> "FeaturePipeline":
        from sklearn.preprocessing import StandardScaler

        labels = [str(v) for v in labels]
        if len(labels) != len(images if features is None else features):
            raise ParameterError("images and labels differ in length")
        if len(set(labels)) < 2:
            raise ParameterError(f"training needs at least two classes, got {sorted(set(labels))}")
        if not self.classes:
            self.classes = class_order(labels)
        unknown = sorted(set(labels) - set(self.classes))
        if unknown:
            raise ParameterError(f"labels {unknown} are not among the classes {self.classes}")
        if features is None:
            self.extractor.fit(images)
            features = self.extractor.transform(images)
        y = np.array([self.classes.index(v) for v in labels])
        self.scaler_ = StandardScaler().fit(features)
        self.classifier.fit(self.scaler_.transform(features), y)
        return self

    def predict_features(self, features: np.ndarray) -> list[str]:
        if self.scaler_ is None:
            raise ParameterError("the pipeline is not fitted")
        idx = self.classifier.predict(self.scaler_.transform(features))
        return [self.classes[int(i)] for i in idx]

    def predict(self, images) -> list[str]:
        return self.predict_features(self.features(images))

    def extractor_spec(self) -> dict:
        return self.extractor.spec()


def make_pipeline(extractor="glcm", classifier="rf", *, classes=None, rng=None, image_size=None,
                  extractor_params: dict | None = None, classifier_params: dict | None = None
                  ) -> FeaturePipeline:
    """A :class:`FeaturePipeline`; ``extractor``/``classifier`` are names or ready objects.

    Defaults: GLCM with paper 002's best RF setting (distances 1, 2, 5, 8; angles 45, 135),
    LBP P=24, R=3, SIFT 100 words, raw 32×32.
    """
    defaults = {"glcm": {"distances": [1, 2, 5, 8], "angles": [45, 135]},
                "lbp": {"points": 24, "radius": 3}, "sift": {"n_clusters": 100}, "raw": {"size": 32}}
    if isinstance(extractor, str):
        ep = dict(defaults.get(extractor, {}))
        ep.update(extractor_params or {})
        extractor = make_extractor(extractor, image_size=image_size, rng=rng, **ep)
    cp = dict(classifier_params or {})
    if isinstance(classifier, str):
        name = classifier
        clf = make_classifier(classifier, rng=rng, classes=list(classes or []), **cp)
    else:
        if not (hasattr(classifier, "fit") and hasattr(classifier, "predict")):
            raise ParameterError("classifier must be 'rf', 'svm' or a scikit-learn estimator")
        name = type(classifier).__name__
        clf = classifier
    return FeaturePipeline(extractor=extractor, classifier=clf, classes=list(classes or []),
                           classifier_name=name, classifier_params=cp)


# ---------------------------------------------------------------------------------------------
@dataclass
class SearchResult:
    best_params: dict
    best_score: float
    n_trials: int
    pipeline: FeaturePipeline
    trials: list = field(default_factory=list)


def _suggest(trial, extractors, classifiers, space, n_classes):
    ex = trial.suggest_categorical("extractor", list(extractors))
    ep: dict = {}
    if ex == "glcm":
        ds = [d for d in space["glcm"]["distances"] if trial.suggest_categorical(f"glcm_d{d}", [True, False])]
        an = [a for a in space["glcm"]["angles"] if trial.suggest_categorical(f"glcm_a{a}", [True, False])]
        ep = {"distances": ds or [space["glcm"]["distances"][0]],
              "angles": an or [space["glcm"]["angles"][0]]}
    elif ex == "lbp":
        ep = {"points": trial.suggest_categorical("lbp_points", space["lbp"]["points"]),
              "radius": trial.suggest_categorical("lbp_radius", space["lbp"]["radius"])}
    elif ex == "sift":
        ep = {"n_clusters": trial.suggest_categorical("sift_clusters", space["sift"]["n_clusters"])}
    elif ex == "raw":
        ep = {"size": trial.suggest_categorical("raw_size", space["raw"]["size"])}
    clf = trial.suggest_categorical("classifier", list(classifiers))
    cp: dict = {}
    for k, values in space[clf].items():
        if k == "class_weight":
            values = [v for v in values if v in ("none", "balanced") or n_classes == 5]
        v = trial.suggest_categorical(f"{clf}_{k}", values)
        cp[k] = None if v == "none" else v
    return ex, ep, clf, cp


def search(images, labels, *, classes=None, extractors=("glcm", "lbp"), classifiers=("rf", "svm"),
           space: dict | None = None, n_trials: int = 20, cv: int = 3, rng=0,
           timeout: float | None = None, image_size: int | None = None) -> SearchResult:
    """Joint Optuna (TPE) search of extractor and classifier hyper-parameters.

    Each trial draws an extractor and its parameters, a classifier and its parameters from
    ``space`` (default :data:`TABLE8`), and scores the mean accuracy of a stratified ``cv``-fold
    cross-validation. Features are cached per extractor setting. The same ``rng`` seed gives
    the same trials and result. The best setting is refitted on all the data.

    Returns
    -------
    SearchResult
        best_params, best_score (CV accuracy), n_trials, the refitted pipeline, all trials.
    """
    import optuna
    from sklearn.model_selection import StratifiedKFold

    space = space or TABLE8
    for name in (*extractors, *classifiers):
        if name not in space:
            raise ParameterError(f"{name!r} is not in the search space; known: {sorted(space)}")
    if isinstance(n_trials, bool) or int(n_trials) < 1:
        raise ParameterError(f"n_trials must be >= 1, got {n_trials!r}")
    labels = [str(v) for v in labels]
    classes = list(classes or class_order(labels))
    y = np.array([classes.index(v) for v in labels])
    counts = np.bincount(y, minlength=len(classes))
    folds = int(min(cv, counts[counts > 0].min()))
    if folds < 2:
        raise ParameterError(f"cross-validation needs >= 2 examples per class; counts {counts.tolist()}")
    seed = int(np.random.default_rng(rng).integers(2 ** 31 - 1))
    splitter = StratifiedKFold(n_splits=folds, shuffle=True, random_state=seed)
    splits = list(splitter.split(np.zeros(len(y)), y))
    cache: dict[str, np.ndarray] = {}

    def feats(ex, ep):
        key = json.dumps([ex, ep], sort_keys=True)
        if key not in cache:
            e = make_extractor(ex, image_size=image_size, rng=seed, **ep).fit(images)
            cache[key] = e.transform(images)
        return cache[key]

    def objective(trial):
        ex, ep, clf, cp = _suggest(trial, extractors, classifiers, space, len(classes))
        X = feats(ex, ep)
        scores = []
        for tr, te in splits:
            pipe = make_pipeline(make_extractor(ex, **ep), clf, classes=classes, rng=seed,
                                 classifier_params=cp)
            pipe.fit(None, [classes[i] for i in y[tr]], features=X[tr])
            pred = pipe.predict_features(X[te])
            scores.append(np.mean([p == classes[i] for p, i in zip(pred, y[te])]))
        return float(np.mean(scores))

    optuna.logging.set_verbosity(optuna.logging.WARNING)
    study = optuna.create_study(direction="maximize", sampler=optuna.samplers.TPESampler(seed=seed))
    study.optimize(objective, n_trials=int(n_trials), timeout=timeout, n_jobs=1)
    best = study.best_trial
    ex, ep, clf, cp = _suggest(optuna.trial.FixedTrial(best.params), extractors, classifiers,
                               space, len(classes))
    pipe = make_pipeline(ex, clf, classes=classes, rng=seed, image_size=image_size, extractor_params=ep,
                         classifier_params=cp)
    pipe.fit(images, labels)
    trials = [{"number": t.number, "value": t.value, "params": t.params} for t in study.trials]
    return SearchResult(best_params={"extractor": ex, "extractor_params": ep, "classifier": clf,
                                     "classifier_params": cp},
                        best_score=float(best.value), n_trials=len(study.trials), pipeline=pipe,
                        trials=trials)


# ---------------------------------------------------------------------------------------------
def confusion(true, pred, classes) -> np.ndarray:
    m = np.zeros((len(classes), len(classes)), dtype=np.int64)
    idx = {c: i for i, c in enumerate(classes)}
    for t, p in zip(true, pred):
        if t in idx and p in idx:
            m[idx[t], idx[p]] += 1
    return m


def evaluate(pipe: FeaturePipeline, images, labels) -> dict:
    """Accuracy and confusion matrices (rows: true class, columns: predicted), multi-class and
    binary (diffraction vs none)."""
    labels = [str(v) for v in labels]
    pred = pipe.predict(images)
    return score(labels, pred, pipe.classes)


def score(labels, pred, classes) -> dict:
    labels = [str(v) for v in labels]
    acc = float(np.mean([a == b for a, b in zip(labels, pred)])) if labels else float("nan")
    cm = confusion(labels, pred, classes)
    bl = ["diffraction" if v not in NEGATIVE_CLASSES else "none" for v in labels]
    bp = ["diffraction" if v not in NEGATIVE_CLASSES else "none" for v in pred]
    bacc = float(np.mean([a == b for a, b in zip(bl, bp)])) if labels else float("nan")
    with np.errstate(invalid="ignore", divide="ignore"):
        recall = np.diag(cm) / cm.sum(axis=1)
        precision = np.diag(cm) / cm.sum(axis=0)
    return {"accuracy": acc, "classes": list(classes), "confusion": cm.tolist(),
            "recall": {c: (None if np.isnan(r) else float(r)) for c, r in zip(classes, recall)},
            "precision": {c: (None if np.isnan(p) else float(p)) for c, p in zip(classes, precision)},
            "binary_accuracy": bacc, "binary_classes": ["none", "diffraction"],
            "binary_confusion": confusion(bl, bp, ["none", "diffraction"]).tolist()}


def format_report(info: dict) -> str:
    """Plain-text report of :func:`evaluate` (or of a training run)."""
    if "accuracy" not in info:
        return "\n".join(f"{k}: {v}" for k, v in info.items())
    lines = [f"accuracy: {100 * info['accuracy']:.2f} % on {info.get('frames', '?')} frames",
             f"binary (diffraction vs none) accuracy: {100 * info['binary_accuracy']:.2f} %",
             "confusion (rows true, columns predicted):"]
    cls = info["classes"]
    width = max(len(c) for c in cls + ["true"]) + 1
    lines.append(" " * width + "".join(f"{c:>{width}}" for c in cls))
    for c, row in zip(cls, info["confusion"]):
        lines.append(f"{c:<{width}}" + "".join(f"{v:>{width}}" for v in row))
    lines.append("binary confusion: " + json.dumps(info["binary_confusion"]))
    return "\n".join(lines)


# ---------------------------------------------------------------------------------------------
def _sidecar(path: Path) -> Path:
    return path.with_suffix(path.suffix + ".json")


def save_pipeline(pipe: FeaturePipeline, path, *, extra: dict | None = None) -> Path:
    """Write ``path`` (joblib) and ``path.json`` (schema, features, classifier, classes)."""
    import joblib

    from xtalscreen import __version__

    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    joblib.dump({"schema_version": SCHEMA_VERSION, "kind": "xtalscreen.features.FeaturePipeline",
                 "pipeline": pipe}, path)
    meta = {"schema_version": SCHEMA_VERSION, "xtalscreen": __version__,
            "extractor": pipe.extractor_spec(), "classifier": pipe.classifier_name,
            "classifier_params": pipe.classifier_params, "classes": pipe.classes,
            "input_size": pipe.input_size, **(extra or {})}
    _sidecar(path).write_text(json.dumps(meta, indent=1, default=str))
    return path


def load_pipeline(path) -> FeaturePipeline:
    """Read a pipeline written by :func:`save_pipeline`; other schema versions are refused."""
    import joblib

    path = Path(path)
    if not path.is_file():
        raise InputError("no such pipeline file; train one with 'xtalscreen baseline train'", path=str(path))
    side = _sidecar(path)
    if side.is_file():
        try:
            meta = json.loads(side.read_text())
        except ValueError:
            raise InputError("the JSON sidecar is unreadable; retrain the pipeline", path=str(side)) from None
        if meta.get("schema_version") != SCHEMA_VERSION:
            raise InputError(f"pipeline schema {meta.get('schema_version')!r} is not the schema this "
                             f"xtalscreen reads ({SCHEMA_VERSION}); retrain with 'xtalscreen "
                             "baseline train'", path=str(path))
    try:
        obj = joblib.load(path)
    except Exception as exc:  # joblib/pickle raise many types for a foreign or damaged file
        raise InputError(f"not a readable pipeline file ({type(exc).__name__}: {exc})", path=str(path)) from None
    if not isinstance(obj, dict) or obj.get("kind") != "xtalscreen.features.FeaturePipeline":
        raise InputError("not an xtalscreen feature pipeline file", path=str(path))
    if obj.get("schema_version") != SCHEMA_VERSION:
        raise InputError(f"pipeline schema {obj.get('schema_version')!r} is not the schema this "
                         f"xtalscreen reads ({SCHEMA_VERSION}); retrain with 'xtalscreen baseline "
                         "train'", path=str(path))
    return obj["pipeline"]
