"""Evaluate a trained model on a labelled dataset and write a report folder.

:func:`classification_metrics` turns probabilities and labels into the numbers the papers
report; :func:`evaluate_model` runs a checkpoint over a dataset and writes ``REPORT_DIR``:

- ``metrics.json``: everything below, plus provenance;
- ``report.md``: the tables in Markdown;
- ``confusion.png`` (the model's classes), ``confusion_binary.png`` (collapsed),
  ``roc.png``, ``reliability.png``; optionally ``saliency/*.png`` and ``embedding.png``;
- ``predictions.csv``: file, frame, true class, predicted class and every probability.

The collapsed binary form is "crystal diffraction or not": for Ke's classes Hit+Maybe vs
Miss (paper 001 Table 3: the Hit and Maybe probabilities are added, then the larger of the two
groups wins), for DiffraNet's weak+good+strong vs blank+no-crystal, for binary models
hit vs miss. Sensitivity and specificity (paper 003) and the ROC (with the threshold at a
minimum TPR, paper 000) are on that form.
"""

from __future__ import annotations

import csv
import json
import time
from pathlib import Path

import numpy as np

from xtalscreen.errors import InputError, ParameterError
from xtalscreen.evaluate import metrics as M

__all__ = ["POSITIVE_GROUPS", "classification_metrics", "evaluate_model", "markdown_report"]

#: Classes counted as "diffraction" (positive) in the collapsed form, per target.
POSITIVE_GROUPS = {"ke": ("hit", "maybe"), "diffranet": ("weak", "good", "strong"), "binary": ("hit",),
                   "marco": ("crystal",)}  # drops: crystal vs the rest (paper 000)


def _groups(classes, target):
    pos = [i for i, c in enumerate(classes) if c in POSITIVE_GROUPS.get(target, ())]
    neg = [i for i in range(len(classes)) if i not in pos]
    if not pos or not neg:
        raise ParameterError(f"target {target!r} with classes {classes} has no positive/negative split")
    return pos, neg


def _f(v):
    v = float(v)
    return None if not np.isfinite(v) else v


def classification_metrics(probs, labels, classes, *, target: str, min_tpr: float = 0.8,
                           n_bins: int = 10, groups=None) -> dict:
    """All report numbers for probabilities ``(N, K)`` and true labels ``(N,)``.

    Parameters
    ----------
    probs : ndarray, shape (N, K)
    labels : ndarray of int, shape (N,)
    classes : sequence of str, length K
    target : str
        Decides the collapsed binary form (:data:`POSITIVE_GROUPS`).
    min_tpr : float, keyword-only
        The ROC operating point is the highest threshold with TPR >= ``min_tpr``.
    groups : sequence of str, optional
        A group name per item (e.g. the detector preset): per-group accuracy, sensitivity
        and specificity.
    """
    p = np.asarray(probs, float)
    y = np.asarray(labels, np.int64)
    if p.ndim != 2 or len(p) != len(y) or p.shape[1] != len(classes):
        raise ParameterError(f"probs must be (N, {len(classes)}) with N = len(labels), got {p.shape}")
    if not len(y):
        raise InputError("no readable frame to evaluate")
    k = len(classes)
    pred = p.argmax(1)
    cm = M.confusion_matrix(y, pred, n_classes=k)
    prec, rec = M.precision_recall(cm)
    pos, neg = _groups(classes, target)
    pb = M.collapse_probs(p, [pos, neg])
    yb = np.isin(y, pos).astype(np.int64)          # 1 = diffraction
    predb = (pb[:, 0] >= pb[:, 1]).astype(np.int64)
    cmb = M.confusion_matrix(1 - yb, 1 - predb, n_classes=2)  # row/col 0 = positive
    sens, spec = M.sensitivity_specificity(yb, predb)
    out = {
        "n": int(len(y)), "classes": list(classes), "target": target,
        "accuracy": M.accuracy(y, pred),
        "confusion": cm.tolist(),
        "per_class": {c: {"precision": _f(prec[i]), "recall": _f(rec[i]), "support": int(cm[i].sum())}
                      for i, c in enumerate(classes)},
        "binary": {"positive": [classes[i] for i in pos], "negative": [classes[i] for i in neg],
                   "confusion": cmb.tolist(), "accuracy": M.accuracy(yb, predb),
                   "sensitivity": _f(sens), "specificity": _f(spec)},
    }
    if 0 < yb.sum() < len(yb):
        fpr, tpr, thr = M.roc_curve(yb, pb[:, 0])
        t, tp, fp = M.threshold_at_tpr(fpr, tpr, thr, min_tpr=min_tpr)
        s2, c2 = M.sensitivity_specificity(yb, (pb[:, 0] >= t).astype(np.int64))
        out["roc"] = {"auc": M.auc(fpr, tpr), "min_tpr": min_tpr, "threshold": _f(t),
                      "tpr": tp, "fpr": fp, "sensitivity": _f(s2), "specificity": _f(c2),
                      "curve": {"fpr": fpr.tolist(), "tpr": tpr.tolist()}}
    rel = M.reliability(p, y, n_bins=n_bins)
    out["calibration"] = {"ece": M.expected_calibration_error(p, y, n_bins=n_bins),
                          "bins": {"edges": rel["edges"].tolist(),
                                   "confidence": [_f(v) for v in rel["confidence"]],
                                   "accuracy": [_f(v) for v in rel["accuracy"]],
                                   "count": rel["count"].tolist()}}
    if groups is not None:
        g = np.asarray([str(v) for v in groups])
        per = {}
        for name in sorted(set(g)):
            m = g == name
            s, c = M.sensitivity_specificity(yb[m], predb[m])
            per[name] = {"n": int(m.sum()), "accuracy": M.accuracy(y[m], pred[m]),
                         "sensitivity": _f(s), "specificity": _f(c)}
        if len(per) > 1 or (per and "" not in per):
            out["per_group"] = per
    return out


