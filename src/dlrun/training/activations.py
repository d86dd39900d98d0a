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
