"""Asking about runs by KEY: which keys differ, filter, sort and fold runs into groups.

Plain functions over runs.Run, shared by `dlrun compare` and the sweep summary. A KEY is a config
key (`optimizer.lr`), an override key (`optimizer`), a metric (`val/acc`) or a field (`status`).
"""

from __future__ import annotations

import difflib
import math
import re
import statistics
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from dlrun.analysis.runfolder import ALIASES, FIELDS, METRICS, Run, natural_key, text

# ---------------------------------------------------------------------------------------------
# Keys: which ones differ, and what a user's KEY means.


# Keys that change what a run shows, where it reads from, where else it is logged or how fast it
# goes, never what it learns: not worth a column.
LOGGER_KEYS = ("logger.tensorboard.enabled", "logger.mlflow.enabled", "logger.mlflow.tracking_uri", "logger.mlflow.experiment",
               "logger.mlflow.log_checkpoints")  # fmt: skip
QUIET_KEYS = frozenset({"trainer.progress", "trainer.plots", "trainer.checkpoints", "dataset.root", "dataset.download", "device.threads",
                        "dataset.max_memory_gb", *LOGGER_KEYS})  # fmt: skip


def differing_keys(runs: Sequence[Run]) -> list[str]:
    """Config keys whose values are not the same in every run, in config order (QUIET_KEYS aside).

    A key that only comes with a differing group choice is left out: comparing sgd with adam,
    `optimizer.beta1` is absent from the sgd runs and the same in every adam run, so the
    `optimizer` column already says it. A key absent from some runs and differing where present
    stays.
    """
    keys = [k for k in dict.fromkeys(k for run in runs for k in run.config) if k not in QUIET_KEYS]
    differing = [k for k in keys if len({_setting(r.config.get(k)) for r in runs}) > 1]
    groups = {k[: -len(".name")] for k in differing if k.endswith(".name")}

    def implied(key: str) -> bool:
        present = {_setting(r.config.get(key)) for r in runs} - {""}
        return len(present) == 1 and key.split(".")[0] in groups and not key.endswith(".name")

    return [k for k in differing if not implied(k)]


def _setting(value: Any) -> str:
    """A value's text, with absent, null and "" all read as unset: a key added later with such a
    default (`resume: ""`) does not split the runs made before it from those made after."""
    return "" if value is None or value == "" else text(value)


def varying_overrides(runs: Sequence[Run]) -> list[str]:
    """Override keys (`optimizer`, `seed`) whose values are not the same in every run, in the order given.

    Here an absent key differs from any value: a job without `optimizer=...` ran the default.
    """
    absent = object()
    keys = list(dict.fromkeys(k for run in runs for k in run.overrides))
    return [k for k in keys if len({run.overrides.get(k, absent) for run in runs}) > 1]


def resolve_key(key: str, runs: Sequence[Run]) -> str:
    """A user's KEY as a run knows it: `time` -> `time_s`, a group name `optimizer` -> `optimizer.name`,
    the last part of one config key `lr` -> `optimizer.lr`.

    Raises KeyError with a one-line message naming the keys the user may have meant.
    """
    key = ALIASES.get(key, key)
    if key in FIELDS or key in METRICS:
        return key
    known = {k for run in runs for k in (*run.config, *run.overrides)}
    for candidate in (key, f"{key}.name"):
        if candidate in known:
            return candidate
    endings = sorted(k for k in known if k.endswith("." + key))
    if len(endings) == 1:
        return endings[0]
    if endings:
        raise KeyError(f"ambiguous key {key!r}; did you mean {', '.join(endings)}?")
    close = nearest_keys(key, known)
    hint = f"; did you mean {', '.join(close)}?" if close else ""
    raise KeyError(f"unknown key {key!r}{hint}")


# What people call a metric when they do not know its name: each word names the metrics' last part.
METRIC_WORDS = {"accuracy": "acc", "acc": "acc", "loss": "loss"}


