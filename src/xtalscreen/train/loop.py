"""The training loop: one config dataclass, one function you can read in one sitting.

:func:`train` runs, per epoch: **lr** (set from the schedule) -> **train** (class-balanced
mini-batches, augmentation, SGD/AdamW step) -> **eval** (validation accuracy and loss) ->
**checkpoint** (``last.pt`` every epoch, ``best.pt`` on a new best validation accuracy) ->
**log** (one JSON line in ``metrics.jsonl``) -> **early stop** (``patience`` epochs without
improvement). At the end ``train.json`` holds the final metrics and provenance.

Reproducibility: with the same seed a CPU run gives the same weights bit for bit: the batch
order depends on ``(seed, epoch)``, the augmentation of item ``i`` on ``(seed, epoch, i)``, and
the torch RNG (weight init, dropout) is seeded and saved in every checkpoint, so a run resumed
from ``last.pt`` continues exactly as if it had not stopped.
"""

from __future__ import annotations

import dataclasses
import json
import logging
import math
import platform
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

import numpy as np

from xtalscreen.errors import InputError, ParameterError, check_positive
from xtalscreen.train.datasets import (IMAGE_TARGETS, TARGETS, FrameDataset, LabelledSet,
                                       check_target, check_val_fraction)
from xtalscreen.train.schedules import SCHEDULES, learning_rate

__all__ = ["TrainConfig", "TrainResult", "COUNT_THRESHOLDS", "train", "build_model", "item_counts", "predict",
           "recalibrate", "resolve_device"]

log = logging.getLogger("xtalscreen.train")


#: Model-selection figures (:attr:`TrainConfig.select`).
SELECT = ("accuracy", "loss", "keep_auc")

#: ``k`` of the auxiliary ordinal spot-count loss (``TrainConfig.count_loss``): "at least k
#: visible spots", dense around the Ke cuts (4: Maybe, 10: Hit) where the labels change
COUNT_THRESHOLDS = (1, 2, 3, 4, 5, 6, 7, 8, 10, 12, 16, 24)

#: labels.csv columns with a frame's visible-spot count (``xtalscreen simulate``: the count by
#: the measured SNR, by the expected SNR, and the one its labels were made from)
COUNT_COLUMNS = ("n_spots_measured", "n_spots_expected", "n_spots")


