"""Parameters and epoch time of every model family on real Fashion-MNIST (or MNIST), one short run each.

    .venv/bin/python benchmarks/bench_families.py --root ../shared/data [--batches 50] [--threads 1]

Each family runs the real command line in this process (`dlrun model=... dataset=fashion_mnist
trainer.epochs=1 trainer.limit_train_batches=N device.threads=T`), with its default settings
(batch 64, Adam, fp32). An epoch of N batches is timed as dlrun times it: training seconds (the
steps only) and the validation pass (6000 images). The full epoch is projected as 54000 training
images at the measured training speed plus the measured validation pass. The machine's load
average is recorded before and after, since a shared CPU's speed drifts. Results go to
results/families-<host>.json and a markdown table to stdout.
"""

from __future__ import annotations

import argparse
import contextlib
import io
import json
import os
import platform
import socket
import tempfile
from pathlib import Path

FAMILIES = [
    ("mlp", ["model=mlp"]),
    ("cnn simple", ["model=cnn"]),
    ("cnn lenet5", ["model=cnn", "model.variant=lenet5"]),
    ("cnn vgg", ["model=cnn", "model.variant=vgg"]),
    ("cnn alexnet", ["model=cnn", "model.variant=alexnet"]),
    ("rnn lstm", ["model=rnn"]),
    ("resnet 20", ["model=resnet"]),
    ("transformer patches", ["model=transformer"]),
    ("transformer rows", ["model=transformer", "model.tokens=rows"]),
]
TRAIN_IMAGES = 54000  # Fashion-MNIST's 60000 less the default 10% validation split


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--root", default="../shared/data", help="folder holding FashionMNIST/raw (or MNIST/raw)")
    p.add_argument("--dataset", default="fashion_mnist", choices=("fashion_mnist", "mnist"))
    p.add_argument("--batches", type=int, default=50, help="training batches of 64 timed per family")
    p.add_argument("--threads", type=int, default=1, help="torch CPU threads (device.threads)")
    p.add_argument("--out", help="JSON file (default: benchmarks/results/families-<host>.json)")
    args = p.parse_args()

    from dlrun.cli import main as dlrun

    results = {"host": socket.gethostname(), "python": platform.python_version(), "load_before": os.getloadavg()[0],
               "batches": args.batches, "threads": args.threads, "dataset": args.dataset, "families": []}  # fmt: skip
    print("| family | command | parameters | training images/s | validation pass (6000 images) | projected epoch |")
    print("|---|---|---:|---:|---:|---:|")
    with tempfile.TemporaryDirectory() as tmp:
        for i, (name, overrides) in enumerate(FAMILIES):
            run_dir = Path(tmp) / str(i)
            with contextlib.redirect_stdout(io.StringIO()):
                code = dlrun([*overrides, f"dataset={args.dataset}", f"dataset.root={args.root}", "trainer.epochs=1",
                              f"trainer.limit_train_batches={args.batches}", f"device.threads={args.threads}", "trainer.progress=off",
                              "trainer.plots=false", "trainer.checkpoints=false", f"hydra.run.dir={run_dir}"])  # fmt: skip
            if code:
                raise SystemExit(f"{name}: dlrun exited with {code}")
            summary = json.loads((run_dir / "summary.json").read_text())
            timing = summary["timing"]
            epoch = TRAIN_IMAGES / timing["samples_per_s"] + timing["eval_s"]
            row = {"family": name, "overrides": overrides, "params": summary["params"], "samples_per_s": timing["samples_per_s"],
                   "eval_s": timing["eval_s"], "projected_epoch_s": epoch, "torch": summary["versions"]["torch"]}  # fmt: skip
            results["families"].append(row)
            command = "dlrun " + " ".join(overrides)
            speed, evaluation = f"{row['samples_per_s']:,.0f}", f"{row['eval_s']:.1f} s"
            cells = [name, f"`{command}`", f"{row['params']:,}", speed, evaluation, f"{epoch:,.0f} s"]
            print("| " + " | ".join(cells) + " |", flush=True)
    results["load_after"] = os.getloadavg()[0]
    print(f"\n{args.batches} batches of 64 per family, {args.threads} thread(s); load average {results['load_before']:.1f} before, "
          f"{results['load_after']:.1f} after")  # fmt: skip
    out = Path(args.out or Path(__file__).parent / "results" / f"families-{results['host']}.json")
    out.write_text(json.dumps(results, indent=2) + "\n")


if __name__ == "__main__":
    main()
