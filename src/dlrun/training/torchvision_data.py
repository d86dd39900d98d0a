"""MNIST, Fashion-MNIST and CIFAR-10 from the user's files, read by torchvision's own dataset classes.

The files are checked before torchvision reads them (an IDX file's header against its size, an
archive's checksums), so a damaged or misplaced file is one DataError naming it and what to do.
Compressed files in a folder dlrun may not write to are extracted into the data cache
(dlrun.config.data_cache_dir), whole or not at all. dlrun.training.data's LOADERS import this
module only when one of these datasets is chosen.
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
from pathlib import Path

import torch

from dlrun.config import data_cache_dir
from dlrun.errors import DataError
from dlrun.training.data import Source, brief

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


load_mnist = load_mnist_like("MNIST", "MNIST", "mnist")
load_fashion_mnist = load_mnist_like("FashionMNIST", "FashionMNIST", "fashion_mnist")