@dataclass
class TrainConfig:
    """Everything that decides a training run (saved in every checkpoint).

    Defaults follow paper 001: ``ke2018``, 64 images per balanced mini-batch, 100 batches per
    epoch, 120 epochs, SGD with momentum, learning rate 0.1 decaying exponentially to 0.0001.

    Attributes
    ----------
    model : str
        Registered model name (:func:`xtalscreen.models.list_models`).
    model_kwargs : dict
        Architecture arguments (``num_classes`` is set from the target).
    img_size : int or None
        Network input edge (pixels after binning); sets both the model's ``img_size`` and the
        preprocessing crop. None: the model's default (720 for ke2018).
    preprocess : dict
        Overrides of the model's :class:`~xtalscreen.preprocess.PreprocessConfig` (e.g.
        ``{"bin": 1, "max_shift": 20}``).
    target : {"ke", "diffranet", "binary", "marco"}
        ``marco``: crystallisation-drop photographs (crystal / precipitate / clear / other),
        preprocessed with :class:`~xtalscreen.preprocess.pipeline.ImagePreprocessConfig`.
    init : str or None
        Fine-tune from this checkpoint (``xtalscreen train`` best.pt/last.pt, a drop-model
        checkpoint, or ``"demo"`` for the shipped demonstration drop model): its architecture,
        weights and preprocessing are the starting point; the last layer is started afresh when
        its classes differ from the target's (tensors whose shape changed, e.g. with another
        ``img_size``, likewise).
    val_fraction : float or None
        Items without a split of their own go to validation with this probability (by a hash
        of the file name), the rest to training; None: 80 / 10 / 10 % train / val / test.
    epochs, batch_size : int
    batches_per_epoch : int or None
        None: one pass over the training items.
    balanced : bool
        Class-balanced mini-batches (paper 001).
    optimizer : {"sgd", "adamw"}
    lr, lr_end : float
        Start and end (exponential schedule) learning rate.
    schedule : {"exponential", "step", "constant"}
    step_size, gamma : int, float
        Step schedule (paper 002: divide by 10 every 10 epochs).
    momentum, weight_decay : float
    augment : bool
        Random crop shift, flips, quarter turns, intensity scale on training items.
    patience : int or None
        Stop after this many epochs without a better validation accuracy.
    seed : int
    device : str
        ``auto`` (CUDA when present, else CPU), ``cpu``, ``cuda``, ``cuda:1`` ...
    workers : int
        DataLoader worker processes (0 = read in this process).
    eval_batch_size : int
    bn_batches : int
        Before each validation, re-estimate every BatchNorm layer's running statistics as the
        plain mean over this many (augmented) training batches, per input size ("precise
        BatchNorm", :func:`xtalscreen.models.sizebn.recalibrate_batchnorm`); the checkpoints
        keep them. 0 (default): the momentum estimates of the last training batches.
    select : {"accuracy", "loss", "keep_auc"}
        What picks ``best.pt`` and drives early stopping: the validation accuracy (default), the
        validation loss (lower is better) or, for the ``ke`` target, ``keep_auc``: the ROC AUC
        of ``p_hit + p_maybe`` against Miss, averaged over the detector presets of the
        validation set (its ``preset`` column; one group without it). Screening keeps a frame
        by that sum at each detector's own threshold (``xtalscreen calibrate``), so this ranks
        models as screening uses them, where the argmax accuracy also counts hit-vs-maybe mix-ups.
    count_loss : float
        Weight of an auxiliary **ordinal spot-count** loss (0, default: none). The Ke classes cut
        the number of visible spots at 4 and 10, so the class label says nothing about whether
        a Miss had 0 or 3 spots or a Maybe 4 or 9; near the cut those frames are the errors. With
        ``count_loss > 0`` a linear read-out of the model's pre-logit features (a model with
        ``forward_features`` / ``forward_head``) predicts, for each ``k`` in
        :data:`COUNT_THRESHOLDS`, whether the frame has at least ``k`` visible spots (binary
        cross-entropy, averaged over ``k``), from each item's ``count_column``. The read-out is
        trained with the model and kept in ``last.pt`` for resuming; the model itself, and so
        every shipped checkpoint, is unchanged in shape.
    count_column : str
        The labels.csv column holding each item's visible-spot count (xtalscreen simulate:
        ``n_spots_measured``, the count the measured-SNR labels are made from; ``n_spots_expected``).
    windows : bool
        Cut every training and validation frame once to its **training window** before the
        first epoch (:mod:`xtalscreen.train.windows`: assembled, filtered and binned as the
        preprocessing says, the input plus ``max_shift`` pixels each side, kept in
        ``out_dir/windows/``; reused on resume), then train on the windows. Same inputs,
        far less work per item on large detectors (a 2.3 Mpx CSPAD frame becomes 0.1 Mpx at
        a 256 px input). The checkpoints keep the raw-frame preprocessing, so ``screen``,
        ``evaluate`` and ``calibrate`` use them on raw frames. X-ray targets only.
    windows_workers : int or None
        Processes cutting the windows (None: the machine's CPU count, at most 8).
    """

    model: str = "ke2018"
    model_kwargs: dict = field(default_factory=dict)
    img_size: int | None = None
    preprocess: dict = field(default_factory=dict)
    target: str = "ke"
    epochs: int = 120
    batch_size: int = 64
    batches_per_epoch: int | None = 100
    balanced: bool = True
    optimizer: str = "sgd"
    lr: float = 0.1
    lr_end: float = 1e-4
    schedule: str = "exponential"
    step_size: int = 10
    gamma: float = 0.1
    momentum: float = 0.9
    weight_decay: float = 1e-4
    augment: bool = True
    patience: int | None = None
    seed: int = 0
    device: str = "auto"
    workers: int = 0
    eval_batch_size: int = 64
    init: str | None = None
    val_fraction: float | None = None
    bn_batches: int = 0
    select: str = "accuracy"
    count_loss: float = 0.0
    count_column: str = "n_spots_measured"
    windows: bool = False
    windows_workers: int | None = None

    def __post_init__(self) -> None:
        check_target(self.target)
        self.val_fraction = check_val_fraction(self.val_fraction)
        if self.init is not None:
            self.init = str(self.init)
        for name in ("epochs", "batch_size", "eval_batch_size"):
            v = getattr(self, name)
            if isinstance(v, bool) or int(v) != v or v < 1:
                raise ParameterError(f"{name} must be an integer >= 1, got {v!r}")
        if self.batches_per_epoch is not None and (int(self.batches_per_epoch) != self.batches_per_epoch
                                                   or self.batches_per_epoch < 1):
            raise ParameterError(f"batches_per_epoch must be an integer >= 1 or None, got "
                                 f"{self.batches_per_epoch!r}")
        if self.optimizer not in ("sgd", "adamw"):
            raise ParameterError(f"optimizer must be 'sgd' or 'adamw', got {self.optimizer!r}")
        if self.schedule not in SCHEDULES:
            raise ParameterError(f"schedule must be one of {', '.join(SCHEDULES)}, got {self.schedule!r}")
        check_positive("lr", self.lr)
        check_positive("lr_end", self.lr_end)
        check_positive("gamma", self.gamma)
        if not 0 <= self.momentum < 1:
            raise ParameterError(f"momentum must be in [0, 1), got {self.momentum!r}")
        if self.weight_decay < 0:
            raise ParameterError(f"weight_decay must be >= 0, got {self.weight_decay!r}")
        if self.patience is not None and (int(self.patience) != self.patience or self.patience < 1):
            raise ParameterError(f"patience must be an integer >= 1 (epochs) or None, got {self.patience!r}")
        if isinstance(self.bn_batches, bool) or int(self.bn_batches) != self.bn_batches or self.bn_batches < 0:
            raise ParameterError(f"bn_batches must be an integer >= 0 (training batches), got {self.bn_batches!r}")
        if self.select not in SELECT:
            raise ParameterError(f"select must be one of {', '.join(SELECT)}, got {self.select!r}")
        if self.select == "keep_auc" and self.target != "ke":
            raise ParameterError(f"select 'keep_auc' needs the ke target (hit / maybe / miss), "
                                 f"got target {self.target!r}; use 'accuracy' or 'loss'")
        if isinstance(self.count_loss, bool) or not np.isfinite(float(self.count_loss)) or self.count_loss < 0:
            raise ParameterError(f"count_loss must be a number >= 0 (weight of the spot-count loss), got "
                                 f"{self.count_loss!r}")
        if self.count_column not in COUNT_COLUMNS:
            raise ParameterError(f"count_column must be one of {', '.join(COUNT_COLUMNS)} (the spot counts "
                                 f"labels.csv carries), got {self.count_column!r}")
        if self.count_loss and self.target in IMAGE_TARGETS:
            raise ParameterError(f"count_loss needs X-ray frames with spot counts; target {self.target!r} "
                                 "has none")
        if int(self.workers) != self.workers or self.workers < 0:
            raise ParameterError(f"workers must be an integer >= 0, got {self.workers!r}")
        if self.windows and self.target in IMAGE_TARGETS:
            raise ParameterError(f"windows are cut from X-ray frames; target {self.target!r} (drop images) "
                                 "resizes whole images: train without windows")
        if self.windows_workers is not None and (isinstance(self.windows_workers, bool)
                                                 or int(self.windows_workers) != self.windows_workers
                                                 or self.windows_workers < 1):
            raise ParameterError(f"windows_workers must be an integer >= 1 or None, got {self.windows_workers!r}")
        if self.img_size is not None and (int(self.img_size) != self.img_size or self.img_size < 8):
            raise ParameterError(f"img_size must be an integer >= 8 pixels, got {self.img_size!r}")

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> "TrainConfig":
        names = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(set(d) - names)
        if unknown:
            raise ParameterError(f"unknown training settings {unknown}; known: {sorted(names)}")
        return cls(**d)

    def replace(self, **changes: Any) -> "TrainConfig":
        return dataclasses.replace(self, **changes)


