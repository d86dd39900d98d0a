"""What `dlrun eval` shows and keeps: a panel with the confusion matrix, and RUN/eval/<time>/'s files."""

from __future__ import annotations

import csv
import io
from pathlib import Path
from typing import Any

from rich.console import Console
from rich.panel import Panel
from rich.table import Table

from dlrun.training.console import pct
from dlrun.training.finished_run import FinishedRun
from dlrun.training.storage import atomic_write, write_json

MATRIX_CLASSES = 20  # a larger confusion matrix is only drawn in confusion_matrix.png


def print_panel(run: FinishedRun, record: dict[str, Any], out: Path | None, notes: list[str], console: Console | None = None) -> None:
    console = console or Console(highlight=False)
    for note in notes:
        console.print(note, markup=False, soft_wrap=True)
    grid = Table.grid(padding=(0, 2))
    grid.add_column(style="bold")
    grid.add_column(overflow="fold")
    epoch = f" (epoch {record['epoch']})" if record["epoch"] is not None else ""
    grid.add_row("checkpoint", f"{record['checkpoint']}{epoch}")
    grid.add_row("data", f"{record['dataset'].get('name')}, {record['split']} split ({record['examples']} images)")
    grid.add_row("accuracy", f"[bold green]{pct(record['acc'])}[/]")
    grid.add_row("loss", f"{record['loss']:.4f}")
    trained = run.summary.get("test") or {}
    if record["split"] == "test" and record["checkpoint"] == "best.pt" and not record["overrides"] and "acc" in trained:
        grid.add_row("at training", f"test accuracy {pct(trained['acc'])}, loss {trained['loss']:.4f} (summary.json)")
    grid.add_row("device", record["device"])
    grid.add_row("saved in", str(out) if out else "nowhere")
    console.print(Panel(grid, title=f"dlrun eval: {run.summary.get('experiment', run.folder)}", expand=False))
    classes, matrix = record["classes"], record["confusion_matrix"]
    if len(classes) <= MATRIX_CLASSES:
        console.print(f"{record['split']} confusion matrix (rows: true class, columns: predicted class):")
        table = Table()
        table.add_column("", style="bold")
        for name in classes:
            table.add_column(name, justify="right")
        for i, (name, row) in enumerate(zip(classes, matrix, strict=True)):
            table.add_row(name, *(f"[bold]{v}[/]" if i == j else str(v) for j, v in enumerate(row)))  # the diagonal: right
        console.print(table)


def write_eval_folder(out: Path, record: dict[str, Any], result: dict[str, Any], classes: list[str], title: str) -> None:
    """metrics.json (the record), predictions.csv (index, true, predicted class) and confusion_matrix.png."""
    from dlrun.training.plots import plot_confusion_matrix

    write_json(out / "metrics.json", record)
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\n")
    writer.writerow(["index", "true", "predicted"])
    for index, (true, predicted) in enumerate(zip(result["targets"].tolist(), result["predictions"].tolist(), strict=True)):
        writer.writerow([index, classes[true], classes[predicted]])
    atomic_write(out / "predictions.csv", lambda f: f.write(buffer.getvalue().encode()))
    plot_confusion_matrix(record["confusion_matrix"], classes, out / "confusion_matrix.png",
                          title=f"{record['split']} confusion matrix: {title}")  # fmt: skip
