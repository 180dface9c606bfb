"""Metrics on hand-computed examples (and a cross-check against scikit-learn)."""

import numpy as np
import pytest

from xtalscreen.errors import ParameterError
from xtalscreen.evaluate import metrics as M


def test_confusion_matrix_and_accuracy_by_hand():
    t = [0, 0, 0, 1, 1, 2, 2, 2]
    p = [0, 1, 0, 1, 2, 2, 2, 0]
    cm = M.confusion_matrix(t, p, n_classes=3)
    assert cm.tolist() == [[2, 1, 0], [0, 1, 1], [1, 0, 2]]
    assert cm.sum() == len(t)
    assert M.accuracy(t, p) == pytest.approx(5 / 8)
    prec, rec = M.precision_recall(cm)
    np.testing.assert_allclose(prec, [2 / 3, 1 / 2, 2 / 3])
    np.testing.assert_allclose(rec, [2 / 3, 1 / 2, 2 / 3])


def test_precision_nan_for_a_class_never_predicted():
    prec, rec = M.precision_recall(M.confusion_matrix([0, 1], [0, 0], n_classes=3))
    assert np.isnan(prec[1]) and np.isnan(prec[2]) and np.isnan(rec[2])
    assert rec[1] == 0.0


def test_sensitivity_specificity_by_hand():
    # TP = 3, FN = 1, TN = 4, FP = 2
    t = [1, 1, 1, 1, 0, 0, 0, 0, 0, 0]
    p = [1, 1, 1, 0, 0, 0, 0, 0, 1, 1]
    s, c = M.sensitivity_specificity(t, p)
    assert s == pytest.approx(3 / 4) and c == pytest.approx(4 / 6)


def test_collapse_probs_is_paper001_table3_rule():
    # hit, maybe, miss: argmax says miss, but hit + maybe = 0.6 > 0.4 -> hit+maybe
    p = np.array([[0.3, 0.3, 0.4], [0.1, 0.2, 0.7]])
    c = M.collapse_probs(p, [[0, 1], [2]])
    np.testing.assert_allclose(c, [[0.6, 0.4], [0.3, 0.7]])
    assert c.argmax(1).tolist() == [0, 1]
    with pytest.raises(ParameterError, match="disjoint"):
        M.collapse_probs(p, [[0, 1], [1, 2]])


def test_roc_and_auc_by_hand():
    y = [1, 1, 0, 0, 1, 0]
    s = [0.9, 0.8, 0.7, 0.3, 0.6, 0.1]
    fpr, tpr, thr = M.roc_curve(y, s)
    np.testing.assert_allclose(fpr, [0, 0, 0, 1 / 3, 1 / 3, 2 / 3, 1])
    np.testing.assert_allclose(tpr, [0, 1 / 3, 2 / 3, 2 / 3, 1, 1, 1])
    # pairs (pos, neg) ranked right: 8 of 9
    assert M.auc(fpr, tpr) == pytest.approx(8 / 9)
    t, tp, fp = M.threshold_at_tpr(fpr, tpr, thr, min_tpr=0.8)
    assert (t, tp, fp) == (pytest.approx(0.6), pytest.approx(1.0), pytest.approx(1 / 3))
    t, tp, fp = M.threshold_at_tpr(fpr, tpr, thr, min_tpr=0.5)
    assert t == pytest.approx(0.8) and fp == 0.0


def test_roc_ties_and_perfect_separation():
    fpr, tpr, _ = M.roc_curve([1, 0, 1, 0], [0.5, 0.5, 0.5, 0.5])
    assert M.auc(fpr, tpr) == pytest.approx(0.5)
    fpr, tpr, _ = M.roc_curve([1, 1, 0], [0.9, 0.8, 0.1])
    assert M.auc(fpr, tpr) == pytest.approx(1.0)


def test_roc_matches_sklearn():
    sk = pytest.importorskip("sklearn.metrics")
    rng = np.random.default_rng(3)
    y = rng.integers(0, 2, 300)
    s = np.round(y * 0.3 + rng.random(300), 2)  # ties on purpose
    fpr, tpr, _ = M.roc_curve(y, s)
    assert M.auc(fpr, tpr) == pytest.approx(sk.roc_auc_score(y, s))
    assert M.confusion_matrix(y, s > 0.6).tolist() == sk.confusion_matrix(y, s > 0.6).tolist()


def test_reliability_and_ece_by_hand():
    probs = np.array([[0.95, 0.05], [0.85, 0.15], [0.55, 0.45], [0.3, 0.7]])
    y = [0, 1, 0, 1]  # correct, wrong, correct, correct
    r = M.reliability(probs, y, n_bins=2)  # bins (0, .5], (.5, 1]: all in the upper one
    assert r["count"].tolist() == [0, 4]
    assert r["accuracy"][1] == pytest.approx(0.75)
    assert r["confidence"][1] == pytest.approx((0.95 + 0.85 + 0.55 + 0.7) / 4)
    assert M.expected_calibration_error(probs, y, n_bins=2) == pytest.approx(abs(0.75 - 0.7625))
    # perfectly calibrated and certain: ECE 0
    assert M.expected_calibration_error(np.eye(3), [0, 1, 2]) == 0.0


@pytest.mark.parametrize("call", [
    lambda: M.confusion_matrix([0, 1], [0]),
    lambda: M.confusion_matrix([0, 3], [0, 1], n_classes=2),
    lambda: M.confusion_matrix([0.5], [0]),
    lambda: M.roc_curve([1, 1], [0.2, 0.3]),
    lambda: M.roc_curve([1, 0], [0.2]),
    lambda: M.threshold_at_tpr([0, 1], [0, 1], [1, 0], min_tpr=0),
    lambda: M.reliability(np.ones((2, 2)), [0, 1, 1]),
    lambda: M.reliability(np.ones((2, 2)), [0, 1], n_bins=0),
    lambda: M.precision_recall(np.ones((2, 3))),
])
def test_bad_input_raises_parameter_error(call):
    with pytest.raises(ParameterError):
        call()
