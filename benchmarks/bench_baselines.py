"""Feature baselines of paper 002 (DiffraNet) on ``diffranet``-preset simulated frames.

Run:  .venv/bin/python benchmarks/bench_baselines.py [--n-train 60] [--n-test 30] [--search 0]

Frames of the five classes are simulated in memory (512×512, 8-bit like DiffraNet; the label is
the class the physics realised), features are extracted with paper 002's best settings and the
classifiers trained on the training frames; the table gives test accuracy (5 classes) and the
binary diffraction-vs-none accuracy next to the paper's test figures (RF 98.45 %, SVM 97.66 %,
both on GLCM, on DiffraNet's own test set of 9 000+ frames). ``--search N`` adds an Optuna
search of N trials over the Table 8 space (3-fold CV on the training frames).
"""

from __future__ import annotations

import argparse
import sys
import time

import numpy as np

from xtalscreen.features import baselines
from xtalscreen.simulate import get_preset, simulate_frame

CLASSES = ("blank", "no-crystal", "weak", "good", "strong")

CONFIGS = [
    # (name, extractor, extractor params, classifier, classifier params, paper figure)
    ("GLCM + RF (paper best: d 1,2,5,8; angles 45,135; 100 trees, depth 20)", "glcm",
     {"distances": [1, 2, 5, 8], "angles": [45, 135]}, "rf",
     {"n_estimators": 100, "max_depth": 20, "max_features": "sqrt"}, "98.45 %"),
    ("GLCM + SVM (paper best: d 1,5,8; angles 0,90,135; C 32, gamma 0.5)", "glcm",
     {"distances": [1, 5, 8], "angles": [0, 90, 135]}, "svm",
     {"C": 32.0, "gamma": 0.5, "class_weight": [0.25, 0.25, 0.166, 0.166, 0.166]}, "97.66 %"),
    ("LBP + SVM (P 24, R 3; C 32)", "lbp", {"points": 24, "radius": 3}, "svm", {"C": 32.0}, "96.71 % (val)"),
    ("LBP + RF (P 24, R 3; 100 trees)", "lbp", {"points": 24, "radius": 3}, "rf", {"n_estimators": 100}, "-"),
]


def simulate_set(n_per_class: int, seed0: int):
    cfg = get_preset("diffranet")
    images, labels = [], []
    for k in range(n_per_class):
        for c in CLASSES:
            frame, truth = simulate_frame(cfg, rng=seed0 + 10 * k + CLASSES.index(c), frame_class=c)
            images.append(frame.data.astype(np.uint8) if frame.dtype == "uint8" else frame.data)
            labels.append(truth.diffranet_class)
    return images, labels


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--n-train", type=int, default=60, help="training frames per class")
    ap.add_argument("--n-test", type=int, default=30, help="test frames per class")
    ap.add_argument("--search", type=int, default=0, help="Optuna trials (0: none)")
    a = ap.parse_args(argv)
    t0 = time.perf_counter()
    xtr, ytr = simulate_set(a.n_train, 0)
    xte, yte = simulate_set(a.n_test, 10_000_000)
    t_sim = time.perf_counter() - t0
    print(f"# bench_baselines: diffranet preset, {len(ytr)} training / {len(yte)} test frames "
          f"(simulated in {t_sim:.0f} s)\n")
    print("| features + classifier | test accuracy (5 classes) | binary accuracy | paper 002 (test) | "
          "extract+train s |")
    print("|---|---|---|---|---|")
    for name, ex, ep, clf, cp, paper in CONFIGS:
        t1 = time.perf_counter()
        pipe = baselines.make_pipeline(ex, clf, classes=list(CLASSES), rng=0, extractor_params=ep,
                                       classifier_params=cp).fit(xtr, ytr)
        rep = baselines.evaluate(pipe, xte, yte)
        dt = time.perf_counter() - t1
        print(f"| {name} | {100 * rep['accuracy']:.2f} % | {100 * rep['binary_accuracy']:.2f} % | "
              f"{paper} | {dt:.0f} |")
        if ex == "glcm" and clf == "rf":
            best_cm = rep
    print("\nConfusion matrix of GLCM + RF on the test frames (rows true, columns predicted):\n")
    print("| true \\ predicted | " + " | ".join(CLASSES) + " |")
    print("|---" * (len(CLASSES) + 1) + "|")
    for c, row in zip(CLASSES, best_cm["confusion"]):
        print(f"| {c} | " + " | ".join(str(v) for v in row) + " |")
    if a.search:
        t1 = time.perf_counter()
        res = baselines.search(xtr, ytr, classes=list(CLASSES), extractors=("glcm", "lbp"),
                               classifiers=("rf", "svm"), n_trials=a.search, cv=3, rng=0)
        rep = baselines.evaluate(res.pipeline, xte, yte)
        print(f"\nOptuna search ({res.n_trials} trials, {time.perf_counter() - t1:.0f} s): best CV "
              f"accuracy {100 * res.best_score:.2f} %, test accuracy {100 * rep['accuracy']:.2f} %, "
              f"best setting {res.best_params}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
