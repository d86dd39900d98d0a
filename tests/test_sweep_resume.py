"""Re-running a sweep into its folder with resume=auto: completed jobs are kept, the others continue."""

from __future__ import annotations

import pytest

from dlrun.cli import main
from tests.helpers import read_summary

SWEEP = ["-m", "debug=fast", "trainer.limit_train_batches=3", "trainer.plots=false", "trainer.progress=off", "resume=auto"]


def files(folder) -> dict:
    return {p: p.read_bytes() for p in folder.rglob("*") if p.is_file() and p.name != ".lock"}


def seed_determined(path) -> list[str]:
    """metrics.csv's lines without the last column, epoch_s (wall-clock time)."""
    return [line.rsplit(",", 1)[0] for line in path.read_text().splitlines()]


@pytest.mark.slow
def test_resumed_sweep_runs_only_what_is_missing(tmp_path, interrupt_at_epoch, capsys):
    sweep_dir = tmp_path / "sweep"
    interrupt_at_epoch(2)  # Ctrl-C during job 0's second epoch ends the whole sweep
    with pytest.raises(SystemExit) as stopped:
        main([*SWEEP, "seed=0,1", "trainer.epochs=2", f"hydra.sweep.dir={sweep_dir}"])
    interrupt_at_epoch(None)
    assert stopped.value.code == 130 and read_summary(sweep_dir / "0")["status"] == "interrupted"
    assert not (sweep_dir / "1").exists()

    # The same sweep with one more seed: job 0 continues from its last.pt, jobs 1 and 2 are new.
    assert main([*SWEEP, "seed=0,1,2", "trainer.epochs=2", f"hydra.sweep.dir={sweep_dir}"]) == 0
    for job in ("0", "1", "2"):
        summary = read_summary(sweep_dir / job)
        assert summary["status"] == "completed" and summary["epochs_completed"] == 2
    assert read_summary(sweep_dir / "0")["resumed_from_epoch"] == 1
    assert "resumed_from_epoch" not in read_summary(sweep_dir / "1")

    # Resumed equals uninterrupted: a fresh 2-epoch sweep of seed 0 gives the same rows.
    fresh = tmp_path / "fresh"
    assert main([*SWEEP, "seed=0", "trainer.epochs=2", f"hydra.sweep.dir={fresh}"]) == 0
    assert seed_determined(fresh / "0" / "metrics.csv") == seed_determined(sweep_dir / "0" / "metrics.csv")

    # Once more, even asking for more epochs: every job is complete, and a finished run never changes.
    before = {job: files(sweep_dir / job) for job in ("0", "1", "2")}
    capsys.readouterr()
    assert main([*SWEEP, "seed=0,1,2", "trainer.epochs=3", f"hydra.sweep.dir={sweep_dir}"]) == 0
    assert before == {job: files(sweep_dir / job) for job in ("0", "1", "2")}
    assert capsys.readouterr().err.count("already completed (2 epochs); kept as it is") == 3
    assert (sweep_dir / "sweep_summary.csv").read_text().count("\n") == 4  # header + 3 jobs


@pytest.mark.slow
def test_joblib_launcher_gives_the_same_jobs_without_oversubscribing(tmp_path):
    import csv
    import os

    jobs = ["-m", "debug=fast", "trainer.plots=false", "trainer.progress=off", "optimizer=sgd,adam"]
    assert main([*jobs, f"hydra.sweep.dir={tmp_path / 'basic'}"]) == 0
    assert main([*jobs, "hydra/launcher=joblib", "hydra.launcher.n_jobs=2", f"hydra.sweep.dir={tmp_path / 'joblib'}"]) == 0
    basic = sorted(p.name for p in (tmp_path / "basic").iterdir() if p.is_dir())
    assert basic == ["0", "1"] == sorted(p.name for p in (tmp_path / "joblib").iterdir() if p.is_dir())
    for job in basic:
        a, b = read_summary(tmp_path / "basic" / job), read_summary(tmp_path / "joblib" / job)
        assert a["overrides"] == b["overrides"] and b["status"] == "completed"
        rows = [list(csv.DictReader(open(tmp_path / kind / job / "metrics.csv"))) for kind in ("basic", "joblib")]
        for x, y in zip(*rows, strict=True):
            same = {k: float(v) for k, v in x.items() if k != "epoch_s"}
            assert same == pytest.approx({k: float(v) for k, v in y.items() if k != "epoch_s"}, rel=1e-5)
        threads = max(1, (os.cpu_count() or 1) // 2)  # two jobs share the cores
        assert b["device"] == f"cpu ({threads} thread{'s' if threads != 1 else ''})"
    assert (tmp_path / "joblib" / "sweep_summary.csv").is_file()


@pytest.mark.slow
def test_failing_and_diverging_jobs_do_not_sink_the_sweep(tmp_path, capsys):
    sweep_dir = tmp_path / "sweep"
    with pytest.raises(SystemExit) as info:
        main(
            [
                "-m",
                "debug=fast",
                "trainer.plots=false",
                "trainer.progress=off",
                "optimizer=sgd",
                "optimizer.lr=0.1,-1,1e12",
                f"hydra.sweep.dir={sweep_dir}",
            ]
        )
    assert info.value.code == 1
    statuses = [read_summary(sweep_dir / job)["status"] for job in ("0", "1", "2")]
    assert statuses == ["completed", "refused", "diverged"]
    assert read_summary(sweep_dir / "1")["error"] == "optimizer.lr=-1.0 must be > 0"
    table = (sweep_dir / "sweep_summary.csv").read_text()
    assert table.count("\n") == 4 and "refused" in table and "diverged" in table
    err = capsys.readouterr().err
    assert "dlrun: 2 of 3 jobs did not complete: 1 refused, 2 diverged" in err
