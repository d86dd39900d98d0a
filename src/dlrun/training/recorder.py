"""Writing a run folder: metrics.csv, summary.json and checkpoints, never half-written.

metrics.csv gets one row per epoch, appended and flushed to disk as it happens, so a killed run
keeps every finished epoch. It holds only values that the seed determines (no wall-clock
times), so two runs of the same seed on the same CPU give byte-identical files. summary.json and
checkpoints are replaced atomically: written to a temporary file, fsynced, then renamed.
"""

from __future__ import annotations

import csv
import io
import json
import os
import platform
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path
from typing import IO, Any

CHECKPOINT_FORMAT = "dlrun-checkpoint"
CHECKPOINT_VERSION = 1


def atomic_write(path: Path, write: Callable[[IO[bytes]], None]) -> None:
    """Call `write` on a temporary file beside `path`, fsync it, then rename it over `path`."""
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    try:
        with open(tmp, "wb") as f:
            write(f)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)


def write_json(path: Path, data: dict) -> None:
    atomic_write(path, lambda f: f.write((json.dumps(data, indent=2, default=str) + "\n").encode()))


class RunRecorder:
    """The files of one run folder."""

    def __init__(self, run_dir: Path):
        self.dir = Path(run_dir)
        self.dir.mkdir(parents=True, exist_ok=True)
        self.metrics_path = self.dir / "metrics.csv"
        self.summary_path = self.dir / "summary.json"
        self.checkpoint_dir = self.dir / "checkpoints"
        self.plot_dir = self.dir / "plots"
        self._columns: list[str] | None = None
        self.rows = 0  # epochs written to metrics.csv by this process

    def append_metrics(self, row: dict[str, Any]) -> None:
        """Append one epoch's row (the header first, on a new file) and force it to disk."""
        if self._columns is None:
            self._columns = list(row)
        new = not self.metrics_path.exists() or self.metrics_path.stat().st_size == 0
        buffer = io.StringIO()
        writer = csv.DictWriter(buffer, fieldnames=self._columns, lineterminator="\n")
        if new:
            writer.writeheader()
        writer.writerow({k: repr(v) if isinstance(v, float) else v for k, v in row.items()})
        # One write call per row: a crash leaves whole rows only (short appends are not torn).
        with open(self.metrics_path, "a", encoding="utf-8") as f:
            f.write(buffer.getvalue())
            f.flush()
            os.fsync(f.fileno())
        self.rows += 1

    def close(self) -> None:
        """Release the folder (nothing to release yet)."""

    def write_summary(self, summary: dict[str, Any]) -> None:
        write_json(self.summary_path, summary)

    def save_checkpoint(self, name: str, state: dict[str, Any]) -> Path:
        import torch

        self.checkpoint_dir.mkdir(exist_ok=True)
        path = self.checkpoint_dir / name
        atomic_write(path, lambda f: torch.save({"format": CHECKPOINT_FORMAT, "version": CHECKPOINT_VERSION, **state}, f))
        return path


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
