"""Classification metrics as plain numpy functions (no scikit-learn needed).

Conventions: ``y_true`` / ``y_pred`` are integer class indices; confusion matrices have true
classes in rows and predicted classes in columns; binary scores are "probability of the
positive class" with positives labelled 1 (True).

- :func:`confusion_matrix`, :func:`accuracy`, :func:`precision_recall`;
- :func:`sensitivity_specificity` (paper 003: sensitivity = TP / (TP + FN), specificity =
  TN / (TN + FP));
- :func:`collapse_probs`: paper 001 Table 3's Hit+Maybe vs Miss (add the probabilities of the
  classes that are merged, then take the larger);
- :func:`roc_curve`, :func:`auc`, :func:`threshold_at_tpr` (paper 000 chose the threshold at a
  minimum TPR of 0.8);
- :func:`reliability`, :func:`expected_calibration_error`.
"""

from __future__ import annotations

import numpy as np

from xtalscreen.errors import ParameterError

__all__ = ["confusion_matrix", "accuracy", "precision_recall", "sensitivity_specificity",
           "collapse_probs", "roc_curve", "auc", "threshold_at_tpr", "reliability",
           "expected_calibration_error"]


def _labels(y, name: str) -> np.ndarray:
    a = np.asarray(y)
    if a.ndim != 1:
        raise ParameterError(f"{name} must be 1-D, got shape {a.shape}")
    if a.size and a.dtype.kind not in "iub":
        raise ParameterError(f"{name} must hold integer class indices, got dtype {a.dtype}")
    return a.astype(np.int64)


def confusion_matrix(y_true, y_pred, *, n_classes: int | None = None) -> np.ndarray:
    """Counts ``cm[i, j]`` of items of true class ``i`` predicted as ``j``.

    Parameters
    ----------
    y_true, y_pred : array of int, shape (N,)
    n_classes : int, keyword-only
        Default: ``max(label) + 1``.

    Returns
    -------
    ndarray of int64, shape (n_classes, n_classes)

    Examples
    --------
    >>> confusion_matrix([0, 0, 1, 1], [0, 1, 1, 1])
    array([[1, 1],
           [0, 2]])
    """
    t, p = _labels(y_true, "y_true"), _labels(y_pred, "y_pred")
    if t.shape != p.shape:
        raise ParameterError(f"y_true and y_pred differ in length: {t.size} vs {p.size}")
    k = int(n_classes) if n_classes is not None else int(max(t.max(initial=-1), p.max(initial=-1)) + 1)
    if t.size and (min(t.min(), p.min()) < 0 or max(t.max(), p.max()) >= k):
        raise ParameterError(f"class indices must be in 0..{k - 1}")
    return np.bincount(t * k + p, minlength=k * k).reshape(k, k)


def accuracy(y_true, y_pred) -> float:
    """Fraction of items predicted right (NaN for no item)."""
    t, p = _labels(y_true, "y_true"), _labels(y_pred, "y_pred")
    if t.shape != p.shape:
        raise ParameterError(f"y_true and y_pred differ in length: {t.size} vs {p.size}")
    return float((t == p).mean()) if t.size else float("nan")


def precision_recall(cm) -> tuple[np.ndarray, np.ndarray]:
    """Per-class precision (column-wise) and recall (row-wise) of a confusion matrix; NaN
    where a class was never predicted / never present."""
    cm = np.asarray(cm, dtype=float)
    if cm.ndim != 2 or cm.shape[0] != cm.shape[1]:
        raise ParameterError(f"cm must be a square matrix, got shape {cm.shape}")
    d = np.diag(cm)
    with np.errstate(invalid="ignore", divide="ignore"):
        return d / cm.sum(0), d / cm.sum(1)


def sensitivity_specificity(y_true, y_pred) -> tuple[float, float]:
    """Sensitivity TP/(TP+FN) and specificity TN/(TN+FP) of binary labels (positive = 1)."""
    t = _labels(y_true, "y_true").astype(bool)
    p = _labels(y_pred, "y_pred").astype(bool)
    if t.shape != p.shape:
        raise ParameterError(f"y_true and y_pred differ in length: {t.size} vs {p.size}")
    tp, fn = np.sum(t & p), np.sum(t & ~p)
    tn, fp = np.sum(~t & ~p), np.sum(~t & p)
    sens = tp / (tp + fn) if tp + fn else float("nan")
    spec = tn / (tn + fp) if tn + fp else float("nan")
    return float(sens), float(spec)


