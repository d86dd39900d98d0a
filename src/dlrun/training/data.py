"""Datasets as tensors in memory: load once, keep on the device, batch by index.

Each loader returns uint8 or float images (N, C, H, W) and int64 labels; `load_dataset` scales
them to [0, 1] floats on the device once, carves the seeded validation split, and hands back a
`Data` that knows its own shapes and class names. Heavy imports (torchvision, scikit-learn)
happen inside the loader that needs them.
"""

from __future__ import annotations

import gzip
import hashlib
import math
import os
import struct
import zlib
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import torch

from dlrun.config import data_cache_dir
from dlrun.errors import DataError


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

    @property
    def input_shape(self) -> tuple[int, int, int]:
        return tuple(self.train.x.shape[1:])

    @property
    def num_classes(self) -> int:
        return len(self.classes)


# ---------------------------------------------------------------------------------------------
# Loaders: name -> function(root, download) -> (train images, train labels, test images, test
# labels, class names). Images may be uint8 (0..255) or float (already in [0, 1]).


def load_digits_arrays(root: Path, download: bool, test_fraction: float, split_seed: int):
    """scikit-learn's bundled 8x8 digits; the test split is carved here (seeded), as there is none."""
    from sklearn.datasets import load_digits

    bunch = load_digits()
    x = torch.from_numpy(bunch.images).float().div_(16.0).unsqueeze(1)  # (1797, 1, 8, 8), 0..16 -> [0, 1]
    y = torch.from_numpy(bunch.target).long()
    order = torch.randperm(len(y), generator=torch.Generator().manual_seed(split_seed))
    n_test = round(len(y) * test_fraction)
    check_carved("dataset.test_fraction", test_fraction, len(y), n_test, "the digits data set", "test", typical=0.2)
    test, train = order[:n_test], order[n_test:]
    return x[train], y[train], x[test], y[test], [str(c) for c in bunch.target_names]


IDX_FILES = ("train-images-idx3-ubyte", "train-labels-idx1-ubyte", "t10k-images-idx3-ubyte", "t10k-labels-idx1-ubyte")


def check_idx(path: Path) -> None:
    """An IDX file's size must equal its header's: 4 bytes magic, 4 per dim, then the items."""
    with open(path, "rb") as f:
        head = f.read(4)
        if len(head) < 4 or head[:2] != b"\0\0":
            raise DataError(f"{path} is not an IDX file (bad header); replace it with the original")
        ndim = head[3]
        dims = struct.unpack(f">{ndim}I", f.read(4 * ndim))
    item_bytes = {0x08: 1, 0x09: 1, 0x0B: 2, 0x0C: 4, 0x0D: 4, 0x0E: 8}.get(head[2], 1)
    expected = 4 + 4 * ndim + math.prod(dims) * item_bytes
    actual = path.stat().st_size
    if actual != expected:
        raise DataError(f"{path} is truncated or corrupt: {actual} bytes, its header says {expected}; replace it with the original")


def cache_error(err: OSError) -> DataError:
    reason = err.strerror or brief(err)
    return DataError(f"cannot write the data cache {data_cache_dir()} ({reason}); set DLRUN_CACHE to a writable folder")


@contextmanager
def writing_cache() -> Iterator[None]:
    """Turn a failure to write the data cache into one line that says how to move it."""
    try:
        yield
    except OSError as err:
        raise cache_error(err) from err


def _gz_chunks(path: Path) -> Iterator[bytes]:
    """The decompressed bytes of `path`, in chunks; a DataError naming it if it cannot be read."""
    try:
        with gzip.open(path, "rb") as f:
            while chunk := f.read(1 << 20):
                yield chunk
    except (OSError, EOFError, zlib.error) as err:
        raise DataError(f"{path} is truncated or corrupt ({brief(err)}); replace it with the original") from err


