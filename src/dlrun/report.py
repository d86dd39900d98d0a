"""Drawing a comparison as a table for the terminal, csv, json or markdown (curves.py draws the plot).

The items are runs (runs.Run) or groups of runs (query.Group); both answer `.get(key)`, a group
with a query.Stat (mean, std, n) for each metric. csv and json carry raw values (accuracies as
fractions, times in seconds, exactly as summary.json has them); the table and markdown are for
people (percentages, rounded losses, minutes).
"""

from __future__ import annotations

import csv
import json
import os
import re
from collections.abc import Sequence
from typing import IO, Any

from rich.cells import cell_len
from rich.console import Console
from rich.text import Span, Text

from dlrun.query import Group, Stat, higher_is_better
from dlrun.runs import METRICS, Run, text

SHOWN_METRICS = ("val/acc", "test/acc", "test/loss")  # the table's metric columns; time_s comes last
GROUP_CSV_METRICS = ("epochs_done", "val/acc", "val/loss", "test/acc", "test/loss", "train/acc", "train/loss", "time_s")
STATUS_STYLE = {"completed": "green", "running": "cyan", "failed": "red", "diverged": "magenta",
                "interrupted": "yellow", "unknown": "dim"}
HEADERS = {"val/acc": "best val/acc", "val/loss": "best val/loss", "time_s": "time", "epochs_done": "epochs"}
MISSING = "—"


def header(key: str) -> str:
    """`optimizer.name` -> `optimizer`: a group's choice is named after the group, as on the command line."""
    return HEADERS.get(key, key[: -len(".name")] if key.endswith(".name") else key)


def duration(seconds: float) -> str:
    if seconds < 60:
        return f"{seconds:.1f} s"
    if seconds < 3600:
        return f"{int(seconds // 60)}m {int(seconds % 60):02d}s"
    return f"{int(seconds // 3600)}h {int(seconds % 3600 // 60):02d}m"


def human(key: str, value: Any) -> str:
    """One cell as a person reads it: 97.31%, 0.0832, 2m 05s, [128,256], 97.31 ± 0.12%."""
    if value is None or value == "":
        return MISSING
    if isinstance(value, Stat):
        if key == "time_s":  # how long a group took matters, not how much that varied
            return duration(value.mean)
        mean, std = human(key, value.mean), ("" if value.std is None else human(key, value.std))
        if key.endswith("/acc"):  # 97.31 ± 0.12%
            return mean if not std else f"{mean[:-1]} ± {std}"
        return mean if not std else f"{mean} ± {std}"
    if key.endswith("/acc"):
        return f"{100 * value:.2f}%"
    if key.endswith("/loss"):
        return f"{value:.4f}"
    if key == "time_s":
        return duration(value)
    if key == "params":
        return f"{int(value):,}"
    if isinstance(value, float):  # 1e-05, 0.001, 1e+12; more digits only where 6 would merge two values
        short = f"{value:g}"
        return short if float(short) == value else repr(value)
    return text(value)


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
    return ({"run": item.id} | {k: item.get(k) for k in keys}
            | {"status": item.status, "epochs_done": item.epochs_done, "epochs": item.epochs}
            | {m: item.metrics.get(m) for m in METRICS} | {"error": item.error or None, "path": str(item.path)})


# ---------------------------------------------------------------------------------------------
# Writers.


def print_table(console: Console, items: Sequence[Run | Group], keys: Sequence[str], *, metric: str, sort: str,
                title: str = "", caption: str = "") -> None:
    """The table, its lines cut at the console's edge, then the caption, wrapped."""
    table, note = render_table(items, keys, metric=metric, sort=sort, title=title, width=console.width)
    console.print(table, no_wrap=True, overflow="ellipsis", crop=True)
    caption = "; ".join(part for part in (caption, note) if part)
    if caption:
        console.print(caption, style="dim", markup=False)


