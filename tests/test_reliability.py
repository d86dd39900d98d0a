"""A run folder never lies and a finished result is never lost: a full disk, two writers, a reused
folder, saved values that look like interpolations, and values too large to train with."""

from __future__ import annotations

import json
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from tests.helpers import QUICK, read_summary, subprocess_env, tmpfs

DLRUN = [sys.executable, "-m", "dlrun"]


def files(folder: Path) -> dict[Path, bytes]:
    return {p: p.read_bytes() for p in folder.rglob("*") if p.is_file() and p.name != ".lock"}


def interrupted(run_dlrun, interrupt_at_epoch, run_dir: Path, *overrides: str, at: int = 2) -> Path:
    interrupt_at_epoch(at)
    with pytest.raises(SystemExit):
        run_dlrun(*QUICK, *overrides, run_dir=run_dir)
    interrupt_at_epoch(None)
    return run_dir


@pytest.fixture
def small_disk(tmp_path):
    """A 700 kB filesystem: room for a run's start, not for the MLP's Adam checkpoint (~0.5 MB)."""
    with tmpfs(tmp_path / "disk", "700k") as mount:
        yield mount


def test_a_full_disk_ends_the_run_as_failed_in_one_line(run_dlrun, small_disk, capsys):
    run = small_disk / "run"
    with pytest.raises(SystemExit) as failed:
        run_dlrun(*QUICK, run_dir=run)
    err = capsys.readouterr().err.strip().splitlines()
    assert failed.value.code == 2
    assert err[-1].startswith("dlrun: error: no space left on device: cannot write ") and "checkpoints/last.pt" in err[-1]
    summary = read_summary(run)
    assert summary["status"] == "failed" and "no space left on device" in summary["error"]
    assert not list(run.rglob("*.dlrun-tmp")) and not (run / ".dlrun-reserve").exists()


def test_a_new_run_never_reuses_a_folder_that_holds_a_run(run_dlrun, capsys):
    run = run_dlrun(*QUICK)
    before = files(run)
    capsys.readouterr()
    with pytest.raises(SystemExit) as refused:
        run_dlrun(*QUICK, "seed=1", "optimizer.lr=0.01", run_dir=run)
    assert refused.value.code == 2
    assert f"{run} already holds a run" in capsys.readouterr().err
    assert files(run) == before


def test_saved_values_are_never_interpolated_again(run_dlrun, interrupt_at_epoch, tmp_path, monkeypatch):
    monkeypatch.setenv("DLRUN_TEST_SECRET", "hunter2")
    part = interrupted(run_dlrun, interrupt_at_epoch, tmp_path / "part", "trainer.epochs=3", r"dataset.root=/tmp/x\${HOME}")
    assert read_summary(part)["config"]["dataset"]["root"] == "/tmp/x${HOME}"
    summary = read_summary(part)
    summary["config"]["dataset"]["root"] = "${oc.env:DLRUN_TEST_SECRET}"  # a folder someone handed over
    summary["config"]["model"]["activation"] = "${dlrun.unique_dir:" + str(tmp_path / "made") + "}"
    (part / "summary.json").write_text(json.dumps(summary))
    with pytest.raises(SystemExit):  # the activation is no activation: refused, but never resolved
        run_dlrun(f"resume={part}", run_dir=part)
    assert not (tmp_path / "made").exists()
    summary["config"]["model"]["activation"] = "relu"
    (part / "summary.json").write_text(json.dumps(summary))
    run_dlrun(f"resume={part}", run_dir=part)
    text = (part / "summary.json").read_text()
    assert read_summary(part)["status"] == "completed" and "hunter2" not in text and "${oc.env:DLRUN_TEST_SECRET}" in text


