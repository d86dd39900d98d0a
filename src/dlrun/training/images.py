"""Image files: the image_folder data set, and the one conversion of a file into pixels.

`read_image` turns one file (png, jpg, ...; any size, colour or grey) into a (channels, size, size)
uint8 tensor. The image_folder loader decodes every file with it, once: the result is cached as a
uint8 tensor file in dlrun's data cache, keyed by the folder, the size, the channels and every file's
name, size and modification time, so the next run with the same files starts at once. `dlrun
predict` converts its files with the same function, so an image is seen as training saw it.
"""

from __future__ import annotations

import hashlib
import json
import os
import sys
import time
from pathlib import Path

import torch

from dlrun.config import data_cache_dir
from dlrun.errors import DataError
from dlrun.training.data import Arrays, Source, brief, check_carved
from dlrun.training.memory import MemoryBudget

IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".bmp", ".gif", ".ppm", ".pgm", ".tif", ".tiff", ".webp")  # torchvision's, and .gif
PARTS = ("train", "val", "test")  # optional subfolders of the root, each laid out by class
CACHE_VERSION = 1
SHOWN = 3  # corrupt files named in a message; the rest are counted


def read_image(path: Path, size: int | tuple[int, int], channels: int) -> torch.Tensor:
    """(channels, H, W) uint8 pixels of the image file `path`, resized (bilinear) to `size` (an int: square).

    Colour becomes grey as Pillow's "L" mode does (ITU-R 601 luma); an alpha channel is dropped.
    OSError or ValueError where the file is not a readable image.
    """
    from PIL import Image

    h, w = (size, size) if isinstance(size, int) else size
    with Image.open(path) as image:
        image = image.convert("L" if channels == 1 else "RGB")
        if image.size != (w, h):
            image = image.resize((w, h), Image.Resampling.BILINEAR)
        pixels = torch.frombuffer(bytearray(image.tobytes()), dtype=torch.uint8)
    return pixels.view(h, w, channels).permute(2, 0, 1).contiguous()  # (H, W, C) -> (C, H, W)


def image_files(folder: Path) -> list[Path]:
    """The image files under `folder` (recursively, by suffix), sorted; hidden files and folders skipped."""
    found = []
    for path in folder.rglob("*"):
        parts = path.relative_to(folder).parts
        if path.suffix.lower() in IMAGE_SUFFIXES and not any(p.startswith(".") for p in parts) and path.is_file():
            found.append(path)
    return sorted(found)


def class_folders(folder: Path) -> list[str]:
    return sorted(p.name for p in folder.iterdir() if p.is_dir() and not p.name.startswith("."))


def scan(root: Path) -> tuple[list[str], dict[str, list[tuple[Path, int]]]]:
    """Class names and, per part (train, and val/test where the root has those folders), (file, label)."""
    if not root.is_dir():
        raise DataError(f"dataset.root={root}: no such folder; point it at a folder holding one folder of images per class")
    split_layout = (root / "train").is_dir()
    base = root / "train" if split_layout else root
    classes = class_folders(base)
    if not classes:
        raise DataError(f"{base} holds no class folders; put each class's images in a folder of its own (cats/, dogs/, ...)")
    parts: dict[str, list[tuple[Path, int]]] = {}
    for part in PARTS if split_layout else ("train",):
        folder = root / part if split_layout else root
        if not folder.is_dir():
            continue
        strays = sorted(set(class_folders(folder)) - set(classes))
        if strays:
            raise DataError(f"{folder / strays[0]} is a class that {base} does not have; every part needs the same class folders")
        parts[part] = []
        for label, name in enumerate(classes):
            files = image_files(folder / name) if (folder / name).is_dir() else []
            if not files and part == "train":
                raise DataError(f"{folder / name} holds no images ({', '.join(IMAGE_SUFFIXES[:3])}, ...)")
            parts[part] += [(f, label) for f in files]
    return classes, parts


def cache_path(root: Path, parts: dict, size: int, channels: int) -> Path:
    """dlrun's cache file for these files at this size: a new key whenever a file is added, removed or changed."""
    listing = []
    for part, files in parts.items():
        for path, label in files:
            stat = path.stat()
            listing.append([part, str(path.relative_to(root)), label, stat.st_size, stat.st_mtime_ns])
    key = json.dumps([CACHE_VERSION, str(root.resolve()), size, channels, listing])
    return data_cache_dir() / "image_folder" / f"{hashlib.sha1(key.encode()).hexdigest()[:20]}.pt"


