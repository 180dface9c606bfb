"""``deepfreak``: the ResNet-50 of DeepFreak (Souza et al., paper 002) with its searched topology.

PyTorch's (torchvision) ResNet-50 with bottleneck blocks ``[3, 4, 6, 3]`` and the adaptations
of paper 002 Table 9, applied to 1-channel 512 x 512 DiffraNet images:

- ``filters``: width of the first convolution; the four stages have ``filters * (1, 2, 4, 8)``
  bottleneck channels and 4x as many outputs (64 in ResNet-50);
- ``first_kernel`` / ``first_stride``: the first convolution (7 / 2 in ResNet-50);
- ``pool1_size`` / ``pool1_stride``: the max pool after it (3 / 2);
- ``pool2_size`` / ``pool2_stride``: the average pool before the classifier (7 / 1 in the
  2018 torchvision ResNet, which then flattens); the classifier's input length follows from
  ``img_size``;
- ``block_strides``: stride of the first block of each stage (1, 2, 2, 2);
- ``layers``: blocks per stage (3, 4, 6, 3).

``topology`` picks a preset: an integer 0-13 (Table 9's variants; 0 is "Default"), ``"A"``,
``"B"``, ``"C"`` (Table 11's three best, = variants 6, 8, 1; ``"B"`` = Table 1 is the default),
``"real_raw"`` (Table 15) or ``"real_pre"`` (Table 17). Explicit arguments override the preset.
"""

from __future__ import annotations

from typing import Any

import torch
from torch import nn

from xtalscreen.errors import ParameterError
from xtalscreen.models._base import XtalModel, check_int, out_size, pair, register_model
from xtalscreen.preprocess.pipeline import PreprocessConfig

__all__ = ["DeepFreak", "deepfreak", "TOPOLOGIES"]

_KEYS = ("filters", "first_kernel", "first_stride", "pool1_size", "pool1_stride", "pool2_size",
         "pool2_stride", "block_strides")


def _t(filters, stride, pool2, pool2_stride, strides) -> dict[str, Any]:
    return dict(zip(_KEYS, (filters, 7, stride, 3, 2, pool2, pool2_stride, strides)))


#: Paper 002 Table 9 (variants 0-13) and the named configurations of Tables 11, 15, 17.
TOPOLOGIES: dict[Any, dict[str, Any]] = {
    0: _t(64, 2, 7, 1, (1, 2, 2, 2)),
    1: _t(64, 2, 9, 2, (1, 2, 2, 2)),
    2: _t(64, 2, 13, 2, (1, 2, 2, 2)),
    3: _t(64, 2, 7, 1, (2, 2, 2, 2)),
    4: _t(64, 4, 7, 1, (1, 2, 2, 2)),
    5: _t(64, 2, 7, 2, (2, 2, 2, 2)),
    6: _t(64, 2, 15, 2, (1, 2, 2, 2)),
    7: _t(64, 2, 8, 1, (2, 2, 2, 2)),
    8: _t(64, 2, 7, 1, (1, 2, 3, 3)),
    9: _t(8, 2, 7, 1, (1, 2, 2, 2)),
    10: _t(8, 2, 7, 2, (1, 2, 2, 2)),
    11: _t(64, 2, 9, 2, (1, 2, 2, 3)),
    12: _t(16, 2, 9, 2, (1, 2, 2, 2)),
    13: _t(16, 2, 7, 2, (1, 2, 2, 2)),
}
TOPOLOGIES.update({
    "A": TOPOLOGIES[6], "B": TOPOLOGIES[8], "C": TOPOLOGIES[1],
    "real_raw": _t(64, 2, 9, 2, (1, 2, 2, 3)),
    "real_pre": _t(8, 2, 7, 2, (1, 2, 2, 2)),
})


