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
import hashlib
import math
import os
import shutil
import struct
import tarfile
import zlib
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, NamedTuple

import torch

from dlrun.config import data_cache_dir
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


IDX_FILES = ("train-images-idx3-ubyte", "train-labels-idx1-ubyte", "t10k-images-idx3-ubyte", "t10k-labels-idx1-ubyte")
IDX_NDIM = {name: 3 if "-images-" in name else 1 for name in IDX_FILES}  # images (N, H, W), labels (N,)
IDX_TYPES = {0x08: "unsigned byte", 0x09: "signed byte", 0x0B: "16-bit integer", 0x0C: "32-bit integer", 0x0D: "float32", 0x0E: "float64"}
IDX_ITEM_BYTES = {0x08: 1, 0x09: 1, 0x0B: 2, 0x0C: 4, 0x0D: 4, 0x0E: 8}


def check_idx(path: Path, ndim: int, shown: Path | None = None) -> tuple[int, ...]:
    """Check an MNIST-style IDX file and return its dims: (N, H, W) for images, (N,) for labels.

    The header is two zero bytes, the item type (MNIST files hold unsigned bytes, 0x08), the number
    of dims, then each dim as a big-endian uint32; the items follow, so the size is known. Errors
    name `shown`, the user's file, where `path` is a copy extracted from it.
    """
    shown = shown or path
    try:
        with open(path, "rb") as f:
            head = f.read(4)
            dims_bytes = f.read(4 * head[3]) if len(head) == 4 else b""
        actual = path.stat().st_size
    except OSError as err:
        raise DataError(f"cannot read {shown} ({err.strerror or brief(err)})") from err
    if len(head) < 4 or head[:2] != b"\0\0" or head[2] not in IDX_TYPES:
        raise DataError(f"{shown} is not an IDX file (bad header); replace it with the original")
    if len(dims_bytes) < 4 * head[3]:
        raise DataError(f"{shown} is truncated or corrupt: {actual} bytes, shorter than its header; replace it with the original")
    dims = struct.unpack(f">{head[3]}I", dims_bytes)
    if head[2] != 0x08:
        kind = IDX_TYPES[head[2]]
        raise DataError(f"{shown} holds {kind} items, not the unsigned bytes (IDX type 0x08) of MNIST; replace it with the original")
    if len(dims) != ndim:
        belongs = "images (N x H x W)" if ndim == 3 else "labels (N)"
        shape = " x ".join(map(str, dims))
        raise DataError(f"{shown} holds a {len(dims)}-D array ({shape}) where {belongs} belong; replace it with the original")
    expected = 4 + 4 * len(dims) + math.prod(dims) * IDX_ITEM_BYTES[head[2]]
    if actual != expected:
        raise DataError(f"{shown} is truncated or corrupt: {actual} bytes, its header says {expected}; replace it with the original")
    return dims


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


def _is_extraction_of(copy: Path, gz: Path) -> bool:
    """Whether `copy` is the whole of `gz` decompressed: the gzip trailer holds the CRC-32 and the
    length (mod 2**32) of the data, so a copy that is truncated, or made from other files, fails."""
    try:
        with open(gz, "rb") as f:
            f.seek(-8, os.SEEK_END)
            crc, length = struct.unpack("<II", f.read(8))
        if copy.stat().st_size % 2**32 != length:
            return False
        actual = 0
        with open(copy, "rb") as f:
            while chunk := f.read(1 << 20):
                actual = zlib.crc32(chunk, actual)
        return actual == crc
    except (OSError, struct.error):
        return False


def _extract_gz(raw: Path, target: Path) -> None:
    """Decompress the four .gz files of `raw` into `target`, each checked before it is used.

    A copy already there is used only if it is a whole extraction of its .gz file; anything else
    (truncated, or made from other files) is extracted again, through a temporary file.
    """
    with writing_cache():
        target.mkdir(parents=True, exist_ok=True)
    for name in IDX_FILES:
        src, out = raw / f"{name}.gz", target / name
        if _is_extraction_of(out, src):
            check_idx(out, IDX_NDIM[name], shown=src)
            continue
        tmp = target / f".{name}.{os.getpid()}.tmp"
        try:
            with writing_cache(), open(tmp, "wb") as dst:
                for chunk in _gz_chunks(src):  # a DataError naming src, which writing_cache lets through
                    dst.write(chunk)
            check_idx(tmp, IDX_NDIM[name], shown=src)
            with writing_cache():
                os.replace(tmp, out)
        finally:
            tmp.unlink(missing_ok=True)


