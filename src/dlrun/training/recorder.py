"""Writing a run folder: metrics.csv, summary.json and checkpoints, never half-written.

metrics.csv gets one row per epoch, appended and flushed to disk as it happens, so a killed run
keeps every finished epoch. Every column but epoch_s (wall-clock seconds) is determined by the
seed, the CPU and the thread count, so `diff` on the other columns tells whether two runs computed
the same thing. summary.json and
checkpoints are replaced atomically: written whole to a temporary file, fsynced, then renamed.

A full disk (or quota, or file-size limit) never leaves a torn file: a row that does not fit is
taken back, a checkpoint or summary that does not fit leaves the previous one, and the error is
one line (DiskFull) naming the file and the free space. The run's last word, its final
summary.json, has room kept for it (RESERVE_NAME), so the folder ends saying how the run ended.
How files are written whole is storage.py's job.

A folder is written by one RunRecorder at a time (see lock.py). torch is imported only to save
a checkpoint, so this module also serves readers and light subprocesses.
"""

from __future__ import annotations

import contextlib
import csv
import io
import json
import os
import platform
import subprocess
import sys
import weakref
from pathlib import Path
from typing import Any

from dlrun import lock
from dlrun.errors import DiskFull
from dlrun.training.storage import (  # atomic_write and write_json are also imported from here by resume.py and cli.py
    TEMP_SUFFIX,
    atomic_write,
    fsync_folder,
    reason,
    replace_file,
    size,
    translated,
    write_all,
    write_json,
)

CHECKPOINT_FORMAT = "dlrun-checkpoint"
CHECKPOINT_VERSION = 1
RESERVE_NAME = ".dlrun-reserve"
RESERVE_BYTES = 256 * 1024  # room for the final summary.json (a few kB) and its temporary copy on a full disk


# ---------------------------------------------------------------------------------------------
# One run folder.


class RunRecorder:
    """The files of one run folder, owned by this process from construction to close().

    Construction locks the folder before changing anything in it (RunInUse if another recorder
    holds it), removes temporary files that a killed owner left, and reserves RESERVE_BYTES for
    the final summary. Use it as a context manager, or call close(); an unclosed recorder is
    closed when it is garbage collected or the interpreter exits.
    """

    def __init__(self, run_dir: Path):
        self.dir = Path(run_dir)
        self.dir.mkdir(parents=True, exist_ok=True)
        self.metrics_path = self.dir / "metrics.csv"
        self.summary_path = self.dir / "summary.json"
        self.checkpoint_dir = self.dir / "checkpoints"
        self.plot_dir = self.dir / "plots"
        self.reserve_path = self.dir / RESERVE_NAME
        self._columns: list[str] | None = None
        self.rows = 0  # epochs written to metrics.csv by this process
        lock_fd = lock.acquire(self.dir)  # first: nothing in the folder changes unless this process owns it
        self._closer = weakref.finalize(self, _close, lock_fd, self.reserve_path)
        try:
            for stray in [*self.dir.glob(f".*{TEMP_SUFFIX}"), *self.checkpoint_dir.glob(f".*{TEMP_SUFFIX}")]:
                stray.unlink(missing_ok=True)
            self._reserve()
        except BaseException:
            self.close()
            raise

    def __enter__(self) -> RunRecorder:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    @property
    def closed(self) -> bool:
        return not self._closer.alive

    def close(self) -> None:
        """Give the reserved space back and unlock the folder; calling it again does nothing."""
        self._closer()

    def append_metrics(self, row: dict[str, Any]) -> None:
        """Append one epoch's row (the header first, on a new file) and force it to disk.

        The row goes whole or not at all: where a write fails (a full disk, say) the file is cut
        back to its previous size before the error (DiskFull for lack of room) is raised.
        """
        self._check_open()
        if self._columns is None:
            self._columns = list(row)
        buffer = io.StringIO()
        writer = csv.DictWriter(buffer, fieldnames=self._columns, lineterminator="\n")
        try:
            fd = os.open(self.metrics_path, os.O_WRONLY | os.O_APPEND | os.O_CREAT | os.O_CLOEXEC, 0o666)
        except OSError as err:
            raise translated(err, self.metrics_path, 0) from err
        try:
            before = os.fstat(fd).st_size
            if before == 0:
                writer.writeheader()
            writer.writerow({k: repr(v) if isinstance(v, float) else v for k, v in row.items()})
            data = buffer.getvalue().encode()
            try:
                write_all(fd, data)
                os.fsync(fd)
            except BaseException as err:
                with contextlib.suppress(OSError):  # the error to report is the write's
                    os.ftruncate(fd, before)  # take back a partial row; an interrupt between writes too
                if isinstance(err, OSError):
                    raise translated(err, self.metrics_path, len(data)) from err
                raise
        finally:
            os.close(fd)
        if before == 0:
            fsync_folder(self.dir)
        self.rows += 1

    def write_summary(self, summary: dict[str, Any]) -> None:
        """Replace summary.json during the run; DiskFull where there is no room (the old one stays).

        The reserve is not used here: it is kept for write_final_summary, so that a run that
        fails for lack of room can still say so.
        """
        self._check_open()
        write_json(self.summary_path, summary)

    def write_final_summary(self, summary: dict[str, Any]) -> bool:
        """Write the summary that ends the run (status completed, failed, ...); never raises OSError.

        On a full disk it gives the reserved space back and tries once more. Where it still
        cannot write, it prints one line to stderr naming the stale file, what it still says and
        how the run ended, and returns False; True when summary.json is written.
        """
        self._check_open()
        try:
            try:
                write_json(self.summary_path, summary)
            except DiskFull:
                self._release_reserve()
                write_json(self.summary_path, summary)
            return True
        except (DiskFull, OSError) as err:
            cause = err.__cause__ if isinstance(err, DiskFull) else err
            why = reason(cause) if isinstance(cause, OSError) else str(err)
            print(self._stale_summary_line(summary, why), file=sys.stderr)
            return False

    def save_checkpoint(self, name: str, state: dict[str, Any]) -> Path:
        """Replace checkpoints/`name` atomically; DiskFull where there is no room (the old one stays).

        The checkpoint is serialized in memory first (it is held twice for a moment), so that a
        full disk is reported as such rather than as torch's own serialization error.
        """
        import torch

        self._check_open()
        path = self.checkpoint_dir / name
        try:
            self.checkpoint_dir.mkdir(exist_ok=True)
        except OSError as err:
            raise translated(err, path, 0) from err
        atomic_write(path, lambda f: torch.save({"format": CHECKPOINT_FORMAT, "version": CHECKPOINT_VERSION, **state}, f))
        return path

    def _reserve(self) -> None:
        """Hold RESERVE_BYTES in the folder (random bytes: a compressing filesystem keeps them all)."""
        try:
            if self.reserve_path.stat().st_size >= RESERVE_BYTES:
                return  # left by an owner that was killed: still good
        except FileNotFoundError:
            pass
        try:
            replace_file(self.reserve_path, os.urandom(RESERVE_BYTES))
        except DiskFull as err:
            raise DiskFull(f"{err}; a run needs at least {size(RESERVE_BYTES)} free to start") from err.__cause__

    def _release_reserve(self) -> None:
        self.reserve_path.unlink(missing_ok=True)

    def _stale_summary_line(self, summary: dict[str, Any], why: str) -> str:
        try:
            status = json.loads(self.summary_path.read_text()).get("status")
            verb, now = "update", f'it still says "{status}"'
        except FileNotFoundError:
            verb, now = "write", "the folder has no summary.json"
        except (OSError, ValueError, AttributeError):
            verb, now = "update", "it cannot be read"
        ended = f"the run ended as {summary.get('status')}"
        done, total = summary.get("epochs_completed"), summary.get("epochs")
        if isinstance(done, int) and isinstance(total, int):
            ended += f" after {done} of {total} epochs"
        return f"dlrun: could not {verb} {self.summary_path} ({why}): {now}; {ended}"

    def _check_open(self) -> None:
        if self.closed:
            raise ValueError(f"the RunRecorder of {self.dir} is closed: it no longer owns the folder")


