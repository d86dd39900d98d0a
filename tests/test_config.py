"""The config tree: every option composes, schemas catch typos, value checks name key and range."""

from __future__ import annotations

import re
import subprocess
import sys

import pytest
from hydra.errors import ConfigCompositionException
from omegaconf.errors import ConfigKeyError, ValidationError

from dlrun.checks import validate
from dlrun.config import config_dir
from dlrun.errors import ConfigError

GROUPS = ["dataset", "model", "optimizer", "regularization", "augment", "task", "device", "logger", "experiment", "debug"]


def group_options() -> list[tuple[str, str]]:
    """Every (group, option) in conf/, so a new option file is tested automatically."""
    return [(group, path.stem) for group in GROUPS for path in sorted((config_dir() / group).glob("*.yaml"))]


# Options that leave a key for the command line, and a value for it.
REQUIRED = {
    "model=custom": "model._target_=my_project.nets.TinyResNet",
    "dataset=custom": "dataset._target_=my_project.data.load",
    "dataset=image_folder": "dataset.root=photos",
    "dataset=tensors": "dataset.path=features.npz",
}


@pytest.mark.parametrize(("group", "option"), group_options())
def test_every_option_composes_and_passes_validation(compose_cfg, group, option):
    required = REQUIRED.get(f"{group}={option}")
    if required:
        with pytest.raises(ConfigError, match=rf"^{re.escape(required.split('=')[0])} has no value; this choice needs one, e\.g\. "):
            validate(compose_cfg(f"{group}={option}"))
    cfg = compose_cfg(f"{group}={option}", *([required] if required else []))
    validate(cfg)
    if group in ("dataset", "model", "optimizer", "augment", "task"):
        assert cfg[group].name == option


def test_regularization_options_merge_as_a_list(compose_cfg):
    cfg = compose_cfg("regularization=[l2,dropout]", "regularization.l2=1e-3")
    assert cfg.regularization.l2 == pytest.approx(1e-3)
    assert cfg.regularization.dropout == pytest.approx(0.2)
    assert cfg.regularization.l1 == 0.0 and cfg.regularization.batchnorm is False


def test_resnet20_cifar10_is_the_papers_recipe(compose_cfg):
    cfg = compose_cfg("experiment=resnet20_cifar10")
    assert (cfg.dataset.name, cfg.model.name, cfg.model.depth, cfg.model.width) == ("cifar10", "resnet", 20, 16)
    assert (cfg.optimizer.name, cfg.optimizer.lr, cfg.optimizer.momentum, cfg.regularization.l2) == ("momentum", 0.1, 0.9, 1e-4)
    assert (cfg.trainer.batch_size, cfg.trainer.epochs, cfg.augment.name, cfg.augment.padding) == (128, 164, "standard", 4)


def test_seed_mnist_is_the_tutorial(compose_cfg):
    cfg = compose_cfg("experiment=seed_mnist")
    assert cfg.dataset.name == "mnist" and cfg.dataset.val_fraction == 0.0
    assert cfg.model.name == "mlp" and list(cfg.model.hidden_sizes) == [128, 256] and cfg.model.activation == "relu"
    assert cfg.optimizer.name == "adam" and cfg.optimizer.lr == 0.01
    assert (cfg.trainer.batch_size, cfg.trainer.epochs, cfg.trainer.loss) == (64, 16, "cross_entropy")
    assert (cfg.regularization.l1, cfg.regularization.l2, cfg.regularization.dropout, cfg.regularization.batchnorm) == (0, 0, 0, False)


@pytest.mark.parametrize(
    "override",
    ["optimizer.lrr=0.1", "trainer.epochs=ten", "model.hidden_sizes=abc", "regularization.l3=1", "device.name=[1]"],
)
def test_schema_rejects_misspelt_keys_and_wrong_types(compose_cfg, override):
    with pytest.raises((ConfigCompositionException, ConfigKeyError, ValidationError)):
        compose_cfg(override)


