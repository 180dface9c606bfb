"""``inception_v3``: Inception-v3 (Szegedy et al. 2016), the architecture of MARCO (paper 000).

Pure PyTorch, laid out like torchvision's ``Inception3``: a stem (Conv2d_1a_3x3 ...
Conv2d_4a_3x3 with two max pools), Mixed_5b-5d (InceptionA), Mixed_6a (InceptionB),
Mixed_6b-6e (InceptionC with 7 x 7 factorised), Mixed_7a (InceptionD), Mixed_7b-7c
(InceptionE), global average pool, dropout, linear. Convolutions are bias-free with batch norm
(eps 0.001) and ReLU. Default: 3-channel 299 x 299 drop images, 4 MARCO classes (crystals,
precipitate, clear, other).

The auxiliary classifier (on Mixed_6e) is built when ``aux_logits=True`` (the default, as when
training MARCO); :meth:`InceptionV3.forward` always returns the main logits only, and
:meth:`InceptionV3.forward_with_aux` returns ``(logits, aux_logits)`` for the training loss. The
auxiliary head needs inputs of at least 299 x 299; without it any input >= 75 x 75 works.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

from xtalscreen.errors import ParameterError
from xtalscreen.models._base import XtalModel, check_int, check_prob, pair, register_model

__all__ = ["InceptionV3", "inception_v3"]


@torch.no_grad()
def _trunc_normal_(t: torch.Tensor, std: float) -> torch.Tensor:
    """Normal(0, std) truncated to ±2 std by inverse-CDF sampling (torchvision's init; torch's own
    ``trunc_normal_`` samples by rejection and takes seconds on this network)."""
    lo = 0.5 * (1.0 + math.erf(-2.0 / math.sqrt(2.0)))
    t.uniform_(2 * lo - 1, 1 - 2 * lo).erfinv_().mul_(std * math.sqrt(2.0))
    return t.clamp_(-2 * std, 2 * std)


class BasicConv2d(nn.Module):
    def __init__(self, cin: int, cout: int, kernel_size, **kwargs):
        super().__init__()
        self.conv = nn.Conv2d(cin, cout, kernel_size, bias=False, **kwargs)
        self.bn = nn.BatchNorm2d(cout, eps=0.001)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.relu(self.bn(self.conv(x)), inplace=True)


class InceptionA(nn.Module):
    def __init__(self, cin: int, pool_features: int):
        super().__init__()
        self.branch1x1 = BasicConv2d(cin, 64, 1)
        self.branch5x5_1 = BasicConv2d(cin, 48, 1)
        self.branch5x5_2 = BasicConv2d(48, 64, 5, padding=2)
        self.branch3x3dbl_1 = BasicConv2d(cin, 64, 1)
        self.branch3x3dbl_2 = BasicConv2d(64, 96, 3, padding=1)
        self.branch3x3dbl_3 = BasicConv2d(96, 96, 3, padding=1)
        self.branch_pool = BasicConv2d(cin, pool_features, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        b1 = self.branch1x1(x)
        b5 = self.branch5x5_2(self.branch5x5_1(x))
        b3 = self.branch3x3dbl_3(self.branch3x3dbl_2(self.branch3x3dbl_1(x)))
        bp = self.branch_pool(F.avg_pool2d(x, 3, stride=1, padding=1))
        return torch.cat([b1, b5, b3, bp], 1)


class InceptionB(nn.Module):
    def __init__(self, cin: int):
        super().__init__()
        self.branch3x3 = BasicConv2d(cin, 384, 3, stride=2)
        self.branch3x3dbl_1 = BasicConv2d(cin, 64, 1)
        self.branch3x3dbl_2 = BasicConv2d(64, 96, 3, padding=1)
        self.branch3x3dbl_3 = BasicConv2d(96, 96, 3, stride=2)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        b3 = self.branch3x3(x)
        bd = self.branch3x3dbl_3(self.branch3x3dbl_2(self.branch3x3dbl_1(x)))
        bp = F.max_pool2d(x, 3, stride=2)
        return torch.cat([b3, bd, bp], 1)


class InceptionC(nn.Module):
    def __init__(self, cin: int, channels_7x7: int):
        super().__init__()
        c7 = channels_7x7
        self.branch1x1 = BasicConv2d(cin, 192, 1)
        self.branch7x7_1 = BasicConv2d(cin, c7, 1)
        self.branch7x7_2 = BasicConv2d(c7, c7, (1, 7), padding=(0, 3))
        self.branch7x7_3 = BasicConv2d(c7, 192, (7, 1), padding=(3, 0))
        self.branch7x7dbl_1 = BasicConv2d(cin, c7, 1)
        self.branch7x7dbl_2 = BasicConv2d(c7, c7, (7, 1), padding=(3, 0))
        self.branch7x7dbl_3 = BasicConv2d(c7, c7, (1, 7), padding=(0, 3))
        self.branch7x7dbl_4 = BasicConv2d(c7, c7, (7, 1), padding=(3, 0))
        self.branch7x7dbl_5 = BasicConv2d(c7, 192, (1, 7), padding=(0, 3))
        self.branch_pool = BasicConv2d(cin, 192, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        b1 = self.branch1x1(x)
        b7 = self.branch7x7_3(self.branch7x7_2(self.branch7x7_1(x)))
        bd = self.branch7x7dbl_1(x)
        for layer in (self.branch7x7dbl_2, self.branch7x7dbl_3, self.branch7x7dbl_4,
                      self.branch7x7dbl_5):
            bd = layer(bd)
        bp = self.branch_pool(F.avg_pool2d(x, 3, stride=1, padding=1))
        return torch.cat([b1, b7, bd, bp], 1)


class InceptionD(nn.Module):
    def __init__(self, cin: int):
        super().__init__()
        self.branch3x3_1 = BasicConv2d(cin, 192, 1)
        self.branch3x3_2 = BasicConv2d(192, 320, 3, stride=2)
        self.branch7x7x3_1 = BasicConv2d(cin, 192, 1)
        self.branch7x7x3_2 = BasicConv2d(192, 192, (1, 7), padding=(0, 3))
        self.branch7x7x3_3 = BasicConv2d(192, 192, (7, 1), padding=(3, 0))
        self.branch7x7x3_4 = BasicConv2d(192, 192, 3, stride=2)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        b3 = self.branch3x3_2(self.branch3x3_1(x))
        b7 = self.branch7x7x3_4(self.branch7x7x3_3(self.branch7x7x3_2(self.branch7x7x3_1(x))))
        bp = F.max_pool2d(x, 3, stride=2)
        return torch.cat([b3, b7, bp], 1)


class InceptionE(nn.Module):
    def __init__(self, cin: int):
        super().__init__()
        self.branch1x1 = BasicConv2d(cin, 320, 1)
        self.branch3x3_1 = BasicConv2d(cin, 384, 1)
        self.branch3x3_2a = BasicConv2d(384, 384, (1, 3), padding=(0, 1))
        self.branch3x3_2b = BasicConv2d(384, 384, (3, 1), padding=(1, 0))
        self.branch3x3dbl_1 = BasicConv2d(cin, 448, 1)
        self.branch3x3dbl_2 = BasicConv2d(448, 384, 3, padding=1)
        self.branch3x3dbl_3a = BasicConv2d(384, 384, (1, 3), padding=(0, 1))
        self.branch3x3dbl_3b = BasicConv2d(384, 384, (3, 1), padding=(1, 0))
        self.branch_pool = BasicConv2d(cin, 192, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        b1 = self.branch1x1(x)
        b3 = self.branch3x3_1(x)
        b3 = torch.cat([self.branch3x3_2a(b3), self.branch3x3_2b(b3)], 1)
        bd = self.branch3x3dbl_2(self.branch3x3dbl_1(x))
        bd = torch.cat([self.branch3x3dbl_3a(bd), self.branch3x3dbl_3b(bd)], 1)
        bp = self.branch_pool(F.avg_pool2d(x, 3, stride=1, padding=1))
        return torch.cat([b1, b3, bd, bp], 1)


class InceptionAux(nn.Module):
    def __init__(self, cin: int, num_classes: int):
        super().__init__()
        self.conv0 = BasicConv2d(cin, 128, 1)
        self.conv1 = BasicConv2d(128, 768, 5)
        self.fc = nn.Linear(768, num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = F.avg_pool2d(x, 5, stride=3)
        x = self.conv1(self.conv0(x))
        x = torch.flatten(F.adaptive_avg_pool2d(x, 1), 1)
        return self.fc(x)


class InceptionV3(XtalModel):
    """Inception-v3 (see the module docstring)."""

    def __init__(self, *, num_classes: int = 4, in_chans: int = 3, img_size=299,
                 aux_logits: bool = True, drop_rate: float = 0.5):
        super().__init__()
        self.num_classes = check_int("num_classes", num_classes)
        check_int("in_chans", in_chans)
        h, w = pair(img_size)
        self.aux_logits = bool(aux_logits)
        min_size = 299 if self.aux_logits else 75
        if min(h, w) < min_size:
            raise ParameterError(
                f"inception_v3 needs img_size >= {min_size}"
                + (" with aux_logits=True (use aux_logits=False for inputs down to 75)"
                   if self.aux_logits else "") + f", got {img_size!r}")
        self.Conv2d_1a_3x3 = BasicConv2d(in_chans, 32, 3, stride=2)
        self.Conv2d_2a_3x3 = BasicConv2d(32, 32, 3)
        self.Conv2d_2b_3x3 = BasicConv2d(32, 64, 3, padding=1)
        self.maxpool1 = nn.MaxPool2d(3, stride=2)
        self.Conv2d_3b_1x1 = BasicConv2d(64, 80, 1)
        self.Conv2d_4a_3x3 = BasicConv2d(80, 192, 3)
        self.maxpool2 = nn.MaxPool2d(3, stride=2)
        self.Mixed_5b = InceptionA(192, pool_features=32)
        self.Mixed_5c = InceptionA(256, pool_features=64)
        self.Mixed_5d = InceptionA(288, pool_features=64)
        self.Mixed_6a = InceptionB(288)
        self.Mixed_6b = InceptionC(768, channels_7x7=128)
        self.Mixed_6c = InceptionC(768, channels_7x7=160)
        self.Mixed_6d = InceptionC(768, channels_7x7=160)
        self.Mixed_6e = InceptionC(768, channels_7x7=192)
        self.AuxLogits = InceptionAux(768, self.num_classes) if self.aux_logits else None
        self.Mixed_7a = InceptionD(768)
        self.Mixed_7b = InceptionE(1280)
        self.Mixed_7c = InceptionE(2048)
        self.num_features = 2048
        self.drop = nn.Dropout(check_prob("drop_rate", drop_rate))
        self.classifier = nn.Linear(2048, self.num_classes)
        for m in self.modules():
            if isinstance(m, (nn.Conv2d, nn.Linear)):
                _trunc_normal_(m.weight, std=0.1)
            elif isinstance(m, nn.BatchNorm2d):
                nn.init.constant_(m.weight, 1)
                nn.init.constant_(m.bias, 0)
        self.default_cfg = {
            "input_size": (in_chans, h, w),
            "num_classes": num_classes,
            "classes": ("crystals", "precipitate", "clear", "other") if num_classes == 4 else None,
            "preprocess": {"resize": [h, w], "scale": "0-1 (RGB / 255)"},
            "paper": "000 (C4 pipeline; MARCO uses Inception-v3)",
        }

    def _stem_to_6e(self, x: torch.Tensor) -> torch.Tensor:
        self._check_input(x)
        for name in ("Conv2d_1a_3x3", "Conv2d_2a_3x3", "Conv2d_2b_3x3", "maxpool1",
                     "Conv2d_3b_1x1", "Conv2d_4a_3x3", "maxpool2", "Mixed_5b", "Mixed_5c",
                     "Mixed_5d", "Mixed_6a", "Mixed_6b", "Mixed_6c", "Mixed_6d", "Mixed_6e"):
            x = getattr(self, name)(x)
        return x

    def _7a_to_7c(self, x: torch.Tensor) -> torch.Tensor:
        return self.Mixed_7c(self.Mixed_7b(self.Mixed_7a(x)))

    def forward_features(self, x: torch.Tensor) -> torch.Tensor:
        """(N, 2048, h, w) Mixed_7c maps (8 x 8 for 299 x 299 inputs)."""
        return self._7a_to_7c(self._stem_to_6e(x))

    def forward_head(self, x: torch.Tensor, *, pre_logits: bool = False) -> torch.Tensor:
        x = torch.flatten(F.adaptive_avg_pool2d(x, 1), 1)
        return x if pre_logits else self.classifier(self.drop(x))

    def forward_with_aux(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor | None]:
        """``(logits, aux_logits)``; ``aux_logits`` is None when the model has no aux head."""
        x6 = self._stem_to_6e(x)
        aux = self.AuxLogits(x6) if self.AuxLogits is not None else None
        return self.forward_head(self._7a_to_7c(x6)), aux

    def reset_classifier(self, num_classes: int) -> None:
        super().reset_classifier(num_classes)
        if self.AuxLogits is not None:
            self.AuxLogits.fc = nn.Linear(768, self.num_classes)


@register_model
def inception_v3(*, num_classes: int = 4, in_chans: int = 3, img_size=299,
                 aux_logits: bool = True, drop_rate: float = 0.5) -> InceptionV3:
    """Inception-v3 for drop images (MARCO's architecture): 3 x 299 x 299, 4 classes."""
    return InceptionV3(num_classes=num_classes, in_chans=in_chans, img_size=img_size,
                       aux_logits=aux_logits, drop_rate=drop_rate)
