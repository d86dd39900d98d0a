"""`dlrun predict RUN FILES...`: a finished run's model on image files or a batch of arrays.

Every image (png, jpg, ...; any size, colour or grey) is converted exactly as the run's data was,
from the transform recorded in its summary.json (`data.transform`): resized as image_folder resizes
(images.read_image), given the run's channels, scaled to [0, 1], and standardized with the run's
own mean and std where it had them. A .npz or .pt file is a batch: its `x` is scaled as the run's
training arrays were (uint8 divided by 255, floats as they are). Nothing is written anywhere;
torch is imported only once the command runs, never for --help.
"""

from __future__ import annotations

import argparse
import csv
import json
import sys
from pathlib import Path
from typing import Any

BATCH_SUFFIXES = (".npz", ".pt")

EPILOG = """\
examples:
  dlrun predict outputs/2026-11-26/14-03-11 img1.png img2.jpg digits/*.png
  dlrun predict outputs/2026-11-26/14-03-11 photos/ --format csv > predictions.csv
  dlrun predict outputs/2026-11-26/14-03-11 batch.npz --format json --top 5

A folder stands for the images in it (recursively). A .npz or .pt file holds a batch x (N, ...) of
arrays like the run's training data; its rows are named FILE[i].
"""


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="dlrun predict",
        description="Classify image files (or a .npz/.pt batch) with a finished run's model.",
        epilog=EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("run", metavar="RUN", help="the run folder, e.g. outputs/2026-11-26/14-03-11")
    p.add_argument("files", nargs="+", metavar="FILE", help="image files (png, jpg, ...), folders of them, or .npz/.pt batches")
    p.add_argument("--checkpoint", choices=("best", "last"), default="best", help="best.pt (default) or last.pt")
    p.add_argument("--format", choices=("table", "csv", "json"), default="table", help="how to print (default: table)")
    p.add_argument("--top", type=int, default=3, metavar="K", help="the K most likely classes to show (default: 3)")
    p.add_argument("--device", choices=("auto", "cpu", "cuda", "mps"), help="where to run the model (default: the run's device.name)")
    return p


def main(argv: list[str]) -> int:
    args = parser().parse_intermixed_args(argv)
    from dlrun.errors import DlrunError

    if args.top < 1:
        print("dlrun: error: --top must be >= 1", file=sys.stderr)
        return 2
    try:
        rows = predict(args)
    except DlrunError as err:
        print(f"dlrun: error: {err}", file=sys.stderr)
        return 2
    show(rows, args.format)
    return 0


def expand(files: list[str]) -> list[Path]:
    """The files as given, each folder replaced by the image files in it."""
    from dlrun.errors import DataError
    from dlrun.training.images import image_files

    paths = []
    for name in files:
        path = Path(name).expanduser()
        if path.is_dir():
            found = image_files(path)
            if not found:
                raise DataError(f"{name} holds no image files")
            paths += found
        elif not path.is_file():
            raise DataError(f"{name}: no such file")
        else:
            paths.append(path)
    return paths


def inputs(paths: list[Path], transform: dict[str, Any], input_shape: tuple[int, ...]):
    """(names, raw examples (N, C, H, W) as uint8 or float, CPU) of every file, converted as the run's data was."""
    import torch

    from dlrun.errors import DataError
    from dlrun.training.images import read_image
    from dlrun.training.owndata import as_images, as_tensor, read_tensor_file

    names, batches = [], []
    for path in paths:
        if path.suffix in BATCH_SUFFIXES:
            arrays = read_tensor_file(path, None)
            if "x" not in arrays:
                raise DataError(f"{path} holds no x (it holds: {', '.join(map(str, arrays)) or 'nothing'}); save the images as x")
            x = as_images(as_tensor(arrays["x"], f"{path} (x)"), f"{path} (x)")
            if tuple(x.shape[1:]) != input_shape:
                shape = " x ".join(map(str, x.shape[1:]))
                raise DataError(f"{path} holds {shape} examples; the run's model takes {' x '.join(map(str, input_shape))}")
            names += [f"{path}[{i}]" for i in range(len(x))]
            batches.append(x.float().div_(255.0) if x.dtype == torch.uint8 else x.float())
            continue
        try:
            pixels = read_image(path, tuple(transform["size"]), transform["channels"])
        except (OSError, ValueError, SyntaxError) as err:
            raise DataError(f"{path} is not a readable image ({str(err).strip() or type(err).__name__})") from err
        names.append(str(path))
        batches.append(pixels.unsqueeze(0).float().div_(255.0))  # uint8 pixels into [0, 1], as data.py scales them
    return names, torch.cat(batches)


