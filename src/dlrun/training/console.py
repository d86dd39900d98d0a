"""What a run shows: rich on a terminal, plain lines elsewhere, and the same text in dlrun.log."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING

from rich.console import Console
from rich.panel import Panel
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn, TimeRemainingColumn
from rich.table import Table

if TYPE_CHECKING:
    from dlrun.training.steps import ProgressFn


def pct(fraction: float) -> str:
    return f"{100 * fraction:.2f}%"


class Reporter:
    """Prints to the terminal and appends the same text, without colours or bars, to a log file."""

    def __init__(self, log_path: Path, progress: str = "auto", console: Console | None = None):
        self.console = console or Console(highlight=False)
        self._log_file = open(log_path, "a", encoding="utf-8")
        self.log = Console(file=self._log_file, width=110, color_system=None, force_terminal=False, highlight=False, emoji=False)
        self.live = progress == "on" or (progress == "auto" and self.console.is_terminal)
        self._warned: set[str] = set()

    def warn(self, message: str) -> None:
        """One line, on the terminal and in dlrun.log, the first time `message` is said in this run."""
        if message in self._warned:
            return
        self._warned.add(message)
        self.print(f"warning: {message}", style="yellow", markup=False, soft_wrap=True)

    def print(self, *objects, **kwargs) -> None:
        self.console.print(*objects, **kwargs)
        self.log.print(*objects, **kwargs)
        self._log_file.flush()

    @contextmanager
    def epoch_progress(self, epoch: int, epochs: int, steps: int) -> Iterator[ProgressFn | None]:
        """A live bar with the running loss for one epoch, or nothing off a terminal."""
        if not self.live:
            yield None
            return
        columns = (
            TextColumn(f"epoch {epoch}/{epochs}"),
            BarColumn(),
            MofNCompleteColumn(),
            TextColumn("loss {task.fields[loss]}"),
            TimeElapsedColumn(),
            TimeRemainingColumn(),
        )
        with Progress(*columns, console=self.console, transient=True) as bar:
            task = bar.add_task("train", total=steps, loss="-")
            yield lambda done, loss: bar.update(task, completed=done, loss=f"{loss:.4f}")

    def epoch_line(self, epoch: int, epochs: int, train: dict, evaluation: dict | None, eval_name: str, seconds: float, best: bool) -> None:
        width = len(str(epochs))
        text = f"epoch {epoch:>{width}}/{epochs}  train loss {train['loss']:.4f} acc {pct(train['acc'])}"
        if evaluation is not None:
            text += f"  {eval_name} loss {evaluation['loss']:.4f} acc [bold]{pct(evaluation['acc'])}[/]"
        text += f"  {seconds:.2f} s" + ("  [green]*best[/]" if best else "")
        self.print(text, soft_wrap=True)

    def final_panel(self, summary: dict, run_dir: Path, hint: str | None = None) -> None:
        grid = Table.grid(padding=(0, 2))
        grid.add_column(style="bold")
        grid.add_column(overflow="fold")  # a long run folder path wraps rather than being cut
        test = summary.get("test") or {}
        if test:
            grid.add_row("test accuracy", f"[bold green]{pct(test['acc'])}[/]  ({test['examples']} images)")
            grid.add_row("test loss", f"{test['loss']:.4f}")
        final = summary.get("final") or {}
        if "gen/loss" in final:  # task=gan
            grid.add_row("last epoch's losses", f"generator {final['gen/loss']:.4f}, discriminator {final['disc/loss']:.4f}")
            grid.add_row("samples", "plots/samples.png (final), plots/progress.png (epoch by epoch)")
        best = summary.get("best") or {}
        if best.get("val/acc") is not None:
            grid.add_row("best val accuracy", f"{pct(best['val/acc'])} (epoch {best['epoch']})")
        epochs = f"{summary['epochs_completed']} of {summary['epochs']}"
        if summary.get("stop_reason"):
            epochs += f" ({summary['stop_reason']})"
        grid.add_row("epochs", epochs)
        grid.add_row("parameters", f"{summary['params']:,}")
        timing = summary["timing"]
        speed = timing.get("samples_per_s")
        grid.add_row(
            "wall time",
            f"{timing['wall_s']:.1f} s"
            + (f" (this command, resumed after epoch {summary['resumed_from_epoch']})" if "resumed_from_epoch" in summary else ""),
        )
        if speed:
            grid.add_row("training speed", f"{speed:,.0f} samples per training second on {summary['device']}")
        grid.add_row("run folder", str(run_dir))
        if hint:  # a faster setting this machine offers (recipe.bf16_hint)
            grid.add_row("hint", hint)
        status = summary["status"]
        color = "green" if status == "completed" else "red"
        self.print(Panel(grid, title=f"dlrun: {summary['experiment']}", subtitle=f"[{color}]{status}[/]", expand=False))

    def close(self) -> None:
        self._log_file.close()
