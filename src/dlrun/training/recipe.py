"""One run, set up then trained: from a composed config to a finished run folder.

This is the layer that reads the DictConfig (with settings.py, which turns each node into plain
keyword arguments for data.py, models.py, optim.py, steps.py and hooks.py). `execute` builds the
engine's Loop, runs it, then tests the kept weights and writes the folder's summary and plots.
"""

from __future__ import annotations

import os
import statistics
import time
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import torch
from omegaconf import DictConfig, OmegaConf
from rich.console import Console

from dlrun.analysis.runfolder import RUN_FOLDER_FORMAT
from dlrun.checks import validate
from dlrun.errors import ConfigError, Diverged, DlrunError
from dlrun.training import plot_workers
from dlrun.training.augment import augmented, build_augment
from dlrun.training.checkpoint import restore
from dlrun.training.console import Reporter
from dlrun.training.data import Data, load_dataset
from dlrun.training.device import (
    BF16_FASTER_ON_CPU,
    choose_memory_format,
    describe,
    flush_denormals_everywhere,
    job_device,
    keep_freed_memory,
    memory_format_of,
    native_bf16,
    resolve_device,
    seed_everything,
    set_threads,
)
from dlrun.training.distributed import SINGLE, SyncedStop, World, device_for, per_rank_batch, threads_for, world
from dlrun.training.engine import Loop, LoopState
from dlrun.training.hooks import EarlyStopping, build_schedule
from dlrun.training.loggers import SweepJob, build_loggers
from dlrun.training.models import build_model, count_parameters
from dlrun.training.optim import build_optimizer
from dlrun.training.own import build_own_model, check_forward
from dlrun.training.plots import plot_confusion_matrix, plot_samples, plot_training_curves
from dlrun.training.pruning import trial_pruning
from dlrun.training.recorder import NullRecorder, RunRecorder, command_line, git_commit, versions
from dlrun.training.settings import (
    augment_kwargs,
    dataset_kwargs,
    describe_experiment,
    logger_settings,
    model_kwargs,
    model_label,
    optimizer_kwargs,
    schedule_kwargs,
)
from dlrun.training.signals import Interrupted, StopRequest, hold
from dlrun.training.steps import StepSettings, choose_step, evaluate, make_loss, num_batches


def confusion_matrix(targets: torch.Tensor, predictions: torch.Tensor, num_classes: int) -> list[list[int]]:
    counts = torch.bincount(targets * num_classes + predictions, minlength=num_classes * num_classes)
    return counts.view(num_classes, num_classes).tolist()


def sample_indices(targets: torch.Tensor, predictions: torch.Tensor, count: int = 9, mistakes: int = 3) -> list[int]:
    """Up to `mistakes` wrong predictions and the first right ones, in test-set order."""
    wrong = (targets != predictions).nonzero().flatten()[:mistakes].tolist()
    right = (targets == predictions).nonzero().flatten()[: count - len(wrong)].tolist()
    return sorted(wrong + right)


def write_plots(recorder: RunRecorder, data: Data, history: list[dict], test: dict, title: str) -> None:
    """curves.png, confusion_matrix.png and samples.png, drawn side by side by the plot helpers
    (drawn here where there are none); returns when all three are written."""
    recorder.plot_dir.mkdir(exist_ok=True)
    folder = recorder.plot_dir.resolve()  # the helpers may not share this process's working directory
    targets, predictions = test["targets"], test["predictions"]
    chosen = sample_indices(targets, predictions)
    matrix = confusion_matrix(targets, predictions, data.num_classes)
    classes = list(data.classes)
    plot_workers.draw([
        (plot_training_curves, (history, folder / "curves.png"), {"title": title}),
        (plot_confusion_matrix, (matrix, classes, folder / "confusion_matrix.png"), {"title": f"test confusion matrix: {title}"}),
        (plot_samples, (data.test.x[chosen].float().cpu().numpy(), targets[chosen].tolist(), predictions[chosen].tolist(),
                        classes, folder / "samples.png"), {}),
    ])  # fmt: skip


# ---------------------------------------------------------------------------------------------
# The whole run.


def describe_data(data: Data) -> dict[str, Any]:
    return {"name": data.name, "train": len(data.train), "val": len(data.val) if data.val else 0, "test": len(data.test),
            "input_shape": list(data.input_shape), "classes": data.num_classes, "class_names": list(data.classes),
            "transform": data.transform}  # fmt: skip