@pytest.mark.parametrize(
    ("override", "message"),
    [
        ("+optimizer.momentum=0.9", "optimizer.momentum is not a key of optimizer (adam); its keys are: beta1, beta2, eps, lr, name"),
        ("+trainer.epoch=3", "trainer.epoch is not a key of trainer; its keys are:"),
        ("+lr=0.1", "lr is not a key of the top level; its keys are:"),
    ],
)
def test_keys_added_with_plus_are_checked_against_the_schema(compose_cfg, override, message):
    with pytest.raises(ConfigError, match=message.replace("(", r"\(").replace(")", r"\)")):
        validate(compose_cfg(override))


def test_unknown_option_lists_the_choices(compose_cfg):
    with pytest.raises(Exception, match="Available options in 'model'") as info:
        compose_cfg("model=gpt")
    assert all(name in str(info.value) for name in ("mlp", "rnn", "resnet", "transformer"))


@pytest.mark.parametrize(
    ("override", "message"),
    [
        ("optimizer.lr=-1", "optimizer.lr=-1.0 must be > 0"),
        ("optimizer.lr=0", "optimizer.lr=0.0 must be > 0"),
        ("optimizer.lr=nan", "optimizer.lr=nan must be a finite number"),
        ("regularization.l2=inf", "regularization.l2=inf must be a finite number"),
        ("regularization.dropout=1.0", "regularization.dropout=1.0 must be in [0, 1)"),
        ("trainer.epochs=0", "trainer.epochs=0 must be >= 1"),
        ("trainer.batch_size=0", "trainer.batch_size=0 must be >= 1"),
        ("model.activation=swish", "model.activation='swish' is not one of: relu, sigmoid, tanh, leaky_relu, gelu"),
        ("trainer.loss=hinge", "trainer.loss='hinge' is not one of: cross_entropy, mse"),
        ("dataset.val_fraction=1.5", "dataset.val_fraction=1.5 must be in [0, 1)"),
        ("model.hidden_sizes=[128,0]", "model.hidden_sizes=[128, 0] must hold sizes >= 1"),
        ("model=cnn model.variant=resnet", "model.variant='resnet' is not one of: simple, lenet5, vgg, alexnet"),
        ("model=resnet model.depth=21", "model.depth=21 must be 6n+2 with n >= 1: 8, 14, 20, 32, 44, 56, 110, ..."),
        ("model=resnet model.depth=2", "model.depth=2 must be >= 8"),
        ("model=transformer model.dim=30", "model.dim=30 must be a multiple of model.heads=4"),
        ("model=transformer model.tokens=pixels", "model.tokens='pixels' is not one of: patches, rows"),
        ("model=transformer model.mlp_ratio=0", "model.mlp_ratio=0.0 must be > 0"),
    ],
)
def test_out_of_range_values_name_key_value_and_range(compose_cfg, override, message):
    with pytest.raises(ConfigError) as info:
        validate(compose_cfg(*override.split()))
    assert str(info.value) == message


def test_bad_value_is_one_line_and_a_nonzero_exit_code(tmp_path):
    """A process's own behaviour: exit code and stderr, so a real subprocess."""
    result = subprocess.run([sys.executable, "-m", "dlrun", "optimizer.lr=-0.5"], cwd=tmp_path, capture_output=True, text=True, timeout=120)
    assert result.returncode == 2
    assert result.stderr.strip() == "dlrun: error: optimizer.lr=-0.5 must be > 0"
    assert "Traceback" not in result.stdout + result.stderr


def test_cfg_job_prints_the_composed_config(tmp_path):
    result = subprocess.run(
        [sys.executable, "-m", "dlrun", "--cfg", "job", "model=cnn"], cwd=tmp_path, capture_output=True, text=True, timeout=120
    )
    assert result.returncode == 0, result.stderr
    assert "variant: simple" in result.stdout and "name: cnn" in result.stdout
    assert not (tmp_path / "outputs").exists()  # printing the config makes no run folder


def test_a_removed_group_choice_is_one_line(compose_cfg):
    cfg = compose_cfg("~model")
    with pytest.raises(ConfigError, match=r"^model has no option chosen; choose one with model=NAME$"):
        validate(cfg)
