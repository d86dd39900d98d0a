"""One run: from a composed config to a finished run folder.

This is the one layer that reads the DictConfig; it turns each node into plain keyword arguments
for data.py, models.py, optim.py and train.py, then runs `fit` and writes the folder's files.
"""

from __future__ import annotations

import statistics
import time
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import torch
from omegaconf import DictConfig, OmegaConf
from rich.console import Console

from dlrun.config import validate
from dlrun.errors import ConfigError, DlrunError, ResumeError
from dlrun.training.console import Reporter
from dlrun.training.data import Data, load_dataset
from dlrun.training.device import describe, flush_denormals_everywhere, resolve_device, seed_everything, set_threads
from dlrun.training.models import build_model, count_parameters
from dlrun.training.optim import build_optimizer
from dlrun.training.plots import plot_confusion_matrix, plot_samples, plot_training_curves
from dlrun.training.recorder import RunRecorder, command_line, git_commit, versions
from dlrun.training.resume import check_same_model, load_checkpoint, restore_metrics
from dlrun.training.signals import Interrupted, StopRequest
from dlrun.training.steps import Diverged, StepSettings, evaluate, make_loss, num_batches, train_one_epoch

# ---------------------------------------------------------------------------------------------
# Config nodes -> keyword arguments.


def model_kwargs(cfg: DictConfig) -> dict[str, Any]:
    kwargs = OmegaConf.to_container(cfg.model, resolve=True)
    kwargs.pop("name")
    return {**kwargs, "dropout": cfg.regularization.dropout, "batchnorm": cfg.regularization.batchnorm}


def optimizer_kwargs(cfg: DictConfig) -> dict[str, Any]:
    kwargs = OmegaConf.to_container(cfg.optimizer, resolve=True)
    kwargs.pop("name")
    return {**kwargs, "weight_decay": cfg.regularization.l2}


def dataset_kwargs(cfg: DictConfig) -> dict[str, Any]:
    kwargs = OmegaConf.to_container(cfg.dataset, resolve=True)
    kwargs.pop("name")
    return kwargs


def describe_experiment(cfg: DictConfig) -> str:
    """A one-line name such as 'mlp + adam (lr 0.01) on mnist, l2 + dropout'."""
    reg = cfg.regularization
    switches = {"l1": reg.l1 > 0, "l2": reg.l2 > 0, "dropout": reg.dropout > 0, "batchnorm": reg.batchnorm}
    parts = [name for name, on in switches.items() if on]
    family = cfg.model.get("variant") or cfg.model.get("cell")  # cnn.variant / rnn.cell choose inside a family
    model = f"{cfg.model.name} {family}" if family else cfg.model.name
    text = f"{model} + {cfg.optimizer.name} (lr {cfg.optimizer.lr:g}) on {cfg.dataset.name}"
    return text + (f", {' + '.join(parts)}" if parts else "")


# ---------------------------------------------------------------------------------------------
# The epoch loop.


@dataclass
class Progress:
    """Where a run stands after some epochs: restored from last.pt when a run is resumed."""

    epoch: int = 0
    history: list[dict] = field(default_factory=list)
    best: dict[str, Any] = field(default_factory=dict)
    best_state: dict[str, torch.Tensor] | None = None