@dataclass
class TrainResult:
    """What :func:`train` produced."""

    out_dir: str
    best_path: str
    last_path: str
    history: list
    best: dict
    epochs_run: int
    stopped_early: bool
    seconds: float
    bad_items: list
    windows_seconds: float = 0.0


def resolve_device(device: str = "auto"):
    """``auto`` -> CUDA when available, else CPU; other strings as torch takes them."""
    import torch

    if device in (None, "auto"):
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    try:
        dev = torch.device(device)
    except (RuntimeError, TypeError):
        raise ParameterError(f"device must be auto, cpu, cuda or cuda:N, got {device!r}") from None
    if dev.type == "cuda" and not torch.cuda.is_available():
        raise ParameterError("device 'cuda' asked for but no CUDA GPU is available; use --device auto or cpu")
    return dev


def build_model(config: TrainConfig, *, load_init: bool = True, report: list | None = None):
    """The model and the preprocessing it is trained with (``config`` decides both).

    X-ray targets use the model's :class:`~xtalscreen.preprocess.PreprocessConfig`; the drop
    target ``marco`` (and registry models whose preprocessing is a plain resize: ``c4_cnn``,
    ``inception_v3``) an :class:`~xtalscreen.preprocess.pipeline.ImagePreprocessConfig` of the
    model's input size and channels. With ``config.init`` the architecture and preprocessing
    come from that checkpoint and (``load_init``) its weights are loaded; ``report`` (a list)
    receives one line saying what was loaded and what was started afresh.
    """
    from xtalscreen.models import create_model
    from xtalscreen.preprocess import PreprocessConfig
    from xtalscreen.preprocess.pipeline import ImagePreprocessConfig

    init = _read_init(config.init) if config.init else None
    kw = {}
    if init is not None:
        if config.model != init["model_name"]:
            raise ParameterError(f"--init {config.init} is a {init['model_name']!r} model but "
                                 f"--model says {config.model!r}; leave --model out to fine-tune it")
        kw = {k: v for k, v in init["model_kwargs"].items() if k != "num_classes"}
    kw.update(config.model_kwargs)
    for k, v in list(kw.items()):
        if isinstance(v, list):
            kw[k] = tuple(v)
    if config.img_size is not None:
        kw["img_size"] = int(config.img_size)
    model = create_model(config.model, num_classes=len(TARGETS[config.target]), **kw)
    c, h, w = (int(v) for v in model.default_cfg["input_size"])
    raw = model.default_cfg["preprocess"]
    if init is not None and init["preprocess"] is not None:
        pp = init["preprocess"]
        pp = (pp.replace(size=(h, w), channels=c) if isinstance(pp, ImagePreprocessConfig)
              else pp.replace(crop=(h, w), channels=c))
    elif config.target in IMAGE_TARGETS or (isinstance(raw, dict) and "resize" in raw):
        pp = ImagePreprocessConfig(size=(h, w), channels=c)
    else:
        pp = PreprocessConfig.from_dict(raw)
    if config.preprocess:
        over = dict(config.preprocess)
        pp = type(pp).from_dict({**pp.to_dict(), **over})
    if config.target in IMAGE_TARGETS and not isinstance(pp, ImagePreprocessConfig):
        raise ParameterError(f"target {config.target!r} (drop images) needs image preprocessing, "
                             f"but {config.init or config.model} uses X-ray frame preprocessing")
    want = tuple(model.default_cfg["input_size"])
    if tuple(pp.output_shape) != want:
        raise ParameterError(f"preprocessing gives {pp.output_shape} tensors but model "
                             f"{config.model!r} takes {want}; set img_size instead of the crop")
    if init is not None and load_init:
        line = _load_init_weights(model, init, TARGETS[config.target])
        if report is not None:
            report.append(f"fine-tuning from {config.init}: {line}")
    return model, pp


