"""Typed schemas for every config node, and the value checks a type cannot express.

The YAML files in conf/ fill these dataclasses in. Hydra merges them at composition, so a misspelt
key or a wrong type fails there, with Hydra's own message, before any work starts. `validate`
runs right after composition and checks ranges (lr > 0, 0 <= p < 1, ...), naming key, value and
the allowed range in one line.

This module imports neither torch nor anything heavy: `dlrun --help` and `dlrun --cfg job` go
through it.
"""

from __future__ import annotations

import dataclasses
import math
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from hydra.core.config_store import ConfigStore
from omegaconf import MISSING, DictConfig, OmegaConf
from omegaconf.errors import InterpolationResolutionError, ValidationError

from dlrun.errors import ConfigError, DataError

# ---------------------------------------------------------------------------------------------
# Schemas. Each group option's YAML names its schema in its defaults list
# (`- /schema/model/mlp@_here_`), so the option's keys are checked against it.


@dataclass
class DatasetConfig:
    name: str = MISSING
    root: str = "data"
    download: bool = False
    val_fraction: float = 0.1
    test_fraction: float = 0.0
    normalize: bool = False
    split_seed: int = 0
    max_memory_gb: float = 0.0


@dataclass
class ImageFolderConfig:
    name: str = "image_folder"
    root: str = MISSING
    image_size: int = 32
    channels: int = 3
    corrupt: str = "skip"
    val_fraction: float = 0.1
    test_fraction: float = 0.2
    normalize: bool = False
    split_seed: int = 0
    max_memory_gb: float = 0.0


@dataclass
class TensorsConfig:
    name: str = "tensors"
    path: str = MISSING
    val_fraction: float = 0.1
    test_fraction: float = 0.2
    normalize: bool = False
    split_seed: int = 0
    max_memory_gb: float = 0.0


# The user's own code, named by `_target_` (model=custom, dataset=custom, or a file in their own
# config dir): such a node also holds the user's keys, which are theirs to check; these are the
# keys dlrun itself reads there, checked by check_own_keys. MISSING marks a key the node must have.
@dataclass
class OwnModelConfig:
    name: str = "custom"
    _target_: str = MISSING


@dataclass
class OwnDataConfig:
    name: str = MISSING
    _target_: str = MISSING
    val_fraction: float = MISSING
    test_fraction: float = MISSING
    normalize: bool = MISSING
    split_seed: int = MISSING
    max_memory_gb: float = MISSING


OWN_NODES: dict[str, type] = {"model": OwnModelConfig, "dataset": OwnDataConfig}


@dataclass
class MLPConfig:
    name: str = "mlp"
    hidden_sizes: list[int] = field(default_factory=lambda: [128, 256])
    activation: str = "relu"
    negative_slope: float = 0.01


@dataclass
class CNNConfig:
    name: str = "cnn"
    variant: str = "simple"
    channels: list[int] = field(default_factory=lambda: [32, 64])
    convs_per_stage: int = 2
    hidden_size: int = 128
    activation: str = "relu"
    negative_slope: float = 0.01


@dataclass
class RNNConfig:
    name: str = "rnn"
    cell: str = "lstm"
    hidden_size: int = 128
    num_layers: int = 1
    bidirectional: bool = False
    nonlinearity: str = "tanh"


@dataclass
class ResNetConfig:
    name: str = "resnet"
    depth: int = 20
    width: int = 16
    activation: str = "relu"
    negative_slope: float = 0.01


@dataclass
class TransformerConfig:
    name: str = "transformer"
    tokens: str = "patches"
    patch_size: int = 4
    dim: int = 64
    heads: int = 4
    layers: int = 4
    mlp_ratio: float = 2.0
    activation: str = "gelu"
    negative_slope: float = 0.01


@dataclass
class SGDConfig:
    name: str = "sgd"
    lr: float = 0.1


@dataclass
class MomentumConfig:
    name: str = "momentum"
    lr: float = 0.05
    momentum: float = 0.9
    nesterov: bool = False


@dataclass
class AdamConfig:
    name: str = "adam"
    lr: float = 0.001
    beta1: float = 0.9
    beta2: float = 0.999
    eps: float = 1e-8


@dataclass
class AdamWConfig(AdamConfig):
    name: str = "adamw"


@dataclass
class NoScheduleConfig:
    name: str = "none"


