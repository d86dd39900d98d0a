"""Datasets: the bundled digits, torchvision's MNIST and CIFAR-10 classes on generated and on real files,
and the one-line errors for data that cannot train."""

from __future__ import annotations

import ctypes
import gzip
import os
import struct
import urllib.error
from collections.abc import Callable
from pathlib import Path

import pytest
import torch

from dlrun.errors import DataError
from dlrun.training.data import load_dataset
from dlrun.training.torchvision_data import IDX_FILES
from tests.helpers import QUICK, SHARED_DATA, make_cifar10, make_mnist, needs_shared_data, read_idx, read_summary, write_idx

CPU = torch.device("cpu")


def test_digits_split_is_seeded_and_shaped_from_the_data():
    a = load_dataset("digits", root="unused", device=CPU, val_fraction=0.1, test_fraction=0.2)
    b = load_dataset("digits", root="unused", device=CPU, val_fraction=0.1, test_fraction=0.2)
    assert a.input_shape == (1, 8, 8) and a.num_classes == 10
    assert len(a.train) + len(a.val) + len(a.test) == 1797
    assert len(a.test) == round(1797 * 0.2) and len(a.val) == round((1797 - len(a.test)) * 0.1)
    assert torch.equal(a.val.y, b.val.y) and torch.equal(a.test.x, b.test.x)
    assert a.train.x.dtype == torch.float32 and 0.0 <= a.train.x.min() and a.train.x.max() <= 1.0


def test_digits_read_from_scikit_learns_file_equal_load_digits():
    from sklearn.datasets import load_digits

    from dlrun.training.data import digits_csv, read_digits

    expected = load_digits()
    images, labels = read_digits()
    assert digits_csv() is not None  # read from the file, not through scikit-learn
    assert images.dtype == torch.float64 and torch.equal(images, torch.from_numpy(expected.images))  # same order, counts 0..16
    assert labels.dtype == torch.int64 and torch.equal(labels, torch.from_numpy(expected.target))
    assert [str(c) for c in expected.target_names] == load_dataset("digits", root="unused", device=CPU, test_fraction=0.2).classes


def test_digits_where_scikit_learn_keeps_them_elsewhere_come_from_load_digits(monkeypatch):
    from sklearn.datasets import load_digits

    from dlrun.training import data

    monkeypatch.setattr(data, "digits_csv", lambda: None)
    images, labels = data.read_digits()
    assert torch.equal(images, torch.from_numpy(load_digits().images)) and torch.equal(labels, torch.from_numpy(load_digits().target))


def test_digits_without_scikit_learn_say_what_to_install(monkeypatch):
    import importlib.util
    import sys

    monkeypatch.setattr(importlib.util, "find_spec", lambda name, *a: None if name == "sklearn" else importlib.util.find_spec(name, *a))
    monkeypatch.setitem(sys.modules, "sklearn.datasets", None)  # `from sklearn.datasets import ...` raises ImportError
    with pytest.raises(DataError, match="dataset=digits needs scikit-learn, which ships the digits: pip install scikit-learn"):
        load_dataset("digits", root="unused", device=CPU, test_fraction=0.2)


def test_split_seed_changes_the_split():
    a = load_dataset("digits", root="unused", device=CPU, val_fraction=0.1, test_fraction=0.2, split_seed=0)
    b = load_dataset("digits", root="unused", device=CPU, val_fraction=0.1, test_fraction=0.2, split_seed=1)
    assert not torch.equal(a.test.y, b.test.y)


@pytest.mark.parametrize("compress", [True, False], ids=["gz", "extracted"])
def test_mnist_from_generated_idx_files_in_a_read_only_folder(tmp_path, compress):
    root = make_mnist(tmp_path / "data", compress=compress)
    before = sorted(root.rglob("*"))
    for path in [root, *before]:
        path.chmod(0o555 if path.is_dir() else 0o444)
    try:
        data = load_dataset("mnist", root=root, device=CPU, val_fraction=0.2)
    finally:
        for path in [root, *root.rglob("*")]:
            path.chmod(0o755 if path.is_dir() else 0o644)
    assert sorted(root.rglob("*")) == before  # nothing written beside the data, even where root could
    assert data.input_shape == (1, 12, 12)
    assert (len(data.train), len(data.val), len(data.test)) == (40, 10, 20)
    assert data.classes[3] == "3 - three"
    # brightness encodes the label: pixel = 25 * label / 255
    assert torch.allclose(data.test.x[:, 0, 0, 0] * 255 / 25, data.test.y.float())


