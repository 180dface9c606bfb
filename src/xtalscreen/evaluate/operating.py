"""Per-detector operating points: a softmax temperature and a keep threshold for each detector.

A screening model trained on several detectors is rarely equally confident on all of them: on
one, frames near the Miss / Maybe boundary come out at ``p_hit + p_maybe`` around 0.3, on
another around 0.6. One global threshold then trades sensitivity on the first for specificity on
the second. An :class:`OperatingPoint` fixes both per detector, from labelled frames of that
detector (a validation split, or frames simulated for the user's own detector):

- ``temperature`` ``T``: probabilities are ``softmax(logits / T)``, ``T`` minimising the
  negative log-likelihood of the labels (temperature scaling, Guo et al. 2017): calibrated
  confidences, the decision order unchanged;
- ``threshold``: keep a frame when ``p_hit + p_maybe >= threshold``, the *highest* threshold
  still keeping at least ``min_sensitivity`` of the hits (paper 000 picks its threshold at a
  minimum TPR the same way), or the lowest with at least ``min_specificity``; placed half-way
  between the last frame it must keep (reject) and the next score of any frame (on the edge
  frame's own score only when no frame lies beyond it).

Detectors are told apart by the shape of their raw data (:func:`detector_key`), which is what a
screening run sees of every frame: ``"512x512"``, ``"32x185x388"`` (a CSPAD's panels). A point
fitted on the frames of all calibrated detectors together (key :data:`ANY_DETECTOR`, ``"*"``)
serves a detector without its own (:func:`point_for`).

>>> import numpy as np
>>> logits = np.log(np.array([[.7, .2, .1], [.1, .1, .8], [.3, .3, .4], [.05, .05, .9]]))
>>> op = fit_operating_point(logits, np.array([0, 2, 1, 2]), min_sensitivity=1.0)
>>> op.threshold <= 0.6, op.sensitivity, op.specificity
(True, 1.0, 1.0)
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field

import numpy as np

from xtalscreen.errors import ParameterError
from xtalscreen.preprocess.views import check_views

__all__ = ["ANY_DETECTOR", "OperatingPoint", "POINT_PREPROCESS", "check_point_preprocess", "detector_key",
           "fit_temperature", "fit_operating_point", "hit_maybe_miss", "keep_at_points", "keep_scores",
           "point_for", "point_preprocess", "preprocess_key", "required_successes", "softmax"]

#: temperatures searched by :func:`fit_temperature`
T_BOUNDS = (0.05, 20.0)


#: key of the point fitted on the frames of all detectors together, used for a detector without
#: its own point
ANY_DETECTOR = "*"


def point_for(points: dict, key: str):
    """The operating point of detector ``key`` in ``points``: its own, else the pooled
    :data:`ANY_DETECTOR` one, else None."""
    return points.get(key) or points.get(ANY_DETECTOR)


def detector_key(shape) -> str:
    """The key of a detector in a model's operating points: its raw data shape, ``"HxW"`` or
    ``"PxHxW"``."""
    return "x".join(str(int(s)) for s in shape)


def layout_key(frame) -> str:
    """The sensor layout of a frame's detector geometry, ``"NxHxW"`` (N sensors of H x W
    pixels), or ``""`` without a geometry or with sensors of several sizes.

    Sensors are the geometry's panels joined where they tile one sensor
    (:meth:`~xtalscreen.io.geometry.DetectorGeometry.modules`), so one detector has one key
    however its data are stored and however finely its geometry file cuts it: a JUNGFRAU 4M
    as ``8 x 512 x 1024`` slabs, stacked as ``4096 x 1024``, or described as 64 ASICs, is
    ``"8x512x1024"``; a CSPAD as 32 two-by-ones or as 64 ASICs is ``"32x185x388"``.
    """
    geom = getattr(frame, "geometry", None)
    if not getattr(geom, "panels", None):
        return ""
    return _layout(geom.modules())


def panel_layout_key(frame) -> str:
    """The layout of a frame's geometry panels as they are, not joined (``"NxHxW"`` or ``""``):
    what :func:`layout_key` gave before it joined panels, which files calibrated then record."""
    panels = getattr(getattr(frame, "geometry", None), "panels", None)
    return _layout([(None, p.height, p.width) for p in panels]) if panels else ""


def _layout(sensors) -> str:
    sizes = {(h, w) for _, h, w in sensors}
    if len(sizes) != 1:
        return ""
    (h, w), = sizes
    return f"{len(sensors)}x{h}x{w}"


def point_key(points: dict, frame) -> str:
    """The key of ``frame``'s operating point in ``points``: its raw :func:`detector_key` when
    ``points`` has it; else the key of a point fitted on a detector of the same layout
    (:func:`layout_key`, recorded by ``xtalscreen calibrate``, or :func:`panel_layout_key` for
    files calibrated before sensors were joined; the first in key order); else the raw key,
    for which :func:`point_for` gives the pooled point."""
    key = detector_key(frame.data.shape)
    if key in points:
        return key
    lays = {layout_key(frame), panel_layout_key(frame)} - {""}
    if lays:
        for k in sorted(points):
            p = points[k]
            if k != ANY_DETECTOR and (p.get("layout") if isinstance(p, dict)
                                      else getattr(p, "layout", "")) in lays:
                return k
    return key


def softmax(logits, temperature=1.0) -> np.ndarray:
    """``softmax(logits / temperature)`` per row, in float64; ``temperature`` a number or one
    per row."""
    t = np.asarray(temperature, np.float64)
    z = np.asarray(logits, np.float64) / (t[:, None] if t.ndim == 1 else t)
    z = z - z.max(axis=1, keepdims=True)
    e = np.exp(z)
    return e / e.sum(axis=1, keepdims=True)


def _check_logits(logits, labels) -> tuple[np.ndarray, np.ndarray]:
    z = np.asarray(logits, np.float64)
    y = np.asarray(labels)
    if z.ndim != 2 or z.shape[0] != y.shape[0] or z.shape[0] == 0:
        raise ParameterError(f"logits must be (N, classes) with N = len(labels) > 0, got logits "
                             f"{z.shape} and {y.shape[0]} labels")
    if not np.all(np.isfinite(z)):
        raise ParameterError("logits hold NaN or inf; leave out the frames the model could not score")
    if y.dtype.kind not in "iu" or y.min() < 0 or y.max() >= z.shape[1]:
        raise ParameterError(f"labels must be class indices in [0, {z.shape[1]}), got "
                             f"{y.min()}..{y.max()} ({y.dtype})")
    return z, y.astype(np.int64)


def fit_temperature(logits, labels) -> float:
    """The temperature ``T`` in :data:`T_BOUNDS` minimising the mean negative log-likelihood of
    ``labels`` under ``softmax(logits / T)`` (a bounded 1-D search over ``log T``)."""
    from scipy.optimize import minimize_scalar
    from scipy.special import logsumexp

    z, y = _check_logits(logits, labels)

    rows = np.arange(len(y))
    others = np.ones(z.shape, bool)
    others[rows, y] = False

    def nll(log_t: float) -> float:
        # -log p_y = log(1 + sum_{j != y} exp(d_j)), d = (z - z_y) / T: log1p keeps the tiny
        # losses of confidently right rows (a plain logsumexp rounds them to 0 and flattens the
        # search); logsumexp where a wrong class leads
        d = (z - z[rows, y][:, None]) / np.exp(log_t)
        lead = np.where(others, d, -np.inf).max(axis=1)
        small = np.log1p(np.where(others, np.exp(np.minimum(d, 0.0)), 0.0).sum(axis=1))
        return float(np.mean(np.where(lead <= 0, small, logsumexp(d, axis=1))))

    res = minimize_scalar(nll, bounds=tuple(np.log(T_BOUNDS)), method="bounded",
                          options={"xatol": 1e-4})
    return float(np.exp(res.x))


def hit_maybe_miss(logits, weights, temperature=1.0) -> np.ndarray:
    """``(N, 3)`` hit, maybe, miss probabilities: ``softmax(logits / T) @ weights``
    (``weights`` from :func:`xtalscreen.screen.workers.class_weights`). ``screen`` and
    :func:`fit_operating_point` both score frames with this one function."""
    return softmax(logits, temperature) @ np.asarray(weights, np.float64)


def keep_scores(logits, weights, temperature=1.0) -> np.ndarray:
    """``p_hit + p_maybe`` of each row (see :func:`hit_maybe_miss`)."""
    p = hit_maybe_miss(logits, weights, temperature)
    return p[:, 0] + p[:, 1]


@dataclass(frozen=True)
class OperatingPoint:
    """Temperature and keep threshold of one detector, with what they gave on the frames they
    were chosen on, and the number of test-time ``views`` (:mod:`xtalscreen.preprocess.views`)
    whose averaged logits they were chosen on -- and must be applied to.

    ``preprocess`` holds changes to the model's preprocessing for this detector's frames
    (keys of :data:`POINT_PREPROCESS`, e.g. ``{"prefilter_sigma": 1.2, "bin": 3}`` for a
    detector whose point-spread function spreads its spots); the point was fitted on frames
    preprocessed so, and ``screen`` preprocesses the detector's frames so. Empty: the model's
    own preprocessing."""

    threshold: float
    temperature: float = 1.0
    sensitivity: float = float("nan")
    specificity: float = float("nan")
    auc: float = float("nan")
    n_positive: int = 0
    n_negative: int = 0
    rule: str = ""
    source: str = ""
    views: int = 1
    layout: str = ""  # the calibration frames' sensor layout (layout_key): serves other array layouts
    preprocess: dict = field(default_factory=dict)

    def __post_init__(self) -> None:
        object.__setattr__(self, "views", check_views(self.views))
        object.__setattr__(self, "preprocess", check_point_preprocess(self.preprocess))
        if not 0.0 <= float(self.threshold) <= 1.0:
            raise ParameterError(f"operating point threshold must be in [0, 1], got {self.threshold!r}")
        if not T_BOUNDS[0] <= float(self.temperature) <= T_BOUNDS[1]:
            raise ParameterError(f"operating point temperature must be in {T_BOUNDS}, "
                                 f"got {self.temperature!r}")

    def to_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, d: dict) -> "OperatingPoint":
        known = set(cls.__dataclass_fields__)
        return cls(**{k: v for k, v in dict(d).items() if k in known})


#: Preprocessing settings an operating point may change for its detector's frames.
POINT_PREPROCESS = ("prefilter_sigma", "bin", "bin_reduce", "crop")


def check_point_preprocess(changes) -> dict:
    """``changes`` (a dict, or None) as a checked dict of :data:`POINT_PREPROCESS` settings
    (values as :class:`~xtalscreen.preprocess.PreprocessConfig` stores them, keys sorted);
    ParameterError naming an unknown key or a bad value."""
    if changes is None:
        return {}
    if not isinstance(changes, dict):
        raise ParameterError(f"an operating point's preprocess must be a dict of settings, got "
                             f"{type(changes).__name__}")
    unknown = sorted(set(changes) - set(POINT_PREPROCESS))
    if unknown:
        raise ParameterError(f"an operating point may change only the preprocessing settings "
                             f"{list(POINT_PREPROCESS)}, not {unknown}")
    from xtalscreen.preprocess import PreprocessConfig

    d = dict(changes)
    if isinstance(d.get("crop"), list):
        d["crop"] = tuple(d["crop"])
    cfg = PreprocessConfig(**d)  # checks each value
    out = {k: getattr(cfg, k) for k in sorted(d)}
    if "crop" in out:
        out["crop"] = list(out["crop"])  # as JSON keeps it
    return out


def preprocess_key(point=None) -> tuple:
    """A hashable key of the preprocessing changes of ``point`` (or a dict of changes); ``()``
    for none: frames whose points share a key are preprocessed alike."""
    changes = point if isinstance(point, dict) else getattr(point, "preprocess", None) or {}
    return tuple((k, tuple(v) if isinstance(v, list) else v) for k, v in sorted(changes.items()))


def point_preprocess(config, point=None):
    """``config`` (a :class:`~xtalscreen.preprocess.PreprocessConfig`) with the preprocessing
    changes of operating point ``point`` (or a dict of such changes; None, or no changes:
    ``config`` itself)."""
    changes = dict(point if isinstance(point, dict) else getattr(point, "preprocess", None) or {})
    if not changes:
        return config
    if "crop" in changes:
        changes["crop"] = tuple(changes["crop"])
    return config.replace(**changes)


def _rate_threshold(sp, sn, every, sens: bool, rate: float, confidence) -> tuple[float, int]:
    """Threshold of one group meeting the rate, and the group's frame count when the rate is
    out of reach (else 0). ``sp`` / ``sn``: the hits' / misses' scores; ``every``: the sorted
    distinct scores of all of the group's frames."""
    sp, sn = np.sort(sp), np.sort(sn)
    if sens:
        # keep >= ceil(rate * P) positives: the k-th highest positive score must stay kept; the
        # threshold goes half-way down to the next lower score of any frame
        k = required_successes(len(sp), rate, confidence)
        edge = sp[len(sp) - min(k, len(sp))]
        lower = every[every < edge]
        thr = float((edge + lower[-1]) / 2) if len(lower) else float(edge)
        return thr, (len(sp) if k > len(sp) else 0)
    # reject >= ceil(rate * N) negatives: the k-th lowest negative score must stay below; the
    # threshold goes half-way up to the next higher score of any frame
    k = required_successes(len(sn), rate, confidence)
    edge = sn[min(k, len(sn)) - 1]
    higher = every[every > edge]
    thr = float((edge + higher[0]) / 2) if len(higher) else float(np.nextafter(edge, np.inf))
    return thr, (len(sn) if k > len(sn) else 0)


