"""Optimizer builders: a closed registry of name -> builder taking flat keyword arguments.

L2 regularization is weight decay applied to parameters of two or more dimensions only (weight
matrices and conv kernels); biases and normalization parameters are never decayed. L1 is a
penalty added to the loss (see `l1_penalty`), since no torch optimizer implements it.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable

import torch
from torch import nn

from dlrun.training.lazy_dynamo import defer_dynamo, first_step

# lean_step calls private parts of torch: the fused kernels torch.optim itself calls, and its global
# hook registries (to know that no hook would be skipped). Looked up once, here; a torch that lacks
# any of them runs every step through optimizer.step(), with one line in dlrun.log saying why.
_KERNELS = {name: getattr(torch, name, None) for name in ("_fused_adam_", "_fused_adamw_", "_fused_sgd_")}
try:
    from torch.optim.optimizer import _global_optimizer_post_hooks, _global_optimizer_pre_hooks
except ImportError:
    _global_optimizer_pre_hooks = _global_optimizer_post_hooks = None


def param_groups(model: nn.Module, weight_decay: float) -> list[dict]:
    """Two groups: >= 2-D weights with `weight_decay`, everything else with none.

    Without weight decay the split would change nothing but cost a second fused kernel launch
    (and its Python bookkeeping) every step, so all parameters go in one group.
    """
    if weight_decay == 0:
        return [{"params": [p for p in model.parameters() if p.requires_grad], "weight_decay": 0.0}]
    decay = [p for p in model.parameters() if p.requires_grad and p.dim() >= 2]
    no_decay = [p for p in model.parameters() if p.requires_grad and p.dim() < 2]
    return [{"params": decay, "weight_decay": weight_decay}, {"params": no_decay, "weight_decay": 0.0}]


def _fused(params: list[dict]) -> bool:
    """Fused kernels (one kernel for the whole step) exist for CPU and CUDA float tensors."""
    tensors = [p for g in params for p in g["params"]]
    return bool(tensors) and all(p.device.type in ("cpu", "cuda") and p.is_floating_point() for p in tensors)


def build_sgd(params: list[dict], *, lr: float) -> torch.optim.Optimizer:
    return torch.optim.SGD(params, lr=lr, fused=_fused(params))


def build_momentum(params: list[dict], *, lr: float, momentum: float = 0.9, nesterov: bool = False) -> torch.optim.Optimizer:
    return torch.optim.SGD(params, lr=lr, momentum=momentum, nesterov=nesterov, fused=_fused(params))


def build_adam(params: list[dict], *, lr: float, beta1: float = 0.9, beta2: float = 0.999, eps: float = 1e-8) -> torch.optim.Optimizer:
    return torch.optim.Adam(params, lr=lr, betas=(beta1, beta2), eps=eps, fused=_fused(params))


def build_adamw(params: list[dict], *, lr: float, beta1: float = 0.9, beta2: float = 0.999, eps: float = 1e-8) -> torch.optim.Optimizer:
    return torch.optim.AdamW(params, lr=lr, betas=(beta1, beta2), eps=eps, fused=_fused(params))


OPTIMIZERS: dict[str, Callable[..., torch.optim.Optimizer]] = {
    "sgd": build_sgd,
    "momentum": build_momentum,
    "adam": build_adam,
    "adamw": build_adamw,
}


def build_optimizer(name: str, model: nn.Module, *, weight_decay: float = 0.0, **kwargs) -> torch.optim.Optimizer:
    """Look `name` up in OPTIMIZERS; `weight_decay` (L2) reaches >= 2-D weights only."""
    if name not in OPTIMIZERS:
        raise ValueError(f"unknown optimizer {name!r}; choose one of: {', '.join(OPTIMIZERS)}")
    defer_dynamo()  # torch.optim would import torch._dynamo (seconds) for markers that mean nothing without it
    return OPTIMIZERS[name](param_groups(model, weight_decay), **kwargs)


def l1_weights(model: nn.Module) -> list[nn.Parameter]:
    """The parameters an L1 penalty applies to: >= 2-D weights, as for L2."""
    return [p for p in model.parameters() if p.requires_grad and p.dim() >= 2]


def l1_penalty(weights: Iterable[torch.Tensor]) -> torch.Tensor:
    """sum(|w|) over the given tensors, as one scalar tensor."""
    return torch.stack([w.abs().sum() for w in weights]).sum()


def _kernel_name(optimizer: torch.optim.Optimizer) -> str:
    """The fused kernel torch.optim calls for `optimizer`, chosen by its class (whether AdamW
    subclasses Adam differs between torch versions)."""
    if isinstance(optimizer, torch.optim.AdamW) or optimizer.defaults.get("decoupled_weight_decay"):
        return "_fused_adamw_"
    return "_fused_adam_" if isinstance(optimizer, torch.optim.Adam) else "_fused_sgd_"


def lean_unavailable(optimizer: torch.optim.Optimizer) -> str | None:
    """Why this torch lacks what `lean_step` needs for `optimizer`, or None when it has it all."""
    missing = [] if _KERNELS[_kernel_name(optimizer)] is not None else [f"torch.{_kernel_name(optimizer)}"]
    if _global_optimizer_pre_hooks is None or _global_optimizer_post_hooks is None:
        missing.append("torch.optim.optimizer._global_optimizer_pre_hooks")
    if not all(hasattr(optimizer, a) for a in ("_optimizer_step_pre_hooks", "_optimizer_step_post_hooks")):
        missing.append("Optimizer._optimizer_step_pre_hooks")
    return f"torch {torch.__version__} lacks {', '.join(missing)}" if missing else None


def _lean_supported(optimizer: torch.optim.Optimizer) -> bool:
    """Whether `lean_step` can replace optimizer.step(): fused Adam, AdamW or SGD, plain settings, no hooks."""
    if type(optimizer) not in (torch.optim.Adam, torch.optim.AdamW, torch.optim.SGD):
        return False
    if optimizer._optimizer_step_pre_hooks or optimizer._optimizer_step_post_hooks:
        return False
    if _global_optimizer_pre_hooks or _global_optimizer_post_hooks:
        return False
    if getattr(optimizer, "grad_scale", None) is not None or getattr(optimizer, "found_inf", None) is not None:
        return False
    tensors = [p for g in optimizer.param_groups for p in g["params"]]
    if not tensors or len({(p.device, p.dtype) for p in tensors}) != 1 or tensors[0].is_complex():
        return False
    plain = ("fused", True), ("maximize", False), ("differentiable", False), ("capturable", False), ("amsgrad", False)
    return all(g.get(key, value) == value for g in optimizer.param_groups for key, value in plain) and all(
        isinstance(v, float) for g in optimizer.param_groups for v in (g["lr"], *g.get("betas", ()))
    )


def lean_step(optimizer: torch.optim.Optimizer, warn: Callable[[str], None] | None = None) -> Callable[[], None]:
    """A function doing what optimizer.step() does, for a fused optimizer, without its Python overhead.

    torch.optim's step() spends ~0.3 ms of Python per call on a 2.5 GHz core (profiler range,
    hooks, per-parameter state checks, grouping tensors by device) around one fused kernel that,
    for the tutorial's MLP, itself takes ~0.2 ms. Once the optimizer's state exists (after its
    first real step, or after load_state_dict), the returned function calls the same kernel with
    the same arguments on the optimizer's own state tensors, so parameters and state are
    bit-identical to optimizer.step() and checkpoints are unchanged. Where it cannot be exact
    (hooks, amsgrad, maximize, a tensor lr, mixed devices, a parameter without a gradient) it
    calls optimizer.step() instead. Make a new one after changing the optimizer's param groups.

    Where this torch lacks a private part it needs, or the kernel's first call fails (a changed
    signature), every step goes through optimizer.step(), and `warn` is told once why.
    """
    why_not = lean_unavailable(optimizer)
    if why_not is not None:
        if warn is not None:
            warn(f"fast optimizer step off: {why_not}; using optimizer.step()")
        return optimizer.step
    if not _lean_supported(optimizer):
        return optimizer.step
    name = _kernel_name(optimizer)
    adam = name != "_fused_sgd_"
    plan: list[tuple[dict, list[torch.Tensor], list[list[torch.Tensor]], torch.Tensor | None, list[tuple[int, ...] | None]]] = []
    broken: list[str] = []  # why the kernel failed, once it has: optimizer.step() from then on

    def state_names(group: dict) -> tuple[str, ...]:
        if adam:
            return "exp_avg", "exp_avg_sq", "step"
        return ("momentum_buffer",) if group["momentum"] != 0 else ()

    def as_laid_out(t: torch.Tensor, order: tuple[int, ...] | None) -> torch.Tensor:
        return t.permute(order) if order and t.dim() == len(order) else t  # a 0-d step count stays as it is

    def make_plan() -> bool:
        """Gather the state tensors, or return False if the optimizer has not made them yet."""
        for group in optimizer.param_groups:
            params, names = group["params"], state_names(group)
            if not all(name in optimizer.state.get(p, {}) for p in params for name in names):
                plan.clear()
                return False
            counter = None
            if adam:  # each parameter's step count becomes a view of one tensor, so one add_ counts them all
                counter = torch.stack([optimizer.state[p]["step"] for p in params])
                for i, p in enumerate(params):
                    optimizer.state[p]["step"] = counter[i]
            # The kernels are elementwise but copy a non-contiguous tensor in and out (~0.4 ms for the
            # MLP's input-major first layer, see models.input_major; every conv weight of a
            # channels_last model); a permuted view of every operand is contiguous there, and the
            # update is the same.
            orders = [dense_order(p) for p in params]
            state = [[as_laid_out(optimizer.state[p][name], o) for p, o in zip(params, orders, strict=True)] for name in names]
            plan.append((group, [as_laid_out(p, o) for p, o in zip(params, orders, strict=True)], state, counter, orders))
        return True

    def update(group: dict, params: list, state: list, counter: torch.Tensor | None, grads: list) -> None:
        kernel = _KERNELS[name]
        if adam:
            exp_avgs, exp_avg_sqs, steps = state
            counter.add_(1)  # torch.optim's _foreach_add_ over the step tensors costs ~0.1 ms on a CPU
            beta1, beta2 = group["betas"]
            try:
                kernel(params, grads, exp_avgs, exp_avg_sqs, [], steps, amsgrad=False, lr=group["lr"], beta1=beta1, beta2=beta2,
                       weight_decay=group["weight_decay"], eps=group["eps"], maximize=False)  # fmt: skip
            except BaseException:
                counter.sub_(1)  # nothing else was touched
                raise
        else:
            buffers = state[0] if state else []  # no momentum: no buffers
            kernel(params, grads, buffers, weight_decay=group["weight_decay"], momentum=group["momentum"], lr=group["lr"],
                   dampening=group["dampening"], nesterov=group["nesterov"], maximize=False, is_first_step=False)  # fmt: skip

    def step() -> None:
        if broken or (not plan and not make_plan()):
            first_step(optimizer)  # torch.optim's own step: the first one creates the state; after a kernel failure, every one
            return
        grads = [[p.grad for p in group["params"]] for group, *_ in plan]
        if any(g is None for group_grads in grads for g in group_grads):
            optimizer.step()
            return
        for i, ((group, params, state, counter, orders), group_grads) in enumerate(zip(plan, grads, strict=True)):
            laid_out = [as_laid_out(g, o) for g, o in zip(group_grads, orders, strict=True)]
            try:
                update(group, params, state, counter, laid_out)
            except (TypeError, RuntimeError) as err:
                if i > 0:  # an earlier group was already updated: a fall-back would update it twice
                    raise
                broken.append(f"{type(err).__name__}: {str(err).strip().splitlines()[0][:120]}")
                if warn is not None:
                    warn(f"fast optimizer step off: torch.{name} failed ({broken[0]}); using optimizer.step()")
                optimizer.step()
                return

    return step


def dense_order(t: torch.Tensor) -> tuple[int, ...] | None:
    """A permutation of `t`'s dimensions under which a non-contiguous `t` is contiguous: a transposed
    matrix (models.input_major) or a channels_last conv weight; None where `t` is contiguous already
    (or lies some other way)."""
    if t.is_contiguous():
        return None
    if t.dim() == 2 and t.t().is_contiguous():
        return (1, 0)
    if t.dim() == 4 and t.is_contiguous(memory_format=torch.channels_last):
        return (0, 2, 3, 1)  # (out, kernel rows, kernel columns, in): how channels_last stores it
    return None


def clear_grads(optimizer: torch.optim.Optimizer) -> Callable[[], None]:
    """optimizer.zero_grad(set_to_none=True) as a plain loop (the method's profiler range and hook checks cost ~0.1 ms)."""
    params = [p for g in optimizer.param_groups for p in g["params"]]

    def clear() -> None:
        for p in params:
            p.grad = None

    return clear
