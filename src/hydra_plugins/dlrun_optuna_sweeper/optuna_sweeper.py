"""The sweeper Hydra instantiates for hydra/sweeper=optuna: settings checked here, the search in _search.py.

No `from __future__ import annotations` and no Optuna at import: Hydra imports this module in
every dlrun command, search or not.
"""

import importlib.util
from pathlib import Path
from typing import Any

from hydra.plugins.sweeper import Sweeper
from hydra.types import HydraContext, TaskFunction
from omegaconf import DictConfig, OmegaConf

SAMPLERS = ("tpe", "random", "grid", "qmc", "cmaes")


class DlrunOptunaSweeper(Sweeper):
    """A Hydra sweeper that runs an Optuna study: each trial is one dlrun job, pruned per epoch."""

    def __init__(
        self,
        n_trials: int,
        n_jobs: int,
        objective: str,
        direction: str | None,
        sampler: str,
        pruner: str,
        pruning: Any,
        seed: int | None,
        study_name: str | None,
        storage: str | None,
        params: Any | None = None,
    ) -> None:
        pruning = OmegaConf.to_container(pruning) if isinstance(pruning, DictConfig) else dict(pruning or {})
        self.settings = {
            "n_trials": n_trials,
            "n_jobs": n_jobs,
            "objective": objective,
            "direction": direction,
            "sampler": sampler,
            "pruner": {"name": pruner, **pruning},
            "seed": seed,
            "study_name": study_name,
            "storage": storage,
        }
        self.params = {str(k): str(v) for k, v in (params or {}).items()}
        self.hydra_context: HydraContext | None = None
        self.config: DictConfig | None = None
        self.launcher: Any = None

    def setup(self, *, hydra_context: HydraContext, task_function: TaskFunction, config: DictConfig) -> None:
        """Check the settings (here, not in __init__, whose errors Hydra would wrap in its own), then make the launcher."""
        from hydra.core.plugins import Plugins

        check_settings(self.settings)
        self.hydra_context = hydra_context
        self.config = config
        self.launcher = Plugins.instance().instantiate_launcher(hydra_context=hydra_context, task_function=task_function, config=config)

    def sweep(self, arguments: list[str]) -> Any:
        from ._search import Search

        assert self.config is not None and self.hydra_context is not None
        return Search(self, self.settings).run([*(f"{k}={v}" for k, v in self.params.items()), *arguments])


def check_settings(settings: dict) -> None:
    """Raise a ConfigError naming the first setting that cannot work; fill in the direction."""
    from dlrun.analysis.study import OBJECTIVES, require_optuna, study_location
    from dlrun.errors import ConfigError
    from dlrun.training.pruning import check_pruner

    objective, direction = settings["objective"], settings["direction"]
    if objective not in OBJECTIVES:
        raise ConfigError(f"hydra.sweeper.objective={objective!r} is not one of: {', '.join(OBJECTIVES)}")
    if direction is not None and direction != OBJECTIVES[objective]:
        raise ConfigError(
            f"hydra.sweeper.direction={direction!r} with objective {objective} would search for the worst runs; "
            f"{objective} is to {OBJECTIVES[objective]} (leave direction out)"
        )
    settings["direction"] = OBJECTIVES[objective]
    if settings["sampler"] not in SAMPLERS:
        raise ConfigError(f"hydra.sweeper.sampler={settings['sampler']!r} is not one of: {', '.join(SAMPLERS)}")
    if settings["sampler"] == "cmaes" and importlib.util.find_spec("cmaes") is None:
        raise ConfigError("hydra.sweeper.sampler=cmaes needs the cmaes package, which is not installed: pip install cmaes")
    pruner = dict(settings["pruner"])
    check_pruner(pruner.pop("name"), **pruner)
    for key in ("n_trials", "n_jobs"):
        if settings[key] < 1:
            raise ConfigError(f"hydra.sweeper.{key}={settings[key]} must be >= 1")
    if settings["storage"] and not settings["study_name"]:
        study_location(settings["storage"], None, Path("."))  # raises: a storage of one's own needs a study name
    require_optuna("hydra/sweeper=optuna")
