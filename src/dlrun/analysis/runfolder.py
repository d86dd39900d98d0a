"""Reading run folders: everything `dlrun compare` and the sweep summary know about a run.

A run folder describes itself (docs/run-folder.md is its format): summary.json carries the status, the resolved config,
the task overrides and the best/test metrics; metrics.csv has one row per finished epoch. This
module reads those files and nothing else — no torch, no Hydra — so comparing a thousand runs
takes a fraction of a second. YAML is read only for folders whose summary.json lacks the config.

No folder is trusted: a file is read only when it is a regular file under a size limit, its
values only up to a nesting depth, and every field is checked for its type. A file that cannot be
read that way raises RunFolderError (`PATH: why`, one line), which skips the folder; a field of
the wrong type is read as absent, as if the file lacked it.
"""

from __future__ import annotations

import csv
import io
import json
import os
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from dlrun.analysis.files import MAX_DEPTH, check_nesting, check_yaml_nodes, read_regular_file
from dlrun.errors import RunFolderError
from dlrun.lock import writer_gone

RUN_FOLDER_FORMAT = 1  # docs/run-folder.md's version: summary.json's "format", written and read (absent: 1, from before it was)

# Limits on what a folder may hold: far above what dlrun writes, far below what would hurt.
FINAL_STATUSES = ("completed", "pruned")  # a run that is over: its summary.json and metrics are final, never trained further
DIED = "died"  # how the reader shows a `running` folder whose process is gone (never written to summary.json)
SUMMARY_LIMIT = 4 << 20  # bytes of summary.json (dlrun writes a few KiB)
METRICS_LIMIT = 64 << 20  # bytes of metrics.csv (about 100 bytes an epoch)
YAML_LIMIT = 1 << 20  # bytes of a .hydra/*.yaml file (a few KiB)

# Keys a run answers besides its config and overrides. The metrics are those of the epoch with the
# best val/acc (the weights a run keeps and tests), except train/* and a GAN's gen/loss and
# disc/loss (the last epoch) and time_s.
METRICS = (
    "val/acc",
    "val/loss",
    "test/acc",
    "test/loss",
    "train/acc",
    "train/loss",
    "gen/loss",
    "disc/loss",
    "best_epoch",
    "time_s",
    "params",
)
FIELDS = ("run", "status", "epochs_done", "epochs", "error", "experiment", "path")
ALIASES = {"time": "time_s", "wall_s": "time_s", "id": "run"}


@dataclass
class Run:
    """One run folder, read. `config` is flattened to dotted keys (`optimizer.lr`)."""

    path: Path
    status: str  # completed | pruned | running | died | failed | diverged | interrupted | refused; unknown without summary.json
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
# Values: one text form for lists, booleans and numbers, the one `--filter` and the csv use; and
# the form people read, with floats rounded to what a person typed.

SHOWN_DIGITS = 12  # significant digits of a float shown to people: 0.01 + 2 * 0.03 reads 0.07, not 0.06999999999999999


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


def shown(value: Any) -> str:
    """text(), with each float at SHOWN_DIGITS significant digits: what tables, legends and titles print.

    A float that range() or arithmetic left a rounding error in (0.06999999999999999) reads as
    the value that was meant (0.07); the stored config, csv and json keep the exact value.
    """
    if isinstance(value, float):
        return f"{value:.{SHOWN_DIGITS}g}"  # nan, inf and -inf as text() spells them
    if isinstance(value, (list, tuple)):
        return "[" + ",".join(shown(v) for v in value) + "]"
    if isinstance(value, dict):
        return "{" + ",".join(f"{k}:{shown(v)}" for k, v in value.items()) + "}"
    return text(value)


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


# ---------------------------------------------------------------------------------------------
# The files of a run folder.


def _kind(value: Any) -> str:
    names = {list: "a list", str: "a string", bool: "true or false", int: "a number", float: "a number", type(None): "null"}
    return names.get(type(value), type(value).__name__)


