"""Models and data functions of a user's own, named by `_target_` in the tests (tests.own_models.X)."""

from __future__ import annotations

import math

import torch
from torch import nn


class Small(nn.Module):
    """A user's model: takes input_shape and num_classes, one key of its own, and dropout."""

    def __init__(self, input_shape, num_classes, width: int = 16, dropout: float = 0.0):
        super().__init__()
        self.net = nn.Sequential(nn.Flatten(), nn.Linear(math.prod(input_shape), width), nn.ReLU(), nn.Dropout(dropout),
                                 nn.Linear(width, num_classes))  # fmt: skip

    def forward(self, x):
        return self.net(x)


def small_factory(num_classes, width: int = 8):
    """A factory that takes no input_shape: a lazy first layer finds it on the first forward."""
    return nn.Sequential(nn.Flatten(), nn.LazyLinear(width), nn.ReLU(), nn.Linear(width, num_classes))


class NotAModule:
    def __init__(self, input_shape, num_classes):
        pass


class WrongOutput(nn.Module):
    def __init__(self, input_shape, num_classes):
        super().__init__()
        self.linear = nn.Linear(math.prod(input_shape), num_classes + 1)

    def forward(self, x):
        return self.linear(x.flatten(1))


class BrokenForward(nn.Module):
    def __init__(self, input_shape, num_classes):
        super().__init__()
        self.linear = nn.Linear(3, num_classes)

    def forward(self, x):
        return self.linear(x)  # (B, C, H, W) into a Linear of 3 inputs


def blobs(n: int = 120, size: int = 8, seed: int = 0):
    """A data function: tensors of n images whose brightness says the class (3 classes), named."""
    g = torch.Generator().manual_seed(seed)
    y = torch.randint(0, 3, (n,), generator=g)
    x = (y.view(n, 1, 1, 1).float() / 2 + 0.1 * torch.rand(n, 1, size, size, generator=g)).clamp(0, 1)
    return {"train": (x, y), "classes": ["dark", "grey", "light"]}


class BlobDataset(torch.utils.data.Dataset):
    def __init__(self, n: int):
        self.x, self.y = blobs(n)["train"]

    def __len__(self):
        return len(self.y)

    def __getitem__(self, i):
        return self.x[i], int(self.y[i])


def blob_datasets(n: int = 90):
    """A data function returning torch Datasets, with a test split of its own."""
    return {"train": BlobDataset(n), "test": BlobDataset(n // 3)}
