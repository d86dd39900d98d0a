"""Nothing lost: bad input, interrupts, hard kills, divergence, resume and safe loading."""

from __future__ import annotations

import csv
import json
import os
import pickle
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch

from tests.helpers import QUICK, read_summary, subprocess_env

DLRUN = [sys.executable, "-m", "dlrun"]


def metrics_rows(run_dir: Path) -> list[list[str]]:
    with open(run_dir / "metrics.csv", newline="") as f:
        return list(csv.reader(f))[1:]


def start(args: list[str], cwd: Path) -> subprocess.Popen:
    return subprocess.Popen([*DLRUN, *args], cwd=cwd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=subprocess_env())


def wait_for_epochs(run_dir: Path, epochs: int, proc: subprocess.Popen, timeout: float = 120) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if (run_dir / "metrics.csv").is_file() and len(metrics_rows(run_dir)) >= epochs:
            return
        assert proc.poll() is None, proc.communicate()
        time.sleep(0.05)
    raise AssertionError(f"no {epochs} epochs in {run_dir} after {timeout} s")


# A run long enough to be caught mid-way: many short epochs of digits.
LONG = ["trainer.epochs=2000", "trainer.plots=false", "trainer.batch_size=16"]


@pytest.mark.parametrize(
    ("signals", "gap", "code"),
    [
        ([signal.SIGINT], 0, 130),
        ([signal.SIGTERM], 0, 143),
        ([signal.SIGINT, signal.SIGINT], 0.01, 130),
        ([signal.SIGINT, signal.SIGINT], 0.3, 130),  # the second one while the process is exiting
    ],
    ids=["ctrl-c", "sigterm", "ctrl-c-twice", "ctrl-c-twice-late"],
)
def test_interrupt_leaves_a_valid_folder_and_exit_code(tmp_path, signals, gap, code):
    run_dir = tmp_path / "run"
    proc = start([*LONG, f"hydra.run.dir={run_dir}"], tmp_path)
    wait_for_epochs(run_dir, 2, proc)
    for sig in signals:
        proc.send_signal(sig)
        time.sleep(gap)
    _, err = proc.communicate(timeout=120)
    assert proc.returncode == code, err
    assert "Traceback" not in err and "interrupted" in err
    summary = read_summary(run_dir)
    rows = metrics_rows(run_dir)
    assert summary["status"] == "interrupted"
    assert summary["epochs_completed"] == len(rows) >= 2
    last = torch.load(run_dir / "checkpoints" / "last.pt", weights_only=True)
    assert last["epoch"] == len(rows)


@pytest.mark.parametrize("status", ["completed", "interrupted"])
def test_a_second_signal_while_the_run_records_how_it_ended_does_not_cut_it_short(status, compose_cfg, tmp_path, monkeypatch):
    """Ctrl-C twice: the second one may land while summary.json is being written (the suite caught it
    once, under load); the folder must still say how the run ended, never `running`."""
    from dlrun.training import recipe
    from dlrun.training.recorder import RunRecorder
    from dlrun.training.signals import Interrupted, StopRequest

    stop = StopRequest()
    write = RunRecorder.write_final_summary

    def signalled_while_writing(self, summary):
        stop.handle(signal.SIGINT, None)  # the first Ctrl-C, if the run had not had one
        stop.handle(signal.SIGINT, None)  # the second, just as the file is written
        return write(self, summary)

    monkeypatch.setattr(RunRecorder, "write_final_summary", signalled_while_writing)
    if status == "interrupted":
        stop.signum = signal.SIGINT  # the first Ctrl-C came during training: the loop stops at its next step
    run_dir = tmp_path / "run"
    cfg = compose_cfg(*QUICK)
    if status == "interrupted":
        with pytest.raises(Interrupted):
            recipe.execute(cfg, run_dir, stop=stop)
    else:
        assert recipe.execute(cfg, run_dir, stop=stop)["status"] == "completed"
    assert read_summary(run_dir)["status"] == status


