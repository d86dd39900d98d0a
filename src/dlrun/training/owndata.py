"""The user's own arrays: a .npz or .pt file (dataset=tensors), or a function of theirs (dataset=custom).

Both end as data.py's Arrays, in memory: images (N, C, H, W) (grey (N, H, W) gains its channel,
features (N, D) are read as 1 x 1 x D images) and labels (N,). A split the data does not have is
carved, seeded: the test split with dataset.test_fraction here, the validation split in data.py.
A torch Dataset is read item by item into one tensor, after its size is checked against the
memory budget.
"""

from __future__ import annotations

import sys
import zipfile
from pathlib import Path
from typing import Any

import torch

from dlrun.errors import DataError
from dlrun.training.data import Arrays, Source, brief, check_carved
from dlrun.training.memory import MemoryBudget
from dlrun.training.own import call_data_function, first_line

PAIRS = {"train": ("x", "y"), "val": ("x_val", "y_val"), "test": ("x_test", "y_test")}


def as_images(x: torch.Tensor, what: str) -> torch.Tensor:
    """(N, C, H, W) from (N, C, H, W), grey (N, H, W) or features (N, D)."""
    if x.dim() == 2:
        return x.view(len(x), 1, 1, -1)
    if x.dim() == 3:
        return x.unsqueeze(1)
    if x.dim() == 4:
        return x
    raise DataError(f"{what} is {x.dim()}-D of shape {tuple(x.shape)}; images are (N, C, H, W) or (N, H, W), features (N, D)")


def as_tensor(value: Any, what: str) -> torch.Tensor:
    import numpy as np

    if isinstance(value, torch.Tensor):
        return value
    if isinstance(value, np.ndarray) and value.dtype != object:
        return torch.from_numpy(np.ascontiguousarray(value))
    raise DataError(f"{what} is a {type(value).__name__}, not a tensor or a numpy array of numbers")


def assemble(parts: dict[str, tuple[torch.Tensor, torch.Tensor]], classes: Any, sources: dict[str, Source], test_fraction: float,
             split_seed: int, what: str, notes: tuple[str, ...] = ()) -> Arrays:  # fmt: skip
    """Arrays from (images, labels) per part; without "test", a seeded share `test_fraction` of train."""
    parts = {part: (as_images(x, sources[part].images), y) for part, (x, y) in parts.items()}
    x_train, y_train = parts["train"]
    if "test" in parts:
        x_test, y_test = parts["test"]
    else:
        order = torch.randperm(len(y_train), generator=torch.Generator().manual_seed(split_seed))
        n_test = round(len(y_train) * test_fraction)
        check_carved("dataset.test_fraction", test_fraction, len(y_train), n_test, what, "test", typical=0.2)
        test, train = order[:n_test], order[n_test:]
        x_test, y_test, x_train, y_train = x_train[test], y_train[test], x_train[train], y_train[train]
    if classes is None:
        highest = max((int(y.max()) for _, y in parts.values() if len(y) and not y.is_floating_point()), default=0)
        classes = [str(c) for c in range(highest + 1)]
    elif not isinstance(classes, (list, tuple)) or not all(isinstance(c, str) for c in classes):
        raise DataError(f"{what}: classes must be a list of names (str), not {brief(classes, 60)}")
    return Arrays(x_train, y_train, x_test, y_test, list(classes), sources, val=parts.get("val"), notes=notes)


# ---------------------------------------------------------------------------------------------
# dataset=tensors


def npz_shapes(path: Path) -> dict[str, tuple[int, ...]]:
    """The shape of every array in a .npz file, read from the headers only."""
    import numpy as np

    readers = {(1, 0): np.lib.format.read_array_header_1_0, (2, 0): np.lib.format.read_array_header_2_0}
    shapes = {}
    with zipfile.ZipFile(path) as archive:
        for name in archive.namelist():
            with archive.open(name) as f:
                read = readers.get(np.lib.format.read_magic(f))
                if read is not None:  # a newer header version: its size is checked after loading
                    shapes[name.removesuffix(".npy")] = read(f)[0]
    return shapes


def read_tensor_file(file: Path, budget: MemoryBudget | None) -> dict[str, Any]:
    """The arrays in a .npz (numpy.savez) or .pt (torch.save of a dict) file; never runs code from it."""
    import numpy as np

    if not file.is_file():
        raise DataError(f"dataset.path={file}: no such file")
    try:
        if file.suffix == ".npz":
            shapes = npz_shapes(file)
            if budget is not None and "x" in shapes:
                total = sum(s[0] for k, s in shapes.items() if k.startswith("x") and s)
                budget.check((total, *shapes["x"][1:]), f"dataset.path={file}")
            with np.load(file, allow_pickle=False) as npz:
                return {k: npz[k] for k in npz.files}
        if file.suffix == ".pt":
            loaded = torch.load(file, map_location="cpu", weights_only=True, mmap=True)  # read as it is used
            if not isinstance(loaded, dict):
                raise DataError(f"{file} holds a {type(loaded).__name__}; save a dict: torch.save({{'x': images, 'y': labels}}, path)")
            return loaded
    except DataError:
        raise
    except Exception as err:  # noqa: BLE001  numpy, zipfile and torch each fail in their own way
        raise DataError(f"{file} cannot be read as {file.suffix} ({first_line(err)}); save it with numpy.savez or torch.save") from err
    raise DataError(f"dataset.path={file}: a .npz (numpy.savez) or .pt (torch.save) file is expected")