class NullRecorder:
    """The recorder of a torchrun rank other than 0: the same calls, nothing written (rank 0 owns the folder)."""

    def __init__(self, run_dir: Path):
        self.dir = Path(run_dir)
        self.metrics_path = self.dir / "metrics.csv"
        self.plot_dir = self.dir / "plots"

    def append_metrics(self, row: dict[str, Any]) -> None:
        pass

    def write_summary(self, summary: dict[str, Any]) -> None:
        pass

    def write_final_summary(self, summary: dict[str, Any]) -> bool:
        return True

    def save_checkpoint(self, name: str, state: dict[str, Any]) -> Path:
        return self.dir / "checkpoints" / name

    def close(self) -> None:
        pass


def _close(lock_fd: int, reserve_path: Path) -> None:
    """Give the reserve back, then unlock (the lock last: the folder is ours until then)."""
    try:
        reserve_path.unlink(missing_ok=True)
    finally:
        lock.release(lock_fd)


def versions() -> dict[str, str]:
    import torch

    from dlrun import __version__

    return {"python": platform.python_version(), "torch": torch.__version__, "dlrun": __version__}


def git_commit() -> str | None:
    """The commit of dlrun's own source checkout, with '-dirty' if it has changes; None outside git."""
    source = Path(__file__).resolve().parent
    try:
        commit = subprocess.run(["git", "-C", str(source), "rev-parse", "HEAD"], capture_output=True, text=True, timeout=5)
        if commit.returncode != 0:
            return None
        dirty = subprocess.run(
            ["git", "-C", str(source), "status", "--porcelain", "--untracked-files=no"], capture_output=True, text=True, timeout=5
        )
        return commit.stdout.strip() + ("-dirty" if dirty.stdout.strip() else "")
    except (OSError, subprocess.SubprocessError):
        return None


def command_line() -> str:
    return " ".join(["dlrun", *sys.argv[1:]])
