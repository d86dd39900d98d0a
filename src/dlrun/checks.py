"""The value checks a config's types cannot express, run right after composition.

`validate` checks ranges (lr > 0, 0 <= p < 1, ...), choices, keys a schema does not know, a user's
own model's and data's keys, and combinations that cannot work together (a classifier's setting
that task=gan would ignore, say), naming key, value and what is allowed in one line
(dlrun.errors.ConfigError). Like dlrun.config, it imports neither torch nor anything heavy: a bad
value is reported before torch is imported.
"""

from __future__ import annotations

import dataclasses
import math

from omegaconf import DictConfig, OmegaConf
from omegaconf.errors import InterpolationResolutionError, ValidationError

from dlrun.config import OWN_NODES, MLPConfig
from dlrun.errors import ConfigError

ACTIVATIONS = ("relu", "sigmoid", "tanh", "leaky_relu", "gelu")
CHOICES: dict[str, tuple[str, ...]] = {
    "model.activation": ACTIVATIONS,
    "model.variant": ("simple", "lenet5", "vgg", "alexnet"),
    "model.tokens": ("patches", "rows"),
    "model.cell": ("rnn", "lstm", "gru"),
    "model.nonlinearity": ("tanh", "relu"),
    "trainer.loss": ("cross_entropy", "mse"),
    "trainer.precision": ("fp32", "bf16"),
    "trainer.progress": ("auto", "on", "off"),
    "trainer.fast_path": ("auto", "off"),
    "trainer.memory_format": ("auto", "channels_last", "contiguous"),
    "trainer.early_stopping.monitor": ("val/acc", "val/loss"),
    "device.name": ("auto", "cpu", "cuda", "mps"),
    "dataset.channels": (1, 3),
    "dataset.corrupt": ("skip", "refuse"),
}
# key -> (low, high, low inclusive, high inclusive); None means unbounded.
RANGES: dict[str, tuple[float | None, float | None, bool, bool]] = {
    "seed": (0, 2**63 - 1, True, True),
    "dataset.split_seed": (0, 2**63 - 2, True, True),
    "optimizer.lr": (0.0, None, False, True),
    "optimizer.momentum": (0.0, 1.0, True, False),
    "optimizer.beta1": (0.0, 1.0, True, False),
    "optimizer.beta2": (0.0, 1.0, True, False),
    "optimizer.eps": (0.0, None, False, True),
    "regularization.l1": (0.0, None, True, True),
    "regularization.l2": (0.0, None, True, True),
    "regularization.dropout": (0.0, 1.0, True, False),
    "dataset.val_fraction": (0.0, 1.0, True, False),
    "dataset.test_fraction": (0.0, 1.0, True, False),
    "dataset.image_size": (1, None, True, True),
    "dataset.max_memory_gb": (0.0, None, True, True),
    "trainer.epochs": (1, None, True, True),
    "trainer.batch_size": (1, None, True, True),
    "trainer.eval_batch_size": (1, None, True, True),
    "trainer.limit_train_batches": (0, None, True, True),
    "trainer.limit_eval_batches": (0, None, True, True),
    "device.threads": (0, None, True, True),
    "trainer.grad_clip": (0.0, None, True, True),
    "trainer.early_stopping.patience": (0, None, True, True),
    "trainer.early_stopping.min_delta": (0.0, None, True, True),
    "scheduler.step_size": (1, None, True, True),
    "scheduler.gamma": (0.0, 1.0, False, True),
    "scheduler.min_lr": (0.0, None, True, True),
    "scheduler.warmup_epochs": (0, None, True, True),
    "scheduler.factor": (0.0, 1.0, False, False),
    "scheduler.patience": (0, None, True, True),
    "model.hidden_size": (1, None, True, True),
    "model.num_layers": (1, None, True, True),
    "model.negative_slope": (0.0, None, True, True),
    "model.convs_per_stage": (1, None, True, True),
    "model.depth": (8, None, True, True),
    "model.width": (1, None, True, True),
    "model.patch_size": (1, None, True, True),
    "model.dim": (1, None, True, True),
    "model.heads": (1, None, True, True),
    "model.layers": (1, None, True, True),
    "model.mlp_ratio": (0.0, None, False, True),
    "augment.padding": (0, None, True, True),
    "augment.degrees": (0.0, 180.0, True, True),
    "augment.translate": (0.0, 1.0, True, False),
    "augment.scale": (0.0, 1.0, True, False),
    "task.latent_dim": (1, None, True, True),
    "task.width": (1, None, True, True),
    "task.samples": (1, None, True, True),
}


def _range_text(low, high, low_inc, high_inc) -> str:
    def show(bound) -> str:
        return str(bound) if isinstance(bound, int) else f"{bound:g}"

    if high is None:
        return f"must be {'>=' if low_inc else '>'} {show(low)}"
    left = "[" if low_inc else "("
    right = "]" if high_inc else ")"
    return f"must be in {left}{show(low)}, {show(high)}{right}"


