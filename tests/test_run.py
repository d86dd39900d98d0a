"""End to end: the real `dlrun` entry point, in-process, writing real run folders."""

from __future__ import annotations

import csv
import re
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from dlrun.config import unique_dir
from tests.helpers import QUICK, SHARED_DATA, needs_shared_data, read_summary, subprocess_env


def read_metrics(run_dir) -> list[dict]:
    with open(run_dir / "metrics.csv", newline="") as f:
        return list(csv.DictReader(f))


def test_default_run_writes_the_whole_run_folder(run_dlrun):
    run_dir = run_dlrun("trainer.epochs=3", "trainer.progress=off")
    for name in (
        ".hydra/config.yaml",
        ".hydra/overrides.yaml",
        ".hydra/hydra.yaml",
        "dlrun.log",
        "metrics.csv",
        "summary.json",
        "checkpoints/last.pt",
        "checkpoints/best.pt",
        "plots/curves.png",
        "plots/confusion_matrix.png",
        "plots/samples.png",
    ):
        assert (run_dir / name).is_file(), name
    for png in (run_dir / "plots").glob("*.png"):
        assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    rows = read_metrics(run_dir)
    assert [int(r["epoch"]) for r in rows] == [1, 2, 3]
    assert list(rows[0]) == ["epoch", "train/loss", "train/acc", "val/loss", "val/acc", "lr", "epoch_s"]
    summary = read_summary(run_dir)
    assert summary["status"] == "completed" and summary["epochs_completed"] == 3
    assert summary["final"]["val/acc"] == pytest.approx(float(rows[-1]["val/acc"]))
    assert summary["best"]["val/acc"] == pytest.approx(max(float(r["val/acc"]) for r in rows))
    assert summary["params"] == 64 * 128 + 128 + 128 * 256 + 256 + 256 * 10 + 10
    assert summary["data"] == {"name": "digits", "train": 1294, "val": 144, "test": 359, "input_shape": [1, 8, 8], "classes": 10,
                               "class_names": [str(c) for c in range(10)],
                               "transform": {"size": [8, 8], "channels": 1, "resize": "bilinear", "dtype": "float32", "divide": 1.0,
                                             "mean": None, "std": None}}  # fmt: skip
    assert summary["versions"]["torch"] == torch.__version__
    assert summary["config"]["model"]["hidden_sizes"] == [128, 256]
    # The final panel, as printed and logged, shows the accuracy that summary.json holds.
    log = (run_dir / "dlrun.log").read_text()
    shown = re.search(r"test accuracy\s+([\d.]+)%", log).group(1)
    assert shown == f"{100 * summary['test']['acc']:.2f}"
    assert len(re.findall(r"^epoch\s+\d/3 ", log, flags=re.M)) == 3
    assert str(run_dir) in log.replace("│", " ").replace("\n", "")
    # best.pt holds the weights of the best validation epoch, which the test used.
    best = torch.load(run_dir / "checkpoints" / "best.pt", weights_only=True)
    assert best["epoch"] == summary["best"]["epoch"] and best["format"] == "dlrun-checkpoint"
    last = torch.load(run_dir / "checkpoints" / "last.pt", weights_only=True)
    assert last["epoch"] == 3 and set(last) >= {"model", "optimizer", "rng"}


def test_default_run_reaches_90_percent_on_digits(run_dlrun):
    summary = read_summary(run_dlrun("trainer.progress=off", "trainer.plots=false"))
    assert summary["epochs"] == 10 and summary["test"]["acc"] >= 0.90


def test_same_seed_same_cpu_gives_identical_metrics(run_dlrun):
    a = run_dlrun(*QUICK, "seed=3", "regularization=[dropout,l1]")
    b = run_dlrun(*QUICK, "seed=3", "regularization=[dropout,l1]")
    c = run_dlrun(*QUICK, "seed=4", "regularization=[dropout,l1]")
    assert seed_determined(a) == seed_determined(b)
    assert seed_determined(a) != seed_determined(c)


def seed_determined(run_dir) -> list[dict]:
    """metrics.csv's rows as text, without epoch_s (wall-clock time)."""
    return [{k: v for k, v in row.items() if k != "epoch_s"} for row in read_metrics(run_dir)]


def test_pinned_losses_for_a_seeded_cpu_run(run_dlrun):
    """Guards the numerics of data, init, loss and optimizer together (torch 2.14 on a CPU)."""
    rows = read_metrics(run_dlrun(*QUICK, "seed=0", "device=cpu"))
    losses = [float(r["train/loss"]) for r in rows] + [float(r["val/loss"]) for r in rows]
    assert losses == pytest.approx(PINNED_LOSSES, rel=1e-4)


# train/loss for epochs 1 and 2, then val/loss for epochs 1 and 2
PINNED_LOSSES = [2.157513342832303, 1.5048249847553612, 1.8809102376302083, 1.0000383589002821]


