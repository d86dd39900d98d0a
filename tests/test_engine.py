"""The epoch loop and what plugs into it, from the command line: schedules, early stopping,
gradient clipping, epoch times, and the fast path's guard."""

from __future__ import annotations

import csv
import math

import pytest
import torch

import dlrun.training.mlp_step
import dlrun.training.optim
from dlrun.cli import main
from dlrun.training.device import seed_everything
from dlrun.training.models import build_model
from tests.helpers import QUICK, read_summary

LR = 0.001  # adam's default
DIGITS_STEPS = 21  # ceil(1294 training images / batch 64)


def rows(run_dir) -> list[dict[str, float]]:
    with open(run_dir / "metrics.csv", newline="") as f:
        return [{k: float(v) for k, v in row.items()} for row in csv.DictReader(f)]


def column(run_dir, key: str) -> list[float]:
    return [row[key] for row in rows(run_dir)]


def seed_determined(run_dir) -> list[dict[str, float]]:
    """metrics.csv without the one column that is wall-clock time."""
    return [{k: v for k, v in row.items() if k != "epoch_s"} for row in rows(run_dir)]


def test_step_schedule_multiplies_by_gamma_every_step_size_epochs(run_dlrun):
    run = run_dlrun(*QUICK, "trainer.epochs=4", "scheduler=step", "scheduler.step_size=2", "scheduler.gamma=0.5")
    assert column(run, "lr") == pytest.approx([LR, LR, LR / 2, LR / 2], rel=1e-12)


def test_cosine_warms_up_linearly_then_anneals(run_dlrun):
    run = run_dlrun(*QUICK, "trainer.epochs=4", "scheduler=cosine", "scheduler.warmup_epochs=1")
    expected = [LR / 2] + [LR * (1 + math.cos(math.pi * j / 3)) / 2 for j in range(3)]
    assert column(run, "lr") == pytest.approx(expected, rel=1e-9)


def test_onecycle_steps_after_every_batch(run_dlrun):
    run = run_dlrun(*QUICK, "trainer.epochs=4", "scheduler=onecycle", "optimizer.lr=0.05")
    total = 4 * DIGITS_STEPS
    peak_step = 0.3 * total - 1

    def one_cycle(k: int) -> float:  # torch's OneCycleLR, cosine annealing, as its documentation gives it
        start, end, pct = (
            (0.05 / 25, 0.05, k / peak_step) if k <= peak_step else (0.05, 0.05 / 25 / 1e4, (k - peak_step) / (total - 1 - peak_step))
        )
        return end + (start - end) / 2 * (1 + math.cos(math.pi * pct))

    assert column(run, "lr") == pytest.approx([one_cycle(e * DIGITS_STEPS) for e in range(4)], rel=1e-9)


def test_plateau_lowers_the_lr_when_val_loss_stalls(run_dlrun):
    run = run_dlrun(*QUICK, "trainer.epochs=6", "optimizer.lr=0.05", "scheduler=plateau", "scheduler.factor=0.5", "scheduler.patience=0")
    expected, lr, best = [], 0.05, math.inf
    for loss in column(run, "val/loss"):
        expected.append(lr)
        if loss < best * (1 - 1e-4):  # torch's default threshold: a relative improvement of 1e-4
            best = loss
        else:
            lr /= 2
    assert column(run, "lr") == pytest.approx(expected, rel=1e-12)
    assert len(set(expected)) > 1  # the schedule acted


@pytest.mark.parametrize(
    "schedule", [("scheduler=cosine", "scheduler.warmup_epochs=1"), ("scheduler=onecycle",), ("scheduler=step", "scheduler.step_size=1")]
)
def test_a_scheduled_run_resumed_after_an_interrupt_equals_an_uninterrupted_one(run_dlrun, interrupt_at_epoch, tmp_path, schedule):
    whole = run_dlrun(*QUICK, "trainer.epochs=4", *schedule)
    part = tmp_path / "part"
    interrupt_at_epoch(3)
    with pytest.raises(SystemExit) as stopped:
        run_dlrun(*QUICK, "trainer.epochs=4", *schedule, run_dir=part)
    assert stopped.value.code == 130
    assert read_summary(part)["status"] == "interrupted" and len(rows(part)) == 2
    interrupt_at_epoch(None)
    run_dlrun(f"resume={part}", run_dir=part)
    assert seed_determined(part) == seed_determined(whole)
    assert read_summary(part)["test"] == read_summary(whole)["test"]


def test_a_run_shaped_by_its_epochs_keeps_them_on_resume(run_dlrun, interrupt_at_epoch, tmp_path, capsys):
    part = tmp_path / "part"
    interrupt_at_epoch(2)
    with pytest.raises(SystemExit):
        run_dlrun(*QUICK, "trainer.epochs=3", "scheduler=cosine", run_dir=part)
    interrupt_at_epoch(None)
    capsys.readouterr()
    with pytest.raises(SystemExit) as refused:
        run_dlrun(f"resume={part}", "trainer.epochs=5", run_dir=part)
    assert refused.value.code == 2
    assert "scheduler=cosine was shaped for trainer.epochs=3" in capsys.readouterr().err
    assert read_summary(part)["status"] == "interrupted"


