"""Drop classifiers: the 4-class interface the pipeline uses, and the ways to get one.

A :class:`DropClassifier` has ``name``, ``version``, ``classes`` (its output labels, in order),
``threshold`` (crystal probability above which a drop is "interesting", chosen on a validation
ROC at a minimum true-positive rate; None if unknown) and ``predict_proba(images) -> (N, C)``
taking a list of decoded images (uint8, (H, W) or (H, W, 3) RGB, any size).

Ways to get one (:func:`load_classifier`):

- ``"demo"``: the shipped demonstration model (:mod:`xtalscreen.drops.demo_model`; rendered drops
  only, **not** for real use);
- ``model.pt``: a checkpoint of a registry model (``inception_v3``, ``c4_cnn``, ...) as written by
  :func:`save_checkpoint` (model name + arguments + weights + classes + preprocessing), or a
  ``best.pt`` / ``last.pt`` written by ``xtalscreen train --target marco`` (its
  :class:`~xtalscreen.preprocess.pipeline.ImagePreprocessConfig` becomes the :class:`Preprocess`;
  version = epoch + a hash of the file, so a retrained model rescores);
- ``model.onnx``: an ONNX file run with onnxruntime (``pip install xtalscreen[onnx]``), with a
  JSON sidecar ``model.onnx.json`` giving ``classes`` (required), ``name``, ``version``,
  ``input_size`` ([C, H, W]), ``mean``, ``std``, ``threshold``;
- any of these wrapped by a mapping file (:class:`MappedClassifier`: JSON ``{"their class":
  "marco class", ...}``, probabilities summed) or thresholded on one of its classes
  (:class:`ThresholdClassifier`, as C4 did with its closed model).

:func:`to_scheme` checks that a classifier's classes are the MARCO 4 (in any order) and raises
:class:`ParameterError` before any work otherwise.

Images are resized to the model input whatever their size (imagers differ); an image whose aspect
ratio is off by more than :data:`MAX_ASPECT` or smaller than :data:`MIN_SIDE` px is refused with
:class:`InputError` ("unexpected size"), which the pipeline records as a failed image.
"""

from __future__ import annotations

import json
import threading
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path
from typing import Protocol, runtime_checkable

import cv2
import numpy as np

from xtalscreen.drops.schemes import MARCO_CLASSES, normalise_label
from xtalscreen.errors import InputError, ParameterError

#: Largest accepted ratio of long to short image side (drop images are about square).
MAX_ASPECT = 1.5
#: Smallest accepted image side, px.
MIN_SIDE = 32
#: Checkpoint format version written by :func:`save_checkpoint`.
CHECKPOINT_SCHEMA = 1
DEMO_MODEL_FILE = "demo_drop_model.pt"


@runtime_checkable
class DropClassifier(Protocol):
    """What the pipeline needs from a drop model."""

    name: str
    version: str
    classes: tuple[str, ...]
    threshold: float | None

    def predict_proba(self, images: list[np.ndarray]) -> np.ndarray:
        """Class probabilities, shape (len(images), len(classes)), rows summing to 1."""


@dataclass
class Preprocess:
    """How an image becomes model input: channels, size (H, W), ``(x / 255 - mean) / std``."""

    in_chans: int = 1
    size: tuple[int, int] = (64, 64)
    mean: float = 0.5
    std: float = 0.25

    def to_dict(self) -> dict:
        return {"in_chans": self.in_chans, "size": list(self.size), "mean": self.mean, "std": self.std}

    @classmethod
    def from_dict(cls, d: dict) -> Preprocess:
        return cls(int(d.get("in_chans", 1)), tuple(int(v) for v in d.get("size", (64, 64))),
                   float(d.get("mean", 0.5)), float(d.get("std", 0.25)))

    def one(self, img: np.ndarray) -> np.ndarray:
        """One image -> float32 array (C, H, W). Raises InputError for an unexpected size."""
        from xtalscreen.preprocess.pipeline import image_to_tensor  # shared with xtalscreen train

        img = np.asarray(img)
        if img.ndim not in (2, 3) or img.size == 0:
            raise InputError(f"unexpected image shape {img.shape}")
        check_image_size(img)
        return image_to_tensor(img, size=tuple(self.size), channels=self.in_chans,
                               mean=self.mean, std=self.std)

    def batch(self, images: list[np.ndarray]) -> np.ndarray:
        return np.stack([self.one(im) for im in images]) if images else np.zeros(
            (0, self.in_chans, *self.size), np.float32)


