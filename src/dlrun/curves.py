"""Overlaid learning curves of many runs: one metric per epoch, one line per run, labelled by what differs.

matplotlib is imported inside the function with the Agg backend: no display is needed, and
`dlrun compare` without --plot never loads it.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

from dlrun.query import Group
from dlrun.report import header, human
from dlrun.runs import Run

MAX_LEGEND = 30  # entries; beyond that a legend hides the plot


def label(run: Run, keys: Sequence[str]) -> str:
    """'optimizer=sgd seed=0': the run's values of the keys that differ (its id when none do)."""
    text = " ".join(f"{header(k)}={human(k, run.get(k))}" for k in keys) or run.id
    return text if run.status == "completed" else f"{text} [{run.status}]"


def group_label(group: Group) -> str:
    """'optimizer=sgd (n=3)': the values a group's runs share."""
    return (" ".join(f"{header(k)}={human(k, v)}" for k, v in group.values.items()) or "all runs") + f" (n={len(group.runs)})"


def plot_curves(runs: Sequence[Run], metric: str, path: str | Path, keys: Sequence[str], *, title: str = "",
                groups: Sequence[Group] | None = None) -> int:
    """`metric` per epoch for every run, overlaid, to an image file; return how many runs had the metric.

    Runs that did not complete are dashed. With `groups`, the runs of a group share one colour and
    one legend entry.
    """
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from matplotlib.ticker import MaxNLocator, PercentFormatter

    owner = {id(r): g for g in groups or [] for r in g.runs}
    palette = plt.get_cmap("tab10" if len(groups or runs) <= 10 else "tab20").colors
    colours: dict[int, Any] = {}  # id(group or run) -> colour
    fig, ax = plt.subplots(figsize=(10, 5.5), constrained_layout=True)
    drawn, labelled, last_epoch = 0, set(), 1
    for run in runs:
        rows = [r for r in run.rows() if metric in r]
        if not rows:
            continue
        group = owner.get(id(run))
        colour = colours.setdefault(id(group or run), palette[len(colours) % len(palette)])
        name = group_label(group) if group is not None else label(run, keys)
        epochs = [r.get("epoch", i + 1) for i, r in enumerate(rows)]
        ax.plot(epochs, [r[metric] for r in rows], color=colour, linestyle="-" if run.status == "completed" else "--",
                marker="o" if len(rows) <= 20 else None, markersize=3, linewidth=1.4, alpha=0.85,
                label=None if name in labelled else name)
        labelled.add(name)
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
    heading = (title + "\n" if title else "") + f"{metric} per epoch"
    if 0 < len(labelled) <= MAX_LEGEND:
        fig.legend(loc="outside right upper", fontsize=8, frameon=False)
    elif labelled:
        heading += f" ({len(labelled)} lines; legend left out)"
    ax.set_title(heading, fontsize=10)
    Path(path).parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return drawn
