"""Logits averaged over test-time views (:mod:`xtalscreen.preprocess.views`).

>>> import torch
>>> from xtalscreen.models import create_model
>>> m = create_model("spotcount", img_size=64).eval()
>>> x = torch.randn(2, 1, 64, 64)
>>> view_logits(m, x, 8).shape
torch.Size([2, 3])
>>> bool(torch.allclose(view_logits(m, x, 1), m(x)))
True
"""

from __future__ import annotations

import torch

from xtalscreen.preprocess.views import VIEW_SETS, check_views

__all__ = ["view_logits"]


def dihedral_tensor(x: torch.Tensor, v: int) -> torch.Tensor:
    """View ``v`` of a batch ``(N, C, H, W)``, as :func:`xtalscreen.preprocess.views.dihedral`."""
    y = torch.rot90(x, v % 4, dims=(2, 3)) if v % 4 else x
    return torch.flip(y, dims=(3,)) if v >= 4 else y


def view_logits(model, x: torch.Tensor, views: int = 1) -> torch.Tensor:
    """``model``'s logits of ``x`` averaged over ``views`` orientations (1: just ``model(x)``).

    Each view is its own forward pass (a rotated non-square input changes shape, which a fully
    convolutional model takes); the cost is ``views`` times one pass.
    """
    views = check_views(views)
    if views == 1:
        return model(x)
    out = None
    for v in VIEW_SETS[views]:
        z = model(dihedral_tensor(x, v).contiguous()).float()
        out = z if out is None else out + z
    return out / views
