"""Optimizer builders: a closed registry of name -> builder taking flat keyword arguments.

L2 regularization is weight decay applied to parameters of two or more dimensions only (weight
matrices and conv kernels); biases and normalization parameters are never decayed. L1 is a
penalty added to the loss (see `l1_penalty`), since no torch optimizer implements it.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable

import torch
from torch import nn


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
    return OPTIMIZERS[name](param_groups(model, weight_decay), **kwargs)


def l1_weights(model: nn.Module) -> list[nn.Parameter]:
    """The parameters an L1 penalty applies to: >= 2-D weights, as for L2."""
    return [p for p in model.parameters() if p.requires_grad and p.dim() >= 2]


def l1_penalty(weights: Iterable[torch.Tensor]) -> torch.Tensor:
    """sum(|w|) over the given tensors, as one scalar tensor."""
    return torch.stack([w.abs().sum() for w in weights]).sum()
