"""ResNeXt-101 32x8d building blocks shared by the base networks that use it (MiDaS v2.1, LeReS; SPEC 6.1, 7).

Both checkpoints hold torchvision's ResNet v1.5 bottleneck stacks; only where the stem and the four stages hang
in the module tree differs (MiDaS: ``pretrained.layer1 = [conv1, bn1, relu, maxpool, layer1]``; LeReS:
``encoder.{conv1, bn1, layer1..layer4}``), so each model assembles these blocks under its own attribute paths.
"""

from __future__ import annotations

import jax
from flax import nnx

from hrjax.models.layers import BatchNorm2d, Conv2d, relu, run_sequential

GROUPS = 32
WIDTH_PER_GROUP = 8
EXPANSION = 4
# (planes, blocks, stride) of layer1..layer4 of ResNeXt-101 (torchvision ``ResNet(Bottleneck, [3, 4, 23, 3])``)
STAGES = ((64, 3, 1), (128, 4, 2), (256, 23, 2), (512, 3, 2))
STEM_CHANNELS = 64


class Bottleneck(nnx.Module):
    """torchvision ResNet v1.5 bottleneck (stride on the 3x3 conv), grouped like ResNeXt 32x8d."""

    def __init__(self, in_ch: int, planes: int, stride: int = 1, downsample: bool = False):
        width = planes * WIDTH_PER_GROUP // 64 * GROUPS
        out = planes * EXPANSION
        self.conv1 = Conv2d(in_ch, width, 1, bias=False)
        self.bn1 = BatchNorm2d(width)
        self.conv2 = Conv2d(width, width, 3, stride=stride, padding=1, groups=GROUPS, bias=False)
        self.bn2 = BatchNorm2d(width)
        self.conv3 = Conv2d(width, out, 1, bias=False)
        self.bn3 = BatchNorm2d(out)
        self.downsample = (nnx.List([Conv2d(in_ch, out, 1, stride=stride, bias=False), BatchNorm2d(out)])
                           if downsample else None)

    def __call__(self, x: jax.Array) -> jax.Array:
        y = relu(self.bn1(self.conv1(x)))
        y = relu(self.bn2(self.conv2(y)))
        y = self.bn3(self.conv3(y))
        skip = run_sequential(self.downsample, x) if self.downsample is not None else x
        return relu(y + skip)


def res_layer(in_ch: int, planes: int, blocks: int, stride: int) -> nnx.List:
    """One stage (torchvision ``_make_layer``): the first block changes width/stride through its downsample."""
    layers = [Bottleneck(in_ch, planes, stride, downsample=True)]
    layers += [Bottleneck(planes * EXPANSION, planes) for _ in range(blocks - 1)]
    return nnx.List(layers)


def stages() -> list[nnx.List]:
    """layer1..layer4 of ResNeXt-101 32x8d, in order (input: the 64-channel stem output)."""
    out, in_ch = [], STEM_CHANNELS
    for planes, blocks, stride in STAGES:
        out.append(res_layer(in_ch, planes, blocks, stride))
        in_ch = planes * EXPANSION
    return out


def stem_conv() -> Conv2d:
    """``conv1``: 7x7 stride 2, 3 -> 64 channels, no bias (followed by bn1, ReLU and a 3x3/2 max pool)."""
    return Conv2d(3, STEM_CHANNELS, 7, stride=2, padding=3, bias=False)
