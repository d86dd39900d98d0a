"""A comparison as people and programs read it: cell formats, columns, csv, json and markdown.

table.py lays the same columns out for the terminal; curves.py draws the plot.

The items are runs (runs.Run) or groups of runs (query.Group); both answer `.get(key)`, a group
with a query.Stat (mean, std, n) for each metric. csv and json carry raw values (accuracies as
fractions, times in seconds, exactly as summary.json has them); the table and markdown are for
people (percentages, rounded losses, minutes).
"""

from __future__ import annotations

import csv
import json
import math
import os
from collections.abc import Sequence
from typing import IO, Any

from dlrun.analysis.query import Group, Stat, higher_is_better
from dlrun.analysis.runfolder import METRICS, Run, shown, text

# The table's metric columns (those some run has: gen/loss and disc/loss are task=gan's); time_s comes last.
SHOWN_METRICS = ("val/acc", "test/acc", "test/loss", "gen/loss", "disc/loss")
GROUP_CSV_METRICS = ("epochs_done", "val/acc", "val/loss", "test/acc", "test/loss", "train/acc", "train/loss", "time_s")
HEADERS = {"val/acc": "best val/acc", "val/loss": "best val/loss", "time_s": "time", "epochs_done": "epochs"}
MISSING = "—"


def header(key: str) -> str:
    """`optimizer.name` -> `optimizer`: a group's choice is named after the group, as on the command line."""
    return printable(HEADERS.get(key, key[: -len(".name")] if key.endswith(".name") else key))


def printable(text_: str) -> str:
    """`text_` with every control character (a newline, an escape that would drive the terminal) and lone
    surrogate written as a Python escape: a cell or a note stays one line, and a folder cannot colour the terminal."""
    return text_ if text_.isprintable() else "".join(c if c.isprintable() else repr(c)[1:-1] for c in text_)


def duration(seconds: float) -> str:
    if seconds < 60:
        return f"{seconds:.1f} s"
    if seconds < 3600:
        return f"{int(seconds // 60)}m {int(seconds % 60):02d}s"
    return f"{int(seconds // 3600)}h {int(seconds % 3600 // 60):02d}m"


def human(key: str, value: Any) -> str:
    """One cell as a person reads it: 97.31%, 0.0832, 2m 05s, [128,256], 97.31 ± 0.12%; nan, inf.

    Config values are shown at 12 significant digits (runfolder.shown); csv and json keep them exact."""
    if value is None or value == "":
        return MISSING
    if isinstance(value, Stat):
        if key == "time_s":  # how long a group took matters, not how much that varied
            return human(key, value.mean)
        if not math.isfinite(value.mean):  # nan or inf: a ± would say nothing more
            return human(key, value.mean)
        mean, std = human(key, value.mean), ("" if value.std is None else human(key, value.std))
        if key.endswith("/acc"):  # 97.31 ± 0.12%
            return mean if not std else f"{mean[:-1]} ± {std}"
        return mean if not std else f"{mean} ± {std}"
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(_float(value)):
        return printable(shown(value))  # nan, inf, -inf; and the text of a value that is not a number, whatever its key
    if key.endswith("/acc"):
        return f"{100 * value:.2f}%"
    if key.endswith("/loss"):
        return f"{value:.4f}"
    if key == "time_s":
        return duration(value)
    if key == "params":
        return f"{int(value):,}"
    return shown(value)  # 1e-05, 0.001, 1e+12; 0.07 for a range() sweep's 0.06999999999999999


def _float(value: int | float) -> float:
    """A number as a float; inf for an int past 1e308 (a config value can be one)."""
    try:
        return float(value)
    except OverflowError:
        return math.inf


def epochs_cell(item: Run | Group) -> str:
    """'3/10' epochs finished of planned; a group shows the range of finished epochs."""
    runs = item.runs if isinstance(item, Group) else [item]
    done = sorted({r.epochs_done for r in runs})
    planned = {r.epochs for r in runs}
    total = MISSING if planned == {None} else "/".join(str(p) for p in sorted(p for p in planned if p is not None))
    return f"{done[0] if len(done) == 1 else f'{done[0]}-{done[-1]}'}/{total}"


# ---------------------------------------------------------------------------------------------
# Columns.


def human_columns(items: Sequence[Run | Group], keys: Sequence[str], metric: str, sort: str) -> list[str]:
    """What the table and markdown show: the differing keys, status, epochs, the metrics some row has, time."""
    grouped = bool(items) and isinstance(items[0], Group)
    extra = [k for k in (metric, sort) if k in METRICS and k not in SHOWN_METRICS and k != "time_s"]
    metrics = [m for m in (*SHOWN_METRICS, *dict.fromkeys(extra), "time_s") if any(item_value(i, m) is not None for i in items)]
    if metric in METRICS and metric not in metrics:
        metrics.insert(0, metric)  # the asked-for metric stays, empty, rather than vanish
    keys = [k for k in keys if k != "trainer.epochs"]  # the epochs column says it: done/planned
    return [*([] if grouped else ["run"]), *keys, *(["n"] if grouped else []), "status", "epochs", *metrics]


def item_value(item: Run | Group, key: str) -> Any:
    value = item.get(key)
    return None if value == "" else value


