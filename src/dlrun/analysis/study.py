"""An Optuna study beside its sweep: where it is stored, how it is opened, and its end-of-search summary.

A search (`dlrun -m hydra/sweeper=optuna ...`) keeps its study in `<sweep dir>/optuna.db` unless
`hydra.sweeper.storage` names another. Three processes open it: the sweeper (asks for trials and
tells their results), each trial's job (reports an objective per epoch and asks whether to stop),
and the sweep summary (best trial, optimization_results.yaml and the plots). Optuna is imported
inside the functions: it is an optional extra, and `dlrun compare` never needs it.
"""

from __future__ import annotations

import functools
import os
import sqlite3
import sys
import warnings
from pathlib import Path
from typing import Any

from dlrun.analysis.report import human, printable
from dlrun.analysis.table import table_console
from dlrun.errors import ConfigError

DEFAULT_STUDY = "dlrun"  # the study's name in the sweep folder's own optuna.db
SQLITE_BUSY_S = 120  # seconds a writer waits for another's lock before "database is locked"
OBJECTIVES = {"val/acc": "maximize", "val/loss": "minimize"}  # what a search may optimize, and which way
INSTALL_HINT = "pip install 'dlrun[optuna]' (or pip install 'optuna>=4')"

# The study's user attributes, set by the sweeper.
OBJECTIVE_ATTR = "objective"  # val/acc | val/loss: what each epoch reports to the pruner, and a trial's value
PRUNER_ATTR = "dlrun.pruner"  # {"name": ..., and pruning.build_pruner's keyword arguments}: rebuilt in each trial's job
LAUNCHED_ATTR = "dlrun.launched"  # the trial numbers the latest search command launched


def require_optuna(what: str) -> Any:
    """The optuna module, or a ConfigError saying how to install it."""
    try:
        import optuna
    except ImportError:
        raise ConfigError(f"{what} needs Optuna, which is not installed: {INSTALL_HINT}") from None
    return optuna


def study_location(storage: str | None, study_name: str | None, sweep_dir: Path) -> tuple[str, str]:
    """(storage URL, study name) of a search: by default `sqlite:///<sweep dir>/optuna.db` and study
    `dlrun`. A storage of one's own needs a study name: a shared database holds many studies.

    File paths become absolute, so that jobs started elsewhere (joblib workers, Slurm) find the same file.
    """
    if not storage:
        return f"sqlite:///{(Path(sweep_dir) / 'optuna.db').resolve()}", study_name or DEFAULT_STUDY
    if not study_name:
        raise ConfigError(f"hydra.sweeper.storage={storage} needs a hydra.sweeper.study_name: a study is found by its name there")
    for scheme in ("sqlite:///", "journal:"):
        if storage.startswith(scheme) and storage[len(scheme) :] not in ("", ":memory:"):
            return scheme + str(Path(storage[len(scheme) :]).expanduser().resolve()), study_name
    return storage, study_name


def open_storage(url: str) -> Any:
    """The Optuna storage at `url`, opened once per process.

    - `sqlite:///FILE`: SQLite in WAL mode with a long busy timeout, so parallel trials on one
      machine wait for each other's writes instead of failing with "database is locked". Not on
      a network filesystem: SQLite's locks are not safe there.
    - `journal:FILE`: Optuna's journal file storage, for a filesystem shared between machines.
    - anything else (`postgresql://...`, `mysql://...`): a database server, through Optuna's RDBStorage.
    """
    return _open_storage(url, os.getpid())  # keyed by process: a forked child opens its own connections


@functools.cache
def _open_storage(url: str, pid: int) -> Any:
    optuna = require_optuna("an Optuna study")
    if url.startswith("journal:"):
        from optuna.storages.journal import JournalFileBackend, JournalStorage

        return JournalStorage(JournalFileBackend(url[len("journal:") :]))
    engine_kwargs: dict[str, Any] = {}
    if url.startswith("sqlite:///") and url[len("sqlite:///") :] not in ("", ":memory:"):
        path = Path(url[len("sqlite:///") :])
        if not path.parent.is_dir():
            raise ConfigError(f"storage {url}: the folder {path.parent} does not exist")
        with sqlite3.connect(path, timeout=SQLITE_BUSY_S) as db:  # WAL is kept in the file: set once, it stays
            db.execute("PRAGMA journal_mode=WAL")
        engine_kwargs = {"connect_args": {"timeout": SQLITE_BUSY_S}}
    try:
        return optuna.storages.RDBStorage(url, engine_kwargs=engine_kwargs)
    except Exception as err:  # noqa: BLE001  a bad URL, a missing driver, an unreachable server: one line
        text = str(err).strip().splitlines()[0] if str(err).strip() else type(err).__name__
        raise ConfigError(f"storage {url} cannot be opened: {text}") from err


# ---------------------------------------------------------------------------------------------
# The end of a search.

PLOTS = {
    "history": "optimization_history.png",
    "importances": "param_importances.png",
    "parallel": "parallel_coordinate.png",
}
MIN_TRIALS_FOR_IMPORTANCES = 4  # completed trials; fewer say nothing about which parameter matters