def _pct(v) -> str:
    return "–" if v is None or not np.isfinite(v) else f"{100 * v:.2f} %"


def _cm_table(cm, classes) -> list[str]:
    head = "| true \\ predicted | " + " | ".join(classes) + " | recall |"
    lines = [head, "|" + "---|" * (len(classes) + 2)]
    for i, c in enumerate(classes):
        row = cm[i]
        rec = row[i] / sum(row) if sum(row) else float("nan")
        lines.append(f"| {c} | " + " | ".join(str(v) for v in row) + f" | {_pct(rec)} |")
    col = np.asarray(cm).sum(0)
    lines.append("| precision | " + " | ".join(_pct(cm[j][j] / col[j] if col[j] else float("nan"))
                                               for j in range(len(classes))) + " | |")
    return lines


def markdown_report(m: dict, *, title: str = "Evaluation") -> str:
    """The report tables (Markdown) of a :func:`classification_metrics` result."""
    b = m["binary"]
    lines = [f"# {title}", "", f"{m['n']} frames, target `{m['target']}`; accuracy **{_pct(m['accuracy'])}**.", "",
             f"## Confusion matrix ({len(m['classes'])} classes)", "", *_cm_table(m["confusion"], m["classes"]), "",
             f"## Collapsed: {' + '.join(b['positive'])} vs {' + '.join(b['negative'])}", "",
             *_cm_table(b["confusion"], ["+".join(b["positive"]), "+".join(b["negative"])]), "",
             "| accuracy | sensitivity | specificity |", "|---|---|---|",
             f"| {_pct(b['accuracy'])} | {_pct(b['sensitivity'])} | {_pct(b['specificity'])} |", ""]
    if "roc" in m:
        r = m["roc"]
        lines += ["## ROC", "", f"AUC {r['auc']:.4f}. Threshold on P({'+'.join(b['positive'])}) at TPR >= "
                  f"{r['min_tpr']}: **{r['threshold']:.4g}** (TPR {r['tpr']:.4f}, FPR {r['fpr']:.4f}; "
                  f"sensitivity {_pct(r['sensitivity'])}, specificity {_pct(r['specificity'])}).", ""]
    lines += ["## Calibration", "", f"Expected calibration error {m['calibration']['ece']:.4f} "
              f"({len(m['calibration']['bins']['count'])} bins).", ""]
    if "operating_points" in m:
        o = m["operating_points"]
        lines += ["## At the model's operating points", "",
                  "Per detector, the temperature and keep threshold stored by `xtalscreen calibrate`, "
                  "applied as `xtalscreen screen` applies them (hit + maybe kept vs miss).", "",
                  "| detector | n | temperature | threshold | views | sensitivity | specificity |",
                  "|---|---|---|---|---|---|---|"]
        for k, v in o["per_detector"].items():
            changed = "".join(f", {pk} {pv}" for pk, pv in v.get("preprocess", {}).items())
            lines.append(f"| {k} | {v['n']} | {v['temperature']:.3f} | {v['threshold']:.4f} | "
                         f"{v.get('views', 1)}{changed} | {_pct(v['sensitivity'])} | {_pct(v['specificity'])} |")
        lines += [f"| all | {o['n']} | | | | {_pct(o['sensitivity'])} | {_pct(o['specificity'])} |", ""]
    if "per_group" in m:
        lines += ["## Per group", "", "| group | n | accuracy | sensitivity | specificity |", "|---|---|---|---|---|"]
        for g, v in m["per_group"].items():
            lines.append(f"| {g} | {v['n']} | {_pct(v['accuracy'])} | {_pct(v['sensitivity'])} | "
                         f"{_pct(v['specificity'])} |")
        lines.append("")
    return "\n".join(lines)


