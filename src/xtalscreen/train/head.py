"""A new read-out on a trained network (linear probing): :func:`fit_head`.

The network's pre-logit features (``forward_head(maps, pre_logits=True)``; for ``spotcount``
the soft spot counts and maxima of its detector maps), averaged over test-time views, are
computed once for every training frame. A multinomial logistic regression (scikit-learn, on
standardised features, its strength ``C`` chosen by stratified cross-validation on the
log-loss) is fitted to them, and written into a copy of the network as its last linear layer.
Everything before that layer is unchanged: the copy has the same preprocessing, input sizes,
BatchNorm statistics and speed. Because the layer is linear, the copy's logits averaged over
``views`` orientations (what ``evaluate``/``screen`` compute with those views) are exactly the
regression's decision function on the averaged features.

Why: a network trained on many frames to count spots (the shipped ``default``) has features
that separate other label schemes of the same frames, e.g. DiffraNet's five classes, better
than a network trained for them from scratch on a few thousand frames, and the fit takes one
pass over the data instead of a training run (``reports/diffranet5_head.md``).

>>> from xtalscreen.train import FrameDataset, load_labels, load_model   # doctest: +SKIP
>>> from xtalscreen.train.head import fit_head, save_head
>>> model, pp, meta = load_model("base.pt")
>>> data = load_labels("sim/", target="diffranet").split("train")
>>> new, info = fit_head(model, FrameDataset(data, pp), views=8)
>>> save_head("diffranet5.pt", new, pp, data, info, base=meta)
"""

from __future__ import annotations

import copy
import math
import warnings

import numpy as np

from xtalscreen.errors import ParameterError

__all__ = ["C_GRID", "pre_logit_features", "fit_head", "save_head"]

#: Inverse regularisation strengths tried when ``c`` is not given.
C_GRID = (0.01, 0.03, 0.1, 0.3, 1.0, 3.0, 10.0, 30.0)


def _name(model) -> str:
    return getattr(model, "model_name", "") or type(model).__name__


def _linear_head(model):
    """The model's last linear layer, or a ParameterError saying why there is none to refit."""
    from torch import nn

    name = _name(model)
    if getattr(model, "aux_logits", False) or getattr(model, "members", None) is not None:
        raise ParameterError(f"{name}: a new head needs one network ending in a linear layer; an "
                             "ensemble or a model with an auxiliary classifier has more than one")
    try:
        layer = model.get_classifier()
    except AttributeError:
        layer = None
    if not isinstance(layer, nn.Linear) or not hasattr(model, "forward_head"):
        raise ParameterError(f"{name}: no linear last layer (get_classifier) behind forward_head "
                             "to replace; give a model of xtalscreen's registry")
    return layer


def pre_logit_features(model, dataset, *, views: int = 1, batch_size: int = 64, device="cpu",
                       workers: int = 0, progress: bool | None = False):
    """``(features, labels)``: the pre-logit features of every item averaged over ``views``
    test-time orientations, ``(N, F)`` float64 (NaN rows for unreadable items), and the labels
    (``-1`` for unreadable items).

    Raises ParameterError when the model's output is not its last linear layer applied to these
    features (checked on the first batch), since a head fitted on them would then not be what
    the model computes.
    """
    import torch

    from xtalscreen.models.tta import dihedral_tensor
    from xtalscreen.preprocess.views import VIEW_SETS, check_views
    from xtalscreen.progress import track
    from xtalscreen.train.loop import _eval_batches

    views = check_views(views)
    layer = _linear_head(model)
    n = len(dataset)
    feats = np.full((n, layer.in_features), np.nan)
    labels = np.full(n, -1, dtype=np.int64)
    model.eval()
    dtype = layer.weight.dtype  # the network's own (inputs come as float32)
    checked = False
    with torch.no_grad():
        for x, y, idx in track(_eval_batches(dataset, batch_size, workers, None),
                               total=math.ceil(n / batch_size), description="features",
                               enabled=progress):
            total = None
            for v in VIEW_SETS[views]:
                maps = model.forward_features(
                    dihedral_tensor(x.to(device=device, dtype=dtype), v).contiguous())
                f = model.forward_head(maps, pre_logits=True)
                if not checked:
                    z = model.forward_head(maps)
                    if z.shape != (f.shape[0], layer.out_features) or not torch.allclose(
                            z.float(), layer(f).float(), rtol=1e-4, atol=1e-4):
                        raise ParameterError(
                            f"{_name(model)}: its output is "
                            "not its last linear layer applied to forward_head(..., "
                            "pre_logits=True); a new head cannot be fitted to it")
                    checked = True
                f = f.double()
                total = f if total is None else total + f
            idx, y = np.asarray(idx), np.asarray(y)
            ok = y >= 0
            feats[idx[ok]] = (total / len(VIEW_SETS[views])).cpu().numpy()[ok]
            labels[idx] = y
    return feats, labels


def _regression(c: float, seed: int):
    from sklearn.linear_model import LogisticRegression
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    return make_pipeline(StandardScaler(), LogisticRegression(C=c, max_iter=5000, random_state=seed))


