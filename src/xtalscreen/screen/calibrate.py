"""Choose a screening model's per-detector operating points on labelled frames.

:func:`calibrate` runs the model over labelled frames exactly as ``screen`` does (the same
:class:`~xtalscreen.screen.workers.FrameProcessor` on the raw frames), groups them by detector
(:func:`~xtalscreen.evaluate.operating.detector_key`), fits a temperature and a keep threshold
per detector (:func:`~xtalscreen.evaluate.operating.fit_operating_point`) and writes a copy of
the model file carrying them; ``screen`` then applies each frame's own detector's point.

The frames should be ones the model was not trained on: the validation split of its training
set, or frames simulated for the user's detector (``xtalscreen simulate --preset ...``), or real
frames labelled with ``xtalscreen label``. Calibrate on the device that will screen: a GPU's
kernels (TF32) can move scores by more than the gap around a threshold.

>>> pts = calibrate("default", "sim_val/", out="calibrated.pt", split="val")  # doctest: +SKIP
"""

from __future__ import annotations

import dataclasses
import warnings
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from xtalscreen.errors import InputError, ParameterError
from xtalscreen.evaluate.operating import ANY_DETECTOR

__all__ = ["CalibrationResult", "calibrate"]


@dataclass
class CalibrationResult:
    """What :func:`calibrate` did.

    Attributes
    ----------
    points : dict
        ``{detector_key: OperatingPoint}`` fitted now.
    kept : dict
        Points already in the model file for other detectors (kept as they were).
    skipped : list of str
        Detectors with too few frames, or with only one kind (hits or misses), one line each.
    bad_items : list of str
        Frames that could not be read or had no valid pixel.
    frames : int
        Frames scored.
    out : str
        The model file written ('' when nothing was fitted).
    warnings : list of str
        E.g. a temperature at the limit of its search range (the probabilities carry no
        calibration information there).
    """

    points: dict = field(default_factory=dict)
    kept: dict = field(default_factory=dict)
    skipped: list = field(default_factory=list)
    bad_items: list = field(default_factory=list)
    frames: int = 0
    out: str = ""
    warnings: list = field(default_factory=list)

    def table(self) -> str:
        """The fitted points as a Markdown table."""
        rows = ["| detector | frames (hit+maybe / miss) | temperature | threshold | sensitivity | "
                "specificity | AUC | views |", "|---|---|---|---|---|---|---|---|"]
        for k, op in sorted(self.points.items()):
            name = "any other (pooled)" if k == ANY_DETECTOR else k
            rows.append(f"| {name} | {op.n_positive} / {op.n_negative} | {op.temperature:.3f} | "
                        f"{op.threshold:.4f} | {100 * op.sensitivity:.1f} % | "
                        f"{100 * op.specificity:.1f} % | {op.auc:.4f} | {op.views} |")
        changed = {", ".join(f"{k}={v}" for k, v in op.preprocess.items())
                   for op in self.points.values() if op.preprocess}
        if changed:
            rows.append(f"\npreprocessing changed for these detectors: {'; '.join(sorted(changed))}")
        return "\n".join(rows)


