"""The sweep summary: tables printed, sweep_summary.csv/.md and sweep_curves.png written into the sweep folder."""

from __future__ import annotations

import csv
import io
import json
import math
import statistics
import subprocess
import sys
from pathlib import Path

import pytest
from hydra.experimental.callback import Callback
from omegaconf import OmegaConf
from rich.console import Console

from dlrun.analysis.sweep import summarize_sweep
from dlrun.config import register_configs
from dlrun.hydra_callbacks import SweepSummary, sweep_folder
from tests.runfolders import SGD, make_run

PNG_MAGIC = b"\x89PNG\r\n\x1a\n"
# '++' adds the callback, or sets it again where conf/config.yaml already has it: the test passes either way.
CALLBACK = "++hydra.callbacks.sweep_summary._target_=dlrun.hydra_callbacks.SweepSummary"


def make_sweep(folder: Path, seeds: tuple[int, ...] = (0, 1)) -> Path:
    """Jobs optimizer=sgd,adam x seed=..., numbered as Hydra numbers them, with distinct val/acc."""
    job = 0
    for optimizer in ("sgd", "adam"):
        for seed in seeds:
            acc = (0.6 if optimizer == "sgd" else 0.8) + 0.05 * seed
            make_run(
                folder / str(job),
                set={"seed": seed} | ({"optimizer": SGD} if optimizer == "sgd" else {}),
                overrides=["debug=fast", f"optimizer={optimizer}", f"seed={seed}"],
                val_acc=[acc - 0.2, acc],
                test_acc=acc - 0.02,
                test_loss=1.5 - acc,
            )
            job += 1
    return folder


def summarize(folder: Path) -> tuple[dict[str, Path], str]:
    out = io.StringIO()
    paths = summarize_sweep(folder, console=Console(file=out, width=120, highlight=False))
    return paths, out.getvalue()


def read_csv(path: Path) -> list[dict[str, str]]:
    with open(path, newline="") as f:
        return list(csv.DictReader(f))


def test_summary_files_hold_every_job_best_first(tmp_path):
    sweep = make_sweep(tmp_path / "sweep")
    paths, printed = summarize(sweep)
    assert set(paths) == {"csv", "md", "png"} and all(p.parent == sweep for p in paths.values())
    rows = read_csv(sweep / "sweep_summary.csv")
    assert [r["run"] for r in rows] == ["3", "2", "1", "0"]  # adam seed 1 has the best val/acc
    assert list(rows[0])[1:3] == ["optimizer", "seed"]  # the overrides that vary; debug=fast does not
    for row in rows:
        summary = json.loads((sweep / row["run"] / "summary.json").read_text())
        assert float(row["val/acc"]) == summary["best"]["val/acc"]
        assert float(row["test/acc"]) == summary["test"]["acc"] and float(row["test/loss"]) == summary["test"]["loss"]
        assert int(row["epochs_done"]) == summary["epochs_completed"] and row["status"] == summary["status"]
        assert f"optimizer={row['optimizer']}" in summary["overrides"] and f"seed={row['seed']}" in summary["overrides"]
    assert (sweep / "sweep_curves.png").read_bytes()[:8] == PNG_MAGIC
    assert "sweep_summary.csv" in printed


def test_seeds_are_also_folded_into_mean_and_std(tmp_path):
    sweep = make_sweep(tmp_path / "sweep", seeds=(0, 1, 2))
    _, printed = summarize(sweep)
    md = (sweep / "sweep_summary.md").read_text()
    tables = [block for block in md.split("\n\n") if block.startswith("|")]
    assert len(tables) == 2
    folded = [[c.strip() for c in line.strip("|").split("|")] for line in tables[1].splitlines()]
    assert folded[0][:2] == ["optimizer", "n"] and [row[0] for row in folded[2:]] == ["adam", "sgd"]
    accs = [0.8 + 0.05 * s for s in (0, 1, 2)]
    expected = f"{100 * statistics.mean(accs):.2f} ± {100 * statistics.stdev(accs):.2f}%"
    assert expected in folded[2] and folded[2][1] == "3"
    assert "mean ± std (n) over seed" in printed and expected in printed


def test_no_seed_table_when_seeds_do_not_vary(tmp_path):
    sweep = make_sweep(tmp_path / "sweep", seeds=(0,))
    _, printed = summarize(sweep)
    md = (sweep / "sweep_summary.md").read_text()
    assert len([b for b in md.split("\n\n") if b.startswith("|")]) == 1 and "over seed" not in printed


def test_an_empty_sweep_writes_nothing(tmp_path, capsys):
    (tmp_path / "sweep").mkdir()
    assert summarize(tmp_path / "sweep")[0] == {}
    assert "no sweep summary written" in capsys.readouterr().err


def test_the_callback_reads_the_sweep_dir_from_the_config(tmp_path):
    sweep = make_sweep(tmp_path / "sweep")
    assert isinstance(SweepSummary(), Callback)
    SweepSummary().on_multirun_end(OmegaConf.create({"hydra": {"sweep": {"dir": str(sweep)}}}))
    assert len(read_csv(sweep / "sweep_summary.csv")) == 4


def test_sweep_folder_is_the_cached_unique_dir_not_a_new_one(tmp_path):
    register_configs()
    base = tmp_path / "multirun" / "14-00-00"
    config = OmegaConf.create({"hydra": {"sweep": {"dir": f"${{dlrun.unique_dir:{base}}}"}}})
    made = Path(config.hydra.sweep.dir)  # what the sweeper does first: creates the folder
    assert made == base and sweep_folder(config) == made
    assert sorted(p.name for p in base.parent.iterdir()) == ["14-00-00"]  # no 14-00-00_1


@pytest.mark.slow
def test_a_real_sweep_writes_its_summary(tmp_path):
    sweep = tmp_path / "sweep"
    done = subprocess.run(
        [
            sys.executable,
            "-m",
            "dlrun",
            "-m",
            "debug=fast",
            "optimizer=sgd,adam",
            "seed=0,1",
            "trainer.plots=false",
            "trainer.progress=off",
            "device=cpu",
            f"hydra.sweep.dir={sweep}",
            CALLBACK,
        ],
        capture_output=True,
        text=True,
        timeout=600,
        cwd=tmp_path,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    assert sorted(p.name for p in sweep.iterdir() if p.is_dir()) == ["0", "1", "2", "3"]
    rows = read_csv(sweep / "sweep_summary.csv")
    assert len(rows) == 4 and {r["run"] for r in rows} == {"0", "1", "2", "3"}
    for row in rows:
        summary = json.loads((sweep / row["run"] / "summary.json").read_text())
        assert row["status"] == summary["status"] == "completed"
        assert math.isclose(float(row["val/acc"]), summary["best"]["val/acc"])
        assert math.isclose(float(row["test/acc"]), summary["test"]["acc"])
        assert math.isclose(float(row["test/loss"]), summary["test"]["loss"])
        assert [row["optimizer"], row["seed"]] == [summary["config"]["optimizer"]["name"], str(summary["seed"])]
    val = [float(r["val/acc"]) for r in rows]
    assert val == sorted(val, reverse=True)
    assert (sweep / "sweep_curves.png").read_bytes()[:8] == PNG_MAGIC and (sweep / "sweep_summary.md").is_file()
    assert "over seed" in done.stdout and "sweep_summary.csv" in done.stdout
