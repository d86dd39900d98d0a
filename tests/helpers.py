"""Helpers shared by the tests: small settings, readers of run folders, and generated data sets."""

from __future__ import annotations

import contextlib
import gzip
import json
import os
import struct
import subprocess
from pathlib import Path
from typing import TYPE_CHECKING

import pytest

if TYPE_CHECKING:
    import torch

SHARED_DATA = Path(__file__).resolve().parents[2] / "shared" / "data"


def needs_shared_data(folder: str):
    """Marks a test that reads the real data set ../shared/data/<folder>: slow, and skipped with the
    reason where the folder is absent, so `pytest -m "not slow"` never touches it."""
    present = (SHARED_DATA / folder / "raw").is_dir()

    def mark(test):
        test = pytest.mark.skipif(not present, reason=f"the real data set is not in {SHARED_DATA / folder}")(test)
        return pytest.mark.slow(test)

    return mark


# Small and quick: a few epochs of digits, no live bar.
QUICK = ("trainer.epochs=2", "trainer.progress=off", "trainer.plots=false")


def read_summary(run_dir: Path) -> dict:
    return json.loads((run_dir / "summary.json").read_text())


def subprocess_env() -> dict[str, str]:
    """The environment for a child `dlrun`: no colours or bars, no user cache."""
    env = dict(os.environ)
    env.update({"NO_COLOR": "1", "TERM": "dumb", "COLUMNS": "120"})
    return env


def write_idx(path: Path, array: torch.Tensor, compress: bool) -> None:
    """An IDX file as in the MNIST distribution: magic (0, 0, ubyte, ndim), big-endian dims, bytes."""
    payload = bytes([0, 0, 0x08, array.dim()]) + struct.pack(f">{array.dim()}I", *array.shape) + array.numpy().tobytes()
    if compress:
        path = path.with_name(path.name + ".gz")
        payload = gzip.compress(payload)
    path.write_bytes(payload)


def make_mnist(root: Path, folder: str = "MNIST", n_train: int = 50, n_test: int = 20, compress: bool = True) -> Path:
    """A tiny MNIST-format data set under root/<folder>/raw: 12x12 images whose brightness encodes the label."""
    import torch

    raw = root / folder / "raw"
    raw.mkdir(parents=True)
    g = torch.Generator().manual_seed(0)
    for prefix, n in (("train", n_train), ("t10k", n_test)):
        labels = torch.randint(0, 10, (n,), generator=g, dtype=torch.uint8)
        images = (labels.view(n, 1, 1) * 25).expand(n, 12, 12).contiguous()
        write_idx(raw / f"{prefix}-images-idx3-ubyte", images, compress)
        write_idx(raw / f"{prefix}-labels-idx1-ubyte", labels, compress)
    return root


def train_epoch(model, optimizer, data, settings, generator, fast_path: str = "auto", warn=None) -> dict:
    """One epoch of `model` with the step a run would choose for it (chosen anew each call)."""
    from dlrun.training.steps import choose_step, train_one_epoch

    step, _ = choose_step(model, model, optimizer, settings, fast_path, warn or (lambda message: None))
    return train_one_epoch(step, model, data, settings, generator)


def read_idx(path: Path) -> torch.Tensor:
    """The array in an IDX file written by write_idx (compressed if its name ends in .gz)."""
    import torch

    data = path.read_bytes()
    data = gzip.decompress(data) if path.suffix == ".gz" else data
    dims = struct.unpack(f">{data[3]}I", data[4 : 4 + 4 * data[3]])
    return torch.frombuffer(bytearray(data[4 + 4 * data[3] :]), dtype=torch.uint8).view(*dims)


CIFAR10_CLASSES = ["airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse", "ship", "truck"]


