"""Data-parallel training under torchrun on the CPU (gloo): one run folder, the metrics one process
would compute, and only rank 0 writing."""

from __future__ import annotations

import csv
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from tests.helpers import read_summary, subprocess_env

TORCHRUN = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node=2", "-m", "dlrun"]
SMALL = ["trainer.epochs=2", "trainer.plots=false", "trainer.progress=off", "device.threads=1"]


def rows(run_dir: Path) -> list[dict[str, float]]:
    with open(run_dir / "metrics.csv", newline="") as f:
        return [{k: float(v) for k, v in row.items() if k != "epoch_s"} for row in csv.DictReader(f)]


@pytest.mark.slow
def test_torchrun_trains_one_run_that_matches_one_process(run_dlrun, tmp_path):
    single = run_dlrun(*SMALL, "seed=1")
    done = subprocess.run([*TORCHRUN, *SMALL, "seed=1"], cwd=tmp_path, capture_output=True, text=True, timeout=600, env=subprocess_env())
    assert done.returncode == 0, done.stderr[-3000:]
    [folder] = [p for p in (tmp_path / "outputs").glob("*/*") if p.is_dir()]  # one folder for both ranks
    summary = read_summary(folder)
    assert summary["status"] == "completed" and summary["distributed"] == {"world_size": 2, "backend": "gloo"}
    assert done.stdout.count("test accuracy") == 1  # only rank 0 prints
    # The two shards of each global batch of 64 are the single process's batch: the same numbers up to float sums.
    for a, b in zip(rows(folder), rows(single), strict=True):
        assert a == pytest.approx(b, rel=1e-4)
    assert (folder / ".hydra" / "config.yaml").is_file() and not list(tmp_path.glob("outputs/*/*_1"))


@pytest.mark.slow
def test_torchrun_refuses_a_global_batch_that_does_not_divide(tmp_path):
    done = subprocess.run([*TORCHRUN, *SMALL, "trainer.batch_size=63"], cwd=tmp_path, capture_output=True, text=True, timeout=600,
                          env=subprocess_env())  # fmt: skip
    assert done.returncode != 0
    assert "trainer.batch_size=63 is the global batch and must divide evenly among 2 processes" in done.stderr
    shutil.rmtree(tmp_path / "outputs", ignore_errors=True)


@pytest.mark.slow
def test_ctrl_c_on_torchrun_stops_every_rank_and_resume_continues(tmp_path):
    import signal
    import time

    run_dir = tmp_path / "run"
    args = ["trainer.epochs=30", "trainer.batch_size=16", "trainer.plots=false", "trainer.progress=off", "device.threads=1"]
    proc = subprocess.Popen([*TORCHRUN, *args, f"hydra.run.dir={run_dir}"], cwd=tmp_path, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            text=True, env=subprocess_env())  # fmt: skip
    deadline = time.monotonic() + 300
    while not ((run_dir / "metrics.csv").is_file() and len((run_dir / "metrics.csv").read_text().splitlines()) > 3):
        assert proc.poll() is None and time.monotonic() < deadline, proc.communicate()
        time.sleep(0.1)
    proc.send_signal(signal.SIGINT)
    proc.communicate(timeout=120)
    summary = read_summary(run_dir)
    assert summary["status"] == "interrupted" and 3 <= summary["epochs_completed"] < 30
    assert len(rows(run_dir)) == summary["epochs_completed"]
    done = subprocess.run([*TORCHRUN, f"resume={run_dir}", "trainer.progress=off"], cwd=tmp_path, capture_output=True, text=True,
                          timeout=600, env=subprocess_env())  # fmt: skip
    assert done.returncode == 0, done.stderr[-3000:]
    summary = read_summary(run_dir)
    assert summary["status"] == "completed" and summary["epochs_completed"] == 30
    assert [row["epoch"] for row in rows(run_dir)] == list(range(1, 31))
