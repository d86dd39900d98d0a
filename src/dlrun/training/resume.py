"""Continuing a run from its folder: which folder, with which config, from which checkpoint.

`resume` is one string key: empty (off), a run folder's path (continue that run in its own
folder, with its own config), or `auto` (continue this job's own folder if it holds a checkpoint:
what a re-run sweep uses). Only keys that do not change the experiment may differ from the saved
config; `trainer.epochs` may be raised.
"""

from __future__ import annotations

import csv
import json
from pathlib import Path
from typing import Any

from dlrun.analysis.runfolder import flatten
from dlrun.errors import ResumeError
from dlrun.training.recorder import CHECKPOINT_FORMAT, atomic_write

# Keys a resumed run may change: how long it trains and how it shows and keeps its work.
ADJUSTABLE = {
    "resume",
    "trainer.epochs",
    "trainer.progress",
    "trainer.plots",
    "trainer.checkpoints",
    "device.name",
    "device.threads",
    "trainer.eval_batch_size",
}
GLOBAL_GROUPS = {"experiment", "debug"}  # presets that may set any key


def resume_folder(resume: str, run_dir: Path) -> Path | None:
    """The folder to continue, or None for a fresh run."""
    if not resume:
        return None
    if resume == "auto":
        return run_dir if (run_dir / "checkpoints" / "last.pt").is_file() else None
    folder = Path(resume).expanduser()
    if not folder.is_dir():
        raise ResumeError(f"resume={resume}: no such run folder")
    if not (folder / "checkpoints" / "last.pt").is_file():
        raise ResumeError(
            f"resume={resume}: the folder holds no checkpoints/last.pt (did the run finish an epoch, with trainer.checkpoints=true?)"
        )
    return folder


def read_summary(folder: Path) -> dict[str, Any]:
    """summary.json of `folder`, or {} where it is missing or unreadable."""
    try:
        return json.loads((folder / "summary.json").read_text())
    except (OSError, ValueError):
        return {}


def saved_config(folder: Path) -> dict[str, Any]:
    """The config the run in `folder` was made with (summary.json's copy, else Hydra's)."""
    config = read_summary(folder).get("config")
    if config:
        return config
    import yaml

    return yaml.safe_load((folder / ".hydra" / "config.yaml").read_text())


def touched_prefixes(overrides: list[str]) -> list[str]:
    """The config keys a command line's overrides may change: 'model=cnn' touches model.*."""
    prefixes = []
    for override in overrides:
        key = override.lstrip("+~").split("=", 1)[0].split("@", 1)[0]
        if key in GLOBAL_GROUPS:
            prefixes.append("")
        elif not key.startswith("hydra."):
            prefixes.append(key)
    return prefixes


def merge_for_resume(saved: dict[str, Any], wanted: dict[str, Any], overrides: list[str]) -> dict[str, Any]:
    """The saved config with the adjustable keys the command changes; any other change is refused."""
    old, new = flatten(saved), flatten(wanted)
    prefixes = touched_prefixes(overrides)
    merged = dict(old)
    for key in sorted(set(old) | set(new)):
        if old.get(key) == new.get(key) or not any(p == "" or key == p or key.startswith(p + ".") for p in prefixes):
            continue
        if key not in ADJUSTABLE:
            raise ResumeError(
                f"resume: the run was made with {key}={old.get(key)!r} and this command asks for {new.get(key)!r}; "
                "a resumed run keeps its experiment (only trainer.epochs may be raised): drop the override "
                "or start a new run"
            )
        merged[key] = new[key]
    tree: dict[str, Any] = {}
    for key, value in merged.items():
        node = tree
        *parents, leaf = key.split(".")
        for part in parents:
            node = node.setdefault(part, {})
        node[leaf] = value
    return tree


def load_checkpoint(path: Path) -> dict[str, Any]:
    """torch.load with weights_only=True: tensors and plain containers only, never code."""
    import pickle
    import warnings

    import torch

    try:
        with warnings.catch_warnings():  # a foreign pickle also draws a protocol warning: the error below says enough
            warnings.simplefilter("ignore")
            state = torch.load(path, map_location="cpu", weights_only=True)
    except (pickle.UnpicklingError, RuntimeError, EOFError, ValueError, OSError) as err:
        first = str(err).strip().splitlines()[0] if str(err).strip() else type(err).__name__
        if "Weights only load failed" in str(err):
            raise ResumeError(f"{path} is not a dlrun checkpoint (it holds objects other than tensors); refusing to load it") from err
        raise ResumeError(f"{path} is truncated or corrupt and cannot be loaded ({first})") from err
    if not isinstance(state, dict) or state.get("format") != CHECKPOINT_FORMAT:
        raise ResumeError(f"{path} is not a dlrun checkpoint; refusing to use it")
    return state


def check_same_model(model_state: dict, checkpoint_state: dict, path: Path) -> None:
    """Name the first parameter that the checkpoint lacks, has extra, or holds in another shape."""
    for key, value in model_state.items():
        if key in checkpoint_state and tuple(value.shape) != tuple(checkpoint_state[key].shape):
            raise ResumeError(
                f"{path} is from another model: {key} is {tuple(checkpoint_state[key].shape)} there and {tuple(value.shape)} here"
            )
    missing = sorted(set(model_state) - set(checkpoint_state))
    extra = sorted(set(checkpoint_state) - set(model_state))
    if missing or extra:
        detail = (
            f"the model has {missing[0]} which the checkpoint lacks" if missing else f"the checkpoint has {extra[0]} which the model lacks"
        )
        raise ResumeError(f"{path} is from another model: {detail}")


def restore_metrics(folder: Path, epochs: int) -> list[dict[str, Any]]:
    """The first `epochs` rows of metrics.csv as numbers, and the file cut back to them.

    Rows past the checkpoint (an epoch whose checkpoint was never written) are dropped, so the
    resumed run appends exactly where the checkpoint left off.
    """
    path = folder / "metrics.csv"
    if not path.is_file():
        return []
    lines = path.read_text().splitlines()
    kept = lines[: epochs + 1]  # the header and `epochs` rows
    if len(kept) < len(lines):
        atomic_write(path, lambda f: f.write(("\n".join(kept) + "\n").encode()))
    return [{k: (int(v) if k == "epoch" else float(v)) for k, v in row.items()} for row in csv.DictReader(kept)]
