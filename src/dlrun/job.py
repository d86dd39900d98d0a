"""Hydra's task function: one run, or one job of a sweep, into the folder Hydra made for it.

`task` plans the run (a finished one is kept, an unfinished one resumed), starts the plot helpers,
runs the recipe under the signal handlers, and turns what happened into what Hydra and the user
see: the objective a sweeper optimizes, a job's one-line report, the exit code of a single run,
and for a job refused before it started, a summary.json that says so (or, for a single run, no
folder at all). Nothing heavy is imported at module level: torch comes with the recipe.
"""

from __future__ import annotations

import math
import os
import re
import sys
import traceback
from pathlib import Path

EXIT_USAGE = 2  # a bad value, missing data or device, a run that cannot be resumed
EXIT_FAILED = 1  # the run failed or diverged


def task(cfg) -> float:
    """Hydra's task function: one run into the folder Hydra made for it; returns the run's objective.

    The objective (best val/acc, or the last test/acc without a validation split; NaN for a run
    that did not complete) is what Hydra's sweepers optimize; the whole summary stays in the
    folder. In a sweep (-m) a failing job is recorded in its folder and reported, and the sweep
    goes on; the sweep's exit code is non-zero at the end. A single run exits with its own code.
    """
    from hydra.core.hydra_config import HydraConfig
    from hydra.types import RunMode
    from omegaconf import OmegaConf

    from dlrun.training.loggers import SweepJob
    from dlrun.training.signals import Interrupted, stop_on_signals

    hydra_cfg = HydraConfig.get()
    run_dir = Path(hydra_cfg.runtime.output_dir)
    in_sweep = hydra_cfg.mode == RunMode.MULTIRUN
    overrides = list(OmegaConf.to_container(hydra_cfg.overrides.task, resolve=False))  # as typed: seed=${x} is text here
    parallel = in_sweep and _parallel_jobs(hydra_cfg)
    sweep = SweepJob(Path(str(hydra_cfg.sweep.dir)), int(hydra_cfg.job.num)) if in_sweep else None  # loggers group a sweep's jobs
    try:
        with stop_on_signals(process_ends_after_a_stop=True) as stop:
            summary = _run(cfg, run_dir, overrides, stop, sweep, console=_silent_console() if parallel else None, job_log=_job_log(),
                           gpu_slot=hydra_cfg.job.num if parallel else None, plot_helpers=not parallel)  # fmt: skip
        if parallel:  # jobs side by side would interleave their epoch lines: one line each, the rest in dlrun.log
            print(_job_line(hydra_cfg.job.num, overrides, summary, run_dir), flush=True)
        if stop() and summary.get("status") == "completed":
            print(f"dlrun: the run had finished training when it was asked to stop; it completed ({run_dir})", file=sys.stderr)
        return objective(summary, (summary.get("trial") or {}).get("objective", "val/acc"))
    except Interrupted as err:
        print(f"dlrun: interrupted; the finished epochs are in {run_dir}; continue with: dlrun resume={run_dir}", file=sys.stderr)
        sys.exit(err.exit_code)
    except KeyboardInterrupt:
        print(f"dlrun: interrupted; the finished epochs are in {run_dir}; continue with: dlrun resume={run_dir}", file=sys.stderr)
        sys.exit(130)
    except Exception as err:  # noqa: BLE001  every failure is reported in one line, then decided below
        code, message = _describe_failure(err, run_dir)
        if os.environ.get("DLRUN_TRACEBACK") == "1":
            traceback.print_exc()
        print(message, file=sys.stderr)
        if in_sweep:
            _record_failure(run_dir, err, cfg, overrides)
            return math.nan
        if not cfg.resume:
            discard_refused(run_dir, err)
        sys.exit(code)


def _job_log() -> str | None:
    """The log file of this job where a launcher keeps one (submitit: its stdout file), for summary.json."""
    if "SUBMITIT_FOLDER" not in os.environ:
        return None
    try:
        import submitit

        return str(submitit.JobEnvironment().paths.stdout)
    except Exception:  # noqa: BLE001  a log path is a convenience: never fail a job over it
        return None


def _parallel_jobs(hydra_cfg) -> bool:
    """Whether the launcher runs several jobs at once here (joblib with n_jobs other than 1)."""
    launcher = hydra_cfg.launcher
    return "joblib" in str(launcher.get("_target_", "")).lower() and launcher.get("n_jobs", 1) != 1


def _silent_console():
    from rich.console import Console

    return Console(file=open(os.devnull, "w"), highlight=False)  # noqa: SIM115  (lives as long as the job)


def _job_line(num: int, overrides: list[str], summary: dict, run_dir: Path) -> str:
    """'job 3 (optimizer=sgd seed=1): completed, best val/acc 95.14%, test acc 94.71%, 4.1 s; run_dir'."""
    parts = [summary.get("status", "?")]
    best, test = summary.get("best") or {}, summary.get("test") or {}
    if "val/acc" in best:
        parts.append(f"best val/acc {100 * best['val/acc']:.2f}%")
    if "acc" in test:
        parts.append(f"test acc {100 * test['acc']:.2f}%")
    wall = (summary.get("timing") or {}).get("wall_s")
    if wall is not None:
        parts.append(f"{wall:.1f} s")
    return f"job {num} ({' '.join(overrides)}): {', '.join(parts)}; {run_dir}"


