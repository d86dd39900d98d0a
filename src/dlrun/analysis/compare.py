"""`dlrun compare PATH...`: a table of run folders, showing only what differs between them.

The command line is here; runs.py reads the folders, query.py filters, sorts and groups them,
table.py, report.py and curves.py draw them — the same functions the sweep summary uses. It
reads files only: never imports torch, Hydra or scikit-learn (a test checks it), so it answers
in a fraction of a second.
"""

from __future__ import annotations

import argparse
import io
import os
import sys

from dlrun.analysis import report
from dlrun.analysis.query import (
    default_metric,
    differing_keys,
    filter_runs,
    group_runs,
    parse_condition,
    resolve_key,
    sort_items,
    varying_overrides,
)
from dlrun.analysis.runfolder import DIED, find_runs, load_run, text
from dlrun.analysis.table import print_table, table_console

__all__ = ["main", "parser", "find_runs", "load_run", "differing_keys", "varying_overrides", "filter_runs", "group_runs", "sort_items"]

CURVE_METRICS = ("val/acc", "val/loss", "test/acc", "test/loss", "train/acc", "train/loss", "gen/loss", "disc/loss")  # metrics.csv columns

EPILOG = """\
examples:
  dlrun compare outputs/ multirun/              every run found under both folders, best val/acc first
  dlrun compare multirun/2026-11-26/14-03-11 --sort test/acc
  dlrun compare multirun/ --filter optimizer=adam,sgd --filter 'optimizer.lr<=0.01'
  dlrun compare multirun/2026-11-26/14-03-11 --group-by seed      mean ± std (n) over seeds
  dlrun compare outputs/ --format csv > runs.csv
  dlrun compare multirun/2026-11-26/14-03-11 --plot curves.png --metric val/loss

KEY is a config key (optimizer.lr, model.name; a group name such as `optimizer` means
optimizer.name, and the last part of a key means the one key that ends so: `lr` is optimizer.lr;
where several do, as with `name`, the error lists them), an override key, or one of: status,
epochs_done, epochs, run, and the metrics val/acc val/loss (at the epoch of best val/acc, whose
weights a run keeps and tests), test/acc test/loss, train/acc train/loss (last epoch),
best_epoch, time_s (wall-clock seconds), params. An unknown KEY is an error naming the nearest.

Columns: the run (its path below the runs' common parent), the config keys whose values differ
(except those that cannot change what a run learns: trainer.progress, plots, checkpoints,
dataset.root, dataset.max_memory_gb, device.threads), status, epochs finished/planned, best val/acc, test/acc,
test/loss and time. Sorting puts the
highest accuracy first and the lowest value of anything else (loss, time, lr, name) first;
--reverse flips it; runs without the value go last. Standard deviations are sample ones (n - 1).
"""


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="dlrun compare",
        epilog=EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
        description="Compare dlrun run folders: one row per run, a column per config key that differs.",
    )
    p.add_argument("paths", nargs="+", metavar="PATH", help="run folders, sweep folders, or any folder holding them (searched recursively)")
    p.add_argument("--sort", metavar="KEY", help="order rows by KEY (default: --metric)")
    p.add_argument("--reverse", action="store_true", help="flip the sort order")
    p.add_argument(
        "--filter",
        metavar="KEY=VALUE",
        action="append",
        default=[],
        help="keep runs whose KEY equals VALUE (numbers compare as numbers; VALUE may be A,B; also !=, <, <=, >, >=); "
        "repeat to require several",
    )
    p.add_argument(
        "--group-by",
        metavar="KEY",
        action="append",
        default=[],
        help="fold runs that differ only in KEY (e.g. seed) into one row of mean ± std (n) over KEY; every other key "
        "that differs keeps rows apart. A group name (optimizer) folds the choice and the keys that come with it "
        "(each optimizer's default lr), not a key that varies within one choice (four Adam lr values stay four rows). "
        "For a row per optimizer, fold the rest: --group-by seed,lr. The title names the keys folded. Repeatable or A,B",
    )
    p.add_argument(
        "--metric",
        metavar="NAME",
        help=f"the metric the table highlights, the default sort, and the plot's curves: "
        f"{', '.join(CURVE_METRICS)} (default: val/acc, or test/acc when no run has "
        "a validation split, or gen/loss when all are GANs)",
    )
    p.add_argument("--format", choices=("table", "csv", "json", "md"), default="table", help="output format (default: table)")
    p.add_argument("--top", metavar="N", type=int, help="show only the first N rows")
    p.add_argument("--all", action="store_true", help="also list runs refused before their first step (a typo in a sweep's job, say)")
    p.add_argument("--plot", metavar="FILE", help="write the per-epoch curves of --metric for every run to FILE (png, pdf, svg)")
    return p