class Bottleneck(nn.Module):
    """torchvision's ResNet-50 bottleneck: 1x1, 3x3 (carries the stride), 1x1 (x4), + shortcut."""

    expansion = 4

    def __init__(self, inplanes: int, planes: int, stride: int = 1):
        super().__init__()
        out = planes * self.expansion
        self.conv1 = nn.Conv2d(inplanes, planes, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(planes)
        self.conv2 = nn.Conv2d(planes, planes, 3, stride=stride, padding=1, bias=False)
        self.bn2 = nn.BatchNorm2d(planes)
        self.conv3 = nn.Conv2d(planes, out, 1, bias=False)
        self.bn3 = nn.BatchNorm2d(out)
        self.relu = nn.ReLU(inplace=True)
        self.downsample = None
        if stride != 1 or inplanes != out:
            self.downsample = nn.Sequential(nn.Conv2d(inplanes, out, 1, stride=stride, bias=False),
                                            nn.BatchNorm2d(out))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        identity = x if self.downsample is None else self.downsample(x)
        y = self.relu(self.bn1(self.conv1(x)))
        y = self.relu(self.bn2(self.conv2(y)))
        y = self.bn3(self.conv3(y))
        return self.relu(y + identity)


class DeepFreak(XtalModel):
    """ResNet-50 bottleneck network with paper 002's configurable topology."""

    def __init__(self, *, num_classes: int = 5, in_chans: int = 1, img_size=512,
                 filters: int = 64, first_kernel: int = 7, first_stride: int = 2,
                 pool1_size: int = 3, pool1_stride: int = 2, pool2_size: int = 7,
                 pool2_stride: int = 1, block_strides=(1, 2, 3, 3), layers=(3, 4, 6, 3)):
        super().__init__()
        self.num_classes = check_int("num_classes", num_classes)
        for name, v in (("in_chans", in_chans), ("filters", filters), ("first_kernel", first_kernel),
                        ("first_stride", first_stride), ("pool1_size", pool1_size),
                        ("pool1_stride", pool1_stride), ("pool2_size", pool2_size),
                        ("pool2_stride", pool2_stride)):
            check_int(name, v)
        block_strides = tuple(block_strides)
        layers = tuple(layers)
        if len(block_strides) != len(layers) or not layers:
            raise ParameterError(f"block_strides {block_strides} and layers {layers} must have the "
                                 "same (non-zero) length: one entry per stage")
        for i, (s, n) in enumerate(zip(block_strides, layers)):
            check_int(f"block_strides[{i}]", s)
            check_int(f"layers[{i}]", n)
        h, w = pair(img_size)
        self.stem = nn.Sequential(
            nn.Conv2d(in_chans, filters, first_kernel, stride=first_stride,
                      padding=first_kernel // 2, bias=False),
            nn.BatchNorm2d(filters),
            nn.ReLU(inplace=True),
            nn.MaxPool2d(pool1_size, stride=pool1_stride, padding=pool1_size // 2),
        )
        for f in (lambda n: out_size(n, first_kernel, first_stride, first_kernel // 2),
                  lambda n: out_size(n, pool1_size, pool1_stride, pool1_size // 2)):
            h, w = f(h), f(w)
        stages, inplanes = [], filters
        for i, (s, n) in enumerate(zip(block_strides, layers)):
            planes = filters * 2 ** i
            blocks = [Bottleneck(inplanes, planes, int(s))]
            inplanes = planes * Bottleneck.expansion
            blocks += [Bottleneck(inplanes, planes) for _ in range(int(n) - 1)]
            stages.append(nn.Sequential(*blocks))
            h, w = out_size(h, 3, int(s), 1), out_size(w, 3, int(s), 1)
        self.stages = nn.Sequential(*stages)
        if min(h, w) < pool2_size:
            raise ParameterError(
                f"img_size {img_size!r} leaves {h} x {w} feature maps, smaller than pool2_size "
                f"{pool2_size}; use a larger image, smaller strides or a smaller pool2_size")
        self.feature_shape = (inplanes, h, w)
        self.pool2 = nn.AvgPool2d(pool2_size, stride=pool2_stride)
        ph, pw = out_size(h, pool2_size, pool2_stride), out_size(w, pool2_size, pool2_stride)
        self.num_features = inplanes * ph * pw
        self.classifier = nn.Linear(self.num_features, self.num_classes)
        for m in self.modules():
            if isinstance(m, nn.Conv2d):
                nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu")
        self.default_cfg = {
            "input_size": (in_chans,) + pair(img_size),
            "num_classes": num_classes,
            "classes": (("blank", "no-crystal", "weak", "good", "strong")
                        if num_classes == 5 else None),
            "preprocess": PreprocessConfig.deepfreak(crop=pair(img_size), channels=in_chans).to_dict(),
            "paper": "002 (DeepFreak), Tables 1, 9, 11",
        }

    def forward_features(self, x: torch.Tensor) -> torch.Tensor:
        self._check_input(x)
        return self.stages(self.stem(x))

    def forward_head(self, x: torch.Tensor, *, pre_logits: bool = False) -> torch.Tensor:
        self._check_features(x, "deepfreak")
        x = torch.flatten(self.pool2(x), 1)
        return x if pre_logits else self.classifier(x)


@register_model
def deepfreak(*, num_classes: int = 5, in_chans: int = 1, img_size=512, topology="B",
              layers=(3, 4, 6, 3), **overrides: Any) -> DeepFreak:
    """Paper 002's DeepFreak: ResNet-50 on 1 x 512 x 512, 5 DiffraNet classes.

    Parameters
    ----------
    topology : int or str
        Preset from :data:`TOPOLOGIES` (default ``"B"``, Table 1).
    **overrides
        Any of ``filters, first_kernel, first_stride, pool1_size, pool1_stride, pool2_size,
        pool2_stride, block_strides``.
    """
    if topology not in TOPOLOGIES:
        raise ParameterError(f"unknown DeepFreak topology {topology!r}; known: "
                             f"{', '.join(str(k) for k in TOPOLOGIES)}")
    bad = sorted(set(overrides) - set(_KEYS))
    if bad:
        raise ParameterError(f"deepfreak does not take {bad}; topology arguments: {', '.join(_KEYS)}")
    cfg = {**TOPOLOGIES[topology], **overrides}
    return DeepFreak(num_classes=num_classes, in_chans=in_chans, img_size=img_size, layers=layers, **cfg)