def make_cifar10(
    root: Path, n_train: int = 20, n_test: int = 10, test_labels: list[int] | None = None, archive: bool = False, batches: int = 1
) -> dict:
    """A tiny CIFAR-10 in the layout of the real cifar-10-python.tar.gz: root/cifar-10-batches-py
    holding data_batch_1..`batches`, test_batch and batches.meta, pickles with the original keys
    (data: uint8 (N, 3072), each row the red, green then blue 32x32 planes row by row; labels;
    batch_label; filenames). Red encodes each pixel's row (8 * row), green its column (8 * column),
    and blue the image's label (25 * label), so the label is learnable and the layout checkable.
    test_labels, if given, may disagree with n_test. With archive=True the folder is packed into
    root/cifar-10-python.tar.gz, as downloaded, and removed.
    Returns the file lists with their md5 sums, to patch onto torchvision's CIFAR10 class
    (attributes train_list, test_list, meta) so it accepts them."""
    import hashlib
    import pickle
    import tarfile

    import torch

    folder = root / "cifar-10-batches-py"
    folder.mkdir(parents=True)
    g = torch.Generator().manual_seed(0)

    def write(name: str, entry: dict) -> list[str]:
        (folder / name).write_bytes(pickle.dumps(entry, protocol=2))
        return [name, hashlib.md5((folder / name).read_bytes()).hexdigest()]

    def batch(name: str, title: str, n: int, labels: list[int] | None) -> list[str]:
        labels = labels if labels is not None else torch.randint(0, 10, (n,), generator=g).tolist()
        images = torch.empty(n, 3, 32, 32, dtype=torch.uint8)
        images[:, 0] = (torch.arange(32) * 8).view(32, 1)  # red: the row
        images[:, 1] = (torch.arange(32) * 8).view(1, 32)  # green: the column
        images[:, 2] = (torch.tensor((labels * n)[:n]) * 25).clamp(0, 255).view(n, 1, 1)  # blue: the label, even where labels are not n
        entry = {"batch_label": title, "labels": labels, "data": images.view(n, 3 * 32 * 32).numpy(),
                 "filenames": [f"image_{i:05d}.png" for i in range(n)]}  # fmt: skip
        return write(name, entry)

    meta = write("batches.meta", {"num_cases_per_batch": n_train // batches, "label_names": CIFAR10_CLASSES, "num_vis": 3072})
    sizes = [n_train // batches + (i < n_train % batches) for i in range(batches)]
    train_list = [batch(f"data_batch_{i + 1}", f"training batch {i + 1} of {batches}", size, None) for i, size in enumerate(sizes)]
    test_list = [batch("test_batch", "testing batch 1 of 1", n_test, test_labels)]
    if archive:
        with tarfile.open(root / "cifar-10-python.tar.gz", "w:gz") as tar:
            tar.add(folder, arcname=folder.name)
        for path in folder.iterdir():
            path.unlink()
        folder.rmdir()
    return {"train_list": train_list, "test_list": test_list, "meta": {"filename": meta[0], "key": "label_names", "md5": meta[1]}}


@contextlib.contextmanager
def tmpfs(folder: Path, size: str):
    """A real filesystem of `size` (a tmpfs, e.g. "3m") mounted at `folder`, to fill up; the test is
    skipped, saying why, where mounting is not allowed (CI runs as root, where it is)."""
    folder.mkdir(parents=True, exist_ok=True)
    done = subprocess.run(["mount", "-t", "tmpfs", "-o", f"size={size}", "tmpfs", str(folder)], capture_output=True, text=True)
    if done.returncode != 0:
        reason = f"cannot mount a tmpfs (root needed): {done.stderr.strip()}"
        print(reason)
        pytest.skip(reason)
    try:
        yield folder
    finally:
        subprocess.run(["umount", "--lazy", str(folder)], check=False)  # lazy: a failed test may still hold a file open


def make_image_folder(root: Path, per_class: int = 12, size: int = 12, classes: tuple[str, ...] = ("dark", "grey", "light"),
                      corrupt: bool = True) -> Path:  # fmt: skip
    """root/<class>/NN.png: generated grey PNGs whose brightness encodes the class (plus noise, so no two
    are alike), and with `corrupt` one file in the first class that is not an image."""
    import torch
    from PIL import Image

    g = torch.Generator().manual_seed(0)
    for label, name in enumerate(classes):
        folder = root / name
        folder.mkdir(parents=True)
        for i in range(per_class):
            noise = torch.randint(0, 40, (size, size), generator=g)
            pixels = (label * 100 + noise).clamp(0, 255).to(torch.uint8)
            Image.fromarray(pixels.numpy(), mode="L").save(folder / f"{i:02d}.png")
    if corrupt:
        (root / classes[0] / "broken.png").write_bytes(b"\x89PNG\r\n\x1a\n not really")
    return root
