"""One training step and one pass over a split: what the epoch loop (engine.py) calls.

The step is chosen once per run by `choose_step`, never by a branch inside the epoch:
- the hand-written step for the plain ReLU MLP (`dlrun.training.mlp_step`), bit-identical to autograd's;
- autograd's backward, then the fused optimizer kernel called directly (`dlrun.training.optim.lean_step`);
- or, with trainer.fast_path=off, autograd and torch.optim's own `optimizer.step()`.
The fast paths use torch internals; wherever one does not fit (or fails on its first call) the
run falls back to the plain step, says so once in dlrun.log, and goes on.

Data is already on the device as one tensor per split; a batch is an index into it. Each step's
loss and predictions stay on the device, and are read back (one host sync) only every
`refresh_every` steps, to check that the loss is finite and feed the progress callback, and at
the end of the epoch.

What keeps a small model's step cheap on a CPU (measured with torch.profiler; see
benchmarks/bench_speed.py): batches gathered with `index_select` (a plain copy, where `x[idx]`
goes through advanced indexing), no autocast context at all in fp32, two tensor ops per step for
the metrics instead of six, subnormal floats flushed to zero (see `flush_denormals`), and the
fast paths above.
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
from dlrun.training.distributed import SINGLE, World, shard, sum_across
from dlrun.training.mlp_step import mlp_step
from dlrun.training.optim import clear_grads, l1_penalty, l1_weights, lean_step

LossFn = Callable[[torch.Tensor, torch.Tensor], torch.Tensor]
# Called with (steps done, running mean loss) every few steps, for the progress bar.
ProgressFn = Callable[[int, float], None]
# (x, y) -> (loss, logits, gradient norm before clipping or None): forward, backward and the update.
TrainStep = Callable[[torch.Tensor, torch.Tensor], tuple[torch.Tensor, torch.Tensor, "torch.Tensor | None"]]
# Told once, in a line of dlrun.log, when a fast path does not fit and the plain one is used.
WarnFn = Callable[[str], None]


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
    grad_clip: float = 0.0  # max global L2 norm of the gradients; 0 = no clipping
    world: World = SINGLE  # under torchrun: this rank trains on its shard, and the epoch's metrics are summed over ranks


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


def choose_step(
    model: nn.Module, forward: nn.Module, optimizer: torch.optim.Optimizer, settings: StepSettings, fast_path: str, warn: WarnFn
) -> tuple[TrainStep, str]:
    """The run's training step, chosen once, and its name for summary.json.

    `forward` is the model as called (torch.compile's wrapper, or the model itself); `fast_path`
    is auto (the fastest exact step that fits) or off (autograd and optimizer.step()).
    """
    weights = l1_weights(model) if settings.l1 > 0 else []
    params = [p for group in optimizer.param_groups for p in group["params"]]
    clip = settings.grad_clip
    if fast_path == "off":
        zero_grad, update = (lambda: optimizer.zero_grad(set_to_none=True)), optimizer.step
    else:
        zero_grad, update = clear_grads(optimizer), lean_step(optimizer, warn)
    device = params[0].device if params else torch.device("cpu")

    def clip_norm() -> torch.Tensor | None:
        return torch.nn.utils.clip_grad_norm_(params, clip, foreach=True) if clip > 0 else None

    def autograd_step(x: torch.Tensor, y: torch.Tensor):
        with _autocast(device, settings.precision):
            logits = forward(x)
            loss = settings.loss_fn(logits, y)
        if weights:
            loss = loss + settings.l1 * l1_penalty(weights)
        zero_grad()
        loss.backward()
        norm = clip_norm()
        update()
        return loss, logits, norm

    by_hand = None
    if fast_path == "auto" and forward is model and not weights:
        by_hand = mlp_step(model, settings.loss_fn, settings.precision, settings.batch_size, warn)
    update_name = "optimizer.step()" if update == optimizer.step else "fused kernel"
    if by_hand is None:
        return autograd_step, f"autograd + {update_name}"
    hand: list = [by_hand]  # emptied if the hand-written step ever fails: autograd from then on

    def hand_step(x: torch.Tensor, y: torch.Tensor):
        if not hand:
            return autograd_step(x, y)
        try:
            loss, logits = hand[0](x, y)  # fills every parameter's .grad
        except (RuntimeError, TypeError, AttributeError) as err:  # a torch whose kernels differ
            warn(f"the hand-written MLP step failed ({type(err).__name__}: {str(err).strip().splitlines()[0][:120]}); using autograd")
            hand.clear()
            return autograd_step(x, y)
        norm = clip_norm()
        update()
        return loss, logits, norm

    return hand_step, f"mlp by hand + {update_name}"


def train_one_epoch(
    step_fn: TrainStep,
    model: nn.Module,
    data: Split,
    settings: StepSettings,
    generator: torch.Generator,
    progress: ProgressFn | None = None,
    after_step: Callable[[], None] | None = None,
    refresh_every: int = 20,
) -> dict[str, float]:
    """One pass over `data` in batches of `step_fn`; returns mean loss, accuracy, examples seen,
    seconds, and the mean gradient norm before clipping (when clipping is on).

    `after_step` runs after every optimizer step (a per-step learning-rate schedule).
    """
    model.train()
    device = data.x.device
    n = len(data)
    order = torch.randperm(n, generator=generator) if settings.shuffle else torch.arange(n)
    if settings.world.size > 1:  # every rank draws the same permutation and keeps its own share
        order = shard(order, settings.world)
        n = len(order)
    order = order.to(device)
    steps = num_batches(n, settings.batch_size, settings.limit_batches)
    sizes = _batch_sizes(n, settings.batch_size, steps, device)
    losses: list[torch.Tensor] = []  # one 0-d tensor per step, left on the device
    predictions: list[torch.Tensor] = []  # (batch,) predicted classes per step
    norms: list[torch.Tensor] = []  # one 0-d tensor per step, when clipping
    checked = 0  # steps whose losses are known to be finite
    start = time.perf_counter()
    with flush_denormals():
        for step in range(steps):
            idx = order[step * settings.batch_size : (step + 1) * settings.batch_size]
            x, y = data.x.index_select(0, idx), data.y.index_select(0, idx)
            loss, logits, norm = step_fn(x, y)
            if after_step is not None:
                after_step()
            losses.append(loss.detach())
            predictions.append(logits.detach().argmax(dim=1))
            if norm is not None:
                norms.append(norm)
            if (step + 1) % refresh_every == 0 or step + 1 == steps:
                _check_finite(losses, checked, steps)  # one host sync per `refresh_every` steps
                checked = step + 1
                if progress is not None:
                    done = sizes[: step + 1]
                    progress(step + 1, (torch.stack(losses).float() @ done / done.sum()).item())
    seen = min(n, steps * settings.batch_size)
    mean_loss = (torch.stack(losses).float() @ sizes / seen).item()
    correct = (torch.cat(predictions) == data.y.index_select(0, order[:seen])).sum().item()
    norm = torch.stack(norms).float().mean().item() if norms else None
    seconds = time.perf_counter() - start
    if settings.world.size > 1:  # the epoch's metrics over every rank's shard, as one process would count them
        loss_sum, correct, seen, norm_sum = sum_across([mean_loss * seen, correct, seen, norm or 0.0], device)
        mean_loss, seen, norm = loss_sum / seen, int(seen), (norm_sum / settings.world.size if norms else None)
    result = {"loss": mean_loss, "acc": correct / seen, "examples": seen, "seconds": seconds}
    if norm is not None:
        result["grad_norm"] = norm
    return result


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