def _read_init(path) -> dict:
    """Architecture, weights, classes and preprocessing of a checkpoint to fine-tune from."""
    import torch

    from xtalscreen.preprocess import PreprocessConfig
    from xtalscreen.train.checkpoint import FORMAT, read_checkpoint

    if str(path) == "demo":
        from xtalscreen.drops.classifier import demo_model_path

        path = demo_model_path()
    p = Path(path)
    if not p.is_file():
        raise InputError("--init checkpoint not found", path=str(p))
    try:
        state = torch.load(p, map_location="cpu", weights_only=True)
    except Exception as exc:  # torch raises many types for a bad file; report it as input
        first = str(exc).strip().splitlines()[0][:200] if str(exc).strip() else type(exc).__name__
        raise InputError(f"not a readable model checkpoint ({first})", path=str(p)) from None
    if isinstance(state, dict) and state.get("format") == FORMAT:
        state = read_checkpoint(p, task=None)
    need = ("model_name", "model_kwargs", "state_dict", "classes")
    if not isinstance(state, dict) or any(k not in state for k in need):
        raise InputError(f"not a model checkpoint (needs {', '.join(need)}); give a best.pt / "
                         "last.pt of xtalscreen train or a drop-model checkpoint", path=str(p))
    pp = state.get("preprocess")
    try:
        pp = PreprocessConfig.from_dict(pp) if isinstance(pp, dict) and pp else None
    except ParameterError:  # the drop pipeline's own {in_chans, size, mean, std}
        from xtalscreen.preprocess.pipeline import ImagePreprocessConfig

        try:
            pp = ImagePreprocessConfig.from_dict(pp)
        except ParameterError as exc:
            raise InputError(f"cannot read the checkpoint's preprocessing: {exc}", path=str(p)) from None
    return {"model_name": str(state["model_name"]), "model_kwargs": dict(state["model_kwargs"]),
            "state_dict": state["state_dict"], "classes": [str(c) for c in state["classes"]],
            "preprocess": pp, "path": str(p)}


def _load_init_weights(model, init: dict, classes) -> str:
    """Copy ``init``'s weights into ``model``; the last layer only if its classes are the same
    (rows reordered when they come in another order). Returns a one-line summary."""
    import torch

    from xtalscreen.models.sizebn import restore_batchnorm_sizes

    head = next(n for n, m in model.named_modules() if m is model.get_classifier())
    old_cls, new_cls = list(init["classes"]), list(classes)
    state = dict(init["state_dict"])
    keep_head = sorted(old_cls) == sorted(new_cls)
    if keep_head and old_cls != new_cls:
        perm = torch.tensor([old_cls.index(c) for c in new_cls])
        for k in (f"{head}.weight", f"{head}.bias"):
            if k in state:
                state[k] = state[k][perm]
    if not keep_head:
        state = {k: v for k, v in state.items() if not k.startswith(head + ".")}
    restore_batchnorm_sizes(model, state)  # per-size BatchNorm statistics travel with the weights
    own = model.state_dict()
    load = {k: v for k, v in state.items() if k in own and tuple(own[k].shape) == tuple(v.shape)}
    model.load_state_dict(load, strict=False)
    fresh = [k for k in own if k not in load]
    fresh_other = [k for k in fresh if not k.startswith(head + ".")]
    line = f"{len(load)} of {len(own)} tensors loaded"
    if not keep_head:
        line += f"; last layer ({head}) started afresh (classes {old_cls} -> {new_cls})"
    if fresh_other:
        line += f"; also started afresh (shape changed): {', '.join(fresh_other[:6])}"
        line += " ..." if len(fresh_other) > 6 else ""
    return line


def predict(model, dataset: FrameDataset, *, batch_size: int = 64, device="cpu",
            workers: int = 0, progress: bool | None = False, cache: dict | None = None,
            views: int = 1):
    """Class probabilities of every item (``views``: the logits averaged over that many
    test-time orientations, :func:`xtalscreen.models.tta.view_logits`).

    Returns
    -------
    probs : ndarray of float32, shape (N, n_classes)
        Softmax outputs (rows of unreadable items are NaN).
    labels : ndarray of int, shape (N,)
        True class, -1 for unreadable items.
    """
    import torch

    from xtalscreen.models.tta import view_logits
    from xtalscreen.progress import track

    n = len(dataset)
    probs = np.full((n, model.num_classes), np.nan, dtype=np.float32)
    labels = np.full(n, -1, dtype=np.int64)
    model.eval()
    batches = _eval_batches(dataset, batch_size, workers, cache)
    with torch.no_grad():
        for x, y, idx in track(batches, total=math.ceil(n / batch_size), description="evaluating",
                               enabled=progress):
            out = torch.softmax(view_logits(model, x.to(device, non_blocking=True), views).float(),
                                dim=1).cpu().numpy()
            idx = np.asarray(idx)
            y = np.asarray(y)
            ok = y >= 0
            probs[idx[ok]] = out[ok]
            labels[idx] = y
    return probs, labels


def _size_groups(dataset) -> list | None:
    """Item groups that keep network inputs of one size in a batch, or None when every input
    has the same size (no detector is kept at full resolution)."""
    if getattr(dataset.preprocess, "unbinned_up_to", 1) <= 1:
        return None
    groups = dataset.data.groups()
    return groups if len(set(groups)) > 1 else None


def _eval_batches(dataset, batch_size, workers, cache):
    """Batches ``(x, y, idx)`` of a fixed dataset; kept in ``cache`` (a dict) when given."""
    import torch

    if cache is not None and "batches" in cache:
        yield from cache["batches"]
        return
    from xtalscreen.train.samplers import collate, group_batches

    groups = _size_groups(dataset)
    batching = (dict(batch_sampler=group_batches(groups, batch_size)) if groups is not None
                else dict(batch_size=batch_size, shuffle=False))
    loader = torch.utils.data.DataLoader(dataset, num_workers=workers, collate_fn=collate,
                                         generator=torch.Generator().manual_seed(0), **batching)
    kept, nbytes = [], 0
    for b in loader:
        if cache is not None:
            nbytes += b[0].numel() * 4
            if nbytes <= cache.get("max_bytes", 512 * 2**20):
                kept.append(b)
        yield b
    if cache is not None and nbytes <= cache.get("max_bytes", 512 * 2**20):
        cache["batches"] = kept


def _accuracy(probs: np.ndarray, labels: np.ndarray) -> float:
    ok = labels >= 0
    if not ok.any():
        return float("nan")
    return float((probs[ok].argmax(1) == labels[ok]).mean())


