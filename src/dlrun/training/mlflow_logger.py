"""The MLflow logger: an MLflow run per dlrun run, and a parent run per sweep.

Talks to the tracking store through MlflowClient, never through mlflow's module-level active run,
so runs in one process (tests, a sweep's basic launcher) never share state. See loggers.py for how
loggers plug into a run.
"""

from __future__ import annotations

import fcntl
import json
import logging
import os
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from dlrun.analysis.runfolder import text
from dlrun.errors import ConfigError
from dlrun.training.loggers import SweepJob, display_name, earlier_rows, end_metrics, flat_config, plot_files
from dlrun.training.storage import write_json

MLFLOW_STATUS = {"completed": "FINISHED", "pruned": "FINISHED", "failed": "FAILED", "diverged": "FAILED", "interrupted": "KILLED"}
# A tracking server that is down should cost seconds, once, not MLflow's default of 7 retries with
# a growing back-off and 120 s timeouts; a user's own settings of these variables win.
HTTP_DEFAULTS = {"MLFLOW_HTTP_REQUEST_MAX_RETRIES": "1", "MLFLOW_HTTP_REQUEST_BACKOFF_FACTOR": "1", "MLFLOW_HTTP_REQUEST_TIMEOUT": "10"}
RUN_FILE = "mlflow.json"  # in a run folder: the MLflow run it is logged to; in a sweep folder: the sweep's parent run
PARAM_VALUE_LIMIT = 6000  # MLflow's longest param value; the tests hold both limits to mlflow.utils.validation's
BATCH_LIMIT = 100  # params or tags per log_batch call (MAX_PARAMS_TAGS_PER_BATCH)