def _extract_gz(raw: Path, target: Path) -> None:
    """Decompress the four .gz files of `raw` into `target` (atomically per file), checking each."""
    with writing_cache():
        target.mkdir(parents=True, exist_ok=True)
    for name in IDX_FILES:
        out = target / name
        if out.is_file():
            continue
        tmp = target / f".{name}.{os.getpid()}.tmp"
        try:
            with writing_cache(), open(tmp, "wb") as dst:
                for chunk in _gz_chunks(raw / f"{name}.gz"):  # a DataError naming the .gz file, which writing_cache lets through
                    dst.write(chunk)
            check_idx(tmp)
            with writing_cache():
                os.replace(tmp, out)
        finally:
            tmp.unlink(missing_ok=True)


def torchvision_idx_root(folder: str, root: Path) -> Path | None:
    """A root that torchvision's MNIST-style class can read without a download, or None.

    Accepts root/<folder>/raw, root/raw or root itself, holding the extracted IDX files or the
    original .gz files. Files are checked (sizes against their headers) before use; .gz files are
    extracted once into a cache, so a read-only root works.
    """
    for raw in (root / folder / "raw", root / "raw", root):
        if all((raw / name).is_file() for name in IDX_FILES):
            for name in IDX_FILES:
                check_idx(raw / name)
            return root if raw == root / folder / "raw" else _cached_tree(folder, raw, extract=False)
        if all((raw / f"{name}.gz").is_file() for name in IDX_FILES):
            return _cached_tree(folder, raw, extract=True)
    return None


def _cached_tree(folder: str, raw: Path, *, extract: bool) -> Path:
    """A cache folder laid out as torchvision expects (<cache>/<folder>/raw/) for the files in `raw`."""
    stamp = "|".join(f"{p.stat().st_size}:{p.stat().st_mtime_ns}" for p in sorted(raw.iterdir()) if p.name.startswith(("train-", "t10k-")))
    cache = data_cache_dir() / hashlib.sha1(f"{raw.resolve()}|{stamp}".encode()).hexdigest()[:16]
    target = cache / folder / "raw"
    if extract:
        _extract_gz(raw, target)
    elif not (target.is_symlink() and target.resolve() == raw.resolve()):  # absent, dangling or pointing elsewhere
        link = target.with_name(f".raw.{os.getpid()}.tmp")
        with writing_cache():
            target.parent.mkdir(parents=True, exist_ok=True)
            link.unlink(missing_ok=True)
            link.symlink_to(raw.resolve(), target_is_directory=True)
            os.replace(link, target)  # atomic: a process beside this one sees the old link or the new
    return cache


def load_mnist_like(cls_name: str, folder: str, dataset: str):
    def load(root: Path, download: bool, test_fraction: float, split_seed: int):
        import torchvision.datasets as tvd

        cls = getattr(tvd, cls_name)
        found = torchvision_idx_root(folder, root)
        if found is None and download:
            try:
                cls(str(root), train=True, download=True)
                cls(str(root), train=False, download=True)
            except Exception as err:  # network errors come in many types
                hint = _missing_hint(dataset, folder, root, offer_download=False)
                raise DataError(f"dataset={dataset}: download into {root} failed ({brief(err)}); {hint}") from err
            found = root
        if found is None:
            raise DataError(f"dataset={dataset}: no {folder} files under {root.resolve()}. {_missing_hint(dataset, folder, root)}")
        train, test = cls(str(found), train=True), cls(str(found), train=False)
        return train.data.unsqueeze(1), train.targets, test.data.unsqueeze(1), test.targets, list(train.classes)

    return load


def brief(err: BaseException, limit: int = 160) -> str:
    """An exception's message on one line (torchvision's download errors span several)."""
    text = " ".join(str(err).split()) or type(err).__name__
    return text if len(text) <= limit else text[: limit - 3] + "..."


