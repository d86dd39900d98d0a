"""Typed schemas for every config node, where the config tree lives, and its resolvers.

The YAML files in conf/ fill these dataclasses in. Hydra merges them at composition, so a misspelt
key or a wrong type fails there, with Hydra's own message, before any work starts. What a type
cannot express (ranges, choices, combinations) is checked right after, by dlrun.checks.

This module imports neither torch nor anything heavy: `dlrun --help` and `dlrun --cfg job` go
through it.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from hydra.core.config_store import ConfigStore
from omegaconf import MISSING, OmegaConf

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
