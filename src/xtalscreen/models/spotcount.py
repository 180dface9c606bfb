"""``spotcount``: a detect-then-count CNN for hit screening (xtalscreen's own design).

Why not paper 001's ``ke2018`` layout: its head flattens the last feature map (``32 x 3 x 3``
on a 720 px input) into one linear layer, so every output weight belongs to one place on the
detector. A hit is decided by *how many* Bragg spots there are, not *where* they are, and a
position-bound head has to learn that separately for every region and every detector layout
(paper 001's cross-dataset accuracy fell to 12-41 %). Here the network is fully convolutional
up to a **counting head**: ``K`` detector maps (1 x 1 convolution + ReLU: "a spot-like thing is
here") are summed over the image, and ``log(1 + sum)`` (a soft count, with the dynamic range of
weak to strong frames) and the global maximum of each map go to the linear classifier. The
features do not depend on where the spots are, nor on the input size: one model takes any
``img_size``. ``forward_features`` gives the detector maps (where the network "sees" spots);
``forward_head(maps, pre_logits=True)`` the count features.

Layers (``widths = (w0, w1, w2, w3)``, default ``(8, 16, 32, 32)``)::

    conv 7x7 / 2 (in -> w0) + BN + ReLU, max pool 2    # paper 001's stem: 1/4 resolution
    conv 3x3 (w0 -> w1) + BN + ReLU, max pool 2        # 1/8
    conv 3x3 (w1 -> w2) + BN + ReLU                    # stride 1 from here: no spot falls
    conv 3x3 (w2 -> w3) + BN + ReLU                    #   between the taps of a strided layer
    conv 1x1 (w3 -> K) + ReLU                          # K detector maps (default 32)
    [log1p(sum over H, W), max over H, W]  -> 2K features -> dropout -> linear -> classes

At 256 x 256 input, defaults: 16.8 k parameters, ~26 M multiply-adds, 1.9 CPU ms per frame in
batches of 32 on one thread (``ke2018`` at widths 8-64: 25 k, ~8 M, 1.3 ms).
"""

from __future__ import annotations

import torch
from torch import nn

from xtalscreen.errors import ParameterError
from xtalscreen.models._base import (MaxPool2x2, XtalModel, check_int, check_prob, check_widths, pair,
                                     register_model)
from xtalscreen.preprocess.pipeline import PreprocessConfig

__all__ = ["SpotCount", "spotcount"]


def _conv(cin: int, cout: int) -> list[nn.Module]:
    return [nn.Conv2d(cin, cout, 3, padding=1, bias=False), nn.BatchNorm2d(cout), nn.ReLU(inplace=True)]


class SpotCount(XtalModel):
    """Fully convolutional detector maps + a counting head (see the module docstring)."""

    def __init__(self, *, num_classes: int = 3, in_chans: int = 1, img_size=256,
                 widths: tuple[int, ...] = (8, 16, 32, 32), detectors: int = 32,
                 drop_rate: float = 0.0):
        super().__init__()
        self.num_classes = check_int("num_classes", num_classes)
        check_int("in_chans", in_chans)
        h, w = pair(img_size)
        widths = check_widths(widths, 2)
        k = check_int("detectors", detectors)
        layers: list[nn.Module] = [
            nn.Conv2d(in_chans, widths[0], 7, stride=2, padding=3, bias=False),
            nn.BatchNorm2d(widths[0]), nn.ReLU(inplace=True), MaxPool2x2(ceil_mode=True)]
        cin = widths[0]
        for i, cout in enumerate(widths[1:]):
            layers += _conv(cin, cout)
            if i == 0:
                layers.append(MaxPool2x2(ceil_mode=True))
            cin = cout
        self.features = nn.Sequential(*layers)
        self.detect = nn.Conv2d(cin, k, 1)
        self.num_detectors = k
        self.num_features = 2 * k
        self.drop = nn.Dropout(check_prob("drop_rate", drop_rate))
        self.classifier = nn.Linear(self.num_features, self.num_classes)
        self.default_cfg = {
            "input_size": (in_chans, h, w),
            "num_classes": num_classes,
            "classes": ("hit", "maybe", "miss") if num_classes == 3 else None,
            "preprocess": PreprocessConfig(bin="auto", bin_reduce="max", crop=(h, w), contrast="lcn",
                                           max_shift=32, channels=in_chans).to_dict(),
            "paper": "xtalscreen (detect-and-count head; any input size)",
        }

    def forward_features(self, x: torch.Tensor) -> torch.Tensor:
        """``(N, K, H/8, W/8)``: the non-negative detector maps (what the head counts)."""
        self._check_input(x)
        return torch.relu(self.detect(self.features(x)))

    @staticmethod
    def count_features(maps: torch.Tensor) -> torch.Tensor:
        """``(N, 2K)`` from detector maps: soft counts ``log1p(sum)`` and the maxima."""
        return torch.cat([torch.log1p(maps.sum(dim=(2, 3))), maps.amax(dim=(2, 3))], dim=1)

    def forward_head(self, x: torch.Tensor, *, pre_logits: bool = False) -> torch.Tensor:
        if x.ndim != 4 or x.shape[1] != self.num_detectors:
            raise ParameterError(f"spotcount's head takes (N, {self.num_detectors}, h, w) detector "
                                 f"maps, got {tuple(x.shape)}")
        x = self.count_features(x)
        if pre_logits:
            return x
        return self.classifier(self.drop(x))


@register_model
def spotcount(*, num_classes: int = 3, in_chans: int = 1, img_size=256,
              widths: tuple[int, ...] = (8, 16, 32, 32), detectors: int = 32,
              drop_rate: float = 0.0) -> SpotCount:
    """Detect-and-count hit screening CNN: 3 classes (hit, maybe, miss) by default.

    ``img_size`` only sets the default preprocessing (the network takes any size);
    ``widths`` the channel counts of the stem and the 3 x 3 convolutions (at least 2; the stem
    and the first 3 x 3 are followed by a 2 x 2 max pool); ``detectors`` the number of counted maps; ``drop_rate`` dropout before
    the linear layer.
    """
    return SpotCount(num_classes=num_classes, in_chans=in_chans, img_size=img_size, widths=widths,
                     detectors=detectors, drop_rate=drop_rate)