def required_successes(n: int, rate: float, confidence: float | None = None) -> int:
    """The fewest of ``n`` frames that must come out right for the rate to be at least
    ``rate``: ``ceil(rate n)`` (at least 1), or with ``confidence`` the fewest ``k`` whose
    one-sided Clopper-Pearson lower bound at that level reaches ``rate`` -- so that the rate on
    *new* frames of the detector is at least ``rate`` with that confidence. ``n + 1`` when even
    ``k = n`` falls short (too few frames for the bound)."""
    k0 = max(1, int(np.ceil(float(rate) * n - 1e-9)))
    if confidence is None:
        return k0
    from scipy.stats import beta

    ks = np.arange(k0, n + 1)
    if not len(ks):
        return n + 1
    lower = np.where(ks > 0, beta.ppf(1.0 - float(confidence), ks, n - ks + 1), 0.0)
    ok = np.flatnonzero(lower >= float(rate))
    return int(ks[ok[0]]) if len(ok) else n + 1


#: the keep rule when no rate is given: paper 001's best per-dataset sensitivity
DEFAULT_MIN_SENSITIVITY = 0.985


def _candidates(score: np.ndarray) -> np.ndarray:
    """Candidate thresholds half-way between consecutive distinct scores (and the ends)."""
    every = np.unique(score)
    return np.r_[every[0] / 2, (every[1:] + every[:-1]) / 2, (every[-1] + 1) / 2]


