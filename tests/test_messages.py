"""What a new user sees: refused runs leave nothing behind, typos get a suggestion, the version,
the traceback switch, the objective a sweeper gets, and how to continue after Ctrl-C."""

from __future__ import annotations

import math

import pytest

from dlrun.cli import main
from dlrun.job import objective
from tests.helpers import QUICK, read_summary


@pytest.mark.parametrize(
    ("typo", "expected"),
    [
        ("modle=mlp", "'modle' is not a config key or group; did you mean model=mlp?"),
        ("optimiser=sgd", "'optimiser' is not a config key or group; did you mean optimizer=sgd?"),
        ("model.cell=lstm", "'cell' is not a key of the chosen model; it belongs to model=rnn: e.g. model=rnn model.cell=lstm"),
        ("optimizer.lrr=0.1", "'lrr' is not a key of optimizer; did you mean optimizer.lr=0.1?"),
        ("trainer.epoch=3", "'epoch' is not a key of trainer; did you mean trainer.epochs=3?"),
        ("trainer.early_stopping.patienc=2", "did you mean trainer.early_stopping.patience=2?"),
        (
            "scheduler=cosin",
            "scheduler=cosin: no such option; the options are: cosine, none, onecycle, plateau, step; did you mean scheduler=cosine?",
        ),
    ],
)
def test_a_typo_gets_one_line_with_what_was_meant(tmp_path, capsys, typo, expected):
    assert main([typo, f"hydra.run.dir={tmp_path / 'run'}"]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("dlrun: error: ") and expected in err and "\n" not in err
    assert not (tmp_path / "run").exists()


@pytest.mark.parametrize("refusal", ["optimizer.lr=-1", "dataset.test_fraction=0", "model=cnn model.variant=lenet5"])
def test_a_run_refused_before_its_first_step_leaves_no_folder(tmp_path, monkeypatch, capsys, refusal):
    monkeypatch.chdir(tmp_path)
    with pytest.raises(SystemExit) as refused:
        main([*QUICK, *refusal.split()])
    assert refused.value.code == 2 and capsys.readouterr().err.startswith("dlrun: error: ")
    assert not (tmp_path / "outputs").exists()


def test_a_refused_run_keeps_the_other_runs_in_outputs(tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    earlier = tmp_path / "outputs" / "2026-01-01" / "09-00-00"
    earlier.mkdir(parents=True)
    (earlier / "summary.json").write_text("{}")
    with pytest.raises(SystemExit):
        main([*QUICK, "optimizer.lr=-1"])
    assert sorted(p.relative_to(tmp_path).as_posix() for p in (tmp_path / "outputs").rglob("*")) == [
        "outputs/2026-01-01",
        "outputs/2026-01-01/09-00-00",
        "outputs/2026-01-01/09-00-00/summary.json",
    ]


def test_an_override_that_cannot_be_resolved_is_one_line_naming_its_key(tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    with pytest.raises(SystemExit) as refused:
        main([*QUICK, "seed=${nope}"])
    err = capsys.readouterr().err
    assert refused.value.code == 2 and err == "dlrun: error: seed: Interpolation key 'nope' not found\n"
    assert not (tmp_path / "outputs").exists()


def test_a_refused_job_in_a_sweep_says_so_and_the_sweep_goes_on(tmp_path):
    with pytest.raises(SystemExit) as done:
        main(["-m", *QUICK, "optimizer.lr=0.01,-1", f"hydra.sweep.dir={tmp_path}"])
    assert done.value.code == 1
    assert [read_summary(tmp_path / job)["status"] for job in ("0", "1")] == ["completed", "refused"]
    assert "must be > 0" in read_summary(tmp_path / "1")["error"]


def test_dlrun_traceback_shows_the_original_traceback(run_dlrun, monkeypatch, capsys):
    monkeypatch.setenv("DLRUN_TRACEBACK", "1")
    with pytest.raises(SystemExit):
        run_dlrun(*QUICK, "model=cnn", "model.variant=lenet5")
    err = capsys.readouterr().err
    assert "Traceback (most recent call last)" in err and "ConfigError: model.variant=lenet5 needs images of at least 12x12" in err


def test_the_task_returns_the_objective_a_sweeper_optimizes(run_dlrun):
    summary = read_summary(run_dlrun(*QUICK))
    assert objective(summary) == summary["best"]["val/acc"]
    no_val = read_summary(run_dlrun(*QUICK, "dataset.val_fraction=0"))
    assert objective(no_val) == no_val["test"]["acc"]
    assert math.isnan(objective({"status": "failed"}))


def test_version_names_dlrun_and_what_it_runs_on(capsys):
    assert main(["--version"]) == 0
    out = capsys.readouterr().out
    assert out.startswith("dlrun 0.") and "torch 2." in out and "hydra-core 1.3" in out


def test_after_ctrl_c_dlrun_says_how_to_continue(run_dlrun, interrupt_at_epoch, tmp_path, capsys):
    interrupt_at_epoch(2)
    with pytest.raises(SystemExit):
        run_dlrun(*QUICK, run_dir=tmp_path / "run")
    assert f"continue with: dlrun resume={tmp_path / 'run'}" in capsys.readouterr().err


def test_help_into_a_pager_that_quits_early_is_quiet(tmp_path):
    import subprocess
    import sys

    proc = subprocess.Popen([sys.executable, "-m", "dlrun", "--help"], cwd=tmp_path, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    proc.stdout.close()  # the reader is gone before dlrun writes: its write meets a broken pipe
    err = proc.stderr.read().decode()
    assert proc.wait(timeout=120) == 0 and err == ""
