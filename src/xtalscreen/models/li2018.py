"""``li2018``: the tiny hit/miss CNN of Po-Nan Li, paper 003 Table I.

Layer by layer (input 1 x 350 x 350, a centre crop without binning)::

    0  input                         350 x 350 x 1
    1  conv 7x7, 4 filters (valid)   344 x 344 x 4     200 params
    2  dropout
    3  BN "sample-wise"              344 x 344 x 4     688 params
    4  ReLU
    5  max pool 5x5                   68 x  68 x 4
    6  conv 7x7, 4 filters (valid)    62 x  62 x 4     788 params
    7  BN "sample-wise"               62 x  62 x 4     124 params
    8  ReLU
    9  max pool 5x5                   12 x  12 x 4
    10 dropout
    11 flatten                        576
    12 FC 16                                          9232 params
    13 BN                                               32 params
    14 ReLU
    15 dropout
    16 FC (2 classes)                                   34 params

The "sample-wise" batch norms of layers 3 and 7 have 2 x 344 and 2 x 62 parameters: Keras
``BatchNormalization(axis=1)`` on channels-last maps, i.e. one scale/shift per image *row*. That
is reproduced here (:class:`RowBatchNorm`), so the parameter count matches Table I layer by
layer. Table I sums to 11,098 trainable parameters; the paper's "fewer than 10 thousand" is its
rule of thumb for the size of such networks, not the count of this table. Layer 16 is listed with
16 outputs but 34 parameters (= 16 x 2 + 2): two classes. Layer 17 of the table ("ReLU") is the
output activation; here the network returns logits (softmax goes in the loss). The dropout
rates are not given; ``drop_rate`` (default 0.25) sets all three.
"""

from __future__ import annotations

import torch
from torch import nn

from xtalscreen.errors import ParameterError
from xtalscreen.models._base import XtalModel, check_int, check_prob, out_size, pair, register_model
from xtalscreen.preprocess.pipeline import PreprocessConfig

__all__ = ["Li2018", "RowBatchNorm", "li2018"]


class RowBatchNorm(nn.Module):
    """Batch norm with one (scale, shift) per image row: Keras ``BatchNormalization(axis=1)``
    on ``(N, H, W, C)`` maps. Input/output ``(N, C, H, W)`` with ``H == num_rows``."""

    def __init__(self, num_rows: int):
        super().__init__()
        self.bn = nn.BatchNorm2d(num_rows)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.bn(x.transpose(1, 2)).transpose(1, 2)


class Li2018(XtalModel):
    """Paper 003 Table I (see the module docstring)."""

    def __init__(self, *, num_classes: int = 2, in_chans: int = 1, img_size=350,
                 filters: int = 4, kernel: int = 7, pool: int = 5, hidden: int = 16,
                 drop_rate: float = 0.25):
        super().__init__()
        self.num_classes = check_int("num_classes", num_classes)
        check_int("in_chans", in_chans)
        check_int("filters", filters)
        check_int("kernel", kernel)
        check_int("pool", pool)
        check_int("hidden", hidden)
        p = check_prob("drop_rate", drop_rate)
        h0, w0 = pair(img_size)
        h1, w1 = out_size(h0, kernel, 1), out_size(w0, kernel, 1)
        h2, w2 = out_size(h1, pool, pool), out_size(w1, pool, pool)
        h3, w3 = out_size(h2, kernel, 1), out_size(w2, kernel, 1)
        h4, w4 = out_size(h3, pool, pool), out_size(w3, pool, pool)
        if min(h4, w4) < 1:
            raise ParameterError(f"img_size {img_size!r} is too small for li2018 (needs >= "
                                 f"{2 * kernel - 2 + pool * pool} pixels)")
        self.features = nn.Sequential(
            nn.Conv2d(in_chans, filters, kernel),
            nn.Dropout(p),
            RowBatchNorm(h1),
            nn.ReLU(inplace=True),
            nn.MaxPool2d(pool),
            nn.Conv2d(filters, filters, kernel),
            RowBatchNorm(h3),
            nn.ReLU(inplace=True),
            nn.MaxPool2d(pool),
            nn.Dropout(p),
        )
        self.feature_shape = (filters, h4, w4)
        self.num_features = hidden
        self.fc = nn.Linear(filters * h4 * w4, hidden)
        self.bn = nn.BatchNorm1d(hidden)
        self.act = nn.ReLU(inplace=True)
        self.drop = nn.Dropout(p)
        self.classifier = nn.Linear(hidden, self.num_classes)
        self.default_cfg = {
            "input_size": (in_chans, h0, w0),
            "num_classes": num_classes,
            "classes": ("hit", "miss") if num_classes == 2 else None,
            "preprocess": PreprocessConfig.li2018(crop=(h0, w0), channels=in_chans).to_dict(),
            "paper": "003 (Po-Nan Li), Table I",
        }

    def forward_features(self, x: torch.Tensor) -> torch.Tensor:
        self._check_input(x)
        if tuple(x.shape[2:]) != tuple(self.default_cfg["input_size"][1:]):
            raise ParameterError(
                f"li2018 was built for {self.default_cfg['input_size'][1:]} inputs (its row-wise "
                f"batch norms have one parameter per row), got {tuple(x.shape[2:])}; build it "
                "with create_model('li2018', img_size=...)")
        return self.features(x)

    def forward_head(self, x: torch.Tensor, *, pre_logits: bool = False) -> torch.Tensor:
        x = self.drop(self.act(self.bn(self.fc(torch.flatten(x, 1)))))
        return x if pre_logits else self.classifier(x)


@register_model
def li2018(*, num_classes: int = 2, in_chans: int = 1, img_size=350, filters: int = 4,
           kernel: int = 7, pool: int = 5, hidden: int = 16, drop_rate: float = 0.25) -> Li2018:
    """Paper 003 Table I: 2 classes (hit, miss), 1 x 350 x 350 input, 11,098 parameters."""
    return Li2018(num_classes=num_classes, in_chans=in_chans, img_size=img_size, filters=filters,
                  kernel=kernel, pool=pool, hidden=hidden, drop_rate=drop_rate)
