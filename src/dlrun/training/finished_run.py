"""A finished run opened again, read-only: its config, its data's shape and classes, and a checkpoint's
weights in its model. `dlrun eval` and `dlrun predict` go through here.

Nothing here writes into the run folder: no lock, no summary, no checkpoint. A checkpoint is loaded
as resume loads one (checkpoint.py: tensors only, never code) and checked against the model the
run's config builds before its weights are used.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from omegaconf import DictConfig

from dlrun.errors import DlrunError

CHECKPOINTS = ("best", "last")


@dataclass
class FinishedRun:
    folder: Path
    summary: dict[str, Any]
    cfg: DictConfig  # the run's resolved config; its strings are data, never resolved again
    input_shape: tuple[int, ...]  # (C, H, W) of the model's input
    class_names: list[str]

    @property
    def transform(self) -> dict[str, Any] | None:
        transform = self.summary["data"].get("transform")
        return transform if isinstance(transform, dict) else None


def open_run(folder: str) -> FinishedRun:
    """The run in `folder`; a DlrunError where it is not a run folder or never loaded its data."""
    from dlrun.analysis.runfolder import read_summary
    from dlrun.training.resume import literal_config

    path = Path(folder).expanduser()
    if not path.is_dir():
        raise DlrunError(f"{folder}: no such run folder")
    summary = read_summary(path)  # RunFolderError (a DlrunError) for a file that cannot be read
    if not summary:
        raise DlrunError(f"{folder} holds no summary.json; is it a dlrun run folder (outputs/DATE/TIME)?")
    data, config = summary.get("data"), summary.get("config")
    if not isinstance(config, dict) or not isinstance(data, dict) or not isinstance(data.get("input_shape"), list):
        raise DlrunError(f"{folder}: the run never loaded its data (status {summary.get('status', '?')}); there is no model to use")
    names = data.get("class_names")
    if not (isinstance(names, list) and len(names) == data.get("classes")):
        names = [str(c) for c in range(int(data.get("classes", 0)))]
    return FinishedRun(path, summary, literal_config(config), tuple(data["input_shape"]), [str(n) for n in names])


def load_model(run: FinishedRun, which: str, device: torch.device) -> tuple[torch.nn.Module, int | None]:
    """The run's model with checkpoints/<which>.pt's weights, in eval mode; and the checkpoint's epoch."""
    from dlrun.training.checkpoint import check_same_model, load_checkpoint
    from dlrun.training.device import seed_everything
    from dlrun.training.recipe import make_model

    path = run.folder / "checkpoints" / f"{which}.pt"
    if not path.is_file():
        why = " (the run was made with trainer.checkpoints=false)" if run.cfg.trainer.get("checkpoints") is False else ""
        raise DlrunError(f"{path} is missing{why}; there are no weights to use")
    checkpoint = load_checkpoint(path)  # ResumeError (a DlrunError) for a truncated or foreign file
    seed_everything(run.cfg.seed)  # the weights are replaced below; this keeps a model's own random setup repeatable
    model = make_model(run.cfg, run.input_shape, len(run.class_names), device)
    check_same_model(model.state_dict(), checkpoint.get("model"), path)
    model.load_state_dict(checkpoint["model"])
    model.eval()
    epoch = checkpoint.get("epoch")
    return model, epoch if type(epoch) is int else None