@pytest.mark.parametrize("process_ends", [True, False])
def test_after_a_stop_a_late_signal_is_ignored_only_where_the_process_ends(process_ends):
    from dlrun.training.signals import Interrupted, stop_on_signals

    before = {s: signal.getsignal(s) for s in (signal.SIGINT, signal.SIGTERM)}
    try:
        with pytest.raises(Interrupted), stop_on_signals(process_ends_after_a_stop=process_ends) as stop:
            stop.handle(signal.SIGINT, None)  # the first Ctrl-C
            stop.check()  # the next safe point
        after = {s: signal.getsignal(s) for s in before}
        assert after == ({s: signal.SIG_IGN for s in before} if process_ends else before)
    finally:
        for s, handler in before.items():
            signal.signal(s, handler)


def test_a_run_that_was_not_stopped_restores_the_handlers():
    from dlrun.training.signals import stop_on_signals

    before = signal.getsignal(signal.SIGINT)
    with stop_on_signals(process_ends_after_a_stop=True):
        assert signal.getsignal(signal.SIGINT) != before
    assert signal.getsignal(signal.SIGINT) == before


def test_kill_9_keeps_every_finished_epoch_whole_and_the_reader_says_the_run_died(tmp_path, capsys):
    from dlrun.analysis.runfolder import load_run
    from dlrun.cli import main

    run_dir = tmp_path / "run"
    proc = start([*LONG, f"hydra.run.dir={run_dir}"], tmp_path)
    wait_for_epochs(run_dir, 3, proc)
    assert load_run(run_dir).status == "running"  # its process holds the lock
    proc.kill()
    proc.communicate(timeout=60)
    rows = metrics_rows(run_dir)
    assert len(rows) >= 3 and all(len(r) == 7 for r in rows)  # no half rows
    assert [int(r[0]) for r in rows] == list(range(1, len(rows) + 1))
    assert read_summary(run_dir)["status"] == "running"  # the folder as the killed process left it
    last = torch.load(run_dir / "checkpoints" / "last.pt", weights_only=True)  # complete: the old one or the new one
    assert last["epoch"] in (len(rows) - 1, len(rows))
    assert load_run(run_dir).status == "died"  # what a reader makes of it: nobody will finish it
    assert main(["compare", str(run_dir)]) == 0
    assert "died" in capsys.readouterr().out
    assert read_summary(run_dir)["status"] == "running"  # reading changed nothing


@pytest.mark.parametrize("holder", ["another host", "a live pid"])
def test_a_running_folder_is_not_called_dead_where_that_cannot_be_told(holder, tmp_path):
    """A free lock is not proof enough: on some cluster filesystems a lock taken on another node is
    not seen here, and a live process with the lock file's pid may be the writer itself."""
    import socket

    from dlrun.analysis.runfolder import load_run
    from dlrun.lock import LOCK_NAME

    run_dir = tmp_path / "run"
    run_dir.mkdir()
    (run_dir / "summary.json").write_text(json.dumps({"format": 1, "status": "running", "epochs": 5, "epochs_completed": 0}))
    host, pid = ("node-17", 999_999) if holder == "another host" else (socket.gethostname(), os.getpid())
    (run_dir / LOCK_NAME).write_text(json.dumps({"pid": pid, "host": host, "started": "2026-11-27T06:00:00+00:00"}))
    assert load_run(run_dir).status == "running"


