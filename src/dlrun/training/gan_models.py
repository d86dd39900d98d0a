"""DCGAN's generator and discriminator (Radford et al. 2016), sized to the dataset's images.

The generator turns a latent vector into an image: a transposed convolution to a small square
(7x7 for 28 px, 4x4 for 32 px), then `upsamplings` transposed convolutions that each double the
side and halve the channels, batch norm and ReLU between them, tanh at the end (images in
[-1, 1]). The discriminator mirrors it: strided convolutions with leaky ReLU (batch norm but on
the first), down to the small square, then one convolution to a single logit per image.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import nn


def upsamplings(height: int, width: int) -> int:
    """How many times both sides are halved to reach the starting square: as many as 3 (DCGAN's
    depth) while the square keeps at least 3 pixels a side. 28 -> 2 (7x7), 32 -> 3 (4x4), 8 -> 1."""
    for k in (3, 2, 1):
        step = 2**k
        if height % step == 0 and width % step == 0 and min(height, width) // step >= 3:
            return k
    raise ValueError(f"task=gan needs images whose sides halve to at least 3 pixels (e.g. 8, 12, 28, 32), got {height}x{width}")


class Generator(nn.Module):
    def __init__(self, image_shape: Sequence[int], latent_dim: int, width: int):
        super().__init__()
        c, h, w = image_shape
        k = upsamplings(h, w)
        channels = [width * 2 ** (k - 1 - i) for i in range(k)]  # e.g. [128, 64] for 28 px at width 64
        layers: list[nn.Module] = [
            nn.ConvTranspose2d(latent_dim, channels[0], (h >> k, w >> k), bias=False),  # (batch, channels[0], h / 2^k, w / 2^k)
            nn.BatchNorm2d(channels[0]),
            nn.ReLU(),
        ]
        for c_in, c_out in zip(channels, channels[1:], strict=False):
            layers += [nn.ConvTranspose2d(c_in, c_out, 4, stride=2, padding=1, bias=False), nn.BatchNorm2d(c_out), nn.ReLU()]
        layers += [nn.ConvTranspose2d(channels[-1], c, 4, stride=2, padding=1), nn.Tanh()]  # the last doubling: (batch, C, H, W)
        self.net = nn.Sequential(*layers)
        self.latent_dim = latent_dim

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        return self.net(z.view(len(z), self.latent_dim, 1, 1))  # (batch, latent) -> (batch, C, H, W) in [-1, 1]


class Discriminator(nn.Module):
    def __init__(self, image_shape: Sequence[int], width: int):
        super().__init__()
        c, h, w = image_shape
        k = upsamplings(h, w)
        layers: list[nn.Module] = []
        c_in = c
        for i in range(k):
            c_out = width * 2**i
            layers.append(nn.Conv2d(c_in, c_out, 4, stride=2, padding=1, bias=i == 0))  # halves H and W
            if i > 0:
                layers.append(nn.BatchNorm2d(c_out))
            layers.append(nn.LeakyReLU(0.2))
            c_in = c_out
        layers.append(nn.Conv2d(c_in, 1, (h >> k, w >> k)))  # the small square -> one logit
        self.net = nn.Sequential(*layers)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net(x).flatten()  # (batch,) logits: high for real


def dcgan_init(model: nn.Module) -> nn.Module:
    """DCGAN's initialization: conv weights N(0, 0.02), batch norm scales N(1, 0.02), biases 0."""
    for m in model.modules():
        if isinstance(m, (nn.Conv2d, nn.ConvTranspose2d)):
            nn.init.normal_(m.weight, 0.0, 0.02)
            if m.bias is not None:
                nn.init.zeros_(m.bias)
        elif isinstance(m, nn.BatchNorm2d):
            nn.init.normal_(m.weight, 1.0, 0.02)
            nn.init.zeros_(m.bias)
    return model


def build_gan(image_shape: Sequence[int], *, latent_dim: int = 100, width: int = 64) -> tuple[Generator, Discriminator]:
    return dcgan_init(Generator(image_shape, latent_dim, width)), dcgan_init(Discriminator(image_shape, width))
