"""The search: ask the study for trials, launch them as Hydra jobs, tell it how each one ended.

Trials go in batches of n_jobs through whatever launcher is configured (in-process, joblib,
submitit). Each trial's job learns its study and number from its environment (hydra.job.env_set),
reports its objective after every epoch and stops when the pruner says so (dlrun.training.pruning);
its run folder's summary.json then says `pruned`. A job's folder number is its trial number, so a
resumed study's new trials get new folders.
"""

import math
import sys
import warnings
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import optuna
from omegaconf import OmegaConf
from optuna.distributions import BaseDistribution
from optuna.trial import TrialState

from dlrun.analysis.report import human, printable
from dlrun.analysis.runfolder import read_summary
from dlrun.analysis.study import LAUNCHED_ATTR, OBJECTIVE_ATTR, PRUNER_ATTR, open_storage, study_location
from dlrun.errors import ConfigError, DlrunError
from dlrun.training.pruning import STORAGE_ENV, STUDY_ENV, TRIAL_ENV, build_pruner

from ._space import grid, override_text, search_space

FINISHED = (TrialState.COMPLETE, TrialState.PRUNED)  # what counts toward n_trials


class Search:
    """One `dlrun -m hydra/sweeper=optuna ...` command: its settings, the sweeper's Hydra context, its study."""

    def __init__(self, sweeper: Any, settings: dict[str, Any]) -> None:
        self.sweeper = sweeper
        self.settings = settings
        self.objective: str = settings["objective"]

    def run(self, arguments: Sequence[str]) -> list[Sequence[Any]]:
        """Check everything, open (or continue) the study, run the trials it still needs; return the jobs' returns."""
        optuna.logging.set_verbosity(optuna.logging.WARNING)  # dlrun prints each trial's outcome itself
        space, fixed = search_space(arguments, self.sweeper.hydra_context.config_loader)
        if not space:
            raise ConfigError(
                "hydra/sweeper=optuna needs a search space: give at least one parameter as choice(...), range(...), "
                "interval(...) or tag(log, interval(...)), on the command line or in hydra.sweeper.params"
            )
        self.check_scores(fixed, space)
        values = grid(space) if self.settings["sampler"] == "grid" else None
        pruner = dict(self.settings["pruner"])
        pruner_obj = build_pruner(pruner.pop("name"), **pruner)

        config = self.sweeper.config
        sweep_dir = Path(str(config.hydra.sweep.dir))
        sweep_dir.mkdir(parents=True, exist_ok=True)
        OmegaConf.save(config, sweep_dir / "multirun.yaml")
        url, name = study_location(self.settings["storage"], self.settings["study_name"], sweep_dir)
        study = self.open_study(url, name, pruner_obj)

        trials = study.get_trials(deepcopy=False)
        finished = sum(t.state in FINISHED for t in trials)
        wanted = self.settings["n_trials"]
        if values is not None:
            wanted = min(wanted, math.prod(len(v) for v in values.values()))
        seed = self.settings["seed"]
        # A resumed study draws on from a new seed: the same one would repeat its first trials' draws.
        study.sampler = self.sampler(values, None if seed is None else seed + len(trials))
        ran = [t for t in trials if t.state != TrialState.WAITING]
        before = f"{len(ran)} trials before ({finished} finished); " if ran else ""
        print(
            printable(
                f"search: study {name!r} in {url}: {before}running {max(0, wanted - finished)} of n_trials={wanted} "
                f"(sampler {self.settings['sampler']}, pruner {self.settings['pruner']['name']}, {self.objective}, "
                f"{self.settings['direction']})"
            ),
            flush=True,
        )
        returns: list[Sequence[Any]] = []
        to_go = wanted - finished
        while to_go > 0:
            batch = [study.ask(space) for _ in range(min(self.settings["n_jobs"], to_go))]
            returns.append(self.run_batch(study, batch, fixed, url, name))
            to_go -= len(batch)
        if wanted - finished <= 0:
            print(f"search: the study already holds {finished} finished trials; raise hydra.sweeper.n_trials to run more")
        return returns

    def open_study(self, url: str, name: str, pruner: Any) -> Any:
        """The study `name` at `url`, created or continued: same direction and objective; the
        settings its trials' jobs read stored in it; trials a killed search left running failed."""
        study = optuna.create_study(study_name=name, storage=open_storage(url), direction=self.settings["direction"], pruner=pruner,
                                    load_if_exists=True)  # fmt: skip
        if study.direction.name.lower() != self.settings["direction"]:
            raise ConfigError(f"study {name!r} in {url} is to {study.direction.name.lower()}, not {self.settings['direction']}")
        earlier = study.user_attrs.get(OBJECTIVE_ATTR)
        if earlier not in (None, self.objective):
            raise ConfigError(f"study {name!r} in {url} optimizes {earlier}, not {self.objective}: choose another sweep dir or study_name")
        study.set_user_attr(OBJECTIVE_ATTR, self.objective)
        study.set_user_attr(PRUNER_ATTR, self.settings["pruner"])
        study.set_user_attr(LAUNCHED_ATTR, [])
        self.fail_left_running(study)
        return study

    def check_scores(self, fixed: list[str], space: dict[str, BaseDistribution]) -> None:
        """A search scores trials by a classifier's validation metric: refuse a GAN (it has none, every
        trial would fail) and a run without a validation split (tuning on the test set)."""
        sweeper = self.sweeper
        cfg = sweeper.hydra_context.config_loader.load_sweep_config(sweeper.config, list(fixed))
        tasks = getattr(space.get("task"), "choices", None) or [OmegaConf.select(cfg, "task.name")]
        if "gan" in tasks:
            raise ConfigError(
                f"the search scores each trial by its {self.objective}, which task=gan does not have (a GAN has no "
                "accuracy to validate); search a classifier, or sweep a GAN's settings as a grid with -m alone"
            )
        dist = space.get("dataset.val_fraction")
        lowest = getattr(dist, "low", None) if dist is not None else OmegaConf.select(cfg, "dataset.val_fraction")
        if dist is not None and hasattr(dist, "choices"):
            lowest = min(dist.choices)
        if lowest is not None and lowest <= 0:
            raise ConfigError(
                f"the search scores each trial by its {self.objective}, and dataset.val_fraction=0 leaves no validation split: "
                "choosing settings by test accuracy would tune on the test set; set dataset.val_fraction, e.g. 0.1"
            )

    def sampler(self, values: dict[str, list[Any]] | None, seed: int | None) -> Any:
        name = self.settings["sampler"]
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
            if name == "tpe":  # constant liar: trials asked together are steered apart while they run
                return optuna.samplers.TPESampler(seed=seed, constant_liar=self.settings["n_jobs"] > 1)
            if name == "random":
                return optuna.samplers.RandomSampler(seed=seed)
            if name == "grid":
                return optuna.samplers.GridSampler(values, seed=seed)
            if name == "qmc":
                return optuna.samplers.QMCSampler(seed=seed, warn_independent_sampling=False)
            return optuna.samplers.CmaEsSampler(seed=seed, warn_independent_sampling=False)

    def fail_left_running(self, study: Any) -> None:
        """Trials still `running` belong to a search that was killed: mark them failed (one sweeper per study).
        Waiting ones (study.enqueue_trial) stay: the next trials asked for are those."""
        for trial in study.get_trials(deepcopy=False, states=(TrialState.RUNNING,)):
            study.tell(trial.number, state=TrialState.FAIL)
            print(f"search: trial {trial.number} was left running by a search that stopped; marked failed", file=sys.stderr)

    def run_batch(self, study: Any, batch: list[Any], fixed: list[str], url: str, name: str) -> list[Any]:
        """Launch the batch's trials (job number = trial number), then tell the study each one's outcome."""
        jobs = [self.job_overrides(trial, fixed, url, name) for trial in batch]
        told: set = set()
        try:
            self.sweeper.validate_batch_is_legal(jobs)
            returns: list[Any] = []
            for start, group in consecutive(batch, jobs):
                returns.extend(self.sweeper.launcher.launch(group, initial_job_idx=start))
            for trial, ret in zip(batch, returns, strict=True):
                self.tell(study, trial, ret)
                told.add(trial.number)
            return returns
        finally:  # an interrupted or broken batch: its trials will not finish
            for trial in batch:
                if trial.number not in told:
                    study.tell(trial, state=TrialState.FAIL)
            launched = study.user_attrs.get(LAUNCHED_ATTR) or []
            study.set_user_attr(LAUNCHED_ATTR, [*launched, *(trial.number for trial in batch)])

    def job_overrides(self, trial: Any, fixed: list[str], url: str, name: str) -> list[str]:
        env = {TRIAL_ENV: str(trial.number), STUDY_ENV: name, STORAGE_ENV: url}
        drawn = [override_text(key, value) for key, value in trial.params.items()]
        return [*fixed, *drawn, *(f"++hydra.job.env_set.{key}={quote(value)}" for key, value in env.items())]

    def tell(self, study: Any, trial: Any, ret: Any) -> None:
        folder = job_folder(ret)
        state, value, status = outcome(ret, folder)
        if folder is not None:
            trial.set_user_attr("folder", str(folder))
        study.tell(trial, value, state=state)
        if state == TrialState.COMPLETE:
            best = study.best_trial
            print(
                f"trial {trial.number} completed: {self.objective} {human(self.objective, value)}"
                f" (best so far: trial {best.number}, {human(self.objective, best.value)})",
                flush=True,
            )
        elif state == TrialState.PRUNED:
            last = study.trials[trial.number].last_step
            print(f"trial {trial.number} pruned after epoch {last}", flush=True)
        else:
            print(printable(f"trial {trial.number} {status or 'failed'}: see {folder}"), file=sys.stderr, flush=True)


