"""The sweeper's config, registered as hydra/sweeper=optuna (and hydra/sweeper=dlrun_optuna).

No `from __future__ import annotations` here: Hydra reads the dataclass fields' types at runtime.
"""

import importlib.util
from dataclasses import dataclass, field

from hydra.core.config_store import ConfigStore


@dataclass
class PruningConf:
    min_epochs: int = 1  # the first epoch after which a trial may be pruned, >= 1
    startup_trials: int = 5  # median: trials that run to the end before any is pruned, >= 0
    reduction_factor: int = 3  # successive_halving, hyperband: 1 in this many trials goes on at each rung, >= 2


@dataclass
class DlrunOptunaSweeperConf:
    _target_: str = "hydra_plugins.dlrun_optuna_sweeper.optuna_sweeper.DlrunOptunaSweeper"
    n_trials: int = 20  # trials the study should hold, finished or pruned (a resumed study counts its earlier ones)
    n_jobs: int = 1  # trials asked for and launched together (parallel with a parallel launcher, e.g. joblib)
    objective: str = "val/acc"  # val/acc (best validation accuracy) | val/loss (validation loss of that epoch)
    direction: str | None = None  # maximize | minimize; null: what the objective needs (val/acc up, val/loss down)
    sampler: str = "tpe"  # tpe | random | grid | qmc | cmaes (needs the cmaes package)
    pruner: str = "median"  # median | successive_halving | hyperband | none
    pruning: PruningConf = field(default_factory=PruningConf)
    seed: int | None = 0  # the sampler's seed (offset by the study's trials when it resumes); null: a fresh one
    study_name: str | None = None  # null: "dlrun" in the default storage; needed with a storage of one's own
    storage: str | None = None  # null: sqlite:///<sweep dir>/optuna.db | an Optuna storage URL | journal:FILE
    params: dict[str, str] | None = None  # the search space: key -> choice(...), range(...), interval(...), tag(log, ...)


# Hydra's official hydra-optuna-sweeper also registers `optuna`: where it is installed, that name
# stays its own and this sweeper is hydra/sweeper=dlrun_optuna.
_OFFICIAL = importlib.util.find_spec("hydra_plugins.hydra_optuna_sweeper") is not None
for _name in ("dlrun_optuna",) if _OFFICIAL else ("optuna", "dlrun_optuna"):
    ConfigStore.instance().store(group="hydra/sweeper", name=_name, node=DlrunOptunaSweeperConf, provider="dlrun")