def collapse_probs(probs, groups) -> np.ndarray:
    """Sum class probabilities into groups: ``groups`` is a list of lists of class indices.

    Paper 001 Table 3: Hit+Maybe vs Miss on (hit, maybe, miss) outputs is
    ``collapse_probs(p, [[0, 1], [2]])``; then ``argmax`` decides.

    Returns
    -------
    ndarray, shape (N, len(groups))
    """
    p = np.asarray(probs, dtype=float)
    if p.ndim != 2:
        raise ParameterError(f"probs must be (N, classes), got shape {p.shape}")
    flat = [i for g in groups for i in g]
    if sorted(flat) != sorted(set(flat)) or (flat and (min(flat) < 0 or max(flat) >= p.shape[1])):
        raise ParameterError(f"groups must be disjoint class indices in 0..{p.shape[1] - 1}, got {groups}")
    return np.stack([p[:, list(g)].sum(1) for g in groups], axis=1)


def roc_curve(y_true, score) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """ROC of a binary score: false- and true-positive rates at every distinct threshold.

    An item is called positive when ``score >= threshold``. The curve starts at (0, 0)
    (threshold ``inf``) and ends at (1, 1).

    Returns
    -------
    fpr, tpr, thresholds : ndarray, shape (M,)
    """
    t = _labels(y_true, "y_true").astype(bool)
    s = np.asarray(score, dtype=float)
    if s.shape != t.shape:
        raise ParameterError(f"score must have one value per item: {s.shape} vs {t.shape}")
    npos, nneg = int(t.sum()), int((~t).sum())
    if npos == 0 or nneg == 0:
        raise ParameterError("ROC needs both positive and negative items")
    order = np.argsort(-s, kind="mergesort")
    s, t = s[order], t[order]
    last = np.r_[np.flatnonzero(np.diff(s)), s.size - 1]  # last index of each distinct score
    tps = np.cumsum(t)[last]
    fps = (last + 1) - tps
    fpr = np.r_[0.0, fps / nneg]
    tpr = np.r_[0.0, tps / npos]
    return fpr, tpr, np.r_[np.inf, s[last]]


def auc(x, y) -> float:
    """Area under a curve by the trapezoid rule (``x`` increasing), e.g. ``auc(fpr, tpr)``."""
    x, y = np.asarray(x, float), np.asarray(y, float)
    if x.shape != y.shape or x.ndim != 1:
        raise ParameterError("x and y must be 1-D of equal length")
    return float(np.sum(np.diff(x) * (y[1:] + y[:-1]) / 2.0))


def threshold_at_tpr(fpr, tpr, thresholds, *, min_tpr: float = 0.8) -> tuple[float, float, float]:
    """The highest threshold whose TPR is at least ``min_tpr`` (so the lowest FPR there).

    Returns
    -------
    threshold, tpr, fpr : float
    """
    if not 0.0 < min_tpr <= 1.0:
        raise ParameterError(f"min_tpr must be in (0, 1], got {min_tpr!r}")
    fpr, tpr, thr = (np.asarray(v, float) for v in (fpr, tpr, thresholds))
    ok = np.flatnonzero(tpr >= min_tpr - 1e-12)
    i = int(ok[0])  # thresholds decrease along the curve: the first is the highest
    return float(thr[i]), float(tpr[i]), float(fpr[i])


def reliability(probs, y_true, *, n_bins: int = 10) -> dict[str, np.ndarray]:
    """Reliability diagram data: per confidence bin, mean confidence, accuracy and count.

    The confidence of an item is its largest class probability; bins split [0, 1] evenly
    (a confidence of exactly 1 falls in the last bin).

    Returns
    -------
    dict with ``edges`` (n_bins + 1,), ``confidence``, ``accuracy`` (NaN for empty bins) and
    ``count`` (n_bins,)
    """
    p = np.asarray(probs, float)
    t = _labels(y_true, "y_true")
    if p.ndim != 2 or p.shape[0] != t.size:
        raise ParameterError(f"probs must be (N, classes) with N = len(y_true), got {p.shape}")
    if int(n_bins) != n_bins or n_bins < 1:
        raise ParameterError(f"n_bins must be an integer >= 1, got {n_bins!r}")
    conf = p.max(1)
    correct = (p.argmax(1) == t).astype(float)
    edges = np.linspace(0.0, 1.0, int(n_bins) + 1)
    b = np.clip(np.digitize(conf, edges[1:-1], right=True), 0, n_bins - 1)
    count = np.bincount(b, minlength=n_bins)
    with np.errstate(invalid="ignore", divide="ignore"):
        mc = np.bincount(b, weights=conf, minlength=n_bins) / count
        acc = np.bincount(b, weights=correct, minlength=n_bins) / count
    return {"edges": edges, "confidence": mc, "accuracy": acc, "count": count}


def expected_calibration_error(probs, y_true, *, n_bins: int = 10) -> float:
    """ECE = sum over bins of (bin count / N) * |accuracy - mean confidence|."""
    r = reliability(probs, y_true, n_bins=n_bins)
    n = r["count"].sum()
    if n == 0:
        return float("nan")
    ok = r["count"] > 0
    return float(np.sum(r["count"][ok] / n * np.abs(r["accuracy"][ok] - r["confidence"][ok])))
