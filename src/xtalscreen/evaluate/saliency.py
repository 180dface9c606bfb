"""Saliency maps (paper 001 Fig. 10): the absolute gradient of the loss with respect to the
input pixels, shown with the 3-sigma display (values clipped to mean + 3 standard deviations
of the map, then scaled to [0, 1])."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from xtalscreen.errors import ParameterError

__all__ = ["saliency_map", "three_sigma_display", "saliency_png"]


def saliency_map(model, x, target=None):
    """``|dL/dx|`` of the cross-entropy loss for each input, summed over channels.

    Parameters
    ----------
    model : torch.nn.Module
    x : tensor or ndarray, shape (N, C, H, W)
    target : array of int, shape (N,), optional
        Class whose loss is differentiated; default the predicted class.

    Returns
    -------
    ndarray of float32, shape (N, H, W)
    """
    import torch

    xt = torch.as_tensor(np.asarray(x) if not torch.is_tensor(x) else x, dtype=torch.float32)
    if xt.ndim != 4:
        raise ParameterError(f"x must be (N, C, H, W), got shape {tuple(xt.shape)}")
    dev = next(model.parameters()).device
    xt = xt.detach().clone().to(dev).requires_grad_(True)
    was = model.training
    model.eval()
    logits = model(xt)
    t = logits.argmax(1) if target is None else torch.as_tensor(np.asarray(target), device=dev).long()
    loss = torch.nn.functional.cross_entropy(logits, t, reduction="sum")
    (grad,) = torch.autograd.grad(loss, xt)
    model.train(was)
    return grad.abs().sum(1).cpu().numpy().astype(np.float32)


def three_sigma_display(sal) -> np.ndarray:
    """Map a saliency map to [0, 1]: clip at ``mean + 3 std``, divide by that value."""
    s = np.asarray(sal, dtype=np.float64)
    top = s.mean() + 3.0 * s.std()
    if not top > 0:
        return np.zeros(s.shape, np.float32)
    return (np.clip(s, 0, top) / top).astype(np.float32)


def saliency_png(image, sal, path, *, caption: str = "") -> Path:
    """The (preprocessed) input and its 3-sigma saliency side by side, as one PNG."""
    from PIL import Image, ImageDraw

    img = np.asarray(image, dtype=np.float64)
    lo, hi = np.percentile(img, [1, 99.5]) if img.size else (0, 1)
    grey = np.clip((img - lo) / (hi - lo if hi > lo else 1.0), 0, 1)
    heat = three_sigma_display(sal)
    left = (255 * grey).astype(np.uint8)
    right = np.stack([255 * heat, 255 * heat ** 2, 80 * (1 - heat)], -1).astype(np.uint8)
    h, w = left.shape
    scale = max(1, 256 // max(h, w))
    a = Image.fromarray(left).convert("RGB").resize((w * scale, h * scale), Image.NEAREST)
    b = Image.fromarray(right).resize((w * scale, h * scale), Image.NEAREST)
    out = Image.new("RGB", (2 * w * scale + 10, h * scale + (24 if caption else 0)), "white")
    out.paste(a, (0, 0))
    out.paste(b, (w * scale + 10, 0))
    if caption:
        ImageDraw.Draw(out).text((4, h * scale + 5), caption, fill="black")
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    out.save(path, format="PNG")
    return path