@dataclass
class StepScheduleConfig:
    name: str = "step"
    step_size: int = 10
    gamma: float = 0.1


@dataclass
class CosineScheduleConfig:
    name: str = "cosine"
    min_lr: float = 0.0
    warmup_epochs: int = 0


@dataclass
class OneCycleScheduleConfig:
    name: str = "onecycle"


@dataclass
class PlateauScheduleConfig:
    name: str = "plateau"
    factor: float = 0.1
    patience: int = 10


@dataclass
class NoAugmentConfig:
    name: str = "none"


@dataclass
class StandardAugmentConfig:
    name: str = "standard"
    padding: int = 4
    flip: bool = True


@dataclass
class DigitsAugmentConfig:
    name: str = "digits"
    degrees: float = 10.0
    translate: float = 0.1
    scale: float = 0.1


@dataclass
class ClassifyTaskConfig:
    name: str = "classify"


@dataclass
class GanTaskConfig:
    name: str = "gan"
    latent_dim: int = 100
    width: int = 64
    samples: int = 64


@dataclass
class RegularizationConfig:
    l1: float = 0.0
    l2: float = 0.0
    dropout: float = 0.0
    batchnorm: bool = False


@dataclass
class DeviceConfig:
    name: str = "auto"
    threads: int = 0


@dataclass
class EarlyStoppingConfig:
    patience: int = 0
    monitor: str = "val/acc"
    min_delta: float = 0.0


@dataclass
class TrainerConfig:
    epochs: int = 10
    batch_size: int = 64
    eval_batch_size: int = 1024
    loss: str = "cross_entropy"
    shuffle: bool = True
    limit_train_batches: int = 0
    limit_eval_batches: int = 0
    precision: str = "fp32"
    compile: bool = False
    memory_format: str = "auto"
    grad_clip: float = 0.0
    fast_path: str = "auto"
    early_stopping: EarlyStoppingConfig = field(default_factory=EarlyStoppingConfig)
    checkpoints: bool = True
    plots: bool = True
    progress: str = "auto"


@dataclass
class TensorBoardConfig:
    enabled: bool = False


@dataclass
class MLflowConfig:
    enabled: bool = False
    tracking_uri: str = ""
    experiment: str = "dlrun"
    log_checkpoints: bool = False


@dataclass
class LoggerConfig:
    tensorboard: TensorBoardConfig = field(default_factory=TensorBoardConfig)
    mlflow: MLflowConfig = field(default_factory=MLflowConfig)


@dataclass
class DlrunConfig:
    seed: int = 0
    resume: str = ""
    task: Any = MISSING
    dataset: Any = MISSING
    model: Any = MISSING
    optimizer: Any = MISSING
    scheduler: Any = MISSING
    augment: Any = MISSING
    regularization: RegularizationConfig = field(default_factory=RegularizationConfig)
    device: DeviceConfig = field(default_factory=DeviceConfig)
    trainer: TrainerConfig = field(default_factory=TrainerConfig)
    logger: LoggerConfig = field(default_factory=LoggerConfig)


SCHEMAS: dict[str, dict[str, type]] = {
    "dataset": {"dataset": DatasetConfig, "image_folder": ImageFolderConfig, "tensors": TensorsConfig},
    "model": {"mlp": MLPConfig, "cnn": CNNConfig, "rnn": RNNConfig, "resnet": ResNetConfig, "transformer": TransformerConfig},
    "optimizer": {"sgd": SGDConfig, "momentum": MomentumConfig, "adam": AdamConfig, "adamw": AdamWConfig},
    "scheduler": {
        "none": NoScheduleConfig,
        "step": StepScheduleConfig,
        "cosine": CosineScheduleConfig,
        "onecycle": OneCycleScheduleConfig,
        "plateau": PlateauScheduleConfig,
    },
    "augment": {"none": NoAugmentConfig, "standard": StandardAugmentConfig, "digits": DigitsAugmentConfig},
    "task": {"classify": ClassifyTaskConfig, "gan": GanTaskConfig},
}


