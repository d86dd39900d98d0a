"""How long `dlrun compare` takes on many run folders: reading them, and drawing the table.

Writes N synthetic run folders (default 1000: 10 sweeps of 100 jobs, 10 epochs each, summary.json
with the full resolved config as `dlrun` writes it; 5% of them still running, 2% failed) into a
temporary folder, then times with time.perf_counter, median of --repeats runs:

  read       find_runs: walk the tree, parse every summary.json (and metrics.csv of unfinished runs)
  table      differing keys, sort, and the rich table rendered to a string (120 columns)
  group      --group-by seed: fold and render the table of means
  csv        the csv of every run
  command    `python -m dlrun compare ROOT` in a fresh process, imports included (median of 3)

The files are freshly written, so they are in the page cache: this is the warm-cache time.

Measured on the development container (2 CPU threads shared with other work, load average 2-3;
Python 3.11.7, rich 15.0.0; n = 1000 runs, 10 epochs each; median of 5 repeats; six runs of the
script, the load made them vary):
    read 0.13-0.34 s, table 0.13-0.36 s, group 0.08-0.23 s, csv 0.06-0.18 s;
    the whole command in a fresh process 0.44-1.28 s (imports of rich and dlrun included).
Before the table was laid out by hand, rich.table.Table alone took 1.39 s for the same 1000 rows.
Rerun: `.venv/bin/python benchmarks/bench_compare.py [--runs N]`.
"""

from __future__ import annotations

import argparse
import csv
import io
import json
import random
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from rich.console import Console

from dlrun.analysis import report
from dlrun.analysis.query import differing_keys, group_runs, sort_items
from dlrun.analysis.runfolder import find_runs
from dlrun.analysis.table import print_table

CONFIG = {
    "seed": 0,
    "dataset": {
        "name": "mnist",
        "root": "data",
        "download": False,
        "val_fraction": 0.1,
        "test_fraction": 0.0,
        "normalize": False,
        "split_seed": 0,
    },
    "model": {"name": "mlp", "hidden_sizes": [128, 256], "activation": "relu", "negative_slope": 0.01},
    "optimizer": {"name": "adam", "lr": 0.001, "beta1": 0.9, "beta2": 0.999, "eps": 1e-08},
    "regularization": {"l1": 0.0, "l2": 0.0, "dropout": 0.0, "batchnorm": False},
    "device": {"name": "auto"},
    "trainer": {
        "epochs": 10,
        "batch_size": 64,
        "eval_batch_size": 1024,
        "loss": "cross_entropy",
        "shuffle": True,
        "limit_train_batches": 0,
        "limit_eval_batches": 0,
        "precision": "fp32",
        "compile": False,
        "checkpoints": True,
        "plots": True,
        "progress": "auto",
    },
}


