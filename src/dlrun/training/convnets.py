"""Deeper convolutional families: VGG- and AlexNet-style feature stacks (variants of model=cnn,
whose classifier head models.build_cnn adds) and the CIFAR ResNets of He et al. (model=resnet).

Sizes are worked out from the input shape (C, H, W), so each family runs on 8x8 digits, 28x28
MNIST and 32x32 CIFAR alike, gray or colour.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import torch
import torch.nn.functional as F
from torch import nn

from dlrun.training.activations import make_activation

Act = Callable[[], nn.Module]  # makes a fresh activation module

# AlexNet's five convolutions at half its widths (64, 192, 384, 256, 256), each (output
# channels, kernel); "pool" is its overlapping 3x3, stride-2 max-pooling.
ALEXNET = ((32, 5), "pool", (96, 5), "pool", (192, 3), (128, 3), (128, 3), "pool")


def vgg_features(input_shape: Sequence[int], channels: Sequence[int], convs_per_stage: int, act: Act,
                 batchnorm: bool, pool_first: bool = False) -> tuple[list[nn.Module], tuple[int, int, int]]:  # fmt: skip
    """VGG's pattern: per stage, `convs_per_stage` 3x3 convolutions of the stage's width, then a
    2x2 max-pool (before the stage's last activation with `pool_first`, as models._conv_block says).
    Returns the layers and the shape (C, H, W) they output."""
    c, h, w = input_shape
    if min(h, w) < 2 ** len(channels):
        raise ValueError(f"model.channels has {len(channels)} stages, each halving the image, too many for {h}x{w} images")
    layers: list[nn.Module] = []
    for width in channels:
        for _ in range(convs_per_stage):
            layers.append(nn.Conv2d(c, width, 3, padding=1))
            if batchnorm:
                layers.append(nn.BatchNorm2d(width))
            layers.append(act())
            c = width
        layers.insert(len(layers) - 1 if pool_first else len(layers), nn.MaxPool2d(2))
        h, w = h // 2, w // 2
    return layers, (c, h, w)


def alexnet_features(input_shape: Sequence[int], act: Act, batchnorm: bool) -> tuple[list[nn.Module], tuple[int, int, int]]:
    """AlexNet's shape scaled from 224 px to 28-32 px: a large 5x5 kernel first (its 11x11 at
    stride 4 would leave a 32 px image 7 px wide), a second 5x5, then three 3x3 convolutions, with
    its overlapping max-pooling. Each pool is padded, so it rounds up: 28 -> 14 -> 7 -> 4 px,
    32 -> 16 -> 8 -> 4, and even 8x8 digits keep a pixel."""
    c, h, w = input_shape
    layers: list[nn.Module] = []
    for entry in ALEXNET:
        if entry == "pool":
            layers.append(nn.MaxPool2d(3, stride=2, padding=1))
            h, w = (h + 1) // 2, (w + 1) // 2
            continue
        width, kernel = entry
        layers.append(nn.Conv2d(c, width, kernel, padding=kernel // 2))
        if batchnorm:
            layers.append(nn.BatchNorm2d(width))
        layers.append(act())
        c = width
    return layers, (c, h, w)


def he_init(model: nn.Module) -> nn.Module:
    """He et al.'s initialization (normal, gain sqrt(2)) for every conv and Linear layer, zero biases.

    PyTorch's default (variance 1/(3 fan_in)) keeps about a sixth of the signal's variance per
    ReLU layer, which a plain stack of eight layers (AlexNet's, VGG's) barely recovers from in the
    first epochs.
    """
    for m in model.modules():
        if isinstance(m, nn.Conv2d):
            nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu")
        elif isinstance(m, nn.Linear):
            nn.init.kaiming_normal_(m.weight, nonlinearity="relu")
        if isinstance(m, (nn.Conv2d, nn.Linear)) and m.bias is not None:
            nn.init.zeros_(m.bias)
    return model


class BasicBlock(nn.Module):
    """Two 3x3 convolutions with batch norm, added to the input. Where the block halves the image
    and widens the channels, the shortcut subsamples and pads the new channels with zeros (He et
    al.'s option A for CIFAR: no parameters, so the depths have the paper's parameter counts)."""

    def __init__(self, c_in: int, c_out: int, stride: int, act: Act):
        super().__init__()
        self.conv1 = nn.Conv2d(c_in, c_out, 3, stride=stride, padding=1, bias=False)
        self.bn1 = nn.BatchNorm2d(c_out)
        self.act1 = act()
        self.conv2 = nn.Conv2d(c_out, c_out, 3, padding=1, bias=False)
        self.bn2 = nn.BatchNorm2d(c_out)
        self.act2 = act()
        self.stride = stride
        self.extra_channels = c_out - c_in

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.act1(self.bn1(self.conv1(x)))  # (batch, c_out, ceil(H / stride), ceil(W / stride))
        out = self.bn2(self.conv2(out))
        shortcut = x[:, :, :: self.stride, :: self.stride]  # (batch, c_in, ceil(H / stride), ceil(W / stride))
        if self.extra_channels:
            shortcut = F.pad(shortcut, (0, 0, 0, 0, 0, self.extra_channels))  # (batch, c_out, ...): zeros appended
        return self.act2(out + shortcut)


class ResNet(nn.Module):
    """He et al.'s CIFAR ResNet: a 3x3 stem, three stages of n basic blocks at widths w, 2w, 4w
    (the second and third halving the image), global average pooling, one Linear: 6n + 2 layers."""

    def __init__(self, input_shape: Sequence[int], num_classes: int, *, depth: int, width: int, act: Act, dropout: float):
        super().__init__()
        if depth < 8 or (depth - 2) % 6:
            raise ValueError(f"model.depth={depth} must be 6n+2 with n >= 1: 8, 14, 20, 32, 44, 56, 110, ...")
        blocks_per_stage = (depth - 2) // 6
        c = input_shape[0]
        self.stem = nn.Sequential(nn.Conv2d(c, width, 3, padding=1, bias=False), nn.BatchNorm2d(width), act())
        blocks: list[nn.Module] = []
        c_in = width
        for stage, c_out in enumerate((width, 2 * width, 4 * width)):
            for i in range(blocks_per_stage):
                blocks.append(BasicBlock(c_in, c_out, 2 if stage > 0 and i == 0 else 1, act))
                c_in = c_out
        self.blocks = nn.Sequential(*blocks)
        self.drop = nn.Dropout(dropout) if dropout > 0 else nn.Identity()
        self.head = nn.Linear(c_in, num_classes)
        for m in self.modules():
            if isinstance(m, nn.Conv2d):  # He initialization, as the paper
                nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu")

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        features = self.blocks(self.stem(x))  # (batch, 4 * width, ceil(H / 4), ceil(W / 4))
        pooled = features.mean(dim=(2, 3))  # (batch, 4 * width)
        return self.head(self.drop(pooled))


def build_resnet(
    input_shape: Sequence[int],
    num_classes: int,
    *,
    depth: int = 20,
    width: int = 16,
    activation: str = "relu",
    negative_slope: float = 0.01,
    dropout: float = 0.0,
    batchnorm: bool = False,
) -> nn.Module:
    """ResNet-`depth` (8, 14, 20, 32, 44, 56, 110, ...). Batch norm is part of its blocks and always
    on, whatever `batchnorm` says; dropout, if any, comes before the last Linear layer."""
    act = lambda: make_activation(activation, negative_slope)  # noqa: E731
    return ResNet(input_shape, num_classes, depth=depth, width=width, act=act, dropout=dropout)