def fit(
    model: torch.nn.Module,
    optimizer: torch.optim.Optimizer,
    data: Data,
    *,
    epochs: int,
    train_settings: StepSettings,
    eval_settings: StepSettings,
    generator: torch.Generator,
    recorder: RunRecorder,
    reporter: Reporter,
    checkpoints: bool,
    compile_model: bool = False,
    start: Progress | None = None,
    stop: StopRequest | None = None,
) -> dict[str, Any]:
    """Train up to `epochs`, evaluating after each; keep the best-validation weights in `model` at the end."""
    forward = torch.compile(model) if compile_model else model
    eval_split, eval_name = (data.val, "val") if data.val is not None else (data.test, "test")
    steps = num_batches(len(data.train), train_settings.batch_size, train_settings.limit_batches)
    state = start or Progress()
    timing = {"train_s": 0.0, "eval_s": 0.0, "epoch_s": [], "train_examples": 0}
    for epoch in range(state.epoch + 1, epochs + 1):
        start_time = time.perf_counter()
        with reporter.epoch_progress(epoch, epochs, steps) as progress:
            try:
                train = train_one_epoch(forward, optimizer, data.train, train_settings, generator, _stoppable(progress, stop))
            except Diverged as err:
                raise Diverged(f"epoch {epoch}: {err}") from None
        if stop is not None:
            stop.check()  # a stop asked for during the last steps: this epoch is not recorded
        scores = evaluate(forward, eval_split, eval_settings)
        seconds = time.perf_counter() - start_time
        timing["train_s"] += train["seconds"]
        timing["eval_s"] += seconds - train["seconds"]
        timing["epoch_s"].append(seconds)
        timing["train_examples"] += train["examples"]
        row = {
            "epoch": epoch,
            "train/loss": train["loss"],
            "train/acc": train["acc"],
            f"{eval_name}/loss": scores["loss"],
            f"{eval_name}/acc": scores["acc"],
            "lr": optimizer.param_groups[0]["lr"],
        }
        recorder.append_metrics(row)
        state.history.append(row)
        state.epoch = epoch
        # Without a validation split the weights are never chosen by test accuracy: the last ones win.
        is_best = eval_name == "test" or not state.best or scores["acc"] > state.best["val/acc"]
        if is_best:
            state.best = {"epoch": epoch} | ({"val/loss": scores["loss"], "val/acc": scores["acc"]} if eval_name == "val" else {})
            state.best_state = {k: v.detach().clone() for k, v in model.state_dict().items()}
        if checkpoints:
            if is_best:
                recorder.save_checkpoint("best.pt", {"epoch": epoch, "model": state.best_state, "best": state.best})
            recorder.save_checkpoint(
                "last.pt",
                {
                    "epoch": epoch,
                    "model": model.state_dict(),
                    "optimizer": optimizer.state_dict(),
                    "rng": rng_state(generator),
                    "best": state.best,
                },
            )
        reporter.epoch_line(epoch, epochs, train, scores, eval_name, seconds, best=is_best and eval_name == "val")
    if state.best_state is not None:
        model.load_state_dict(state.best_state)
    return {"history": state.history, "best": state.best, "timing": timing}


def _stoppable(progress, stop: StopRequest | None):
    """The progress callback, also the safe point where a requested stop takes effect."""
    if stop is None:
        return progress

    def report(done: int, loss: float) -> None:
        stop.check()
        if progress is not None:
            progress(done, loss)

    return report


def rng_state(generator: torch.Generator) -> dict[str, Any]:
    state = {"torch": torch.get_rng_state(), "data": generator.get_state()}
    if torch.cuda.is_available():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def restore(model: torch.nn.Module, optimizer: torch.optim.Optimizer, generator: torch.Generator, run_dir: Path) -> Progress:
    """Load last.pt (and best.pt's weights) into the run; cut metrics.csv back to the checkpoint."""
    path = run_dir / "checkpoints" / "last.pt"
    checkpoint = load_checkpoint(path)
    check_same_model(model.state_dict(), checkpoint["model"], path)
    model.load_state_dict(checkpoint["model"])
    optimizer.load_state_dict(checkpoint["optimizer"])
    torch.set_rng_state(checkpoint["rng"]["torch"])
    generator.set_state(checkpoint["rng"]["data"])
    if "cuda" in checkpoint["rng"] and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(checkpoint["rng"]["cuda"])
    best_path = run_dir / "checkpoints" / "best.pt"
    best_state = load_checkpoint(best_path)["model"] if best_path.is_file() else None
    if best_state is not None:
        best_state = {k: v.to(next(iter(model.state_dict().values())).device) for k, v in best_state.items()}
    return Progress(
        epoch=checkpoint["epoch"], history=restore_metrics(run_dir, checkpoint["epoch"]), best=checkpoint["best"], best_state=best_state
    )


