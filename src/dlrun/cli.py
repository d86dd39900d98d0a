"""The `dlrun` command: subcommands first, everything else is Hydra's.

`dlrun compare ...` is an ordinary argparse CLI, dispatched before Hydra sees argv. Any other
command line is a Hydra app: overrides, -m sweeps, --cfg, --info, shell completion and launcher
plugins all work as Hydra documents them. Nothing heavy is imported here, so `dlrun --help` and
`dlrun --cfg job` stay fast; torch is imported when a run starts.

Errors a user can fix are reported as one line (`dlrun: error: ...`, exit code 2); Hydra's own
composition errors keep Hydra's message; a traceback is shown only with HYDRA_FULL_ERROR=1.
"""

from __future__ import annotations

import atexit
import importlib
import math
import os
import re
import sys
import traceback
from pathlib import Path
from typing import NoReturn

# name -> "module:function" taking the remaining argv and returning an exit code
SUBCOMMANDS: dict[str, str] = {
    "compare": "dlrun.analysis.compare:main",
    "eval": "dlrun.training.eval_command:main",
    "predict": "dlrun.training.predict_command:main",
}

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


def error_message(err: Exception) -> str:
    """What the user sees for an error raised outside a run: Hydra's own message for composition
    errors (it lists the valid choices), one line for anything else (an override that does not
    parse, too)."""
    from hydra.errors import CompactHydraException, OverrideParseException
    from omegaconf.errors import OmegaConfBaseException

    from dlrun.errors import DlrunError
    from dlrun.typos import explain

    cause = err.__cause__
    if isinstance(err, OverrideParseException):  # the override and the parser's reason on one line, without the grammar link
        lines = [line.strip() for line in str(err).splitlines() if line.strip() and not line.startswith("See https://")]
        return "dlrun: error: " + ": ".join(lines)
    if isinstance(err, CompactHydraException):
        text = str(err) + (f"\n{cause}" if isinstance(cause, OmegaConfBaseException) else "")
        plain = explain(text)  # a misspelt group, key or option, with what was most likely meant
        return f"dlrun: error: {plain}" if plain else text
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
        if int(os.environ.get("WORLD_SIZE", "1")) > 1 and "RANK" in os.environ:  # started by torchrun: one run, one folder
            from dlrun.training import distributed

            argv = distributed.join(argv)
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
    except BrokenPipeError:  # `dlrun --help | head`: the reader left; stop quietly, and let the exit flush go nowhere
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 0
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


def version_line() -> str:
    """dlrun's version and those of the libraries that decide what a run computes (read from their
    metadata, so torch is not imported)."""
    from importlib.metadata import PackageNotFoundError, version

    from dlrun import __version__

    def of(package: str) -> str:
        try:
            return version(package)
        except PackageNotFoundError:
            return "not installed"

    return f"dlrun {__version__} (torch {of('torch')}, hydra-core {of('hydra-core')}, Python {sys.version.split()[0]})"