@pytest.mark.parametrize(
    "overrides",
    [
        ("model=cnn", "optimizer=momentum", "optimizer.lr=0.05", "regularization=[l2,dropout]"),
        ("model=rnn", "model.cell=gru", "regularization=batchnorm", "optimizer=sgd"),
        ("model=mlp", "trainer.loss=mse", "optimizer=adamw", "regularization.l2=0.01", "model.activation=leaky_relu"),
    ],
)
def test_other_choices_run_end_to_end(run_dlrun, overrides):
    summary = read_summary(run_dlrun(*QUICK, *overrides, "trainer.epochs=1"))
    assert summary["status"] == "completed" and summary["test"]["acc"] > 0.2


@pytest.mark.parametrize(
    "overrides",
    [
        ("model=cnn", "model.variant=vgg", "regularization=[batchnorm,dropout]"),
        ("model=cnn", "model.variant=alexnet", "model.activation=leaky_relu"),
        ("model=resnet", "model.depth=8", "optimizer=sgd"),
        ("model=transformer", "model.tokens=rows", "optimizer.lr=0.003"),
        ("model=transformer", "model.layers=2", "optimizer.lr=0.003"),
    ],
    ids=["vgg", "alexnet", "resnet", "transformer-rows", "transformer-patches"],
)
def test_the_deeper_families_learn_the_digits(run_dlrun, overrides):
    """Batch norm's running statistics and the deeper stacks need a few epochs on 1294 images."""
    summary = read_summary(run_dlrun(*QUICK, *overrides, "trainer.epochs=3"))
    assert summary["status"] == "completed" and summary["test"]["acc"] > 0.5


def test_debug_overfit_reaches_full_train_accuracy(run_dlrun):
    run_dir = run_dlrun("debug=overfit", "trainer.progress=off", "trainer.plots=false", "trainer.checkpoints=false")
    rows = read_metrics(run_dir)
    assert len(rows) == 60 and float(rows[-1]["train/acc"]) >= 0.99


def test_debug_fast_is_one_short_epoch(run_dlrun):
    run_dir = run_dlrun("debug=fast", "trainer.progress=off", "trainer.plots=false")
    summary = read_summary(run_dir)
    assert summary["epochs_completed"] == 1
    assert summary["timing"]["samples_per_s"] > 0
    assert summary["test"]["examples"] == 359  # the final test always covers the whole test set


def test_device_threads_sets_the_cpu_threads_for_the_run_only(run_dlrun):
    before = torch.get_num_threads()
    summary = read_summary(run_dlrun(*QUICK, "device=cpu", "device.threads=1", "trainer.epochs=1"))
    assert summary["device"] == "cpu (1 thread)" and summary["config"]["device"]["threads"] == 1
    assert torch.get_num_threads() == before


def test_missing_cuda_is_an_error_not_a_fall_back(run_dlrun, capsys):
    if torch.cuda.is_available():
        pytest.skip("this machine has CUDA")
    with pytest.raises(SystemExit) as info:
        run_dlrun(*QUICK, "device=cuda")
    assert info.value.code == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("dlrun: error: device=cuda: no CUDA GPU is usable here") and "\n" not in err


def test_same_second_runs_get_their_own_folders(tmp_path):
    base = str(tmp_path / "outputs" / "2026-11-26" / "14-03-11")
    folders = [unique_dir(base) for _ in range(3)]
    assert folders == [base, base + "_1", base + "_2"]


def test_console_script_prints_plain_lines_off_a_terminal(tmp_path):
    """The installed `dlrun` command, in a fresh process and folder, as a user would start it."""
    dlrun = Path(sys.executable).with_name("dlrun")  # the console script installed beside this interpreter
    result = subprocess.run(
        [str(dlrun), "debug=fast", "trainer.plots=false"], cwd=tmp_path, capture_output=True, text=True, timeout=300, env=subprocess_env()
    )
    assert result.returncode == 0, result.stderr
    assert "\x1b[" not in result.stdout  # no colour or cursor codes when stdout is not a terminal
    assert re.search(r"^epoch 1/1 ", result.stdout, flags=re.M)
    runs = list((tmp_path / "outputs").glob("*/*"))
    assert len(runs) == 1 and read_summary(runs[0])["status"] == "completed"
    assert re.fullmatch(r"\d{4}-\d\d-\d\d/\d\d-\d\d-\d\d(_\d+)?", f"{runs[0].parent.name}/{runs[0].name}")


@needs_shared_data("MNIST")
def test_seed_mnist_reaches_the_tutorials_accuracy(run_dlrun):
    summary = read_summary(run_dlrun("experiment=seed_mnist", f"dataset.root={SHARED_DATA}", "trainer.progress=off"))
    assert summary["data"]["train"] == 60000 and summary["epochs_completed"] == 16
    assert 0.955 <= summary["test"]["acc"] <= 0.99


def test_python_dash_m_is_the_same_command(tmp_path):
    result = subprocess.run([sys.executable, "-m", "dlrun", "--help"], cwd=tmp_path, capture_output=True, text=True, timeout=120)
    assert result.returncode == 0 and "dlrun compare" in result.stdout and "seed_mnist" in result.stdout
