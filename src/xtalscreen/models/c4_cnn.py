"""``c4_cnn``: the preliminary drop-image CNN of the C4 pipeline, paper 000 Table 3.

Input 128 x 128 x 3 (RGB); four 3 x 3 convolutions ("same" padding, as tflearn's default) with
32, 64, 128, 256 outputs, each with ReLU and a 2 x 2 max pool; two dense layers of 512 with tanh
and dropout 0.5; a dense layer of 2 outputs (crystal / not crystal, or clear / not clear).
On 128 x 128 the flatten length is 8 x 8 x 256 = 16,384.
"""

from __future__ import annotations

import torch
from torch import nn

from xtalscreen.errors import ParameterError
from xtalscreen.models._base import (MaxPool2x2, XtalModel, check_int, check_prob, out_size, pair,
                                     register_model)

__all__ = ["C4CNN", "c4_cnn"]


class C4CNN(XtalModel):
    """Paper 000 Table 3 (see the module docstring)."""

    def __init__(self, *, num_classes: int = 2, in_chans: int = 3, img_size=128,
                 widths: tuple[int, ...] = (32, 64, 128, 256), hidden: int = 512,
                 drop_rate: float = 0.5):
        super().__init__()
        self.num_classes = check_int("num_classes", num_classes)
        check_int("in_chans", in_chans)
        check_int("hidden", hidden)
        p = check_prob("drop_rate", drop_rate)
        h, w = pair(img_size)
        layers, cin = [], in_chans
        for cout in widths:
            layers += [nn.Conv2d(cin, int(cout), 3, padding=1), nn.ReLU(inplace=True),
                       MaxPool2x2()]
            h, w = out_size(h, 2, 2), out_size(w, 2, 2)
            cin = int(cout)
        if min(h, w) < 1:
            raise ParameterError(f"img_size {img_size!r} is too small for {len(widths)} pooling stages")
        self.features = nn.Sequential(*layers)
        self.feature_shape = (cin, h, w)
        self.num_features = hidden
        self.head = nn.Sequential(
            nn.Linear(cin * h * w, hidden), nn.Tanh(), nn.Dropout(p),
            nn.Linear(hidden, hidden), nn.Tanh(), nn.Dropout(p),
        )
        self.classifier = nn.Linear(hidden, self.num_classes)
        self.default_cfg = {
            "input_size": (in_chans,) + pair(img_size),
            "num_classes": num_classes,
            "classes": ("crystal", "not crystal") if num_classes == 2 else None,
            "preprocess": {"resize": list(pair(img_size)), "scale": "0-1 (RGB / 255)"},
            "paper": "000 (C4 pipeline), Table 3",
        }

    def forward_features(self, x: torch.Tensor) -> torch.Tensor:
        self._check_input(x)
        return self.features(x)

    def forward_head(self, x: torch.Tensor, *, pre_logits: bool = False) -> torch.Tensor:
        self._check_features(x, "c4_cnn")
        x = self.head(torch.flatten(x, 1))
        return x if pre_logits else self.classifier(x)


@register_model
def c4_cnn(*, num_classes: int = 2, in_chans: int = 3, img_size=128,
           widths: tuple[int, ...] = (32, 64, 128, 256), hidden: int = 512,
           drop_rate: float = 0.5) -> C4CNN:
    """Paper 000 Table 3: 3 x 128 x 128 RGB drop images, 2 classes."""
    return C4CNN(num_classes=num_classes, in_chans=in_chans, img_size=img_size, widths=widths,
                 hidden=hidden, drop_rate=drop_rate)