@pytest.mark.skipif(not Path("/proc/self/stat").exists(), reason="Linux's /proc tells a zombie")
def test_a_killed_writer_not_yet_collected_by_its_parent_has_died(tmp_path):
    """kill -9 leaves a zombie until the parent calls wait() (a shell, a job runner, an init that
    reaps late): the process is over, so is its run."""
    import socket

    from dlrun.analysis.runfolder import load_run
    from dlrun.lock import LOCK_NAME

    child = subprocess.Popen(["sleep", "60"])
    child.kill()
    deadline = time.monotonic() + 10
    while Path(f"/proc/{child.pid}/stat").read_text().rpartition(")")[2].split()[0] != "Z" and time.monotonic() < deadline:
        time.sleep(0.01)
    try:
        run_dir = tmp_path / "run"
        run_dir.mkdir()
        (run_dir / "summary.json").write_text(json.dumps({"format": 1, "status": "running", "epochs": 5, "epochs_completed": 0}))
        lock = {"pid": child.pid, "host": socket.gethostname(), "started": "2026-11-27T06:00:00+00:00"}
        (run_dir / LOCK_NAME).write_text(json.dumps(lock))
        assert load_run(run_dir).status == "died"
    finally:
        child.wait()


def interrupted_run(run_dlrun, interrupt_at_epoch, run_dir: Path, *overrides: str, at: int = 4) -> Path:
    """A run stopped as Ctrl-C stops it, during epoch `at` (the epochs before it recorded)."""
    interrupt_at_epoch(at)
    with pytest.raises(SystemExit) as stopped:
        run_dlrun(*QUICK, *overrides, run_dir=run_dir)
    interrupt_at_epoch(None)
    assert stopped.value.code == 130 and read_summary(run_dir)["status"] == "interrupted"
    return run_dir


def without_time(run_dir: Path) -> list[list[str]]:
    return [row[:-1] for row in metrics_rows(run_dir)]  # epoch_s, the last column, is wall-clock time


def test_resume_after_an_interrupt_equals_an_uninterrupted_run(run_dlrun, interrupt_at_epoch, tmp_path):
    extra = ("regularization=[dropout]", "seed=5", "trainer.epochs=5")
    whole = run_dlrun(*QUICK, *extra)
    part = interrupted_run(run_dlrun, interrupt_at_epoch, tmp_path / "part", *extra)
    run_dlrun(f"resume={part}", run_dir=part)
    assert without_time(part) == without_time(whole)
    summary = read_summary(part)
    assert summary["status"] == "completed" and summary["epochs_completed"] == 5 and summary["resumed_from_epoch"] == 3
    assert summary["test"] == read_summary(whole)["test"]


def test_a_run_killed_after_its_last_epoch_is_finished_by_resume(run_dlrun, tmp_path):
    """Killed during its test pass or plots: every epoch is recorded, the summary still says running."""
    run = run_dlrun(*QUICK)
    finished = read_summary(run)
    running = {k: v for k, v in finished.items() if k not in ("final", "best", "test", "timing", "ended_at")} | {"status": "running"}
    (run / "summary.json").write_text(json.dumps(running))
    shutil.rmtree(run / "plots", ignore_errors=True)
    rows_before = (run / "metrics.csv").read_bytes()
    run_dlrun(f"resume={run}", "trainer.plots=true", run_dir=run)
    summary = read_summary(run)
    assert summary["status"] == "completed" and summary["test"] == finished["test"] and summary["best"] == finished["best"]
    assert (run / "metrics.csv").read_bytes() == rows_before and (run / "plots" / "curves.png").is_file()


def test_resuming_a_completed_run_changes_nothing(run_dlrun, capsys):
    run = run_dlrun(*QUICK)
    before = {p: p.read_bytes() for p in run.rglob("*") if p.is_file()}
    capsys.readouterr()
    run_dlrun(f"resume={run}", run_dir=run)
    assert "already completed (2 epochs); kept as it is" in capsys.readouterr().err
    with pytest.raises(SystemExit) as refused:
        run_dlrun(f"resume={run}", "trainer.epochs=4", run_dir=run)
    assert refused.value.code == 2 and "a finished run is never changed" in capsys.readouterr().err
    assert before == {p: p.read_bytes() for p in run.rglob("*") if p.is_file()}


