"""Pruning an Optuna trial: the run reports its objective after every epoch and stops when the pruner says so.

A run is a trial when the search's sweeper started it (`dlrun -m hydra/sweeper=optuna ...`): the
sweeper sets the variables below in the job's environment (hydra.job.env_set), with any launcher,
in-process or not. The run reopens the study from its storage, builds the pruner from the
settings the sweeper stored in the study, and plugs `Pruning` into the epoch loop as a hook. A
pruned run ends like an early-stopped one, its folder complete, with status `pruned`.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

from dlrun.analysis.report import human
from dlrun.errors import ConfigError

if TYPE_CHECKING:
    from dlrun.training.engine import Loop

# The job's environment, set by the sweeper for each trial.
TRIAL_ENV = "DLRUN_OPTUNA_TRIAL"  # the trial's number in its study
STUDY_ENV = "DLRUN_OPTUNA_STUDY"  # the study's name
STORAGE_ENV = "DLRUN_OPTUNA_STORAGE"  # the study's storage URL

PRUNERS = ("median", "successive_halving", "hyperband", "none")


def check_pruner(name: str, *, min_epochs: int = 1, startup_trials: int = 5, reduction_factor: int = 3) -> None:
    """Raise a ConfigError naming the pruner setting that cannot work (without importing Optuna)."""
    if name not in PRUNERS:
        raise ConfigError(f"hydra.sweeper.pruner={name!r} is not one of: {', '.join(PRUNERS)}")
    if min_epochs < 1 or startup_trials < 0 or reduction_factor < 2:
        raise ConfigError(
            f"hydra.sweeper.pruning: min_epochs={min_epochs} must be >= 1, startup_trials={startup_trials} >= 0, "
            f"reduction_factor={reduction_factor} >= 2"
        )


def build_pruner(name: str, *, min_epochs: int = 1, startup_trials: int = 5, reduction_factor: int = 3) -> Any:
    """Optuna's pruner `name`. A trial is judged first after `min_epochs` epochs.

    median: stop a trial whose best value so far is worse than the median of the other trials at
    the same epoch, once `startup_trials` trials have finished. successive_halving, hyperband:
    keep the best 1/`reduction_factor` of the trials at each rung (min_epochs, min_epochs *
    reduction_factor, ...). none: never stop a trial (its values are still reported).
    """
    from optuna import pruners

    check_pruner(name, min_epochs=min_epochs, startup_trials=startup_trials, reduction_factor=reduction_factor)
    if name == "median":
        return pruners.MedianPruner(n_startup_trials=startup_trials, n_warmup_steps=min_epochs)
    if name == "successive_halving":
        return pruners.SuccessiveHalvingPruner(min_resource=min_epochs, reduction_factor=reduction_factor)
    if name == "hyperband":
        return pruners.HyperbandPruner(min_resource=min_epochs, reduction_factor=reduction_factor)
    return pruners.NopPruner()


class Pruning:
    """Report the epoch's objective to the trial; ask the loop to stop when the pruner says so."""

    def __init__(self, trial: Any, objective: str, pruner: str, storage: str):
        self.trial = trial
        self.objective = objective
        self.pruner = pruner
        self.storage = storage

    def describe(self) -> dict[str, Any]:
        """summary.json's `trial`: which trial of which study this run is, and what it is scored by."""
        return {"number": self.trial.number, "study": self.trial.study.study_name, "storage": self.storage, "objective": self.objective}

    def on_step_end(self, loop: Loop) -> None:
        pass

    def on_epoch_end(self, loop: Loop, row: dict[str, float]) -> None:
        value = row.get(self.objective)
        if value is None or not math.isfinite(value):
            return
        epoch = int(row["epoch"])
        self.trial.report(value, step=epoch)
        if epoch < loop.epochs and self.trial.should_prune():
            shown = human(self.objective, value)  # as compare and the search's lines show it
            loop.request_stop(f"pruned by the {self.pruner} pruner ({self.objective} {shown} at epoch {epoch})", status="pruned")


def trial_pruning(environ: Mapping[str, str]) -> Pruning | None:
    """The Pruning hook of the trial this process runs, or None when it runs none.

    The trial is reopened from its study's storage by number; the pruner is rebuilt from the
    settings the sweeper stored in the study, so every launcher (in-process, worker processes,
    Slurm) prunes alike.
    """
    number = environ.get(TRIAL_ENV)
    if number is None:
        return None
    from dlrun.analysis.study import OBJECTIVE_ATTR, PRUNER_ATTR, open_storage, require_optuna

    optuna = require_optuna("an Optuna trial")
    storage = open_storage(environ[STORAGE_ENV])
    name = environ[STUDY_ENV]
    try:
        study_id = storage.get_study_id_from_name(name)
        trial_id = storage.get_trial_id_from_study_id_trial_number(study_id, int(number))
    except KeyError as err:
        raise ConfigError(f"{TRIAL_ENV}={number}: study {name!r} in {environ[STORAGE_ENV]} has no such trial") from err
    settings = dict(storage.get_study_user_attrs(study_id).get(PRUNER_ATTR) or {"name": "none"})
    pruner_name = settings.pop("name")
    study = optuna.load_study(study_name=name, storage=storage, pruner=build_pruner(pruner_name, **settings))
    objective = study.user_attrs.get(OBJECTIVE_ATTR, "val/acc")
    return Pruning(optuna.trial.Trial(study, trial_id), objective, pruner_name, environ[STORAGE_ENV])
