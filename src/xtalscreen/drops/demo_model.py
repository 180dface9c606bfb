"""The shipped demonstration drop model: a small ``c4_cnn`` trained on rendered drops.

**For demonstration only.** It has seen nothing but :func:`xtalscreen.drops.render.render_drop`
images (procedural drops); it says nothing useful about real crystallisation drops. Real use
needs a model trained on real images (``xtalscreen train`` on a MARCO-layout folder, or an
ONNX export of MARCO/CHiMP, see :mod:`xtalscreen.drops.classifier`).

It is rebuilt, bit for bit on the same machine and library versions, with::

    xtalscreen drops train-demo --out src/xtalscreen/drops/data/demo_drop_model.pt --seed 0

which renders ``per_class`` training and validation drops per class at :data:`RENDER_SIZES` px,
passes them through JPEG (as imagers store them), trains a compact CNN on 64 x 64 grey input
in about two minutes on one CPU core (single-threaded, so bit-for-bit reproducible), picks the
"interesting drop" threshold on the validation ROC at a true-positive rate of 0.8 (paper 000)
and reports accuracy on a held-out rendered set (different seeds) in the checkpoint's
``metrics``. Shipped model (seed 0): held-out accuracy 0.855 on 400 rendered drops at 128 and
256 px (recall: crystal 0.89, precipitate 0.93, clear 1.00, other 0.60); at the stored
threshold 0.556 it finds 85 % of crystal drops with 8.7 % false positives.
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np

from xtalscreen.drops.classifier import Preprocess, roc_threshold, save_checkpoint
from xtalscreen.drops.render import render_drop
from xtalscreen.drops.schemes import MARCO_CLASSES
from xtalscreen.errors import ParameterError

log = logging.getLogger(__name__)

#: Sizes drops are rendered at (alternately) before resizing to the model input, px.
RENDER_SIZES = (128, 256)
#: Architecture of the demonstration model (a slimmed paper-000 Table 3 CNN: < 1 MB of weights).
ARCH = {"widths": (16, 32, 64, 64), "hidden": 64, "img_size": 64, "in_chans": 1, "drop_rate": 0.3}
VERSION = "demo-1"


@dataclass
class DemoConfig:
    """Training settings of the demonstration model."""

    per_class: int = 300          # training images per class
    val_per_class: int = 60       # validation images per class (threshold, model choice)
    test_per_class: int = 100     # held-out images per class (reported accuracy)
    epochs: int = 16
    batch: int = 32
    lr: float = 2e-3
    seed: int = 0


def render_set(n_per_class: int, *, seed: int, sizes: tuple[int, ...] = RENDER_SIZES,
               quality: int = 90) -> tuple[list[np.ndarray], np.ndarray]:
    """``n_per_class`` rendered drops per MARCO class, JPEG round-tripped; (images, labels).

    Image ``i`` of a class is rendered at ``sizes[i % len(sizes)]`` px.
    """
    images, labels = [], []
    for k, cls in enumerate(MARCO_CLASSES):
        for i in range(n_per_class):
            img = render_drop(cls, size=sizes[i % len(sizes)], rng=np.random.default_rng([seed, k, i]))
            ok, buf = cv2.imencode(".jpg", img, [cv2.IMWRITE_JPEG_QUALITY, quality])
            images.append(cv2.imdecode(buf, cv2.IMREAD_UNCHANGED))
            labels.append(k)
    return images, np.asarray(labels, np.int64)


def _augment(x: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """Random flips and 90-degree turns of a batch (N, C, H, W): drops have no orientation."""
    out = np.empty_like(x)
    for i in range(len(x)):
        a = np.rot90(x[i], int(rng.integers(4)), axes=(1, 2))
        out[i] = a[:, :, ::-1] if rng.random() < 0.5 else a
    return out


def train_demo(out: str | Path, *, config: DemoConfig | None = None, progress=print) -> dict:
    """Train the demonstration model and write its checkpoint to ``out``; return its metrics.

    Deterministic for a given ``config.seed`` (single-threaded torch on CPU).
    """
    import torch

    cfg = config or DemoConfig()
    if min(cfg.per_class, cfg.val_per_class, cfg.test_per_class, cfg.epochs, cfg.batch) < 1:
        raise ParameterError(f"demo training sizes must all be >= 1, got {cfg}")
    t0 = time.perf_counter()
    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # bit-for-bit reproducible on CPU
    try:
        return _train(out, cfg, progress, t0)
    finally:
        torch.set_num_threads(threads)


def _train(out, cfg: DemoConfig, progress, t0: float) -> dict:
    import torch

    from xtalscreen.models import create_model

    torch.manual_seed(cfg.seed)
    rng = np.random.default_rng(cfg.seed)
    prep = Preprocess(in_chans=1, size=(ARCH["img_size"],) * 2, mean=0.5, std=0.25)
    imgs, y = render_set(cfg.per_class, seed=1000 + cfg.seed)
    vimgs, vy = render_set(cfg.val_per_class, seed=2000 + cfg.seed)
    timgs, ty = render_set(cfg.test_per_class, seed=3000 + cfg.seed)
    x, vx, tx = prep.batch(imgs), prep.batch(vimgs), prep.batch(timgs)
    progress(f"rendered {len(x)} training, {len(vx)} validation, {len(tx)} test drops "
             f"in {time.perf_counter() - t0:.0f} s")

    model = create_model("c4_cnn", num_classes=len(MARCO_CLASSES), **ARCH)
    opt = torch.optim.AdamW(model.parameters(), lr=cfg.lr, weight_decay=1e-4)
    steps = cfg.epochs * -(-len(x) // cfg.batch)
    sched = torch.optim.lr_scheduler.OneCycleLR(opt, max_lr=cfg.lr, total_steps=steps)
    loss_fn = torch.nn.CrossEntropyLoss()

    def predict(arr):
        model.eval()
        with torch.inference_mode():
            return torch.softmax(model(torch.from_numpy(arr)), 1).numpy()

    best, best_state = -1.0, None
    for epoch in range(cfg.epochs):
        model.train()
        order = rng.permutation(len(x))
        total = 0.0
        for s in range(0, len(order), cfg.batch):
            idx = order[s:s + cfg.batch]
            xb = torch.from_numpy(_augment(x[idx], rng))
            loss = loss_fn(model(xb), torch.from_numpy(y[idx]))
            opt.zero_grad()
            loss.backward()
            opt.step()
            sched.step()
            total += loss.item() * len(idx)
        vacc = float((predict(vx).argmax(1) == vy).mean())
        progress(f"epoch {epoch + 1}/{cfg.epochs}: loss {total / len(x):.3f}, "
                 f"validation accuracy {vacc:.3f}")
        if vacc >= best:
            best, best_state = vacc, {k: v.clone() for k, v in model.state_dict().items()}
    model.load_state_dict(best_state)
    vp, tp = predict(vx), predict(tx)
    k_cry = MARCO_CLASSES.index("crystal")
    threshold = roc_threshold(vp[:, k_cry], vy == k_cry, min_tpr=0.8)
    tpred = tp.argmax(1)
    metrics = {
        "validation_accuracy": round(best, 4),
        "test_accuracy": round(float((tpred == ty).mean()), 4),
        "test_per_class_recall": {c: round(float((tpred[ty == k] == k).mean()), 4)
                                  for k, c in enumerate(MARCO_CLASSES)},
        "test_crystal_tpr_at_threshold": round(float((tp[ty == k_cry, k_cry] >= threshold).mean()), 4),
        "test_crystal_fpr_at_threshold": round(float((tp[ty != k_cry, k_cry] >= threshold).mean()), 4),
        "train_images": int(len(x)), "seed": cfg.seed, "epochs": cfg.epochs,
        "render_sizes": list(RENDER_SIZES), "train_seconds": round(time.perf_counter() - t0, 1),
        "note": "demonstration only: trained on procedurally rendered drops, not real images",
    }
    save_checkpoint(out, model, classes=MARCO_CLASSES, name="xtalscreen-demo", version=VERSION,
                    preprocess=prep, threshold=threshold, metrics=metrics)
    progress(f"wrote {out}: held-out accuracy {metrics['test_accuracy']:.3f}, "
             f"interesting-drop threshold {threshold:.3f}")
    return metrics