def locate_idx_files(folder: str, root: Path) -> tuple[Path, dict[str, Path]] | None:
    """(a root that torchvision's MNIST-style class can read without a download, {IDX name: the
    user's file}), or None.

    Accepts root/<folder>/raw, root/raw or root itself, holding the extracted IDX files or the
    original .gz files. Every file's header is checked before use; .gz files are extracted once
    into a cache, so a read-only root works.
    """
    for raw in (root / folder / "raw", root / "raw", root):
        if all((raw / name).is_file() for name in IDX_FILES):
            for name in IDX_FILES:
                check_idx(raw / name, IDX_NDIM[name])
            found = root if raw == root / folder / "raw" else _cached_tree(folder, raw, extract=False)
            return found, {name: raw / name for name in IDX_FILES}
        if all((raw / f"{name}.gz").is_file() for name in IDX_FILES):
            return _cached_tree(folder, raw, extract=True), {name: raw / f"{name}.gz" for name in IDX_FILES}
    return None


def torchvision_idx_root(folder: str, root: Path) -> Path | None:
    """A root that torchvision's MNIST-style class can read without a download, or None."""
    found = locate_idx_files(folder, root)
    return found[0] if found else None


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


def folders_to_create(path: Path) -> list[Path]:
    """`path` and those of its parents that do not exist yet, deepest first (what a download may create)."""
    absent = []
    for folder in (path, *path.parents):
        if folder.exists():
            break
        absent.append(folder)
    return absent


def remove_if_empty(folders: list[Path]) -> None:
    """Remove the folders (deepest first) that a failed download created and left empty."""
    for folder in folders:
        try:
            folder.rmdir()
        except OSError:  # not empty, or already gone: leave it and the ones above it
            return


def load_mnist_like(cls_name: str, folder: str, dataset: str):
    def load(root: Path, download: bool, test_fraction: float, split_seed: int, **_options):
        import torchvision.datasets as tvd

        cls = getattr(tvd, cls_name)
        found = locate_idx_files(folder, root)
        if found is None and download:
            created = folders_to_create(root / folder / "raw")
            try:
                cls(str(root), train=True, download=True)
                cls(str(root), train=False, download=True)
            except Exception as err:  # network errors come in many types
                remove_if_empty(created)
                hint = _missing_hint(dataset, folder, root, offer_download=False)
                raise DataError(f"dataset={dataset}: download into {root} failed ({brief(err)}); {hint}") from err
            found = locate_idx_files(folder, root)
        if found is None:
            raise DataError(f"dataset={dataset}: no {folder} files under {root.resolve()}; {_missing_hint(dataset, folder, root)}")
        tree, files = found
        try:
            train, test = cls(str(tree), train=True), cls(str(tree), train=False)
        except Exception as err:  # the headers were checked above: what is left is torchvision's own
            where = files[IDX_FILES[0]].parent
            message = f"torchvision cannot read the files in {where} ({brief(err)}); replace them with the originals"
            raise DataError(f"dataset={dataset}: {message}") from err
        sources = {
            split: Source(str(files[f"{prefix}-images-idx3-ubyte"]), str(files[f"{prefix}-labels-idx1-ubyte"]))
            for split, prefix in (("train", "train"), ("test", "t10k"))
        }
        return train.data.unsqueeze(1), train.targets, test.data.unsqueeze(1), test.targets, list(train.classes), sources

    return load


def brief(err: BaseException, limit: int = 160) -> str:
    """An exception's message on one line (torchvision's download errors span several)."""
    text = " ".join(str(err).split()) or type(err).__name__
    return text if len(text) <= limit else text[: limit - 3] + "..."


def _missing_hint(dataset: str, folder: str, root: Path, offer_download: bool = True) -> str:
    files = ", ".join(f"{n}.gz" for n in IDX_FILES)
    download = "or add dataset.download=true where the network is reachable; " if offer_download else ""
    return (
        f"put {files} in {root.resolve() / folder / 'raw'} (or set dataset.root to the folder that holds {folder}/raw), "
        f"{download}dataset=digits needs no files"
    )