def test_resume_drops_rows_past_the_checkpoint(run_dlrun, interrupt_at_epoch, tmp_path):
    """A kill between writing an epoch's row and its checkpoint leaves one row too many: it is redone."""
    whole = run_dlrun(*QUICK, "trainer.epochs=3")
    part = interrupted_run(run_dlrun, interrupt_at_epoch, tmp_path / "part", "trainer.epochs=3", at=3)
    with open(part / "metrics.csv", "a") as f:
        f.write("3,9.9,0.1,9.9,0.1,0.001,0.5\n")
    run_dlrun(f"resume={part}", run_dir=part)
    assert without_time(part) == without_time(whole)


def test_resume_refuses_an_override_that_changes_the_experiment(run_dlrun, capsys):
    part = run_dlrun(*QUICK)
    capsys.readouterr()
    with pytest.raises(SystemExit) as info:
        run_dlrun(f"resume={part}", "optimizer.lr=0.5", run_dir=part)
    assert info.value.code == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("dlrun: error: resume: the run was made with optimizer.lr=0.001 and this command asks for 0.5")
    assert read_summary(part)["status"] == "completed"  # the refused command changed nothing


@pytest.mark.parametrize("damage", ["missing", "truncated", "foreign-pickle", "other-model", "no-folder"])
def test_resume_refuses_a_bad_checkpoint_with_one_line(run_dlrun, interrupt_at_epoch, tmp_path, capsys, damage):
    part = interrupted_run(run_dlrun, interrupt_at_epoch, tmp_path / "part", "trainer.epochs=3", at=3)
    last = part / "checkpoints" / "last.pt"
    marker = tmp_path / "executed"
    target = part
    if damage == "missing":
        last.unlink()
        expected = "holds no checkpoints/last.pt"
    elif damage == "truncated":
        last.write_bytes(last.read_bytes()[:1000])
        expected = "is truncated or corrupt"
    elif damage == "foreign-pickle":

        class Exploit:
            def __reduce__(self):
                return (os.system, (f"touch {marker}",))

        last.write_bytes(pickle.dumps(Exploit()))
        expected = "is not a dlrun checkpoint"
    elif damage == "other-model":
        other = run_dlrun(*QUICK, "model.hidden_sizes=[32]")
        shutil.copy(other / "checkpoints" / "last.pt", last)
        expected = "is from another model: 1.weight is (32, 64) there and (128, 64) here"
    else:
        target = tmp_path / "no-such-run"
        expected = "no such run folder"
    capsys.readouterr()
    with pytest.raises(SystemExit) as info:
        run_dlrun(f"resume={target}", run_dir=target if target.exists() else None)
    assert info.value.code == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("dlrun: error: ") and expected in err and "\n" not in err
    assert not marker.exists()  # the pickle's code never ran
    if target.exists():
        assert read_summary(target)["status"] == "interrupted"  # the run's own record is untouched


def _forge(path: Path, change) -> None:
    checkpoint = torch.load(path, weights_only=True)
    change(checkpoint)
    torch.save(checkpoint, path)


FORGERIES = {
    "negative-epoch": ("last.pt", lambda c: c.update(epoch=-5), "written after epoch -5"),
    "string-epoch": ("last.pt", lambda c: c.update(epoch="2"), "written after epoch '2'"),
    "epoch-past-the-rows": ("last.pt", lambda c: c.update(epoch=3, best={"epoch": 1}), "does not hold epochs 1 to 3"),
    "sgd-state-for-adam": ("last.pt", lambda c: c["optimizer"]["state"].update({0: {"momentum_buffer": torch.zeros(3)}}),
                           "the state of another kind of optimizer"),
    "short-rng": ("last.pt", lambda c: c["rng"].update(data=torch.zeros(3, dtype=torch.uint8)), "no valid data RNG state"),
    "no-rng": ("last.pt", lambda c: c.pop("rng"), "holds no RNG state"),
    "other-config": ("last.pt", lambda c: c["config"]["optimizer"].update(lr=0.5), "belongs to another run"),
    "newer-version": ("last.pt", lambda c: c.update(version=99), "of version 99"),
    "best-of-another-model": ("best.pt", lambda c: c["model"].update({"1.weight": torch.zeros(5, 64)}), "best.pt is from another model"),
    "weights-not-tensors": ("last.pt", lambda c: c["model"].update({"1.bias": 3}), "holds no model weights"),
}  # fmt: skip


