"""BatchNorm running statistics kept per input size.

A fully convolutional model (``spotcount``) takes inputs of any size, and the screening model
uses that: a small detector is fed at full resolution (the DiffraNet CCD at 512 px with
``unbinned_up_to=2``), large ones max-binned to 256 px. The two inputs differ in what a pixel
holds (one pixel vs the maximum of 7 x 7), so every BatchNorm layer sees different activation
statistics for each. Training normalises each batch by its own statistics (a batch holds one
size), but eval mode uses the *running* statistics, and one set averaged over both sizes
normalises neither: measured with ``scripts/bn_group_check.py`` on a mixed model, the 512 px
DiffraNet frames fell from 92.2 % (own statistics) to 89.8 % (shared running statistics), with
sensitivity 90.8 -> 81.5 %.

:func:`split_batchnorm` gives every BatchNorm layer one set of running statistics per
spatial size of *its own input* (buffers ``running_mean_s{H}x{W}`` and ``running_var_s{H}x{W}``,
saved in the ``state_dict``). Each layer keys on its own input, so ``forward_features`` and
partial forwards select the same statistics as ``forward``. In training a new size starts from
the layer's running statistics as they were when it was split (a fine-tuned model's trained
ones) and is then updated by that size's batches only; in eval
a size never trained on uses the nearest trained size (by pixel count). The layer's ordinary
``running_mean`` / ``running_var`` hold the last size used. :func:`restore_batchnorm_sizes`
registers the buffers a ``state_dict`` names, so a checkpoint reloads into a freshly built model;
a model without them is unchanged.

:func:`recalibrate_batchnorm` ("precise BatchNorm", Wu & Johnson 2021) replaces the running
statistics by plain averages over many batches, per layer and input size. The momentum estimate
(0.1: about the last 10 batches) depends on which classes the last batches held; on a DiffraNet
5-class run (16 batches an epoch) validation accuracy swung between 0.64 and 0.94 from one epoch
to the next while training accuracy rose smoothly.

>>> import torch
>>> from xtalscreen.models import create_model
>>> m = split_batchnorm(create_model("spotcount"))
>>> _ = m.train()(torch.randn(2, 1, 64, 64)); _ = m(torch.randn(2, 1, 128, 128) * 3)
>>> batchnorm_sizes(m)["features.1"]
['32x32', '64x64']
"""

from __future__ import annotations

import math
import re

import torch
from torch import nn

__all__ = ["split_batchnorm", "restore_batchnorm_sizes", "batchnorm_sizes", "has_split_batchnorm",
           "recalibrate_batchnorm"]

_PREFIX_MEAN, _PREFIX_VAR = "running_mean_s", "running_var_s"
_BUFFER = re.compile(r"^(?P<layer>.*?)\.?running_mean_s(?P<h>\d+)x(?P<w>\d+)$")  # one per layer and size


def _layers(model: nn.Module):
    for name, m in model.named_modules():
        if isinstance(m, nn.modules.batchnorm._BatchNorm) and m.track_running_stats:
            yield name, m


def _sizes(bn) -> list[tuple[int, int]]:
    """The (H, W) input sizes ``bn`` has statistics for, sorted (kept sorted by :func:`_add_size`)."""
    return getattr(bn, "_xs_sizes", [])


def _key(hw: tuple[int, int]) -> str:
    return f"{hw[0]}x{hw[1]}"


def _add_size(bn, hw: tuple[int, int]) -> None:
    """Statistics for a new input size, starting from the layer's statistics when it was split."""
    key = _key(hw)
    mean, var = getattr(bn, "_xs_base", (bn.running_mean, bn.running_var))
    bn.register_buffer(_PREFIX_MEAN + key, mean.detach().clone().to(bn.running_mean.device))
    bn.register_buffer(_PREFIX_VAR + key, var.detach().clone().to(bn.running_var.device))
    bn._xs_sizes = sorted(set(_sizes(bn)) | {hw})


def _nearest(sizes, hw):
    area = hw[0] * hw[1]
    return min(sizes, key=lambda s: (abs(math.log(s[0] * s[1] / area)), s))


def _before(bn, args):
    """Forward pre-hook: load the running statistics of this input's size into the layer."""
    x = args[0]
    hw = (int(x.shape[-2]), int(x.shape[-1])) if x.ndim >= 3 else (1, 1)
    sizes = _sizes(bn)
    if hw not in sizes:
        if bn.training:
            _add_size(bn, hw)
        elif not sizes:
            bn._xs_active = None
            return None
        else:
            hw = _nearest(sizes, hw)
    key = _key(hw)
    with torch.no_grad():
        bn.running_mean.copy_(getattr(bn, _PREFIX_MEAN + key))
        bn.running_var.copy_(getattr(bn, _PREFIX_VAR + key))
    bn._xs_active = key
    return None