def _extract_cifar(archive: Path, base: Path, folder: str) -> None:
    """Extract `archive` into base/<folder> through a temporary folder, so a copy there is whole."""
    from torchvision.datasets.utils import extract_archive

    tmp = base / f".extract.{os.getpid()}.tmp"
    with writing_cache():
        base.mkdir(parents=True, exist_ok=True)
    try:
        try:
            extract_archive(str(archive), str(tmp))
        except (tarfile.TarError, EOFError, zlib.error, gzip.BadGzipFile) as err:
            raise DataError(f"{archive} is truncated or corrupt ({brief(err)}); replace it with the original") from err
        except OSError as err:
            if err.filename is None or not str(err.filename).startswith(str(tmp)):
                raise DataError(f"cannot read {archive} ({err.strerror or brief(err)})") from err
            raise cache_error(err) from err
        if not (tmp / folder).is_dir():
            raise DataError(f"{archive} holds no {folder}/ folder; replace it with the original CIFAR-10 archive")
        with writing_cache():
            try:
                os.replace(tmp / folder, base / folder)
            except OSError:
                if not (base / folder).is_dir():  # else a process beside this one extracted it first
                    raise
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


def load_cifar10_arrays(root: Path, download: bool, test_fraction: float, split_seed: int, **_options):
    import torchvision.datasets as tvd

    cls = tvd.CIFAR10
    archive = root / cls.filename
    base, where, extracted_now = root, root / cls.base_folder, False
    if not where.is_dir() and archive.is_file():  # a read-only root works: the archive is extracted into the cache
        base, where = data_cache_dir() / hashlib.sha1(str(root.resolve()).encode()).hexdigest()[:16], archive
        if not (base / cls.base_folder).is_dir():
            _extract_cifar(archive, base, cls.base_folder)
            extracted_now = True
    created = folders_to_create(root) if download else []
    try:
        train = cls(str(base), train=True, download=download)
        test = cls(str(base), train=False, download=download)
    except Exception as err:
        remove_if_empty(created)
        if where == archive and not extracted_now:  # the cache copy no longer matches: extract it again, once
            with writing_cache():
                shutil.rmtree(base / cls.base_folder)
            return load_cifar10_arrays(root, download, test_fraction, split_seed)
        places = f"put {cls.filename} or its extracted {cls.base_folder}/ in {root.resolve()}"
        if download:
            message = f"download into {root.resolve()} failed ({brief(err)}); {places} by hand"
        elif where.exists():
            damage = _cifar_damage(cls, base / cls.base_folder) or brief(err)
            message = f"{where} is incomplete or corrupt ({damage}); replace it with the original"
        else:
            message = f"no CIFAR-10 under {root.resolve()}; {places}, or add dataset.download=true where the network is reachable"
        raise DataError(f"dataset=cifar10: {message}; dataset=digits needs no files") from err
    as_tensor = lambda a: torch.from_numpy(a).permute(0, 3, 1, 2).contiguous()  # noqa: E731  (N, H, W, C) -> (N, C, H, W)
    sources = {
        "train": Source(f"{where} (training batches)", f"{where} (training batches)"),
        "test": Source(f"{where} (test batch)", f"{where} (test batch)"),
    }
    x_train, x_test = as_tensor(train.data), as_tensor(test.data)
    return x_train, torch.tensor(train.targets), x_test, torch.tensor(test.targets), list(train.classes), sources


def _cifar_damage(cls, folder: Path) -> str:
    """Which of CIFAR-10's files in `folder` are missing or fail their checksum, or '' if none."""
    from torchvision.datasets.utils import check_integrity

    bad = [name for name, md5 in [*cls.train_list, *cls.test_list] if not check_integrity(str(folder / name), md5)]
    return f"{', '.join(bad)} missing or not matching {'its' if len(bad) == 1 else 'their'} checksum" if bad else ""


def load_elsewhere(module: str, function: str):
    """A loader that lives in another module, imported when it is chosen (the user's own data)."""

    def load(*args, **options):
        import importlib

        return getattr(importlib.import_module(module), function)(*args, **options)

    return load


LOADERS = {
    "digits": load_digits_arrays,
    "mnist": load_mnist_like("MNIST", "MNIST", "mnist"),
    "fashion_mnist": load_mnist_like("FashionMNIST", "FashionMNIST", "fashion_mnist"),
    "cifar10": load_cifar10_arrays,
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