def raw_row(item: Run | Group, keys: Sequence[str]) -> dict[str, Any]:
    """One row for csv and json: raw values, accuracies as fractions, times in seconds."""
    if isinstance(item, Group):
        row: dict[str, Any] = {k: item.get(k) for k in keys} | {"n": len(item.runs), "status": item.get("status")}
        for m in GROUP_CSV_METRICS:
            s = item.get(m)
            row[m] = None if s is None else {"mean": s.mean, "std": s.std, "n": s.n}
        return row | {"runs": [r.id for r in item.runs]}
    return (
        {"run": item.id}
        | {k: item.get(k) for k in keys}
        | {"status": item.status, "epochs_done": item.epochs_done, "epochs": item.epochs}
        | {m: item.metrics.get(m) for m in METRICS}
        | {"error": item.error or None, "path": str(item.path)}
    )


# ---------------------------------------------------------------------------------------------
# csv, json, markdown.


def csv_columns(items: Sequence[Run | Group], keys: Sequence[str]) -> list[str]:
    if items and isinstance(items[0], Group):
        return [*keys, "n", "status", *(f"{m}_{s}" for m in GROUP_CSV_METRICS for s in ("mean", "std", "n")), "runs"]
    return ["run", *keys, "status", "epochs_done", "epochs", *METRICS, "error", "path"]


def write_csv(items: Sequence[Run | Group], keys: Sequence[str], out: IO[str]) -> None:
    """One row per run (or group), raw values; a group's metric m becomes m_mean, m_std, m_n."""
    writer = csv.writer(out, lineterminator="\n")
    writer.writerow(csv_columns(items, keys))
    for item in items:
        flat: dict[str, Any] = {}
        for key, value in raw_row(item, keys).items():
            if isinstance(value, dict):
                flat.update({f"{key}_{s}": v for s, v in value.items()})
            else:
                flat[key] = " ".join(value) if key == "runs" else value
        writer.writerow(["" if flat.get(c) is None else _csv_text(flat[c]) for c in csv_columns(items, keys)])


def _csv_text(value: Any) -> str:
    return repr(value) if isinstance(value, float) else text(value)


def write_json(items: Sequence[Run | Group], keys: Sequence[str], out: IO[str]) -> None:
    """A list of row objects; a group's metric is {"mean", "std", "n"}. Valid JSON: nan and inf are the strings "nan", "inf"."""
    json.dump([_json_value(raw_row(item, keys)) for item in items], out, indent=1, default=str, allow_nan=False)
    out.write("\n")


def _json_value(value: Any) -> Any:
    """`value` with every nan or inf float written as text ("nan", "inf", "-inf"), and every key as a string."""
    if isinstance(value, float) and not math.isfinite(value):
        return text(value)
    if isinstance(value, (list, tuple)):
        return [_json_value(v) for v in value]
    if isinstance(value, dict):
        return {k if isinstance(k, str) else text(k): _json_value(v) for k, v in value.items()}
    return value


def write_md(items: Sequence[Run | Group], keys: Sequence[str], out: IO[str], *, metric: str, sort: str, title: str = "") -> None:
    """A GitHub markdown table with the table's columns and formatting."""
    columns = human_columns(items, keys, metric, sort)
    if title:
        out.write(f"**{title}**\n\n")
    out.write("| " + " | ".join(header(c) for c in columns) + " |\n")
    out.write("|" + "|".join("---:" if c in (*METRICS, "epochs", "n") else "---" for c in columns) + "|\n")
    for item in items:
        cells = [epochs_cell(item) if c == "epochs" else human(c, item_value(item, c)) for c in columns]
        out.write("| " + " | ".join(cell.replace("|", "\\|") for cell in cells) + " |\n")


def errors(items: Sequence[Run | Group]) -> list[str]:
    """'run 3 failed: RuntimeError: ...' for every run that stopped with an error."""
    runs = [r for item in items for r in (item.runs if isinstance(item, Group) else [item])]
    return [printable(f"{r.id} {r.status}: {r.error}") for r in runs if r.error]


def title(runs: Sequence[Run], total: int, filters: Sequence[str] = (), folded: Sequence[str] = (), same: Sequence[str] = ()) -> str:
    """'8 runs in multirun/2026-11-26/14-03-11 (of 12; optimizer=adam), mean ± std over seed'.

    `folded` are the keys the rows were folded over; `same` the --group-by keys that folded nothing,
    having one value in every run.
    """
    parent = os.path.commonpath([str(r.path) for r in runs]) if len(runs) > 1 else str(runs[0].path.parent)
    here = os.getcwd()
    where = os.path.relpath(parent, here) if parent.startswith(here + os.sep) else parent
    text_ = f"{len(runs)} run{'s' if len(runs) != 1 else ''} in {where}"
    if len(runs) != total:
        text_ += f" (of {total}; {' and '.join(filters)})"
    alike = f"{', '.join(header(k) for k in same)} {'is' if len(same) == 1 else 'are'} the same in every run"
    if folded:
        text_ += f", mean ± std over {', '.join(header(k) for k in folded)}" + (f" ({alike})" if same else "")
    elif same:
        text_ += f", nothing folded: {alike}"
    return printable(text_)


def caption(runs: Sequence[Run], sort: str, reverse: bool = False) -> str:
    """Sort order and what every run shares (dataset=digits model=mlp ...), for the line under the table."""
    best_first = higher_is_better(sort) != reverse
    order = f"sorted by {header(sort)}, {'highest' if best_first else 'lowest'} first"
    shared = [k for k in runs[0].config if k.endswith(".name") and len({text(r.config.get(k)) for r in runs}) == 1]
    same = " ".join(f"{header(k)}={shown(runs[0].config[k])}" for k in shared)
    return printable(order + (f"; same in every run: {same}" if same else ""))