def confusion_matrix(targets: torch.Tensor, predictions: torch.Tensor, num_classes: int) -> list[list[int]]:
    counts = torch.bincount(targets * num_classes + predictions, minlength=num_classes * num_classes)
    return counts.view(num_classes, num_classes).tolist()


def sample_indices(targets: torch.Tensor, predictions: torch.Tensor, count: int = 9, mistakes: int = 3) -> list[int]:
    """Up to `mistakes` wrong predictions and the first right ones, in test-set order."""
    wrong = (targets != predictions).nonzero().flatten()[:mistakes].tolist()
    right = (targets == predictions).nonzero().flatten()[: count - len(wrong)].tolist()
    return sorted(wrong + right)


def write_plots(recorder: RunRecorder, data: Data, history: list[dict], test: dict, title: str) -> None:
    recorder.plot_dir.mkdir(exist_ok=True)
    plot_training_curves(history, recorder.plot_dir / "curves.png", title=title)
    targets, predictions = test["targets"], test["predictions"]
    plot_confusion_matrix(
        confusion_matrix(targets, predictions, data.num_classes),
        data.classes,
        recorder.plot_dir / "confusion_matrix.png",
        title=f"test confusion matrix: {title}",
    )
    chosen = sample_indices(targets, predictions)
    plot_samples(
        data.test.x[chosen].float().cpu(),
        targets[chosen].tolist(),
        predictions[chosen].tolist(),
        data.classes,
        recorder.plot_dir / "samples.png",
    )


# ---------------------------------------------------------------------------------------------
# The whole run.


def now() -> str:
    return datetime.now(timezone.utc).astimezone().isoformat(timespec="seconds")


