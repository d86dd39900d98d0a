"""What plugs into the epoch loop: learning-rate schedules and early stopping.

Each is a small object with the engine's two hook methods (`on_step_end`, `on_epoch_end`; see
engine.Hook) and, where it has state that a resumed run must continue from, `state_dict` and
`load_state_dict` (saved in checkpoints/last.pt). The schedules are torch.optim.lr_scheduler's own
classes; this module only decides when they step and on what.
"""

from __future__ import annotations

import math
import warnings
from typing import TYPE_CHECKING, Any

import torch
from torch.optim import lr_scheduler

from dlrun.errors import ConfigError

if TYPE_CHECKING:
    from dlrun.training.engine import Loop

SCHEDULERS = ("none", "step", "cosine", "onecycle", "plateau")
# Schedules whose shape is fixed by trainer.epochs at the start: a resumed run cannot change its epochs.
SHAPED_BY_EPOCHS = ("cosine", "onecycle")


class LRSchedule:
    """A torch.optim.lr_scheduler, stepped after every optimizer step (onecycle) or every epoch
    (the others; plateau on the epoch's validation loss)."""

    def __init__(self, name: str, scheduler: Any, per_step: bool):
        self.name = name
        self.scheduler = scheduler
        self.per_step = per_step

    def on_step_end(self, loop: Loop) -> None:
        if self.per_step:
            self._step()

    def on_epoch_end(self, loop: Loop, row: dict[str, float]) -> None:
        if self.per_step:
            return
        if isinstance(self.scheduler, lr_scheduler.ReduceLROnPlateau):
            self._step(row["val/loss"])
        else:
            self._step()

    def _step(self, *metric: float) -> None:
        # lean_step updates parameters without calling optimizer.step(), which torch's schedulers
        # watch to warn about a wrong call order; the order here is right.
        with warnings.catch_warnings():
            warnings.filterwarnings("ignore", message=r"Detected call of `lr_scheduler\.step\(\)` before `optimizer\.step\(\)`")
            self.scheduler.step(*metric)

    def state_dict(self) -> dict[str, Any]:
        return self.scheduler.state_dict()

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.scheduler.load_state_dict(state)


def build_schedule(
    name: str,
    optimizer: torch.optim.Optimizer,
    *,
    epochs: int,
    steps_per_epoch: int,
    step_size: int = 10,
    gamma: float = 0.1,
    min_lr: float = 0.0,
    warmup_epochs: int = 0,
    factor: float = 0.1,
    patience: int = 10,
) -> LRSchedule | None:
    """The schedule `name` for `optimizer` (None for `none`); the optimizer's lr is the schedule's peak.

    step: lr * gamma ** (epochs done // step_size). cosine: `warmup_epochs` of linear warm-up (epoch
    k of w uses lr * k / (w + 1)), then cosine annealing from lr towards min_lr over the remaining
    epochs. onecycle: torch's OneCycleLR over every step of the run, max lr = optimizer.lr, learning
    rate only (momentum is not cycled). plateau: lr * factor when val/loss has not improved for
    `patience` epochs.
    """
    if name == "none":
        return None
    if name == "step":
        return LRSchedule(name, lr_scheduler.StepLR(optimizer, step_size=step_size, gamma=gamma), per_step=False)
    if name == "cosine":
        if warmup_epochs >= epochs:
            raise ConfigError(f"scheduler.warmup_epochs={warmup_epochs} must be below trainer.epochs={epochs}")
        cosine = lr_scheduler.CosineAnnealingLR(optimizer, T_max=epochs - warmup_epochs, eta_min=min_lr)
        if warmup_epochs == 0:
            return LRSchedule(name, cosine, per_step=False)
        warmup = lr_scheduler.LinearLR(optimizer, start_factor=1 / (warmup_epochs + 1), end_factor=1.0, total_iters=warmup_epochs)
        return LRSchedule(name, lr_scheduler.SequentialLR(optimizer, [warmup, cosine], milestones=[warmup_epochs]), per_step=False)
    if name == "onecycle":
        max_lr = [group["lr"] for group in optimizer.param_groups]
        scheduler = lr_scheduler.OneCycleLR(optimizer, max_lr=max_lr, total_steps=epochs * steps_per_epoch, cycle_momentum=False)
        return LRSchedule(name, scheduler, per_step=True)
    if name == "plateau":
        return LRSchedule(name, lr_scheduler.ReduceLROnPlateau(optimizer, mode="min", factor=factor, patience=patience), per_step=False)
    raise ConfigError(f"scheduler.name={name!r} is not one of: {', '.join(SCHEDULERS)}")


class EarlyStopping:
    """Ask the loop to stop when `monitor` has not improved by more than `min_delta` for `patience` epochs."""

    def __init__(self, monitor: str, patience: int, min_delta: float = 0.0):
        self.monitor = monitor
        self.patience = patience
        self.min_delta = min_delta
        self.higher_is_better = monitor.endswith("/acc")
        self.best = -math.inf if self.higher_is_better else math.inf
        self.waited = 0  # epochs since the last improvement

    def on_step_end(self, loop: Loop) -> None:
        pass

    def on_epoch_end(self, loop: Loop, row: dict[str, float]) -> None:
        value = row[self.monitor]
        better = value > self.best + self.min_delta if self.higher_is_better else value < self.best - self.min_delta
        if better:
            self.best, self.waited = value, 0
            return
        self.waited += 1
        if self.waited >= self.patience:
            best = f"{100 * self.best:.2f}%" if self.higher_is_better else f"{self.best:.4f}"
            loop.request_stop(f"early stopping: {self.monitor} has not improved for {self.patience} epochs (best {best})")

    def state_dict(self) -> dict[str, Any]:
        return {"best": self.best, "waited": self.waited}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.best, self.waited = float(state["best"]), int(state["waited"])