def _score(metrics: dict, select: str) -> float:
    """The epoch's model-selection score (higher is better): ``select``'s validation figure,
    else the training accuracy (no validation set). NaN scores never win."""
    key = {"accuracy": "val_accuracy", "loss": "val_loss", "keep_auc": "val_keep_auc"}[select]
    if key not in metrics:
        return metrics["train_accuracy"]
    v = metrics[key]
    v = -v if select == "loss" else v
    return -math.inf if v != v else float(v)


def keep_auc(probs: np.ndarray, labels: np.ndarray, groups=None) -> float:
    """ROC AUC of ``p_hit + p_maybe`` (columns 0, 1) against Miss (class 2), averaged over
    ``groups`` (one value per item, e.g. the detector preset; None: one group); groups with one
    class only are left out. NaN when no group has both."""
    from xtalscreen.evaluate.metrics import auc, roc_curve

    ok = labels >= 0
    g = np.zeros(len(labels), dtype=object) if groups is None else np.asarray(groups, dtype=object)
    vals = []
    for key in dict.fromkeys(g[ok]):
        m = ok & (g == key)
        pos = labels[m] != 2
        if pos.all() or not pos.any():
            continue
        fpr, tpr, _ = roc_curve(pos, probs[m, 0] + probs[m, 1])
        vals.append(auc(fpr, tpr))
    return float(np.mean(vals)) if vals else float("nan")


def _nll(probs: np.ndarray, labels: np.ndarray) -> float:
    ok = labels >= 0
    if not ok.any():
        return float("nan")
    p = probs[ok, labels[ok]]
    return float(-np.log(np.clip(p, 1e-12, 1.0)).mean())


