"""The `dlrun` command: subcommands first, everything else is Hydra's.

`dlrun compare ...` is an ordinary argparse CLI, dispatched before Hydra sees argv. Any other
command line is a Hydra app: overrides, -m sweeps, --cfg, --info, shell completion and launcher
plugins all work as Hydra documents them. Nothing heavy is imported here, so `dlrun --help` and
`dlrun --cfg job` stay fast; torch is imported when a run starts.

Errors a user can fix are reported as one line (`dlrun: error: ...`, exit code 2); Hydra's own
composition errors keep Hydra's message; a traceback is shown only with HYDRA_FULL_ERROR=1.
"""

from __future__ import annotations

import importlib
import math
import os
import sys
import traceback
from pathlib import Path

# name -> "module:function" taking the remaining argv and returning an exit code
SUBCOMMANDS: dict[str, str] = {"compare": "dlrun.analysis.compare:main"}

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

    from dlrun.training.signals import Interrupted, stop_on_signals

    hydra_cfg = HydraConfig.get()
    run_dir = Path(hydra_cfg.runtime.output_dir)
    in_sweep = hydra_cfg.mode == RunMode.MULTIRUN
    overrides = list(hydra_cfg.overrides.task)
    try:
        with stop_on_signals(process_ends_after_a_stop=True) as stop:
            summary = _run(cfg, run_dir, overrides, stop)
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
        _record_failure(run_dir, err, cfg, overrides)
        if in_sweep:
            return math.nan
        sys.exit(code)


def objective(summary: dict, key: str = "val/acc") -> float:
    """Best val/acc (key val/loss: the validation loss of that epoch, whose weights the run keeps), or
    the last test/acc (test/loss) where there is no validation split; NaN unless completed.

    A trial of an Optuna search is scored by its study's objective (summary.json's `trial`)."""
    if summary.get("status") != "completed":
        return math.nan
    best, test = summary.get("best") or {}, summary.get("test") or {}
    value = best.get(key, test.get(key.split("/")[-1]))
    return float(value) if isinstance(value, (int, float)) else math.nan


def _run(cfg, run_dir: Path, overrides: list[str], stop) -> dict:
    from dlrun.config import validate
    from dlrun.training.resume import plan_resume

    validate(cfg)  # before importing torch: a bad value is reported in a fraction of a second
    plan = plan_resume(cfg, run_dir, overrides)
    if plan.kept is not None:  # a finished run is never changed
        return plan.kept
    from dlrun.training.recipe import execute

    return execute(plan.cfg, plan.folder or run_dir, overrides=plan.overrides, resume=plan.folder is not None, stop=stop)


def _describe_failure(err: Exception, run_dir: Path) -> tuple[int, str]:
    from dlrun.errors import Diverged, DlrunError

    if isinstance(err, DlrunError):
        return EXIT_USAGE, f"dlrun: error: {err}"
    if isinstance(err, Diverged):
        return EXIT_FAILED, f"dlrun: diverged: {err}; try a lower optimizer.lr (run folder: {run_dir})"
    text = str(err).strip().splitlines()[0] if str(err).strip() else ""
    return EXIT_FAILED, f"dlrun: failed: {type(err).__name__}: {text} (run folder: {run_dir}; DLRUN_TRACEBACK=1 shows the traceback)"


def _record_failure(run_dir: Path, err: Exception, cfg, overrides: list[str]) -> None:
    """A job that failed before its run started (a bad value, say) still leaves a summary.json."""
    from omegaconf import OmegaConf

    from dlrun.analysis.runfolder import RUN_FOLDER_FORMAT
    from dlrun.errors import DiskFull, RunInUse
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
        write_json(path, {"format": RUN_FOLDER_FORMAT, "status": "failed", "error": error, "epochs": epochs, "epochs_completed": 0,
                          "overrides": overrides, "config": config})  # fmt: skip
    except (DiskFull, OSError) as write_err:
        print(f"dlrun: could not write {path} ({write_err})", file=sys.stderr)


