"""Loggers: TensorBoard and MLflow, installed and read back with their own readers.

TensorBoard's event files are read with tensorboard's EventAccumulator; MLflow runs are logged to
a sqlite database in the test's folder and read back with MlflowClient.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

import pytest
from omegaconf import OmegaConf

from dlrun.analysis.query import LOGGER_KEYS, QUIET_KEYS
from dlrun.analysis.runfolder import flatten
from dlrun.checks import validate
from dlrun.config import LoggerConfig
from dlrun.errors import ConfigError
from dlrun.training.loggers import Guarded
from dlrun.training.mlflow_logger import BATCH_LIMIT, PARAM_VALUE_LIMIT
from dlrun.training.resume import ADJUSTABLE
from tests.helpers import QUICK, read_summary

LOGGER_MODULES = ("mlflow", "tensorboard", "torch.utils.tensorboard")


@pytest.fixture(autouse=True)
def _in_tmp(tmp_path, monkeypatch):
    """MLflow keeps artifacts in ./mlruns and defaults to ./mlflow.db: both in the test's folder."""
    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)


def scalars(folder: Path) -> dict[str, list[tuple[int, float]]]:
    """Every scalar tag of an event-file folder as (step, value) pairs, read by TensorBoard's own reader."""
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    events = EventAccumulator(str(folder))
    events.Reload()
    return {tag: [(e.step, e.value) for e in events.Scalars(tag)] for tag in events.Tags()["scalars"]}


def hparams(folder: Path) -> dict[str, object]:
    """The hparams TensorBoard's HParams tab shows for a run folder."""
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator
    from tensorboard.plugins.hparams.plugin_data_pb2 import HParamsPluginData

    events = EventAccumulator(str(folder))
    events.Reload()
    content = events.PluginTagToContent("hparams")["_hparams_/session_start_info"]
    values = HParamsPluginData.FromString(content).session_start_info.hparams
    return {key: value.WhichOneof("kind") and getattr(value, value.WhichOneof("kind")) for key, value in values.items()}


def mlflow_run(run_dir: Path):
    """The MLflow run a run folder names in its mlflow.json, and a client of its store."""
    from mlflow.tracking import MlflowClient

    saved = json.loads((run_dir / "mlflow.json").read_text())
    client = MlflowClient(saved["tracking_uri"])
    return client, client.get_run(saved["run_id"])


def history(client, run, key: str) -> list[tuple[int, float]]:
    return sorted((m.step, m.value) for m in client.get_metric_history(run.info.run_id, key))


def artifacts(client, run, path: str | None = None) -> list[str]:
    return sorted(a.path for a in client.list_artifacts(run.info.run_id, path))


# ---------------------------------------------------------------------------------------------
# Config.


def test_logger_options_merge_as_a_list_and_default_to_none(compose_cfg):
    cfg = compose_cfg()
    assert not cfg.logger.tensorboard.enabled and not cfg.logger.mlflow.enabled
    cfg = compose_cfg("logger=[tensorboard,mlflow]", "logger.mlflow.experiment=mnist")
    assert cfg.logger.tensorboard.enabled and cfg.logger.mlflow.enabled
    assert (cfg.logger.mlflow.experiment, cfg.logger.mlflow.tracking_uri, cfg.logger.mlflow.log_checkpoints) == ("mnist", "", False)
    validate(cfg)


def test_logger_keys_are_checked(compose_cfg):
    with pytest.raises(ConfigError, match="logger.mlflow.experiment='' must name an MLflow experiment"):
        validate(compose_cfg("logger=[mlflow]", "logger.mlflow.experiment="))
    with pytest.raises(ConfigError, match="logger.mlflow.uri is not a key of logger.mlflow"):
        validate(compose_cfg("+logger.mlflow.uri=x"))


def test_logger_keys_never_split_compare_columns_and_may_change_on_resume():
    keys = set(flatten(OmegaConf.to_container(OmegaConf.structured(LoggerConfig)), "logger."))
    assert keys == set(LOGGER_KEYS)
    assert keys <= QUIET_KEYS and keys <= ADJUSTABLE


# ---------------------------------------------------------------------------------------------
# The guard, and what a run without loggers costs.


