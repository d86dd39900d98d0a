"""The summary of a sweep (`dlrun -m ...`), printed and written into the sweep folder when it ends.

dlrun.hydra_callbacks.SweepSummary calls `summarize_sweep` once, in the process that launched the
jobs, after the last one returned (with any launcher: basic, joblib, submitit). It reads the job folders the way
`dlrun compare` does and draws them with the same functions: one table row per job with the
overrides that vary as columns, best job first; when the sweep repeats seeds, the same table
folded over seed as mean ± std (n); then sweep_summary.csv, sweep_summary.md and sweep_curves.png.

"""

from __future__ import annotations

import io
import sys
from pathlib import Path

from rich.console import Console

from dlrun.analysis import report
from dlrun.analysis.curves import plot_runs
from dlrun.analysis.query import default_metric, group_runs, sort_items, varying_overrides
from dlrun.analysis.runfolder import find_runs
from dlrun.analysis.table import print_table, table_console


def summarize_sweep(sweep_dir: Path | str, console: Console | None = None) -> dict[str, Path]:
    """Print the job table (and the seed-folded one) and write the three summary files; return their paths."""
    sweep_dir = Path(sweep_dir)
    console = console or table_console()
    notes: list[str] = []
    runs = find_runs([sweep_dir], notes)
    if not runs:
        print(f"dlrun: no job folders with results in {sweep_dir}; no sweep summary written", file=sys.stderr)
        return {}
    keys = varying_overrides(runs)
    metric = default_metric(runs)
    jobs = sort_items(runs, metric)
    title = f"sweep {sweep_dir}: {len(runs)} job{'s' if len(runs) != 1 else ''}"
    caption = report.caption(runs, metric)
    tables = [(title, jobs, keys)]
    groups = None
    if "seed" in keys:
        groups, kept = group_runs(jobs, keys, ["seed"])
        groups = sort_items(groups, metric)
        tables.append(("the same sweep, mean ± std (n) over seed", groups, kept))
    for note in notes:
        print(report.printable(note), file=sys.stderr)
    for i, (heading, items, columns) in enumerate(tables):
        last = i == len(tables) - 1
        print_table(console, items, columns, metric=metric, sort=metric, title=heading, caption=caption if last else "")
    for line in report.errors(jobs):
        console.print(line, markup=False, style="dim")

    paths = {"csv": sweep_dir / "sweep_summary.csv", "md": sweep_dir / "sweep_summary.md", "png": sweep_dir / "sweep_curves.png"}
    with open(paths["csv"], "w", newline="", encoding="utf-8", errors="backslashreplace") as f:
        report.write_csv(jobs, keys, f)
    md = io.StringIO()
    for heading, items, columns in tables:
        report.write_md(items, columns, md, metric=metric, sort=metric, title=heading)
        md.write("\n")
    paths["md"].write_text(md.getvalue() + caption + "\n", encoding="utf-8", errors="backslashreplace")
    plot_notes: list[str] = []
    plot_runs(jobs, metric, paths["png"], keys, title=title, groups=groups, notes=plot_notes)
    for note in plot_notes:
        print(report.printable(note), file=sys.stderr)
    console.print(f"sweep summary: {paths['csv']}, {paths['md'].name}, {paths['png'].name}", markup=False, soft_wrap=True)
    return paths