def write_run(folder: Path, rng: random.Random, lr: float, dropout: float, seed: int, epochs: int, status: str) -> None:
    """One run folder as `dlrun` writes it: .hydra/overrides.yaml, metrics.csv, summary.json."""
    (folder / ".hydra").mkdir(parents=True)
    overrides = [f"optimizer.lr={lr}", f"regularization.dropout={dropout}", f"seed={seed}"]
    (folder / ".hydra" / "overrides.yaml").write_text("".join(f"- {o}\n" for o in overrides))
    done = epochs if status == "completed" else rng.randrange(epochs)
    rows, acc = [], 0.5
    for epoch in range(1, done + 1):
        acc = min(0.995, acc + rng.uniform(0.0, 0.1))
        rows.append({"epoch": epoch, "train/loss": 1 - acc + 0.01, "train/acc": acc - 0.01, "val/loss": 1 - acc, "val/acc": acc, "lr": lr})
    with open(folder / "metrics.csv", "w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=["epoch", "train/loss", "train/acc", "val/loss", "val/acc", "lr"], lineterminator="\n")
        writer.writeheader()
        writer.writerows(rows)
    config = json.loads(json.dumps(CONFIG))
    config["seed"], config["optimizer"]["lr"], config["regularization"]["dropout"] = seed, lr, dropout
    summary = {
        "status": status,
        "experiment": f"mlp + adam (lr {lr:g}) on mnist",
        "command": "dlrun -m ...",
        "started_at": "2026-11-26T14:00:00+00:00",
        "epochs": epochs,
        "epochs_completed": 0 if status == "running" else done,
        "seed": seed,
        "overrides": overrides,
        "config": config,
        "device": "cuda:0 (NVIDIA H100)",
        "params": 235146,
        "versions": {"python": "3.11.7", "torch": "2.5.1", "dlrun": "0.1.0"},
        "git_commit": "0" * 40,
        "data": {"name": "mnist", "train": 54000, "val": 6000, "test": 10000, "input_shape": [1, 28, 28], "classes": 10},
    }
    if status == "completed":
        best = max(rows, key=lambda r: r["val/acc"])
        summary |= {
            "final": rows[-1],
            "best": {"epoch": best["epoch"], "val/loss": best["val/loss"], "val/acc": best["val/acc"]},
            "test": {"loss": 1 - acc, "acc": acc - 0.002, "examples": 10000},
            "timing": {"wall_s": rng.uniform(30, 300), "train_s": 25.0, "eval_s": 2.0, "epoch_s_median": 2.5, "samples_per_s": 50000.0},
            "ended_at": "2026-11-26T14:05:00+00:00",
        }
    elif status == "failed":
        summary |= {"error": "RuntimeError: CUDA out of memory", "timing": {"wall_s": 5.0}}
    (folder / "summary.json").write_text(json.dumps(summary, indent=2))


def make_runs(root: Path, n: int, epochs: int) -> None:
    """n runs in sweeps of 100 jobs: lr x dropout x seed, as `dlrun -m` would lay them out."""
    rng = random.Random(0)
    grid = [(lr, p, s) for lr in (0.1, 0.03, 0.01, 0.003, 0.001) for p in (0.0, 0.1, 0.2, 0.3, 0.5) for s in range(4)]
    for i in range(n):
        lr, dropout, seed = grid[i % len(grid)]
        status = "running" if i % 20 == 7 else "failed" if i % 50 == 13 else "completed"
        write_run(root / "multirun" / "2026-11-26" / f"14-{i // 100:02d}-00" / str(i % 100), rng, lr, dropout, seed, epochs, status)


def timed(fn, repeats: int) -> tuple[float, object]:
    seconds, result = [], None
    for _ in range(repeats):
        start = time.perf_counter()
        result = fn()
        seconds.append(time.perf_counter() - start)
    return statistics.median(seconds), result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=1000, help="run folders to generate (default 1000)")
    parser.add_argument("--epochs", type=int, default=10, help="epochs per run (rows of metrics.csv)")
    parser.add_argument("--repeats", type=int, default=5, help="timed repeats; the median is reported")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        start = time.perf_counter()
        make_runs(root, args.runs, args.epochs)
        print(f"wrote {args.runs} run folders in {time.perf_counter() - start:.1f} s")

        read_s, runs = timed(lambda: find_runs([root]), args.repeats)
        assert len(runs) == args.runs, len(runs)

        def table() -> str:
            out = io.StringIO()
            keys = differing_keys(runs)
            items = sort_items(runs, "val/acc")
            print_table(Console(file=out, width=120), items, keys, metric="val/acc", sort="val/acc")
            return out.getvalue()

        def group() -> str:
            out = io.StringIO()
            groups, kept = group_runs(runs, differing_keys(runs), ["seed"])
            print_table(Console(file=out, width=120), sort_items(groups, "val/acc"), kept, metric="val/acc", sort="val/acc")
            return out.getvalue()

        def to_csv() -> str:
            out = io.StringIO()
            report.write_csv(sort_items(runs, "val/acc"), differing_keys(runs), out)
            return out.getvalue()

        table_s, text = timed(table, args.repeats)
        group_s, _ = timed(group, args.repeats)
        csv_s, _ = timed(to_csv, args.repeats)
        command = [sys.executable, "-m", "dlrun", "compare", str(root)]
        command_s, _ = timed(lambda: subprocess.run(command, capture_output=True, check=True), 3)
        print(f"n = {args.runs} runs, {args.epochs} epochs each; median of {args.repeats} (command: of 3)")
        print(
            f"read {read_s:.3f} s, table {table_s:.3f} s ({text.count(chr(10))} lines), group {group_s:.3f} s, "
            f"csv {csv_s:.3f} s; whole command in a fresh process {command_s:.2f} s"
        )


if __name__ == "__main__":
    main()