@pytest.mark.parametrize("forgery", FORGERIES)
def test_resume_refuses_a_forged_checkpoint_before_changing_anything(run_dlrun, interrupt_at_epoch, tmp_path, capsys, forgery):
    part = interrupted_run(run_dlrun, interrupt_at_epoch, tmp_path / "part", "trainer.epochs=4", at=3)
    name, change, expected = FORGERIES[forgery]
    _forge(part / "checkpoints" / name, change)
    before = {p: p.read_bytes() for p in part.rglob("*") if p.is_file() and p.name != ".lock"}
    capsys.readouterr()
    with pytest.raises(SystemExit) as refused:
        run_dlrun(f"resume={part}", run_dir=part)
    err = capsys.readouterr().err.strip()
    assert refused.value.code == 2 and err.startswith("dlrun: error: ") and expected in err and "\n" not in err, err
    assert before == {p: p.read_bytes() for p in part.rglob("*") if p.is_file() and p.name != ".lock"}


def test_divergence_stops_the_run_with_its_own_status(run_dlrun, tmp_path, capsys):
    run_dir = tmp_path / "diverging"
    with pytest.raises(SystemExit) as info:
        run_dlrun(*QUICK, "optimizer=sgd", "optimizer.lr=1e12", "trainer.epochs=3", run_dir=run_dir)
    assert info.value.code == 1
    err = capsys.readouterr().err
    assert "dlrun: diverged: epoch 1: the training loss became nan at step " in err and "lower optimizer.lr" in err
    summary = read_summary(run_dir)
    assert summary["status"] == "diverged" and summary["epochs_completed"] == 0


def test_unwritable_output_folder_is_one_line(tmp_path):
    blocker = tmp_path / "file"
    blocker.write_text("not a folder")
    result = subprocess.run([*DLRUN, f"hydra.run.dir={blocker}/run"], cwd=tmp_path, capture_output=True, text=True, timeout=120)
    assert result.returncode == 2
    assert result.stderr.strip().startswith("dlrun: error: cannot create the run folder") and "Traceback" not in result.stderr


@pytest.mark.parametrize(
    ("override", "expected"),
    [
        ("optimizer.lrr=0.1", "dlrun: error: 'lrr' is not a key of optimizer; did you mean optimizer.lr=0.1?"),
        ("model=gpt", "dlrun: error: model=gpt: no such option; the options are: cnn, custom, mlp, resnet, rnn, transformer"),
        ("model=0", "dlrun: error: Config group override must be a string or a list. Got int"),
        ("trainer.epochs=ten", "Value 'ten' of type 'str' could not be converted to Integer"),
    ],
)
def test_composition_errors_are_a_message_without_a_traceback(tmp_path, override, expected):
    result = subprocess.run([*DLRUN, override], cwd=tmp_path, capture_output=True, text=True, timeout=120)
    assert result.returncode == 2
    assert expected in result.stderr and "Traceback" not in result.stderr
    assert not (tmp_path / "outputs").exists()


def test_concurrent_runs_in_the_same_second_get_their_own_folders(tmp_path):
    procs = [start(["debug=fast", "trainer.plots=false"], tmp_path) for _ in range(3)]
    for proc in procs:
        _, err = proc.communicate(timeout=300)
        assert proc.returncode == 0, err
    runs = sorted((tmp_path / "outputs").glob("*/*"))
    assert len(runs) == 3
    for run in runs:
        summary = read_summary(run)
        assert summary["status"] == "completed" and len(metrics_rows(run)) == 1
        assert json.loads(json.dumps(summary))["epochs_completed"] == 1