@pytest.mark.parametrize(
    ("override", "expected"),
    [("seed=99999999999999999999", "seed=99999999999999999999 must be in [0, 9223372036854775807]")],
)
def test_values_too_large_are_one_line(run_dlrun, capsys, override, expected):
    with pytest.raises(SystemExit) as refused:
        run_dlrun(*QUICK, override)
    assert refused.value.code == 2 and capsys.readouterr().err.strip() == f"dlrun: error: {expected}"


def test_a_batch_larger_than_the_data_set_is_one_batch(run_dlrun):
    summary = read_summary(run_dlrun(*QUICK, "trainer.batch_size=1000000000", "trainer.eval_batch_size=1000000000"))
    assert summary["status"] == "completed"


def wait_for(path: Path, predicate, proc: subprocess.Popen, timeout: float = 120) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate(path):
            return
        assert proc.poll() is None, proc.communicate()
        time.sleep(0.05)
    raise AssertionError(f"{path}: not ready after {timeout} s")


@pytest.mark.slow
def test_two_resumes_of_one_run_are_one_writer(run_dlrun, interrupt_at_epoch, tmp_path):
    part = interrupted(run_dlrun, interrupt_at_epoch, tmp_path / "part", "trainer.epochs=400")
    procs = [subprocess.Popen([*DLRUN, f"resume={part}", "trainer.progress=off", "device.threads=1"], cwd=tmp_path, stdout=subprocess.PIPE,
                              stderr=subprocess.PIPE, text=True, env=subprocess_env()) for _ in range(2)]  # fmt: skip
    results = [(p.wait(timeout=600), p.communicate()[1]) for p in procs]
    codes = sorted(code for code, _ in results)
    assert codes == [0, 2], results
    refused = next(err for code, err in results if code == 2)
    assert "is in use by dlrun pid " in refused and refused.strip().count("\n") == 0
    epochs = [int(line.split(",")[0]) for line in (part / "metrics.csv").read_text().splitlines()[1:]]
    assert epochs == list(range(1, 401))
    assert read_summary(part)["status"] == "completed"


@pytest.mark.slow
def test_two_sweeps_into_one_folder_never_interleave(tmp_path):
    sweep = tmp_path / "sweep"
    args = [*DLRUN, "-m", "seed=0,1", "trainer.epochs=30", "trainer.batch_size=16", "device.threads=1", "trainer.plots=false",
            "trainer.progress=off",
            "resume=auto",
            f"hydra.sweep.dir={sweep}"]  # fmt: skip
    procs = [subprocess.Popen(args, cwd=tmp_path, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=subprocess_env())
             for _ in range(2)]  # fmt: skip
    for proc in procs:
        proc.wait(timeout=600)
    for job in ("0", "1"):
        epochs = [int(line.split(",")[0]) for line in (sweep / job / "metrics.csv").read_text().splitlines()[1:]]
        assert epochs == list(range(1, 31)), job
        assert read_summary(sweep / job)["status"] == "completed"


def test_both_recipes_name_how_a_run_ended_the_same_way():
    from dlrun.errors import ConfigError, Diverged
    from dlrun.training.recipe import how_it_ended
    from dlrun.training.signals import Interrupted

    diverged = Diverged("epoch 2: the losses became nan (generator) and 0.7 (discriminator) by step 20")
    assert how_it_ended(diverged, training=True) == {"status": "diverged", "error": str(diverged)}
    assert how_it_ended(KeyboardInterrupt(), training=True)["status"] == "interrupted"
    assert how_it_ended(Interrupted(signal.SIGTERM), training=True)["status"] == "interrupted"
    refused = how_it_ended(ConfigError("model.depth=21 is not 6n + 2\nmore"), training=False)
    assert refused == {"status": "refused", "error": "model.depth=21 is not 6n + 2"}
    assert how_it_ended(ConfigError("found after the first step"), training=True)["status"] == "failed"
    assert how_it_ended(RuntimeError("CUDA out of memory"), training=False) == {
        "status": "failed",
        "error": "RuntimeError: CUDA out of memory",
    }