def train(config: TrainConfig, data: LabelledSet, *, out_dir, val: LabelledSet | None = None,
          resume=None, progress: bool | None = None,
          on_epoch: Callable[[int, dict], None] | None = None,
          echo: Callable[[str], None] | None = None) -> TrainResult:
    """Train a model on ``data`` (its training items) and checkpoint it into ``out_dir``.

    Parameters
    ----------
    config : TrainConfig
    data : LabelledSet
        Training items (``load_labels(..., split="train")``).
    out_dir : path, keyword-only
        Receives ``last.pt``, ``best.pt``, ``metrics.jsonl`` and ``train.json``.
    val : LabelledSet, keyword-only
        Validation items (model selection, early stopping); None: training accuracy is used.
    resume : path, keyword-only
        A ``last.pt`` of the same configuration (any number of ``epochs``): training goes on
        from the epoch after it, identically to an uninterrupted run.
    progress : bool or None, keyword-only
        Progress bar (None: when stderr is a terminal).
    on_epoch : callable, keyword-only
        Called as ``on_epoch(epoch, metrics)`` after each epoch (``xtalscreen tune`` reports to
        Optuna and may raise to prune).
    echo : callable, keyword-only
        Receives one summary line per epoch (e.g. ``print``).

    Returns
    -------
    TrainResult
    """
    import torch

    from xtalscreen.models.sizebn import recalibrate_batchnorm, restore_batchnorm_sizes, split_batchnorm
    from xtalscreen.progress import track
    from xtalscreen.train.checkpoint import read_checkpoint, save_checkpoint
    from xtalscreen.train.samplers import BalancedBatchSampler, RandomBatchSampler, collate

    t0 = time.perf_counter()
    if data.target != config.target:
        raise ParameterError(f"the data were loaded for target {data.target!r} but the config says "
                             f"{config.target!r}")
    if not len(data):
        raise InputError("no training items", path=data.root)
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    device = resolve_device(config.device)
    torch.manual_seed(config.seed)
    init_report: list[str] = []
    model, pp = build_model(config, load_init=resume is None, report=init_report)
    for line in init_report:
        log.info("%s", line)
        if echo is not None:
            echo(line)
    ship_pp, t_win, win_skipped = pp, 0.0, []
    if config.windows:  # cut each frame once; the checkpoints keep the raw-frame preprocessing
        data, val, pp, t_win, win_skipped = _cut_training_windows(config, data, val, pp, out, progress, echo)
    model.to(device)
    counts = count_head = None
    if config.count_loss:  # the auxiliary ordinal spot-count read-out (TrainConfig.count_loss)
        counts = item_counts(data, config.count_column)
        count_head = _count_head(model).to(device)
    params = list(model.parameters()) + ([] if count_head is None else list(count_head.parameters()))
    if config.optimizer == "sgd":
        opt = torch.optim.SGD(params, lr=config.lr, momentum=config.momentum,
                              weight_decay=config.weight_decay)
    else:
        opt = torch.optim.AdamW(params, lr=config.lr, weight_decay=config.weight_decay)
    history: list[dict] = []
    best = {"epoch": -1, "val_accuracy": -math.inf}
    start = 0
    if resume is not None:
        state = read_checkpoint(resume)
        _check_resume(state, config, resume)
        restore_batchnorm_sizes(model, state["state_dict"])
        model.load_state_dict(state["state_dict"])
        if count_head is not None:
            if state.get("count_head") is None:
                raise InputError("cannot resume: this checkpoint has no spot-count read-out "
                                 "(count_loss); resume with the settings it was trained with", path=str(resume))
            count_head.load_state_dict(state["count_head"])
        if state.get("optimizer") is not None:
            opt.load_state_dict(state["optimizer"])
        if state.get("rng") is not None:
            torch.set_rng_state(state["rng"])
        history, best, start = list(state["history"]), dict(state["best"]), int(state["epoch"])
        if (out / "metrics.jsonl").exists():  # drop lines of epochs after the checkpoint
            keep = [ln for ln in (out / "metrics.jsonl").read_text().splitlines()
                    if ln.strip() and json.loads(ln)["epoch"] < start]
            (out / "metrics.jsonl").write_text("".join(k + "\n" for k in keep))
    elif (out / "metrics.jsonl").exists():
        (out / "metrics.jsonl").unlink()

    train_set = FrameDataset(data, pp, augment=config.augment, seed=config.seed)
    val_set = FrameDataset(val, pp, augment=False) if val is not None and len(val) else None
    sampler_cls = BalancedBatchSampler if config.balanced else RandomBatchSampler
    groups = _size_groups(train_set)
    # inputs of several sizes (groups): each batch from one group (detector)
    sampler = _batch_sampler(sampler_cls, data.labels, groups, config.batch_size, config.batches_per_epoch,
                             config.seed)
    if groups is not None:
        # and BatchNorm running statistics per input size: one set averaged over a 512 px and a
        # 256 px input normalises neither in eval mode (xtalscreen.models.sizebn)
        split_batchnorm(model)
    # the loader's own generator: it must not draw from the global torch RNG (dropout, init),
    # or a resumed run (whose validation tensors are not cached yet) would drift
    loader = torch.utils.data.DataLoader(train_set, batch_sampler=sampler, num_workers=config.workers,
                                         collate_fn=collate,
                                         pin_memory=device.type == "cuda",
                                         generator=torch.Generator().manual_seed(config.seed))
    bn_loader = bn_sampler = None
    if config.bn_batches and _has_batchnorm(model):  # precise BatchNorm: a sampler of its own
        bn_seed = config.seed + _BN_SEED
        bn_sampler = _batch_sampler(sampler_cls, data.labels, groups, config.batch_size, config.bn_batches,
                                    bn_seed)
        bn_loader = torch.utils.data.DataLoader(train_set, batch_sampler=bn_sampler,
                                                num_workers=config.workers, collate_fn=collate,
                                                generator=torch.Generator().manual_seed(bn_seed))
    loss_fn = torch.nn.CrossEntropyLoss(ignore_index=-1)
    val_cache: dict = {}
    val_groups = None if val_set is None else [m.get("preset") for m in val_set.data.meta] or None
    common = dict(preprocess=ship_pp, classes=data.classes, target=config.target, config=config.to_dict())
    stopped = False
    needs_two = _has_batchnorm(model)  # batch norm cannot train on a batch of one
    has_aux = getattr(model, "AuxLogits", None) is not None and hasattr(model, "forward_with_aux")
    aux_weight = 0.4 if has_aux else 0.0
    last_path, best_path = out / "last.pt", out / "best.pt"
    epoch = start
    for epoch in range(start, config.epochs):
        te = time.perf_counter()
        # ---- lr: from the schedule, set on every parameter group
        lr = learning_rate(config.schedule, epoch, epochs=config.epochs, lr=config.lr,
                           lr_end=config.lr_end, step_size=config.step_size, gamma=config.gamma)
        for g in opt.param_groups:
            g["lr"] = lr
        # ---- train: one pass over the epoch's balanced batches
        model.train()
        sampler.set_epoch(epoch)
        train_set.set_epoch(epoch)
        loss_sum, correct, seen = 0.0, 0, 0
        count_sum, count_seen = 0.0, 0
        for x, y, idx in track(loader, total=len(sampler), description=f"epoch {epoch + 1}/{config.epochs}",
                             enabled=progress):
            ok = y >= 0
            if int(ok.sum()) < (2 if needs_two else 1):
                continue
            x, y = x[ok].to(device, non_blocking=True), y[ok].to(device, non_blocking=True)
            if count_head is not None:
                maps = model.forward_features(x)
                logits = model.forward_head(maps)
                c_loss, n_c = _count_loss(count_head(model.forward_head(maps, pre_logits=True)),
                                          counts[idx[ok].numpy()], device)
                loss = loss_fn(logits, y) + config.count_loss * c_loss
                count_sum += float(c_loss.detach()) * n_c
                count_seen += n_c
            elif aux_weight:  # Inception-v3's auxiliary classifier (Szegedy et al. 2016: 0.4)
                logits, aux = model.forward_with_aux(x)
                loss = loss_fn(logits, y) + aux_weight * loss_fn(aux, y)
            else:
                logits = model(x)
                loss = loss_fn(logits, y)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            loss_sum += loss.item() * len(y)
            correct += int((logits.argmax(1) == y).sum())
            seen += len(y)
        # ---- precise BatchNorm statistics (per input size) for validation and the checkpoints
        if bn_loader is not None:
            bn_sampler.set_epoch(epoch)
            recalibrate_batchnorm(model, ((x[y >= 0], y) for x, y, _ in bn_loader), device=device)
        # ---- eval: validation accuracy and loss (no augmentation; tensors cached when small)
        metrics = {"epoch": epoch, "lr": lr,
                   "train_loss": loss_sum / seen if seen else float("nan"),
                   "train_accuracy": correct / seen if seen else float("nan")}
        if count_head is not None:
            metrics["train_count_loss"] = count_sum / count_seen if count_seen else float("nan")
        if val_set is not None:
            probs, labels = predict(model, val_set, batch_size=config.eval_batch_size, device=device,
                                    workers=config.workers, cache=val_cache)
            metrics["val_accuracy"] = _accuracy(probs, labels)
            metrics["val_loss"] = _nll(probs, labels)
            if config.target == "ke":
                metrics["val_keep_auc"] = keep_auc(probs, labels, val_groups)
            if config.target == "marco":
                thr = _crystal_threshold(probs, labels)
                if thr is not None:
                    metrics["crystal_threshold"] = thr
        score = _score(metrics, config.select)
        metrics["seconds"] = round(time.perf_counter() - te, 3)
        history.append(metrics)
        improved = score > best.get("score", best["val_accuracy"])  # old checkpoints: accuracy
        if improved:
            best = {"epoch": epoch, "score": score, "select": config.select,
                    **{k: v for k, v in metrics.items() if k not in ("epoch", "seconds")}}
        # ---- checkpoint: last every epoch, best on improvement
        save_checkpoint(last_path, model, epoch=epoch + 1, optimizer=opt, rng_state=torch.get_rng_state(),
                        history=history, best=best, **common,
                        extra=None if count_head is None else {"count_head": count_head.state_dict()})
        if improved:
            save_checkpoint(best_path, model, epoch=epoch + 1, history=history, best=best, **common)
        # ---- log: one JSON line per epoch
        with open(out / "metrics.jsonl", "a") as fh:
            fh.write(json.dumps(metrics) + "\n")
        if echo is not None:
            echo(_line(metrics, config.epochs))
        if on_epoch is not None:
            on_epoch(epoch, metrics)
        # ---- early stop
        if config.patience is not None and epoch - best["epoch"] >= config.patience:
            stopped = True
            break
    bad = list(win_skipped) + [train_set.bad[i] for i in sorted(train_set.bad)]
    bad += [f"(validation) {val_set.bad[i]}" for i in sorted(val_set.bad)] if val_set is not None else []
    train_set.close()
    if val_set is not None:
        val_set.close()
    result = TrainResult(out_dir=str(out), best_path=str(best_path), last_path=str(last_path),
                         history=history, best=best, epochs_run=len(history), stopped_early=stopped,
                         seconds=time.perf_counter() - t0, bad_items=bad, windows_seconds=t_win)
    _write_sidecar(out / "train.json", result, config, data, val, ship_pp, device,
                   windows=pp if config.windows else None)
    return result