def test_a_failing_logger_is_one_warning_then_off():
    class Broken:
        def __init__(self):
            self.calls = []

        def start(self, summary):
            self.calls.append("start")

        def log_epoch(self, row):
            self.calls.append("epoch")
            raise OSError(28, "No space left on device")

        def finish(self, summary):
            self.calls.append("finish")

    warnings: list[str] = []
    logger = Broken()
    guarded = Guarded("tensorboard", logger, warnings.append)
    guarded.start({})
    for epoch in (1, 2):
        guarded.on_step_end(None)
        guarded.on_epoch_end(None, {"epoch": epoch})
    guarded.finish({})
    assert logger.calls == ["start", "epoch"]
    assert warnings == [
        "logger tensorboard is off for the rest of this run (OSError: [Errno 28] No space left on device); the run folder is unaffected"
    ]


def test_a_run_without_loggers_never_imports_them(run_dlrun, monkeypatch):
    before = set(sys.modules)
    for name in LOGGER_MODULES:  # an import of one would fail, and show as a warning or a failed run
        monkeypatch.setitem(sys.modules, name, None)
    run = run_dlrun(*QUICK)
    assert read_summary(run)["status"] == "completed"
    assert "warning" not in (run / "dlrun.log").read_text()
    assert not [name for name, module in sys.modules.items() if module and name not in before and name.startswith(LOGGER_MODULES)]
    assert not (run / "tb").exists() and not (run / "mlflow.json").exists()


@pytest.mark.parametrize("name", ["tensorboard", "mlflow"])
def test_a_missing_package_is_refused_before_training(run_dlrun, monkeypatch, capsys, tmp_path, name):
    monkeypatch.setitem(sys.modules, name, None)  # as if not installed: importlib finds no such package
    with pytest.raises(SystemExit) as info:
        run_dlrun(*QUICK, f"logger=[{name}]", run_dir=tmp_path / "run")
    assert info.value.code == 2
    assert capsys.readouterr().err.strip().splitlines()[-1] == (
        f"dlrun: error: logger={name} needs the {name} package, which is not installed: pip install 'dlrun[{name}]'"
    )
    assert not (tmp_path / "run").exists()  # refused before the first step: no folder left behind


def test_loggers_that_cannot_write_are_warnings_and_the_run_completes(run_dlrun, tmp_path):
    run_dir = tmp_path / "run"
    run_dir.mkdir()
    (run_dir / "tb").write_text("a file where tb/ would go")
    closed_port = "http://127.0.0.1:9"  # the discard port: nothing listens there
    run_dlrun(*QUICK, "logger=[tensorboard,mlflow]", f"logger.mlflow.tracking_uri={closed_port}", run_dir=run_dir)
    assert read_summary(run_dir)["status"] == "completed"
    warnings = [line for line in (run_dir / "dlrun.log").read_text().splitlines() if line.startswith("warning:")]
    assert len(warnings) == 2
    assert warnings[0].startswith("warning: logger tensorboard is off for the rest of this run (FileExistsError")
    assert warnings[1].startswith("warning: logger mlflow is off for the rest of this run (")
    assert not (run_dir / "mlflow.json").exists()


# ---------------------------------------------------------------------------------------------
# TensorBoard and MLflow, for real.


def test_mlflow_limits_are_mlflows_own():
    from mlflow.utils import validation

    assert (PARAM_VALUE_LIMIT, BATCH_LIMIT) == (validation.MAX_PARAM_VAL_LENGTH, validation.MAX_PARAMS_TAGS_PER_BATCH)


def test_tensorboard_holds_scalars_per_epoch_hparams_and_plots(run_dlrun):
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    run = run_dlrun("trainer.epochs=2", "trainer.progress=off", "logger=[tensorboard]", "optimizer=sgd")
    logged = scalars(run / "tb")
    assert sorted(logged) == ["epoch_s", "lr", "test/acc", "test/loss", "train/acc", "train/loss", "val/acc", "val/loss"]
    for key in ("train/loss", "val/acc", "lr", "epoch_s"):
        assert [step for step, _ in logged[key]] == [1, 2]
    final, test = read_summary(run)["final"], read_summary(run)["test"]
    assert logged["val/acc"][-1][1] == pytest.approx(final["val/acc"]) and logged["lr"][0][1] == pytest.approx(0.1)
    assert logged["test/acc"] == [(2, pytest.approx(test["acc"]))]
    shown = hparams(run / "tb")
    assert shown["optimizer.name"] == "sgd" and shown["optimizer.lr"] == pytest.approx(0.1) and shown["model.hidden_sizes"] == "[128,256]"
    events = EventAccumulator(str(run / "tb"), size_guidance={"images": 0})
    events.Reload()
    assert events.Tags()["images"] == ["plots/confusion_matrix", "plots/curves", "plots/samples"]


