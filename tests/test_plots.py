"""The pictures' layout: with the longest realistic titles, class names and legends, every text lies inside the figure.

A figure is checked as it is saved: drawn once more, each text's window extent must lie within the
figure's box. Runs come from tests/runfolders.py; no torch is needed.
"""

from __future__ import annotations

from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.figure  # noqa: E402
import pytest  # noqa: E402
from matplotlib.text import Text  # noqa: E402

from dlrun.analysis.curves import plot_runs  # noqa: E402
from dlrun.analysis.query import differing_keys  # noqa: E402
from dlrun.analysis.runfolder import find_runs  # noqa: E402
from dlrun.training.plots import plot_confusion_matrix, plot_training_curves  # noqa: E402
from tests.runfolders import make_run  # noqa: E402

TITLE = "cnn lenet5 + adamw (lr 0.0003) on fashion_mnist, l1 + l2 + dropout + batchnorm: the long-run baseline for the report"
FASHION = ["T-shirt/top", "Trouser", "Pullover", "Dress", "Coat", "Sandal", "Shirt", "Sneaker", "Bag", "Ankle boot"]
HEADING = "20 runs in /home/someone/projects/dlrun-experiments/multirun/2026-11-26/14-03-11 (of 40; optimizer=adam,sgd and model=cnn)"


@pytest.fixture
def saved(monkeypatch) -> list[tuple[matplotlib.figure.Figure, list[str]]]:
    """Each figure saved, with the texts that stick out of it ('text: its box')."""
    figures: list[tuple[matplotlib.figure.Figure, list[str]]] = []
    save = matplotlib.figure.Figure.savefig

    def checked_save(fig, *args, **kwargs):
        save(fig, *args, **kwargs)
        figures.append((fig, texts_outside(fig)))

    monkeypatch.setattr(matplotlib.figure.Figure, "savefig", checked_save)
    return figures


def texts_outside(fig: matplotlib.figure.Figure) -> list[str]:
    fig.canvas.draw()
    renderer = fig.canvas.get_renderer()
    undrawn = set()  # tick labels matplotlib keeps but does not draw: beyond the axis' limits, or of an axis turned off
    for ax in fig.axes:
        for axis in (ax.xaxis, ax.yaxis):
            low, high = sorted(axis.get_view_interval())
            for tick in axis.get_major_ticks() + axis.get_minor_ticks():
                if not ax.axison or not low - 1e-9 * (high - low) <= tick.get_loc() <= high + 1e-9 * (high - low):
                    undrawn |= {id(tick.label1), id(tick.label2)}
    box = fig.bbox
    outside = []
    for text in fig.findobj(Text):
        if id(text) in undrawn or not text.get_visible() or not text.get_text():
            continue
        extent = text.get_window_extent(renderer)
        if extent.x0 < box.x0 - 0.5 or extent.y0 < box.y0 - 0.5 or extent.x1 > box.x1 + 0.5 or extent.y1 > box.y1 + 0.5:
            outside.append(f"{text.get_text()!r}: {[round(v) for v in extent.extents]} in {[round(v) for v in box.extents]}")
    return outside


@pytest.mark.parametrize("classes", [[str(d) for d in range(10)], FASHION], ids=["digits", "fashion_mnist"])
def test_confusion_matrix_with_a_long_title(tmp_path, saved, classes):
    matrix = [[980 if i == j else 3 for j in range(10)] for i in range(10)]
    plot_confusion_matrix(matrix, classes, tmp_path / "confusion_matrix.png", title=f"test confusion matrix: {TITLE}")
    [(fig, outside)] = saved
    assert outside == []
    [title] = fig.texts  # over the matrix and its colour bar, not over the matrix alone
    assert title.get_text().replace("\n", " ") == f"test confusion matrix: {TITLE}"


