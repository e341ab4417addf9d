"""The teacher: torchvision's ResNet (Bottleneck blocks), adapted to 32x32 images.

``stem="cifar"`` swaps the 7x7/2 convolution and the max-pool for one 3x3/1 convolution,
the usual CIFAR adaptation (He et al. 2016, section 4.2): the first stage then sees
32x32 maps instead of 8x8. ``stem="imagenet"`` keeps torchvision's stock ResNet-50,
which is what the seed's 88.71% teacher amounts to on 32x32 inputs. ``width`` scales
every stage (64 = ResNet-50) so the demo can train a small teacher through the same code.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch.nn as nn
from torchvision.models.resnet import Bottleneck
from torchvision.models.resnet import ResNet as TorchvisionResNet


class ResNet(TorchvisionResNet):
    def __init__(
        self, num_classes: int, layers: Sequence[int] = (3, 4, 6, 3), width: int = 64, stem: str = "cifar"
    ) -> None:
        super().__init__(Bottleneck, list(layers), num_classes=num_classes)
        if width != 64:  # rebuild the stages with scaled widths, torchvision's own _make_layer
            self.inplanes = width
            self.conv1 = nn.Conv2d(3, width, kernel_size=7, stride=2, padding=3, bias=False)
            self.bn1 = nn.BatchNorm2d(width)
            for i, blocks in enumerate(layers):
                stage = self._make_layer(Bottleneck, width * 2**i, blocks, stride=1 if i == 0 else 2)
                setattr(self, f"layer{i + 1}", stage)
            self.fc = nn.Linear(width * 8 * Bottleneck.expansion, num_classes)
        if stem == "cifar":
            self.conv1 = nn.Conv2d(3, width, kernel_size=3, stride=1, padding=1, bias=False)
            self.maxpool = nn.Identity()
        elif stem != "imagenet":
            raise ValueError(f"stem must be 'cifar' or 'imagenet', got {stem!r}")
        for m in self.modules():  # torchvision's initialisation, also for the replaced modules
            if isinstance(m, nn.Conv2d):
                nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu")
            elif isinstance(m, nn.BatchNorm2d):
                nn.init.ones_(m.weight)
                nn.init.zeros_(m.bias)