def test_mlflow_holds_params_metrics_tags_and_artifacts(run_dlrun, tmp_path, monkeypatch):
    import logging

    long_root = "d" * (PARAM_VALUE_LIMIT + 100)  # digits never reads dataset.root: a value past MLflow's limit
    monkeypatch.setattr(logging.getLogger("mlflow"), "level", logging.INFO)  # as MLflow sets it when imported
    run = run_dlrun("trainer.epochs=2", "trainer.progress=off", "logger=[mlflow]", "logger.mlflow.log_checkpoints=true",
                    f"dataset.root={long_root}")  # fmt: skip
    saved = json.loads((run / "mlflow.json").read_text())
    assert saved["tracking_uri"] == f"sqlite:///{tmp_path / 'mlflow.db'}"  # MLflow's own default, in the folder dlrun started in
    doc = (Path(__file__).resolve().parents[1] / "docs" / "run-folder.md").read_text().split("## Logger files", 1)[1]
    assert all(f"`{key}`" in doc for key in saved)  # the run-folder contract documents each field
    client, logged = mlflow_run(run)
    summary = read_summary(run)
    assert logged.info.status == "FINISHED" and logged.info.run_name == "run0"
    assert client.get_experiment(logged.info.experiment_id).name == "dlrun"
    params = logged.data.params
    assert params["optimizer.name"] == "adam" and params["optimizer.lr"] == "0.001" and params["model.hidden_sizes"] == "[128,256]"
    assert len(params["dataset.root"]) == PARAM_VALUE_LIMIT and params["dataset.root"].endswith("...(cut)")
    assert set(flatten(summary["config"])) == set(params)
    assert [step for step, _ in history(client, logged, "val/acc")] == [1, 2]
    assert history(client, logged, "train/loss")[-1] == (2, pytest.approx(summary["final"]["train/loss"]))
    assert history(client, logged, "test/acc") == [(2, pytest.approx(summary["test"]["acc"]))]
    tags = logged.data.tags
    assert tags["dlrun.status"] == "completed" and tags["dlrun.version"] == summary["versions"]["dlrun"]
    assert tags.get("mlflow.source.git.commit") == summary["git_commit"]
    assert tags["mlflow.note.content"] == summary["experiment"] and "mlflow.parentRunId" not in tags
    assert artifacts(client, logged) == ["checkpoints", "plots", "summary.json"]
    assert artifacts(client, logged, "plots") == ["plots/confusion_matrix.png", "plots/curves.png", "plots/samples.png"]
    assert artifacts(client, logged, "checkpoints") == ["checkpoints/best.pt"]
    assert logging.getLogger("mlflow").level == logging.WARNING  # its INFO lines (a new database's tables) stay out of the run's output


def test_resume_continues_the_same_tensorboard_and_mlflow_runs(run_dlrun, interrupt_at_epoch, tmp_path):
    uri = f"sqlite:///{tmp_path / 'runs.db'}"
    run = tmp_path / "part"
    interrupt_at_epoch(2)
    with pytest.raises(SystemExit):
        run_dlrun(*QUICK, "trainer.epochs=3", "logger=[tensorboard,mlflow]", f"logger.mlflow.tracking_uri={uri}", run_dir=run)
    interrupt_at_epoch(None)
    client, first = mlflow_run(run)
    assert first.info.status == "KILLED" and first.data.tags["dlrun.status"] == "interrupted"
    assert [step for step, _ in scalars(run / "tb")["val/acc"]] == [1]

    run_dlrun("resume=" + str(run), "trainer.epochs=4", run_dir=run)  # the saved config keeps both loggers on
    assert read_summary(run)["status"] == "completed"
    client, logged = mlflow_run(run)
    assert logged.info.run_id == first.info.run_id and logged.info.status == "FINISHED"
    assert [step for step, _ in history(client, logged, "val/acc")] == [1, 2, 3, 4]
    assert logged.data.params["trainer.epochs"] == "3" and logged.data.tags["dlrun.resumed_with.trainer.epochs"] == "4"
    logged_tb = scalars(run / "tb")
    for key in ("train/loss", "val/acc", "lr"):
        assert [step for step, _ in logged_tb[key]] == [1, 2, 3, 4]