def error_message(err: Exception) -> str:
    """What the user sees for an error raised outside a run: Hydra's own message for composition
    errors (it lists the valid choices), one line for anything else (an override that does not
    parse, too)."""
    from hydra.errors import CompactHydraException, OverrideParseException
    from omegaconf.errors import OmegaConfBaseException

    from dlrun.errors import DlrunError

    cause = err.__cause__
    if isinstance(err, OverrideParseException):  # the override and the parser's reason on one line, without the grammar link
        lines = [line.strip() for line in str(err).splitlines() if line.strip() and not line.startswith("See https://")]
        return "dlrun: error: " + ": ".join(lines)
    if isinstance(err, CompactHydraException):
        return str(err) + (f"\n{cause}" if isinstance(cause, OmegaConfBaseException) else "")
    if isinstance(cause, (DlrunError, OSError)):
        err = cause
    if isinstance(err, OSError):
        return f"dlrun: error: cannot create the run folder: {err}"
    text = str(err).strip()
    if isinstance(err, OmegaConfBaseException) and " raised while resolving interpolation: " in text:
        text = text.split(" raised while resolving interpolation: ", 1)[1]  # a dlrun resolver's own message
    return f"dlrun: error: {text.splitlines()[0] if text else type(err).__name__}"


def check_run_dir(argv: list[str]) -> None:
    """`resume=X` continues X in its own folder: refuse another hydra.run.dir before Hydra creates it."""
    from dlrun.errors import ConfigError

    given = dict(arg.split("=", 1) for arg in argv if arg.startswith(("resume=", "hydra.run.dir=")))
    resume, run_dir = given.get("resume", ""), given.get("hydra.run.dir")
    if resume in ("", "auto") or run_dir is None:
        return
    if not Path(resume).expanduser().is_dir():
        raise ConfigError(f"resume={resume}: no such run folder")
    if Path(run_dir).expanduser().resolve() != Path(resume).expanduser().resolve():
        raise ConfigError(f"resume={resume} continues that run in its own folder; drop hydra.run.dir={run_dir}")


def run_hydra(argv: list[str]) -> int:
    import hydra

    from dlrun.errors import DlrunError

    try:
        check_run_dir(argv)
    except DlrunError as err:
        print(f"dlrun: error: {err}", file=sys.stderr)
        return EXIT_USAGE

    from dlrun.config import config_dir, register_configs

    register_configs()
    show_traceback = os.environ.get("HYDRA_FULL_ERROR") == "1"
    saved_argv, saved_env = sys.argv, os.environ.get("HYDRA_FULL_ERROR")
    sys.argv = ["dlrun", *argv]
    os.environ["HYDRA_FULL_ERROR"] = "1"  # let errors outside the task reach this function, which reports them
    try:
        hydra.main(config_path=str(config_dir()), config_name="config", version_base="1.3")(task)()
    except Exception as err:
        if show_traceback:
            raise
        print(error_message(err), file=sys.stderr)
        return EXIT_USAGE
    finally:
        sys.argv = saved_argv
        if saved_env is None:
            os.environ.pop("HYDRA_FULL_ERROR", None)
        else:
            os.environ["HYDRA_FULL_ERROR"] = saved_env
    return 0


def main(argv: list[str] | None = None) -> int:
    """The exit code of `dlrun ARGV...` (a run or sweep may also end the process with sys.exit)."""
    argv = list(sys.argv[1:] if argv is None else argv)
    try:
        if argv and argv[0] in SUBCOMMANDS:
            module, function = SUBCOMMANDS[argv[0]].split(":")
            return getattr(importlib.import_module(module), function)(argv[1:])
        return run_hydra(argv)
    except KeyboardInterrupt:  # Ctrl-C before a run installed its own handler (while importing, composing)
        print("dlrun: interrupted before any run started", file=sys.stderr)
        return 130
