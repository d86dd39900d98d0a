"""The pictures of a run: learning curves, the test confusion matrix, and sample predictions.

matplotlib is imported inside each function, and only its Figure and Agg canvas (not pyplot,
slower to import, for a global state this module never uses): no display is needed. Titles
are wrapped to the figure's width, so that a long experiment name is never cut. A classification
run's three pictures take plain lists and numpy arrays, never tensors: they are drawn in helper
processes that do not import torch (dlrun.training.plot_workers).
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

from dlrun.analysis.curves import text_width, wrap_to_width

TITLE_POINTS = 12


def _figure(**kwargs):
    """A matplotlib Figure (keyword arguments as Figure's) with constrained layout, drawn by Agg."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    fig = Figure(layout="constrained", **kwargs)
    FigureCanvasAgg(fig)
    return fig


def _fit(fig, title: str) -> str:
    """`title` wrapped to the figure's width."""
    return wrap_to_width(title, 0.95 * fig.bbox.width, text_width(TITLE_POINTS, fig.canvas.get_renderer()))


def plot_training_curves(rows: Sequence[dict], path: Path, title: str = "") -> None:
    """Loss and accuracy per epoch, train against val (or test when there is no val split); and,
    when the learning rate changed during the run, a small panel of the lr each epoch started with."""
    from matplotlib.ticker import MaxNLocator, PercentFormatter

    epochs = [int(r["epoch"]) for r in rows]
    rates = [float(r["lr"]) for r in rows if "lr" in r]
    scheduled = len(set(rates)) > 1
    if scheduled:
        fig = _figure(figsize=(13, 4))
        axes = fig.subplots(1, 3, width_ratios=[1, 1, 0.6])
        lr_ax = axes[2]
        lr_ax.plot(epochs, rates, "-o", markersize=3, color="tab:purple")
        lr_ax.set_yscale("log" if max(rates) / max(min(rates), 1e-300) > 50 else "linear")
        lr_ax.set_title("learning rate")
        lr_ax.set_xlabel("epoch")
        lr_ax.xaxis.set_major_locator(MaxNLocator(integer=True))
        lr_ax.grid(alpha=0.3)
    else:
        fig = _figure(figsize=(10, 4))
        axes = fig.subplots(1, 2)
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


def plot_confusion_matrix(matrix: Sequence[Sequence[int]], classes: Sequence[str], path: Path, title: str = "") -> None:
    """Counts of (true class, predicted class) on the test set; the diagonal is what was right."""
    n = len(classes)
    size = max(5.0, 0.5 * n + 2)
    fig = _figure(figsize=(size, size))
    ax = fig.subplots()
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


def plot_samples(images, targets: Sequence[int], predictions: Sequence[int], classes: Sequence[str], path: Path) -> None:
    """A 3x3 grid of test images (a numpy array, N x C x H x W) titled 'true / predicted'; mistakes in red."""
    fig = _figure(figsize=(6, 6.6))
    axes = fig.subplots(3, 3)
    for ax, image, true, pred in zip(axes.flat, images, targets, predictions, strict=False):
        picture = image.transpose(1, 2, 0)  # (C, H, W) -> (H, W, C)
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


# ---------------------------------------------------------------------------------------------
# task=gan: sample grids, their progression over the epochs, and the two networks' losses.

GRID_PADDING = 2  # pixels between the images of a grid (torchvision's default)


def save_image_grid(images, path: Path) -> None:
    """Images (N, C, H, W) in [0, 1] as one PNG: a square grid, pixel for pixel (no resampling)."""
    import math

    from torchvision.utils import save_image

    save_image(images.clamp(0, 1), path, nrow=math.ceil(math.sqrt(len(images))), padding=GRID_PADDING)


def save_progression(grids: Sequence[Path], path: Path, image_height: int, rows: int = 10) -> None:
    """The first row of up to `rows` of the epochs' grids (first and last always), one under the
    other, labelled with the epoch: what the same noise became as training went on. The grids also
    go into an animation beside it (`path` with .gif)."""
    import re

    from PIL import Image

    if not grids:
        return
    count = min(rows, len(grids))
    picks = sorted({round(i * (len(grids) - 1) / max(1, count - 1)) for i in range(count)})  # evenly spread, first and last
    strip = image_height + 2 * GRID_PADDING  # the grid's top row of images with the padding around it
    fig = _figure(figsize=(8, 0.9 * len(picks) + 0.4))
    axes = fig.subplots(len(picks), 1, squeeze=False)
    for ax, i in zip(axes[:, 0], picks, strict=True):
        with Image.open(grids[i]) as image:
            ax.imshow(image.convert("RGB").crop((0, 0, image.width, strip)), interpolation="nearest")
        epoch = re.search(r"(\d+)", grids[i].stem)
        ax.set_ylabel(f"epoch {int(epoch.group(1))}" if epoch else grids[i].stem, rotation=0, ha="right", va="center")
        ax.set_xticks([])
        ax.set_yticks([])
    fig.suptitle("the same noise, epoch by epoch")
    fig.savefig(path, dpi=100)
    frames = [Image.open(p).convert("RGB") for p in grids]
    frames[0].save(path.with_suffix(".gif"), save_all=True, append_images=frames[1:], duration=400, loop=0)
    for frame in frames:
        frame.close()


def plot_gan_losses(rows: Sequence[dict], path: Path, title: str = "") -> None:
    """The generator's and the discriminator's loss per epoch, and the discriminator's mean
    probability of 'real' for real and for generated images."""
    from matplotlib.ticker import MaxNLocator

    epochs = [int(r["epoch"]) for r in rows]
    fig = _figure(figsize=(10, 4))
    axes = fig.subplots(1, 2)
    for ax, keys, label in ((axes[0], ("gen/loss", "disc/loss"), "loss"), (axes[1], ("disc/real", "disc/fake"), "mean D(image)")):
        for key, style in zip(keys, ("-o", "-s"), strict=True):
            ax.plot(epochs, [float(r[key]) for r in rows], style, markersize=3, label=key)
        ax.set_xlabel("epoch")
        ax.xaxis.set_major_locator(MaxNLocator(integer=True))
        ax.set_ylabel(label)
        ax.grid(alpha=0.3)
        ax.legend()
    axes[0].set_title("losses")
    axes[1].set_title("discriminator's probability of 'real'")
    if title:
        fig.suptitle(title)
    fig.savefig(path, dpi=100)