def test_training_curves_with_a_long_title_show_accuracy_in_percent(tmp_path, saved):
    rows = [{"epoch": e, "train/loss": 1 / e, "train/acc": 0.9 + e / 200, "val/loss": 1 / e, "val/acc": 0.9 + e / 200} for e in range(1, 9)]
    plot_training_curves(rows, tmp_path / "curves.png", title=TITLE)
    [(fig, outside)] = saved
    assert outside == []
    accuracy = fig.axes[1]
    assert all(t.get_text().endswith("%") for t in accuracy.get_yticklabels() if t.get_text())


@pytest.mark.parametrize("lrs", [[0.01] * 6, [0.001, 0.002, 0.001, 0.0005, 0.0001, 1e-6]], ids=["constant", "scheduled"])
def test_training_curves_draw_the_lr_only_when_it_changes(tmp_path, saved, lrs):
    rows = [{"epoch": e, "train/loss": 1 / e, "train/acc": 0.9, "val/loss": 1 / e, "val/acc": 0.9, "lr": lr} for e, lr in enumerate(lrs, 1)]
    plot_training_curves(rows, tmp_path / "curves.png", title=TITLE)
    [(fig, outside)] = saved
    assert outside == []
    panels = [ax.get_title() for ax in fig.axes]
    assert panels == (["loss", "accuracy", "learning rate"] if len(set(lrs)) > 1 else ["loss", "accuracy"])
    if len(set(lrs)) > 1:
        assert list(fig.axes[2].lines[0].get_ydata()) == lrs and fig.axes[2].get_yscale() == "log"


def sweep(folder: Path, jobs: int, label_words: int) -> None:
    """Jobs whose legend labels are about 20 + 12 * label_words characters long."""
    for job in range(jobs):
        changes = {"optimizer.lr": 0.001 * (1 + job % 10), "seed": job // 10}
        if label_words:
            changes["model.note"] = " ".join(["dropout"] * label_words)  # a long value, the same in every job
            changes["model.variant"] = f"v{job % 3}"
            make_run(folder / str(job), set=changes, val_acc=[0.5, 0.6 + job / 100, 0.65 + job / 100])
        else:
            make_run(folder / str(job), set=changes, val_acc=[0.5, 0.6 + job / 100, 0.65 + job / 100])


@pytest.mark.parametrize(("jobs", "label_words"), [(30, 0), (8, 4), (20, 16)])
def test_compare_plot_legends_fit(tmp_path, saved, jobs, label_words):
    """Short labels beside the plot, longer ones below it in columns, the longest wrapped; 30 is the most shown."""
    sweep(tmp_path / "a", jobs // 2, label_words)
    sweep(tmp_path / "b", jobs - jobs // 2, label_words)
    runs = find_runs([tmp_path])
    for run in runs:  # the note differs between the two sweeps, so that it is a column
        run.config["model.note"] = run.config.get("model.note", "") + run.id[0]
    assert plot_runs(runs, "val/acc", tmp_path / "curves.png", differing_keys(runs), title=HEADING) == jobs
    [(fig, outside)] = saved
    assert outside == []
    [legend] = fig.legends
    assert len(legend.get_texts()) == jobs


def test_runs_with_the_same_values_get_their_ids_in_the_legend(tmp_path, saved):
    for sweep_dir in ("2026-11-26/14-03-11", "2026-11-27/09-00-00"):  # the same sweep, run twice
        for job, lr in enumerate((0.001, 0.01, 0.1)):
            make_run(tmp_path / sweep_dir / str(job), set={"optimizer.lr": lr, "model.variant": "a" if job else "b"})
    make_run(tmp_path / "2026-11-27/09-00-00/3", set={"optimizer.lr": 0.5, "model.variant": "a"})
    runs = find_runs([tmp_path])
    plot_runs(runs, "val/acc", tmp_path / "curves.png", differing_keys(runs))
    [(fig, outside)] = saved
    labels = [t.get_text() for t in fig.legends[0].get_texts()]
    assert outside == [] and len(set(labels)) == len(labels) == 7
    assert "model.variant=b optimizer.lr=0.001 (2026-11-26/14-03-11/0)" in labels
    assert "model.variant=a optimizer.lr=0.5" in labels  # unique already: no id
