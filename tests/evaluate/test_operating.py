"""Per-detector operating points: temperature scaling and threshold rules."""

from __future__ import annotations

import numpy as np
import pytest

from xtalscreen.errors import ParameterError
from xtalscreen.evaluate.operating import (OperatingPoint, detector_key, fit_operating_point,
                                           fit_temperature, keep_scores, softmax)


def _sample(n=20000, temperature=2.0, seed=0):
    """Logits and labels drawn from ``softmax(logits / temperature)``: the true temperature."""
    rng = np.random.default_rng(seed)
    z = rng.normal(0, 3, (n, 3))
    p = softmax(z, temperature)
    y = (rng.random(n)[:, None] > np.cumsum(p, axis=1)).sum(axis=1)
    return z, y


@pytest.mark.parametrize("t_true", [0.5, 1.0, 2.0])
def test_fit_temperature_recovers_the_true_temperature(t_true):
    z, y = _sample(temperature=t_true)
    assert fit_temperature(z, y) == pytest.approx(t_true, rel=0.06)


def test_temperature_lowers_the_negative_log_likelihood():
    z, y = _sample(temperature=2.5, n=4000, seed=1)
    t = fit_temperature(z, y)

    def nll(temp):
        return -np.mean(np.log(softmax(z, temp)[np.arange(len(y)), y]))

    assert nll(t) < nll(1.0) and nll(t) <= nll(t * 1.1) and nll(t) <= nll(t / 1.1)


def test_min_sensitivity_rule_gives_the_highest_such_threshold():
    z, y = _sample(n=3000, temperature=1.0, seed=2)
    op = fit_operating_point(z, y, min_sensitivity=0.9)
    s = keep_scores(z, np.eye(3), op.temperature)
    pos = y != 2
    assert np.mean(s[pos] >= op.threshold) >= 0.9
    edge = s[pos][s[pos] >= op.threshold].min()
    assert np.mean(s[pos] >= np.nextafter(edge, 1)) < 0.9  # above the last kept hit: too few
    assert op.threshold == pytest.approx((edge + s[s < edge].max()) / 2)  # half-way down
    assert op.sensitivity == pytest.approx(np.mean(s[pos] >= op.threshold))
    assert op.specificity == pytest.approx(np.mean(s[~pos] < op.threshold))
    assert (op.n_positive, op.n_negative) == (int(pos.sum()), int((~pos).sum()))
    assert 0.5 < op.auc <= 1.0 and "sensitivity >= 0.9" in op.rule


def test_min_specificity_rule_gives_the_lowest_such_threshold():
    z, y = _sample(n=3000, temperature=1.0, seed=3)
    op = fit_operating_point(z, y, min_sensitivity=None, min_specificity=0.97)
    s = keep_scores(z, np.eye(3), op.temperature)
    neg = y == 2
    assert np.mean(s[neg] < op.threshold) >= 0.97
    edge = s[neg][s[neg] < op.threshold].max()
    assert np.mean(s[neg] < edge) < 0.97  # at or below the last rejected miss: too few
    assert op.threshold == pytest.approx((edge + s[s > edge].min()) / 2)  # half-way up
    assert op.specificity >= 0.97


def test_both_rates_rule_maximises_the_smaller_margin():
    """With both minima the threshold sits where the smaller margin (in standard errors) is
    largest: between the two one-rate thresholds, and no candidate does better."""
    z, y = _sample(n=6000, temperature=1.0, seed=6)
    lo = fit_operating_point(z, y, min_sensitivity=0.80)
    hi = fit_operating_point(z, y, min_sensitivity=None, min_specificity=0.80)
    op = fit_operating_point(z, y, min_sensitivity=0.80, min_specificity=0.80)
    assert hi.threshold <= op.threshold <= lo.threshold or lo.threshold <= op.threshold <= hi.threshold
    s = keep_scores(z, np.eye(3), op.temperature)
    pos = y != 2

    def smaller_margin(t):
        sens, spec = np.mean(s[pos] >= t), np.mean(s[~pos] < t)
        return min((sens - 0.8) / np.sqrt(0.16 / pos.sum()), (spec - 0.8) / np.sqrt(0.16 / (~pos).sum()))

    best = smaller_margin(op.threshold)
    assert best > 0 and op.sensitivity >= 0.8 and op.specificity >= 0.8
    for t in np.unique(s)[::7]:
        assert smaller_margin(t) <= best + 1e-9
    assert "largest smaller margin" in op.rule and "standard errors" in op.rule
    # out of reach: the best compromise, and the rule says so
    far = fit_operating_point(z, y, min_sensitivity=0.999, min_specificity=0.999)
    assert "no threshold meets both" in far.rule