def read_summary(folder: Path) -> dict[str, Any]:
    """summary.json of a run folder, checked to be a JSON object of a format this dlrun reads; {} when missing.

    Raises RunFolderError (`PATH: why`, one line) when it is not a regular file, larger than
    SUMMARY_LIMIT, not valid JSON, nested too deeply, not an object, or of an unknown format
    ("format" absent means 1). The values inside are not checked: a reader checks the fields it uses.
    """
    path = Path(folder) / "summary.json"
    try:
        data = read_regular_file(path, SUMMARY_LIMIT)
    except FileNotFoundError:
        return {}
    try:
        summary = json.loads(data)  # NaN and Infinity are read: dlrun writes them for a diverged run
    except json.JSONDecodeError as err:
        raise RunFolderError(f"{path}: not valid JSON ({err})") from None
    except UnicodeDecodeError as err:
        raise RunFolderError(f"{path}: not valid JSON (not UTF-8 at byte {err.start})") from None
    except RecursionError:
        raise RunFolderError(f"{path}: nested more than {MAX_DEPTH} levels deep") from None
    except ValueError as err:  # an integer of more digits than Python converts (sys.get_int_max_str_digits())
        raise RunFolderError(f"{path}: not readable JSON ({str(err).split(';')[0]})") from None
    if not isinstance(summary, dict):
        raise RunFolderError(f"{path}: holds {_kind(summary)}, not a JSON object")
    if data.count(b"[") + data.count(b"{") > MAX_DEPTH:  # else it cannot nest that deep: no need to walk it
        check_nesting(summary, path)
    version = summary.get("format", 1)
    if not isinstance(version, int) or isinstance(version, bool) or version < 1:
        raise RunFolderError(f"{path}: format {version!r} is not a run-folder format version")
    if version > RUN_FOLDER_FORMAT:
        raise RunFolderError(f"{path}: written by a newer dlrun (format {version}); this dlrun reads format {RUN_FOLDER_FORMAT}")
    return summary


def read_yaml(path: Path) -> Any:
    """A YAML file (Hydra's .hydra/config.yaml, overrides.yaml) as plain values, read safely.

    Safe tags only (no Python objects), at most YAML_LIMIT bytes, MAX_DEPTH levels and
    MAX_YAML_VALUES values with aliases expanded, so that a "billion laughs" file is refused in
    milliseconds. Raises FileNotFoundError when missing, RunFolderError (`PATH: why`) otherwise.
    """
    data = read_regular_file(path, YAML_LIMIT)
    import yaml  # only for folders whose summary.json lacks what we need

    loader = getattr(yaml, "CSafeLoader", yaml.SafeLoader)(data)
    try:
        node = loader.get_single_node()  # a graph: an alias is the node it names, not a copy
        if node is None:
            return None
        check_yaml_nodes(node, path)
        return loader.construct_document(node)
    except yaml.YAMLError as err:
        raise RunFolderError(f"{path}: not valid YAML ({str(err).splitlines()[0]})") from None
    except RecursionError:
        raise RunFolderError(f"{path}: nested more than {MAX_DEPTH} levels deep") from None
    except (ValueError, TypeError) as err:  # an integer past Python's digit limit; a merge key (<<) of the wrong kind
        raise RunFolderError(f"{path}: not readable YAML ({str(err).split(';')[0]})") from None
    finally:
        loader.dispose()


def read_metrics(path: Path) -> list[dict[str, float]]:
    """metrics.csv rows, numbers as floats (nan and inf too); [] when the file is missing. A torn last line is dropped.

    A cell that is not a number is left out of its row. Raises RunFolderError when the file is not
    a regular file, larger than METRICS_LIMIT, not UTF-8, or not CSV (a field past csv's limit).
    """
    try:
        data = read_regular_file(path, METRICS_LIMIT)
    except FileNotFoundError:
        return []
    try:
        text_ = data.decode("utf-8")
    except UnicodeDecodeError as err:
        raise RunFolderError(f"{path}: not UTF-8 text (byte {err.start})") from None
    rows = []
    reader = csv.DictReader(io.StringIO(text_, newline=""))
    try:
        for row in reader:
            if None in row.values():  # fewer fields than the header: a line cut short
                break
            values = {}
            for key, value in row.items():
                try:
                    values[key] = float(value)
                except (TypeError, ValueError):  # an empty or non-numeric cell, or extra fields (key None)
                    pass
            rows.append(values)
    except csv.Error as err:
        raise RunFolderError(f"{path}: line {reader.line_num + 1}: {err}") from None
    return rows


# ---------------------------------------------------------------------------------------------
# Fields: a value of the wrong type is read as absent.


def _number(value: Any) -> int | float | None:
    """A JSON number (nan and inf included) as it is; None for anything else, and for an int past a float's range."""
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return None
    try:
        float(value)
    except OverflowError:
        return None
    return value


