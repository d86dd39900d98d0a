"""Datasets as tensors in memory: load once, keep on the device, batch by index.

Each loader returns uint8 or float images (N, C, H, W) and integer labels, and says which of the
user's files each split came from; `load_dataset` checks every split (counts, shapes, label range,
sizes) before any training, scales the images to [0, 1] floats on the device once, carves the
seeded validation split, and hands back a `Data` that knows its own shapes and class names. Every
problem with the data is one DataError naming the user's file or the config key to change. Heavy
imports (torchvision) happen inside the loader that needs them; the digits are read from
scikit-learn's file without importing scikit-learn.
"""

from __future__ import annotations

import gzip
import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, NamedTuple

import torch

from dlrun.errors import DataError
from dlrun.training.memory import memory_budget


@dataclass
class Split:
    x: torch.Tensor  # (N, C, H, W) float32 in [0, 1] (or standardized), on the device
    y: torch.Tensor  # (N,) int64 class indices, on the device

    def __len__(self) -> int:
        return len(self.y)


@dataclass
class Data:
    name: str
    train: Split
    val: Split | None  # None when dataset.val_fraction is 0
    test: Split
    classes: list[str]
    transform: dict[str, Any] = field(default_factory=dict)  # how a raw image becomes an input (summary.json's data.transform)
    notes: list[str] = field(default_factory=list)  # what the loader has to say (skipped files, a cache written)

    @property
    def input_shape(self) -> tuple[int, int, int]:
        return tuple(self.train.x.shape[1:])

    @property
    def num_classes(self) -> int:
        return len(self.classes)


@dataclass
class Source:
    """Where a split's images and labels came from, named as the user knows them (not a cache copy)."""

    images: str
    labels: str


# ---------------------------------------------------------------------------------------------
# Loaders: name -> function(root, download, test_fraction, split_seed, **options) -> Arrays (or the
# same as a plain 6-tuple). Images may be uint8 (0..255) or float (already in [0, 1]). `options` are
# the dataset node's keys that only that loader has, and `budget` (a MemoryBudget), for a loader that
# can refuse data too large before reading it.


class Arrays(NamedTuple):
    x_train: torch.Tensor
    y_train: torch.Tensor
    x_test: torch.Tensor
    y_test: torch.Tensor
    classes: list[str]
    sources: dict[str, Source]  # "train", "test" (and "val" with `val`)
    val: tuple[torch.Tensor, torch.Tensor] | None = None  # a validation split of its own; None: carve one from train
    notes: tuple[str, ...] = ()


def digits_csv() -> Path | None:
    """The file scikit-learn keeps its 8x8 digits in, found without importing scikit-learn; None
    where it is not there.

    scikit-learn is the dependency that ships the digits, but importing it (scipy, pandas and its
    own modules) takes longer than reading the data: find_spec of the top-level package only
    reads where it is installed, and does not run it.
    """
    import importlib.util

    spec = importlib.util.find_spec("sklearn")
    for folder in (spec.submodule_search_locations or []) if spec is not None else []:
        path = Path(folder, "datasets", "data", "digits.csv.gz")
        if path.is_file():
            return path
    return None


def read_digits() -> tuple[torch.Tensor, torch.Tensor]:
    """scikit-learn's digits as load_digits() gives them: images (1797, 8, 8) float64 of pixel
    counts 0..16 and labels (1797,) int64, in the file's order.

    The file is a gzipped CSV, one image a row: 64 pixel counts, row by row, then the label; it is
    read as load_digits reads it. Where scikit-learn keeps it elsewhere, load_digits itself reads it.
    """
    path = digits_csv()
    if path is None:
        try:
            from sklearn.datasets import load_digits
        except ImportError as err:
            raise DataError("dataset=digits needs scikit-learn, which ships the digits: pip install scikit-learn") from err
        bunch = load_digits()
        return torch.from_numpy(bunch.images), torch.from_numpy(bunch.target).long()
    import numpy as np

    with gzip.open(path, "rt", encoding="utf-8") as f:
        rows = np.loadtxt(f, delimiter=",")  # (1797, 65) float64
    return torch.from_numpy(rows[:, :-1].reshape(-1, 8, 8)), torch.from_numpy(rows[:, -1].astype(int)).long()


