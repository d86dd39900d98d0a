"""Hyperparameter search with dlrun's Optuna sweeper: real searches on the digits, pruned, resumed,
in parallel; and every mistake refused in one line before anything runs."""

from __future__ import annotations

import csv
import math
import sys
from pathlib import Path

import pytest

pytest.importorskip("optuna")

from dlrun.cli import main  # noqa: E402
from tests.helpers import read_summary  # noqa: E402
from tests.test_run_folder_format import documented  # noqa: E402

PNG_MAGIC = b"\x89PNG\r\n\x1a\n"
SPACE = ["optimizer.lr=tag(log,interval(1e-4,1e-1))", "model.hidden_sizes=choice([32],[64,32])"]
# Four epochs; the median pruner judges every trial after its first epoch once two trials finished.
SEARCH = [
    "-m",
    "hydra/sweeper=optuna",
    "trainer.epochs=4",
    "trainer.progress=off",
    "device.threads=1",
    "hydra.sweeper.pruning.startup_trials=2",
    "hydra.sweeper.pruning.min_epochs=1",
    *SPACE,
]


def trial_folders(sweep: Path) -> dict[int, Path]:
    return {int(p.name): p for p in sweep.iterdir() if p.is_dir() and p.name.isdigit()}


def results(sweep: Path) -> dict:
    import yaml

    return yaml.safe_load((sweep / "optimization_results.yaml").read_text())


def study_trials(sweep: Path) -> list:
    import optuna

    return optuna.load_study(study_name="dlrun", storage=f"sqlite:///{sweep / 'optuna.db'}").get_trials()


def assert_complete_folder(folder: Path, plots: bool) -> dict:
    """A finished trial's folder: summary.json, one metrics.csv row per epoch it ran, checkpoints (and plots)."""
    summary = read_summary(folder)
    assert summary["status"] in ("completed", "pruned"), (folder, summary.get("error"))
    with open(folder / "metrics.csv", newline="") as f:
        assert len(list(csv.DictReader(f))) == summary["epochs_completed"]
    assert (folder / "checkpoints" / "last.pt").is_file() and (folder / "checkpoints" / "best.pt").is_file()
    assert "test" in summary and "best" in summary
    if plots:
        assert (folder / "plots" / "curves.png").read_bytes()[:8] == PNG_MAGIC
    return summary


@pytest.mark.slow
def test_a_search_prunes_bad_trials_and_reports_the_best(tmp_path, capsys):
    sweep = tmp_path / "search"
    assert main([*SEARCH, "hydra.sweeper.n_trials=8", f"hydra.sweep.dir={sweep}"]) == 0
    folders = trial_folders(sweep)
    assert sorted(folders) == list(range(8))  # job folder number = trial number
    summaries = {n: assert_complete_folder(folder, plots=True) for n, folder in folders.items()}
    pruned = {n: s for n, s in summaries.items() if s["status"] == "pruned"}
    completed = {n: s for n, s in summaries.items() if s["status"] == "completed"}
    assert pruned and len(completed) >= 2
    for n, summary in pruned.items():
        assert summary["epochs_completed"] == summary["pruned_at"] < 4
        assert summary["stop_reason"].startswith("pruned by the median pruner")
        assert summary["trial"] == {"number": n, "study": "dlrun", "storage": f"sqlite:///{sweep.resolve() / 'optuna.db'}",
                                    "objective": "val/acc"}  # fmt: skip
        assert set(summary) <= {name for name, _, _ in documented("summary.json")}
    for summary in completed.values():
        assert summary["epochs_completed"] == 4 and "pruned_at" not in summary

    # The study agrees with the folders, and the best trial is the best completed run.
    states = {t.number: t.state.name for t in study_trials(sweep)}
    assert states == {n: "PRUNED" if n in pruned else "COMPLETE" for n in summaries}
    best = results(sweep)["best"]
    top = max(completed, key=lambda n: (completed[n]["best"]["val/acc"], -n))
    assert best["value"] == max(s["best"]["val/acc"] for s in completed.values())
    assert best["number"] == top and Path(best["folder"]) == folders[top].resolve()
    assert set(best["params"]) == {"optimizer.lr", "model.hidden_sizes"}
    assert f"optimizer.lr={best['params']['optimizer.lr']}" in summaries[top]["overrides"]
    for name in ("optimization_history.png", "parallel_coordinate.png", "sweep_curves.png"):
        assert (sweep / name).read_bytes()[:8] == PNG_MAGIC, name
    assert (sweep / "param_importances.png").is_file() == (len(completed) >= 4)
    out = capsys.readouterr().out
    assert f"best trial {top}: val/acc" in out and "pruned" in (sweep / "sweep_summary.csv").read_text()

    # compare shows the pruned trials as pruned, with the epochs they ran.
    assert main(["compare", str(sweep), "--sort", "val/acc"]) == 0
    lines = {line.split()[0]: line for line in capsys.readouterr().out.splitlines() if line.split() and line.split()[0].isdigit()}
    for n, summary in pruned.items():
        assert " pruned " in lines[str(n)] and f" {summary['epochs_completed']}/4 " in lines[str(n)]

    # A pruned run is final: resuming it changes nothing.
    n = min(pruned)
    before = (folders[n] / "summary.json").read_bytes()
    assert main([f"resume={folders[n]}", "trainer.progress=off"]) == 0
    assert "already pruned" in capsys.readouterr().err and (folders[n] / "summary.json").read_bytes() == before


