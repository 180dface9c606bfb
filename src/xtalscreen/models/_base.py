"""The model registry and the small base class every model shares (timm style)."""

from __future__ import annotations

import inspect
import math
from collections.abc import Callable
from typing import Any

import numpy as np
import torch
from torch import nn

from xtalscreen.errors import ParameterError

_REGISTRY: dict[str, Callable[..., "XtalModel"]] = {}


def register_model(fn: Callable[..., "XtalModel"] | None = None, *, name: str | None = None):
    """Decorator adding a factory ``fn(*, num_classes=..., **kwargs) -> XtalModel`` to the registry.

    The registered name is ``name`` or the function's name. Usable bare (``@register_model``) or
    with a name (``@register_model(name="x")``).
    """
    def deco(f):
        key = name or f.__name__
        if key in _REGISTRY and _REGISTRY[key] is not f:
            raise ParameterError(f"a model named {key!r} is already registered")
        _REGISTRY[key] = f
        return f
    return deco(fn) if fn is not None else deco


def list_models() -> list[str]:
    """Sorted names of the registered models."""
    return sorted(_REGISTRY)


def create_model(name: str, *, num_classes: int | None = None, **kwargs: Any) -> "XtalModel":
    """Build a registered model.

    Parameters
    ----------
    name : str
        One of :func:`list_models`.
    num_classes : int, optional
        Number of outputs; default the model's own (``model.default_cfg["num_classes"]``).
    **kwargs
        Architecture arguments of that model (see its factory's docstring).

    Returns
    -------
    XtalModel
        With ``model_name`` and ``model_kwargs`` set so a checkpoint can rebuild it:
        ``create_model(m.model_name, **m.model_kwargs)``.

    Raises
    ------
    ParameterError
        Unknown name (the message lists the known ones) or an argument the model does not take.
    """
    if name not in _REGISTRY:
        raise ParameterError(f"unknown model {name!r}; known models: {', '.join(list_models())}")
    fn = _REGISTRY[name]
    if num_classes is not None:
        kwargs["num_classes"] = num_classes
    sig = inspect.signature(fn)
    try:
        sig.bind(**kwargs)
    except TypeError:
        bad = sorted(set(kwargs) - set(sig.parameters))
        raise ParameterError(
            f"model {name!r} does not take argument(s) {bad}; it takes: "
            f"{', '.join(p for p in sig.parameters)}") from None
    model = fn(**kwargs)
    model.model_name = name
    model.model_kwargs = dict(kwargs)
    return model


def pair(v, what: str = "img_size") -> tuple[int, int]:
    """``v`` or ``(v, v)`` as a (height, width) tuple of ints >= 1."""
    try:
        if isinstance(v, (int, np.integer)):
            h, w = int(v), int(v)
        elif len(v) == 2:
            h, w = int(v[0]), int(v[1])
        else:
            raise ValueError
    except (TypeError, ValueError, IndexError):
        raise ParameterError(f"{what} must be an int or (height, width), got {v!r}") from None
    if h < 1 or w < 1 or isinstance(v, bool):
        raise ParameterError(f"{what} must be positive, got {v!r}")
    return h, w