def _choose_c(x, y, grid, folds: int, seed: int) -> tuple[float, dict]:
    from sklearn.metrics import log_loss
    from sklearn.model_selection import StratifiedKFold

    scores = {}
    split = list(StratifiedKFold(folds, shuffle=True, random_state=seed).split(x, y))
    labels = np.unique(y)
    for c in grid:
        loss = acc = 0.0
        for tr, te in split:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")  # convergence chatter at large C
                m = _regression(c, seed).fit(x[tr], y[tr])
            p = m.predict_proba(x[te])
            loss += log_loss(y[te], p, labels=labels) * len(te)
            acc += float(np.sum(m.classes_[p.argmax(1)] == y[te]))
        scores[float(c)] = {"log_loss": loss / len(y), "accuracy": acc / len(y)}
    best = min(scores, key=lambda c: (scores[c]["log_loss"], c))
    return best, scores


def fit_head(model, dataset, *, views: int = 1, c: float | None = None, grid=C_GRID, folds: int = 5,
             seed: int = 0, batch_size: int = 64, device="cpu", workers: int = 0,
             progress: bool | None = False):
    """A copy of ``model`` whose last linear layer is a logistic regression fitted to its
    pre-logit features on ``dataset`` (a :class:`~xtalscreen.train.datasets.FrameDataset`),
    one output per class of ``dataset.data.classes`` (module docstring).

    Parameters
    ----------
    views : int
        Test-time views the features are averaged over (1, 2, 4, 8); use the same when applying
        the new model (``evaluate --views``; it is recorded in the saved file).
    c : float, optional
        The regression's inverse regularisation strength; None: the value of ``grid`` with the
        lowest ``folds``-fold cross-validated log-loss.

    Returns
    -------
    new_model : XtalModel
        In eval mode; ``new_model.num_classes == len(classes)``.
    info : dict
        ``c``, ``cv`` (log-loss and accuracy per C tried), ``train_accuracy``, ``n_train``,
        ``class_counts``, ``views``, ``features`` (the feature length), ``unreadable`` (items
        left out, as "file (frame N): why" lines).

    Raises
    ------
    ParameterError
        The model has no linear last layer on its pre-logit features; a class has fewer than
        ``folds`` readable frames (or none); a bad ``c``/``folds``.
    """
    import torch

    _linear_head(model)
    if c is not None and not (isinstance(c, (int, float)) and math.isfinite(c) and c > 0):
        raise ParameterError(f"c must be a positive number, got {c!r}")
    if not isinstance(folds, int) or folds < 2:
        raise ParameterError(f"folds must be an integer >= 2, got {folds!r}")
    classes = list(dataset.data.classes)
    feats, labels = pre_logit_features(model, dataset, views=views, batch_size=batch_size,
                                       device=device, workers=workers, progress=progress)
    ok = labels >= 0
    x, y = feats[ok], labels[ok]
    counts = {cl: int(np.sum(y == i)) for i, cl in enumerate(classes)}
    short = [f"{cl} ({k})" for cl, k in counts.items() if k < (folds if c is None else 1)]
    if short:
        raise ParameterError(
            f"a head for the classes {classes} needs readable training frames of every class "
            f"(at least {folds if c is None else 1} each); too few of: {', '.join(short)}")
    cv = {}
    if c is None:
        c, cv = _choose_c(x, y, grid, folds, seed)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        reg = _regression(float(c), seed).fit(x, y)
    scaler, lr = reg[0], reg[-1]
    w = lr.coef_ / scaler.scale_[None]
    b = lr.intercept_ - w @ scaler.mean_
    if len(classes) == 2:  # sklearn's one logit z for class 1: softmax((-z/2, z/2)) = sigmoid(z)
        w, b = np.vstack([-w / 2, w / 2]), np.r_[-b / 2, b / 2]
    old = _linear_head(model)
    new = copy.deepcopy(model).eval()
    new.reset_classifier(len(classes))
    # reset_classifier builds the layer on the CPU in float32: put it where the model is
    layer = new.get_classifier().to(device=old.weight.device, dtype=old.weight.dtype)
    with torch.no_grad():
        layer.weight.copy_(torch.as_tensor(w, dtype=layer.weight.dtype))
        layer.bias.copy_(torch.as_tensor(b, dtype=layer.bias.dtype))
    bad = getattr(dataset, "bad", {})  # filled in this process only (not by loader workers)
    data = dataset.data
    info = {"c": float(c), "cv": cv, "train_accuracy": float(np.mean(reg.predict(x) == y)),
            "n_train": int(len(y)), "class_counts": counts, "views": int(views),
            "features": int(x.shape[1]), "folds": int(folds),
            "unreadable": [bad.get(int(i), f"{data.files[i]} (frame {int(data.frames[i])}): unreadable")
                           for i in np.flatnonzero(~ok)]}
    return new, info


def save_head(path, model, preprocess, data, info: dict, *, base: dict | None = None):
    """Write the model of :func:`fit_head` as a checkpoint (``xtalscreen evaluate``/``screen``
    load it like any other): ``classes``/``target`` of ``data``, the head's ``info`` under
    ``config["head"]``, the base model's file and name under ``config["base"]``, and ``views``
    (the test-time views the head was fitted with; ``evaluate`` and ``screen`` use them unless
    told otherwise). The base model's operating points are not carried over: they belong to
    its outputs, not to the new ones."""
    from xtalscreen.train.checkpoint import save_checkpoint

    base = base or {}
    config = {"head": {k: v for k, v in info.items() if k != "unreadable"},
              "base": {"path": str(base.get("path", "")), "model_name": base.get("model_name", ""),
                       "classes": list(base.get("classes", [])), "target": base.get("target", "")}}
    return save_checkpoint(path, model, preprocess=preprocess, classes=data.classes,
                           target=data.target, config=config, extra={"views": int(info["views"])})