def objective(summary: dict, key: str = "val/acc") -> float:
    """Best val/acc (key val/loss: the validation loss of that epoch, whose weights the run keeps), or
    the last test/acc (test/loss) where there is no validation split; NaN unless completed.

    A trial of an Optuna search is scored by its study's objective (summary.json's `trial`)."""
    if summary.get("status") != "completed":
        return math.nan
    best, test = summary.get("best") or {}, summary.get("test") or {}
    value = best.get(key, test.get(key.split("/")[-1]))
    return float(value) if isinstance(value, (int, float)) else math.nan


def _run(cfg, run_dir: Path, overrides: list[str], stop, sweep=None, console=None, job_log: str | None = None,
         gpu_slot: int | None = None, plot_helpers: bool = True) -> dict:  # fmt: skip
    from omegaconf import OmegaConf

    from dlrun.checks import validate
    from dlrun.training.resume import plan_resume

    validate(cfg)  # before importing torch: a bad value is reported in a fraction of a second
    plan = plan_resume(cfg, run_dir, overrides)
    if plan.kept is not None:  # a finished run is never changed
        return plan.kept
    draws = plan.cfg.trainer.plots and OmegaConf.select(plan.cfg, "task.name") != "gan" and os.environ.get("RANK", "0") == "0"
    if draws and plot_helpers:  # jobs side by side have no core to spare
        from dlrun.training import plot_workers

        plot_workers.start()  # they import matplotlib while this process imports torch and trains
    from dlrun.training.recipe import execute

    folder = plan.folder or run_dir
    return execute(plan.cfg, folder, console=console, overrides=plan.overrides, resume=plan.folder is not None, stop=stop,
                   sweep=sweep, job_log=job_log, gpu_slot=gpu_slot)  # fmt: skip


def _describe_failure(err: Exception, run_dir: Path) -> tuple[int, str]:
    from dlrun.errors import Diverged, DlrunError

    if isinstance(err, DlrunError):
        return EXIT_USAGE, f"dlrun: error: {err}"
    if isinstance(err, Diverged):
        return EXIT_FAILED, f"dlrun: diverged: {err}; try a lower optimizer.lr (run folder: {run_dir})"
    text = str(err).strip().splitlines()[0] if str(err).strip() else ""
    return EXIT_FAILED, f"dlrun: failed: {type(err).__name__}: {text} (run folder: {run_dir}; DLRUN_TRACEBACK=1 shows the traceback)"


# What a run refused before its first step may have written into its new folder (Hydra's and dlrun's own files).
REFUSED_RUN_FILES = (".hydra/config.yaml", ".hydra/hydra.yaml", ".hydra/overrides.yaml", ".hydra", "dlrun.log", "summary.json",
                     "metrics.csv", ".dlrun-reserve", ".lock")  # fmt: skip


def discard_refused(run_dir: Path, err: Exception) -> None:
    """A single run refused before its first step (a typo, missing data) leaves no folder behind.

    Only the files such a run writes are removed, and the folder only if that leaves it empty; a
    folder whose summary.json says anything but refused (or failed at start) is left as it is.
    """
    from dlrun.analysis.runfolder import read_summary
    from dlrun.errors import DlrunError, RunFolderError, RunInUse

    if not isinstance(err, DlrunError) or isinstance(err, RunInUse) or not run_dir.is_dir():
        return
    try:
        status = read_summary(run_dir).get("status", "refused")
    except RunFolderError:
        return
    if status != "refused":
        return
    for name in REFUSED_RUN_FILES:
        path = run_dir / name
        try:
            path.rmdir() if path.is_dir() else path.unlink(missing_ok=True)
        except OSError:
            return  # something else is in there: keep it all
    try:
        run_dir.rmdir()
        if re.fullmatch(r"\d{4}-\d\d-\d\d", run_dir.parent.name) and run_dir.parent.parent.name == "outputs":
            run_dir.parent.rmdir()  # the day's folder of the default layout, if this run was its only one
            run_dir.parent.parent.rmdir()  # and outputs/ itself, if it held nothing else
    except OSError:
        pass  # the user's own files are in the folder, or the day's folder (or outputs/) holds other runs


def _record_failure(run_dir: Path, err: Exception, cfg, overrides: list[str]) -> None:
    """A sweep's job that failed before its run started (a bad value, say) still leaves a summary.json:
    `refused` for a user's error (compare hides those unless asked), else `failed`."""
    from omegaconf import OmegaConf

    from dlrun.analysis.runfolder import RUN_FOLDER_FORMAT
    from dlrun.errors import DiskFull, DlrunError, RunInUse
    from dlrun.training.recorder import write_json

    path = run_dir / "summary.json"
    if path.exists() or not run_dir.is_dir() or isinstance(err, RunInUse):
        return  # the run wrote its own, or the folder is another run's (a refused resume, another writer's)
    try:
        config = OmegaConf.to_container(cfg, resolve=True)
    except Exception:  # noqa: BLE001  a broken file or config must not hide the original error
        config = None
    epochs = config.get("trainer", {}).get("epochs") if isinstance(config, dict) else None
    error = str(err).strip().splitlines()[0] if str(err).strip() else type(err).__name__
    try:
        status = "refused" if isinstance(err, DlrunError) else "failed"
        write_json(path, {"format": RUN_FOLDER_FORMAT, "status": status, "error": error, "epochs": epochs, "epochs_completed": 0,
                          "overrides": overrides, "config": config})  # fmt: skip
    except (DiskFull, OSError) as write_err:
        print(f"dlrun: could not write {path} ({write_err})", file=sys.stderr)
