"""Reading run folders: everything `dlrun compare` and the sweep summary know about a run.

A run folder describes itself (see DESIGN.md): summary.json carries the status, the resolved config,
the task overrides and the best/test metrics; metrics.csv has one row per finished epoch. This
module reads those files and nothing else — no torch, no Hydra — so comparing a thousand runs
takes a fraction of a second. YAML is read only for folders whose summary.json lacks the config.
"""

from __future__ import annotations

import csv
import json
import os
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from dlrun.errors import RunFolderError

# Keys a run answers besides its config and overrides. The metrics are those of the epoch with the
# best val/acc (the weights a run keeps and tests), except train/* (the last epoch) and time_s.
RUN_FOLDER_FORMAT = 1  # the version of the run-folder format (docs/run-folder.md) written into summary.json

METRICS = ("val/acc", "val/loss", "test/acc", "test/loss", "train/acc", "train/loss", "best_epoch", "time_s", "params")
FIELDS = ("run", "status", "epochs_done", "epochs", "error", "experiment", "path")
ALIASES = {"time": "time_s", "wall_s": "time_s", "id": "run"}


@dataclass
class Run:
    """One run folder, read. `config` is flattened to dotted keys (`optimizer.lr`)."""

    path: Path
    status: str  # completed | running | failed | diverged | interrupted; unknown without summary.json
    epochs: int | None  # planned
    epochs_done: int  # finished: the rows of metrics.csv
    config: dict[str, Any]
    overrides: dict[str, str]  # "key=value" task overrides, '+' prefixes dropped
    metrics: dict[str, float]
    experiment: str = ""
    error: str = ""
    id: str = ""  # the path relative to the runs' common parent; set by find_runs
    _rows: list[dict[str, float]] | None = field(default=None, repr=False)

    def rows(self) -> list[dict[str, float]]:
        """metrics.csv as one dict per epoch (read once, on first use)."""
        if self._rows is None:
            self._rows = read_metrics(self.path / "metrics.csv")
        return self._rows

    def get(self, key: str) -> Any:
        """A field, metric, config value or override value; None when the run has none."""
        if key == "run":
            return self.id
        if key == "path":
            return str(self.path)
        if key in FIELDS:
            return getattr(self, key)
        if key in self.metrics:
            return self.metrics[key]
        if key in self.config:
            return self.config[key]
        return self.overrides.get(key)


# ---------------------------------------------------------------------------------------------
# Values: one text form for lists, booleans and numbers, the one `--filter` and the csv use.


def text(value: Any) -> str:
    """`[128,256]`, `true`, `null`, `0.001`: the way a Hydra override would spell the value."""
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, (list, tuple)):
        return "[" + ",".join(text(v) for v in value) + "]"
    if isinstance(value, dict):
        return "{" + ",".join(f"{k}:{text(v)}" for k, v in value.items()) + "}"
    return str(value)


def flatten(node: dict[str, Any], prefix: str = "") -> dict[str, Any]:
    """{'optimizer': {'lr': 0.1}} -> {'optimizer.lr': 0.1}; lists stay whole values."""
    flat: dict[str, Any] = {}
    for key, value in node.items():
        if isinstance(value, dict) and value:
            flat.update(flatten(value, f"{prefix}{key}."))
        else:
            flat[f"{prefix}{key}"] = value
    return flat


def parse_overrides(overrides: Iterable[str]) -> dict[str, str]:
    """['optimizer=sgd', '+trainer.x=1', '~key'] -> {'optimizer': 'sgd', 'trainer.x': '1'} (deletions dropped)."""
    parsed = {}
    for item in overrides:
        key, sep, value = str(item).partition("=")
        if sep and not key.startswith("~"):
            parsed[key.lstrip("+")] = value
    return parsed


def read_metrics(path: Path) -> list[dict[str, float]]:
    """metrics.csv rows, numbers as floats; [] when the file is missing. A torn last line is dropped."""
    rows = []
    try:
        with open(path, newline="", encoding="utf-8") as f:
            for row in csv.DictReader(f):
                if None in row.values():  # fewer fields than the header: a line cut short
                    break
                values = {}
                for key, value in row.items():
                    try:
                        values[key] = float(value)
                    except (TypeError, ValueError):  # an empty or non-numeric cell, or extra fields (key None)
                        pass
                rows.append(values)
    except FileNotFoundError:
        pass
    return rows


def _read_yaml(path: Path) -> Any:
    import yaml  # only for folders whose summary.json lacks what we need

    loader = getattr(yaml, "CSafeLoader", yaml.SafeLoader)
    try:
        with open(path, encoding="utf-8") as f:
            return yaml.load(f, Loader=loader)
    except yaml.YAMLError as err:
        raise RunFolderError(f"{path} is not valid YAML ({str(err).splitlines()[0]})") from None


# ---------------------------------------------------------------------------------------------
# One folder.


def is_run_dir(path: Path, names: Iterable[str] | None = None) -> bool:
    """A folder holding summary.json, or .hydra/config.yaml beside metrics.csv."""
    names = set(os.listdir(path) if names is None else names)
    return "summary.json" in names or ("metrics.csv" in names and (path / ".hydra" / "config.yaml").is_file())


