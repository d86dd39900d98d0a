"""Data augmentation on the device, on whole training batches (augment=none|standard|digits).

An augmentation is a function `(x, generator) -> x` of a batch of images (batch, C, H, W), chosen
once per run. `augmented` wraps the run's training step with it, so every training batch is
transformed just before its step and evaluation never is. The random draws (a few numbers per
image) come from the run's seeded data generator, on the CPU, and only the images' arithmetic
runs on the device: a seed gives the same augmented batches on any device, and a resumed run
continues the same sequence, since that generator's state is in every last.pt. A run without
augmentation takes no draw and runs its step unwrapped, so its metrics stay as they were.
"""

from __future__ import annotations

import functools
import math
from collections.abc import Callable

import torch
import torch.nn.functional as F

from dlrun.training.steps import TrainStep

Augment = Callable[[torch.Tensor, torch.Generator], torch.Tensor]


def _darkest(x: torch.Tensor) -> torch.Tensor:
    """(1, C, 1, 1): each channel's lowest value in the batch, the fill for pixels shifted in; black
    (or MNIST's background) whether or not dataset.normalize has shifted the values."""
    return x.amin(dim=(0, 2, 3), keepdim=True)


def crop_and_flip(x: torch.Tensor, generator: torch.Generator, *, padding: int, flip: bool) -> torch.Tensor:
    """Pad by `padding` pixels, crop back to H x W at a random offset per image, and mirror half of
    the images left to right: the CIFAR recipe of He et al."""
    B, C, H, W = x.shape
    offsets = torch.randint(0, 2 * padding + 1, (2, B), generator=generator)  # (row|column offset, batch)
    mirror = torch.rand(B, generator=generator) < 0.5 if flip else None
    if padding:
        padded = _darkest(x).expand(B, C, H + 2 * padding, W + 2 * padding).clone()  # (batch, C, H + 2p, W + 2p)
        padded[:, :, padding : padding + H, padding : padding + W] = x
        offsets = offsets.to(x.device)
        rows = offsets[0, :, None] + torch.arange(H, device=x.device)  # (batch, H): the rows each image keeps
        cols = offsets[1, :, None] + torch.arange(W, device=x.device)  # (batch, W)
        batch = torch.arange(B, device=x.device)[:, None, None]
        x = padded[batch, :, rows[:, :, None], cols[:, None, :]]  # (batch, H, W, C)
        x = x.permute(0, 3, 1, 2).contiguous()  # (batch, C, H, W)
    if mirror is not None:
        x = torch.where(mirror.to(x.device)[:, None, None, None], x.flip(3), x)
    return x


def small_affine(x: torch.Tensor, generator: torch.Generator, *, degrees: float, translate: float, scale: float) -> torch.Tensor:
    """Rotate by up to `degrees`, scale by up to 1 +- `scale` and shift by up to `translate` of the
    image's size, independently per image, with bilinear resampling; no flips (a mirrored 2 is no 2)."""
    B = len(x)
    u = torch.rand(4, B, generator=generator).mul_(2).sub_(1).to(x.device, x.dtype)  # (angle|scale|dx|dy, batch) in [-1, 1)
    angle = u[0] * math.radians(degrees)
    zoom = 1 + u[1] * scale
    cos, sin = angle.cos() / zoom, angle.sin() / zoom
    shift = u[2:] * 2 * translate  # affine_grid's coordinates span 2 per image side
    theta = torch.stack([torch.stack([cos, -sin, shift[0]], 1), torch.stack([sin, cos, shift[1]], 1)], 1)  # (batch, 2, 3)
    grid = F.affine_grid(theta, list(x.shape), align_corners=False)  # (batch, H, W, 2): where each pixel samples from
    low = _darkest(x)
    return F.grid_sample(x - low, grid, mode="bilinear", padding_mode="zeros", align_corners=False) + low


AUGMENTS: dict[str, Callable[..., torch.Tensor]] = {"standard": crop_and_flip, "digits": small_affine}


def build_augment(name: str, **kwargs) -> Augment | None:
    """The augmentation `name` with its settings, or None for augment=none."""
    if name == "none":
        return None
    if name not in AUGMENTS:
        raise ValueError(f"unknown augment {name!r}; choose one of: none, {', '.join(AUGMENTS)}")
    return functools.partial(AUGMENTS[name], **kwargs)


def augmented(step: TrainStep, augment: Augment, generator: torch.Generator) -> TrainStep:
    """`step` applied to each batch after `augment`."""

    def step_on_augmented(x: torch.Tensor, y: torch.Tensor):
        return step(augment(x, generator), y)

    return step_on_augmented
