"""The TensorBoard logger: a run's rows, config and plots as event files in RUN/tb/.

Uses torch's own SummaryWriter (torch.utils.tensorboard), which needs the tensorboard package:
the `tensorboard` extra. See loggers.py for how loggers plug into a run.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from dlrun.analysis.runfolder import FINAL_STATUSES
from dlrun.training.loggers import SweepJob, earlier_rows, end_metrics, flat_config, plot_files


class TensorBoardLogger:
    """Event files in RUN/tb/: every row's numbers as scalars (step = epoch), the config as
    hparams (so the HParams tab compares a sweep's jobs), the test metrics and plots at the end."""

    def __init__(self, run_dir: Path, *, sweep: SweepJob | None = None):
        self.run_dir = run_dir
        self.folder = run_dir / "tb"
        self.writer = None

    def start(self, summary: dict[str, Any]) -> None:
        from torch.utils.tensorboard import SummaryWriter
        from torch.utils.tensorboard.summary import hparams

        resumed = summary.get("resumed_from_epoch")
        fresh = not self.folder.is_dir()
        # A resumed run continues after its checkpoint's epoch: events logged past it before the
        # run stopped are hidden by TensorBoard (purge_step), so no step is shown twice.
        self.writer = SummaryWriter(str(self.folder), purge_step=resumed + 1 if resumed else None)
        if fresh:
            # TensorBoard keeps the first hparams it reads in a run, so they are written once. Only
            # the session's start is written: with no experiment summary in any run, the HParams
            # tab builds one from all the runs it sees (every job's hparams and every scalar).
            _, session_start, _ = hparams(flat_config(summary), {})
            self.writer.file_writer.add_summary(session_start)
            self.writer.add_text("run", f"{summary.get('experiment', '')}  \n`{summary.get('command', '')}`")
            for row in earlier_rows(self.run_dir, summary):
                self.log_epoch(row)
        self.writer.flush()

    def log_epoch(self, row: dict[str, float]) -> None:
        for key, value in row.items():
            if key != "epoch":
                self.writer.add_scalar(key, value, int(row["epoch"]))
        self.writer.flush()  # a live TensorBoard shows each epoch as it ends

    def finish(self, summary: dict[str, Any]) -> None:
        try:
            step = summary.get("epochs_completed") or 0
            for key, value in end_metrics(summary).items():
                self.writer.add_scalar(key, value, step)
            if summary.get("status") in FINAL_STATUSES:  # a pruned trial drew its pictures too
                import numpy as np
                from PIL import Image  # matplotlib's own dependency

                for path in plot_files(self.run_dir):
                    with Image.open(path) as image:
                        pixels = np.asarray(image.convert("RGB"))  # (height, width, 3)
                    self.writer.add_image(f"plots/{path.stem}", pixels, step, dataformats="HWC")
        finally:
            self.writer.close()