def _cut_training_windows(config: TrainConfig, data: LabelledSet, val: LabelledSet | None, pp, out: Path,
                          progress, echo):
    """:attr:`TrainConfig.windows`: the training and validation sets as windows in
    ``out/windows/`` and the preprocessing that reads them; also the seconds spent and the
    frames that could not be cut."""
    import os

    from xtalscreen.train.windows import cut_windows, window_preprocess

    t = time.perf_counter()
    workers = config.windows_workers or max(1, min(8, os.cpu_count() or 1))
    wpp = window_preprocess(pp)  # refuses drop-image preprocessing before any work
    n_skip = len(data.skipped)
    data = cut_windows(data, out / "windows" / "train", pp, workers=workers, progress=progress, echo=echo)
    skipped = data.skipped[n_skip:]  # (cut_windows raises when no frame at all could be cut)
    if val is not None and len(val):
        n_skip = len(val.skipped)
        val = cut_windows(val, out / "windows" / "val", pp, workers=workers, progress=progress, echo=echo)
        skipped += [f"(validation) {s}" for s in val.skipped[n_skip:]]
    return data, val, wpp, time.perf_counter() - t, skipped


def item_counts(data: LabelledSet, column: str = "n_spots_measured") -> np.ndarray:
    """Each item's visible-spot count from its labels.csv ``column`` (float; NaN where an item
    has none), for :attr:`TrainConfig.count_loss`. An error when no item has one."""
    vals = np.full(len(data), np.nan)
    for i, m in enumerate(data.meta or []):
        v = m.get(column) if isinstance(m, dict) else None
        try:
            vals[i] = float(v) if v not in (None, "") else np.nan
        except (TypeError, ValueError):
            raise InputError(f"item {i} ({data.files[i]} frame {int(data.frames[i])}): {column} is "
                             f"{v!r}, not a number of spots", path=data.root) from None
    if not np.isfinite(vals).any():
        raise InputError(f"count_loss needs each item's spot count in a {column!r} column of "
                         f"labels.csv (xtalscreen simulate writes n_spots_measured and "
                         f"n_spots_expected); none of the {len(data)} items has one", path=data.root)
    if (vals[np.isfinite(vals)] < 0).any():
        raise InputError(f"negative spot counts in column {column!r}", path=data.root)
    return vals


def _count_head(model):
    """The linear read-out of ``model``'s pre-logit features onto :data:`COUNT_THRESHOLDS`."""
    from torch import nn

    if getattr(model, "AuxLogits", None) is not None:
        raise ParameterError(f"count_loss does not combine with {type(model).__name__}'s auxiliary "
                             "classifier; train it without count_loss")
    n = getattr(model, "num_features", None)
    if not n or not hasattr(model, "forward_features") or not hasattr(model, "forward_head"):
        raise ParameterError(f"count_loss needs a model with forward_features / forward_head and "
                             f"num_features; {type(model).__name__} has not")
    return nn.Linear(int(n), len(COUNT_THRESHOLDS))


def _count_loss(z, counts: np.ndarray, device):
    """Ordinal loss: mean binary cross-entropy of ``z[:, j]`` against "count >= k_j" over the
    items that have a count; returns ``(loss, items used)``."""
    import torch

    have = np.isfinite(counts)
    if not have.any():
        return z.sum() * 0.0, 0
    k = torch.as_tensor(COUNT_THRESHOLDS, dtype=z.dtype, device=device)
    c = torch.as_tensor(counts[have], dtype=z.dtype, device=device)
    target = (c[:, None] >= k[None, :]).to(z.dtype)
    sel = torch.as_tensor(np.flatnonzero(have), device=device)
    loss = torch.nn.functional.binary_cross_entropy_with_logits(z[sel], target)
    return loss, int(have.sum())


_BN_SEED = 104_729  # offset of the precise-BatchNorm sampler's seed from the training seed


