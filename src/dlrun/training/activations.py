"""Activation functions by name, shared by every model family (models.py, convnets.py, transformer.py)."""

from __future__ import annotations

from torch import nn


def make_activation(name: str, negative_slope: float = 0.01) -> nn.Module:
    """A fresh activation module by name (relu, sigmoid, tanh, leaky_relu, gelu)."""
    if name == "leaky_relu":
        return nn.LeakyReLU(negative_slope)
    table: dict[str, type[nn.Module]] = {"relu": nn.ReLU, "sigmoid": nn.Sigmoid, "tanh": nn.Tanh, "gelu": nn.GELU}
    if name not in table:
        raise ValueError(f"unknown activation {name!r}; choose one of: {', '.join([*table, 'leaky_relu'])}")
    return table[name]()


# Non-decreasing activations: for these, act(max(a, b)) == max(act(a), act(b)), so a max-pool may run
# before the activation instead of after it, on a quarter of the values (2x2 pooling), with the same
# outputs. GELU dips below zero for negative inputs and is not in the set.
MONOTONIC = frozenset({"relu", "leaky_relu", "sigmoid", "tanh"})  # leaky_relu's negative_slope is >= 0 (checks.py)