def nearest_keys(key: str, known: set[str], n: int = 3) -> list[str]:
    """The keys a mistyped KEY most likely meant: `accuracy` -> val/acc, test/acc, train/acc;
    `val_accuracy` -> val/acc; `optimizer.lrr` -> optimizer.lr; `dropuot` -> regularization.dropout."""
    words = [METRIC_WORDS.get(w, w) for w in re.split(r"[/_.\- ]", key.lower())]
    if words[-1] in METRIC_WORDS.values():
        metrics = [m for m in METRICS if m.endswith("/" + words[-1])]
        return [m for m in metrics if m.split("/")[0] in words] or metrics  # val_accuracy -> val/acc
    names = sorted(known | set(METRICS) | set(FIELDS))
    close = difflib.get_close_matches(key, names, n=n)
    by_last_part: dict[str, list[str]] = {}
    for name in names:
        by_last_part.setdefault(name.rsplit(".", 1)[-1], []).append(name)
    for part in difflib.get_close_matches(key, list(by_last_part), n=n):
        close += by_last_part[part]
    return list(dict.fromkeys(close))[:n]


def higher_is_better(key: str) -> bool:
    """Accuracies sort best (highest) first; losses, times, config values and names ascend."""
    return key.endswith("/acc")


# ---------------------------------------------------------------------------------------------
# Filter.

_CONDITION = re.compile(r"^\s*([^=!<>]+?)\s*(==|!=|>=|<=|=|>|<)\s*(.*)$")


def parse_condition(condition: str) -> tuple[str, str, str]:
    """'optimizer.lr<=0.01' -> ('optimizer.lr', '<=', '0.01'). Raises ValueError."""
    match = _CONDITION.match(condition)
    if not match:
        raise ValueError(f"--filter {condition!r} is not KEY=VALUE (or KEY!=, KEY<, KEY<=, KEY>, KEY>=)")
    key, op, value = match.groups()
    return key, "=" if op == "==" else op, value


def number(value: Any) -> float | None:
    """A value as a float (nan and inf included), from a number or its text; None for anything else."""
    if isinstance(value, bool):
        return None
    try:
        return float(value)
    except (TypeError, ValueError, OverflowError):  # OverflowError: an int past 1e308
        return None


def _alternatives(value: str) -> list[str]:
    """'sgd,adam' -> ['sgd', 'adam']; commas inside [..] belong to a list value."""
    parts, depth, start = [], 0, 0
    for i, char in enumerate(value):
        depth += {"[": 1, "{": 1, "]": -1, "}": -1}.get(char, 0)
        if char == "," and depth == 0:
            parts.append(value[start:i])
            start = i + 1
    return [*parts, value[start:]]


def _equal(actual: Any, wanted: str) -> bool:
    a, w = number(actual), number(wanted)
    if a is not None and w is not None:
        return math.isclose(a, w, rel_tol=1e-9) or a == w
    return text(actual).replace(" ", "") == wanted.replace(" ", "")


def matches(actual: Any, op: str, wanted: str) -> bool:
    """Does a run's value satisfy `op wanted`? Numbers compare as numbers (0.01 = 1e-2), the rest as text."""
    if op in ("=", "!="):
        hit = any(_equal(actual, w.strip()) for w in _alternatives(wanted))
        return hit if op == "=" else not hit
    a, w = number(actual), number(wanted)
    if a is None or w is None:
        return False
    return {"<": a < w, "<=": a <= w, ">": a > w, ">=": a >= w}[op]


def filter_runs(runs: Sequence[Run], conditions: Sequence[tuple[str, str, str]]) -> list[Run]:
    """The runs meeting every (resolved key, op, value) condition."""
    return [run for run in runs if all(matches(run.get(k), op, v) for k, op, v in conditions)]


# ---------------------------------------------------------------------------------------------
# Groups and sort.


@dataclass(frozen=True)
class Stat:
    """Mean and sample standard deviation (n - 1; None for a single value) of one metric over n runs."""

    mean: float
    std: float | None
    n: int


def stat(values: Sequence[float]) -> Stat | None:
    """None for no values. A nan or inf among them makes the mean nan or inf, and the std nan."""
    if not values:
        return None
    n = len(values)
    if all(map(math.isfinite, values)):
        try:
            return Stat(statistics.fmean(values), statistics.stdev(values) if n > 1 else None, n)
        except OverflowError:  # values near 1e308, whose sum overflows
            pass
    return Stat(sum(values) / n, math.nan if n > 1 else None, n)