def execute(
    cfg: DictConfig,
    run_dir: Path,
    *,
    console: Console | None = None,
    overrides: list[str] | None = None,
    resume: bool = False,
    stop: StopRequest | None = None,
) -> dict[str, Any]:
    """Run the experiment `cfg` into `run_dir` (continuing its last.pt when `resume`); return the
    summary also written to summary.json.

    summary.json says `running` from the start, and the final status (completed, diverged,
    failed or interrupted) whatever happens, so a run folder always describes itself.
    """
    validate(cfg)
    run_dir = Path(run_dir)
    recorder = RunRecorder(run_dir)
    if not resume:
        recorder.metrics_path.unlink(missing_ok=True)  # a fresh run in a reused sweep folder starts a fresh file
    reporter = Reporter(run_dir / "dlrun.log", cfg.trainer.progress, console)
    started = time.perf_counter()
    title = describe_experiment(cfg)
    summary: dict[str, Any] = {
        "status": "running",
        "experiment": title,
        "command": command_line(),
        "started_at": now(),
        "epochs": cfg.trainer.epochs,
        "epochs_completed": 0,
        "seed": cfg.seed,
        "overrides": list(overrides or []),
        "config": OmegaConf.to_container(cfg, resolve=True),
    }
    # A resumed folder keeps its summary until its checkpoint has loaded: a refused resume changes nothing.
    touched = not resume
    if touched:
        recorder.write_summary(summary)
    progress = Progress()
    flush_denormals_everywhere()  # before torch starts its CPU worker threads, so that they flush too
    threads_before = set_threads(cfg.device.threads)
    try:
        device = resolve_device(cfg.device.name)
        generator = seed_everything(cfg.seed)
        data = load_dataset(cfg.dataset.name, device=device, **dataset_kwargs(cfg))
        try:
            model = build_model(cfg.model.name, data.input_shape, data.num_classes, **model_kwargs(cfg)).to(device)
        except ValueError as err:  # a choice that does not fit this data, e.g. lenet5 on 8x8 digits
            raise ConfigError(str(err)) from err
        optimizer = build_optimizer(cfg.optimizer.name, model, **optimizer_kwargs(cfg))
        if resume:
            progress = restore(model, optimizer, generator, run_dir)
            if progress.epoch > cfg.trainer.epochs:
                raise ResumeError(f"trainer.epochs={cfg.trainer.epochs} is below the {progress.epoch} epochs this run has finished")
            summary["resumed_from_epoch"] = progress.epoch
            touched = True
        summary |= {
            "device": describe(device),
            "params": count_parameters(model),
            "versions": versions(),
            "git_commit": git_commit(),
            "data": {
                "name": data.name,
                "train": len(data.train),
                "val": len(data.val) if data.val else 0,
                "test": len(data.test),
                "input_shape": list(data.input_shape),
                "classes": data.num_classes,
            },
        }
        recorder.write_summary(summary)
        reporter.print(
            f"[bold]{title}[/]  {summary['params']:,} parameters, {len(data.train)} training images, "
            f"device {summary['device']}" + (f"; resuming after epoch {progress.epoch}" if resume else ""),
            soft_wrap=True,
        )
        loss_fn = make_loss(cfg.trainer.loss, data.num_classes)
        trainer = cfg.trainer
        train_settings = StepSettings(
            trainer.batch_size, loss_fn, cfg.regularization.l1, trainer.limit_train_batches, trainer.shuffle, trainer.precision
        )
        eval_settings = StepSettings(trainer.eval_batch_size, loss_fn, 0.0, trainer.limit_eval_batches, False, trainer.precision)
        result = fit(
            model,
            optimizer,
            data,
            epochs=trainer.epochs,
            train_settings=train_settings,
            eval_settings=eval_settings,
            generator=generator,
            recorder=recorder,
            reporter=reporter,
            checkpoints=trainer.checkpoints,
            compile_model=trainer.compile,
            start=progress,
            stop=stop,
        )
        test = evaluate(model, data.test, eval_settings, keep_predictions=True)
        history = result["history"]
        summary |= {
            "status": "completed",
            "final": history[-1],
            "best": result["best"],
            "test": {"loss": test["loss"], "acc": test["acc"], "examples": test["examples"]},
            "timing": _timing(result["timing"], started),
        }
        if trainer.plots:
            write_plots(recorder, data, history, test, title)
    except Diverged as err:
        summary |= {"status": "diverged", "error": str(err), "timing": _timing(None, started)}
        raise
    except BaseException as err:
        interrupted = isinstance(err, (KeyboardInterrupt, Interrupted))
        summary |= {"status": "interrupted" if interrupted else "failed", "error": one_line(err), "timing": _timing(None, started)}
        raise
    finally:
        set_threads(threads_before)
        torch.set_flush_denormal(False)  # this thread's default again, for callers in the same process
        summary["epochs_completed"] = progress.epoch
        summary["ended_at"] = now()
        if touched:
            recorder.write_summary(summary)
        if summary["status"] == "completed":
            reporter.final_panel(summary, run_dir)
        reporter.close()
    return summary


def one_line(err: BaseException) -> str:
    """An error as one line: its type and the first line of its message."""
    text = str(err).strip()
    if isinstance(err, DlrunError):
        return text.splitlines()[0] if text else type(err).__name__
    return f"{type(err).__name__}: {text.splitlines()[0]}" if text else type(err).__name__


def _timing(timing: dict | None, started: float) -> dict[str, float]:
    wall = time.perf_counter() - started
    if not timing or not timing["epoch_s"]:
        return {"wall_s": wall}
    return {
        "wall_s": wall,
        "train_s": timing["train_s"],
        "eval_s": timing["eval_s"],
        "epoch_s_median": statistics.median(timing["epoch_s"]),
        "samples_per_s": timing["train_examples"] / timing["train_s"] if timing["train_s"] else 0.0,
    }
