"""The epoch loop: train, evaluate, record, checkpoint, decide whether to stop. Read top to bottom.

Everything that varies between runs is chosen before the loop starts and plugs into it:
- the training step (`steps.choose_step`: the hand-written MLP step or autograd, fast or plain);
- hooks (`Hook`): learning-rate schedules, early stopping, and whatever else must see every step
  or every epoch's row. A hook asks the loop to stop with `loop.request_stop(reason)`; a hook with
  state (`Stateful`) has it saved in checkpoints/last.pt and restored on resume.
No hook is a parameter of the loop's code: the loop calls them all the same way.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Any, Protocol, runtime_checkable

import torch

from dlrun.errors import Diverged
from dlrun.training.console import Reporter
from dlrun.training.data import Data
from dlrun.training.recorder import RunRecorder
from dlrun.training.signals import StopRequest
from dlrun.training.steps import StepSettings, TrainStep, evaluate, num_batches, train_one_epoch


class Hook(Protocol):
    def on_step_end(self, loop: Loop) -> None:
        """After every optimizer step (keep it cheap: it runs thousands of times an epoch)."""

    def on_epoch_end(self, loop: Loop, row: dict[str, float]) -> None:
        """After each epoch's evaluation, with the epoch's metrics row, before it is recorded."""


@runtime_checkable
class Stateful(Protocol):
    def state_dict(self) -> dict[str, Any]: ...

    def load_state_dict(self, state: dict[str, Any]) -> None: ...


@dataclass
class LoopState:
    """Where a run stands after some epochs: restored from last.pt when a run is resumed."""

    epoch: int = 0
    history: list[dict[str, float]] = field(default_factory=list)
    best: dict[str, Any] = field(default_factory=dict)
    best_state: dict[str, torch.Tensor] | None = None
    stop_reason: str | None = None  # why the loop stopped before its last epoch (early stopping, a pruner)
    stop_status: str = "completed"  # the status such a stop gives the run
    train_s: float = 0.0  # this process's seconds of training steps
    eval_s: float = 0.0
    epoch_s: list[float] = field(default_factory=list)
    train_examples: int = 0


@dataclass
class Loop:
    """One run's training: the parts chosen before the loop, and `run()`, the loop itself."""

    model: torch.nn.Module
    forward: torch.nn.Module  # the model as called: torch.compile's wrapper, or the model
    optimizer: torch.optim.Optimizer
    step: TrainStep
    data: Data
    train_settings: StepSettings
    eval_settings: StepSettings
    generator: torch.Generator  # orders the training data
    epochs: int
    recorder: RunRecorder
    reporter: Reporter
    checkpoints: bool = True
    hooks: dict[str, Hook] = field(default_factory=dict)
    stop: StopRequest | None = None  # Ctrl-C / SIGTERM
    checkpoint_extra: dict[str, Any] = field(default_factory=dict)  # written into every last.pt (the run's config)
    state: LoopState = field(default_factory=LoopState)

    def request_stop(self, reason: str, status: str = "completed") -> None:
        """End the run after this epoch is recorded; `status` is what summary.json will say."""
        self.state.stop_reason, self.state.stop_status = reason, status

    def run(self) -> LoopState:
        """Train up to `epochs`, evaluating after each; leave the best-validation weights in the model."""
        state = self.state
        eval_split, eval_name = (self.data.val, "val") if self.data.val is not None else (self.data.test, "test")
        steps = num_batches(len(self.data.train), self.train_settings.batch_size, self.train_settings.limit_batches)
        hooks = list(self.hooks.values())
        after_step = (lambda: [hook.on_step_end(self) for hook in hooks]) if hooks else None
        for epoch in range(state.epoch + 1, self.epochs + 1):
            if state.stop_reason is not None:  # a resumed run that had already stopped (early stopping)
                break
            started = time.perf_counter()
            lr = self.optimizer.param_groups[0]["lr"]  # the rate this epoch starts with
            with self.reporter.epoch_progress(epoch, self.epochs, steps) as progress:
                try:
                    train = train_one_epoch(
                        self.step, self.model, self.data.train, self.train_settings, self.generator,
                        _stoppable(progress, self.stop), after_step,
                    )  # fmt: skip
                except Diverged as err:
                    raise Diverged(f"epoch {epoch}: {err}") from None
            if self.stop is not None:
                self.stop.check()  # a stop asked for during the last steps: this epoch is not recorded
            scores = evaluate(self.forward, eval_split, self.eval_settings)
            seconds = time.perf_counter() - started
            row = {"epoch": epoch, "train/loss": train["loss"], "train/acc": train["acc"],
                   f"{eval_name}/loss": scores["loss"], f"{eval_name}/acc": scores["acc"], "lr": lr}  # fmt: skip
            if "grad_norm" in train:
                row["grad_norm"] = train["grad_norm"]
            row["epoch_s"] = seconds
            for hook in self.hooks.values():
                hook.on_epoch_end(self, row)
            self.recorder.append_metrics(row)
            state.history.append(row)
            state.epoch = epoch
            state.train_s += train["seconds"]
            state.eval_s += seconds - train["seconds"]
            state.epoch_s.append(seconds)
            state.train_examples += train["examples"]
            # Without a validation split the weights are never chosen by test accuracy: the last ones win.
            is_best = eval_name == "test" or not state.best or scores["acc"] > state.best["val/acc"]
            if is_best:
                state.best = {"epoch": epoch} | ({"val/loss": scores["loss"], "val/acc": scores["acc"]} if eval_name == "val" else {})
                state.best_state = {k: v.detach().clone() for k, v in self.model.state_dict().items()}
            if self.checkpoints:
                self._save_checkpoints(is_best)
            self.reporter.epoch_line(epoch, self.epochs, train, scores, eval_name, seconds, best=is_best and eval_name == "val")
            if state.stop_reason is not None:
                self.reporter.print(f"stopped after epoch {epoch} of {self.epochs}: {state.stop_reason}", markup=False, soft_wrap=True)
                break
        if state.best_state is not None:
            self.model.load_state_dict(state.best_state)
        return state

    def _save_checkpoints(self, is_best: bool) -> None:
        state = self.state
        if is_best:
            self.recorder.save_checkpoint("best.pt", {"epoch": state.epoch, "model": state.best_state, "best": state.best})
        hooks = {name: hook.state_dict() for name, hook in self.hooks.items() if isinstance(hook, Stateful)}
        self.recorder.save_checkpoint(
            "last.pt",
            {"epoch": state.epoch, "model": self.model.state_dict(), "optimizer": self.optimizer.state_dict(),
             "rng": rng_state(self.generator), "best": state.best, "hooks": hooks,
             "stop": {"reason": state.stop_reason, "status": state.stop_status} if state.stop_reason else None,
             **self.checkpoint_extra},
        )  # fmt: skip


def _stoppable(progress, stop: StopRequest | None):
    """The progress callback, also the safe point where a requested stop takes effect."""
    if stop is None:
        return progress

    def report(done: int, loss: float) -> None:
        stop.check()
        if progress is not None:
            progress(done, loss)

    return report


def rng_state(generator: torch.Generator) -> dict[str, Any]:
    state = {"torch": torch.get_rng_state(), "data": generator.get_state()}
    if torch.cuda.is_available():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state