def test_both_rates_rule_per_group():
    """With groups each detector must meet both minima: the margin of the worst group counts."""
    z, y = _sample(n=4000, temperature=1.0, seed=7)
    g = np.repeat(["a", "b"], 2000)
    z[g == "b"] *= 0.5  # a worse-separated detector
    op = fit_operating_point(z, y, min_sensitivity=0.75, min_specificity=0.75, groups=g)
    s = keep_scores(z, np.eye(3), op.temperature)
    pos = y != 2
    for k in ("a", "b"):
        m = g == k
        assert np.mean(s[m & pos] >= op.threshold) >= 0.75 - 0.02
        assert np.mean(s[m & ~pos] < op.threshold) >= 0.75 - 0.02
    assert "on each of 2 detectors" in op.rule


def test_perfectly_separated_frames_keep_all_and_reject_all():
    z = np.log(np.array([[.8, .1, .1]] * 5 + [[.05, .05, .9]] * 5))
    op = fit_operating_point(z, np.array([0] * 5 + [2] * 5), min_sensitivity=1.0)
    assert op.sensitivity == 1.0 and op.specificity == 1.0 and op.auc == 1.0


def test_other_class_maps_through_weights():
    """A DiffraNet-class model: weak -> maybe, good/strong -> hit, blank/no-crystal -> miss."""
    from xtalscreen.screen.workers import class_weights

    w = class_weights(["blank", "no-crystal", "weak", "good", "strong"])
    z = np.log(np.array([[.9, .05, .02, .02, .01], [.02, .03, .9, .03, .02], [.01, .01, .03, .05, .9],
                         [.1, .8, .05, .03, .02]]))
    op = fit_operating_point(z, np.array([0, 2, 4, 1]), weights=w, min_sensitivity=1.0)
    assert (op.n_positive, op.n_negative) == (2, 2) and op.specificity == 1.0


def test_no_rate_given_is_the_default_sensitivity_rule():
    z, y = _sample(n=500, seed=8)
    a = fit_operating_point(z, y)
    b = fit_operating_point(z, y, min_sensitivity=None, min_specificity=None)
    assert a.threshold == b.threshold and "sensitivity >= 0.985" in a.rule
    # one rate given alone is that rate's rule, not the two-rate one
    c = fit_operating_point(z, y, min_specificity=0.9)
    assert "lowest threshold with specificity >= 0.9" in c.rule


@pytest.mark.parametrize("kw, msg", [
    ({"min_sensitivity": 0.9, "min_specificity": 1.0}, r"each must be in \(0, 1\)"),
    ({"min_sensitivity": 0.9, "min_specificity": 0.9, "confidence": 0.9}, "one-rate rule"),
    ({"min_sensitivity": 1.5}, r"\(0, 1\]"),
    ({"min_sensitivity": 0.0}, r"\(0, 1\]"),
    ({"weights": np.eye(2)}, "weights must be"),
])
def test_bad_rules(kw, msg):
    z, y = _sample(n=50, seed=4)
    with pytest.raises(ParameterError, match=msg):
        fit_operating_point(z, y, **kw)


def test_bad_inputs_are_named():
    z, y = _sample(n=50, seed=5)
    with pytest.raises(ParameterError, match="both hits/maybes and misses"):
        fit_operating_point(z, np.full(50, 2), source="detector 512x512")
    bad = z.copy()
    bad[3, 1] = np.nan
    with pytest.raises(ParameterError, match="NaN"):
        fit_temperature(bad, y)
    with pytest.raises(ParameterError, match="class indices"):
        fit_temperature(z, np.full(50, 3))
    with pytest.raises(ParameterError, match="len\\(labels\\)"):
        fit_temperature(z, y[:-1])


def test_operating_point_record():
    op = OperatingPoint(threshold=0.3, temperature=1.4, sensitivity=0.99, rule="r", source="s")
    assert OperatingPoint.from_dict({**op.to_dict(), "unknown_field": 1}) == op
    with pytest.raises(ParameterError, match="threshold"):
        OperatingPoint(threshold=1.2)
    with pytest.raises(ParameterError, match="temperature"):
        OperatingPoint(threshold=0.5, temperature=0.0)


def test_detector_key():
    assert detector_key((512, 512)) == "512x512"
    assert detector_key(np.zeros((32, 185, 388)).shape) == "32x185x388"


