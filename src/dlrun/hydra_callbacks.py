"""dlrun's Hydra callbacks, named in conf/config.yaml under hydra.callbacks.

Hydra instantiates each one and calls every method of its Callback interface, so they subclass
hydra's Callback for its no-op defaults; the work itself lives in dlrun.analysis.
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

from hydra.experimental.callback import Callback
from omegaconf import OmegaConf

from dlrun.analysis.runfolder import FINAL_STATUSES, find_runs
from dlrun.analysis.sweep import summarize_sweep


class SweepSummary(Callback):
    """Hydra callback: summarize the sweep's jobs when the sweep ends."""

    def on_multirun_end(self, config: Any, **kwargs: Any) -> None:
        """Summarize (an Optuna search: its study too); then, if any job failed, diverged or was cut
        short, end the sweep with exit code 1. A pruned trial is finished: the search stopped it."""
        folder = sweep_folder(config)
        summarize_sweep(folder)
        jobs = find_runs([folder], [])
        if is_search(config):
            from dlrun.analysis.study import launched_folders, study_location, summarize_study

            sweeper = config.hydra.sweeper
            location = study_location(sweeper.storage, sweeper.study_name, folder)
            summarize_study(folder, *location)
            launched = launched_folders(*location)  # a resumed search answers for its own trials, not for earlier failures
            jobs = [run for run in jobs if run.path.resolve() in launched]
        unfinished = [run for run in jobs if run.status not in FINAL_STATUSES]  # these do not fail the sweep
        if unfinished:
            print(
                f"dlrun: {len(unfinished)} of {len(jobs)} jobs did not complete: "
                + ", ".join(f"{run.id} {run.status}" for run in unfinished),
                file=sys.stderr,
            )
            raise SystemExit(1)


def is_search(config: Any) -> bool:
    """Did dlrun's Optuna sweeper run this multirun?"""
    target = OmegaConf.select(config, "hydra.sweeper._target_", default="")
    return str(target).startswith("hydra_plugins.dlrun_optuna_sweeper.")


def sweep_folder(config: Any) -> Path:
    """The sweep's folder, from the config Hydra hands to on_multirun_end.

    hydra.sweep.dir is `${dlrun.unique_dir:multirun/...}`, a cached resolver: the sweeper resolved
    it on this same config object to create the folder, so reading it again returns that folder
    and creates none.
    """
    return Path(str(config.hydra.sweep.dir))