def _missing_hint(dataset: str, folder: str, root: Path, offer_download: bool = True) -> str:
    files = ", ".join(f"{n}.gz" for n in IDX_FILES)
    download = "or add dataset.download=true where the network is reachable; " if offer_download else ""
    return (
        f"Put {files} in {root.resolve() / folder / 'raw'} (or set dataset.root to the folder that holds {folder}/raw), "
        f"{download}dataset=digits needs no files"
    )


def load_cifar10_arrays(root: Path, download: bool, test_fraction: float, split_seed: int):
    import torchvision.datasets as tvd
    from torchvision.datasets.utils import extract_archive

    base = root
    if not (root / tvd.CIFAR10.base_folder).is_dir() and (root / tvd.CIFAR10.filename).is_file():
        base = data_cache_dir() / hashlib.sha1(str(root.resolve()).encode()).hexdigest()[:16]
        if not (base / tvd.CIFAR10.base_folder).is_dir():
            with writing_cache():
                base.mkdir(parents=True, exist_ok=True)
            extract_archive(str(root / tvd.CIFAR10.filename), str(base))
    try:
        train = tvd.CIFAR10(str(base), train=True, download=download)
        test = tvd.CIFAR10(str(base), train=False, download=download)
    except Exception as err:
        raise DataError(
            f"dataset=cifar10: no usable CIFAR-10 under {root.resolve()} ({brief(err)}). Put "
            f"{tvd.CIFAR10.filename} or its extracted {tvd.CIFAR10.base_folder}/ there, or add "
            "dataset.download=true where the network is reachable; dataset=digits needs no files"
        ) from err
    as_tensor = lambda a: torch.from_numpy(a).permute(0, 3, 1, 2).contiguous()  # noqa: E731  (N, H, W, C) -> (N, C, H, W)
    return as_tensor(train.data), torch.tensor(train.targets), as_tensor(test.data), torch.tensor(test.targets), list(train.classes)


LOADERS = {
    "digits": load_digits_arrays,
    "mnist": load_mnist_like("MNIST", "MNIST", "mnist"),
    "fashion_mnist": load_mnist_like("FashionMNIST", "FashionMNIST", "fashion_mnist"),
    "cifar10": load_cifar10_arrays,
}


# ---------------------------------------------------------------------------------------------
# Checks: every split, before the first step.


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
    root: str | Path,
    device: torch.device,
    download: bool = False,
    val_fraction: float = 0.1,
    test_fraction: float = 0.0,
    normalize: bool = False,
    split_seed: int = 0,
) -> Data:
    """Load `name` onto `device` as float tensors, with a seeded validation split of the training set.

    A split left without images (a fraction too small or too large for the data) is a DataError
    naming the key to change, before the first training step.
    """
    if name not in LOADERS:
        raise DataError(f"unknown dataset {name!r}; choose one of: {', '.join(LOADERS)}")
    x_train, y_train, x_test, y_test, classes = LOADERS[name](Path(root).expanduser(), download, test_fraction, split_seed)
    order = torch.randperm(len(y_train), generator=torch.Generator().manual_seed(split_seed + 1))
    n_val = round(len(y_train) * val_fraction)
    check_carved("dataset.val_fraction", val_fraction, len(y_train), n_val, f"the {name} training set", "validation")
    val_idx, train_idx = order[:n_val], order[n_val:]
    train = Split(_to_float(x_train[train_idx], device), y_train[train_idx].long().to(device))
    val = Split(_to_float(x_train[val_idx], device), y_train[val_idx].long().to(device)) if n_val else None
    test = Split(_to_float(x_test, device), y_test.long().to(device))
    if normalize:  # standardize every split with the training set's per-channel statistics
        mean = train.x.mean(dim=(0, 2, 3), keepdim=True)
        std = train.x.std(dim=(0, 2, 3), keepdim=True).clamp_min(1e-6)
        for split in (train, val, test):
            if split is not None:
                split.x.sub_(mean).div_(std)
    return Data(name=name, train=train, val=val, test=test, classes=classes)