def test_balanced_rule_maximises_sensitivity_plus_specificity():
    z, y = _sample(n=2000, temperature=1.0, seed=6)
    op = fit_operating_point(z, y, min_sensitivity=None, balanced=True)
    s = keep_scores(z, np.eye(3), op.temperature)
    pos = y != 2

    def j(t):
        return np.mean(s[pos] >= t) + np.mean(s[~pos] < t)

    assert j(op.threshold) == pytest.approx(op.sensitivity + op.specificity)
    assert all(j(t) <= j(op.threshold) + 1e-12 for t in np.r_[np.unique(s), 0.0, 1.0])
    assert op.rule == "threshold maximising sensitivity + specificity"
    # the rates are ignored with balanced=True
    assert fit_operating_point(z, y, min_sensitivity=0.5, balanced=True) == op


def test_tiny_rates_keep_or_reject_at_least_one_frame():
    z, y = _sample(n=200, seed=7)
    s_op = fit_operating_point(z, y, min_sensitivity=1e-12)
    assert s_op.sensitivity > 0 and s_op.specificity > 0.5
    p_op = fit_operating_point(z, y, min_sensitivity=None, min_specificity=1e-12)
    assert p_op.specificity > 0 and p_op.sensitivity > 0.5


def test_separated_logits_give_a_small_finite_temperature():
    z = np.array([[50.0, 0.0, 0.0], [0.0, 0.0, 50.0]] * 10)
    t = fit_temperature(z, np.array([0, 2] * 10))
    assert 0.05 <= t < 0.08  # towards the lower limit: a sharper softmax only helps (exp underflows below ~0.07)


def test_required_successes_by_the_clopper_pearson_bound():
    from scipy.stats import beta

    from xtalscreen.evaluate.operating import required_successes

    assert required_successes(1000, 0.985) == 985
    k = required_successes(1000, 0.985, 0.9)
    assert beta.ppf(0.1, k, 1000 - k + 1) >= 0.985 > beta.ppf(0.1, k - 1, 1000 - k + 2)
    assert 988 <= k <= 993  # about 99.0 % of 1000
    assert required_successes(1000, 0.985, 0.99) > k  # more confidence asks more
    assert required_successes(50, 0.985, 0.9) == 51  # 50 frames cannot show 98.5 % at 0.9


def _true_sensitivity(op: OperatingPoint, mu: float) -> float:
    """Positives have logits (s, s, 0), s ~ N(mu, 1): p_hit + p_maybe >= thr where s >= s*."""
    from scipy.stats import norm

    s_star = op.temperature * np.log((1.0 / (1.0 - op.threshold) - 1.0) / 2.0)
    return float(norm.sf(s_star - mu))


def test_confidence_holds_the_sensitivity_on_new_frames():
    """Repeated calibrations on 400 hits + 400 misses drawn from known distributions: the point
    estimate meets 98.5 % on new frames about half the time; at confidence 0.9, in about 90 %
    of the calibrations or more (the bound is conservative), without keeping everything."""
    rng = np.random.default_rng(7)
    met, sens = {None: 0, 0.9: 0}, []
    reps, n = 120, 400
    for _ in range(reps):
        s = np.r_[rng.normal(4.0, 1.0, n), rng.normal(-2.0, 1.0, n)]
        z = np.stack([s, s, np.zeros_like(s)], axis=1)
        y = np.r_[np.zeros(n, int), np.full(n, 2)]
        for c in met:
            op = fit_operating_point(z, y, min_sensitivity=0.985, confidence=c)
            met[c] += _true_sensitivity(op, 4.0) >= 0.985
            if c is not None:
                sens.append(_true_sensitivity(op, 4.0))
    assert 0.3 <= met[None] / reps <= 0.7
    assert met[0.9] / reps >= 0.85
    assert np.median(sens) < 0.998  # held by a margin (400 hits ask ~99.5 %), not by keeping all


def test_confidence_rule_is_named_and_an_unreachable_bound_keeps_all():
    z = np.log(np.array([[.7, .2, .1], [.1, .1, .8], [.3, .3, .4], [.05, .05, .9]]))
    y = np.array([0, 2, 1, 2])
    op = fit_operating_point(z, y, min_sensitivity=0.9, confidence=0.9)
    assert "at 0.9 confidence" in op.rule and "not reachable with 2 hits" in op.rule
    assert op.sensitivity == 1.0
    op = fit_operating_point(z, y, min_sensitivity=None, min_specificity=0.9, confidence=0.9)
    assert "not reachable with 2 misses" in op.rule and op.specificity == 1.0
    with pytest.raises(ParameterError, match="confidence"):
        fit_operating_point(z, y, confidence=1.0)