def evaluate_model(model_path, data, *, out_dir, split: str | None = "test", annotations=None,
                   min_tpr: float = 0.8, saliency: int = 0, embedding: bool = False,
                   batch_size: int = 64, device: str = "auto", workers: int = 0,
                   progress: bool | None = None, max_embedding: int = 1000, rng=0,
                   report=None, views: int | None = None) -> dict:
    """Run a checkpoint over a dataset and write the report folder (module docstring).

    Parameters
    ----------
    model_path : path or str
        Checkpoint from ``xtalscreen train`` (or ``train-head``, ``calibrate``), or the name of a
        shipped model (``"default"``, ``"diffranet5"``).
    data : path
        Dataset in any layout of :func:`xtalscreen.train.datasets.load_labels`.
    out_dir : path, keyword-only
    split : str or None, keyword-only
        Split to evaluate (None: every frame).
    saliency : int, keyword-only
        Number of saliency maps to draw (spread over the classes).
    embedding : bool, keyword-only
        Draw the t-SNE embedding of the features (at most ``max_embedding`` frames).
    report : callable, keyword-only
        Receives one line per unreadable frame.
    views : int, keyword-only
        Test-time views (1, 2, 4, 8) averaged per frame; None: the checkpoint's own ``views``
        (a head fitted by ``xtalscreen train-head`` records them), else 1. Figures at operating
        points always use each point's views.

    Returns
    -------
    dict
        The content of ``metrics.json``.
    """
    from xtalscreen.evaluate import plots
    from xtalscreen.models.pretrained import resolve_model
    from xtalscreen.preprocess.views import check_views
    from xtalscreen.train.checkpoint import load_model
    from xtalscreen.train.datasets import FrameDataset, load_labels
    from xtalscreen.train.loop import predict, resolve_device

    t0 = time.perf_counter()
    dev = resolve_device(device)
    model_path = resolve_model(model_path)
    model, pp, meta = load_model(model_path, device=dev)
    views = check_views(views if views is not None else meta.get("views") or 1)
    target = meta["target"]
    ds = load_labels(data, target=target, split=split, annotations=annotations)
    if tuple(ds.classes) != tuple(meta["classes"]):
        raise InputError(f"model classes {meta['classes']} differ from the target's {list(ds.classes)}",
                         path=str(model_path))
    fd = FrameDataset(ds, pp)
    probs, labels = predict(model, fd, batch_size=batch_size, device=dev, workers=workers,
                            progress=progress, views=views)
    ok = labels >= 0
    bad = [fd.bad.get(int(i), f"{ds.files[i]} (frame {int(ds.frames[i])}): unreadable")
           for i in np.flatnonzero(~ok)]
    for line in bad:
        (report or (lambda s: None))(line)
    groups = [m.get("preset", "") for m in ds.meta] if ds.meta else None
    res = classification_metrics(probs[ok], labels[ok], ds.classes, target=target, min_tpr=min_tpr,
                                 groups=None if groups is None else np.asarray(groups)[ok])
    keys = _detector_keys(fd, ds, np.flatnonzero(ok), meta)
    at_points = at_operating_points(
        _at_point_views(probs, ok, keys, meta, lambda v, idx, cfg: predict(
            model, FrameDataset(ds.subset(idx), cfg), batch_size=batch_size, device=dev,
            workers=workers, views=v)[0], have=views, preprocess=pp),
        labels[ok], keys, meta)
    if at_points is not None:
        res["operating_points"] = at_points
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    plots.confusion_png(np.array(res["confusion"]), ds.classes, out / "confusion.png",
                        title=f"confusion matrix ({target})")
    b = res["binary"]
    plots.confusion_png(np.array(b["confusion"]), ["+".join(b["positive"]), "+".join(b["negative"])],
                        out / "confusion_binary.png", title="collapsed")
    if "roc" in res:
        r = res["roc"]
        plots.roc_png(r["curve"]["fpr"], r["curve"]["tpr"], out / "roc.png", auc=r["auc"],
                      point=(r["fpr"], r["tpr"], r["threshold"]),
                      title=f"ROC: {'+'.join(b['positive'])} vs rest")
    cal = res["calibration"]["bins"]
    plots.reliability_png({k: np.array(v, dtype=float) for k, v in cal.items()}, out / "reliability.png",
                          ece=res["calibration"]["ece"])
    _write_predictions(out / "predictions.csv", ds, probs, labels)
    idx_ok = np.flatnonzero(ok)
    if saliency:
        res["saliency"] = _saliency(model, fd, idx_ok, labels, ds.classes, int(saliency), out / "saliency")
    if embedding:
        res["embedding"] = _embedding(model, fd, idx_ok, labels, ds.classes, max_embedding, rng,
                                      out / "embedding.png")
    res["bad"] = bad
    res["provenance"] = {"model": str(model_path), "model_name": meta["model_name"],
                         "model_epoch": meta.get("epoch"), "data": str(data), "split": split,
                         "views": views,
                         "device": str(dev), "seconds": round(time.perf_counter() - t0, 3),
                         "xtalscreen": meta.get("xtalscreen_version")}
    (out / "metrics.json").write_text(json.dumps(res, indent=1))
    (out / "report.md").write_text(markdown_report(res, title=f"Evaluation of {Path(model_path).name} "
                                                              f"on {Path(str(data)).name} ({split or 'all'})"))
    fd.close()
    return res