def _count(value: Any) -> int | None:
    """An int >= 0 that a float holds exactly (epochs, parameters); None for anything else."""
    return value if isinstance(value, int) and not isinstance(value, bool) and 0 <= value <= 2**53 else None


def _dict(value: Any) -> dict[str, Any]:
    return value if isinstance(value, dict) else {}


def _str(value: Any, default: str = "") -> str:
    return value if isinstance(value, str) else default


def _strings(value: Any) -> list[str] | None:
    return value if isinstance(value, list) and all(isinstance(v, str) for v in value) else None


# ---------------------------------------------------------------------------------------------
# One folder.


def is_run_dir(path: Path, names: Iterable[str] | None = None) -> bool:
    """A folder holding summary.json, or .hydra/config.yaml beside metrics.csv."""
    names = set(os.listdir(path) if names is None else names)
    if "summary.json" in names:
        return True
    try:
        return "metrics.csv" in names and (path / ".hydra" / "config.yaml").is_file()
    except OSError:  # .hydra not ours to read: load_run would say why, but without summary.json this is no run
        return False


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


def _read_optional_yaml(path: Path) -> Any:
    try:
        return read_yaml(path)
    except FileNotFoundError:
        return None


def load_run(path: Path | str) -> Run:
    """Read one run folder. Raises RunFolderError when a file it needs cannot be read; a field of the wrong type is absent."""
    path = Path(path)
    summary = read_summary(path)
    config = summary.get("config")
    if not isinstance(config, dict):  # missing (a run from before summary.json held it) or ill-typed: Hydra's copy
        config = _dict(_read_optional_yaml(path / ".hydra" / "config.yaml"))
    overrides = _strings(summary.get("overrides"))
    if overrides is None:
        overrides = _strings(_read_optional_yaml(path / ".hydra" / "overrides.yaml")) or []
    flat = flatten(config)
    status = _str(summary.get("status"), "unknown")
    if status == "running" and writer_gone(path):
        status = DIED  # killed (kill -9, out of memory, a power cut) before it could say how it ended
    best, test, final = _dict(summary.get("best")), _dict(summary.get("test")), _dict(summary.get("final"))
    epochs_done = _count(summary.get("epochs_completed"))
    epochs = _count(summary.get("epochs"))
    run = Run(
        path=path,
        status=status,
        epochs=epochs if epochs is not None else _count(flat.get("trainer.epochs")),
        epochs_done=epochs_done or 0,
        config=flat,
        overrides=parse_overrides(overrides),
        metrics={},
        experiment=_str(summary.get("experiment")),
        error=_str(summary.get("error")),
    )
    if status not in FINAL_STATUSES or not final or epochs_done is None:
        # A running run's summary.json was written at its start: metrics.csv knows how far it got
        # (and how far a run got whose summary.json does not say).
        rows = run.rows()
        run.epochs_done = len(rows)
        if status not in FINAL_STATUSES or not final:
            final = final or (rows[-1] if rows else {})
            best = best or best_of(rows)
    values = {
        "val/acc": _number(best.get("val/acc")),
        "val/loss": _number(best.get("val/loss")),
        "test/acc": _number(test.get("acc")),
        "test/loss": _number(test.get("loss")),
        "train/acc": _number(final.get("train/acc")),
        "train/loss": _number(final.get("train/loss")),
        "gen/loss": _number(final.get("gen/loss")),
        "disc/loss": _number(final.get("disc/loss")),
        "best_epoch": _number(best.get("epoch")),
        "time_s": _number(_dict(summary.get("timing")).get("wall_s")),
        "params": _count(summary.get("params")),
    }
    run.metrics = {k: v for k, v in values.items() if v is not None}
    return run


# ---------------------------------------------------------------------------------------------
# Many folders.


def _walk(path: str) -> Iterator[str]:
    """Run folders at or under `path`, not looking inside a run folder nor into hidden folders."""
    try:
        entries = list(os.scandir(path))
    except OSError:  # not a folder, not ours to read, gone since
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
        parts.append((0, int(chunk), "") if chunk.isdecimal() else (1, 0, chunk))  # not isdigit(): int('²') fails
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
        except RunFolderError as err:
            notes.append(f"skipped: {err}")
        except OSError as err:
            notes.append(f"skipped: {folder}: {err.strerror or err}")
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
