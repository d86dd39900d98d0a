"""The comparison table in a terminal: fitted to its width, statuses in colour, the best value marked.

Shared by `dlrun compare` and the sweep summary; the cells are those of report.py's markdown.
"""

from __future__ import annotations

import math
import os
import re
from collections.abc import Sequence
from typing import IO, Any

from rich.cells import cell_len
from rich.console import Console
from rich.text import Span, Text

from dlrun.analysis.query import Group, Stat, higher_is_better
from dlrun.analysis.report import METRICS, epochs_cell, header, human, human_columns, item_value
from dlrun.analysis.runfolder import Run

STATUS_STYLE = {
    "completed": "green",
    "running": "cyan",
    "died": "red",  # its process was killed while running: resume=FOLDER continues it
    "failed": "red",
    "diverged": "magenta",
    "interrupted": "yellow",
    "refused": "dim",
    "pruned": "blue",  # stopped by an Optuna search's pruner: over, like completed
    "unknown": "dim",
}


def table_console(file: IO[str] | None = None) -> Console:
    """A console as wide as the terminal; off a terminal (a pipe, a log file) as wide as a table needs,
    unless $COLUMNS says otherwise, so that nothing is cut."""
    console = Console(file=file, highlight=False)
    if not console.is_terminal and not os.environ.get("COLUMNS"):
        console = Console(file=file, highlight=False, width=1000)
    return console


def print_table(
    console: Console, items: Sequence[Run | Group], keys: Sequence[str], *, metric: str, sort: str, title: str = "", caption: str = ""
) -> None:
    """The table, its lines cut at the console's edge, then the caption, wrapped."""
    table, note = render_table(items, keys, metric=metric, sort=sort, title=title, width=console.width)
    console.print(table, no_wrap=True, overflow="ellipsis", crop=True)
    caption = "; ".join(part for part in (caption, note) if part)
    if caption:
        console.print(caption, style="dim", markup=False)


def render_table(
    items: Sequence[Run | Group], keys: Sequence[str], *, metric: str, sort: str, title: str = "", width: int = 120
) -> tuple[Text, str]:
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
            row[i] = row[i] if cell_len(row[i]) <= run_width else "…" + row[i][len(row[i]) - run_width + 1 :]
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


def _fit(columns: list[str], headers: list[str], cells: list[list[str]], width: int, keep: set[str]) -> tuple[list[str], int, list[str]]:
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
    """The best value of `metric` among the items, to mark; nan and inf are never the best."""
    mean = lambda v: v.mean if isinstance(v, Stat) else v  # noqa: E731
    values = [v for v in (item_value(i, metric) for i in items) if v is not None and math.isfinite(mean(v))]
    if len(values) < 2 or metric not in METRICS:
        return None
    return (max if higher_is_better(metric) else min)(values, key=mean)
