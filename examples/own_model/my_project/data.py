"""A data set drawn on the fly: small grey images of circles, squares and crosses.

`shapes` is what dlrun calls (dataset._target_ in ../conf/dataset/shapes.yaml); it returns the
train and test splits as (images, labels) tensors and the class names. `python -m my_project.data
FOLDER` draws a few more, as PNG files, for `dlrun predict`.
"""

from __future__ import annotations

import sys
from pathlib import Path

import torch

CLASSES = ["circle", "square", "cross"]


def draw(kind: int, size: int, g: torch.Generator) -> torch.Tensor:
    """One (size, size) uint8 image of CLASSES[kind], at a random place and scale, on a noisy background."""
    r = int(torch.randint(size // 5, size // 3 + 1, (), generator=g))
    cy, cx = (int(v) for v in torch.randint(r + 1, size - r - 1, (2,), generator=g))
    yy, xx = torch.meshgrid(torch.arange(size), torch.arange(size), indexing="ij")
    dy, dx = (yy - cy).abs(), (xx - cx).abs()
    if kind == 0:  # a ring
        d = ((yy - cy) ** 2 + (xx - cx) ** 2).float().sqrt()
        mask = (d - r).abs() < 1.0
    elif kind == 1:  # a square's outline
        mask = (torch.maximum(dy, dx) == r) | (torch.maximum(dy, dx) == r - 1) & (r > 2)
    else:  # a plus sign
        mask = ((dy == 0) & (dx <= r)) | ((dx == 0) & (dy <= r))
    image = torch.randint(0, 60, (size, size), generator=g) + mask * 180
    return image.clamp(0, 255).to(torch.uint8)


def shapes(n: int = 600, size: int = 16, seed: int = 0) -> dict:
    """n training and n // 4 test images (N, 1, size, size) as uint8, labels (N,), and class names."""
    g = torch.Generator().manual_seed(seed)

    def split(count: int) -> tuple[torch.Tensor, torch.Tensor]:
        labels = torch.randint(0, len(CLASSES), (count,), generator=g)
        return torch.stack([draw(int(k), size, g) for k in labels]).unsqueeze(1), labels

    return {"train": split(n), "test": split(n // 4), "classes": CLASSES}


def write_samples(folder: Path, per_class: int = 2, size: int = 16, seed: int = 1) -> None:
    from PIL import Image

    folder.mkdir(parents=True, exist_ok=True)
    g = torch.Generator().manual_seed(seed)
    for kind, name in enumerate(CLASSES):
        for i in range(per_class):
            Image.fromarray(draw(kind, size, g).numpy(), mode="L").save(folder / f"{name}_{i}.png")


if __name__ == "__main__":
    write_samples(Path(sys.argv[1] if len(sys.argv) > 1 else "samples"))