def out_size(n: int, k: int, s: int, p: int = 0, *, ceil: bool = False) -> int:
    """Output length of a convolution or pooling along one axis (PyTorch semantics)."""
    num = n + 2 * p - k
    o = (math.ceil(num / s) if ceil else num // s) + 1
    if ceil and (o - 1) * s >= n + p:  # PyTorch: the last window must start inside the input
        o -= 1
    return o


def check_int(name: str, value, minimum: int = 1) -> int:
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < minimum:
        raise ParameterError(f"{name} must be an integer >= {minimum}, got {value!r}")
    return int(value)


def check_widths(widths, minimum: int = 1) -> tuple[int, ...]:
    """Channel counts of a model's stages as a tuple of ints (at least ``minimum`` of them, each
    >= 1), else a ParameterError naming them."""
    try:
        w = tuple(int(v) for v in widths)
    except (TypeError, ValueError):
        w = ()
    if len(w) < minimum or min(w, default=0) < 1:
        raise ParameterError(f"widths must be at least {minimum} positive channel count(s), got {widths!r}")
    return w


def check_prob(name: str, value) -> float:
    v = float(value)
    if not 0.0 <= v < 1.0:
        raise ParameterError(f"{name} must be in [0, 1), got {value!r}")
    return v


class MaxPool2x2(nn.MaxPool2d):
    """``nn.MaxPool2d(2, stride=2, ceil_mode=...)``, fast at CPU inference.

    On the CPU, without autograd, the pool is taken as the elementwise maximum of the four
    strided sub-grids (``x[..., 0::2, 0::2]`` ...), padded with ``-inf`` to even sizes under
    ``ceil_mode``: the same values as ``max_pool2d`` (NaN propagates as there), and about 4-9x
    faster than torch's NCHW CPU kernel on the shipped model's maps
    (``tests/models/test_architectures.py`` checks equality; BENCHMARKS.md, screen). Training and
    other devices use ``max_pool2d`` itself (its gradient goes to one element of a tie).
    A plain subclass: the state dict and the ``nn.MaxPool2d`` behaviour are unchanged.
    """

    def __init__(self, *, ceil_mode: bool = False) -> None:
        super().__init__(2, stride=2, ceil_mode=ceil_mode)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h, w = x.shape[-2:]
        if (x.device.type != "cpu" or x.dim() != 4 or (torch.is_grad_enabled() and x.requires_grad)
                or min(h, w) < 2):  # (an input too small: max_pool2d's own answer or error)
            return super().forward(x)
        ph, pw = (h % 2, w % 2) if self.ceil_mode else (0, 0)
        if ph or pw:
            x = nn.functional.pad(x, (0, pw, 0, ph), value=-math.inf)
        elif not self.ceil_mode and (h % 2 or w % 2):
            x = x[..., : h - h % 2, : w - w % 2]
        return torch.maximum(torch.maximum(x[..., 0::2, 0::2], x[..., 0::2, 1::2]),
                             torch.maximum(x[..., 1::2, 0::2], x[..., 1::2, 1::2]))


class XtalModel(nn.Module):
    """Base class: ``forward(x) == forward_head(forward_features(x))``.

    Subclasses set ``num_classes``, ``num_features`` (length of the pre-logits vector),
    ``default_cfg`` (dict: ``input_size`` (C, H, W), ``num_classes``, ``classes`` hint,
    ``preprocess`` (a :class:`~xtalscreen.preprocess.PreprocessConfig` dict), ``paper``) and
    implement :meth:`forward_features` and :meth:`forward_head`.
    """

    num_classes: int
    num_features: int
    default_cfg: dict[str, Any]
    model_name: str = ""
    model_kwargs: dict[str, Any]

    def forward_features(self, x: torch.Tensor) -> torch.Tensor:  # pragma: no cover - abstract
        raise NotImplementedError

    def forward_head(self, x: torch.Tensor, *, pre_logits: bool = False) -> torch.Tensor:  # pragma: no cover
        raise NotImplementedError

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.forward_head(self.forward_features(x))

    def get_classifier(self) -> nn.Module:
        """The last linear layer (for fine-tuning)."""
        return self.classifier

    def reset_classifier(self, num_classes: int) -> None:
        """Replace the last layer with a fresh one of ``num_classes`` outputs."""
        check_int("num_classes", num_classes)
        old = self.get_classifier()
        self.classifier = nn.Linear(old.in_features, num_classes)
        self.num_classes = num_classes
        if hasattr(self, "model_kwargs"):
            self.model_kwargs["num_classes"] = num_classes

    def _check_input(self, x: torch.Tensor) -> None:
        c = self.default_cfg["input_size"][0]
        if x.ndim != 4 or x.shape[1] != c:
            raise ParameterError(
                f"{self.model_name or type(self).__name__} expects input of shape (N, {c}, H, W), "
                f"got {tuple(x.shape)}")

    def _check_features(self, x: torch.Tensor, name: str) -> None:
        """Raise if ``x`` is not the feature map this model was built for (``feature_shape``)."""
        if tuple(x.shape[1:]) != self.feature_shape:
            raise ParameterError(
                f"{name} built for img_size {self.default_cfg['input_size'][1:]} gives feature "
                f"maps {self.feature_shape}, got {tuple(x.shape[1:])}; build it with the input "
                f"size you feed (create_model('{name}', img_size=...))")