def complete_subcommand(argv: list[str]) -> bool:
    """Shell completion of subcommands; True when it answered and Hydra must not see the line.

    Hydra's completion script runs `dlrun -sc query=bash` (or query=fish, query=zsh) with the
    command line in $COMP_LINE, and Hydra would read `compare ...` as overrides and print a parse
    error into the terminal. Here the first word also completes to a subcommand's name (Hydra then
    adds its own choices), and a subcommand's arguments complete from its argparse parser: flags,
    a flag's choices, and nothing for paths, so that bash completes file names itself (fish gets
    the names listed). Any failure completes nothing, silently.
    """
    query = next((a[len("query=") :] for a in argv if a.startswith("query=")), None)
    if query is None or not {"-sc", "--shell-completion"} & set(argv) or "COMP_LINE" not in os.environ:
        return False
    line = os.environ["COMP_LINE"]
    point = os.environ.get("COMP_POINT", "")
    line = line[: int(point)] if point.isdigit() else line  # the words before the cursor
    words = line.split()
    skip = 3 if words[1:2] == ["-m"] else 2 if words and Path(words[0]).name.startswith("python") else 1
    words = words[skip:]  # the program: dlrun, python script.py, python -m dlrun
    current = "" if not words or line.endswith((" ", "\t")) else words.pop()
    if not words:  # the first word: a subcommand's name, besides Hydra's overrides
        names = [name for name in SUBCOMMANDS if name.startswith(current)]
        if names:
            print("\n".join(names))
        return False
    if words[0] not in SUBCOMMANDS:
        return False
    try:
        module = importlib.import_module(SUBCOMMANDS[words[0]].split(":")[0])
        actions = getattr(module.parser(), "_actions", [])  # argparse lists no actions publicly
        by_flag = {flag: action for action in actions for flag in action.option_strings}
        flag = by_flag.get(words[-1]) if len(words) > 1 else None
        value = flag is not None and flag.nargs != 0  # the word is that flag's value
        if value:
            choices = [str(c) for c in flag.choices or ()]
        elif current.startswith("-"):
            choices = list(by_flag)
        else:
            choices = []
        if not choices and query == "fish" and (not value or flag.metavar == "FILE"):
            folder = os.path.dirname(current)
            choices = [os.path.join(folder, n) + ("/" if os.path.isdir(os.path.join(folder, n)) else "") for n in os.listdir(folder or ".")]
        choices = [c for c in choices if c.startswith(current)]
        if choices:
            print("\n".join(choices))
    except Exception:  # noqa: BLE001  completion must never print a traceback into the command line being typed
        pass
    return True


_quick_exit_code: int | None = None


def program() -> NoReturn:
    """`dlrun` as a program (the console script, `python -m dlrun`): main(), then the process ends
    without tearing its interpreter down.

    Freeing every module and object of torch and Hydra one by one took an eighth of a default
    run's wall time, after its last file was written (benchmarks/README.md, "Start-up"). The exit
    still runs every exit handler
    (logging's flush, multiprocessing's, a logger's) and waits for every thread as Python does;
    only the teardown after them is skipped. Called as a function (the tests), main() never exits
    this way."""
    atexit.register(_exit_now)  # registered first, so run last: after every handler registered later
    global _quick_exit_code
    try:
        code = main()
    except SystemExit as end:
        code = end.code
    if code is None or isinstance(code, int):  # a text is Python's to print
        _quick_exit_code = code or 0
    sys.exit(code)


def _exit_now() -> None:
    if _quick_exit_code is None:
        return
    for stream in (sys.stdout, sys.stderr):
        try:
            stream.flush()
        except (OSError, ValueError):  # a reader that left (`dlrun ... | head`), a closed stream
            pass
    os._exit(_quick_exit_code)


def _one_run(argv: list[str]) -> bool:
    """Whether `dlrun ARGV` trains one classifier with its pictures, as far as the command line tells
    (overrides only: no flag that prints and exits, no sweep, no trainer.plots=false, no GAN)."""
    if any(arg.startswith("-") for arg in argv) or int(os.environ.get("RANK", "0")) > 0:
        return False
    values = dict(arg.split("=", 1) for arg in argv if "=" in arg)
    return values.get("trainer.plots", "true").lower() not in ("false", "no", "off", "0") and values.get("task") != "gan"


def main(argv: list[str] | None = None) -> int:
    """The exit code of `dlrun ARGV...` (a run or sweep may also end the process with sys.exit)."""
    argv = list(sys.argv[1:] if argv is None else argv)
    if argv == ["--version"]:
        print(version_line())
        return 0
    try:
        if complete_subcommand(argv):
            return 0
        if argv and argv[0] in SUBCOMMANDS:
            module, function = SUBCOMMANDS[argv[0]].split(":")
            return getattr(importlib.import_module(module), function)(argv[1:])
        if _one_run(argv):
            from dlrun.training import plot_workers

            plot_workers.start()  # they import matplotlib while Hydra composes and torch loads here
        return run_hydra(argv)
    except KeyboardInterrupt:  # Ctrl-C before a run installed its own handler (while importing, composing)
        print("dlrun: interrupted before any run started", file=sys.stderr)
        return 130
