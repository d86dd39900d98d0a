"""Overlaid learning curves of many runs: one metric per epoch, one line per run, labelled by what differs.

matplotlib is imported inside the function with the Agg backend: no display is needed, and
`dlrun compare` without --plot never loads it.
"""

from __future__ import annotations

import math
from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from dlrun.analysis.query import Group
from dlrun.analysis.report import header, human
from dlrun.analysis.runfolder import Run
from dlrun.errors import RunFolderError

MAX_LEGEND = 30  # entries; beyond that a legend hides the plot
LEGEND_POINTS = 8  # the legend's font size
TITLE_POINTS = 10
LABEL_CHARS = 400  # a longer legend label (a few lines below the plot) ends in '…'


def label(run: Run, keys: Sequence[str], *, with_id: bool = False) -> str:
    """'optimizer=sgd seed=0': the run's values of the keys that differ (its id when none do, or with
    `with_id`, when another run has the same values), cut at LABEL_CHARS."""
    text = " ".join(f"{header(k)}={human(k, run.get(k))}" for k in keys) or run.id
    text = text if len(text) <= LABEL_CHARS else text[: LABEL_CHARS - 1] + "…"
    if with_id and text != run.id:
        text += f" ({run.id})"
    return plain(text if run.status == "completed" else f"{text} [{run.status}]")


def unique_labels(runs: Sequence[Run], keys: Sequence[str]) -> list[str]:
    """The runs' labels; runs that would share one (the same values in two sweeps) also show their ids."""
    labels = [label(run, keys) for run in runs]
    counts = Counter(labels)
    return [label(run, keys, with_id=True) if counts[text] > 1 else text for run, text in zip(runs, labels, strict=True)]


def plain(text: str) -> str:
    """`text` as matplotlib prints it as is: a `$` would otherwise start TeX math, and fail the plot when it does not parse."""
    return text.replace("$", r"\$")


def text_width(points: float, renderer: Any) -> Callable[[str], float]:
    """A function giving a line's width in pixels in a `points`-sized font: the sum of its characters'
    advances, each measured once (between two bars, so that a space counts) — measuring every
    candidate line whole takes a millisecond per line. Kerning aside, a line is as wide as that sum."""
    from matplotlib.font_manager import FontProperties

    font = FontProperties(size=points)
    measure = lambda s: renderer.get_text_width_height_descent(s, font, ismath=False)[0]  # noqa: E731
    bars = measure("||")
    advance: dict[str, float] = {}

    def width(line: str) -> float:
        for char in set(line) - advance.keys():
            advance[char] = measure(f"|{char}|") - bars
        return sum(advance[char] for char in line)

    return width


def wrap_to_width(text: str, width: float, measure: Callable[[str], float]) -> str:
    """`text` broken into lines at most `width` wide (by `measure`, see text_width): at spaces, and a
    word longer than a line (a path) after its last fitting '/', else where the line ends."""
    lines: list[str] = []
    space = measure(" ")
    for paragraph in text.split("\n"):
        line, used = "", 0.0
        for word in paragraph.split(" "):
            if line and used + space + measure(word) > width:
                lines.append(line)
                line, used = "", 0.0
            line, used = (f"{line} {word}", used + space + measure(word)) if line else (word, measure(word))
            start = 0
            while used > width and len(line) - start > 1:  # a word longer than a line: cut it, measuring each character once
                end, head = start, 0.0
                while end < len(line) and head + measure(line[end]) <= width:
                    head, end = head + measure(line[end]), end + 1
                slash = line.rfind("/", start, end)
                end = slash + 1 if slash >= (start + end) // 2 else max(end, start + 1)
                lines.append(line[start:end])
                start, used = end, used - measure(line[start:end])
            line = line[start:]
        lines.append(line)
    return "\n".join(lines)


@dataclass
class LegendLayout:
    """Where the legend goes, in how many columns, the labels wrapped to fit, and the figure's height in inches."""

    below: bool
    columns: int
    labels: list[str]
    height: float


def legend_layout(labels: list[str], figsize: tuple[float, float], dpi: float, renderer: Any) -> LegendLayout:
    """Short labels sit right of the plot, in one column; longer ones below it, in as many columns
    as the figure's width holds, each wrapped to the width when even one column is too narrow. The
    figure grows to hold the legend's rows."""
    em = LEGEND_POINTS * dpi / 72  # pixels
    figure_width = figsize[0] * dpi - 4 * em  # the layout's padding and a margin
    handle, gap = 3.2 * em, 2 * em  # a line sample with its padding; the space between columns
    measure = text_width(LEGEND_POINTS, renderer)
    widest = max(map(measure, labels), default=0.0)
    row = 1.75 * em  # a line of text and the space below it, in pixels
    if handle + widest <= 0.3 * figure_width:
        return LegendLayout(False, 1, labels, max(figsize[1], (len(labels) * row + 6 * em) / dpi))
    columns = max(1, min(len(labels), int((figure_width + gap) // (handle + widest + gap))))
    if columns > 1:
        lines = -(-len(labels) // columns)  # one line a row: every label fits its column
    else:
        labels = [wrap_to_width(text, figure_width - handle, measure) for text in labels]
        lines = sum(text.count("\n") + 1 for text in labels)
    return LegendLayout(True, columns, labels, figsize[1] + (lines * row + 2 * em) / dpi)


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
    fig, ax = plt.subplots(figsize=(10, 5.5), constrained_layout=True)
    drawn: list[tuple[Run, Any]] = []  # (run, its line), in legend order
    last_epoch = 1
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
            [line] = ax.plot(
                epochs,
                [r[metric] for r in rows],
                color=colour,
                linestyle="-" if run.status == "completed" else "--",
                marker="o" if len(rows) <= 20 else None,
                markersize=3,
                linewidth=1.4,
            )
            drawn.append((run, line))
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
    renderer = fig.canvas.get_renderer()
    if 0 < len(drawn) <= MAX_LEGEND:
        layout = legend_layout(unique_labels([run for run, _ in drawn], keys), (10, 5.5), fig.dpi, renderer)
        fig.set_size_inches(10, layout.height)  # taller, to hold the legend's rows below the plot
        where = "outside lower center" if layout.below else "outside right upper"
        fig.legend([line for _, line in drawn], layout.labels, loc=where, ncols=layout.columns, fontsize=LEGEND_POINTS, frameon=False)
    elif drawn:
        heading += f" ({len(drawn)} lines; legend left out)"
    fig.suptitle(wrap_to_width(heading, 0.95 * fig.bbox.width, text_width(TITLE_POINTS, renderer)), fontsize=TITLE_POINTS)
    Path(path).parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return len(drawn)