@pytest.mark.slow
def test_a_resumed_search_continues_its_study_with_new_trials(tmp_path, interrupt_at_epoch, capsys):
    sweep = tmp_path / "search"
    first = [*SEARCH, "trainer.plots=false", "hydra.sweeper.pruner=none", f"hydra.sweep.dir={sweep}"]
    interrupt_at_epoch(2)  # Ctrl-C during the first trial's second epoch ends the whole search
    with pytest.raises(SystemExit) as stopped:
        main([*first, "hydra.sweeper.n_trials=3"])
    interrupt_at_epoch(None)
    assert stopped.value.code == 130 and read_summary(sweep / "0")["status"] == "interrupted"
    assert [t.state.name for t in study_trials(sweep)] == ["FAIL"]

    assert main([*first, "hydra.sweeper.n_trials=3"]) == 0  # the failed trial does not count: three more
    assert [t.state.name for t in study_trials(sweep)] == ["FAIL", "COMPLETE", "COMPLETE", "COMPLETE"]
    kept = {n: (folder / "summary.json").read_bytes() for n, folder in trial_folders(sweep).items()}

    # Once more with n_trials=5: trials 4 and 5, in new folders, drawn anew; the others untouched.
    assert main([*first, "hydra.sweeper.n_trials=5"]) == 0
    trials = study_trials(sweep)
    assert [t.number for t in trials] == [0, 1, 2, 3, 4, 5] and sorted(trial_folders(sweep)) == [0, 1, 2, 3, 4, 5]
    assert {n: (sweep / str(n) / "summary.json").read_bytes() for n in kept} == kept
    drawn = [tuple(sorted(t.params.items())) for t in trials]
    assert len(set(drawn)) == len(drawn)  # the resumed sampler repeats no earlier draw
    assert all(read_summary(sweep / str(n))["trial"]["number"] == n for n in (4, 5))
    assert results(sweep)["trials"] == {"complete": 5, "fail": 1}
    err = capsys.readouterr().err
    assert "did not complete" not in err  # the earlier interrupted trial is that command's failure, not this one's

    # n_trials reached: nothing runs.
    assert main([*first, "hydra.sweeper.n_trials=5"]) == 0
    assert len(study_trials(sweep)) == 6 and "already holds 5 finished trials" in capsys.readouterr().out


@pytest.mark.slow
def test_trials_enqueued_in_the_study_run_first(tmp_path):
    import optuna

    sweep = tmp_path / "search"
    sweep.mkdir()
    study = optuna.create_study(study_name="dlrun", storage=f"sqlite:///{sweep / 'optuna.db'}", direction="maximize")
    study.enqueue_trial({"optimizer.lr": 0.003, "model.hidden_sizes": "[64,32]"})
    assert main([*SEARCH, "trainer.plots=false", "trainer.epochs=2", "hydra.sweeper.n_trials=1", f"hydra.sweep.dir={sweep}"]) == 0
    assert [(t.number, t.state.name, t.params) for t in study_trials(sweep)] == [
        (0, "COMPLETE", {"optimizer.lr": 0.003, "model.hidden_sizes": "[64,32]"})
    ]
    assert {"optimizer.lr=0.003", "model.hidden_sizes=[64,32]"} <= set(read_summary(sweep / "0")["overrides"])