@dataclass
class Group:
    """Runs sharing every value of `values` (the shown keys that were not folded)."""

    values: dict[str, Any]
    runs: list[Run] = field(default_factory=list)

    @property
    def id(self) -> str:
        return " ".join(run.id for run in self.runs)

    def get(self, key: str) -> Any:
        if key in self.values:
            return self.values[key]
        if key == "status":  # 'completed', or '2 completed, 1 failed' when they differ
            counts = {s: sum(r.status == s for r in self.runs) for s in dict.fromkeys(r.status for r in self.runs)}
            return next(iter(counts)) if len(counts) == 1 else ", ".join(f"{n} {s}" for s, n in counts.items())
        if key == "n":
            return len(self.runs)
        if key == "run":
            return self.id
        values = [v for v in (run.get(key) for run in self.runs) if number(v) is not None]
        return stat([float(v) for v in values])


def folded(key: str, by: Sequence[str], runs: Sequence[Run]) -> bool:
    """Is `key` folded by a --group-by key? A key folds itself; a group's choice (`optimizer.name`,
    or the override `optimizer`) also folds the group's keys that come with the choice, such as each
    optimizer's default lr, but not one that takes several values with one choice: folding over
    optimizer, four Adam learning rates stay four rows."""
    for b in by:
        prefix = b[: -len(".name")] if b.endswith(".name") else b
        if key in (b, prefix):
            return True
        if key.startswith(prefix + ".") and _comes_with(key, b, runs):
            return True
    return False


def _comes_with(key: str, choice: str, runs: Sequence[Run]) -> bool:
    """Does every value of `choice` go with one value of `key` in these runs?"""
    settings: dict[str, set[str]] = {}
    for run in runs:
        settings.setdefault(_setting(run.get(choice)), set()).add(_setting(run.get(key)))
    return all(len(values) == 1 for values in settings.values())


def group_runs(runs: Sequence[Run], keys: Sequence[str], by: Sequence[str]) -> tuple[list[Group], list[str]]:
    """Fold runs that share every key of `keys` except the folded ones (see `folded`); return the
    groups and the kept keys. The folded keys are `keys` less the kept ones."""
    kept = [k for k in keys if not folded(k, by, runs)]
    groups: dict[tuple, Group] = {}
    for run in runs:
        identity = tuple(_setting(run.get(k)) for k in kept)
        groups.setdefault(identity, Group({k: run.get(k) for k in kept})).runs.append(run)
    return list(groups.values()), kept


def sort_items(items: Sequence[Any], key: str, reverse: bool = False) -> list[Any]:
    """Runs or groups ordered by `key` (best first for accuracies); then those whose value is nan or
    inf, then those without a value, each in run order."""

    def value(item: Any) -> Any:
        v = item.get(key)
        return v.mean if isinstance(v, Stat) else v

    def rank(item: Any) -> tuple:
        n = number(value(item))
        return (0, n, "") if n is not None else (1, 0, text(value(item)))

    ordered = sorted(items, key=lambda item: natural_key(item.id))
    missing = [i for i in ordered if not item_has(i, key)]
    odd = [i for i in ordered if item_has(i, key) and not math.isfinite(number(value(i)) or 0)]
    present = [i for i in ordered if item_has(i, key) and math.isfinite(number(value(i)) or 0)]
    return sorted(present, key=rank, reverse=higher_is_better(key) != reverse) + odd + missing


def item_has(item: Any, key: str) -> bool:
    return item.get(key) not in (None, "")


def default_metric(runs: Sequence[Run]) -> str:
    """val/acc, or test/acc when no run has a validation split, or gen/loss when every run is a GAN (task=gan)."""
    if any("val/acc" in r.metrics for r in runs):
        return "val/acc"
    gans = runs and all("gen/loss" in r.metrics for r in runs)
    return "gen/loss" if gans else "test/acc"