def check_image_size(img: np.ndarray) -> None:
    """Raise InputError ("unexpected size") for an image too small or far from square."""
    if img.ndim not in (2, 3) or img.size == 0:
        raise InputError(f"unexpected image shape {img.shape}")
    h, w = img.shape[:2]
    if min(h, w) < MIN_SIDE or max(h, w) / min(h, w) > MAX_ASPECT:
        raise InputError(f"unexpected size {w}x{h} px (need >= {MIN_SIDE} px and an aspect "
                         f"ratio <= {MAX_ASPECT}; other sizes are resized to the model input)")


def decode_image(data: bytes, *, where: str = "image") -> np.ndarray:
    """Decode JPEG/PNG/TIFF bytes to uint8 (H, W) or (H, W, 3) RGB; InputError if unreadable.

    A truncated JPEG (no end-of-image marker) is refused, though OpenCV would decode its top part.
    """
    if not data:
        raise InputError("empty file", path=where)
    if data[:2] == b"\xff\xd8" and not data.rstrip(b"\x00").endswith(b"\xff\xd9"):
        raise InputError("truncated JPEG (no end-of-image marker)", path=where)
    img = cv2.imdecode(np.frombuffer(data, np.uint8), cv2.IMREAD_UNCHANGED)
    if img is None:
        raise InputError("not a readable image (JPEG, PNG or TIFF expected)", path=where)
    if img.dtype == np.uint16:
        img = (img // 257).astype(np.uint8)
    if img.ndim == 3:
        img = cv2.cvtColor(img, cv2.COLOR_BGRA2RGB if img.shape[2] == 4 else cv2.COLOR_BGR2RGB)
    return img


def read_image(path: str | Path) -> np.ndarray:
    """Read and decode a local image file (see :func:`decode_image`)."""
    try:
        data = Path(path).read_bytes()
    except OSError as exc:
        raise InputError(f"cannot read the image: {exc.strerror or exc}", path=str(path)) from None
    return decode_image(data, where=str(path))


# ----------------------------------------------------------------------------- torch
class TorchClassifier:
    """A registry model (``xtalscreen.models``) with its preprocessing, on the CPU by default."""

    def __init__(self, model, *, classes, name: str, version: str, preprocess: Preprocess,
                 threshold: float | None = None, device: str = "cpu"):
        import torch

        self.model = model.to(device).eval()
        self.classes = tuple(classes)
        self.name, self.version = str(name), str(version)
        self.preprocess = preprocess
        self.threshold = threshold
        self.device = device
        self._torch = torch
        self._lock = threading.Lock()
        if int(model.num_classes) != len(self.classes):
            raise ParameterError(f"model {name!r} has {model.num_classes} outputs but "
                                 f"{len(self.classes)} class names {list(self.classes)}")

    def predict_proba(self, images: list[np.ndarray]) -> np.ndarray:
        x = self.preprocess.batch(images)
        torch = self._torch
        with self._lock, torch.inference_mode():
            logits = self.model(torch.from_numpy(x).to(self.device))
            return torch.softmax(logits.float(), dim=1).cpu().numpy().astype(np.float64)

    def __repr__(self) -> str:
        return f"TorchClassifier({self.name!r}, version {self.version!r}, classes {self.classes})"


def save_checkpoint(path: str | Path, model, *, classes, name: str, version: str,
                    preprocess: Preprocess, threshold: float | None = None,
                    metrics: dict | None = None) -> Path:
    """Write a drop-model checkpoint that :func:`load_classifier` reads (torch.save of a dict)."""
    import torch

    path = Path(path)
    state = {k: v.detach().cpu() for k, v in model.state_dict().items()}
    ckpt = {"schema": CHECKPOINT_SCHEMA, "model_name": model.model_name,
            "model_kwargs": dict(model.model_kwargs), "state_dict": state,
            "classes": list(classes), "name": name, "version": version,
            "preprocess": preprocess.to_dict(), "threshold": threshold, "metrics": metrics or {}}
    tmp = path.with_name(path.name + ".tmp")
    torch.save(ckpt, tmp)
    tmp.replace(path)
    return path


def _load_torch(path: Path, device: str) -> TorchClassifier:
    import torch

    from xtalscreen.models import create_model

    try:
        ckpt = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # torch raises many types for a bad file; report it as input
        raise InputError(f"not a readable model checkpoint ({type(exc).__name__}: "
                         f"{str(exc).splitlines()[0] if str(exc) else ''})", path=str(path)) from None
    if isinstance(ckpt, dict) and ckpt.get("format") == "xtalscreen-checkpoint":
        del ckpt
        return _load_train_checkpoint(path, device)
    need = ("model_name", "model_kwargs", "state_dict", "classes")
    if not isinstance(ckpt, dict) or any(k not in ckpt for k in need):
        raise InputError(f"not a drop-model checkpoint (needs keys {', '.join(need)}); write one "
                         "with xtalscreen.drops.classifier.save_checkpoint", path=str(path))
    model = create_model(ckpt["model_name"], **ckpt["model_kwargs"])
    model.load_state_dict(ckpt["state_dict"])
    return TorchClassifier(model, classes=ckpt["classes"], name=ckpt.get("name", path.stem),
                           version=str(ckpt.get("version", "1")),
                           preprocess=Preprocess.from_dict(ckpt.get("preprocess", {})),
                           threshold=ckpt.get("threshold"), device=device)


def _load_train_checkpoint(path: Path, device: str) -> TorchClassifier:
    """A checkpoint written by ``xtalscreen train --target marco`` (best.pt / last.pt)."""
    import hashlib

    from xtalscreen.preprocess.pipeline import ImagePreprocessConfig
    from xtalscreen.train.checkpoint import load_model

    model, pp, meta = load_model(path, task=None, device="cpu")
    if not isinstance(pp, ImagePreprocessConfig):
        raise InputError(f"this checkpoint is an X-ray frame classifier (target "
                         f"{meta.get('target')!r}, classes {list(meta.get('classes', []))}), not a "
                         "drop model; train one with xtalscreen train --target marco", path=str(path))
    h = hashlib.sha256()
    with open(path, "rb") as fh:
        for block in iter(lambda: fh.read(1 << 20), b""):
            h.update(block)
    best = meta.get("best") or {}
    thr = best.get("crystal_threshold")
    thr = float(thr) if isinstance(thr, (int, float)) and 0.0 < thr < 1.0 else None
    return TorchClassifier(model, classes=meta["classes"], name=str(meta["model_name"]),
                           version=f"e{int(meta.get('epoch', 0))}-{h.hexdigest()[:12]}",
                           preprocess=Preprocess(pp.channels, tuple(pp.size), pp.mean, pp.std),
                           threshold=thr, device=device)


# ----------------------------------------------------------------------------- ONNX
class OnnxClassifier:
    """An ONNX model run with onnxruntime; metadata from the ``<file>.json`` sidecar.

    The model takes float32 (N, C, H, W) and returns logits or probabilities (N, classes);
    rows that do not sum to 1 are put through a softmax.
    """

    def __init__(self, path: str | Path, *, meta: dict | None = None):
        path = Path(path)
        try:
            import onnxruntime as ort
        except ImportError:
            raise ParameterError("ONNX models need onnxruntime: pip install 'xtalscreen[onnx]'") from None
        if meta is None:
            side = path.with_name(path.name + ".json")
            if not side.is_file():
                raise InputError(f"an ONNX model needs a sidecar {side.name} with at least "
                                 '{"classes": [...]} (its output labels in order)', path=str(path))
            try:
                meta = json.loads(side.read_text("utf-8"))
            except (OSError, json.JSONDecodeError) as exc:
                raise InputError(f"cannot read the sidecar: {exc}", path=str(side)) from None
        if not isinstance(meta.get("classes"), list) or not meta["classes"]:
            raise InputError("the ONNX sidecar needs a non-empty 'classes' list", path=str(path))
        try:
            opts = ort.SessionOptions()
            opts.intra_op_num_threads = 1
            self.session = ort.InferenceSession(str(path), opts, providers=["CPUExecutionProvider"])
        except Exception as exc:  # onnxruntime raises its own exception types for a bad file
            raise InputError(f"not a readable ONNX model: {str(exc).splitlines()[0]}", path=str(path)) from None
        inp = self.session.get_inputs()[0]
        self._input = inp.name
        shape = meta.get("input_size") or [d if isinstance(d, int) else None for d in inp.shape[1:]]
        if len(shape) != 3 or any(not isinstance(d, int) for d in shape):
            raise InputError("cannot tell the ONNX input size; give 'input_size': [C, H, W] in the "
                             "sidecar", path=str(path))
        self.preprocess = Preprocess(int(shape[0]), (int(shape[1]), int(shape[2])),
                                     float(meta.get("mean", 0.5)), float(meta.get("std", 0.25)))
        self.classes = tuple(str(c) for c in meta["classes"])
        self.name = str(meta.get("name", path.stem))
        self.version = str(meta.get("version", "1"))
        self.threshold = meta.get("threshold")

    def predict_proba(self, images: list[np.ndarray]) -> np.ndarray:
        x = self.preprocess.batch(images)
        out = np.asarray(self.session.run(None, {self._input: x})[0], np.float64)
        if out.ndim != 2 or out.shape[1] != len(self.classes):
            raise ParameterError(f"ONNX model {self.name!r} returned shape {out.shape}, expected "
                                 f"(N, {len(self.classes)}) for classes {list(self.classes)}")
        if not (np.all(out >= 0) and np.allclose(out.sum(1), 1.0, atol=1e-3)):
            out = np.exp(out - out.max(1, keepdims=True))
            out /= out.sum(1, keepdims=True)
        return out


# ----------------------------------------------------------------------------- adapters
class MappedClassifier:
    """A classifier with other classes, mapped to the MARCO 4 by summing probabilities.

    ``mapping`` maps each of the base model's classes to a MARCO class (labels matched as in
    :func:`xtalscreen.drops.schemes.normalise_label`); every base class must be mapped.
    """

    def __init__(self, base: DropClassifier, mapping: dict[str, str], *, source: str = "mapping"):
        marco = {normalise_label(c): c for c in MARCO_CLASSES}
        norm = {normalise_label(k): v for k, v in mapping.items()}
        idx = []
        for c in base.classes:
            target = norm.get(normalise_label(c))
            if target is None:
                raise ParameterError(f"{source}: model class {c!r} is not mapped; map every one of "
                                     f"{list(base.classes)} to one of {list(MARCO_CLASSES)}")
            if normalise_label(target) not in marco:
                raise ParameterError(f"{source}: {c!r} maps to {target!r}, which is not one of "
                                     f"{list(MARCO_CLASSES)}")
            idx.append(MARCO_CLASSES.index(marco[normalise_label(target)]))
        self.base = base
        self._matrix = np.zeros((len(base.classes), len(MARCO_CLASSES)))
        self._matrix[np.arange(len(idx)), idx] = 1.0
        self.classes = MARCO_CLASSES
        self.name, self.version = base.name, base.version
        self.threshold = base.threshold

    @classmethod
    def from_file(cls, base: DropClassifier, path: str | Path) -> MappedClassifier:
        try:
            mapping = json.loads(Path(path).read_text("utf-8"))
        except OSError as exc:
            raise InputError(f"cannot read the mapping file: {exc.strerror or exc}", path=str(path)) from None
        except json.JSONDecodeError as exc:
            raise InputError(f"not valid JSON ({exc.msg}, line {exc.lineno})", path=str(path)) from None
        if not isinstance(mapping, dict) or not all(isinstance(v, str) for v in mapping.values()):
            raise InputError('a mapping file is a JSON object {"their class": "marco class"}',
                             path=str(path))
        return cls(base, mapping, source=str(path))

    def predict_proba(self, images: list[np.ndarray]) -> np.ndarray:
        return self.base.predict_proba(images) @ self._matrix


class ThresholdClassifier:
    """A black-box model used through one class only, as C4 used its closed model.

    The probability of ``positive`` (a class of the base model) becomes the probability of
    ``target`` (default crystal); the rest goes to ``rest`` (default other). ``threshold`` is the
    crystal call threshold.
    """

    def __init__(self, base: DropClassifier, positive: str, *, threshold: float = 0.5,
                 target: str = "crystal", rest: str = "other"):
        keys = [normalise_label(c) for c in base.classes]
        if normalise_label(positive) not in keys:
            raise ParameterError(f"threshold class {positive!r} is not a class of model "
                                 f"{base.name!r} ({list(base.classes)})")
        for arg, v in (("target", target), ("rest", rest)):
            if v not in MARCO_CLASSES:
                raise ParameterError(f"{arg} must be one of {list(MARCO_CLASSES)}, got {v!r}")
        if target == rest:
            raise ParameterError("target and rest must differ")
        if not 0.0 < float(threshold) < 1.0:
            raise ParameterError(f"threshold must be in (0, 1), got {threshold!r}")
        self.base, self._k = base, keys.index(normalise_label(positive))
        self._t, self._r = MARCO_CLASSES.index(target), MARCO_CLASSES.index(rest)
        self.classes = MARCO_CLASSES
        self.name, self.version = base.name, base.version
        self.threshold = float(threshold)

    def predict_proba(self, images: list[np.ndarray]) -> np.ndarray:
        p = self.base.predict_proba(images)[:, self._k]
        out = np.zeros((len(p), len(MARCO_CLASSES)))
        out[:, self._t], out[:, self._r] = p, 1.0 - p
        return out


class Reordered:
    """A classifier whose MARCO classes come in another order, presented in MARCO order."""

    def __init__(self, base: DropClassifier):
        keys = [normalise_label(c) for c in base.classes]
        self._perm = [keys.index(c) for c in MARCO_CLASSES]
        self.base, self.classes = base, MARCO_CLASSES
        self.name, self.version, self.threshold = base.name, base.version, base.threshold

    def predict_proba(self, images: list[np.ndarray]) -> np.ndarray:
        return self.base.predict_proba(images)[:, self._perm]


def to_scheme(clf: DropClassifier) -> DropClassifier:
    """``clf`` with its outputs in MARCO order; ParameterError if its classes are not the 4."""
    keys = [normalise_label(c) for c in clf.classes]
    if keys == list(MARCO_CLASSES):
        return clf
    if sorted(keys) == sorted(MARCO_CLASSES):
        return Reordered(clf)
    raise ParameterError(
        f"model {clf.name!r} has classes {list(clf.classes)}, not the MARCO scheme "
        f"{list(MARCO_CLASSES)}; give a mapping file (--mapping FILE: JSON {{\"their class\": "
        f"\"marco class\"}}) or threshold one class (--threshold-class NAME)")


# ----------------------------------------------------------------------------- loading
@dataclass
class ModelSpec:
    """How to build a classifier; picklable, so dask workers can build their own copy."""

    model: str = "demo"
    mapping: str | None = None
    threshold_class: str | None = None
    threshold: float | None = None
    device: str = "cpu"
    extra: dict = field(default_factory=dict)

    def build(self) -> DropClassifier:
        return load_classifier(self.model, mapping=self.mapping, threshold_class=self.threshold_class,
                               threshold=self.threshold, device=self.device)


def demo_model_path() -> Path:
    """Path of the shipped demonstration model (rendered drops only; not for real images)."""
    return Path(str(resources.files("xtalscreen.drops") / "data" / DEMO_MODEL_FILE))


def load_classifier(model: str | Path = "demo", *, mapping: str | Path | None = None,
                    threshold_class: str | None = None, threshold: float | None = None,
                    device: str = "cpu") -> DropClassifier:
    """Load a drop classifier and bring it to the MARCO 4 classes.

    Parameters
    ----------
    model : str or Path
        ``"demo"`` (shipped demonstration model), a ``.pt`` checkpoint (:func:`save_checkpoint`)
        or a ``.onnx`` file (with a ``.onnx.json`` sidecar).
    mapping : str or Path, optional
        JSON mapping file from the model's classes to MARCO classes (probabilities summed).
    threshold_class : str, optional
        Use only this class of the model, as crystal probability (C4's closed model).
    threshold : float, optional
        Override the "interesting drop" crystal-probability threshold.
    device : str
        torch device for built-in models.

    Raises
    ------
    ParameterError
        If the classes do not match the MARCO scheme and neither ``mapping`` nor
        ``threshold_class`` is given (before any image is read).
    """
    if mapping is not None and threshold_class is not None:
        raise ParameterError("give either a mapping file or a threshold class, not both")
    path = demo_model_path() if str(model) == "demo" else Path(model)
    if not path.is_file():
        hint = (" (the demonstration model is not built; run 'xtalscreen drops train-demo')"
                if str(model) == "demo" else "")
        raise InputError(f"no such model file{hint}", path=str(path))
    if path.suffix.lower() == ".onnx":
        clf: DropClassifier = OnnxClassifier(path)
    else:
        clf = _load_torch(path, device)
    if mapping is not None:
        clf = MappedClassifier.from_file(clf, mapping)
    elif threshold_class is not None:
        clf = ThresholdClassifier(clf, threshold_class, threshold=0.5 if threshold is None else threshold)
    clf = to_scheme(clf)
    if threshold is not None:
        if not 0.0 < float(threshold) < 1.0:
            raise ParameterError(f"--interesting-threshold must be in (0, 1), got {threshold!r}")
        clf.threshold = float(threshold)
    return clf


def roc_threshold(p_crystal: np.ndarray, is_crystal: np.ndarray, *, min_tpr: float = 0.8) -> float:
    """The highest crystal-probability threshold whose true-positive rate is >= ``min_tpr``.

    Paper 000 picks the "interesting drops" threshold on a validation ROC at TPR 0.8: the
    largest ``t`` such that at least ``min_tpr`` of the true crystals have ``p >= t``.
    """
    p = np.asarray(p_crystal, float)
    y = np.asarray(is_crystal, bool)
    if p.shape != y.shape or p.ndim != 1:
        raise ParameterError(f"p_crystal and is_crystal must be 1-D of the same length, got "
                             f"{p.shape} and {y.shape}")
    if not y.any():
        raise ParameterError("is_crystal has no positive example; cannot choose a threshold")
    if not 0.0 < min_tpr <= 1.0:
        raise ParameterError(f"min_tpr must be in (0, 1], got {min_tpr!r}")
    pos = np.sort(p[y])[::-1]
    k = int(np.ceil(min_tpr * len(pos))) - 1
    return float(pos[k])