def best_of(rows: list[dict[str, float]]) -> dict[str, float]:
    """The row with the highest val/acc (the first, on ties, as training keeps it), else the last row."""
    if not rows:
        return {}
    if "val/acc" not in rows[0]:
        return {"epoch": rows[-1].get("epoch", len(rows))}
    best = rows[0]
    for row in rows[1:]:
        if row.get("val/acc", float("-inf")) > best.get("val/acc", float("-inf")):
            best = row
    return {"epoch": best.get("epoch"), "val/loss": best.get("val/loss"), "val/acc": best.get("val/acc")}


def load_run(path: Path | str) -> Run:
    """Read one run folder. Raises RunFolderError when summary.json is not valid JSON."""
    path = Path(path)
    summary: dict[str, Any] = {}
    try:
        with open(path / "summary.json", "rb") as f:
            summary = json.load(f)
    except FileNotFoundError:
        pass
    except (json.JSONDecodeError, UnicodeDecodeError) as err:
        raise RunFolderError(f"{path / 'summary.json'} is not valid JSON ({err})") from None
    if not isinstance(summary, dict):
        raise RunFolderError(f"{path / 'summary.json'} holds no JSON object")
    config = summary.get("config")
    if config is None and (path / ".hydra" / "config.yaml").is_file():
        config = _read_yaml(path / ".hydra" / "config.yaml")
    overrides = summary.get("overrides")
    if overrides is None and (path / ".hydra" / "overrides.yaml").is_file():
        overrides = _read_yaml(path / ".hydra" / "overrides.yaml")
    flat = flatten(config or {})
    status = summary.get("status", "unknown")
    best, test, final = summary.get("best") or {}, summary.get("test") or {}, summary.get("final") or {}
    run = Run(
        path=path,
        status=status,
        epochs=summary.get("epochs", flat.get("trainer.epochs")),
        epochs_done=summary.get("epochs_completed", 0),
        config=flat,
        overrides=parse_overrides(overrides or []),
        metrics={},
        experiment=summary.get("experiment", ""),
        error=summary.get("error", ""),
    )
    if status != "completed" or not final:
        # A running run's summary.json was written at its start: metrics.csv knows how far it got.
        rows = run.rows()
        run.epochs_done = len(rows)
        final = final or (rows[-1] if rows else {})
        best = best or best_of(rows)
    values = {
        "val/acc": best.get("val/acc"),
        "val/loss": best.get("val/loss"),
        "test/acc": test.get("acc"),
        "test/loss": test.get("loss"),
        "train/acc": final.get("train/acc"),
        "train/loss": final.get("train/loss"),
        "best_epoch": best.get("epoch"),
        "time_s": (summary.get("timing") or {}).get("wall_s"),
        "params": summary.get("params"),
    }
    run.metrics = {k: v for k, v in values.items() if v is not None}
    return run


# ---------------------------------------------------------------------------------------------
# Many folders.


def _walk(path: str) -> Iterator[str]:
    """Run folders at or under `path`, not looking inside a run folder nor into hidden folders."""
    try:
        entries = list(os.scandir(path))
    except (NotADirectoryError, PermissionError):
        return
    if is_run_dir(Path(path), [e.name for e in entries]):
        yield path
        return
    for entry in sorted(entries, key=lambda e: natural_key(e.name)):
        if not entry.name.startswith(".") and entry.is_dir(follow_symlinks=False):
            yield from _walk(entry.path)


def natural_key(name: str) -> tuple:
    """'10' after '9': job numbers and dates sort the way people count."""
    parts = []
    for chunk in name.replace("\\", "/").split("/"):
        parts.append((0, int(chunk), "") if chunk.isdigit() else (1, 0, chunk))
    return tuple(parts)


def find_runs(paths: Iterable[Path | str], notes: list[str] | None = None) -> list[Run]:
    """Every run folder in or under `paths`, each read once, ids relative to their common parent.

    Raises FileNotFoundError for a path that does not exist. A path that holds no run, and a run
    folder that cannot be read, add a line to `notes` (when given) and are skipped.
    """
    notes = [] if notes is None else notes
    found: dict[Path, None] = {}
    for given in paths:
        given = Path(given)
        if not given.exists():
            raise FileNotFoundError(f"{given}: no such file or folder")
        start = given.parent if given.is_file() and given.name in ("summary.json", "metrics.csv") else given
        # Resolved once here: below it the walk follows no links, so each folder has one name.
        folders = list(_walk(str(start.resolve()))) if start.is_dir() else []
        if not folders:
            notes.append(f"skipped: {given} holds no dlrun run")
        for folder in folders:
            found.setdefault(Path(folder), None)
    runs = []
    for folder in found:
        try:
            runs.append(load_run(folder))
        except (RunFolderError, OSError) as err:
            notes.append(f"skipped: {err}")
    set_ids(runs)
    return runs


def set_ids(runs: list[Run]) -> None:
    """Name each run by its path relative to the runs' common parent (one run: its folder name)."""
    if not runs:
        return
    paths = [str(r.path) for r in runs]
    parent = os.path.commonpath(paths) if len(paths) > 1 else str(runs[0].path.parent)
    for run in runs:
        run.id = os.path.relpath(run.path, parent) if str(run.path) != parent else run.path.name