def _detector_keys(fd, ds, idx, meta) -> list | None:
    """The operating-point key (:func:`~xtalscreen.evaluate.operating.point_key`: the raw data
    shape, or a point of the same sensor layout) of items ``idx``, read once per file; None when
    the model has no operating points (nothing read)."""
    if not meta.get("operating_points") or fd.photos:
        return None
    from xtalscreen.evaluate.operating import point_key
    from xtalscreen.screen.workers import parse_operating_points

    points = parse_operating_points(meta["operating_points"], path=meta.get("path", ""))
    by_file: dict = {}
    keys = []
    for i in idx:
        f = ds.files[i]
        if f not in by_file:
            by_file[f] = point_key(points, fd.read(int(i)))
        keys.append(by_file[f])
    return keys


def _at_point_views(probs, ok, keys, meta, predict_views, have: int = 1, preprocess=None) -> np.ndarray:
    """``probs[ok]`` (computed with ``have`` test-time views and the model's ``preprocess``),
    with the rows of detectors whose operating point was fitted on other views or with its own
    preprocessing replaced by ``predict_views(views, items, config)`` (those items only, one
    pass per views count and preprocessing)."""
    out = probs[ok]
    if keys is None:
        return out
    from xtalscreen.evaluate.operating import point_for, point_preprocess, preprocess_key
    from xtalscreen.screen.workers import parse_operating_points

    points = parse_operating_points(meta.get("operating_points"), path=meta.get("path", ""))
    keys = np.asarray(keys)
    own = meta.get("views") or 1  # a detector without a point: the file's own views, as screen
    ops = [point_for(points, k) for k in keys]
    how = [(getattr(op, "views", own), preprocess_key(op)) for op in ops]
    items = np.flatnonzero(ok)
    for h in sorted(set(how) - {(have, ())}, key=repr):  # out is a copy already (boolean indexing)
        m = np.array([x == h for x in how])
        op = ops[int(np.flatnonzero(m)[0])]
        out[m] = predict_views(h[0], items[m], point_preprocess(preprocess, op))
    return out