def _margin_threshold(score, pos, parts, min_sens: float, min_spec: float):
    """``(threshold, z_sens, z_spec)``: the threshold maximising the smaller margin of the rates
    over their minima, in binomial standard errors, within every part (a boolean frame
    selection per group); ties go to the middle of the best run of candidates."""
    cand = _candidates(score)
    zs_all = np.full(len(cand), np.inf)
    zp_all = np.full(len(cand), np.inf)
    for m in parts:
        sp, sn = np.sort(score[m & pos]), np.sort(score[m & ~pos])
        if len(sp):
            sens = (len(sp) - np.searchsorted(sp, cand, side="left")) / len(sp)
            zs_all = np.minimum(zs_all, (sens - min_sens) / np.sqrt(min_sens * (1 - min_sens) / len(sp)))
        if len(sn):
            spec = np.searchsorted(sn, cand, side="left") / len(sn)
            zp_all = np.minimum(zp_all, (spec - min_spec) / np.sqrt(min_spec * (1 - min_spec) / len(sn)))
    worst = np.minimum(zs_all, zp_all)
    best = np.flatnonzero(worst >= worst.max() - 1e-12)
    i = int(best[len(best) // 2])
    return float(cand[i]), float(zs_all[i]), float(zp_all[i])


def fit_operating_point(logits, labels, *, weights=None, min_sensitivity: float | None = None,
                        min_specificity: float | None = None, balanced: bool = False,
                        confidence: float | None = None, groups=None, views: int = 1,
                        source: str = "") -> OperatingPoint:
    """Temperature and threshold for one detector's labelled frames.

    Parameters
    ----------
    logits : array (N, C)
        The model's outputs (log-probabilities do as well: softmax ignores a per-row shift).
    labels : array of int (N,)
        True class index among the model's ``C`` classes.
    weights : array (C, 3), optional
        Class -> (hit, maybe, miss) map; default the identity (Ke classes hit, maybe, miss).
    min_sensitivity, min_specificity : float, keyword-only
        The rule: the highest threshold keeping at least ``min_sensitivity`` of the positive
        (hit or maybe) frames, or -- with ``min_sensitivity=None`` -- the lowest rejecting at
        least ``min_specificity`` of the misses. With **both**: the threshold where the smaller
        of the two margins is largest, each margin counted in binomial standard errors of its
        minimum rate (``(rate - min) / sqrt(min (1 - min) / n)``), so that new frames meet both
        minima about equally often (a one-rate point spends all the slack on its own rate: on
        a fresh set the other one then falls short first). The margins reached are recorded
        in the rule; negative ones mean no threshold meets both here. Neither given:
        ``min_sensitivity=0.985``.
    balanced : bool, keyword-only
        Instead: the threshold maximising sensitivity + specificity (Youden's J), the rates
        above ignored; ties go to the threshold nearest 0.5.
    confidence : float in (0, 1), keyword-only
        (One-rate rules.) Hold the minimum rate on new frames with this confidence, not just on these: the
        threshold keeps (rejects) enough frames that the one-sided Clopper-Pearson lower bound
        of the rate reaches it (:func:`required_successes`). A rate fitted on the point
        estimate alone is met on new frames about half the time; with 1000 hits, 98.5 % at
        0.9 confidence asks about 99.0 % of these. Where even all the frames fall short, the
        threshold keeps (rejects) them all and the rule says so.
    groups : array (N,), optional
        A group (detector) per frame: the rate must then hold within *every* group that has
        frames of the kind it counts, with one temperature fitted on all frames -- the
        sensitivity-first point for a detector that has none of its own (the most permissive of
        the groups' thresholds under the shared temperature; with ``min_specificity`` the
        strictest). Ignored with ``balanced``.
    views : int
        The test-time views the logits were averaged over (recorded: ``screen`` must apply the
        point to logits made the same way).
    source : str
        Where the frames came from (kept in the record).

    Raises
    ------
    ParameterError
        Both or neither rule given, a rate outside (0, 1], or frames of only one kind
        (a threshold needs hits and misses).
    """
    from sklearn.metrics import roc_auc_score

    z, y = _check_logits(logits, labels)
    w = np.eye(3, dtype=np.float64) if weights is None else np.asarray(weights, np.float64)
    if w.shape != (z.shape[1], 3):
        raise ParameterError(f"weights must be ({z.shape[1]}, 3), got {w.shape}")
    if not balanced and min_sensitivity is None and min_specificity is None:
        min_sensitivity = DEFAULT_MIN_SENSITIVITY
    both = not balanced and min_sensitivity is not None and min_specificity is not None
    if balanced:
        min_sensitivity, min_specificity, rate = None, None, 0.5
    elif both:
        rate = min(float(min_sensitivity), float(min_specificity))
        if not (0.0 < float(min_sensitivity) < 1.0 and 0.0 < float(min_specificity) < 1.0):
            raise ParameterError("with both minimum rates each must be in (0, 1), got "
                                 f"{min_sensitivity!r} and {min_specificity!r}")
        if confidence is not None:
            raise ParameterError("confidence applies to a one-rate rule; with both minimum rates "
                                 "the threshold maximises the smaller margin (recorded in the rule)")
    else:
        rate = min_sensitivity if min_specificity is None else min_specificity
    if not 0.0 < float(rate) <= 1.0:
        raise ParameterError(f"the minimum rate must be in (0, 1], got {rate!r}")
    if confidence is not None and not 0.0 < float(confidence) < 1.0:
        raise ParameterError(f"confidence must be in (0, 1), got {confidence!r}")
    at = "" if confidence is None or balanced else f" at {float(confidence):g} confidence"
    pos = (w[y, 0] + w[y, 1]) > 0.5
    if pos.all() or not pos.any():
        raise ParameterError(f"{source or 'the frames'}: a threshold needs both hits/maybes and "
                             f"misses; got {int(pos.sum())} and {int((~pos).sum())}")
    g = None if groups is None or balanced else np.asarray(groups)
    if g is not None and g.shape != y.shape:
        raise ParameterError(f"groups must give one group per frame ({len(y)}), got shape {g.shape}")
    parts = [np.ones(len(y), bool)] if g is None else [g == v for v in np.unique(g)]
    t = fit_temperature(z, y)
    score = keep_scores(z, w, t)
    if balanced:
        sp, sn, cand = np.sort(score[pos]), np.sort(score[~pos]), _candidates(score)
        j = (len(sp) - np.searchsorted(sp, cand, side="left")) / len(sp) + \
            np.searchsorted(sn, cand, side="left") / len(sn)
        best = np.flatnonzero(j >= j.max() - 1e-12)
        thr = float(cand[best[np.argmin(np.abs(cand[best] - 0.5))]])
        rule = "threshold maximising sensitivity + specificity"
    elif both:
        thr, zs, zp = _margin_threshold(score, pos, parts, float(min_sensitivity), float(min_specificity))
        rule = (f"threshold with the largest smaller margin over sensitivity >= "
                f"{float(min_sensitivity):g} and specificity >= {float(min_specificity):g}"
                + (f" on each of {len(parts)} detectors (shared temperature)" if g is not None else "")
                + f" (margins {zs:+.2f} / {zp:+.2f} standard errors"
                + ("" if min(zs, zp) >= 0 else "; no threshold meets both minima on these frames")
                + ")")
    else:
        sens = min_specificity is None
        found = []
        for m in parts:
            if (pos[m] if sens else ~pos[m]).any():
                found.append(_rate_threshold(score[m & pos], score[m & ~pos], np.unique(score[m]),
                                             sens, rate, confidence))
        thr, short = (min if sens else max)(found, key=lambda f: f[0])
        kind, n_kind = ("sensitivity", "hits") if sens else ("specificity", "misses")
        rule = (f"{'highest' if sens else 'lowest'} threshold with {kind} >= {float(rate):g}{at}"
                + (f" on each of {len(found)} detectors (shared temperature)" if g is not None else ""))
        if short:
            rule += (f" (not reachable with {short} {n_kind}: all "
                     f"{'kept' if sens else 'rejected'})")
    thr = min(max(thr, 0.0), 1.0)
    return OperatingPoint(threshold=thr, temperature=t,
                          sensitivity=float(np.mean(score[pos] >= thr)),
                          specificity=float(np.mean(score[~pos] < thr)),
                          auc=float(roc_auc_score(pos, score)), n_positive=int(pos.sum()),
                          n_negative=int((~pos).sum()), rule=rule, source=source, views=views)


def keep_at_points(probs, keys, points: dict, weights=None, *, default_threshold: float = 0.5) -> np.ndarray:
    """Kept (bool) per row of ``probs`` (the model's class probabilities) when each row's
    detector ``keys[i]`` uses its point in ``points`` (:func:`point_for`), else no temperature
    and ``default_threshold``: the decision ``screen`` makes, from stored probabilities."""
    p = np.asarray(probs, np.float64)
    w = np.eye(p.shape[1]) if weights is None else np.asarray(weights, np.float64)
    z = np.log(np.clip(p, 1e-300, None))
    keys = np.asarray(keys)
    keep = np.zeros(len(p), bool)
    for k in set(keys.tolist()):
        m = keys == k
        op = point_for(points, k)
        t, thr = (1.0, default_threshold) if op is None else (op.temperature, op.threshold)
        keep[m] = keep_scores(z[m], w, t) >= thr
    return keep