def register_configs() -> None:
    """Store the schemas in Hydra's ConfigStore and register dlrun's resolvers (idempotent)."""
    cs = ConfigStore.instance()
    cs.store(name="dlrun_schema", node=DlrunConfig)
    for group, options in SCHEMAS.items():
        for name, node in options.items():
            cs.store(group=f"schema/{group}", name=name, node=node)
    if not OmegaConf.has_resolver("dlrun.unique_dir"):
        OmegaConf.register_new_resolver("dlrun.unique_dir", unique_dir, use_cache=True)
        OmegaConf.register_new_resolver("dlrun.run_dir", run_dir, use_cache=True)
        OmegaConf.register_new_resolver("dlrun.hydra_subdir", hydra_subdir)


def unique_dir(path: str) -> str:
    """Create `path`, or `path_1`, `path_2`, ... if taken, and return the one this process created.

    mkdir is atomic, so processes started in the same second never share a run folder. The
    resolver is cached per config, so every read of `hydra.run.dir` in one run sees one folder.
    """
    base = Path(path)
    base.parent.mkdir(parents=True, exist_ok=True)
    candidate, n = base, 0
    while True:
        try:
            candidate.mkdir()
            return str(candidate)
        except FileExistsError:
            n += 1
            candidate = base.with_name(f"{base.name}_{n}")


def run_dir(resume: str, default: str) -> str:
    """A single run's folder: the folder being resumed (resume=PATH), else a new unique one."""
    if resume and resume != "auto":
        if not Path(resume).expanduser().is_dir():
            raise ConfigError(f"resume={resume}: no such run folder")
        return resume
    return unique_dir(default)


RUN_FILES = ("summary.json", "metrics.csv", "checkpoints")  # a folder holding any of these holds a run


def hydra_subdir(resume: str, output_dir: str) -> str | None:
    """Where Hydra writes .hydra/ for a job in `output_dir`: nowhere when the folder already holds a
    run (resumed or kept by resume=auto), so a finished run's files are never rewritten.

    A new run started into a folder that holds another run is refused here, before Hydra writes
    anything into it.
    """
    if resume and resume != "auto":
        if not Path(resume).expanduser().is_dir():
            raise ConfigError(f"resume={resume}: no such run folder")
        if Path(output_dir).resolve() != Path(resume).expanduser().resolve():
            raise ConfigError(f"resume={resume} continues that run in its own folder; drop hydra.run.dir={output_dir}")
        return None
    folder = Path(output_dir)
    if any((folder / name).exists() for name in RUN_FILES):
        if resume == "auto":
            return None
        raise ConfigError(
            f"{output_dir} already holds a run; a new run never reuses its folder: choose another hydra.run.dir "
            f"(or hydra.sweep.dir), or continue that run with resume={output_dir} (a sweep: resume=auto)"
        )
    return ".hydra"


def config_dir() -> Path:
    """conf/ inside an installed wheel, else conf/ at the top of a source checkout."""
    here = Path(__file__).resolve().parent
    for candidate in (here / "conf", here.parents[1] / "conf"):
        if (candidate / "config.yaml").is_file():
            return candidate
    raise FileNotFoundError(f"dlrun's config tree is missing: looked in {here / 'conf'} and {here.parents[1] / 'conf'}")


# ---------------------------------------------------------------------------------------------
# Value checks after composition.


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
    if OmegaConf.to_container(cfg.model) != dataclasses.asdict(MLPConfig()):
        raise ConfigError(
            f"model={cfg.model.name} does not apply to task=gan: it trains DCGAN's own generator and discriminator, "
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


def data_cache_dir() -> Path:
    """Where datasets extracted from read-only .gz files are kept: $DLRUN_CACHE, else
    $XDG_CACHE_HOME/dlrun, else ~/.cache/dlrun. A home folder that does not exist is an error, not
    something to create."""
    if os.environ.get("DLRUN_CACHE"):
        return Path(os.environ["DLRUN_CACHE"])
    if os.environ.get("XDG_CACHE_HOME"):
        return Path(os.environ["XDG_CACHE_HOME"]) / "dlrun"
    try:
        home = Path.home()
    except RuntimeError as err:  # no HOME and no password entry
        raise DataError("the data cache goes in ~/.cache/dlrun, but there is no home folder; set DLRUN_CACHE to a writable folder") from err
    if not home.is_dir():
        state = "is not a folder" if home.exists() else "does not exist"
        where = f"the data cache goes in {home / '.cache' / 'dlrun'}, but the home folder {home} {state}"
        raise DataError(f"{where}; set DLRUN_CACHE to a writable folder")
    return home / ".cache" / "dlrun"