def render_table(items: Sequence[Run | Group], keys: Sequence[str], *, metric: str, sort: str, title: str = "",
                 width: int = 120) -> tuple[Text, str]:
    """The table as rich Text fitted to `width` characters (title, header, a rule, one line per item),
    and a note naming the columns left out to fit, if any.

    The --metric column's header is underlined and its best value bold green; statuses are
    coloured. When the natural widths do not fit, dotted headers break at their dots, run ids lose
    their leading characters (the job number at the end is what tells runs apart), and then the
    time and test/loss columns are left out, saying so under the table; past that, lines are cut
    at the terminal's edge. Laid out by hand rather than with rich.table.Table, which takes over a
    second for a thousand rows.
    """
    columns = human_columns(items, keys, metric, sort)
    cells = [[epochs_cell(item) if c == "epochs" else human(c, item_value(item, c)) for c in columns] for item in items]
    headers = [header(c) + (" ▼" if c == sort and higher_is_better(sort) else " ▲" if c == sort else "") for c in columns]
    headers, run_width, dropped = _fit(columns, headers, cells, width, keep={metric, sort})
    note = f"{', '.join(header(c) for c in dropped)} left out to fit {width} columns" if dropped else ""
    if "run" in columns:
        i = columns.index("run")
        for row in cells:
            row[i] = row[i] if cell_len(row[i]) <= run_width else "…" + row[i][len(row[i]) - run_width + 1:]
    shown = [i for i, c in enumerate(columns) if c not in dropped]
    widths = {i: max([cell_len(line) for line in headers[i].split("\n")] + [cell_len(row[i]) for row in cells]) for i in shown}
    right = {i for i in shown if columns[i] in {*METRICS, "epochs", "n"}}

    parts: list[str] = []  # the table's characters, joined once at the end
    spans: list[Span] = []  # (start, end, style) over those characters
    at = 0

    def put(text: str, style: str = "") -> None:
        nonlocal at
        parts.append(text)
        if style and text:
            spans.append(Span(at, at + len(text), style))
        at += len(text)

    def cell(j: int, i: int, value: str, style: str) -> None:
        pad = " " * (widths[i] - cell_len(value))
        put(("  " if j else "") + (pad if i in right else ""))
        put(value, style)
        if i not in right and j < len(shown) - 1:
            put(pad)

    if title:
        put(title, "bold")
        put("\n")
    height = max(len(headers[i].split("\n")) for i in shown)
    for k in range(height):  # headers sit on the rule; shorter ones are padded from the top
        for j, i in enumerate(shown):
            lines = headers[i].split("\n")
            part = lines[k - height + len(lines)] if k >= height - len(lines) else ""
            cell(j, i, part, "bold underline" if columns[i] == metric else "bold")
        put("\n")
    put("─" * (sum(widths.values()) + 2 * (len(shown) - 1)), "dim")
    best = _best(items, metric)
    for item, row in zip(items, cells, strict=True):
        put("\n")
        for j, i in enumerate(shown):
            column, style = columns[i], ""
            if column == "status":
                style = STATUS_STYLE.get(row[i].split(", ")[0].split(" ")[-1], "")
            elif column == metric and best is not None and item_value(item, column) == best:
                style = "bold green"
            cell(j, i, row[i], style)
    out = Text("".join(parts), spans=spans)
    return out, note


