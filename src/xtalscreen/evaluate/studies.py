"""The studies of paper 001 as functions that print the paper's tables.

- :func:`cross_dataset` (Tables 4-6): train on the frames of one detector preset, test on
  every preset; plus, per preset, a model trained on all the *other* presets ("held out"), the
  cross-preset generalisation the issue asks for.
- :func:`training_size` (Table 7): the same model trained on growing class-stratified subsets of
  the training split, tested on the test split.

Both train with :func:`xtalscreen.train.train` into ``out_dir/<run>/`` and score the test split
with :func:`xtalscreen.evaluate.report.classification_metrics`; the cells are accuracies in %
(the model's classes and the collapsed "diffraction or not" form).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Callable

import numpy as np

from xtalscreen.errors import InputError, ParameterError
from xtalscreen.evaluate.report import classification_metrics
from xtalscreen.train.datasets import FrameDataset, LabelledSet
from xtalscreen.train.loop import TrainConfig, predict, resolve_device, train

__all__ = ["cross_dataset", "training_size"]


def _presets(data: LabelledSet) -> np.ndarray:
    if not data.meta or not any("preset" in m for m in data.meta):
        raise InputError("the dataset has no 'preset' column; the cross-dataset study needs "
                         "xtalscreen simulate output with several presets", path=data.root)
    return np.array([m.get("preset", "") for m in data.meta])


def _fit_and_score(config, train_set, val_set, tests: dict, out: Path, echo) -> dict:
    res = train(config, train_set, val=val_set if len(val_set) else None, out_dir=out, progress=False)
    from xtalscreen.train.checkpoint import load_model

    model, pp, _ = load_model(res.best_path, device=resolve_device(config.device))
    scores = {}
    for name, ts in tests.items():
        probs, labels = predict(model, FrameDataset(ts, pp), device=next(model.parameters()).device)
        ok = labels >= 0
        m = classification_metrics(probs[ok], labels[ok], ts.classes, target=ts.target)
        scores[name] = {"accuracy": m["accuracy"], "binary_accuracy": m["binary"]["accuracy"],
                        "sensitivity": m["binary"]["sensitivity"], "specificity": m["binary"]["specificity"],
                        "n": m["n"]}
    if echo is not None:
        echo(f"{out.name}: " + ", ".join(f"{k} {100 * v['binary_accuracy']:.1f} %" for k, v in scores.items()))
    return scores


def _table(rows: dict, cols: list, key: str, corner: str) -> str:
    lines = [f"| {corner} | " + " | ".join(cols) + " |", "|---|" + "---:|" * len(cols)]
    for r, cells in rows.items():
        vals = [f"{100 * cells[c][key]:.1f}" if c in cells and cells[c][key] is not None else "–" for c in cols]
        lines.append(f"| {r} | " + " | ".join(vals) + " |")
    return "\n".join(lines)


def cross_dataset(data: LabelledSet, *, config: TrainConfig, out_dir, presets=None,
                  held_out: bool = True, echo: Callable[[str], None] | None = None) -> dict:
    """Train on each preset, test on each preset (paper 001 Tables 4-6).

    Parameters
    ----------
    data : LabelledSet
        All splits, with a ``preset`` per item (``xtalscreen simulate --preset a,b,c``).
    config : TrainConfig, keyword-only
    out_dir : path, keyword-only
        One training run per row; ``study.json`` and ``study.md``.
    presets : list of str, keyword-only
        Presets to use (default all in the data).
    held_out : bool, keyword-only
        Also train on all presets but one and test on that one.

    Returns
    -------
    dict
        ``matrix[train][test]`` scores, ``held_out[preset]`` scores, ``markdown``.
    """
    p = _presets(data)
    names = list(presets) if presets else sorted(set(p))
    unknown = sorted(set(names) - set(p))
    if unknown:
        raise ParameterError(f"presets {unknown} are not in the data (it has {sorted(set(p))})")
    if len(names) < 2:
        raise ParameterError("the cross-dataset study needs at least two presets")
    out = Path(out_dir)
    tests = {b: data.subset((p == b) & np.array([s == "test" for s in data.splits])) for b in names}
    matrix, loo = {}, {}
    for a in names:
        sel = p == a
        matrix[a] = _fit_and_score(config, data.subset(sel).split("train"), data.subset(sel).split("val"),
                                   tests, out / f"train-{a}", echo)
    if held_out:
        for b in names:
            sel = np.isin(p, [n for n in names if n != b])
            loo[b] = _fit_and_score(config, data.subset(sel).split("train"), data.subset(sel).split("val"),
                                    {b: tests[b]}, out / f"all-but-{b}", echo)[b]
    md = ["## Cross-dataset accuracy (%), collapsed " + ("Hit+Maybe vs Miss" if data.target == "ke" else
                                                          "diffraction vs none"), "",
          _table(matrix, names, "binary_accuracy", "train \\ test"), "",
          f"## Cross-dataset accuracy (%), {len(data.classes)} classes", "",
          _table(matrix, names, "accuracy", "train \\ test")]
    if loo:
        md += ["", "## Held-out preset (trained on all the others)", "",
               "| test preset | n | accuracy % | collapsed % | sensitivity % | specificity % |",
               "|---|---:|---:|---:|---:|---:|"]
        for b, s in loo.items():
            f = lambda v: "–" if v is None else f"{100 * v:.1f}"  # noqa: E731
            md.append(f"| {b} | {s['n']} | {f(s['accuracy'])} | {f(s['binary_accuracy'])} | "
                      f"{f(s['sensitivity'])} | {f(s['specificity'])} |")
    result = {"matrix": matrix, "held_out": loo, "presets": names, "markdown": "\n".join(md)}
    out.mkdir(parents=True, exist_ok=True)
    (out / "study.json").write_text(json.dumps({k: v for k, v in result.items() if k != "markdown"}, indent=1))
    (out / "study.md").write_text(result["markdown"] + "\n")
    return result


def training_size(data: LabelledSet, *, config: TrainConfig, out_dir, sizes, seed: int = 0,
                  echo: Callable[[str], None] | None = None) -> dict:
    """Test accuracy against the number of training frames (paper 001 Table 7).

    ``sizes`` are numbers of training frames; each subset is drawn class-stratified (as equal
    class shares of the available frames) with ``seed``, and smaller subsets are nested in
    larger ones.
    """
    tr, va, te = data.split("train"), data.split("val"), data.split("test")
    if not len(te):
        raise InputError("no test frames (split=test) for the training-size study", path=data.root)
    sizes = sorted({int(s) for s in sizes})
    if not sizes or sizes[0] < 2:
        raise ParameterError(f"sizes must be numbers of training frames >= 2, got {sizes}")
    rng = np.random.default_rng(seed)
    order = rng.permutation(len(tr))
    # interleave classes so that every prefix is (nearly) stratified
    by = [list(order[tr.labels[order] == c]) for c in np.unique(tr.labels)]
    inter = [i for group in zip(*[_pad(b, max(map(len, by))) for b in by]) for i in group if i is not None]
    rows = {}
    for n in sizes:
        if n > len(inter):
            raise ParameterError(f"size {n} exceeds the {len(inter)} training frames")
        sub = tr.subset(np.array(sorted(inter[:n])))
        rows[str(n)] = _fit_and_score(config, sub, va, {"test": te}, Path(out_dir) / f"n{n}", echo)["test"]
    md = ["## Test accuracy (%) against training-set size", "",
          "| training frames | accuracy % | collapsed % | sensitivity % | specificity % |",
          "|---:|---:|---:|---:|---:|"]
    for n, s in rows.items():
        f = lambda v: "–" if v is None else f"{100 * v:.1f}"  # noqa: E731
        md.append(f"| {n} | {f(s['accuracy'])} | {f(s['binary_accuracy'])} | {f(s['sensitivity'])} | "
                  f"{f(s['specificity'])} |")
    result = {"rows": rows, "markdown": "\n".join(md)}
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    (out / "study.json").write_text(json.dumps(rows, indent=1))
    (out / "study.md").write_text(result["markdown"] + "\n")
    return result


def _pad(lst, n):
    """``lst`` padded with None to length ``n``."""
    return list(lst) + [None] * (n - len(lst))