def load_digits_arrays(root: Path, download: bool, test_fraction: float, split_seed: int, **_options):
    """scikit-learn's bundled 8x8 digits; the test split is carved here (seeded), as there is none."""
    images, y = read_digits()
    x = images.float().div_(16.0).unsqueeze(1)  # (1797, 1, 8, 8), 0..16 -> [0, 1]
    order = torch.randperm(len(y), generator=torch.Generator().manual_seed(split_seed))
    n_test = round(len(y) * test_fraction)
    check_carved("dataset.test_fraction", test_fraction, len(y), n_test, "the digits data set", "test", typical=0.2)
    test, train = order[:n_test], order[n_test:]
    source = Source("scikit-learn's digits images", "scikit-learn's digits labels")
    classes = [str(c) for c in range(10)]  # load_digits' target_names: the digits 0 to 9
    return x[train], y[train], x[test], y[test], classes, {"train": source, "test": source}


def brief(err: BaseException, limit: int = 160) -> str:
    """An exception's message on one line (torchvision's download errors span several)."""
    text = " ".join(str(err).split()) or type(err).__name__
    return text if len(text) <= limit else text[: limit - 3] + "..."


def load_elsewhere(module: str, function: str):
    """A loader that lives in another module, imported when it is chosen (torchvision's datasets, the user's own data)."""

    def load(*args, **options):
        import importlib

        return getattr(importlib.import_module(module), function)(*args, **options)

    return load


LOADERS = {
    "digits": load_digits_arrays,
    "mnist": load_elsewhere("dlrun.training.torchvision_data", "load_mnist"),
    "fashion_mnist": load_elsewhere("dlrun.training.torchvision_data", "load_fashion_mnist"),
    "cifar10": load_elsewhere("dlrun.training.torchvision_data", "load_cifar10_arrays"),
    "image_folder": load_elsewhere("dlrun.training.images", "load_image_folder"),
    "tensors": load_elsewhere("dlrun.training.owndata", "load_tensors"),
    "custom": load_elsewhere("dlrun.training.owndata", "load_custom"),
}


# ---------------------------------------------------------------------------------------------
# Checks: every split, before the first step.


def check_split(images: torch.Tensor, labels: torch.Tensor, num_classes: int, source: Source) -> None:
    """Images (N, C, H, W) of bytes or floats, N >= 1, and N integer labels in [0, num_classes)."""
    fix = "replace it with the original file"
    if images.dim() != 4 or 0 in images.shape[1:] or not (images.dtype == torch.uint8 or images.is_floating_point()):
        raise DataError(f"{source.images} holds {images.dtype} of shape {tuple(images.shape)}, not images (N, C, H, W); {fix}")
    if labels.dim() != 1 or labels.is_floating_point() or labels.is_complex() or labels.dtype == torch.bool:
        raise DataError(f"{source.labels} holds {labels.dtype} of shape {tuple(labels.shape)}, not class numbers (N,); {fix}")
    if len(images) == 0:
        raise DataError(f"{source.images} holds no images; {fix}")
    if len(labels) != len(images):
        if source.labels == source.images:
            raise DataError(f"{source.labels} holds {len(labels)} labels for {len(images)} images; {fix}")
        counts = f"{source.labels} holds {len(labels)} labels but {_beside(source.images, source.labels)} holds {len(images)} images"
        raise DataError(f"{counts}; replace them with the original files")
    low, high = int(labels.min()), int(labels.max())
    if low < 0 or high >= num_classes:
        bad = low if low < 0 else high
        raise DataError(f"{source.labels} holds label {bad}, outside the {num_classes} classes 0 to {num_classes - 1}; {fix}")


def _beside(path: str, other: str) -> str:
    """`path` as its bare name where it sits beside `other` (the message names that folder once)."""
    return Path(path).name if Path(path).parent == Path(other).parent else path


def check_carved(key: str, fraction: float, total: int, taken: int, what: str, part: str, typical: float = 0.0) -> None:
    """A split that `key` carves out of `total` images must leave training images, and must hold
    images itself (a validation split may be empty when its fraction is 0). `typical` is the value
    suggested where `key` is 0."""
    if taken == 0 and (fraction > 0 or part == "test"):
        lowest = f"at least {1 / total:.2g}"  # n * lowest >= 0.95, which rounds to one image or more
        hint = f"use {lowest}" if part == "test" else f"use 0 for no {part} images, or {lowest}"
        hint = f"use a value in (0, 1), e.g. {typical:g}" if fraction == 0 else hint
        raise DataError(f"{key}={fraction:g} leaves {what} with no {part} images ({total} images in all); {hint}")
    if taken == total:
        most = math.floor((total - 1) / total * 1000) / 1000  # rounded down: n * most still leaves an image
        raise DataError(f"{key}={fraction:g} leaves {what} with no training images ({total} images in all); use at most {most:g}")


