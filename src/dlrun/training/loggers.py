"""Loggers: a run mirrored into TensorBoard or MLflow, where people already look at their runs.

The run folder stays the record (metrics.csv, summary.json, plots); a logger copies it elsewhere as
the run goes: the config when the run starts, each epoch's row, and at the end the status, the
test metrics and the plots. Each logger is a small class with three methods (`Logger`) in its own
module (tensorboard_logger.py, mlflow_logger.py), named in LOGGERS. The recipe holds them through
`Loggers`, which puts each behind a `Guarded`: a logger's first failure (a tracking server that is
down, a full disk under tb/) is one warning, and that logger is off for the rest of the run. A
logger never fails or stops a run, and never touches the run's own files.

tensorboard and mlflow are optional extras. A logger's module is imported only when it is switched
on, and imports its package only when the run starts, so a run without loggers never imports them.
A logger whose package is missing is refused before anything is trained, naming the extra.
"""

from __future__ import annotations

import importlib
import importlib.util
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol

from dlrun.analysis.runfolder import flatten, read_metrics, text
from dlrun.errors import ConfigError

if TYPE_CHECKING:
    from dlrun.training.engine import Hook, Loop


class Logger(Protocol):
    def start(self, summary: dict[str, Any]) -> None:
        """Once the data and model are ready, with summary.json so far (config, device, params, git commit;
        `resumed_from_epoch` when the run continues)."""

    def log_epoch(self, row: dict[str, float]) -> None:
        """After each epoch, with its metrics.csv row."""

    def finish(self, summary: dict[str, Any]) -> None:
        """Once, after the final summary.json and the plots are written, whatever the status."""


# name -> "module:class" of a Logger taking (run_dir, *, sweep, **the logger's config keys but `enabled`)
LOGGERS: dict[str, str] = {
    "tensorboard": "dlrun.training.tensorboard_logger:TensorBoardLogger",
    "mlflow": "dlrun.training.mlflow_logger:MLflowLogger",
}


@dataclass(frozen=True)
class SweepJob:
    """Where a job of a sweep (-m) stands: the sweep's folder and the job's number in it."""

    folder: Path
    number: int


# ---------------------------------------------------------------------------------------------
# Choosing the loggers, and the guard every call goes through.


def build_loggers(settings: dict[str, dict[str, Any]], run_dir: Path, sweep: SweepJob | None = None) -> Loggers:
    """The loggers `settings` (the config's `logger` node as plain values) switch on.

    Raises ConfigError, naming the extra to install, for one whose package is missing.
    """
    chosen = {}
    for name, options in settings.items():
        options = dict(options)
        if not options.pop("enabled", False):
            continue
        if importlib.util.find_spec(name) is None:  # tensorboard and mlflow are packages of those names
            raise ConfigError(f"logger={name} needs the {name} package, which is not installed: pip install 'dlrun[{name}]'")
        module, cls = LOGGERS[name].split(":")
        chosen[name] = getattr(importlib.import_module(module), cls)(Path(run_dir), sweep=sweep, **options)
    return Loggers(chosen)


class Loggers:
    """The run's loggers, each behind a Guarded; what recipe.execute holds."""

    def __init__(self, loggers: dict[str, Logger]):
        self.loggers = loggers
        self.hooks: dict[str, Guarded] = {}

    def start(self, summary: dict[str, Any], warn: Callable[[str], None]) -> dict[str, Hook]:
        """Start every logger; return them as the engine's hooks, to see each epoch's row."""
        self.hooks = {f"logger.{name}": Guarded(name, logger, warn) for name, logger in self.loggers.items()}
        for hook in self.hooks.values():
            hook.start(summary)
        return self.hooks

    def finish(self, summary: dict[str, Any]) -> None:
        for hook in self.hooks.values():
            hook.finish(summary)


class Guarded:
    """A logger as the loop and the recipe call it: its first exception becomes one warning, and
    the logger is off from then on. It is a Hook without state, so last.pt never holds it."""

    def __init__(self, name: str, logger: Logger, warn: Callable[[str], None]):
        self.name = name
        self.logger = logger
        self.warn = warn
        self.started = False
        self.on = True

    def start(self, summary: dict[str, Any]) -> None:
        self.started = self._call(self.logger.start, summary)

    def on_step_end(self, loop: Loop) -> None:
        pass

    def on_epoch_end(self, loop: Loop, row: dict[str, float]) -> None:
        if self.started:
            self._call(self.logger.log_epoch, row)

    def finish(self, summary: dict[str, Any]) -> None:
        if self.started:
            self._call(self.logger.finish, summary)

    def _call(self, method: Callable[[dict], None], argument: dict) -> bool:
        if not self.on:
            return False
        try:
            method(argument)
            return True
        except Exception as err:  # noqa: BLE001  whatever a logger's library raises, the run goes on
            self.on = False
            first = str(err).strip().splitlines()[0][:300] if str(err).strip() else ""
            self.warn(f"logger {self.name} is off for the rest of this run ({type(err).__name__}: {first}); the run folder is unaffected")
            return False


# ---------------------------------------------------------------------------------------------
# What both loggers send.


def display_name(folder: Path) -> str:
    """A folder as the user typed it: relative to where dlrun started (outputs/2026-11-26/14-03-11), else absolute."""
    folder = Path(folder).resolve()
    try:
        return str(folder.relative_to(Path.cwd().resolve()))
    except ValueError:
        return str(folder)


def flat_config(summary: dict[str, Any]) -> dict[str, Any]:
    """The run's config as dotted keys (`optimizer.lr`) with plain values; lists as `[128,256]`."""
    return {key: value if isinstance(value, (bool, int, float, str)) else text(value) for key, value in flatten(summary["config"]).items()}


def end_metrics(summary: dict[str, Any]) -> dict[str, float]:
    """The test metrics of a completed run, unless its rows already carry them (no validation split:
    the last row's test/* are the kept weights' own)."""
    test = summary.get("test") or {}
    if not test or "test/acc" in (summary.get("final") or {}):
        return {}
    return {"test/loss": test["loss"], "test/acc": test["acc"]}


def earlier_rows(run_dir: Path, summary: dict[str, Any]) -> list[dict[str, float]]:
    """A resumed run's rows from before the resume (metrics.csv, already cut back to its checkpoint),
    for a logger that has not seen them: one switched on at the resume, or a lost MLflow run."""
    if summary.get("resumed_from_epoch") is None:
        return []
    return [row for row in read_metrics(run_dir / "metrics.csv") if "epoch" in row]


def plot_files(run_dir: Path) -> list[Path]:
    return sorted((run_dir / "plots").glob("*.png"))
