"""Loggers: a run mirrored into TensorBoard or MLflow, where people already look at their runs.

The run folder stays the record (metrics.csv, summary.json, plots); a logger copies it elsewhere as
the run goes: the config when the run starts, each epoch's row, and at the end the status, the
test metrics and the plots. Each logger is a small class with three methods (`Logger`). The
recipe holds them through `Loggers`, which puts each behind a `Guarded`: a logger's first failure
(a tracking server that is down, a full disk under tb/) is one warning, and that logger is off for
the rest of the run. A logger never fails or stops a run, and never touches the run's own files.

tensorboard and mlflow are optional extras, imported only inside the logger that uses them, so a
run without loggers never imports them. A logger whose package is missing is refused when the
run starts, before anything is trained, with the extra to install.
"""

from __future__ import annotations

import fcntl
import importlib.util
import json
import os
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol

from dlrun.analysis.runfolder import flatten, read_metrics, text
from dlrun.errors import ConfigError
from dlrun.training.storage import write_json

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
        chosen[name] = LOGGERS[name](Path(run_dir), sweep=sweep, **options)
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


# ---------------------------------------------------------------------------------------------
# TensorBoard.


class TensorBoardLogger:
    """Event files in RUN/tb/: every row's numbers as scalars (step = epoch), the config as
    hparams (so the HParams tab compares a sweep's jobs), the test metrics and plots at the end."""

    def __init__(self, run_dir: Path, *, sweep: SweepJob | None = None):
        self.run_dir = run_dir
        self.folder = run_dir / "tb"
        self.writer = None

    def start(self, summary: dict[str, Any]) -> None:
        from torch.utils.tensorboard import SummaryWriter
        from torch.utils.tensorboard.summary import hparams

        resumed = summary.get("resumed_from_epoch")
        fresh = not self.folder.is_dir()
        # A resumed run continues after its checkpoint's epoch: events logged past it before the
        # run stopped are hidden by TensorBoard (purge_step), so no step is shown twice.
        self.writer = SummaryWriter(str(self.folder), purge_step=resumed + 1 if resumed else None)
        if fresh:
            # TensorBoard keeps the first hparams it reads in a run, so they are written once. Only
            # the session's start is written: with no experiment summary in any run, the HParams
            # tab builds one from all the runs it sees (every job's hparams and every scalar).
            _, session_start, _ = hparams(flat_config(summary), {})
            self.writer.file_writer.add_summary(session_start)
            self.writer.add_text("run", f"{summary.get('experiment', '')}  \n`{summary.get('command', '')}`")
            for row in earlier_rows(self.run_dir, summary):
                self.log_epoch(row)
        self.writer.flush()

    def log_epoch(self, row: dict[str, float]) -> None:
        for key, value in row.items():
            if key != "epoch":
                self.writer.add_scalar(key, value, int(row["epoch"]))
        self.writer.flush()  # a live TensorBoard shows each epoch as it ends

    def finish(self, summary: dict[str, Any]) -> None:
        try:
            step = summary.get("epochs_completed") or 0
            for key, value in end_metrics(summary).items():
                self.writer.add_scalar(key, value, step)
            if summary.get("status") == "completed":
                import numpy as np
                from PIL import Image  # matplotlib's own dependency

                for path in plot_files(self.run_dir):
                    with Image.open(path) as image:
                        pixels = np.asarray(image.convert("RGB"))  # (height, width, 3)
                    self.writer.add_image(f"plots/{path.stem}", pixels, step, dataformats="HWC")
        finally:
            self.writer.close()


# ---------------------------------------------------------------------------------------------
# MLflow.

MLFLOW_STATUS = {"completed": "FINISHED", "failed": "FAILED", "diverged": "FAILED", "interrupted": "KILLED"}
# A tracking server that is down should cost seconds, once, not MLflow's default of 7 retries with
# a growing back-off and 120 s timeouts; a user's own settings of these variables win.
HTTP_DEFAULTS = {"MLFLOW_HTTP_REQUEST_MAX_RETRIES": "1", "MLFLOW_HTTP_REQUEST_BACKOFF_FACTOR": "1", "MLFLOW_HTTP_REQUEST_TIMEOUT": "10"}
RUN_FILE = "mlflow.json"  # in a run folder: the MLflow run it is logged to; in a sweep folder: the sweep's parent run
PARAM_VALUE_LIMIT = 6000  # MLflow's longest param value (mlflow.utils.validation.MAX_PARAM_VAL_LENGTH)
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


LOGGERS: dict[str, Callable[..., Logger]] = {"tensorboard": TensorBoardLogger, "mlflow": MLflowLogger}