def decode(root: Path, parts: dict, size: int, channels: int, corrupt: str) -> dict:
    """Every file read with read_image, with a progress bar on a terminal; corrupt ones skipped
    (and listed) or, with corrupt=refuse, the first one refused."""
    from PIL import Image
    from rich.console import Console
    from rich.progress import Progress

    total = sum(len(files) for files in parts.values())
    decoded: dict = {"parts": {}, "skipped": []}
    with Progress(console=Console(stderr=True), transient=True, disable=not sys.stderr.isatty()) as bar:
        task = bar.add_task(f"decoding {total} images", total=total)
        for part, files in parts.items():
            images, labels = [], []
            for path, label in files:
                try:
                    images.append(read_image(path, size, channels))
                    labels.append(label)
                except (OSError, ValueError, SyntaxError, Image.DecompressionBombError) as err:  # Pillow's ways of saying "not an image"
                    why = brief(err, 80).replace(f" '{path}'", "")  # Pillow names the file, which the message does already
                    if corrupt == "refuse":
                        raise DataError(f"{path} is not a readable image ({why}); remove it, or set dataset.corrupt=skip") from err
                    decoded["skipped"].append([str(path.relative_to(root)), why])
                bar.advance(task)
            x = torch.stack(images) if images else torch.empty((0, channels, size, size), dtype=torch.uint8)
            decoded["parts"][part] = {"x": x, "y": torch.tensor(labels, dtype=torch.int64)}
    return decoded


def read_cache(path: Path) -> dict | None:
    try:
        cached = torch.load(path, map_location="cpu", weights_only=True)
    except Exception:  # noqa: BLE001  missing, truncated or foreign: decode again
        return None
    return cached if isinstance(cached, dict) and cached.get("version") == CACHE_VERSION else None


def write_cache(path: Path, decoded: dict) -> str:
    """Save the decoded images through a temporary file; a note saying where, or why not."""
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        torch.save({"version": CACHE_VERSION, **decoded}, tmp)
        os.replace(tmp, path)
        return f"cached the decoded images in {path}"
    except OSError as err:
        tmp.unlink(missing_ok=True)
        return f"could not cache the decoded images in {path} ({err.strerror or brief(err)}); the next run decodes them again"


def load_image_folder(root: Path, download: bool, test_fraction: float, split_seed: int, *, image_size: int, channels: int,
                      corrupt: str = "skip", budget: MemoryBudget | None = None) -> Arrays:  # fmt: skip
    """The images under `root` (class folders, or train/ val/ test/ of class folders) as uint8 tensors.

    Without test/, a seeded share `test_fraction` of the images is held out for the test.
    """
    classes, parts = scan(root)
    count = sum(len(files) for files in parts.values())
    if budget is not None:
        hint = "use a smaller dataset.image_size, or raise dataset.max_memory_gb where the memory is there"
        budget.check((count, channels, image_size, image_size), f"dataset.root={root}", hint)
    path = cache_path(root, parts, image_size, channels)
    notes = []
    decoded = read_cache(path)
    if decoded is None:
        started = time.perf_counter()
        decoded = decode(root, parts, image_size, channels, corrupt)
        notes.append(f"decoded {count} images from {root} in {time.perf_counter() - started:.1f} s; " + write_cache(path, decoded))
    skipped = decoded["skipped"]
    if skipped:
        if corrupt == "refuse":
            name, why = skipped[0]
            raise DataError(f"{root / name} is not a readable image ({why}); remove it, or set dataset.corrupt=skip")
        named = ", ".join(f"{name} ({why})" for name, why in skipped[:SHOWN])
        more = f" and {len(skipped) - SHOWN} more" if len(skipped) > SHOWN else ""
        notes.append(f"skipped {len(skipped)} corrupt image{'s' if len(skipped) > 1 else ''} of {count} in {root}: "
                     f"{named}{more} (dataset.corrupt=refuse stops instead)")  # fmt: skip
    got = decoded["parts"]
    where = {part: str(root / part) if (root / "train").is_dir() else str(root) for part in PARTS}
    sources = {part: Source(where[part], where[part]) for part in PARTS}
    x_train, y_train = got["train"]["x"], got["train"]["y"]
    if "test" in got:
        x_test, y_test = got["test"]["x"], got["test"]["y"]
    else:  # a seeded test split, as for the digits
        order = torch.randperm(len(y_train), generator=torch.Generator().manual_seed(split_seed))
        n_test = round(len(y_train) * test_fraction)
        check_carved("dataset.test_fraction", test_fraction, len(y_train), n_test, f"the images in {root}", "test", typical=0.2)
        test, train = order[:n_test], order[n_test:]
        x_test, y_test, x_train, y_train = x_train[test], y_train[test], x_train[train], y_train[train]
    val = (got["val"]["x"], got["val"]["y"]) if "val" in got else None
    return Arrays(x_train, y_train, x_test, y_test, classes, sources, val=val, notes=tuple(notes))
