"""The pictures of a run: learning curves, the test confusion matrix, and sample predictions.

matplotlib is imported inside each function, with the Agg backend: no display is needed. Titles
are wrapped to the figure's width, so that a long experiment name is never cut.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

from dlrun.analysis.curves import text_width, wrap_to_width

TITLE_POINTS = 12


def _pyplot():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def _fit(fig, title: str) -> str:
    """`title` wrapped to the figure's width."""
    return wrap_to_width(title, 0.95 * fig.bbox.width, text_width(TITLE_POINTS, fig.canvas.get_renderer()))


def plot_training_curves(rows: Sequence[dict], path: Path, title: str = "") -> None:
    """Loss and accuracy per epoch, train against val (or test when there is no val split); and,
    when the learning rate changed during the run, a small panel of the lr each epoch started with."""
    plt = _pyplot()
    from matplotlib.ticker import MaxNLocator, PercentFormatter

    epochs = [int(r["epoch"]) for r in rows]
    rates = [float(r["lr"]) for r in rows if "lr" in r]
    scheduled = len(set(rates)) > 1
    if scheduled:
        fig, axes = plt.subplots(1, 3, figsize=(13, 4), constrained_layout=True, width_ratios=[1, 1, 0.6])
        lr_ax = axes[2]
        lr_ax.plot(epochs, rates, "-o", markersize=3, color="tab:purple")
        lr_ax.set_yscale("log" if max(rates) / max(min(rates), 1e-300) > 50 else "linear")
        lr_ax.set_title("learning rate")
        lr_ax.set_xlabel("epoch")
        lr_ax.xaxis.set_major_locator(MaxNLocator(integer=True))
        lr_ax.grid(alpha=0.3)
    else:
        fig, axes = plt.subplots(1, 2, figsize=(10, 4), constrained_layout=True)
    for ax, metric in zip(axes[:2], ("loss", "acc"), strict=True):
        for split, style in (("train", "-o"), ("val", "-s"), ("test", "-^")):
            key = f"{split}/{metric}"
            if rows and key in rows[0]:
                ax.plot(epochs, [float(r[key]) for r in rows], style, markersize=3, label=split)
        ax.set_xlabel("epoch")
        ax.xaxis.set_major_locator(MaxNLocator(integer=True))  # epochs are whole numbers
        ax.set_ylabel("accuracy" if metric == "acc" else "loss")
        if metric == "acc":
            ax.yaxis.set_major_formatter(PercentFormatter(1.0))  # 98%, as the console and compare print it
        ax.grid(alpha=0.3)
        ax.legend()
    axes[0].set_title("loss")
    axes[1].set_title("accuracy")
    if title:
        fig.suptitle(_fit(fig, title), fontsize=TITLE_POINTS)
    fig.savefig(path, dpi=100)
    plt.close(fig)


def plot_confusion_matrix(matrix: Sequence[Sequence[int]], classes: Sequence[str], path: Path, title: str = "") -> None:
    """Counts of (true class, predicted class) on the test set; the diagonal is what was right."""
    plt = _pyplot()
    n = len(classes)
    size = max(5.0, 0.5 * n + 2)
    fig, ax = plt.subplots(figsize=(size, size), constrained_layout=True)
    image = ax.imshow(matrix, cmap="Blues")
    fig.colorbar(image, ax=ax, shrink=0.8)
    labels = [str(c) for c in classes]
    long_names = max(map(len, labels)) > 2  # 'T-shirt/top' is slanted; digits stand upright
    ax.set_xticks(range(n), labels, rotation=45 if long_names else 0, ha="right" if long_names else "center", rotation_mode="anchor")
    ax.set_yticks(range(n), labels)
    ax.set_xlabel("predicted")
    ax.set_ylabel("true")
    peak = max(max(row) for row in matrix) or 1
    if n <= 20:
        for i in range(n):
            for j in range(n):
                value = matrix[i][j]
                ax.text(j, i, str(value), ha="center", va="center", fontsize=8, color="white" if value > peak / 2 else "black")
    fig.suptitle(_fit(fig, title or "test confusion matrix"), fontsize=TITLE_POINTS)  # over the matrix and its colour bar
    fig.savefig(path, dpi=100)
    plt.close(fig)


def plot_samples(images, targets: Sequence[int], predictions: Sequence[int], classes: Sequence[str], path: Path) -> None:
    """A 3x3 grid of test images titled 'true / predicted'; mistakes in red."""
    plt = _pyplot()
    fig, axes = plt.subplots(3, 3, figsize=(6, 6.6), constrained_layout=True)
    for ax, image, true, pred in zip(axes.flat, images, targets, predictions, strict=False):
        picture = image.permute(1, 2, 0).numpy()  # (C, H, W) -> (H, W, C)
        if picture.shape[2] == 1:
            ax.imshow(picture[:, :, 0], cmap="gray")
        else:
            ax.imshow(picture.clip(0, 1))
        wrong = true != pred
        ax.set_title(f"{classes[true]} / {classes[pred]}" + ("  ✗" if wrong else ""), fontsize=9, color="red" if wrong else "black")
        ax.axis("off")
    for ax in list(axes.flat)[len(targets) :]:
        ax.axis("off")
    fig.suptitle("test images: true / predicted")
    fig.savefig(path, dpi=100)
    plt.close(fig)
