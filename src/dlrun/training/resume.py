"""Continuing a run from its folder: which folder, with which config, from which checkpoint.

`resume` is one string key: empty (off), a run folder's path (continue that run in its own
folder, with its own config), or `auto` (continue this job's own folder if it holds a checkpoint:
what a re-run sweep uses). Only keys that do not change the experiment may differ from the saved
config; `trainer.epochs` may be raised.
"""

from __future__ import annotations

import csv
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from dlrun.analysis.query import LOGGER_KEYS
from dlrun.analysis.runfolder import FINAL_STATUSES, flatten
from dlrun.errors import ResumeError, RunFolderError
from dlrun.training.recorder import atomic_write

# Keys a resumed run may change: how long it trains, how it shows and keeps its work, and where else it is logged.
ADJUSTABLE = {
    *LOGGER_KEYS,
    "resume",
    "trainer.epochs",
    "trainer.progress",
    "trainer.plots",
    "trainer.checkpoints",
    "device.name",
    "device.threads",
    "trainer.eval_batch_size",
    "dataset.root",
    "dataset.download",
    "dataset.max_memory_gb",
}
GLOBAL_GROUPS = {"experiment", "debug"}  # presets that may set any key


@dataclass
class ResumePlan:
    """What a command with `resume` set does: continue `folder`, keep a finished run, or start fresh."""

    cfg: Any  # the config to run with: the saved one, with the adjustable keys this command changes
    overrides: list[str]
    folder: Path | None = None  # the run to continue; None for a fresh run
    kept: dict[str, Any] | None = None  # the summary of a finished run, which stays as it is


def plan_resume(cfg: Any, run_dir: Path, overrides: list[str]) -> ResumePlan:
    """Decide what `resume` (empty, a run folder, or auto) means for this command, before anything changes.

    An override that would change the saved experiment is refused. A completed run (all its
    epochs, or stopped early) and a pruned one are final: resuming it prints a note and changes
    nothing. Asking a run that trained all its epochs for more is refused, since its files would
    change; one stopped early or pruned gets the same note (its stop was its rule's, not its
    epoch budget's). Any other run continues from its checkpoints/last.pt.
    """
    from omegaconf import OmegaConf

    resume = cfg.resume
    if not resume:
        return ResumePlan(cfg, overrides)
    folder = run_dir if resume == "auto" else Path(resume).expanduser()
    if resume != "auto" and not folder.is_dir():
        raise ResumeError(f"resume={resume}: no such run folder")
    summary = read_summary(folder)
    has_checkpoint = (folder / "checkpoints" / "last.pt").is_file()
    if resume == "auto" and not summary and not has_checkpoint:
        return ResumePlan(cfg, overrides)  # nothing there yet: this job starts fresh
    merged = merge_for_resume(saved_config(folder), OmegaConf.to_container(cfg, resolve=True), overrides)
    merged["resume"] = resume
    plan = ResumePlan(literal_config(merged), summary.get("overrides", overrides), folder)  # saved values are data
    if summary.get("status") in FINAL_STATUSES:
        done = summary.get("epochs_completed")
        wanted = merged["trainer"]["epochs"]
        stopped = summary.get("stopped_early_at") or summary.get("pruned_at")
        if resume != "auto" and type(done) is int and wanted > done and not stopped:
            raise ResumeError(
                f"resume={resume}: the run completed its {done} epochs, and a finished run is never changed; "
                f"to train for {wanted}, start a new run"
            )
        print(f"dlrun: {folder} already {summary['status']} ({done} epochs); kept as it is", file=sys.stderr)
        plan.kept = summary
        return plan
    if not has_checkpoint:
        if resume == "auto":
            return ResumePlan(cfg, overrides)  # it never finished an epoch: this job starts again
        raise ResumeError(
            f"resume={resume}: the folder holds no checkpoints/last.pt (did the run finish an epoch, with trainer.checkpoints=true?)"
        )
    return plan


def read_summary(folder: Path) -> dict[str, Any]:
    """summary.json of `folder` through the run-folder reader ({} when missing); one that cannot be
    read, or of a format this dlrun does not know, is refused."""
    from dlrun.analysis.runfolder import read_summary as read

    try:
        return read(folder)
    except RunFolderError as err:
        raise ResumeError(f"{err}; it cannot be resumed") from err