@pytest.mark.slow
def test_joblib_workers_share_the_study_without_locking_errors(tmp_path, capfd):
    sweep = tmp_path / "search"
    launcher = ["hydra/launcher=joblib", "hydra.launcher.n_jobs=2", "hydra.sweeper.n_jobs=2"]
    assert main([*SEARCH, *launcher, "trainer.plots=false", "hydra.sweeper.n_trials=4", f"hydra.sweep.dir={sweep}"]) == 0
    out, err = capfd.readouterr()
    assert "locked" not in out + err
    folders = trial_folders(sweep)
    assert sorted(folders) == list(range(4))
    summaries = {n: assert_complete_folder(folder, plots=False) for n, folder in folders.items()}
    states = {t.number: t.state.name for t in study_trials(sweep)}
    assert states == {n: "PRUNED" if s["status"] == "pruned" else "COMPLETE" for n, s in summaries.items()}
    assert all(s["trial"]["number"] == n for n, s in summaries.items())  # each worker reopened its own trial
    assert (sweep / "optimization_history.png").is_file()


@pytest.mark.slow
def test_submitit_local_runs_trials_in_their_own_processes(tmp_path):
    pytest.importorskip("hydra_plugins.hydra_submitit_launcher")
    sweep = tmp_path / "search"
    launcher = ["hydra/launcher=submitit_local", "trainer.plots=false", "trainer.epochs=2"]
    assert main([*SEARCH, *launcher, "hydra.sweeper.n_trials=2", f"hydra.sweep.dir={sweep}"]) == 0
    folders = trial_folders(sweep)
    assert sorted(folders) == [0, 1]
    for n, folder in folders.items():
        summary = assert_complete_folder(folder, plots=False)
        assert summary["trial"]["number"] == n and "submitit" in summary["command"]
    assert [t.state.name for t in study_trials(sweep)] == ["COMPLETE", "COMPLETE"]
    assert results(sweep)["best"]["number"] in (0, 1)


@pytest.mark.slow
def test_the_digits_preset_declares_its_search_space(tmp_path):
    sweep = tmp_path / "search"
    args = ["-m", "experiment=digits_hpo", "hydra.sweeper.n_trials=3", "trainer.epochs=2", "device.threads=1"]
    assert main([*args, f"hydra.sweep.dir={sweep}"]) == 0
    params = {tuple(sorted(t.params)) for t in study_trials(sweep)}
    assert params == {("model.hidden_sizes", "optimizer.lr", "regularization.dropout")}
    assert read_summary(sweep / "0")["config"]["dataset"]["name"] == "digits"


def test_the_mnist_preset_composes_a_search():
    from hydra import compose, initialize_config_dir

    from dlrun.config import config_dir, register_configs

    register_configs()
    with initialize_config_dir(str(config_dir()), version_base="1.3"):
        cfg = compose("config", overrides=["experiment=mnist_hpo"], return_hydra_config=True)
    assert cfg.dataset.name == "mnist" and cfg.dataset.val_fraction > 0 and cfg.regularization.dropout > 0
    assert cfg.hydra.sweeper._target_.startswith("hydra_plugins.dlrun_optuna_sweeper.")
    assert set(cfg.hydra.sweeper.params) == {"optimizer.lr", "model.hidden_sizes", "regularization.dropout", "trainer.batch_size"}


# ---------------------------------------------------------------------------------------------
# Mistakes: one line, exit code 2, nothing run.

BAD = {
    "an unknown sampler": (["hydra.sweeper.sampler=bayes", *SPACE], "hydra.sweeper.sampler='bayes' is not one of: tpe, random"),
    "an unknown pruner": (["hydra.sweeper.pruner=patience", *SPACE], "hydra.sweeper.pruner='patience' is not one of: median,"),
    "a pruner judging at epoch 0": (["hydra.sweeper.pruning.min_epochs=0", *SPACE], "hydra.sweeper.pruning: min_epochs=0 must be >= 1"),
    "an empty search space": (["optimizer.lr=0.01"], "hydra/sweeper=optuna needs a search space"),
    "no validation split": (["dataset.val_fraction=0", *SPACE], "dataset.val_fraction=0 leaves no validation split"),
    "a malformed interval": (["optimizer.lr=interval(1e-4)"], "'optimizer.lr=interval(1e-4)'"),
    "an interval upside down": (["optimizer.lr=interval(0.1,0.001)"], "the low end must be below the high end"),
    "a log scale from 0": (["optimizer.lr=tag(log,interval(0,0.1))"], "a log scale needs a low end > 0"),
    "a log scale with a step": (["trainer.batch_size=tag(log,range(16,257,16))"], "a log scale has no step, got step 16"),
    "a GAN": (["task=gan", *SPACE], "which task=gan does not have"),
    "a grid over an interval": (["hydra.sweeper.sampler=grid", *SPACE], "sampler=grid tries every value"),
    "a test objective": (["hydra.sweeper.objective=test/acc", *SPACE], "hydra.sweeper.objective='test/acc' is not one of"),
    "a storage without a study name": (["hydra.sweeper.storage=sqlite:///x.db", *SPACE], "needs a hydra.sweeper.study_name"),
}