def calibrate(model, data, *, out, split: str | None = "val", min_sensitivity: float | None = None,
              min_specificity: float | None = None, balanced: bool = False,
              confidence: float | None = None, min_frames: int = 50, pooled: bool = True,
              pooled_rule: str = "each", views: int | None = None, preprocess: dict | None = None,
              batch: int = 32, limit: int | None = None, device: str = "cpu",
              echo=None) -> CalibrationResult:
    """Fit per-detector operating points of ``model`` on labelled frames; write ``out``.

    Parameters
    ----------
    model : "default" or path
        A screening model (targets ke, binary or diffranet).
    data : path or LabelledSet
        Labelled frames (``xtalscreen simulate`` output, a labels.csv, DiffraNet-style folders;
        see :func:`xtalscreen.train.load_labels`), loaded for the model's target.
    out : path, keyword-only
        The calibrated model file (may be the input file itself; a shipped name is never
        overwritten in place unless its path is given).
    split : str or None, keyword-only
        Use only this split (default ``"val"``; None: every frame).
    min_sensitivity, min_specificity, balanced : keyword-only
        The threshold rule (one of the two rates; both: the threshold with the largest smaller
        margin over the two minima; or ``balanced=True``: maximal sensitivity + specificity;
        neither: sensitivity >= 0.985; see
        :func:`~xtalscreen.evaluate.operating.fit_operating_point`).
    confidence : float in (0, 1), keyword-only
        Hold the rate on new frames of each detector with this confidence (a one-sided
        Clopper-Pearson bound), not only on these; None: on these frames.
    min_frames : int, keyword-only
        A detector needs at least this many frames, hits and misses together, to get a point.
    pooled : bool, keyword-only
        With points for two or more detectors, also fit one on all frames together (key
        ``"*"``), used by ``screen`` for a detector without its own point.
    pooled_rule : {"each", "all"}, keyword-only
        How the pooled point meets the rate: ``"each"`` (default) on every calibrated detector
        at once, under one temperature fitted on their frames -- sensitivity first, since a new
        detector may be as hard as the hardest one seen; ``"all"``: on all frames counted
        together (a detector with many easy frames can then hide a hard one).
    views : int or None, keyword-only
        Test-time views (1, 2, 4 or 8 dihedral orientations, logits averaged;
        :mod:`xtalscreen.preprocess.views`) the frames are scored with; recorded in each point,
        and ``screen`` applies them to that detector's frames. More views separate faint hits
        from misses a little better at one forward pass each. None: the model file's own
        ``views`` (a head from ``xtalscreen train-head`` records them), else 1.
    preprocess : dict, keyword-only
        Changes to the model's preprocessing for these frames (keys of
        :data:`~xtalscreen.evaluate.operating.POINT_PREPROCESS`, e.g.
        ``{"prefilter_sigma": 1.2, "bin": 3}``: the matched filter of a detector whose
        point-spread function spreads its spots, :mod:`xtalscreen.preprocess.smooth`); recorded
        in each point, and ``screen`` preprocesses that detector's frames so.
    batch, device : keyword-only
        Inference batch size and device.
    limit : int, keyword-only
        Score at most this many frames (spread over the set).
    echo : callable, optional
        Progress lines.

    Raises
    ------
    InputError
        Missing model or data, no usable frame, or no detector with enough frames.
    ParameterError
        Bad arguments (both or neither rule, rates outside (0, 1], min_frames < 2).
    """
    from xtalscreen.evaluate.operating import T_BOUNDS, check_point_preprocess, fit_operating_point
    from xtalscreen.models.pretrained import load_screening_model
    from xtalscreen.screen.workers import FrameProcessor, class_weights, parse_operating_points
    from xtalscreen.train import FrameDataset, LabelledSet, load_labels, update_checkpoint

    echo = echo or (lambda *_: None)
    if balanced:
        min_sensitivity = min_specificity = None
    elif min_sensitivity is None and min_specificity is None:
        from xtalscreen.evaluate.operating import DEFAULT_MIN_SENSITIVITY

        min_sensitivity = DEFAULT_MIN_SENSITIVITY
    elif min_sensitivity is not None and min_specificity is not None:
        if confidence is not None:
            raise ParameterError("confidence applies to a one-rate rule; with both minimum rates the "
                                 "threshold maximises the smaller margin")
        if max(float(min_sensitivity), float(min_specificity)) >= 1.0:
            raise ParameterError("with both minimum rates each must be below 1, got "
                                 f"{min_sensitivity!r} and {min_specificity!r}")
    for name, v in (("min_sensitivity", min_sensitivity), ("min_specificity", min_specificity)):
        if v is not None and not 0.0 < float(v) <= 1.0:
            raise ParameterError(f"{name} must be in (0, 1], got {v!r}")
    from xtalscreen.preprocess.views import check_views

    if views is not None:
        views = check_views(views)
    changes = check_point_preprocess(preprocess)
    if pooled_rule not in ("each", "all"):
        raise ParameterError(f"pooled_rule must be 'each' or 'all', got {pooled_rule!r}")
    if confidence is not None and not 0.0 < float(confidence) < 1.0:
        raise ParameterError(f"confidence must be in (0, 1), got {confidence!r}")
    if isinstance(min_frames, bool) or int(min_frames) != min_frames or min_frames < 2:
        raise ParameterError(f"min_frames must be an integer >= 2, got {min_frames!r}")
    if isinstance(batch, bool) or int(batch) != batch or batch < 1:
        raise ParameterError(f"batch must be an integer >= 1, got {batch!r}")
    net, pp, meta = load_screening_model(model)
    weights = class_weights(meta["classes"])  # refuses non-screening models
    if views is None:
        views = meta.get("views") or 1
    if isinstance(data, LabelledSet):
        items = data if split is None else data.split(split)
    else:
        items = load_labels(data, target=meta["target"], split=split)
    if len(items) == 0:
        raise InputError(f"no labelled frames{'' if split is None else f' in split {split!r}'}; "
                         "give labelled frames (xtalscreen simulate output or a labels.csv), or "
                         "another --split", path=str(getattr(items, "root", data)))
    if tuple(items.classes) != tuple(meta["classes"]):
        raise InputError(f"the data's classes {list(items.classes)} are not the model's "
                         f"{list(meta['classes'])}", path=str(getattr(items, "root", data)))
    order = np.arange(len(items))
    if limit is not None:
        if isinstance(limit, bool) or int(limit) != limit or limit < 1:
            raise ParameterError(f"limit must be an integer >= 1, got {limit!r}")
        order = order[np.linspace(0, len(order) - 1, min(int(limit), len(order))).round().astype(int)]
        order = np.unique(order)
    proc = FrameProcessor(net, pp, meta["classes"], device=device, views=views)
    prep = proc.prepare_for(changes)
    ds = FrameDataset(items, None)
    res = CalibrationResult()
    try:
        logits, labels, keys, layouts = _score(proc, prep, ds, items, order, batch, res, echo)
    finally:
        ds.close()
    res.frames = len(labels)
    if not labels:
        raise InputError("no frame could be scored; see the bad items: "
                         + "; ".join(res.bad_items[:3]), path=str(getattr(items, "root", data)))
    logits_a, labels_a, keys_a = np.asarray(logits), np.asarray(labels, np.int64), np.asarray(keys)
    source = f"{getattr(items, 'root', '') or data}" + ("" if split is None else f" (split {split})")
    for k in sorted(set(keys)):
        sel = keys_a == k
        n = int(sel.sum())
        if n < min_frames:
            res.skipped.append(f"detector {k}: {n} frames, fewer than min_frames={min_frames}")
            continue
        try:
            res.points[k] = fit_operating_point(logits_a[sel], labels_a[sel], weights=weights,
                                                min_sensitivity=min_sensitivity,
                                                min_specificity=min_specificity,
                                                balanced=balanced, confidence=confidence,
                                                views=views, source=f"{source}, {n} frames")
            res.points[k] = dataclasses.replace(res.points[k], layout=layouts.get(k, ""),
                                                preprocess=changes)
        except ParameterError as exc:
            res.skipped.append(f"detector {k}: {exc}")
            continue
        t = res.points[k].temperature
        if min(abs(np.log(t / b)) for b in T_BOUNDS) < 1e-3:
            res.warnings.append(f"detector {k}: the fitted temperature {t:.3g} sits at the search "
                                f"limit {T_BOUNDS}: the model's probabilities carry little (or, at "
                                "the low end, perfectly separating) information on these frames; "
                                "the threshold stands, the probabilities are not calibrated")
    if not res.points:
        raise InputError("no detector got an operating point: " + "; ".join(res.skipped),
                         path=str(getattr(items, "root", data)))
    if pooled and len(res.points) >= 2:
        # the pooled point, for a detector that has none of its own;
        # "each": only the calibrated detectors' frames, the rate held on every one of them
        each = pooled_rule == "each"
        sel = np.isin(keys_a, list(res.points)) if each else np.ones(len(keys_a), bool)
        res.points[ANY_DETECTOR] = fit_operating_point(
            logits_a[sel], labels_a[sel], weights=weights, min_sensitivity=min_sensitivity,
            min_specificity=min_specificity, balanced=balanced, confidence=confidence,
            groups=keys_a[sel] if each else None, views=views,
            source=(f"{source}, {int(sel.sum())} frames of {len(res.points)} detectors" if each else
                    f"{source}, all {len(labels_a)} frames of {len(set(keys))} detectors"))
        res.points[ANY_DETECTOR] = dataclasses.replace(res.points[ANY_DETECTOR], preprocess=changes)
    old = parse_operating_points(meta.get("operating_points"), path=meta["path"])
    res.kept = {k: v for k, v in old.items() if k not in res.points}
    merged = {k: v.to_dict() for k, v in {**res.kept, **res.points}.items()}
    res.out = str(update_checkpoint(meta["path"], Path(out), operating_points=merged))
    return res


