"""Overlaid learning curves of many runs: one metric per epoch, one line per run, labelled by what differs.

matplotlib is imported inside the function with the Agg backend: no display is needed, and
`dlrun compare` without --plot never loads it.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from pathlib import Path

from dlrun.analysis.query import Group
from dlrun.analysis.report import header, human
from dlrun.analysis.runfolder import Run
from dlrun.errors import RunFolderError

MAX_LEGEND = 30  # entries; beyond that a legend hides the plot


def label(run: Run, keys: Sequence[str]) -> str:
    """'optimizer=sgd seed=0': the run's values of the keys that differ (its id when none do)."""
    text = " ".join(f"{header(k)}={human(k, run.get(k))}" for k in keys) or run.id
    return plain(text if run.status == "completed" else f"{text} [{run.status}]")


def plain(text: str) -> str:
    """`text` as matplotlib prints it as is: a `$` would otherwise start TeX math, and fail the plot when it does not parse."""
    return text.replace("$", r"\$")


def plot_runs(
    runs: Sequence[Run],
    metric: str,
    path: str | Path,
    keys: Sequence[str],
    *,
    title: str = "",
    groups: Sequence[Group] | None = None,
    notes: list[str] | None = None,
) -> int:
    """`metric` per epoch for every run, overlaid, to an image file; return how many runs had the metric.

    Each run is a line labelled by its values of `keys`; runs that did not complete are dashed.
    With `groups` (runs that differ only by seed, say), a group's runs are shades of one colour
    and sit together in the legend. A run whose metrics.csv cannot be read is left out, with a
    line in `notes` (when given).
    """
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from matplotlib.colors import to_rgb
    from matplotlib.ticker import MaxNLocator, PercentFormatter

    families = [g.runs for g in groups] if groups else [[run] for run in runs]
    shown = {id(run) for run in runs}
    palette = plt.get_cmap("tab10" if len(families) <= 10 else "tab20").colors
    labels = {id(run): label(run, keys) for run in runs}
    longest = max(map(len, labels.values()), default=0)
    # Short labels sit right of the plot; long ones below it, in one or two columns, the figure growing to hold them.
    below = longest > 45 and len(runs) <= MAX_LEGEND
    columns = 1 if longest > 80 else 2
    legend_rows = -(-len(runs) // columns) if below else 0
    fig, ax = plt.subplots(figsize=(10, 5.5 + 0.2 * legend_rows), constrained_layout=True)
    drawn, last_epoch = 0, 1
    for f, family in enumerate(families):
        members = [run for run in family if id(run) in shown]
        for k, run in enumerate(members):
            try:
                rows = [r for r in run.rows() if metric in r]
            except RunFolderError as err:
                if notes is not None:
                    notes.append(f"skipped: {err}")
                continue
            if not rows:
                continue
            lighten = 0.6 * k / max(len(members) - 1, 1)  # 0 for the first run of a family, up to 0.6 towards white
            colour = tuple(c + (1 - c) * lighten for c in to_rgb(palette[f % len(palette)]))
            epochs = [r["epoch"] if math.isfinite(r.get("epoch", math.nan)) else i + 1 for i, r in enumerate(rows)]
            ax.plot(
                epochs,
                [r[metric] for r in rows],
                color=colour,
                linestyle="-" if run.status == "completed" else "--",
                marker="o" if len(rows) <= 20 else None,
                markersize=3,
                linewidth=1.4,
                label=labels[id(run)],
            )
            drawn += 1
            last_epoch = max(last_epoch, int(epochs[-1]))
    margin = 0.5 if last_epoch < 4 else 0  # a lone point at epoch 1 would otherwise sit on the frame
    ax.set_xlim(1 - margin, last_epoch + margin)
    ax.xaxis.set_major_locator(MaxNLocator(integer=True))
    ax.set_xlabel("epoch")
    ax.set_ylabel(metric)
    if metric.endswith("/acc"):
        ax.yaxis.set_major_formatter(PercentFormatter(1.0))
    ax.grid(alpha=0.3)
    heading = plain(title + "\n" if title else "") + f"{metric} per epoch"
    if 0 < drawn <= MAX_LEGEND:
        fig.legend(loc="outside lower center" if below else "outside right upper", ncols=columns if below else 1, fontsize=8, frameon=False)
    elif drawn:
        heading += f" ({drawn} lines; legend left out)"
    ax.set_title(heading, fontsize=10)
    Path(path).parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return drawn