def test_grouped_rule_meets_the_rate_on_every_group():
    # two detectors: on "hard" the hits score lower, so one threshold on all frames together
    # loses more of its hits than the rate allows; the grouped rule keeps enough on each
    za, ya = _sample(n=3000, temperature=1.0, seed=11)
    zb, yb = _sample(n=600, temperature=1.0, seed=12)
    zb[yb != 2] -= np.array([1.5, 1.5, 0.0])  # hits of "hard" look less like hits
    z, y = np.r_[za, zb], np.r_[ya, yb]
    g = np.array(["easy"] * len(ya) + ["hard"] * len(yb))
    pooled = fit_operating_point(z, y, min_sensitivity=0.95)
    each = fit_operating_point(z, y, min_sensitivity=0.95, groups=g)
    assert each.temperature == pooled.temperature  # one temperature, fitted on all frames
    s = keep_scores(z, np.eye(3), each.temperature)
    pos = y != 2
    for name in ("easy", "hard"):
        m = (g == name) & pos
        assert np.mean(s[m] >= each.threshold) >= 0.95
    hard = (g == "hard") & pos
    assert np.mean(s[hard] >= pooled.threshold) < 0.95  # the all-frames rule misses it
    assert each.threshold < pooled.threshold and "on each of 2 detectors" in each.rule
    # the specificity form takes the strictest group's threshold
    spec = fit_operating_point(z, y, min_sensitivity=None, min_specificity=0.9, groups=g)
    for name in ("easy", "hard"):
        m = (g == name) & ~pos
        assert np.mean(s[m] < spec.threshold) >= 0.9
    with pytest.raises(ParameterError, match="one group per frame"):
        fit_operating_point(z, y, groups=g[:-1])


def test_layout_key_and_point_key():
    import dataclasses

    from xtalscreen.evaluate.operating import layout_key, panel_layout_key, point_key
    from xtalscreen.io.frame import Frame
    from xtalscreen.io.geometry import DetectorGeometry, Panel

    def panel(i, h, w, ss0):  # 10 px apart in the lab: two sensors
        return Panel(name=f"p{i}", min_fs=0, max_fs=w - 1, min_ss=ss0, max_ss=ss0 + h - 1,
                     corner_x=0.0, corner_y=float(ss0 + 10 * i))

    even = DetectorGeometry([panel(0, 4, 6, 0), panel(1, 4, 6, 4)])
    uneven = DetectorGeometry([panel(0, 4, 6, 0), panel(1, 3, 6, 4)])
    f = Frame(np.zeros((8, 6), np.float32), geometry=even)
    assert layout_key(f) == "2x4x6" and layout_key(Frame(np.zeros((8, 6), np.float32))) == ""
    assert layout_key(Frame(np.zeros((7, 6), np.float32), geometry=uneven)) == ""
    pts = {"2x4x6": OperatingPoint(0.4, layout="2x4x6"), "*": OperatingPoint(0.5, layout="2x4x6")}
    assert point_key(pts, f) == "2x4x6"  # by layout (the raw key is 8x6)
    assert point_key({"8x6": OperatingPoint(0.3), **pts}, f) == "8x6"  # its own first
    assert point_key({"*": OperatingPoint(0.5, layout="2x4x6")}, f) == "8x6"  # never '*' by layout
    assert point_key({"b": {"threshold": 0.4, "layout": "2x4x6"}}, f) == "b"  # dicts as stored
    assert point_key(pts, Frame(np.zeros((8, 6), np.float32))) == "8x6"
    assert OperatingPoint.from_dict({"threshold": 0.4}).layout == ""  # files before the field

    # side by side (2 px apart): one sensor of 8 x 6, whose key a point of "2x4x6" (a file
    # calibrated before panels were joined) still matches through the panel layout
    joined = Frame(np.zeros((8, 6), np.float32), geometry=DetectorGeometry(
        [dataclasses.replace(p, corner_y=p.corner_y - 8 * i) for i, p in enumerate(even.panels)]))
    assert layout_key(joined) == "1x8x6" and panel_layout_key(joined) == "2x4x6"
    assert point_key(pts, joined) == "2x4x6"
    assert point_key({"c": OperatingPoint(0.4, layout="1x8x6")}, joined) == "c"
    assert point_key({"c": OperatingPoint(0.4, layout="1x8x6")}, f) == "8x6"