def saved_config(folder: Path) -> dict[str, Any]:
    """The config the run in `folder` was made with (summary.json's copy, else Hydra's)."""
    from dlrun.analysis.runfolder import read_yaml

    config = read_summary(folder).get("config")
    if isinstance(config, dict) and config:
        return config
    try:
        config = read_yaml(folder / ".hydra" / "config.yaml")
    except (FileNotFoundError, RunFolderError) as err:
        raise ResumeError(f"{folder} holds no readable config (summary.json's or .hydra/config.yaml: {err}); it cannot be resumed") from err
    if not isinstance(config, dict):
        raise ResumeError(f"{folder}/.hydra/config.yaml holds no config; it cannot be resumed")
    return config


def touched_prefixes(overrides: list[str]) -> list[str]:
    """The config keys a command line's overrides may change: 'model=cnn' touches model.*."""
    prefixes = []
    for override in overrides:
        key = override.lstrip("+~").split("=", 1)[0].split("@", 1)[0]
        if key in GLOBAL_GROUPS:
            prefixes.append("")
        elif not key.startswith("hydra."):
            prefixes.append(key)
    return prefixes


def merge_for_resume(saved: dict[str, Any], wanted: dict[str, Any], overrides: list[str]) -> dict[str, Any]:
    """The saved config with the adjustable keys the command changes; any other change is refused."""
    old, new = flatten(saved), flatten(wanted)
    prefixes = touched_prefixes(overrides)
    merged = dict(old)
    for key in sorted(set(old) | set(new)):
        if old.get(key) == new.get(key) or not any(p == "" or key == p or key.startswith(p + ".") for p in prefixes):
            continue
        if key == "trainer.epochs" and old.get("scheduler.name") in ("cosine", "onecycle"):
            raise ResumeError(
                f"resume: the run's scheduler={old['scheduler.name']} was shaped for trainer.epochs={old.get(key)}; "
                "a resumed run keeps it: drop trainer.epochs or start a new run"
            )
        if key not in ADJUSTABLE:
            raise ResumeError(
                f"resume: the run was made with {key}={old.get(key)!r} and this command asks for {new.get(key)!r}; "
                "a resumed run keeps its experiment (only trainer.epochs may be raised): drop the override "
                "or start a new run"
            )
        merged[key] = new[key]
    tree: dict[str, Any] = {}
    for key, value in merged.items():
        node = tree
        *parents, leaf = key.split(".")
        for part in parents:
            node = node.setdefault(part, {})
        node[leaf] = value
    return tree


def restore_metrics(folder: Path, epochs: int, cut: bool = True) -> list[dict[str, Any]]:
    """The first `epochs` rows of metrics.csv as numbers, and the file cut back to them.

    Rows past the checkpoint (an epoch whose checkpoint was never written) are dropped, so the
    resumed run appends exactly where the checkpoint left off. A file with fewer whole rows than
    the checkpoint's epochs is refused, and left as it is.
    """
    path = folder / "metrics.csv"
    try:
        lines = path.read_text(encoding="utf-8").splitlines()
    except (OSError, UnicodeDecodeError) as err:
        raise ResumeError(f"{path} cannot be read ({err}); the run's per-epoch record is needed to resume it") from err
    kept = lines[: epochs + 1]  # the header and `epochs` rows
    try:
        rows = [{k: (int(v) if k == "epoch" else float(v)) for k, v in row.items()} for row in csv.DictReader(kept)]
    except (TypeError, ValueError) as err:
        raise ResumeError(f"{path} holds a row that is not numbers ({err}); it cannot be resumed") from err
    if [row.get("epoch") for row in rows] != list(range(1, epochs + 1)):
        raise ResumeError(f"{path} does not hold epochs 1 to {epochs} in order, as checkpoints/last.pt says it should")
    if cut and len(kept) < len(lines):
        atomic_write(path, lambda f: f.write(("\n".join(kept) + "\n").encode()))
    return rows


def literal_config(tree: dict[str, Any]):
    """A saved config as a DictConfig whose strings are data: a `${...}` in a saved value is never
    resolved again (it may hold anything, from an environment variable's name to a resolver that
    creates folders)."""
    import re

    from omegaconf import OmegaConf

    def escape(value: Any) -> Any:
        if isinstance(value, str) and "${" in value:  # OmegaConf reads `\${` as a literal `${`
            return re.sub(r"(\\*)\$\{", lambda m: m.group(1) * 2 + "\\${", value)
        if isinstance(value, dict):
            return {k: escape(v) for k, v in value.items()}
        if isinstance(value, list):
            return [escape(v) for v in value]
        return value

    return OmegaConf.create(escape(tree))
