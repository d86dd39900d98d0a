"""A run's config nodes as plain values: the keyword arguments that data.py, models.py, optim.py,
hooks.py and augment.py take, and the run's one-line name.

Readings of the config alone, without torch: recipe.py, gan.py, `dlrun eval` and the benchmarks
share them.
"""

from __future__ import annotations

from typing import Any

from omegaconf import DictConfig, OmegaConf

from dlrun.analysis.runfolder import shown


def model_kwargs(cfg: DictConfig) -> dict[str, Any]:
    kwargs = OmegaConf.to_container(cfg.model, resolve=True)
    kwargs.pop("name")
    return {**kwargs, "dropout": cfg.regularization.dropout, "batchnorm": cfg.regularization.batchnorm}


def optimizer_kwargs(cfg: DictConfig) -> dict[str, Any]:
    kwargs = OmegaConf.to_container(cfg.optimizer, resolve=True)
    kwargs.pop("name")
    return {**kwargs, "weight_decay": cfg.regularization.l2}


def schedule_kwargs(cfg: DictConfig) -> dict[str, Any]:
    kwargs = OmegaConf.to_container(cfg.scheduler, resolve=True)
    kwargs.pop("name")
    return kwargs


def augment_kwargs(cfg: DictConfig) -> dict[str, Any]:
    """The augment node as keyword arguments: none for a run saved before dlrun had augmentation."""
    node = cfg.get("augment")
    return OmegaConf.to_container(node, resolve=True) if node is not None else {"name": "none"}


def dataset_kwargs(cfg: DictConfig) -> dict[str, Any]:
    kwargs = OmegaConf.to_container(cfg.dataset, resolve=True)
    kwargs.pop("name")
    return kwargs


def logger_settings(cfg: DictConfig) -> dict[str, dict[str, Any]]:
    """The `logger` node as plain values; {} for a run saved before loggers existed (resumed)."""
    return OmegaConf.to_container(cfg.logger, resolve=True) if "logger" in cfg else {}


def model_label(cfg: DictConfig) -> str | None:
    """A built-in model's name with what sets its kind apart ('cnn simple', 'rnn lstm', 'resnet 20',
    'mlp'), or None for the user's own model (its keys are its own)."""
    if "_target_" in cfg.model:
        return None
    kind = cfg.model.get("variant") or cfg.model.get("cell") or cfg.model.get("depth")  # cnn.variant / rnn.cell / resnet.depth
    return f"{cfg.model.name} {kind}" if kind else cfg.model.name


def describe_experiment(cfg: DictConfig) -> str:
    """A one-line name such as 'mlp + adam (lr 0.01) on mnist, l2 + dropout'."""
    reg = cfg.regularization
    switches = {"l1": reg.l1 > 0, "l2": reg.l2 > 0, "dropout": reg.dropout > 0, "batchnorm": reg.batchnorm}
    parts = [name for name, on in switches.items() if on]
    augment = augment_kwargs(cfg)["name"]
    parts += [f"augment {augment}"] if augment != "none" else []
    model = model_label(cfg) or str(cfg.model._target_).rsplit(".", 1)[-1]  # the user's own: its class or function name
    text = f"{model} + {cfg.optimizer.name} (lr {shown(cfg.optimizer.lr)}) on {cfg.dataset.name}"
    return text + (f", {' + '.join(parts)}" if parts else "")