def check_keys(cfg: DictConfig) -> None:
    """Keys added with Hydra's `+key=value` bypass the schemas' struct check: refuse any that the schema lacks."""
    nodes = [("", cfg)]
    for prefix, node in nodes:  # the list grows as it is walked, so nested nodes (logger.mlflow) are checked too
        nodes += [(f"{prefix}{k}.", node[k]) for k in node
                  if k != "hydra" and not OmegaConf.is_missing(node, k) and isinstance(node[k], DictConfig)]  # fmt: skip
        schema = OmegaConf.get_type(node)
        if not dataclasses.is_dataclass(schema):
            continue
        known = {f.name for f in dataclasses.fields(schema)}
        extra = sorted(set(node.keys()) - known - {"hydra"})
        if extra:
            where = f"{prefix[:-1]} ({node.name})" if "name" in known and prefix else (prefix[:-1] or "the top level")
            raise ConfigError(f"{prefix}{extra[0]} is not a key of {where}; its keys are: {', '.join(sorted(known))}")


REQUIRED_EXAMPLES = {"model._target_": "my_project.nets.TinyResNet", "dataset._target_": "my_project.data.load",
                     "dataset.root": "~/photos/cats_vs_dogs", "dataset.path": "features.npz"}  # fmt: skip


def check_own_keys(cfg: DictConfig) -> None:
    """A node naming the user's code by `_target_` keeps the user's keys unchecked; dlrun's own keys in
    it (OWN_NODES) must be there, with their types."""
    for group, schema in OWN_NODES.items():
        node = cfg.get(group)
        if not isinstance(node, DictConfig) or "_target_" not in node or dataclasses.is_dataclass(OmegaConf.get_type(node)):
            continue
        ours = {f.name: f.type for f in dataclasses.fields(schema)}  # name -> its type's name (annotations are strings here)
        try:
            given = {k: node[k] for k in ours if k in node and not OmegaConf.is_missing(node, k)}
            checked = OmegaConf.merge(OmegaConf.structured(schema), given)
        except ValidationError as err:
            key = str(err.key)
            raise ConfigError(f"{group}.{key}={node.get(key)!r} must be a {ours.get(key, 'value of its type')}") from err
        absent = sorted(OmegaConf.missing_keys(checked) - {"_target_"})
        if absent:
            raise ConfigError(
                f"{group}: a config naming {group}._target_ also needs dlrun's keys {', '.join(absent)}; "
                f"start its file with `defaults: [custom]` to have them"
            )
        target = None if OmegaConf.is_missing(node, "_target_") else node["_target_"]
        if target is not None and (not isinstance(target, str) or not target.strip()):
            raise ConfigError(f"{group}._target_={target!r} must name a Python object, e.g. {REQUIRED_EXAMPLES[f'{group}._target_']}")


def validate(cfg: DictConfig) -> None:
    """Raise ConfigError naming the first unknown key or the first value out of range."""
    try:  # a value such as seed=${nope} that cannot be resolved is the user's to fix, in one line
        OmegaConf.to_container(cfg, resolve=True, throw_on_missing=False)
    except InterpolationResolutionError as err:
        raise ConfigError(f"{err.full_key}: {str(err).splitlines()[0]}") from err
    missing = [name for name in cfg if OmegaConf.is_missing(cfg, name)]
    if missing:  # e.g. `~model=` removed a group's choice
        raise ConfigError(f"{missing[0]} has no option chosen; choose one with {missing[0]}=NAME")
    check_keys(cfg)
    check_own_keys(cfg)
    unset = sorted(OmegaConf.missing_keys(cfg))
    if unset:  # a key that an option leaves for the command line, such as dataset=tensors's path
        example = REQUIRED_EXAMPLES.get(unset[0], "VALUE")
        raise ConfigError(f"{unset[0]} has no value; this choice needs one, e.g. {unset[0]}={example}")
    theirs = "model." if "_target_" in cfg.model else None  # an own model's keys are the user's to check
    for key, allowed in CHOICES.items():
        value = OmegaConf.select(cfg, key)
        if value is not None and value not in allowed and not key.startswith(theirs or "-"):
            raise ConfigError(f"{key}={value!r} is not one of: {', '.join(map(str, allowed))}")
    for key, (low, high, low_inc, high_inc) in RANGES.items():
        value = OmegaConf.select(cfg, key)
        if value is None or key.startswith(theirs or "-"):
            continue
        if not math.isfinite(value):
            raise ConfigError(f"{key}={value} must be a finite number")
        too_low = value < low if low_inc else value <= low
        too_high = high is not None and (value > high if high_inc else value >= high)
        if too_low or too_high:
            raise ConfigError(f"{key}={value} {_range_text(low, high, low_inc, high_inc)}")
    for key in ("model.hidden_sizes", "model.channels"):
        sizes = OmegaConf.select(cfg, key)
        if sizes is not None and not theirs and any(s < 1 for s in sizes):
            raise ConfigError(f"{key}={list(sizes)} must hold sizes >= 1")
    check_model_shape(cfg)
    check_task(cfg)
    fractions = cfg.dataset.val_fraction + cfg.dataset.test_fraction
    if fractions >= 1.0:
        raise ConfigError(f"dataset.val_fraction + dataset.test_fraction = {fractions:g} must be < 1")
    check_combinations(cfg)