def quote(value: str) -> str:
    """A string as a Hydra override value."""
    if value.isdigit():  # a trial number; any other text is quoted, so that `true` or `1e5` stays a string
        return value
    return "'" + value.replace("\\", "\\\\").replace("'", "\\'") + "'"


def consecutive(batch: list[Any], jobs: list[list[str]]) -> list[tuple[int, list[list[str]]]]:
    """The batch's jobs in runs of consecutive trial numbers, each run with its first number: a
    launcher numbers a batch's jobs from one start, and a job's folder number is its trial number."""
    groups: list[tuple[int, list[list[str]]]] = []
    for i, (trial, job) in enumerate(zip(batch, jobs, strict=True)):
        if i and trial.number == batch[i - 1].number + 1:
            groups[-1][1].append(job)
        else:
            groups.append((trial.number, [job]))
    return groups


def job_folder(ret: Any) -> Path | None:
    hydra_cfg = getattr(ret, "hydra_cfg", None)
    folder = OmegaConf.select(hydra_cfg, "hydra.runtime.output_dir") if hydra_cfg is not None else None
    return Path(folder) if folder else None


def outcome(ret: Any, folder: Path | None) -> tuple[TrialState, float | None, str]:
    """(state, value, the run's status) of a finished job, from its return value and its run folder's summary.json."""
    try:
        value = ret.return_value
    except Exception:  # noqa: BLE001  the job raised outside dlrun's task: Hydra has printed it
        return TrialState.FAIL, None, "failed"
    status = ""
    if folder is not None:
        try:
            status = str(read_summary(folder).get("status", ""))
        except (DlrunError, OSError):
            status = ""
    if status == "pruned":
        return TrialState.PRUNED, None, status
    number = isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)
    if status in ("completed", "") and number:
        return TrialState.COMPLETE, float(value), "completed"
    return TrialState.FAIL, None, status or "failed"