def test_early_stopping_stops_when_val_acc_has_not_improved(run_dlrun):
    run = run_dlrun(*QUICK, "trainer.epochs=40", "optimizer=sgd", "optimizer.lr=0.002", "trainer.early_stopping.patience=2")
    accs = column(run, "val/acc")
    best, waited, stop = -1.0, 0, None
    for epoch, acc in enumerate(accs, start=1):
        best, waited = (acc, 0) if acc > best else (best, waited + 1)
        if waited >= 2:
            stop = epoch
            break
    summary = read_summary(run)
    assert stop is not None and stop == len(accs) < 40
    assert summary["status"] == "completed" and summary["stopped_early_at"] == stop and summary["epochs_completed"] == stop
    assert "early stopping: val/acc has not improved for 2 epochs" in (run / "dlrun.log").read_text()


def test_early_stopping_needs_a_validation_split(run_dlrun, capsys):
    with pytest.raises(SystemExit) as refused:
        run_dlrun(*QUICK, "dataset.val_fraction=0", "trainer.early_stopping.patience=3")
    assert refused.value.code == 2
    err = capsys.readouterr().err
    assert "trainer.early_stopping.patience=3 needs a validation split" in err and "\n" not in err.strip()


@pytest.mark.slow
def test_a_resumed_sweep_keeps_an_early_stopped_job(tmp_path):
    sweep = ["-m", *QUICK, "trainer.epochs=40", "optimizer=sgd", "optimizer.lr=0.002", "trainer.early_stopping.patience=2",
             "seed=0", "resume=auto", f"hydra.sweep.dir={tmp_path}"]  # fmt: skip
    assert main(sweep) == 0
    job = tmp_path / "0"
    assert read_summary(job)["stopped_early_at"] < 40
    before = {p: p.stat().st_mtime_ns for p in job.rglob("*") if p.is_file()}
    assert main(sweep) == 0
    assert before == {p: p.stat().st_mtime_ns for p in job.rglob("*") if p.is_file()}


def test_gradient_clipping_bounds_each_update(run_dlrun):
    clip, lr = 1e-3, 0.1
    run = run_dlrun(*QUICK, "trainer.epochs=1", "trainer.limit_train_batches=1", "optimizer=sgd", f"optimizer.lr={lr}",
                    f"trainer.grad_clip={clip}", "trainer.checkpoints=true")  # fmt: skip
    seed_everything(0)
    initial = build_model("mlp", (1, 8, 8), 10).state_dict()
    trained = torch.load(run / "checkpoints" / "last.pt", weights_only=True)["model"]
    moved = torch.sqrt(sum(((trained[k] - initial[k]) ** 2).sum() for k in initial))
    assert 0 < moved <= lr * clip * (1 + 1e-3)  # float32 sums
    assert rows(run)[0]["grad_norm"] > clip  # the norm before clipping, which clipping brought down


def test_clipping_is_the_same_on_the_fast_and_the_plain_path(run_dlrun):
    fast = run_dlrun(*QUICK, "trainer.grad_clip=0.5")
    plain = run_dlrun(*QUICK, "trainer.grad_clip=0.5", "trainer.fast_path=off")
    assert seed_determined(fast) == seed_determined(plain)
    assert "grad_norm" in rows(fast)[0]


@pytest.mark.parametrize("extra", [(), ("model=cnn", "optimizer=momentum"), ("optimizer=adamw", "regularization=l2")])
def test_fast_path_off_gives_the_same_metrics(run_dlrun, extra):
    fast = run_dlrun(*QUICK, *extra)
    plain = run_dlrun(*QUICK, *extra, "trainer.fast_path=off")
    assert seed_determined(fast) == seed_determined(plain)
    assert read_summary(plain)["step"] == "autograd + optimizer.step()"
    assert read_summary(fast)["step"] != read_summary(plain)["step"]


def test_the_default_run_takes_the_fast_path(run_dlrun):
    assert read_summary(run_dlrun(*QUICK))["step"] == "mlp by hand + fused kernel"


def test_a_torch_without_the_private_kernels_still_trains(run_dlrun, monkeypatch):
    reference = run_dlrun(*QUICK)
    monkeypatch.setattr(dlrun.training.optim, "_KERNELS", dict.fromkeys(dlrun.training.optim._KERNELS))
    monkeypatch.setattr(dlrun.training.mlp_step, "_KERNELS", None)
    run = run_dlrun(*QUICK)
    assert seed_determined(run) == seed_determined(reference)
    assert read_summary(run)["step"] == "autograd + optimizer.step()"
    log = (run / "dlrun.log").read_text()
    assert log.count("warning: fast optimizer step off: torch ") == 1 and "lacks torch._fused_adam_" in log
    assert "warning: the hand-written MLP step is off" in log


def test_a_kernel_with_another_signature_falls_back_once(run_dlrun, monkeypatch):
    reference = run_dlrun(*QUICK, "model=cnn")

    def changed(*args, **kwargs):
        raise TypeError("_fused_adam_() got an unexpected keyword argument 'amsgrad'")

    monkeypatch.setitem(dlrun.training.optim._KERNELS, "_fused_adam_", changed)
    run = run_dlrun(*QUICK, "model=cnn")
    assert seed_determined(run) == seed_determined(reference)
    assert (run / "dlrun.log").read_text().count("fast optimizer step off: torch._fused_adam_ failed (TypeError") == 1


def test_epoch_seconds_are_in_metrics_csv(run_dlrun):
    run = run_dlrun(*QUICK)
    seconds = column(run, "epoch_s")
    assert len(seconds) == 2 and all(s > 0 for s in seconds)
    assert read_summary(run)["timing"]["epoch_s_median"] == pytest.approx(sum(seconds) / 2)  # the median of two