class MLflowLogger:
    """An MLflow run per dlrun run: params = the flattened config, metrics per epoch (step = epoch),
    tags, and at the end the status, the test metrics and the artifacts (plots, summary.json, and
    best.pt with log_checkpoints). A sweep's jobs are child runs of one parent run. The run's id is
    kept in RUN/mlflow.json, so a resumed run continues the same MLflow run."""

    def __init__(self, run_dir: Path, *, tracking_uri: str, experiment: str, log_checkpoints: bool, sweep: SweepJob | None = None):
        self.run_dir = run_dir
        self.tracking_uri = tracking_uri
        self.experiment = experiment
        self.log_checkpoints = log_checkpoints
        self.sweep = sweep
        self.client = None
        self.run_id = ""
        self.parent_id = ""

    def start(self, summary: dict[str, Any]) -> None:
        for name, value in HTTP_DEFAULTS.items():
            os.environ.setdefault(name, value)
        import mlflow
        from mlflow.tracking import MlflowClient

        # MLflow says at INFO level that it creates its database's tables, between the run's epoch
        # lines; its warnings and errors still show.
        logging.getLogger("mlflow").setLevel(max(logging.WARNING, logging.getLogger("mlflow").level))
        self.tracking_uri = absolute_uri(self.tracking_uri or mlflow.get_tracking_uri())
        if self.sweep is not None:
            # Jobs may run at once, in other processes (joblib, Slurm): one at a time creates the
            # store (a new sqlite database is set up by the client), the experiment and the parent run.
            with file_lock(self.sweep.folder / ".mlflow.lock"):
                self.client = MlflowClient(self.tracking_uri)
                experiment_id = self._experiment_id()
                self.parent_id = self._parent_run(experiment_id)
        else:
            self.client = MlflowClient(self.tracking_uri)
            experiment_id = self._experiment_id()
        saved = read_run_file(self.run_dir / RUN_FILE)
        resumed = summary.get("resumed_from_epoch") is not None and saved.get("tracking_uri") == self.tracking_uri
        if resumed and self._exists(saved.get("run_id")):
            self.run_id = saved["run_id"]
            self.client.update_run(self.run_id, status="RUNNING")
        else:
            tags = {"mlflow.note.content": summary.get("experiment", ""), "mlflow.source.name": "dlrun",
                    "dlrun.run_dir": str(self.run_dir.resolve()), "dlrun.status": "running",
                    "dlrun.version": (summary.get("versions") or {}).get("dlrun", ""),
                    "dlrun.command": summary.get("command", "")[:5000]}  # fmt: skip
            if summary.get("git_commit"):
                tags["mlflow.source.git.commit"] = summary["git_commit"]
            if self.sweep is not None:
                tags |= {"mlflow.parentRunId": self.parent_id, "dlrun.sweep_dir": str(self.sweep.folder.resolve()),
                         "dlrun.job": str(self.sweep.number)}  # fmt: skip
            run = self.client.create_run(experiment_id, run_name=display_name(self.run_dir), tags=tags)
            self.run_id = run.info.run_id
            write_json(self.run_dir / RUN_FILE, {"tracking_uri": self.tracking_uri, "experiment_id": experiment_id, "run_id": self.run_id})
            for row in earlier_rows(self.run_dir, summary):
                self.log_epoch(row)
        self._log_params(flat_config(summary))
        if self.parent_id:
            self.client.update_run(self.parent_id, status="RUNNING")

    def log_epoch(self, row: dict[str, float]) -> None:
        from mlflow.entities import Metric

        now = int(time.time() * 1000)
        step = int(row["epoch"])  # an int in a row, a float in a row read back from metrics.csv
        self.client.log_batch(self.run_id, metrics=[Metric(k, float(v), now, step) for k, v in row.items() if k != "epoch"])

    def finish(self, summary: dict[str, Any]) -> None:
        from mlflow.entities import Metric, RunTag

        status = summary.get("status", "failed")
        now = int(time.time() * 1000)
        step = summary.get("epochs_completed") or 0
        metrics = [Metric(k, float(v), now, step) for k, v in end_metrics(summary).items()]
        tags = [RunTag("dlrun.status", status)] + ([RunTag("dlrun.error", summary["error"][:5000])] if summary.get("error") else [])
        self.client.log_batch(self.run_id, metrics=metrics, tags=tags)
        for path in plot_files(self.run_dir):
            self.client.log_artifact(self.run_id, str(path), "plots")
        self.client.log_artifact(self.run_id, str(self.run_dir / "summary.json"))
        best = self.run_dir / "checkpoints" / "best.pt"
        if self.log_checkpoints and best.is_file():
            self.client.log_artifact(self.run_id, str(best), "checkpoints")
        self.client.set_terminated(self.run_id, MLFLOW_STATUS.get(status, "FAILED"))
        if self.parent_id:
            # The parent is a sweep's folder of runs: finished once a job ends, its end time the last job's.
            self.client.set_terminated(self.parent_id, "FINISHED")

    def _experiment_id(self) -> str:
        found = self.client.get_experiment_by_name(self.experiment)
        if found is None:
            return self.client.create_experiment(self.experiment)
        if found.lifecycle_stage == "deleted":
            raise ConfigError(f"MLflow experiment {self.experiment!r} is deleted; restore it, or name another: logger.mlflow.experiment")
        return found.experiment_id

    def _parent_run(self, experiment_id: str) -> str:
        """The sweep's parent run, named after the sweep's folder; its id is kept in SWEEP/mlflow.json."""
        path = self.sweep.folder / RUN_FILE
        saved = read_run_file(path)
        same_store = (saved.get("tracking_uri"), saved.get("experiment_id")) == (self.tracking_uri, experiment_id)
        if same_store and self._exists(saved.get("run_id")):
            return saved["run_id"]
        tags = {"dlrun.sweep_dir": str(self.sweep.folder.resolve()), "mlflow.source.name": "dlrun"}
        run = self.client.create_run(experiment_id, run_name=display_name(self.sweep.folder), tags=tags)
        write_json(path, {"tracking_uri": self.tracking_uri, "experiment_id": experiment_id, "run_id": run.info.run_id})
        return run.info.run_id

    def _exists(self, run_id: Any) -> bool:
        from mlflow.exceptions import MlflowException

        if not isinstance(run_id, str) or not run_id:
            return False
        try:
            return self.client.get_run(run_id).info.lifecycle_stage == "active"
        except MlflowException:
            return False

    def _log_params(self, config: dict[str, Any]) -> None:
        """The config as params. MLflow never changes a param: a resumed run logs the new keys only,
        and one whose value changed (trainer.epochs raised) as a tag dlrun.resumed_with.KEY."""
        from mlflow.entities import Param, RunTag

        logged = self.client.get_run(self.run_id).data.params
        params, tags = [], []
        for key, value in config.items():
            value = param_text(value)
            if key not in logged:
                params.append(Param(key, value))
            elif logged[key] != value:
                tags.append(RunTag(f"dlrun.resumed_with.{key}", value))
        for i in range(0, max(len(params), len(tags)), BATCH_LIMIT):
            self.client.log_batch(self.run_id, params=params[i : i + BATCH_LIMIT], tags=tags[i : i + BATCH_LIMIT])


def param_text(value: Any) -> str:
    """A param value as MLflow stores it: text, cut to MLflow's limit with a mark that it was cut."""
    value, mark = text(value), "...(cut)"
    return value if len(value) <= PARAM_VALUE_LIMIT else value[: PARAM_VALUE_LIMIT - len(mark)] + mark


def absolute_uri(uri: str) -> str:
    """A relative sqlite:///name.db made absolute, so every job of a sweep and a later resume reach
    the same database wherever they run from; any other URI as it is."""
    prefix = "sqlite:///"
    if uri.startswith(prefix) and not uri.startswith(prefix + "/") and ":memory:" not in uri:
        return prefix + os.path.abspath(uri[len(prefix) :])
    return uri


def read_run_file(path: Path) -> dict[str, Any]:
    try:
        saved = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return {}
    return saved if isinstance(saved, dict) else {}


@contextmanager
def file_lock(path: Path) -> Iterator[None]:
    """Hold an exclusive OS lock on `path` (created if missing) for the block."""
    fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o644)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        yield
    finally:
        os.close(fd)
