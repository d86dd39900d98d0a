"""The training loop: plain functions, read top to bottom.

Data is already on the device as one tensor per split; a batch is an index into it. Each step's
loss and predictions stay on the device, and are read back (one host sync) only every
`refresh_every` steps, to check that the loss is finite and feed the progress callback, and at
the end of the epoch.

What keeps a small model's step cheap on a CPU (measured with torch.profiler; see
benchmarks/bench_speed.py): batches gathered with `index_select` (a plain copy, where `x[idx]`
goes through advanced indexing), no autocast context at all in fp32, two tensor ops per step for
the metrics instead of six, subnormal floats flushed to zero (see `flush_denormals`), the fused
optimizer kernel called without torch.optim's Python around it (`dlrun.training.optim.lean_step`), and,
for the plain ReLU MLP, a hand-written forward and backward (`dlrun.training.mlp_step`).
"""

from __future__ import annotations

import contextlib
import math
import time
from collections.abc import Callable
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from dlrun.errors import Diverged
from dlrun.training.data import Split
from dlrun.training.mlp_step import mlp_step
from dlrun.training.optim import clear_grads, l1_penalty, l1_weights, lean_step

LossFn = Callable[[torch.Tensor, torch.Tensor], torch.Tensor]
# Called with (steps done, running mean loss) every few steps, for the progress bar.
ProgressFn = Callable[[int, float], None]


def make_loss(name: str, num_classes: int) -> LossFn:
    """cross_entropy on logits, or mse between the softmax and one-hot targets."""
    if name == "cross_entropy":
        return F.cross_entropy
    if name == "mse":
        return lambda logits, y: F.mse_loss(logits.softmax(dim=-1), F.one_hot(y, num_classes).to(logits.dtype))
    raise ValueError(f"unknown loss {name!r}; choose one of: cross_entropy, mse")


@dataclass(frozen=True)
class StepSettings:
    batch_size: int
    loss_fn: LossFn
    l1: float = 0.0
    limit_batches: int = 0  # 0 = every batch
    shuffle: bool = True
    precision: str = "fp32"  # fp32 | bf16


def num_batches(n: int, batch_size: int, limit: int = 0) -> int:
    steps = math.ceil(n / batch_size)
    return min(steps, limit) if limit else steps


def _autocast(device: torch.device, precision: str):
    """bf16 autocast for the forward pass; in fp32 no context at all (entering a disabled one still costs)."""
    if precision == "bf16":
        return torch.autocast(device.type, dtype=torch.bfloat16)
    return contextlib.nullcontext()


@contextlib.contextmanager
def flush_denormals():
    """Treat subnormal floats as zero on the CPU while training or evaluating.

    Adam's moment estimates for weights fed by pixels that are almost always zero (MNIST's border)
    decay by beta each step until they are subnormal (< 1.2e-38); x86 CPUs handle those through a
    slow microcode path. After one MNIST epoch ~12% of the MLP's Adam state is subnormal, which made
    later epochs up to 1.5x slower than the first. Flushing them changes no result that matters.
    torch offers no getter for this flag, so it is restored to its default (off) afterwards.
    The flag is the calling thread's; `dlrun.training.device.flush_denormals_everywhere` reaches torch's
    CPU worker threads as well.
    """
    torch.set_flush_denormal(True)
    try:
        yield
    finally:
        torch.set_flush_denormal(False)


def _batch_sizes(n: int, batch_size: int, steps: int, device: torch.device) -> torch.Tensor:
    """(steps,) float sizes of the first `steps` batches: all full but maybe the last."""
    sizes = torch.full((steps,), float(batch_size), device=device)
    sizes[-1] = min(batch_size, n - (steps - 1) * batch_size)
    return sizes