def _batch_sampler(sampler_cls, labels, groups, batch_size, batches_per_epoch, seed):
    """``sampler_cls`` over ``labels``; with ``groups`` (input sizes) a batch never mixes them."""
    from xtalscreen.train.samplers import GroupedBatchSampler

    if groups is None:
        return sampler_cls(labels, batch_size=batch_size, batches_per_epoch=batches_per_epoch, seed=seed)
    return GroupedBatchSampler(sampler_cls, labels, groups, batch_size=batch_size,
                               batches_per_epoch=batches_per_epoch, seed=seed)


def recalibrate(model, data: LabelledSet, preprocess, *, batches: int = 50, batch_size: int = 64,
                seed: int = 0, augment: bool = True, workers: int = 0, device="cpu") -> int:
    """Precise BatchNorm statistics for a trained model, from ``batches`` batches of ``data``.

    Each batch holds one input size (as in training); with items of several input sizes the
    model's BatchNorm layers are split per size first (:mod:`xtalscreen.models.sizebn`).
    ``augment``: the training augmentation (the statistics the weights were trained under).
    Returns the number of batches used. Save the model afterwards to keep them.
    """
    import torch

    from xtalscreen.models.sizebn import recalibrate_batchnorm, split_batchnorm
    from xtalscreen.train.samplers import RandomBatchSampler, collate

    if int(batches) < 1:
        raise ParameterError(f"batches must be >= 1, got {batches!r}")
    ds = FrameDataset(data, preprocess, augment=augment, seed=seed)
    try:
        groups = _size_groups(ds)
        if groups is not None:
            split_batchnorm(model)
        sampler = _batch_sampler(RandomBatchSampler, data.labels, groups, batch_size, int(batches), seed)
        loader = torch.utils.data.DataLoader(ds, batch_sampler=sampler, num_workers=workers, collate_fn=collate,
                                             generator=torch.Generator().manual_seed(seed))
        return recalibrate_batchnorm(model, ((x[y >= 0], y) for x, y, _ in loader), device=device)
    finally:
        ds.close()


def _crystal_threshold(probs: np.ndarray, labels: np.ndarray, min_tpr: float = 0.8) -> float | None:
    """Paper 000's "interesting drop" threshold on the validation ROC (TPR >= 0.8), or None
    without a crystal in the validation items."""
    from xtalscreen.drops.classifier import roc_threshold

    ok = labels >= 0
    k = TARGETS["marco"].index("crystal")
    if not np.any(labels[ok] == k):
        return None
    t = roc_threshold(probs[ok, k].astype(np.float64), labels[ok] == k, min_tpr=min_tpr)
    return float(min(max(t, 1e-6), 1 - 1e-6))


def _has_batchnorm(model) -> bool:
    import torch

    return any(isinstance(m, torch.nn.modules.batchnorm._BatchNorm) for m in model.modules())


def _check_resume(state: dict, config: TrainConfig, path) -> None:
    old = dict(state.get("config") or {})
    for f in dataclasses.fields(TrainConfig):  # settings added since the checkpoint: their defaults
        if f.name not in old and f.default is not dataclasses.MISSING:
            old[f.name] = f.default
    new = config.to_dict()
    free = {"epochs", "patience", "workers", "device", "eval_batch_size"}
    diff = sorted(k for k in set(old) | set(new) if k not in free
                  and json.dumps(old.get(k), sort_keys=True) != json.dumps(_plain(new.get(k)), sort_keys=True))
    if diff:
        raise InputError(f"cannot resume: the checkpoint was trained with other settings ({', '.join(diff)}); "
                         "resume with the same settings (only epochs, patience, workers, device may change)",
                         path=str(path))


def _plain(v):
    if isinstance(v, dict):
        return {k: _plain(x) for k, x in v.items()}
    if isinstance(v, (tuple, list)):
        return [_plain(x) for x in v]
    return v


def _line(m: dict, epochs: int) -> str:
    s = (f"epoch {m['epoch'] + 1}/{epochs}  lr {m['lr']:.3g}  loss {m['train_loss']:.4f}  "
         f"train acc {m['train_accuracy']:.3f}")
    if "val_accuracy" in m:
        s += f"  val acc {m['val_accuracy']:.3f}  val loss {m['val_loss']:.4f}"
        if "val_keep_auc" in m:
            s += f"  keep AUC {m['val_keep_auc']:.4f}"
    return s + f"  ({m['seconds']:.1f} s)"


def _write_sidecar(path: Path, result: TrainResult, config: TrainConfig, data: LabelledSet,
                   val: LabelledSet | None, pp, device, windows=None) -> None:
    import torch

    from xtalscreen import __version__

    side = {
        "final": result.history[-1] if result.history else {},
        "best": result.best,
        "epochs_run": result.epochs_run,
        "stopped_early": result.stopped_early,
        "seconds": round(result.seconds, 3),
        "checkpoints": {"best": result.best_path, "last": result.last_path},
        "config": config.to_dict(),
        "preprocess": pp.to_dict(),
        **({} if windows is None else {"windows": {"folder": str(Path(result.out_dir) / "windows"),
                                                   "preprocess": windows.to_dict(),
                                                   "seconds": round(result.windows_seconds, 3)}}),
        "classes": list(data.classes),
        "data": {"train": data.root, "train_items": len(data), "train_counts": data.class_counts(),
                 "val_items": len(val) if val is not None else 0,
                 "val_counts": val.class_counts() if val is not None else {}},
        "bad_items": result.bad_items[:100],
        "provenance": {"xtalscreen": __version__, "torch": torch.__version__, "numpy": np.__version__,
                       "python": platform.python_version(), "platform": platform.platform(),
                       "device": str(device), "threads": torch.get_num_threads(),
                       "time": time.strftime("%Y-%m-%dT%H:%M:%S%z")},
    }
    path.write_text(json.dumps(side, indent=1, default=str))