def predict(args: argparse.Namespace) -> list[dict[str, Any]]:
    import contextlib

    import torch

    from dlrun.errors import DlrunError
    from dlrun.training.device import resolve_device
    from dlrun.training.finished_run import open_run

    run = open_run(args.run)
    transform = run.transform
    if transform is None:
        raise DlrunError(f"{run.folder}'s summary.json records no data.transform (the run predates it); predict will not guess it")
    paths = expand(args.files)
    names, x = inputs(paths, transform, run.input_shape)
    device = resolve_device(args.device or run.cfg.device.name)
    from dlrun.training.finished_run import load_model

    model, _ = load_model(run, args.checkpoint, device)
    x = x.to(device)
    if transform.get("mean") is not None:  # the run's own per-channel statistics, as data.py applied them
        mean, std = (torch.tensor(v, dtype=torch.float32, device=device).view(1, -1, 1, 1) for v in (transform["mean"], transform["std"]))
        x.sub_(mean).div_(std)
    bf16 = run.cfg.trainer.get("precision") == "bf16"
    batch = run.cfg.trainer.get("eval_batch_size", 1024)
    chunks = []
    with torch.no_grad(), torch.autocast(device.type, dtype=torch.bfloat16) if bf16 else contextlib.nullcontext():
        for start in range(0, len(x), batch):
            chunks.append(model(x[start : start + batch]).float().softmax(dim=1).cpu())
    probabilities = torch.cat(chunks)
    k = min(args.top, probabilities.shape[1])
    top_p, top_i = probabilities.topk(k, dim=1)
    classes = run.class_names
    return [{"file": name, "class": classes[int(i[0])], "index": int(i[0]), "probability": float(p[0]),
             "top": [{"class": classes[int(c)], "index": int(c), "probability": float(q)} for q, c in zip(p, i, strict=True)]}
            for name, p, i in zip(names, top_p, top_i, strict=True)]  # fmt: skip


def show(rows: list[dict[str, Any]], form: str) -> None:
    if form == "json":
        print(json.dumps(rows, indent=2))
        return
    k = len(rows[0]["top"]) if rows else 0
    if form == "csv":
        writer = csv.writer(sys.stdout, lineterminator="\n")
        writer.writerow(["file", "class", "probability", *(f"{part}_{n}" for n in range(2, k + 1) for part in ("class", "probability"))])
        for row in rows:
            rest = [v for t in row["top"][1:] for v in (t["class"], f"{t['probability']:.6f}")]
            writer.writerow([row["file"], row["class"], f"{row['probability']:.6f}", *rest])
        return
    from rich.console import Console
    from rich.markup import escape
    from rich.table import Table

    table = Table()
    for name, justify in (("file", "left"), ("class", "left"), ("probability", "right"), (f"top {k}", "left")):
        table.add_column(name, justify=justify, overflow="fold")
    for row in rows:
        top = ", ".join(f"{escape(t['class'])} {100 * t['probability']:.1f}%" for t in row["top"])
        table.add_row(escape(row["file"]), escape(row["class"]), f"{100 * row['probability']:.2f}%", top)
    Console(highlight=False).print(table)