def _score(proc, prep, ds, items, order, batch, res, echo):
    """Logits, labels and detector keys of the frames ``order`` (bad ones go to ``res``), and
    the sensor layout of each key (:func:`~xtalscreen.evaluate.operating.layout_key`)."""
    from xtalscreen.evaluate.operating import detector_key, layout_key

    logits, labels, keys, layouts = [], [], [], {}
    for start in range(0, len(order), batch):
        frames, idx = [], []
        for i in order[start:start + batch]:
            try:
                with warnings.catch_warnings():
                    warnings.simplefilter("ignore")
                    frames.append(ds.read(int(i)))
                idx.append(int(i))
            except (InputError, OSError, ValueError) as exc:
                res.bad_items.append(f"{items.files[i]} frame {int(items.frames[i])}: {exc}")
        if not frames:
            continue
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            _, z = proc.infer(frames, prepares=[prep] * len(frames))
        for f, i, row in zip(frames, idx, z):
            if not np.all(np.isfinite(row)):
                res.bad_items.append(f"{items.files[i]} frame {int(items.frames[i])}: no valid pixel "
                                     "in the model's input (left out)")
                continue
            logits.append(row)
            labels.append(int(items.labels[i]))
            keys.append(detector_key(f.data.shape))
            if not layouts.get(keys[-1]):  # the first frame of this shape with a geometry
                layouts[keys[-1]] = layout_key(f)
        echo(f"scored {min(start + batch, len(order))} / {len(order)} frames")
    return logits, labels, keys, layouts