def summarize_study(sweep_dir: Path | str, storage: str, study_name: str, console: Any = None) -> dict[str, Path]:
    """Print the best trial and write optimization_results.yaml and the plots into `sweep_dir`; return their paths."""
    import yaml

    optuna = require_optuna("the search's summary")
    sweep_dir = Path(sweep_dir)
    say = (console or table_console()).print
    study = optuna.load_study(study_name=study_name, storage=open_storage(storage))
    trials = study.get_trials(deepcopy=False)
    objective = study.user_attrs.get(OBJECTIVE_ATTR, "val/acc")
    states = {state.name.lower(): sum(t.state == state for t in trials) for state in optuna.trial.TrialState}
    counts = {name: n for name, n in states.items() if n}
    results: dict[str, Any] = {
        "name": "dlrun-optuna",
        "study": study_name,
        "storage": storage,
        "objective": objective,
        "direction": study.direction.name.lower(),
        "trials": counts,
    }
    completed = [t for t in trials if t.state == optuna.trial.TrialState.COMPLETE]
    paths = {"results": sweep_dir / "optimization_results.yaml"}
    if completed:
        best = study.best_trial
        folder = best.user_attrs.get("folder") or str(sweep_dir / str(best.number))
        results["best"] = {"number": best.number, "value": best.value, "params": dict(best.params), "folder": folder}
        params = "  ".join(f"{name}={_param(value)}" for name, value in best.params.items())
        say(printable(f"best trial {best.number}: {objective} {human(objective, best.value)}  {params}"), markup=False, soft_wrap=True)
        say(printable(f"  its run folder: {folder}"), markup=False, soft_wrap=True)
    else:
        say(f"no trial of study {study_name!r} completed: there is no best trial yet", markup=False)
    tally = ", ".join(f"{n} {name}" for name, n in counts.items())
    say(printable(f"study {study_name!r} ({storage}): {len(trials)} trials: {tally}"), markup=False, soft_wrap=True)
    paths["results"].write_text(yaml.safe_dump(results, sort_keys=False), encoding="utf-8")
    notes: list[str] = []
    if completed:
        paths.update(_plot_study(optuna, study, sweep_dir, objective, len(completed), notes))
    for note in notes:
        print(printable(note), file=sys.stderr)
    say(printable(f"search summary: {', '.join(str(p.name) for p in paths.values())} in {sweep_dir}"), markup=False, soft_wrap=True)
    return paths


def launched_folders(storage: str, study_name: str) -> set[Path]:
    """The run folders of the trials the latest search command launched (resolved paths)."""
    optuna = require_optuna("the search's summary")
    study = optuna.load_study(study_name=study_name, storage=open_storage(storage))
    numbers = set(study.user_attrs.get(LAUNCHED_ATTR) or [])
    folders = [t.user_attrs.get("folder") for t in study.get_trials(deepcopy=False) if t.number in numbers]
    return {Path(folder).resolve() for folder in folders if folder}


def _param(value: Any) -> str:
    return f"{value:.4g}" if isinstance(value, float) else str(value)


def _plot_study(optuna: Any, study: Any, sweep_dir: Path, objective: str, completed: int, notes: list[str]) -> dict[str, Path]:
    """optimization_history.png, param_importances.png (>= 2 parameters and enough trials) and
    parallel_coordinate.png (>= 2 trials), drawn by optuna.visualization.matplotlib; a plot that
    cannot be drawn is a note."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from optuna.visualization import matplotlib as draw

    params = {name for t in study.get_trials(deepcopy=False) for name in t.params}
    plots = {"history": draw.plot_optimization_history}
    if completed >= 2:  # one trial has no ranges to draw
        plots["parallel"] = draw.plot_parallel_coordinate
    if len(params) >= 2 and completed >= MIN_TRIALS_FOR_IMPORTANCES:
        plots["importances"] = draw.plot_param_importances
    with matplotlib.rc_context():  # optuna's plots switch matplotlib to its style: the process's own comes back after
        return _draw(optuna, plt, study, {key: plots[key] for key in PLOTS if key in plots}, sweep_dir, objective, notes)


def _draw(optuna: Any, plt: Any, study: Any, plots: dict[str, Any], sweep_dir: Path, objective: str, notes: list[str]) -> dict[str, Path]:
    written = {}
    for key, plot in plots.items():
        path = sweep_dir / PLOTS[key]
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
                axes = plot(study, target_name=objective)
            figure = _figure(axes)
            figure.savefig(path, dpi=110, bbox_inches="tight")
            plt.close(figure)
            written[key] = path
        except Exception as err:  # noqa: BLE001  a plot is a bonus: its failure must not hide the search's results
            notes.append(f"{path.name} not drawn: {type(err).__name__}: {str(err).strip().splitlines()[0] if str(err).strip() else ''}")
            plt.close("all")
    return written


def _figure(axes: Any) -> Any:
    """The figure of what an optuna plot returned: an Axes, or an array of them."""
    if hasattr(axes, "figure"):
        return axes.figure
    first = axes.flat[0] if hasattr(axes, "flat") else axes[0]
    return first.figure
