"""The search space, written in Hydra's own sweep syntax, as Optuna distributions.

    choice(a,b,c)  a,b,c  glob(*)     categorical: one of the values (lists and strings are kept as override text)
    range(a,b[,step])                 integers (or floats) a, a+step, ... below b, as Python's range
    interval(a,b)                     a float in [a, b]; an integer when both ends are integers
    tag(log, interval(a,b))           the same on a log scale (a > 0)

An override that is no sweep (`dataset=mnist`, `trainer.epochs=8`, `~key`) stays fixed for every trial.
"""

import re
from collections.abc import Sequence
from typing import Any

from hydra.core.override_parser.overrides_parser import OverridesParser
from hydra.core.override_parser.types import IntervalSweep, Override, RangeSweep, Transformer
from hydra.errors import HydraException
from optuna.distributions import BaseDistribution, CategoricalDistribution, FloatDistribution, IntDistribution

from dlrun.errors import ConfigError


def search_space(arguments: Sequence[str], config_loader: Any) -> tuple[dict[str, BaseDistribution], list[str]]:
    """(key -> distribution for every sweep override, the fixed overrides); a later override of a key wins."""
    parser = OverridesParser.create(config_loader=config_loader)
    try:
        overrides = parser.parse_overrides(list(arguments))
    except HydraException as err:
        raise ConfigError(one_line(err)) from err
    space: dict[str, BaseDistribution] = {}
    fixed: dict[str, str] = {}
    for override in overrides:
        key = override.get_key_element()
        space.pop(key, None)
        fixed.pop(key, None)
        if override.is_delete() or not override.is_sweep_override():
            fixed[key] = override.input_line or f"{key}={override.get_value_element_as_str()}"
        else:
            space[key] = distribution(override)
    return space, list(fixed.values())


def one_line(err: Exception) -> str:
    """Hydra's parse error in one line: 'Error parsing override ...' and the parser's reason."""
    lines = [line.strip() for line in str(err).splitlines() if line.strip()]
    return "; ".join(lines[:2]) if lines else type(err).__name__


def distribution(override: Override) -> BaseDistribution:
    """The Optuna distribution of one sweep override; a ConfigError naming it when it has no valid one."""
    line = override.input_line or override.get_key_element()
    value = override.value()
    log = "log" in getattr(value, "tags", set())
    try:
        if override.is_choice_sweep():
            if log:
                raise ValueError("tag(log, ...) applies to interval(...) and range(...), not to a choice")
            choices = list(dict.fromkeys(choice_value(v) for v in override.sweep_iterator()))
            if not choices:
                raise ValueError("it offers no value")
            return CategoricalDistribution(choices)
        if override.is_range_sweep():
            assert isinstance(value, RangeSweep)
            values = list(override.sweep_iterator())
            if not values:
                raise ValueError("the range holds no value")
            low, high, step = min(values), max(values), abs(value.step)
            if log and step != 1:
                raise ValueError(f"a log scale has no step, got step {value.step}: drop it, or drop tag(log, ...)")
            if all(isinstance(v, int) for v in values):
                return IntDistribution(int(low), int(high), log=log, step=1 if log else int(step))
            return FloatDistribution(float(low), float(high), log=log, step=None if log else float(step))
        if override.is_interval_sweep():
            assert isinstance(value, IntervalSweep)
            low, high = value.start, value.end
            if low is None or high is None or not low < high:
                raise ValueError(f"the low end must be below the high end, got {low} and {high}")
            if log and low <= 0:
                raise ValueError(f"a log scale needs a low end > 0, got {low}")
            if integer_ends(line):
                return IntDistribution(int(low), int(high), log=log)
            return FloatDistribution(float(low), float(high), log=log)
    except (ValueError, TypeError, HydraException) as err:
        raise ConfigError(f"{line}: {one_line(err)}") from err
    raise ConfigError(f"{line}: not a sweep the search can draw from (use choice, range, interval or tag(log, interval))")


def integer_ends(line: str) -> bool:
    """Were interval(a,b)'s ends written as integers? Hydra's parser reads both as floats."""
    match = re.search(r"interval\(\s*([^,()]*?)\s*,\s*([^,()]*?)\s*\)", line)
    return bool(match) and all(re.fullmatch(r"[+-]?\d+", end) for end in match.groups())


def choice_value(value: Any) -> Any:
    """Numbers and booleans stay themselves (Optuna plots them as such); anything else becomes override text."""
    if isinstance(value, (bool, int, float)):
        return value
    return Transformer.str(value)


def override_text(key: str, value: Any) -> str:
    """`key=value` as a job's override: numbers as Hydra reads them back, choices' text as it was given."""
    return f"{key}={value if isinstance(value, str) else Transformer.str(value)}"


def grid(space: dict[str, BaseDistribution]) -> dict[str, list[Any]]:
    """Every value of every parameter, for sampler=grid: choices and ranges only."""
    values: dict[str, list[Any]] = {}
    for key, dist in space.items():
        if isinstance(dist, CategoricalDistribution):
            values[key] = list(dist.choices)
        elif isinstance(dist, IntDistribution) and not dist.log:
            values[key] = list(range(dist.low, dist.high + 1, dist.step))
        elif isinstance(dist, FloatDistribution) and dist.step is not None:
            n = round((dist.high - dist.low) / dist.step)
            values[key] = [round(dist.low + i * dist.step, 12) for i in range(n + 1)]
        else:
            raise ConfigError(
                f"hydra.sweeper.sampler=grid tries every value, and {key} is an interval; "
                "give it as choice(...) or range(...), or choose another sampler"
            )
    return values
