"""A run folder never lies: whole rows and files on a full disk, a true final status, one writer."""

from __future__ import annotations

import errno
import json
import os
import re
import socket
import subprocess
import sys
from pathlib import Path

import pytest

import dlrun
from dlrun import lock
from dlrun.errors import DiskFull, RunInUse
from dlrun.lock import lock_holder
from dlrun.training.recorder import RESERVE_NAME, RunRecorder
from dlrun.training.storage import TEMP_SUFFIX
from tests.helpers import tmpfs

SOURCES = Path(dlrun.__file__).resolve().parents[1]  # this checkout's src/, for subprocesses


@pytest.fixture
def small_disk(tmp_path):
    """A real 3 MB filesystem to fill up."""
    with tmpfs(tmp_path / "disk", "3m") as mount:
        yield mount


def fill(folder: Path) -> Path:
    """Fill the filesystem that holds `folder` to its last page; return the filler file."""
    filler = folder / "filler"
    fd = os.open(filler, os.O_WRONLY | os.O_CREAT | os.O_APPEND)
    try:
        while True:
            os.write(fd, b"\0" * 65536)  # a short write near the end, then ENOSPC
    except OSError as err:
        assert err.errno == errno.ENOSPC
    finally:
        os.close(fd)
    return filler


def strays(folder: Path) -> list[str]:
    return sorted(p.name for p in folder.rglob(f"*{TEMP_SUFFIX}"))


def files(folder: Path) -> dict[str, bytes]:
    return {str(p.relative_to(folder)): p.read_bytes() for p in sorted(folder.rglob("*")) if p.is_file()}


# ---------------------------------------------------------------------------------------------
# A full disk.


def test_a_metrics_row_that_does_not_fit_is_taken_back_whole(small_disk):
    run = small_disk / "run"
    with RunRecorder(run) as recorder:
        # header (16 bytes) + row 1 end 10 bytes before a page boundary: row 2 fits only in part
        recorder.append_metrics({"epoch": 1, "loss": 0.5, "note": "x" * (4096 - 10 - 23)})
        assert recorder.metrics_path.stat().st_size == 4096 - 10
        filler = fill(small_disk)
        with pytest.raises(DiskFull) as info:
            recorder.append_metrics({"epoch": 2, "loss": 0.25, "note": "y" * 30})
        assert re.fullmatch(
            rf"no space left on device: cannot write {re.escape(str(recorder.metrics_path))} "
            rf"\(38 bytes needed, \d+ bytes free on {re.escape(str(small_disk))}\)",
            str(info.value),
        )
        assert recorder.metrics_path.stat().st_size == 4096 - 10  # the part that fitted was taken back
        filler.unlink()
        recorder.append_metrics({"epoch": 2, "loss": 0.25, "note": "y"})  # room again: the file goes on whole
        lines = recorder.metrics_path.read_text().splitlines()
    assert lines[0] == "epoch,loss,note" and lines[2] == "2,0.25,y" and len(lines) == 3


def test_a_row_over_the_file_size_limit_is_taken_back_whole(tmp_path):
    """EFBIG (ulimit -f) counts as no room too; in a subprocess, since the limit is per process."""
    script = """
import json, resource, signal, sys
from dlrun.errors import DiskFull
from dlrun.training.recorder import RunRecorder
with RunRecorder(sys.argv[1]) as recorder:
    signal.signal(signal.SIGXFSZ, signal.SIG_IGN)  # else the process is killed instead of getting EFBIG
    resource.setrlimit(resource.RLIMIT_FSIZE, (1000, resource.RLIM_INFINITY))
    try:
        while True:
            recorder.append_metrics({"epoch": recorder.rows + 1, "loss": 0.123456789})
    except DiskFull as err:
        print(json.dumps({"rows": recorder.rows, "error": str(err)}))
"""
    run = tmp_path / "run"
    env = {**os.environ, "PYTHONPATH": str(SOURCES)}
    result = subprocess.run([sys.executable, "-c", script, str(run)], capture_output=True, text=True, env=env, timeout=60)
    assert result.returncode == 0, result.stderr
    out = json.loads(result.stdout)
    text = (run / "metrics.csv").read_text()
    assert text.endswith("\n") and len(text.splitlines()) == out["rows"] + 1 > 10
    assert out["error"].startswith(f"file too large: cannot write {run / 'metrics.csv'} (")
    assert out["error"].endswith("needed; the file-size limit, ulimit -f, is 1.0 kB)")


def test_a_checkpoint_that_does_not_fit_leaves_the_previous_one(small_disk):
    import torch

    run = small_disk / "run"
    last = run / "checkpoints" / "last.pt"
    with RunRecorder(run) as recorder:
        recorder.save_checkpoint("last.pt", {"epoch": 1, "model": {"w": torch.zeros(10)}})
        fill(small_disk)
        with pytest.raises(DiskFull) as info:
            recorder.save_checkpoint("last.pt", {"epoch": 2, "model": {"w": torch.ones(100_000)}})
    assert re.fullmatch(
        rf"no space left on device: cannot write {re.escape(str(last))} \(0\.4 MB needed, \d+ bytes free on {re.escape(str(small_disk))}\)",
        str(info.value),
    )
    assert torch.load(last, weights_only=True)["epoch"] == 1
    assert sorted(p.name for p in last.parent.iterdir()) == ["last.pt"]  # no temporary file left