@pytest.mark.parametrize("case", BAD, ids=list(BAD))
def test_a_bad_search_is_refused_in_one_line_before_anything_runs(case, tmp_path, capsys):
    args, message = BAD[case]
    assert main(["-m", "hydra/sweeper=optuna", *args, f"hydra.sweep.dir={tmp_path / 'search'}"]) == 2
    captured = capsys.readouterr()
    lines = captured.err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("dlrun: error: ") and message in lines[0], captured.err
    assert "Traceback" not in captured.out + captured.err
    assert not (tmp_path / "search").exists()


def test_without_optuna_the_sweeper_says_how_to_install_it(tmp_path, capsys, monkeypatch):
    monkeypatch.setitem(sys.modules, "optuna", None)  # `import optuna` raises ImportError
    assert main(["-m", "hydra/sweeper=optuna", *SPACE, f"hydra.sweep.dir={tmp_path / 'search'}"]) == 2
    lines = capsys.readouterr().err.strip().splitlines()
    assert len(lines) == 1 and "needs Optuna, which is not installed: pip install 'dlrun[optuna]'" in lines[0]
    assert not (tmp_path / "search").exists()


# ---------------------------------------------------------------------------------------------
# The search space, parsed.


def test_hydra_sweep_syntax_becomes_optuna_distributions():
    from optuna.distributions import CategoricalDistribution, FloatDistribution, IntDistribution

    from hydra_plugins.dlrun_optuna_sweeper._space import grid, search_space

    space, fixed = search_space(
        [
            "optimizer.lr=tag(log,interval(1e-4,1e-1))",
            "regularization.dropout=interval(0,0.5)",
            "trainer.batch_size=interval(16,256)",
            "model.num_layers=range(1,4)",
            "model.hidden_sizes=choice([128],[256,128])",
            "model.activation=relu,tanh",
            "dataset=mnist",
            "~debug",
            "trainer.epochs=2",
            "trainer.epochs=range(2,8,2)",  # a later override of a key wins
        ],
        None,
    )
    assert space == {
        "optimizer.lr": FloatDistribution(1e-4, 1e-1, log=True),
        "regularization.dropout": FloatDistribution(0.0, 0.5),
        "trainer.batch_size": IntDistribution(16, 256),
        "model.num_layers": IntDistribution(1, 3),  # range(1,4) is 1, 2, 3, as in Python and the basic sweeper
        "model.hidden_sizes": CategoricalDistribution(["[128]", "[256,128]"]),
        "model.activation": CategoricalDistribution(["relu", "tanh"]),
        "trainer.epochs": IntDistribution(2, 6, step=2),
    }
    assert fixed == ["dataset=mnist", "~debug"]
    del space["optimizer.lr"], space["regularization.dropout"], space["trainer.batch_size"]
    assert grid(space)["model.num_layers"] == [1, 2, 3] and grid(space)["trainer.epochs"] == [2, 4, 6]
    assert math.prod(len(v) for v in grid(space).values()) == 3 * 2 * 2 * 3


def test_the_task_returns_the_searchs_objective():
    from dlrun.job import objective

    summary = {"status": "completed", "best": {"epoch": 3, "val/acc": 0.9, "val/loss": 0.3}, "test": {"acc": 0.8, "loss": 0.5}}
    assert objective(summary) == 0.9 and objective(summary, "val/loss") == 0.3
    assert math.isnan(objective(summary | {"status": "pruned"}))  # the sweeper reads a pruned run's state from its folder