def fail(message: str) -> int:
    print(f"dlrun compare: error: {message}", file=sys.stderr)
    return 2


def main(argv: list[str] | None = None) -> int:
    args = parser().parse_args(sys.argv[1:] if argv is None else argv)
    if isinstance(sys.stdout, io.TextIOWrapper):  # a name or JSON string that is not valid Unicode prints escaped, not as a traceback
        sys.stdout.reconfigure(errors="backslashreplace")
    notes: list[str] = []
    try:
        runs = find_runs(args.paths, notes)
    except FileNotFoundError as err:
        return fail(str(err))
    refused = [run for run in runs if run.status == "refused"]
    if refused and not args.all:  # they hold nothing to compare, and their keys would only widen the table
        runs = [run for run in runs if run.status != "refused"]
        notes.append(f"{len(refused)} run{'s' if len(refused) != 1 else ''} refused before the first step not shown (--all shows them)")
    died = [run for run in runs if run.status == DIED]
    if died:
        folder = died[0].path
        notes.append(f"{len(died)} run{'s' if len(died) != 1 else ''} died: killed while running, before saying how it ended; "
                     f"`dlrun resume={folder}` continues {'it' if len(died) == 1 else 'one'} from its last epoch")  # fmt: skip
    for note in notes:
        print(report.printable(note), file=sys.stderr)
    if not runs:
        print("dlrun compare: no runs found", file=sys.stderr)
        return 1
    try:
        conditions = [parse_condition(c) for c in args.filter]
        conditions = [(resolve_key(k, runs), op, v) for k, op, v in conditions]
        by = [resolve_key(k.strip(), runs) for item in args.group_by for k in item.split(",") if k.strip()]
        if args.metric and args.metric not in CURVE_METRICS:
            raise ValueError(f"--metric {args.metric!r} is not one of: {', '.join(CURVE_METRICS)}")
        metric = args.metric or default_metric(runs)
        sort = resolve_key(args.sort, runs) if args.sort else metric
    except (ValueError, KeyError) as err:
        return fail(err.args[0])
    if args.top is not None and args.top < 1:
        return fail(f"--top {args.top} must be >= 1")
    total = len(runs)
    runs = filter_runs(runs, conditions)
    if not runs:
        print(f"dlrun compare: none of the {total} runs matches {' and '.join(args.filter)}", file=sys.stderr)
        return 1
    keys = differing_keys(runs)
    items, kept = group_runs(runs, keys, by) if by else (runs, keys)
    same = [b for b in by if len({text(run.get(b)) for run in runs}) == 1]
    title = report.title(runs, total, args.filter, folded=[k for k in keys if k not in kept], same=same)
    keys = kept
    if args.top is not None and args.top < len(items):
        title += f"; the first {args.top} shown"
    items = sort_items(items, sort, args.reverse)[: args.top]
    try:
        if args.format == "table":
            console = table_console(sys.stdout)
            print_table(console, items, keys, metric=metric, sort=sort, title=title, caption=report.caption(runs, sort, args.reverse))
            for line in report.errors(items):
                console.print(line, markup=False, style="dim")
        elif args.format == "md":
            report.write_md(items, keys, sys.stdout, metric=metric, sort=sort, title=title)
        else:
            {"csv": report.write_csv, "json": report.write_json}[args.format](items, keys, sys.stdout)
    except BrokenPipeError:  # `dlrun compare ... | head`: stop quietly, and let the exit flush go nowhere
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 0
    if args.plot:
        shown = [run for item in items for run in (item.runs if by else [item])]
        from dlrun.analysis.curves import plot_runs

        heading = report.title(runs, total, args.filter) + (", runs of a group in shades of one colour" if by else "")
        plot_notes: list[str] = []
        drawn = plot_runs(shown, metric, args.plot, differing_keys(shown), title=heading, groups=items if by else None, notes=plot_notes)
        for note in plot_notes:
            print(report.printable(note), file=sys.stderr)
        print(f"wrote {args.plot}: {metric} per epoch for {drawn} of {len(shown)} runs", file=sys.stderr)
    return 0