def _to_float(images: torch.Tensor, device: torch.device) -> torch.Tensor:
    """Move to the device first (uint8 is a quarter of the bytes), then scale to [0, 1] in place."""
    x = images.to(device)
    return x.float().div_(255.0) if x.dtype == torch.uint8 else x.float()


def load_dataset(
    name: str,
    *,
    device: torch.device,
    root: str | Path = "data",
    download: bool = False,
    val_fraction: float = 0.1,
    test_fraction: float = 0.0,
    normalize: bool = False,
    split_seed: int = 0,
    max_memory_gb: float = 0.0,
    normalization: tuple[list[float], list[float]] | None = None,
    **options: Any,
) -> Data:
    """Load `name` onto `device` as float tensors, with a seeded validation split of the training set.

    Every split is checked first (counts, shapes, label range, sizes): bad data is a DataError
    before the first training step, never an exception after some epochs; so is data larger than
    the memory budget (see memory.py). `options` are the loader's own keys (dataset.image_size, ...).
    `normalization`, a finished run's (mean, std), standardizes instead of this training split's.
    """
    loader = "custom" if "_target_" in options else name  # the user's own data function, whatever they named it
    if loader not in LOADERS:
        raise DataError(f"unknown dataset {name!r}; choose one of: {', '.join(LOADERS)}")
    budget = memory_budget(device, max_memory_gb)
    loaded = Arrays(*LOADERS[loader](Path(root).expanduser(), download, test_fraction, split_seed, budget=budget, **options))
    x_train, y_train, x_test, y_test, classes, sources = loaded[:6]
    check_split(x_train, y_train, len(classes), sources["train"])
    parts = [("test", x_test, y_test)] + ([("val", *loaded.val)] if loaded.val is not None else [])
    for part, x, y in parts:
        check_split(x, y, len(classes), sources[part])
        if x.shape[1:] != x_train.shape[1:]:
            size = lambda x: " x ".join(map(str, x.shape[1:]))  # noqa: E731  C x H x W
            other, train = sources[part].images, _beside(sources["train"].images, sources[part].images)
            raise DataError(f"{other} holds {size(x)} images but {train} holds {size(x_train)}; replace them with the original files")
    budget.check((sum(len(x) for x in (x_train, *(x for _, x, _ in parts))), *x_train.shape[1:]), f"dataset={name}")
    if loaded.val is not None:  # the data has a validation split of its own
        train = Split(_to_float(x_train, device), y_train.long().to(device))
        val = Split(_to_float(loaded.val[0], device), loaded.val[1].long().to(device))
    else:
        order = torch.randperm(len(y_train), generator=torch.Generator().manual_seed(split_seed + 1))
        n_val = round(len(y_train) * val_fraction)
        check_carved("dataset.val_fraction", val_fraction, len(y_train), n_val, f"the {name} training set", "validation")
        val_idx, train_idx = order[:n_val], order[n_val:]
        train = Split(_to_float(x_train[train_idx], device), y_train[train_idx].long().to(device))
        val = Split(_to_float(x_train[val_idx], device), y_train[val_idx].long().to(device)) if n_val else None
    test = Split(_to_float(x_test, device), y_test.long().to(device))
    mean = std = None
    if normalization is not None:
        mean, std = (torch.tensor(v, dtype=torch.float32, device=device).view(1, -1, 1, 1) for v in normalization)
    elif normalize:  # standardize every split with the training set's per-channel statistics
        mean = train.x.mean(dim=(0, 2, 3), keepdim=True)
        std = train.x.std(dim=(0, 2, 3), keepdim=True).clamp_min(1e-6)
    if mean is not None:
        for split in (train, val, test):
            if split is not None:
                split.x.sub_(mean).div_(std)
    c, h, w = train.x.shape[1:]
    per_channel = lambda v: None if v is None else v.flatten().tolist()  # noqa: E731
    transform = {"size": [h, w], "channels": c, "resize": "bilinear", "dtype": str(x_train.dtype).removeprefix("torch."),
                 "divide": 255.0 if x_train.dtype == torch.uint8 else 1.0, "mean": per_channel(mean), "std": per_channel(std)}  # fmt: skip
    return Data(name=name, train=train, val=val, test=test, classes=classes, transform=transform, notes=list(loaded.notes))