def make_model(cfg: DictConfig, input_shape: tuple[int, ...], num_classes: int, device: torch.device) -> torch.nn.Module:
    """The run's model on `device`: a built-in by name, or the user's own through `_target_` (checked
    with one forward pass before any training)."""
    if "_target_" in cfg.model:
        keys = OmegaConf.to_container(cfg.model, resolve=True)
        keys.pop("name", None)
        target = keys.pop("_target_")
        reg = cfg.regularization
        model = build_own_model(target, input_shape, num_classes, keys, dropout=reg.dropout, batchnorm=reg.batchnorm).to(device)
        check_forward(model, input_shape, num_classes, device, target)
        return model
    kwargs = model_kwargs(cfg)
    try:
        return build_model(cfg.model.name, input_shape, num_classes, **kwargs).to(device)
    except ValueError as err:  # a choice that does not fit this data, e.g. lenet5 on 8x8 digits
        raise ConfigError(str(err)) from err


def now() -> str:
    return datetime.now(timezone.utc).astimezone().isoformat(timespec="seconds")


def build_loop(cfg: DictConfig, data: Data, device: torch.device, recorder: RunRecorder, reporter: Reporter,
               stop: StopRequest | None, place: World = SINGLE) -> tuple[Loop, str]:  # fmt: skip
    """Everything the epoch loop needs, chosen once from the config; and the chosen step's name.

    Under torchrun (`place.size` > 1) each rank steps on its share of the global batch, the model
    is wrapped in DistributedDataParallel, and a stop is agreed on by every rank.
    """
    generator = seed_everything(cfg.seed)
    trainer = cfg.trainer
    model = make_model(cfg, data.input_shape, data.num_classes, device)
    family = None if "_target_" in cfg.model else cfg.model.name  # a user's own model is not measured: auto leaves it contiguous
    model = model.to(memory_format=choose_memory_format(trainer.get("memory_format", "auto"), family, device))
    optimizer = build_optimizer(cfg.optimizer.name, model, **optimizer_kwargs(cfg))
    loss_fn = make_loss(trainer.loss, data.num_classes)
    # A batch larger than its split is the whole split: buffers are sized for what a step can hold.
    batch = per_rank_batch(min(trainer.batch_size, len(data.train)), place)
    eval_batch = min(trainer.eval_batch_size, max(len(data.test), len(data.val) if data.val else 0))
    train_settings = StepSettings(batch, loss_fn, cfg.regularization.l1, trainer.limit_train_batches, trainer.shuffle,
                                  trainer.precision, trainer.grad_clip, place)  # fmt: skip
    eval_settings = StepSettings(eval_batch, loss_fn, 0.0, trainer.limit_eval_batches, False, trainer.precision)
    hooks = {}
    steps_per_epoch = num_batches(len(data.train) // place.size, batch, trainer.limit_train_batches)
    schedule = build_schedule(cfg.scheduler.name, optimizer, epochs=trainer.epochs, steps_per_epoch=steps_per_epoch, **schedule_kwargs(cfg))
    if schedule is not None:
        hooks["scheduler"] = schedule
    if trainer.early_stopping.patience > 0:
        stopping = trainer.early_stopping
        hooks["early_stopping"] = EarlyStopping(stopping.monitor, stopping.patience, stopping.min_delta)
    pruning = trial_pruning(os.environ)  # a trial of an Optuna search (hydra/sweeper=optuna) reports every epoch
    if pruning is not None:
        hooks["pruning"] = pruning
    forward = model
    if place.size > 1:
        from torch.nn.parallel import DistributedDataParallel

        forward = DistributedDataParallel(model, device_ids=[device.index] if device.type == "cuda" else None)
        stop = SyncedStop(stop, device) if stop is not None else None
    forward = torch.compile(forward) if trainer.compile else forward
    step, step_name = choose_step(model, forward, optimizer, train_settings, trainer.fast_path, reporter.warn)
    augment = build_augment(**augment_kwargs(cfg))
    if augment is not None:  # training batches only: evaluation never goes through the step
        step = augmented(step, augment, generator)
    loop = Loop(model=model, forward=forward, optimizer=optimizer, step=step, data=data, train_settings=train_settings,
                eval_settings=eval_settings, generator=generator, epochs=trainer.epochs, recorder=recorder, reporter=reporter,
                checkpoints=trainer.checkpoints, hooks=hooks, stop=stop,
                checkpoint_extra={"config": OmegaConf.to_container(cfg, resolve=True), "world_size": place.size})  # fmt: skip
    return loop, step_name


def execute(
    cfg: DictConfig,
    run_dir: Path,
    *,
    console: Console | None = None,
    overrides: list[str] | None = None,
    resume: bool = False,
    stop: StopRequest | None = None,
    sweep: SweepJob | None = None,
    job_log: str | None = None,
    gpu_slot: int | None = None,
) -> dict[str, Any]:
    """Run the experiment `cfg` into `run_dir` (continuing its last.pt when `resume`); return the
    summary also written to summary.json.

    summary.json says `running` from the start, and the final status (completed, pruned,
    diverged, failed, interrupted, or refused: a user's error found before the first step)
    whatever happens, so a run folder always describes itself.
    """
    if OmegaConf.select(cfg, "task.name") == "gan":  # the second recipe (a run saved before tasks existed classifies)
        from dlrun.training.gan import execute_gan

        return execute_gan(cfg, run_dir, console=console, overrides=overrides, resume=resume, stop=stop)
    validate(cfg)
    run_dir = Path(run_dir)
    place = world()  # under torchrun, only rank 0 writes the folder, prints and logs
    # a logger's missing package is refused here, before any change
    loggers = build_loggers(logger_settings(cfg) if place.main else {}, run_dir, sweep)
    recorder = RunRecorder(run_dir) if place.main else NullRecorder(run_dir)
    if not place.main:
        console = Console(file=open(os.devnull, "w"))  # noqa: SIM115  (lives as long as the run)
    reporter = Reporter(run_dir / "dlrun.log" if place.main else Path(os.devnull), cfg.trainer.progress, console)
    started = time.perf_counter()
    title = describe_experiment(cfg)
    summary: dict[str, Any] = {"format": RUN_FOLDER_FORMAT, "status": "running", "experiment": title, "command": command_line(),
                               "started_at": now(), "epochs": cfg.trainer.epochs, "epochs_completed": 0, "seed": cfg.seed,
                               "overrides": list(overrides or []), "config": OmegaConf.to_container(cfg, resolve=True)}  # fmt: skip
    if job_log:  # where a launcher (submitit) keeps this job's output: what to read when it failed
        summary["job_log"] = job_log
    # A resumed folder keeps its summary until its checkpoint has loaded: a refused resume changes nothing.
    touched = not resume
    if place.size > 1:
        summary["distributed"] = {"world_size": place.size, "backend": str(torch.distributed.get_backend())}
    if touched:
        if place.main:
            recorder.metrics_path.unlink(missing_ok=True)
        recorder.write_summary(summary)
    state = LoopState()
    training = False  # set once the first step may have run: an error before it is a refusal
    flush_denormals_everywhere()  # before torch starts its CPU worker threads, so that they flush too
    keep_freed_memory()
    threads_before = set_threads(threads_for(cfg.device.threads, place))
    try:
        device = device_for(resolve_device(cfg.device.name), place)
        device = job_device(device, gpu_slot, torch.cuda.device_count() if device.type == "cuda" else 0)
        if device.type == "cuda" and device.index is not None:
            torch.cuda.set_device(device)
        data = load_dataset(cfg.dataset.name, device=device, **dataset_kwargs(cfg))
        for note in data.notes:
            reporter.print(note, markup=False, soft_wrap=True)
        loop, step_name = build_loop(cfg, data, device, recorder, reporter, stop, place)
        if resume:
            loop.state = state = restore(loop, run_dir, cfg, writer=place.main)
            summary["resumed_from_epoch"] = state.epoch
            touched = True
        else:
            state = loop.state
        summary |= {"device": describe(device), "params": count_parameters(loop.model), "step": step_name,
                    "memory_format": memory_format_of(loop.model), "versions": versions(),
                    "git_commit": git_commit(), "data": describe_data(data)}  # fmt: skip
        if "pruning" in loop.hooks:
            summary["trial"] = loop.hooks["pruning"].describe()
        recorder.write_summary(summary)
        reporter.print(
            f"[bold]{title}[/]  {summary['params']:,} parameters, {len(data.train)} training images, "
            f"device {summary['device']}" + (f"; resuming after epoch {state.epoch}" if resume else ""),
            soft_wrap=True,
        )
        loop.hooks |= loggers.start(summary, reporter.warn)  # each sees the epochs' rows; a failing one is a warning
        training = True
        loop.run()
        if stop is not None:
            stop.finishing = "the test pass and plots"  # a stop asked for from here on lets the run complete
        test = evaluate(loop.model, data.test, loop.eval_settings, keep_predictions=True)
        history = state.history
        summary |= {"status": state.stop_status if state.stop_reason else "completed", "final": history[-1], "best": state.best,
                    "test": {"loss": test["loss"], "acc": test["acc"], "examples": test["examples"]}}  # fmt: skip
        if state.stop_reason:
            summary |= {"pruned_at" if state.stop_status == "pruned" else "stopped_early_at": state.epoch, "stop_reason": state.stop_reason}
        summary["timing"] = _timing(state, started)
        if cfg.trainer.plots and place.main:
            write_plots(recorder, data, history, test, title)
    except BaseException as err:
        hold(stop)  # what follows records how the run ended: a second signal must not cut it short
        summary |= how_it_ended(err, training) | {"timing": _timing(state, started)}
        raise
    finally:
        hold(stop)
        if summary["status"] == "running":  # a second signal landed before the lines above could say so
            summary |= SECOND_SIGNAL
        set_threads(threads_before)
        torch.set_flush_denormal(False)  # this thread's default again, for callers in the same process
        summary["epochs_completed"] = state.epoch
        summary["ended_at"] = now()
        if touched:
            recorder.write_final_summary(summary)  # never raises: a full disk is said on stderr, naming the stale file
        loggers.finish(summary)  # never raises: they mirror the final summary.json and the plots
        if summary["status"] == "completed":
            reporter.final_panel(summary, run_dir, hint=bf16_hint(cfg, summary))
        reporter.close()
        recorder.close()
    return summary


def bf16_hint(cfg: DictConfig, summary: dict[str, Any]) -> str | None:
    """One line for the final panel when fp32 ran on a CPU with native bf16 arithmetic, where bf16
    measured faster for the model's family (benchmarks/README.md, "Per-model speed")."""
    if cfg.trainer.precision != "fp32" or not str(summary.get("device", "")).startswith("cpu"):
        return None
    label = model_label(cfg)
    if label is None:
        return None
    speedup = BF16_FASTER_ON_CPU.get(label) or BF16_FASTER_ON_CPU.get(cfg.model.name)  # 'resnet 20' is measured as 'resnet'
    kind = native_bf16() if speedup else None
    if kind is None:
        return None
    return f"this CPU has native bf16 ({kind}): trainer.precision=bf16 trained this model ~{speedup:.1f}x faster per step (see README)"


def how_it_ended(err: BaseException, training: bool) -> dict[str, str]:
    """summary.json's status and error for a run that `err` stopped: diverged, interrupted (a signal),
    refused (a dlrun error found before the first step could run) or failed."""
    if isinstance(err, Diverged):
        status = "diverged"
    elif isinstance(err, (KeyboardInterrupt, Interrupted)):
        status = "interrupted"
    else:
        status = "refused" if isinstance(err, DlrunError) and not training else "failed"
    return {"status": status, "error": one_line(err)}


# a run's status when a second signal cut short the lines that record how it ended (StopRequest.hold)
SECOND_SIGNAL = {"status": "interrupted", "error": "stopped at once by a second signal"}


def one_line(err: BaseException) -> str:
    """An error as one line: its type and the first line of its message (dlrun's own errors and a
    divergence: the message alone, which says what happened)."""
    text = str(err).strip()
    if isinstance(err, (DlrunError, Diverged)):
        return text.splitlines()[0] if text else type(err).__name__
    return f"{type(err).__name__}: {text.splitlines()[0]}" if text else type(err).__name__


def _timing(state: LoopState, started: float) -> dict[str, float]:
    """Wall time of this process; epoch times from every epoch in metrics.csv (a resumed run's too);
    training throughput from the epochs this process trained."""
    timing = {"wall_s": time.perf_counter() - started}
    epoch_s = [row["epoch_s"] for row in state.history if "epoch_s" in row]
    if epoch_s:
        timing["epoch_s_median"] = statistics.median(epoch_s)
    if state.train_s > 0:
        timing |= {"train_s": state.train_s, "eval_s": state.eval_s, "samples_per_s": state.train_examples / state.train_s}
    return timing