def at_operating_points(probs, labels, keys, meta) -> dict | None:
    """Hit+Maybe vs Miss sensitivity / specificity with the model's per-detector operating
    points (temperature, threshold; 0.5 and no scaling for a detector without one), overall and
    per detector; None for a model without points or not a screening model."""
    if keys is None:
        return None
    from xtalscreen.errors import ParameterError
    from xtalscreen.evaluate.operating import keep_at_points, point_for
    from xtalscreen.screen.workers import DEFAULT_THRESHOLD, class_weights, parse_operating_points

    try:
        w = class_weights(meta["classes"])
    except ParameterError:
        return None
    points = parse_operating_points(meta.get("operating_points"), path=meta.get("path", ""))
    y = np.asarray(labels, np.int64)
    pos = (w[y, 0] + w[y, 1]) > 0.5
    keys = np.asarray(keys)
    keep = keep_at_points(probs, keys, points, w, default_threshold=DEFAULT_THRESHOLD)
    per = {}
    for k in sorted(set(keys)):
        m = keys == k
        op = point_for(points, k)
        t, thr = (1.0, DEFAULT_THRESHOLD) if op is None else (op.temperature, op.threshold)
        s, c = M.sensitivity_specificity(pos[m].astype(np.int64), keep[m].astype(np.int64))
        per[k] = {"n": int(m.sum()), "temperature": t, "threshold": thr, "calibrated": op is not None,
                  "views": 1 if op is None else op.views,
                  **({"preprocess": dict(op.preprocess)} if op is not None and op.preprocess else {}),
                  "sensitivity": _f(s), "specificity": _f(c)}
    s, c = M.sensitivity_specificity(pos.astype(np.int64), keep.astype(np.int64))
    return {"n": int(len(y)), "sensitivity": _f(s), "specificity": _f(c), "per_detector": per}


def _write_predictions(path: Path, ds, probs, labels) -> None:
    with open(path, "w", newline="") as fh:
        w = csv.writer(fh)
        w.writerow(["file", "frame", "true", "predicted"] + [f"p_{c}" for c in ds.classes])
        for i in range(len(ds)):
            if labels[i] < 0:
                w.writerow([ds.files[i], int(ds.frames[i]), "", "unreadable"] + [""] * len(ds.classes))
                continue
            w.writerow([ds.files[i], int(ds.frames[i]), ds.classes[labels[i]], ds.classes[int(probs[i].argmax())]]
                       + [f"{v:.6f}" for v in probs[i]])


def _spread(idx, labels, n):
    """Up to ``n`` item indices taken round-robin over the classes."""
    by = [list(idx[labels[idx] == c]) for c in np.unique(labels[idx])]
    out = []
    while len(out) < n and any(by):
        for lst in by:
            if lst and len(out) < n:
                out.append(lst.pop(0))
    return out


def _saliency(model, fd, idx, labels, classes, n, folder: Path) -> list[str]:
    import torch

    from xtalscreen.evaluate.saliency import saliency_map, saliency_png

    files = []
    for j, i in enumerate(_spread(idx, labels, n)):
        x, y, _ = fd[int(i)]
        sal = saliency_map(model, x[None], target=[y])[0]
        with torch.no_grad():
            p = torch.softmax(model(x[None].to(next(model.parameters()).device)), 1)[0].cpu().numpy()
        name = folder / f"{j:03d}_{classes[y]}.png"
        saliency_png(x[0].numpy(), sal, name,
                     caption=f"true {classes[y]}, predicted {classes[int(p.argmax())]} ({p.max():.2f})")
        files.append(name.name)
    return files


def _embedding(model, fd, idx, labels, classes, n, rng, path: Path) -> dict:
    from xtalscreen.evaluate.embedding import features, tsne_2d
    from xtalscreen.evaluate.plots import scatter_png

    pick = np.asarray(_spread(idx, labels, n))
    if len(pick) < 3:
        return {"skipped": "fewer than 3 readable frames"}
    x = [fd[int(i)][0].numpy() for i in pick]  # sizes may differ (unbinned small detectors)
    xy = tsne_2d(features(model, x), rng=rng)
    scatter_png(xy, labels[pick], classes, path, title="t-SNE of the model's features")
    return {"file": path.name, "n": int(len(pick))}
