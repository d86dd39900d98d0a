"""dlrun's Hydra callbacks, named in conf/config.yaml under hydra.callbacks.

Hydra instantiates each one and calls every method of its Callback interface, so they subclass
hydra's Callback for its no-op defaults; the work itself lives in dlrun.analysis.
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

from hydra.experimental.callback import Callback

from dlrun.analysis.runfolder import find_runs
from dlrun.analysis.sweep import summarize_sweep


class SweepSummary(Callback):
    """Hydra callback: summarize the sweep's jobs when the sweep ends."""

    def on_multirun_end(self, config: Any, **kwargs: Any) -> None:
        """Summarize; then, if any job failed, diverged or was cut short, end the sweep with exit code 1."""
        folder = sweep_folder(config)
        summarize_sweep(folder)
        jobs = find_runs([folder], [])
        unfinished = [run for run in jobs if run.status != "completed"]
        if unfinished:
            print(
                f"dlrun: {len(unfinished)} of {len(jobs)} jobs did not complete: "
                + ", ".join(f"{run.id} {run.status}" for run in unfinished),
                file=sys.stderr,
            )
            raise SystemExit(1)


def sweep_folder(config: Any) -> Path:
    """The sweep's folder, from the config Hydra hands to on_multirun_end.

    hydra.sweep.dir is `${dlrun.unique_dir:multirun/...}`, a cached resolver: the sweeper resolved
    it on this same config object to create the folder, so reading it again returns that folder
    and creates none.
    """
    return Path(str(config.hydra.sweep.dir))