def test_fashion_mnist_uses_its_own_folder_and_classes(tmp_path):
    root = make_mnist(tmp_path, folder="FashionMNIST")
    data = load_dataset("fashion_mnist", root=root, device=CPU, val_fraction=0.0)
    assert data.val is None and data.classes[0] == "T-shirt/top"


def test_missing_data_says_where_files_go_and_suggests_digits(tmp_path):
    with pytest.raises(DataError) as info:
        load_dataset("mnist", root=tmp_path / "nowhere", device=CPU)
    message = str(info.value)
    assert "\n" not in message
    assert str(tmp_path / "nowhere" / "MNIST" / "raw") in message and "train-images-idx3-ubyte.gz" in message
    assert "dataset=digits" in message


@pytest.mark.parametrize("compress", [True, False], ids=["gz", "extracted"])
def test_truncated_file_is_refused_before_training(tmp_path, compress):
    root = make_mnist(tmp_path, compress=compress)
    victim = root / "MNIST" / "raw" / ("train-images-idx3-ubyte" + (".gz" if compress else ""))
    data = victim.read_bytes()
    victim.write_bytes(data[: len(data) // 2])
    with pytest.raises(DataError, match="truncated or corrupt"):
        load_dataset("mnist", root=root, device=CPU)


def test_normalize_standardizes_with_training_statistics():
    data = load_dataset("digits", root="unused", device=CPU, test_fraction=0.2, normalize=True)
    assert abs(data.train.x.mean().item()) < 1e-4 and abs(data.train.x.std().item() - 1) < 1e-3


@needs_shared_data("MNIST")
def test_real_mnist_files_from_the_read_only_shared_folder():
    data = load_dataset("mnist", root=SHARED_DATA, device=CPU, val_fraction=0.0)
    assert (len(data.train), len(data.test)) == (60000, 10000)
    assert data.input_shape == (1, 28, 28)
    assert torch.bincount(data.test.y).tolist()[:3] == [980, 1135, 1032]  # the test set's known class counts
    assert sorted(p.name for p in (SHARED_DATA / "MNIST" / "raw").iterdir()) == sorted(f"{n}.gz" for n in IDX_FILES)


@needs_shared_data("FashionMNIST")
def test_real_fashion_mnist_files():
    data = load_dataset("fashion_mnist", root=SHARED_DATA, device=CPU, val_fraction=0.1)
    assert (len(data.train), len(data.val), len(data.test)) == (54000, 6000, 10000)
    assert torch.bincount(data.test.y).tolist() == [1000] * 10


# ---------------------------------------------------------------------------------------------
# Data that cannot train is refused in one line before the first step, naming what to change.


@pytest.mark.parametrize(
    ("name", "fractions", "expected"),
    [
        ("digits", {"test_fraction": 0.0}, "dataset.test_fraction=0 leaves the digits data set with no test images (1797 images"),
        (
            "digits",
            {"test_fraction": 0.9999, "val_fraction": 0.0},
            "dataset.test_fraction=0.9999 leaves the digits data set with no train",
        ),
        ("mnist", {"val_fraction": 0.99}, "dataset.val_fraction=0.99 leaves the mnist training set with no training images (50 images"),
        ("mnist", {"val_fraction": 0.001}, "dataset.val_fraction=0.001 leaves the mnist training set with no validation images (50 images"),
    ],
    ids=["digits-no-test", "digits-no-train", "val-takes-all", "val-rounds-to-none"],
)
def test_a_split_left_without_images_names_the_key_and_the_sizes(tmp_path, name, fractions, expected):
    root = make_mnist(tmp_path)  # 50 training images
    with pytest.raises(DataError) as info:
        load_dataset(name, root=root, device=CPU, **fractions)
    assert str(info.value).startswith(expected) and "\n" not in str(info.value)


def test_digits_without_a_test_split_stops_before_training(run_dlrun, capsys):
    with pytest.raises(SystemExit) as info:
        run_dlrun(*QUICK, "dataset.test_fraction=0")
    out, err = capsys.readouterr()
    assert info.value.code == 2 and "epoch 1/" not in out
    assert err.strip() == (
        "dlrun: error: dataset.test_fraction=0 leaves the digits data set with no test images (1797 images in all); "
        "use a value in (0, 1), e.g. 0.2"
    )


def _rewrite(raw: Path, name: str, array: torch.Tensor, compress: bool) -> None:
    (raw / name).unlink(missing_ok=True)
    (raw / f"{name}.gz").unlink(missing_ok=True)
    write_idx(raw / name, array, compress)


def _rewrite_bytes(raw: Path, name: str, payload: bytes, compress: bool) -> None:
    path = raw / (f"{name}.gz" if compress else name)
    path.write_bytes(gzip.compress(payload) if compress else payload)


def _swap(raw: Path, a: str, b: str, compress: bool) -> None:
    a, b = (raw / (n + (".gz" if compress else "")) for n in (a, b))
    a.rename(raw / "swap")
    b.rename(a)
    (raw / "swap").rename(b)


def _original(raw: Path, name: str, compress: bool) -> torch.Tensor:
    return read_idx(raw / (name + (".gz" if compress else "")))


TRAIN_X, TRAIN_Y, TEST_X, TEST_Y = IDX_FILES
BAD_FILES = {  # what is done to a good data set -> (the file the message must name, what it must say)
    "counts-differ": (
        lambda raw, gz: _rewrite(raw, TRAIN_Y, _original(raw, TRAIN_Y, gz)[:-1], gz),
        TRAIN_Y,
        f"holds 49 labels but {TRAIN_X}{{gz}} holds 50 images; replace them with the original files",
    ),
    "train-and-test-labels-swapped": (
        lambda raw, gz: _swap(raw, TRAIN_Y, TEST_Y, gz),
        TRAIN_Y,
        f"holds 20 labels but {TRAIN_X}{{gz}} holds 50 images",
    ),
    "labels-file-holds-images": (
        lambda raw, gz: _rewrite(raw, TRAIN_Y, _original(raw, TRAIN_X, gz), gz),
        TRAIN_Y,
        "3-D array (50 x 12 x 12)",
    ),
    "label-out-of-range": (
        lambda raw, gz: _rewrite(raw, TEST_Y, torch.full((20,), 10, dtype=torch.uint8), gz),
        TEST_Y,
        "holds label 10, outside the 10 classes 0 to 9",
    ),
    "images-of-int16": (
        lambda raw, gz: _rewrite_bytes(raw, TRAIN_X, bytes([0, 0, 0x0B, 3]) + struct.pack(">3I", 50, 12, 12) + bytes(50 * 144 * 2), gz),
        TRAIN_X,
        "holds 16-bit integer items",
    ),
    "images-without-rows": (
        lambda raw, gz: _rewrite(raw, TRAIN_X, _original(raw, TRAIN_X, gz).view(50, 144), gz),
        TRAIN_X,
        "2-D array (50 x 144)",
    ),
    "test-images-of-another-size": (
        lambda raw, gz: _rewrite(raw, TEST_X, _original(raw, TEST_X, gz)[:, :10, :10].contiguous(), gz),
        TEST_X,
        f"holds 1 x 10 x 10 images but {TRAIN_X}{{gz}} holds 1 x 12 x 12",
    ),
    "file-shorter-than-its-header": (
        lambda raw, gz: _rewrite_bytes(raw, TRAIN_X, bytes([0, 0, 8, 3]) + struct.pack(">3I", 50, 12, 12) + bytes(100), gz),
        TRAIN_X,
        "is truncated or corrupt",
    ),
}


@pytest.mark.parametrize("compress", [True, False], ids=["gz", "extracted"])
@pytest.mark.parametrize("damage", list(BAD_FILES))
def test_a_bad_data_file_is_named_in_one_line_before_training(tmp_path, damage, compress):
    root = make_mnist(tmp_path / "data", compress=compress)
    raw = root / "MNIST" / "raw"
    spoil, victim, expected = BAD_FILES[damage]
    spoil(raw, compress)
    gz = ".gz" if compress else ""
    with pytest.raises(DataError) as info:
        load_dataset("mnist", root=root, device=CPU)
    message = str(info.value)
    assert message.startswith(f"{raw / victim}{gz} ")  # the user's file, not a copy in the cache
    assert expected.format(gz=gz) in message and "\n" not in message


@pytest.mark.parametrize("damage", ["truncated", "made-from-other-files"])
def test_a_damaged_cache_copy_is_extracted_again(tmp_path, monkeypatch, damage):
    monkeypatch.setenv("DLRUN_CACHE", str(tmp_path / "cache"))
    root = make_mnist(tmp_path / "data")
    first = load_dataset("mnist", root=root, device=CPU, val_fraction=0.0)
    [copy] = (tmp_path / "cache").glob(f"*/MNIST/raw/{TRAIN_Y}")
    if damage == "truncated":
        copy.write_bytes(copy.read_bytes()[:-10])
    else:  # the same size and header, other labels
        write_idx(copy, (_original(root / "MNIST" / "raw", TRAIN_Y, True) + 1) % 10, compress=False)
    again = load_dataset("mnist", root=root, device=CPU, val_fraction=0.0)
    assert torch.equal(again.train.y, first.train.y)
    assert copy.read_bytes() == gzip.decompress((root / "MNIST" / "raw" / f"{TRAIN_Y}.gz").read_bytes())


def _mount_read_only_tmpfs(folder: Path) -> Callable[[], None]:
    """Mount an empty read-only tmpfs on `folder` (root on Linux only) and return its unmount."""
    libc = ctypes.CDLL(None, use_errno=True)
    ms_rdonly = 1
    if libc.mount(b"tmpfs", bytes(folder), b"tmpfs", ms_rdonly, b"size=1m") != 0:
        pytest.skip(f"cannot mount a read-only tmpfs here ({os.strerror(ctypes.get_errno())})")
    return lambda: libc.umount2(bytes(folder), 0)


@pytest.mark.parametrize("where", ["DLRUN_CACHE-under-a-file", "DLRUN_CACHE-read-only", "home-cache-is-a-file", "no-home"])
def test_an_unusable_cache_folder_says_to_set_DLRUN_CACHE(tmp_path, monkeypatch, where):
    root = make_mnist(tmp_path / "data")
    (tmp_path / "file.txt").write_text("not a folder")
    monkeypatch.delenv("XDG_CACHE_HOME", raising=False)
    unmount = None
    if where == "DLRUN_CACHE-under-a-file":
        monkeypatch.setenv("DLRUN_CACHE", str(tmp_path / "file.txt" / "sub"))
    elif where == "DLRUN_CACHE-read-only":
        (tmp_path / "ro").mkdir()
        unmount = _mount_read_only_tmpfs(tmp_path / "ro")
        monkeypatch.setenv("DLRUN_CACHE", str(tmp_path / "ro" / "cache"))
    else:
        monkeypatch.delenv("DLRUN_CACHE")
        home = tmp_path / ("home" if where == "home-cache-is-a-file" else "nohome")
        if where == "home-cache-is-a-file":
            home.mkdir()
            (home / ".cache").write_text("not a folder")
        monkeypatch.setenv("HOME", str(home))
    try:
        with pytest.raises(DataError) as info:
            load_dataset("mnist", root=root, device=CPU)
    finally:
        if unmount:
            unmount()
    message = str(info.value)
    assert message.endswith("; set DLRUN_CACHE to a writable folder") and "\n" not in message
    assert not (tmp_path / "nohome").exists()  # a home folder that is missing is not made up


@pytest.mark.parametrize("layout", ["folder", "archive"])
@pytest.mark.parametrize(
    ("labels", "expected"),
    [
        ([0, 1, 2, 3, 4, 5, 6, 7, 8, 9], None),
        ([0, 1, -1, 3, 4, 5, 6, 7, 8, 9], "holds label -1, outside the 10 classes 0 to 9; replace it with the original file"),
        ([3] * 9, "holds 9 labels for 10 images"),
    ],
    ids=["good", "negative-label", "counts-differ"],
)
def test_cifar10_batches_are_checked_like_the_idx_files(tmp_path, monkeypatch, layout, labels, expected):
    import torchvision.datasets as tvd

    root = tmp_path / "data"
    archive = layout == "archive"  # a read-only root holding the archive: it is extracted into the cache
    for key, value in make_cifar10(root, n_test=10, test_labels=labels, archive=archive, batches=5).items():
        monkeypatch.setattr(tvd.CIFAR10, key, value)
    where = root / ("cifar-10-python.tar.gz" if archive else "cifar-10-batches-py")
    if expected is None:
        data = load_dataset("cifar10", root=root, device=CPU, val_fraction=0.0)
        assert data.input_shape == (3, 32, 32) and (len(data.train), len(data.test)) == (20, 10)
        assert data.test.y.tolist() == labels and data.classes[:2] == ["airplane", "automobile"]
        # The pickled rows are red, green, blue planes, row by row: channels, rows and columns arrive in place.
        rows, cols = torch.arange(32) * 8 / 255, torch.arange(32) * 8 / 255
        assert torch.equal(data.test.x[:, 0], rows.view(32, 1).expand(10, 32, 32))
        assert torch.equal(data.test.x[:, 1], cols.view(1, 32).expand(10, 32, 32))
        assert torch.equal(data.test.x[:, 2, 0, 0], torch.tensor(labels) * 25 / 255)
        return
    with pytest.raises(DataError) as info:
        load_dataset("cifar10", root=root, device=CPU)
    assert str(info.value).startswith(f"{where} (test batch) {expected}") and "\n" not in str(info.value)


def test_cifar10_from_its_archive_trains_a_resnet_with_augmentation(run_dlrun, tmp_path, monkeypatch):
    """The whole path a user takes: cifar-10-python.tar.gz in dataset.root, extracted once, trained on."""
    import torchvision.datasets as tvd

    root = tmp_path / "data"
    for key, value in make_cifar10(root, n_train=40, n_test=20, archive=True, batches=5).items():
        monkeypatch.setattr(tvd.CIFAR10, key, value)
    overrides = ("dataset=cifar10", f"dataset.root={root}", "model=resnet", "model.depth=8", "augment=standard", "scheduler=cosine")
    run = run_dlrun(*QUICK, *overrides, "trainer.batch_size=8")
    summary = read_summary(run)
    assert summary["status"] == "completed" and summary["epochs_completed"] == 2
    shapes = {k: summary["data"][k] for k in ("name", "train", "val", "test", "input_shape", "classes")}
    assert shapes == {"name": "cifar10", "train": 36, "val": 4, "test": 20, "input_shape": [3, 32, 32], "classes": 10}
    assert summary["data"]["class_names"][:2] == ["airplane", "automobile"] and summary["data"]["transform"]["channels"] == 3
    assert summary["experiment"] == "resnet 8 + adam (lr 0.001) on cifar10, augment standard"
    assert [p.name for p in root.iterdir()] == ["cifar-10-python.tar.gz"]  # extracted into the cache, not beside the archive


@pytest.mark.parametrize("download", [True, False])
def test_cifar10_that_is_missing_leaves_no_folder_and_offers_only_what_was_not_tried(tmp_path, monkeypatch, download):
    import torchvision.datasets.cifar as cifar

    def offline(url, download_root, *args, **kwargs):
        os.makedirs(download_root, exist_ok=True)  # as torchvision does before it downloads
        raise urllib.error.URLError("no network here")

    monkeypatch.setattr(cifar, "download_and_extract_archive", offline)
    with pytest.raises(DataError) as info:
        load_dataset("cifar10", root=tmp_path / "new" / "data", device=CPU, download=download)
    message = str(info.value)
    assert ("dataset.download=true" in message) is not download and ("no network here" in message) is download
    assert message.endswith("dataset=digits needs no files") and "\n" not in message
    assert list(tmp_path.iterdir()) == []