def test_the_final_summary_is_written_on_a_full_disk_thanks_to_the_reserve(small_disk):
    run = small_disk / "run"
    recorder = RunRecorder(run)
    recorder.write_summary({"status": "running", "epochs": 10, "epochs_completed": 0})
    fill(small_disk)  # after the recorder reserved its room
    final = {"status": "failed", "error": "no space left on device", "config": {"pad": "x" * 20_000}}
    with pytest.raises(DiskFull):
        recorder.write_summary(final)  # no room without the reserve
    assert json.loads(recorder.summary_path.read_text())["status"] == "running"
    assert recorder.write_final_summary(final) is True
    assert json.loads(recorder.summary_path.read_text()) == final
    recorder.close()
    assert not (run / RESERVE_NAME).exists() and strays(run) == []


def test_a_final_summary_beyond_the_reserve_names_the_stale_file(small_disk, capsys):
    run = small_disk / "run"
    with RunRecorder(run) as recorder:
        recorder.write_summary({"status": "running", "epochs": 10, "epochs_completed": 0})
        fill(small_disk)
        final = {"status": "failed", "epochs": 10, "epochs_completed": 3, "config": {"pad": "x" * 400_000}}
        assert recorder.write_final_summary(final) is False
    assert capsys.readouterr().err == (
        f'dlrun: could not update {run / "summary.json"} (no space left on device): it still says "running"; '
        "the run ended as failed after 3 of 10 epochs\n"
    )
    assert json.loads((run / "summary.json").read_text())["status"] == "running"  # stale, but whole
    assert strays(run) == []


# ---------------------------------------------------------------------------------------------
# One writer per folder.


def test_a_second_recorder_on_one_folder_is_refused_until_the_first_closes(tmp_path):
    run = tmp_path / "run"
    first = RunRecorder(run)
    first.append_metrics({"epoch": 1, "loss": 0.5})
    before = files(run)
    with pytest.raises(RunInUse) as info:
        RunRecorder(run)  # another open file description in the same process: flock refuses it too
    assert re.fullmatch(
        rf"{re.escape(str(run))} is in use by dlrun pid {os.getpid()} on host {re.escape(socket.gethostname())} "
        r"\(started \d{4}-\d\d-\d\dT\d\d:\d\d:\d\d[+-]\d\d:\d\d\); wait for it to finish or stop it",
        str(info.value),
    )
    assert files(run) == before  # the refused recorder changed nothing
    assert lock_holder(run).startswith(f"dlrun pid {os.getpid()} on host ")
    first.close()
    assert lock_holder(run) is None and not (run / RESERVE_NAME).exists()
    with pytest.raises(ValueError, match="closed"):
        first.append_metrics({"epoch": 2, "loss": 0.25})
    with RunRecorder(run) as second:
        second.append_metrics({"epoch": 2, "loss": 0.25})
    assert (run / "metrics.csv").read_text() == "epoch,loss\n1,0.5\n2,0.25\n"


def test_a_killed_holder_leaves_no_stale_lock(tmp_path):
    run = tmp_path / "run"
    hold = (
        "import sys; from dlrun.training.recorder import RunRecorder; recorder = RunRecorder(sys.argv[1]); "
        "print('torch' in sys.modules, flush=True); sys.stdin.read()"
    )
    env = {**os.environ, "PYTHONPATH": str(SOURCES)}
    proc = subprocess.Popen([sys.executable, "-c", hold, str(run)], stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True, env=env)
    try:
        assert proc.stdout.readline() == "False\n"  # holding a folder imports no torch
        with pytest.raises(RunInUse, match=f" is in use by dlrun pid {proc.pid} on host "):
            RunRecorder(run)
        assert lock_holder(run).startswith(f"dlrun pid {proc.pid} on host ")
    finally:
        proc.kill()
        proc.communicate(timeout=30)
    assert lock_holder(run) is None
    assert (run / RESERVE_NAME).exists()  # what a killed owner leaves: reused, then removed, by the next
    (run / f".summary.json.1.0badf00d{TEMP_SUFFIX}").write_text("half")
    with RunRecorder(run):
        assert strays(run) == []
    assert not (run / RESERVE_NAME).exists()


def test_a_filesystem_without_locks_warns_and_runs(tmp_path, monkeypatch, capsys):
    def no_locks(fd, operation):
        raise OSError(errno.ENOLCK, os.strerror(errno.ENOLCK))

    monkeypatch.setattr(lock.fcntl, "flock", no_locks)
    with RunRecorder(tmp_path / "run") as recorder:
        recorder.append_metrics({"epoch": 1})
    assert capsys.readouterr().err == (
        f"dlrun: warning: cannot lock {tmp_path / 'run'} (No locks available); nothing stops a second dlrun from writing it\n"
    )
    assert lock_holder(tmp_path / "run") is None
