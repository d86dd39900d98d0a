"""Synthetic run folders that follow docs/run-folder.md, for testing what reads them.

`make_run(folder, set={"optimizer.lr": 0.01}, val_acc=[0.5, 0.7])` writes summary.json,
metrics.csv and .hydra/{config,overrides}.yaml the way `dlrun` does, with the metrics chosen by
the test, in milliseconds and without torch.
"""

from __future__ import annotations

import copy
import csv
import json
from pathlib import Path
from typing import Any

import yaml

BASE_CONFIG: dict[str, Any] = {
    "seed": 0,
    "dataset": {"name": "digits", "val_fraction": 0.1, "test_fraction": 0.2},
    "model": {"name": "mlp", "hidden_sizes": [128, 256], "activation": "relu"},
    "optimizer": {"name": "adam", "lr": 0.001, "beta1": 0.9, "beta2": 0.999},
    "regularization": {"l1": 0.0, "l2": 0.0, "dropout": 0.0, "batchnorm": False},
    "device": {"name": "cpu"},
    "trainer": {"epochs": 3, "batch_size": 64},
}
SGD = {"name": "sgd", "lr": 0.1}


def make_config(changes: dict[str, Any] | None = None) -> dict[str, Any]:
    """BASE_CONFIG with dotted keys replaced: {"optimizer.lr": 0.01} or a whole node {"optimizer": SGD}."""
    config = copy.deepcopy(BASE_CONFIG)
    for key, value in (changes or {}).items():
        *parents, leaf = key.split(".")
        node = config
        for parent in parents:
            node = node.setdefault(parent, {})
        node[leaf] = copy.deepcopy(value)
    return config


def metric_rows(val_acc: list[float], validation: bool = True) -> list[dict[str, float]]:
    """One metrics.csv row per epoch; val/loss = 1 - val/acc, train/loss = 1 / epoch."""
    split = "val" if validation else "test"
    return [
        {"epoch": i + 1, "train/loss": 1.0 / (i + 1), "train/acc": acc - 0.05, f"{split}/loss": 1.0 - acc, f"{split}/acc": acc, "lr": 0.001}
        for i, acc in enumerate(val_acc)
    ]


def make_run(
    folder: Path,
    *,
    set: dict[str, Any] | None = None,
    status: str = "completed",
    val_acc: list[float] | None = None,
    epochs: int | None = None,
    test_acc: float = 0.8,
    test_loss: float = 0.5,
    wall_s: float = 12.5,
    overrides: list[str] | None = None,
    validation: bool = True,
    summary: bool = True,
    config_in_summary: bool = True,
) -> Path:
    """Write a run folder; return it. `val_acc` is the per-epoch curve (default three rising epochs)."""
    folder = Path(folder)
    (folder / ".hydra").mkdir(parents=True, exist_ok=True)
    config = make_config(set)
    if epochs is not None:
        config["trainer"]["epochs"] = epochs
    val_acc = [0.5, 0.6, 0.7] if val_acc is None else val_acc
    rows = metric_rows(val_acc, validation)
    if overrides is None:
        overrides = [f"{k}={v['name'] if isinstance(v, dict) else v}" for k, v in (set or {}).items()]
    with open(folder / "metrics.csv", "w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=list(rows[0]) if rows else ["epoch"], lineterminator="\n")
        writer.writeheader()
        writer.writerows([{k: repr(v) if isinstance(v, float) else v for k, v in row.items()} for row in rows])
    (folder / ".hydra" / "config.yaml").write_text(yaml.safe_dump(config))
    (folder / ".hydra" / "overrides.yaml").write_text(yaml.safe_dump(overrides))
    if not summary:
        return folder
    data: dict[str, Any] = {
        "status": status,
        "experiment": "synthetic",
        "command": "dlrun",
        "started_at": "2026-11-26T14:00:00",
        "epochs": config["trainer"]["epochs"],
        "epochs_completed": 0 if status == "running" else len(rows),
        "seed": config["seed"],
        "overrides": overrides,
        "device": "cpu",
        "params": 43914,
    }
    if config_in_summary:
        data["config"] = config
    if status == "completed":
        best_row = max(rows, key=lambda r: r["val/acc"]) if validation else rows[-1]
        best = {"epoch": best_row["epoch"]}
        if validation:
            best |= {"val/loss": best_row["val/loss"], "val/acc": best_row["val/acc"]}
        data |= {
            "final": rows[-1],
            "best": best,
            "test": {"loss": test_loss, "acc": test_acc, "examples": 359},
            "timing": {"wall_s": wall_s, "train_s": wall_s * 0.8, "eval_s": wall_s * 0.1, "epoch_s_median": 1.0, "samples_per_s": 1000.0},
        }
    elif status != "running":
        data |= {"error": f"RuntimeError: stopped ({status})", "timing": {"wall_s": wall_s}}
    if status != "running":
        data["ended_at"] = "2026-11-26T14:01:00"
    (folder / "summary.json").write_text(json.dumps(data, indent=2))
    return folder
