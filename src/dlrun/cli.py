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
import contextlib
import importlib
import inspect
import os
import sys
import warnings
from pathlib import Path
from typing import NoReturn

from dlrun.job import EXIT_USAGE, task

# name -> "module:function" taking the remaining argv and returning an exit code
SUBCOMMANDS: dict[str, str] = {
    "compare": "dlrun.analysis.compare:main",
    "eval": "dlrun.training.eval_command:main",
    "predict": "dlrun.training.predict_command:main",
}


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
        with mode_probe_skipped(argv):
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


def mode_known(argv: list[str]) -> bool:
    """Whether the command line alone tells Hydra's run mode: overrides only (no flag such as -m,
    --config-dir or --cfg), and none of hydra.mode or hydra.searchpath (which could bring a config
    that sets it). dlrun's own configs never set hydra.mode (test_speed_paths composes each one
    that could), so such a command runs once, as Hydra would decide after composing."""
    keys = [arg.split("=", 1)[0].lstrip("+~") for arg in argv]
    return not any(arg.startswith("-") for arg in argv) and not {"hydra.mode", "hydra.searchpath"} & set(keys)


@contextlib.contextmanager
def mode_probe_skipped(argv: list[str]):
    """Spare Hydra its first composition of the whole config, made only to read hydra.mode
    (Hydra.get_mode; what it costs: benchmarks/README.md, "One composition instead of two"),
    where `mode_known(argv)`. The probe answers None, as it does for a config that leaves the mode
    unset, and Hydra goes on exactly as then: one run, with hydra.mode=RUN. Where this Hydra has
    no such method, it composes twice, with one warning."""
    hydra_class = _hydra_with_mode_probe() if mode_known(argv) else None
    if hydra_class is None:
        yield
        return
    probe = hydra_class.get_mode
    hydra_class.get_mode = lambda self, config_name, overrides: None
    try:
        yield
    finally:
        hydra_class.get_mode = probe


def _hydra_with_mode_probe() -> type | None:
    try:
        from hydra._internal.hydra import Hydra

        params = list(inspect.signature(Hydra.get_mode).parameters)
    except (ImportError, AttributeError, TypeError, ValueError):
        params = []
    if params == ["self", "config_name", "overrides"]:
        return Hydra
    warnings.warn("this hydra-core has no Hydra.get_mode(config_name, overrides): each run composes its config twice", stacklevel=2)
    return None


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