def train_one_epoch(
    model: nn.Module,
    optimizer: torch.optim.Optimizer,
    data: Split,
    settings: StepSettings,
    generator: torch.Generator,
    progress: ProgressFn | None = None,
    refresh_every: int = 20,
) -> dict[str, float]:
    """One pass over `data` in batches; returns mean loss, accuracy, examples seen and seconds."""
    model.train()
    device = data.x.device
    n = len(data)
    order = torch.randperm(n, generator=generator) if settings.shuffle else torch.arange(n)
    order = order.to(device)
    steps = num_batches(n, settings.batch_size, settings.limit_batches)
    sizes = _batch_sizes(n, settings.batch_size, steps, device)
    weights = l1_weights(model) if settings.l1 > 0 else []
    losses: list[torch.Tensor] = []  # one 0-d tensor per step, left on the device
    predictions: list[torch.Tensor] = []  # (batch,) predicted classes per step
    checked = 0  # steps whose losses are known to be finite
    zero_grad, optimizer_step = clear_grads(optimizer), lean_step(optimizer)
    by_hand = None if weights else mlp_step(model, settings.loss_fn, settings.precision, settings.batch_size)
    start = time.perf_counter()
    with flush_denormals():
        for step in range(steps):
            idx = order[step * settings.batch_size : (step + 1) * settings.batch_size]
            x, y = data.x.index_select(0, idx), data.y.index_select(0, idx)
            if by_hand is not None:
                loss, logits = by_hand(x, y)  # fills the gradients
            else:
                with _autocast(device, settings.precision):
                    logits = model(x)
                    loss = settings.loss_fn(logits, y)
                if weights:
                    loss = loss + settings.l1 * l1_penalty(weights)
                zero_grad()
                loss.backward()
            optimizer_step()
            losses.append(loss.detach())
            predictions.append(logits.detach().argmax(dim=1))
            if (step + 1) % refresh_every == 0 or step + 1 == steps:
                _check_finite(losses, checked, steps)  # one host sync per `refresh_every` steps
                checked = step + 1
                if progress is not None:
                    done = sizes[: step + 1]
                    progress(step + 1, (torch.stack(losses).float() @ done / done.sum()).item())
    seen = min(n, steps * settings.batch_size)
    mean_loss = (torch.stack(losses).float() @ sizes / seen).item()
    correct = (torch.cat(predictions) == data.y.index_select(0, order[:seen])).sum().item()
    return {"loss": mean_loss, "acc": correct / seen, "examples": seen, "seconds": time.perf_counter() - start}


def _check_finite(losses: list[torch.Tensor], first: int, steps: int) -> None:
    """Raise Diverged naming the first step from `first` on whose loss is NaN or infinite."""
    recent = torch.stack(losses[first:])
    bad = (~torch.isfinite(recent)).nonzero()
    if len(bad):
        k = int(bad[0, 0])
        raise Diverged(f"the training loss became {recent[k].item()} at step {first + k + 1} of {steps}")


@torch.no_grad()
def evaluate(model: nn.Module, data: Split, settings: StepSettings, keep_predictions: bool = False) -> dict:
    """Mean loss and accuracy over `data` in large batches; optionally every prediction (on the CPU)."""
    model.eval()
    device = data.x.device
    steps = num_batches(len(data), settings.batch_size, settings.limit_batches)
    loss_sum = torch.zeros((), device=device)
    correct = torch.zeros((), device=device, dtype=torch.long)
    predictions = []
    seen = 0
    with flush_denormals():
        for step in range(steps):
            x = data.x[step * settings.batch_size : (step + 1) * settings.batch_size]
            y = data.y[step * settings.batch_size : (step + 1) * settings.batch_size]
            with _autocast(device, settings.precision):
                logits = model(x)
                loss_sum += settings.loss_fn(logits, y).float() * len(y)
            pred = logits.argmax(dim=1)
            correct += (pred == y).sum()
            seen += len(y)
            if keep_predictions:
                predictions.append(pred)
    result = {"loss": loss_sum.item() / seen, "acc": correct.item() / seen, "examples": seen}
    if keep_predictions:
        result["predictions"] = torch.cat(predictions).cpu()
        result["targets"] = data.y[:seen].cpu()
    return result
