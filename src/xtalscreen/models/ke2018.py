"""``ke2018``: the hit/maybe/miss CNN of Ke et al. (2018), paper 001 Fig. 2.

A 7 x 7 / 2 convolution to 4 channels, then three 3 x 3 / 2 convolutions to 8, 16 and 32
channels; each followed by batch norm, ReLU and a 2 x 2 max pool (output ``ceil(N / 2)``, as the
paper states). On the paper's 720 x 720 input the maps are 4 x 180², 8 x 45², 16 x 12², 32 x 3²:
flattened, 288 features, then one linear layer to the classes (softmax in the loss).

Other input sizes work: the flatten length is computed from ``img_size`` at construction
(``32 * h' * w'``); feeding a different size raises an error naming the expected one.
"""

from __future__ import annotations

import torch
from torch import nn

from xtalscreen.errors import ParameterError
from xtalscreen.models._base import (MaxPool2x2, XtalModel, check_int, check_prob, check_widths, out_size,
                                     pair, register_model)
from xtalscreen.preprocess.pipeline import PreprocessConfig

__all__ = ["Ke2018", "ke2018"]


def _stage(cin: int, cout: int, k: int) -> nn.Sequential:
    return nn.Sequential(
        nn.Conv2d(cin, cout, k, stride=2, padding=k // 2, bias=False),
        nn.BatchNorm2d(cout),
        nn.ReLU(inplace=True),
        MaxPool2x2(ceil_mode=True),
    )


class Ke2018(XtalModel):
    """Paper 001's 4-stage conv/BN/ReLU/maxpool network (see the module docstring)."""

    def __init__(self, *, num_classes: int = 3, in_chans: int = 1, img_size=720,
                 widths: tuple[int, ...] = (4, 8, 16, 32), first_kernel: int = 7,
                 drop_rate: float = 0.0):
        super().__init__()
        self.num_classes = check_int("num_classes", num_classes)
        check_int("in_chans", in_chans)
        h, w = pair(img_size)
        widths = check_widths(widths)
        check_int("first_kernel", first_kernel)
        layers, cin = [], in_chans
        for i, cout in enumerate(widths):
            k = first_kernel if i == 0 else 3
            layers.append(_stage(cin, cout, k))
            h = out_size(out_size(h, k, 2, k // 2), 2, 2, ceil=True)
            w = out_size(out_size(w, k, 2, k // 2), 2, 2, ceil=True)
            cin = cout
        if h < 1 or w < 1:
            raise ParameterError(f"img_size {img_size!r} is too small for {len(widths)} stages")
        self.features = nn.Sequential(*layers)
        self.feature_shape = (cin, h, w)
        self.num_features = cin * h * w
        self.drop = nn.Dropout(check_prob("drop_rate", drop_rate))
        self.classifier = nn.Linear(self.num_features, self.num_classes)
        self.default_cfg = {
            "input_size": (in_chans,) + pair(img_size),
            "num_classes": num_classes,
            "classes": ("hit", "maybe", "miss") if num_classes == 3 else None,
            "preprocess": PreprocessConfig.ke2018(crop=pair(img_size), channels=in_chans).to_dict(),
            "paper": "001 (Ke et al. 2018), Fig. 2",
        }

    def forward_features(self, x: torch.Tensor) -> torch.Tensor:
        self._check_input(x)
        return self.features(x)

    def forward_head(self, x: torch.Tensor, *, pre_logits: bool = False) -> torch.Tensor:
        self._check_features(x, "ke2018")
        x = torch.flatten(x, 1)
        if pre_logits:
            return x
        return self.classifier(self.drop(x))


@register_model
def ke2018(*, num_classes: int = 3, in_chans: int = 1, img_size=720,
           widths: tuple[int, ...] = (4, 8, 16, 32), first_kernel: int = 7,
           drop_rate: float = 0.0) -> Ke2018:
    """Paper 001 (Fig. 2): 3 classes (hit, maybe, miss), 1 x 720 x 720 input, 288 features.

    ``img_size`` (int or (H, W)) sets the flatten length for other inputs; ``widths`` the four
    channel counts; ``drop_rate`` an optional dropout before the linear layer (not in the paper).
    """
    return Ke2018(num_classes=num_classes, in_chans=in_chans, img_size=img_size, widths=widths,
                  first_kernel=first_kernel, drop_rate=drop_rate)