def _after(bn, args, output):
    """Forward hook: in training, keep the updated statistics under this input's size."""
    key = getattr(bn, "_xs_active", None)
    if bn.training and key is not None:
        with torch.no_grad():
            getattr(bn, _PREFIX_MEAN + key).copy_(bn.running_mean)
            getattr(bn, _PREFIX_VAR + key).copy_(bn.running_var)
    return None


def has_split_batchnorm(model: nn.Module) -> bool:
    """Whether :func:`split_batchnorm` was applied to ``model``."""
    return bool(getattr(model, "batchnorm_per_size", False))


def split_batchnorm(model: nn.Module) -> nn.Module:
    """Give every BatchNorm layer of ``model`` running statistics per input size (in place).

    Idempotent; a model without BatchNorm layers is returned as it is. Returns ``model``.
    """
    if has_split_batchnorm(model):
        return model
    found = False
    for _, bn in _layers(model):
        bn._xs_base = (bn.running_mean.detach().clone(), bn.running_var.detach().clone())
        bn.register_forward_pre_hook(_before)
        bn.register_forward_hook(_after)
        found = True
    if found:
        model.batchnorm_per_size = True
    return model


def batchnorm_sizes(model: nn.Module) -> dict[str, list[str]]:
    """``{layer name: ["HxW", ...]}``: the input sizes each split layer has statistics for."""
    return {name: [_key(hw) for hw in _sizes(bn)] for name, bn in _layers(model) if _sizes(bn)}


def restore_batchnorm_sizes(model: nn.Module, state_dict) -> bool:
    """Prepare ``model`` for a ``state_dict`` holding per-size statistics: split its BatchNorm
    layers and register the sizes the ``state_dict`` names (their values come with
    ``load_state_dict``). Returns whether it held any; a ``state_dict`` without them leaves
    ``model`` unchanged."""
    wanted: dict[str, set] = {}
    for k in state_dict:
        m = _BUFFER.match(k)
        if m:
            wanted.setdefault(m["layer"], set()).add((int(m["h"]), int(m["w"])))
    if not wanted:
        return False
    split_batchnorm(model)
    layers = dict(_layers(model))
    for name, sizes in wanted.items():
        bn = layers.get(name)
        if bn is None:
            continue  # load_state_dict reports the unexpected key
        for hw in sorted(sizes):
            if hw not in _sizes(bn):
                _add_size(bn, hw)
    return True


def recalibrate_batchnorm(model: nn.Module, batches, *, device="cpu") -> int:
    """Set every BatchNorm layer's running statistics to the mean of the batch statistics over
    ``batches`` (precise BatchNorm), per input size for a split model.

    ``batches`` yields input tensors ``(N, C, H, W)`` (or tuples whose first item is one), each
    of one size, as in training (augmented training batches). The model runs in train mode
    without gradients, so each layer sees the inputs it sees in training; the global random
    state is left as it was; the model is returned to its previous mode. Layers of an unsplit
    model average over every batch. Returns the number of batches used (batches of fewer than
    2 items are skipped).
    """
    sums: dict = {}
    per_size = has_split_batchnorm(model)

    def hook(bn, args):
        x = args[0]
        if x.shape[0] < 2:
            return None
        dims = [0] + list(range(2, x.ndim))
        hw = (int(x.shape[-2]), int(x.shape[-1])) if per_size and x.ndim >= 3 else None
        mean, var = x.mean(dim=dims), x.var(dim=dims, unbiased=True)
        acc = sums.setdefault((id(bn), hw), [0, torch.zeros_like(mean), torch.zeros_like(var)])
        acc[0] += 1
        acc[1] += mean
        acc[2] += var
        return None

    layers = [bn for _, bn in _layers(model)]
    if not layers:
        return 0
    handles = [bn.register_forward_pre_hook(hook) for bn in layers]
    was_training = model.training
    used = 0
    try:
        with torch.random.fork_rng(devices=[]), torch.no_grad():
            model.train()
            for b in batches:
                x = b[0] if isinstance(b, (tuple, list)) else b
                if x.shape[0] < 2:
                    continue
                model(x.to(device))
                used += 1
    finally:
        for h in handles:
            h.remove()
        model.train(was_training)
    by_id = {id(bn): bn for bn in layers}
    with torch.no_grad():
        for (key, hw), (n, m, v) in sums.items():
            bn = by_id[key]
            if hw is None:
                bn.running_mean.copy_(m / n)
                bn.running_var.copy_(v / n)
            else:
                tag = _key(hw)
                getattr(bn, _PREFIX_MEAN + tag).copy_(m / n)
                getattr(bn, _PREFIX_VAR + tag).copy_(v / n)
    return used