def check_model_shape(cfg: DictConfig) -> None:
    """A ResNet's depth is 6n + 2; a Transformer's width splits evenly across its heads (built-in models only)."""
    if "_target_" in cfg.model:  # the user's own model: its keys are its own
        return
    depth = OmegaConf.select(cfg, "model.depth")
    if depth is not None and (depth - 2) % 6:
        raise ConfigError(f"model.depth={depth} must be 6n+2 with n >= 1: 8, 14, 20, 32, 44, 56, 110, ...")
    dim, heads = OmegaConf.select(cfg, "model.dim"), OmegaConf.select(cfg, "model.heads")
    if dim is not None and heads is not None and dim % heads:
        raise ConfigError(f"model.dim={dim} must be a multiple of model.heads={heads}")


def check_task(cfg: DictConfig) -> None:
    """task=gan trains DCGAN's own two networks on the images alone: a classifier's setting that it
    would silently ignore is refused, naming the key."""
    if OmegaConf.select(cfg, "task.name") != "gan":
        return
    model, default = OmegaConf.to_container(cfg.model), dataclasses.asdict(MLPConfig())  # model=mlp's defaults: no choice made
    if model != default:
        changed = [f"model.{k}={OmegaConf.select(cfg, f'model.{k}')}" for k in model if model.get(k) != default.get(k)]
        what = f"model={cfg.model.name}" if model.get("name") != default["name"] or not changed else changed[0]
        raise ConfigError(
            f"{what} does not apply to task=gan: it trains DCGAN's own generator and discriminator, "
            "sized by task.latent_dim and task.width; drop the model overrides"
        )
    trainer, reg, augment = cfg.trainer, cfg.regularization, OmegaConf.select(cfg, "augment.name")
    refused = [
        ("trainer.loss", trainer.loss, trainer.loss != "cross_entropy", "its loss is the GAN's non-saturating one"),
        ("regularization.l1", reg.l1, reg.l1 > 0, "only regularization.l2 (weight decay) applies to the two networks"),
        ("regularization.dropout", reg.dropout, reg.dropout > 0, "DCGAN's networks have no dropout"),
        ("regularization.batchnorm", reg.batchnorm, reg.batchnorm, "DCGAN's networks have batch norm where DCGAN puts it"),
        (
            "trainer.early_stopping.patience",
            trainer.early_stopping.patience,
            trainer.early_stopping.patience > 0,
            "there is no validation accuracy or loss to watch",
        ),  # fmt: skip
        ("scheduler", "plateau", cfg.scheduler.name == "plateau", "it watches val/loss, which a GAN has not"),
        ("augment", augment, augment not in (None, "none"), "the generator would learn the augmented images"),
        ("dataset.normalize", True, cfg.dataset.normalize, "the GAN scales the images to [-1, 1] itself"),
        ("trainer.precision", trainer.precision, trainer.precision != "fp32", "task=gan trains in fp32"),
        ("trainer.compile", True, trainer.compile, "task=gan runs its networks uncompiled"),
        ("trainer.memory_format", "channels_last", trainer.memory_format == "channels_last", "task=gan keeps its networks contiguous"),
        ("trainer.grad_clip", trainer.grad_clip, trainer.grad_clip > 0, "task=gan does not clip gradients"),
        ("trainer.shuffle", False, not trainer.shuffle, "it draws a new seeded order every epoch"),
    ]
    for key, value, on, why in refused:
        if on:
            shown = str(value).lower() if isinstance(value, bool) else value
            raise ConfigError(f"{key}={shown} does not apply to task=gan ({why}); drop it")


def check_combinations(cfg: DictConfig) -> None:
    """Settings that are fine alone but cannot work together."""
    no_val = cfg.dataset.val_fraction == 0
    if no_val and cfg.trainer.early_stopping.patience > 0:
        raise ConfigError(
            f"trainer.early_stopping.patience={cfg.trainer.early_stopping.patience} needs a validation split, and "
            "dataset.val_fraction=0 leaves none (stopping on test accuracy would tune on the test set); "
            "set dataset.val_fraction, e.g. 0.1"
        )
    if no_val and cfg.scheduler.name == "plateau":
        raise ConfigError(
            "scheduler=plateau lowers the lr when val/loss stalls, and dataset.val_fraction=0 leaves no validation split; "
            "set dataset.val_fraction, e.g. 0.1, or choose another scheduler"
        )
    if OmegaConf.select(cfg, "logger.mlflow.enabled") and not cfg.logger.mlflow.experiment.strip():
        raise ConfigError("logger.mlflow.experiment='' must name an MLflow experiment, e.g. logger.mlflow.experiment=mnist")
    warmup = OmegaConf.select(cfg, "scheduler.warmup_epochs")
    if warmup is not None and warmup >= cfg.trainer.epochs:
        raise ConfigError(f"scheduler.warmup_epochs={warmup} must be below trainer.epochs={cfg.trainer.epochs}")