def load_tensors(root: Path, download: bool, test_fraction: float, split_seed: int, *, path: str,
                 budget: MemoryBudget | None = None) -> Arrays:  # fmt: skip
    file = Path(path).expanduser()
    arrays = read_tensor_file(file, budget)
    parts, sources = {}, {}
    for part, (xk, yk) in PAIRS.items():
        if xk not in arrays and yk not in arrays:
            if part == "train":
                held = ", ".join(map(str, arrays)) or "nothing"
                raise DataError(f"{file} holds no x and y (it holds: {held}); save the images as x, the labels as y")
            continue
        if xk not in arrays or yk not in arrays:
            raise DataError(f"{file} holds {xk if xk in arrays else yk} without {yk if xk in arrays else xk}")
        sources[part] = Source(f"{file} ({xk})", f"{file} ({yk})")
        parts[part] = (as_tensor(arrays[xk], sources[part].images), as_tensor(arrays[yk], sources[part].labels))
    classes = arrays.get("classes")
    classes = classes.tolist() if hasattr(classes, "tolist") else classes  # a numpy array of str
    sources.setdefault("test", sources["train"])
    return assemble(parts, classes, sources, test_fraction, split_seed, f"the examples in {file}")


# ---------------------------------------------------------------------------------------------
# dataset=custom


def _sample(dataset: Any, index: int, what: str) -> tuple[torch.Tensor, int]:
    import numpy as np

    try:
        sample = dataset[index]
    except Exception as err:  # noqa: BLE001  the user's __getitem__
        raise DataError(f"{what}[{index}] failed: {first_line(err)}") from err
    if not isinstance(sample, (tuple, list)) or len(sample) != 2:
        raise DataError(f"{what}[{index}] is a {type(sample).__name__}; a Dataset item must be a pair (image, label)")
    image, label = sample
    if not isinstance(image, (torch.Tensor, np.ndarray)) and hasattr(image, "getbands"):  # a PIL image: (H, W) or (H, W, C)
        pixels = torch.from_numpy(np.array(image))
        image = pixels.unsqueeze(0) if pixels.dim() == 2 else pixels.permute(2, 0, 1)
    try:
        return as_tensor(image, f"{what}[{index}]'s image"), int(label)
    except (TypeError, ValueError) as err:
        raise DataError(f"{what}[{index}]'s label {brief(label, 40)} is not a class number") from err


def materialize(dataset: Any, what: str, budget: MemoryBudget | None) -> tuple[torch.Tensor, torch.Tensor]:
    """A Dataset of (image, label) items as one (N, ...) tensor and (N,) labels."""
    from rich.console import Console
    from rich.progress import Progress

    n = len(dataset)
    if n == 0:
        raise DataError(f"{what} holds no items")
    first, _ = _sample(dataset, 0, what)
    if budget is not None:
        budget.check((n, *first.shape), what)
    x = torch.empty((n, *first.shape), dtype=first.dtype)
    y = torch.empty(n, dtype=torch.int64)
    with Progress(console=Console(stderr=True), transient=True, disable=not sys.stderr.isatty()) as bar:
        for i in bar.track(range(n), description=f"reading {what}"):
            image, y[i] = _sample(dataset, i, what)
            if image.shape != first.shape:
                raise DataError(f"{what}[{i}] is {tuple(image.shape)} where item 0 is {tuple(first.shape)}; all must have one shape")
            x[i] = image
    return x, y


def load_custom(root: Path, download: bool, test_fraction: float, split_seed: int, *, _target_: str,
                budget: MemoryBudget | None = None, **keys: Any) -> Arrays:  # fmt: skip
    """What the user's function returns: {"train": T, "test": T, "val": T, "classes": names} (only
    train required) or one T; each T a pair (images, labels) or a Dataset of (image, label)."""
    result = call_data_function(_target_, keys)
    given = result if isinstance(result, dict) else {"train": result}
    unknown = sorted(set(given) - {*PAIRS, "classes"})
    if unknown or "train" not in given:
        extra = f"an unknown key {unknown[0]!r}" if unknown else "no 'train'"
        raise DataError(f"dataset._target_={_target_} returned a dict with {extra}; its keys are train, val, test, classes")
    parts, sources = {}, {}
    for part in PAIRS:
        if part not in given:
            continue
        what = f"{_target_}'s {part} data"
        value = given[part]
        sources[part] = Source(f"{what} (images)", f"{what} (labels)")
        if isinstance(value, (tuple, list)) and len(value) == 2:
            parts[part] = (as_tensor(value[0], sources[part].images), as_tensor(value[1], sources[part].labels))
        elif hasattr(value, "__len__") and hasattr(value, "__getitem__"):
            parts[part] = materialize(value, what, budget)
        else:
            raise DataError(f"{what} is a {type(value).__name__}; give a pair (images, labels) or a torch Dataset of (image, label)")
    sources.setdefault("test", sources["train"])
    return assemble(parts, given.get("classes"), sources, test_fraction, split_seed, f"{_target_}'s data")
