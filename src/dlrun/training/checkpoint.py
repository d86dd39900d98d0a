"""Checkpoints: what last.pt and best.pt hold, and loading them back without trusting them.

A checkpoint is loaded with torch.load(weights_only=True) (tensors and plain containers only, so
loading never runs code), then every part is checked against the run being resumed before
anything changes: its format and version, the epoch, the model's keys and shapes, the optimizer's
state, the RNG states, the hooks' state, and the config it was written for. Any mismatch is one
line naming the file and what does not match.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any

import torch
from omegaconf import DictConfig, OmegaConf

from dlrun.analysis.runfolder import flatten
from dlrun.errors import ResumeError
from dlrun.training.recorder import CHECKPOINT_FORMAT, CHECKPOINT_VERSION
from dlrun.training.resume import ADJUSTABLE, restore_metrics

if TYPE_CHECKING:
    from dlrun.training.engine import Loop, LoopState


def load_checkpoint(path: Path) -> dict[str, Any]:
    """torch.load with weights_only=True: tensors and plain containers only, never code."""
    import pickle
    import warnings

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
    version = state.get("version")
    if type(version) is not int or not 1 <= version <= CHECKPOINT_VERSION:
        raise ResumeError(f"{path} is a dlrun checkpoint of version {version!r}; this dlrun reads versions 1 to {CHECKPOINT_VERSION}")
    return state


def check_same_model(model_state: dict, checkpoint_state: Any, path: Path) -> None:
    """Name the first parameter that the checkpoint lacks, has extra, or holds in another shape."""
    if not isinstance(checkpoint_state, dict) or not all(isinstance(v, torch.Tensor) for v in checkpoint_state.values()):
        raise ResumeError(f"{path} holds no model weights (its 'model' is not a dict of tensors)")
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


def _is_int(value: Any) -> bool:
    return type(value) is int


def check_last(checkpoint: dict[str, Any], loop: Loop, cfg: DictConfig, path: Path) -> None:
    """Everything in last.pt that resuming `loop` will use, checked before anything is loaded."""
    epoch = checkpoint.get("epoch")
    if not _is_int(epoch) or epoch < 1:
        raise ResumeError(f"{path} says it was written after epoch {epoch!r}; an epoch number >= 1 was expected")
    if epoch > cfg.trainer.epochs:
        raise ResumeError(f"trainer.epochs={cfg.trainer.epochs} is below the {epoch} epochs this run has finished")
    check_same_model(loop.model.state_dict(), checkpoint.get("model"), path)
    _check_optimizer(checkpoint.get("optimizer"), loop.optimizer, path)
    rng = checkpoint.get("rng")
    if not isinstance(rng, dict):
        raise ResumeError(f"{path} holds no RNG state")
    for key, current in (("torch", torch.get_rng_state()), ("data", loop.generator.get_state())):
        saved = rng.get(key)
        if not isinstance(saved, torch.Tensor) or saved.dtype != torch.uint8 or saved.shape != current.shape:
            raise ResumeError(f"{path} holds no valid {key} RNG state")
    best = checkpoint.get("best")
    if not isinstance(best, dict) or not _is_int(best.get("epoch")) or not 1 <= best["epoch"] <= epoch:
        raise ResumeError(f"{path} holds no valid best-epoch record")
    hooks = checkpoint.get("hooks", {})
    wanted = [name for name, hook in loop.hooks.items() if hasattr(hook, "load_state_dict")]
    if not isinstance(hooks, dict) or any(not isinstance(hooks.get(name), dict) for name in wanted):
        missing = next(name for name in wanted if not isinstance(hooks, dict) or not isinstance(hooks.get(name), dict))
        raise ResumeError(f"{path} holds no state for the run's {missing.replace('_', ' ')}; was it written by another run?")
    saved = checkpoint.get("config")
    if saved is not None:
        _check_same_config(saved, cfg, path)
    size = loop.train_settings.world.size
    if checkpoint.get("world_size", 1) != size:  # the shards, and so the data order, depend on it
        written = checkpoint.get("world_size", 1)
        raise ResumeError(f"{path} was written by {written} torchrun process(es); resume it with that many, not {size}")


def _check_optimizer(saved: Any, optimizer: torch.optim.Optimizer, path: Path) -> None:
    """The saved optimizer state must be for this optimizer: the same groups, sizes and state tensors' shapes."""
    current = optimizer.state_dict()
    if not isinstance(saved, dict) or not isinstance(saved.get("param_groups"), list) or not isinstance(saved.get("state"), dict):
        raise ResumeError(f"{path} holds no optimizer state")
    groups = saved["param_groups"]
    if len(groups) != len(current["param_groups"]) or any(
        not isinstance(g, dict) or not isinstance(g.get("params"), list) or len(g["params"]) != len(c["params"])
        for g, c in zip(groups, current["param_groups"], strict=False)
    ):
        raise ResumeError(f"{path} holds the state of another optimizer (its parameter groups differ from this run's)")
    shapes = [tuple(p.shape) for group in optimizer.param_groups for p in group["params"]]
    names = {"adam": {"step", "exp_avg", "exp_avg_sq"}, "sgd": {"momentum_buffer"}}
    expected = names["adam"] if isinstance(optimizer, (torch.optim.Adam, torch.optim.AdamW)) else names["sgd"]
    for index, entry in saved["state"].items():
        known = expected | {"max_exp_avg_sq"}
        if not _is_int(index) or not 0 <= index < len(shapes) or not isinstance(entry, dict) or not set(entry) <= known:
            raise ResumeError(f"{path} holds the state of another kind of optimizer (this run uses {type(optimizer).__name__})")
        for key, value in entry.items():
            if key == "step":
                if not isinstance(value, (torch.Tensor, int, float)):
                    raise ResumeError(f"{path}: the optimizer's step count for parameter {index} is not a number")
            elif not isinstance(value, torch.Tensor) or tuple(value.shape) != shapes[index]:
                raise ResumeError(f"{path}: the optimizer's {key} for parameter {index} does not fit that parameter")


