"""Sweeps on Hydra's submitit launchers: local processes everywhere, and a real one-node Slurm
cluster where one runs (.ci/slurm.sh starts it in CI)."""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from tests.helpers import read_summary, subprocess_env

DLRUN = [sys.executable, "-m", "dlrun"]
SMALL = ["trainer.epochs=1", "trainer.plots=false", "trainer.progress=off", "device.threads=1"]


def slurm_idle() -> str | None:
    """None where a Slurm node is idle here, else why the Slurm test cannot run."""
    if shutil.which("sinfo") is None:
        return "no Slurm on this machine (CI starts one with .ci/slurm.sh start)"
    done = subprocess.run(["sinfo", "-h", "-o", "%T"], capture_output=True, text=True, timeout=30)
    if "idle" not in done.stdout.split():
        return f"no idle Slurm node here (sinfo: {(done.stdout + done.stderr).strip() or 'nothing'}); CI starts one with .ci/slurm.sh start"
    return None


def sweep(tmp_path: Path, *launcher: str, jobs: str = "optimizer=sgd,adam") -> subprocess.CompletedProcess:
    return subprocess.run([*DLRUN, "-m", *launcher, jobs, *SMALL, f"hydra.sweep.dir={tmp_path / 'sweep'}"], cwd=tmp_path,
                          capture_output=True, text=True, timeout=600, env=subprocess_env())  # fmt: skip


def check_sweep(sweep_dir: Path, done: subprocess.CompletedProcess) -> None:
    assert done.returncode == 0, done.stderr[-2000:]
    for job in ("0", "1"):
        summary = read_summary(sweep_dir / job)
        assert summary["status"] == "completed" and summary["epochs_completed"] == 1
        assert Path(summary["job_log"]).is_file() and str(Path(summary["job_log"])).startswith(str(sweep_dir / ".submitit"))
    assert (sweep_dir / "sweep_summary.csv").read_text().count("\n") == 3  # written by the submitting process
    assert "sweep summary:" in done.stdout


@pytest.mark.slow
def test_a_sweep_on_the_local_submitit_launcher(tmp_path):
    check_sweep(tmp_path / "sweep", sweep(tmp_path, "launcher=local"))


@pytest.mark.slow
def test_a_failing_job_on_submitit_names_its_log(tmp_path):
    done = sweep(tmp_path, "launcher=local", jobs="optimizer.lr=0.01,1e12")
    assert done.returncode == 1
    diverged = read_summary(tmp_path / "sweep" / "1")
    assert diverged["status"] == "diverged" and "became nan" in Path(diverged["job_log"]).read_text()


@pytest.mark.slow
@pytest.mark.skipif(slurm_idle() is not None, reason=str(slurm_idle()))
def test_a_sweep_on_a_real_slurm_cluster(tmp_path):
    done = sweep(tmp_path, "launcher=slurm", "hydra.launcher.cpus_per_task=1", "hydra.launcher.mem_gb=1", "hydra.launcher.timeout_min=10")
    check_sweep(tmp_path / "sweep", done)
    job_ids = [p.name for p in (tmp_path / "sweep" / ".submitit").iterdir() if not p.name.startswith(".")]
    assert job_ids and all(j.split("_")[0].isdigit() for j in job_ids)  # Slurm's own (array) job ids
