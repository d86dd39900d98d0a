"""Shared fixtures: compose the real config in-process, and run the real CLI in-process."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pytest
from hydra import compose, initialize_config_dir
from hydra.core.global_hydra import GlobalHydra
from omegaconf import DictConfig

from dlrun.config import config_dir, register_configs


@pytest.fixture(autouse=True)
def _isolated(tmp_path_factory, monkeypatch):
    """Keep every test's data cache out of the user's home, and Hydra's global state clean."""
    monkeypatch.setenv("DLRUN_CACHE", str(tmp_path_factory.getbasetemp() / "dlrun-cache"))
    GlobalHydra.instance().clear()
    yield
    GlobalHydra.instance().clear()


@pytest.fixture
def compose_cfg() -> Callable[..., DictConfig]:
    """compose_cfg("model=cnn", ...) -> the composed config, as `dlrun model=cnn ...` would see it."""
    register_configs()

    def _compose(*overrides: str) -> DictConfig:
        GlobalHydra.instance().clear()
        with initialize_config_dir(str(config_dir()), version_base="1.3"):
            return compose("config", overrides=list(overrides))

    return _compose


@pytest.fixture
def run_dlrun(tmp_path) -> Callable[..., Path]:
    """run_dlrun("model=cnn", ...) runs the real `dlrun` entry point in-process into a fresh folder
    and returns that folder."""
    from dlrun.cli import main

    counter = iter(range(1000))

    def _run(*overrides: str, run_dir: Path | None = None) -> Path:
        folder = run_dir or tmp_path / f"run{next(counter)}"
        code = main([*overrides, f"hydra.run.dir={folder}"])
        if code:  # an error outside the run (composition, a refused folder): as the command would exit
            raise SystemExit(code)
        return folder

    return _run


@pytest.fixture
def interrupt_at_epoch(monkeypatch) -> Callable[[int | None], None]:
    """interrupt_at_epoch(3): runs started after this are stopped as Ctrl-C would stop them, during
    epoch 3 (epochs 1 and 2 are recorded and checkpointed); interrupt_at_epoch(None) ends that."""
    import signal

    from dlrun.training import recipe
    from dlrun.training.signals import Interrupted

    original = recipe.build_loop

    class InterruptAt:
        def __init__(self, epoch: int):
            self.epoch = epoch

        def on_step_end(self, loop) -> None:
            if loop.state.epoch + 1 == self.epoch:
                raise Interrupted(signal.SIGINT)

        def on_epoch_end(self, loop, row) -> None:
            pass

    def arm(epoch: int | None) -> None:
        if epoch is None:
            monkeypatch.setattr(recipe, "build_loop", original)
            return

        def build(*args, **kwargs):
            loop, step_name = original(*args, **kwargs)
            loop.hooks["interrupt"] = InterruptAt(epoch)
            return loop, step_name

        monkeypatch.setattr(recipe, "build_loop", build)

    return arm