def wrap_header(head: str, width: int) -> str:
    """'optimizer.lr' -> 'optimizer.' / 'lr'; 'trainer.limit_train_batches' -> 'trainer.limit_' / 'train_batches'.

    Breaks after dots, underscores and spaces, into lines about half the header's length, or the
    values' `width` if wider; a sort arrow stays with the last word.
    """
    arrow = ""
    if head.endswith((" ▼", " ▲")):
        head, arrow = head[:-2], head[-2:]
    words = re.findall(r"[^._ ]+(?:[._]|\s+)?", head) or [head]
    target = max(width, max(len(w.rstrip()) for w in words), -(-len(head) // 2))
    lines = [""]
    for word in words:
        if lines[-1] and len((lines[-1] + word).rstrip()) > target:
            lines.append("")
        lines[-1] += word
    return "\n".join(line.rstrip() for line in lines) + arrow


def _fit(columns: list[str], headers: list[str], cells: list[list[str]], width: int,
         keep: set[str]) -> tuple[list[str], int, list[str]]:
    """Headers broken into lines where that saves room, the width left for run ids, and the columns dropped."""
    cell_width = [max((cell_len(row[i]) for row in cells), default=0) for i in range(len(columns))]

    def widest(i: int) -> int:
        return max([cell_len(line) for line in headers[i].split("\n")] + [cell_width[i]])

    dropped: list[str] = []

    def total() -> int:  # two spaces between columns
        shown = [i for i, c in enumerate(columns) if c not in dropped]
        return sum(widest(i) for i in shown) + 2 * (len(shown) - 1)

    # Break the headers that are widest beyond their values first.
    for i in sorted(range(len(columns)), key=lambda i: cell_width[i] - cell_len(headers[i])):
        if total() <= width:
            break
        if columns[i] != "run":
            headers[i] = wrap_header(headers[i], cell_width[i])
    run = columns.index("run") if "run" in columns else None
    floor = min(12, widest(run)) if run is not None else 0  # '…25-09-11/3': still tells runs apart
    for column in ("time_s", "test/loss"):
        if total() - (widest(run) - floor if run is not None else 0) <= width:
            break
        if column in columns and column not in keep:
            dropped.append(column)
    if run is None:
        return headers, 0, dropped
    return headers, max(floor, widest(run) - max(0, total() - width)), dropped


def _best(items: Sequence[Run | Group], metric: str) -> Any:
    values = [v for v in (item_value(i, metric) for i in items) if v is not None]
    if len(values) < 2 or metric not in METRICS:
        return None
    mean = lambda v: v.mean if isinstance(v, Stat) else v  # noqa: E731
    return (max if higher_is_better(metric) else min)(values, key=mean)


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
    """A list of row objects; a group's metric is {"mean", "std", "n"}."""
    json.dump([raw_row(item, keys) for item in items], out, indent=1, default=str)
    out.write("\n")


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


def write(fmt: str, out: IO[str], items: Sequence[Run | Group], keys: Sequence[str], *, metric: str, sort: str,
          title: str = "", caption: str = "", console: Console | None = None) -> None:
    if fmt == "csv":
        write_csv(items, keys, out)
    elif fmt == "json":
        write_json(items, keys, out)
    elif fmt == "md":
        write_md(items, keys, out, metric=metric, sort=sort, title=title)
    else:
        console = console or table_console(out)
        print_table(console, items, keys, metric=metric, sort=sort, title=title, caption=caption)
        for line in errors(items):
            console.print(line, highlight=False, markup=False, style="dim")


def table_console(file: IO[str] | None = None) -> Console:
    """A console as wide as the terminal; off a terminal (a pipe, a log file) as wide as a table needs,
    unless $COLUMNS says otherwise, so that nothing is cut."""
    console = Console(file=file, highlight=False)
    if not console.is_terminal and not os.environ.get("COLUMNS"):
        console = Console(file=file, highlight=False, width=1000)
    return console


def errors(items: Sequence[Run | Group]) -> list[str]:
    """'run 3 failed: RuntimeError: ...' for every run that stopped with an error."""
    runs = [r for item in items for r in (item.runs if isinstance(item, Group) else [item])]
    return [f"{r.id} {r.status}: {r.error}" for r in runs if r.error]


def title(runs: Sequence[Run], total: int, filters: Sequence[str] = (), by: Sequence[str] = ()) -> str:
    """'8 runs in multirun/2026-11-26/14-03-11 (of 12; optimizer=adam), mean ± std over seed'."""
    parent = os.path.commonpath([str(r.path) for r in runs]) if len(runs) > 1 else str(runs[0].path.parent)
    here = os.getcwd()
    where = os.path.relpath(parent, here) if parent.startswith(here + os.sep) else parent
    text_ = f"{len(runs)} run{'s' if len(runs) != 1 else ''} in {where}"
    if len(runs) != total:
        text_ += f" (of {total}; {' and '.join(filters)})"
    if by:
        text_ += f", mean ± std over {', '.join(header(b) for b in by)}"
    return text_


def caption(runs: Sequence[Run], sort: str, reverse: bool = False) -> str:
    """Sort order and what every run shares (dataset=digits model=mlp ...), for the line under the table."""
    best_first = higher_is_better(sort) != reverse
    order = f"sorted by {header(sort)}, {'highest' if best_first else 'lowest'} first"
    shared = [k for k in runs[0].config if k.endswith(".name") and len({text(r.config.get(k)) for r in runs}) == 1]
    same = " ".join(f"{header(k)}={text(runs[0].config[k])}" for k in shared)
    return order + (f"; same in every run: {same}" if same else "")