@pytest.mark.slow
def test_a_sweep_is_a_parent_run_with_a_child_per_job(tmp_path):
    from dlrun.cli import main

    sweep = tmp_path / "sweep"
    uri = f"sqlite:///{tmp_path / 'mlruns.db'}"
    # Two jobs at once, in two processes: they share one parent run, and set up one new database between them.
    with pytest.raises(SystemExit) as info:  # job 1 diverges: the sweep goes on, and exits 1 at the end
        main(["-m", *QUICK, "logger=[tensorboard,mlflow]", f"logger.mlflow.tracking_uri={uri}", "logger.mlflow.experiment=sweeps",
              "optimizer=sgd", "optimizer.lr=0.1,1e12", "hydra/launcher=joblib", "hydra.launcher.n_jobs=2",
              f"hydra.sweep.dir={sweep}"])  # fmt: skip
    assert info.value.code == 1
    client, job0 = mlflow_run(sweep / "0")
    _, job1 = mlflow_run(sweep / "1")
    parent = client.get_run(json.loads((sweep / "mlflow.json").read_text())["run_id"])
    assert parent.info.run_name == "sweep" and parent.info.status == "FINISHED"
    assert "warning" not in (sweep / "0" / "dlrun.log").read_text() + (sweep / "1" / "dlrun.log").read_text()
    assert {job0.info.run_name, job1.info.run_name} == {"sweep/0", "sweep/1"}
    for number, job in enumerate((job0, job1)):
        assert job.data.tags["mlflow.parentRunId"] == parent.info.run_id
        assert job.data.tags["dlrun.job"] == str(number) and job.data.tags["dlrun.sweep_dir"] == str(sweep)
    assert job0.info.status == "FINISHED" and job0.data.params["optimizer.lr"] == "0.1"
    assert job1.info.status == "FAILED" and job1.data.tags["dlrun.status"] == "diverged"
    assert job1.data.params["optimizer.lr"] == "1000000000000.0"
    assert "became nan" in job1.data.tags["dlrun.error"] or "became inf" in job1.data.tags["dlrun.error"]
    assert history(client, job1, "val/acc") == [] and len(history(client, job0, "val/acc")) == 2
    experiment = client.get_experiment_by_name("sweeps")
    runs = {r.info.run_id for r in client.search_runs([experiment.experiment_id])}
    assert runs == {parent.info.run_id, job0.info.run_id, job1.info.run_id}
    # TensorBoard: each job's own run, its hparams saying which job it is.
    assert hparams(sweep / "0" / "tb")["optimizer.lr"] == pytest.approx(0.1)
    assert hparams(sweep / "1" / "tb")["optimizer.lr"] == pytest.approx(1e12)
    assert [step for step, _ in scalars(sweep / "0" / "tb")["val/acc"]] == [1, 2]


def test_a_pruned_trial_is_finished_in_mlflow_and_its_pictures_are_in_tensorboard(tmp_path):
    """A pruned trial is over as the search asked (summary.json: `pruned`), not a failure."""
    pytest.importorskip("optuna")
    from dlrun.cli import main

    sweep = tmp_path / "search"
    uri = f"sqlite:///{tmp_path / 'runs.db'}"
    argv = ["-m", "hydra/sweeper=optuna", "hydra.sweeper.n_trials=8", "trainer.epochs=4", "trainer.progress=off", "device.threads=1",
            "hydra.sweeper.pruning.startup_trials=2", "hydra.sweeper.pruning.min_epochs=1", "optimizer.lr=tag(log,interval(1e-4,1e-1))",
            "logger=[tensorboard,mlflow]", f"logger.mlflow.tracking_uri={uri}", f"hydra.sweep.dir={sweep}"]  # fmt: skip
    assert main(argv) == 0
    pruned = [p for p in sweep.iterdir() if p.name.isdigit() and read_summary(p)["status"] == "pruned"]
    assert pruned  # the median pruner stops some of these 8 trials
    for run in pruned:
        client, logged = mlflow_run(run)
        assert logged.info.status == "FINISHED" and logged.data.tags["dlrun.status"] == "pruned"
        from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

        events = EventAccumulator(str(run / "tb"), size_guidance={"images": 0})
        events.Reload()
        assert events.Tags()["images"] == ["plots/confusion_matrix", "plots/curves", "plots/samples"]