def _check_same_config(saved: Any, cfg: DictConfig, path: Path) -> None:
    """A checkpoint belongs to the run whose config it records: any key that shapes the experiment must match."""
    if not isinstance(saved, dict):
        raise ResumeError(f"{path} records no readable config")
    old, new = flatten(saved), flatten(OmegaConf.to_container(cfg, resolve=True))
    for key in sorted(set(old) | set(new)):
        if key in ADJUSTABLE or old.get(key) == new.get(key):
            continue
        raise ResumeError(
            f"{path} belongs to another run: it was written with {key}={old.get(key)!r}, and this folder's run has {new.get(key)!r}; "
            "it cannot continue this run"
        )


def restore(loop: Loop, run_dir: Path, cfg: DictConfig, writer: bool = True) -> LoopState:
    """Load last.pt (and best.pt's weights) into `loop`; cut metrics.csv back to the checkpoint
    (only the `writer`: under torchrun, rank 0).

    Both files are checked whole first: a refused checkpoint changes nothing on disk.
    """
    from dlrun.training.engine import LoopState

    path = run_dir / "checkpoints" / "last.pt"
    checkpoint = load_checkpoint(path)
    check_last(checkpoint, loop, cfg, path)
    best_path = run_dir / "checkpoints" / "best.pt"
    best_state = None
    if best_path.is_file():
        best = load_checkpoint(best_path)
        check_same_model(loop.model.state_dict(), best.get("model"), best_path)
        if not _is_int(best.get("epoch")) or not 1 <= best["epoch"] <= checkpoint["epoch"]:
            raise ResumeError(f"{best_path} says it is from epoch {best.get('epoch')!r}, after last.pt's {checkpoint['epoch']}")
        device = next(iter(loop.model.state_dict().values())).device
        best_state = {k: v.to(device) for k, v in best["model"].items()}
    try:
        loop.model.load_state_dict(checkpoint["model"])
        loop.optimizer.load_state_dict(checkpoint["optimizer"])
        for name, hook in loop.hooks.items():
            if hasattr(hook, "load_state_dict"):
                hook.load_state_dict(checkpoint["hooks"][name])
    except (KeyError, ValueError, TypeError, RuntimeError) as err:
        raise ResumeError(f"{path} cannot be loaded into this run ({type(err).__name__}: {str(err).strip()[:160]})") from err
    torch.set_rng_state(checkpoint["rng"]["torch"])
    loop.generator.set_state(checkpoint["rng"]["data"])
    if "cuda" in checkpoint["rng"] and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(checkpoint["rng"]["cuda"])
    stop = checkpoint.get("stop") if isinstance(checkpoint.get("stop"), dict) else {}
    history = restore_metrics(run_dir, checkpoint["epoch"], cut=writer)
    return LoopState(epoch=checkpoint["epoch"], history=history, best=checkpoint["best"], best_state=best_state,
                     stop_reason=stop.get("reason"), stop_status=stop.get("status", "completed"))  # fmt: skip
