"""One line with a suggestion for Hydra's composition errors: a misspelt group, key or option.

Hydra says `Could not override 'modle'. To append to your config use +modle=mlp`, which is true
and leads nowhere (the `+` form then fails dlrun's own key check). These functions read such a
message and name what the user most likely meant, from the config tree itself: the groups and
their options in conf/, and the keys of every schema in dlrun.config.
"""

from __future__ import annotations

import dataclasses
import difflib
import re

from dlrun.config import SCHEMAS, DlrunConfig, config_dir


def _close(word: str, candidates: list[str]) -> list[str]:
    return difflib.get_close_matches(word, candidates, n=3, cutoff=0.6)


def _fields(node: type) -> list[str]:
    return [f.name for f in dataclasses.fields(node)]


def groups() -> dict[str, list[str]]:
    """Each config group in conf/ and its options (the YAML files' names)."""
    root = config_dir()
    return {d.name: sorted(p.stem for p in d.glob("*.yaml")) for d in sorted(root.iterdir()) if d.is_dir()}


def _nested(key: str) -> type | None:
    """The schema of a non-group node such as `trainer` or `trainer.early_stopping`, if there is one."""
    node: type = DlrunConfig
    for part in key.split("."):
        field = next((f for f in dataclasses.fields(node) if f.name == part), None)
        if field is None or field.default_factory is dataclasses.MISSING:
            return None
        default = field.default_factory()
        if not dataclasses.is_dataclass(default):
            return None
        node = type(default)
    return node


def for_key(key: str, value: str) -> str | None:
    """What to say about an override of `key` that the config does not have."""
    parent, _, leaf = key.rpartition(".")
    if not parent:
        top = _fields(DlrunConfig)
        close = _close(key, [*groups(), *top])
        if not close:
            return f"{key!r} is not a config key or group; the top-level keys are: {', '.join(sorted(top))}"
        return f"{key!r} is not a config key or group; did you mean {close[0]}={value}?"
    group = parent.split(".")[0]
    if group in SCHEMAS and "." not in parent:
        owners = [option for option, schema in SCHEMAS[group].items() if leaf in _fields(schema)]
        if owners:
            options = " or ".join(f"{group}={o}" for o in owners)
            return f"{leaf!r} is not a key of the chosen {group}; it belongs to {options}: e.g. {group}={owners[0]} {key}={value}"
        keys = sorted({k for schema in SCHEMAS[group].values() for k in _fields(schema)} - {"name"})
        close = _close(leaf, keys)
        hint = f"; did you mean {parent}.{close[0]}={value}?" if close else f"; the {group} keys are: {', '.join(keys)}"
        if group in ("model", "dataset") and not close:  # model=custom / dataset=custom: the user's own keys
            builtin = hint.replace("the", "dlrun's", 1)
            hint = f"; a key of your own {group} (one with {group}._target_) is added with a +: +{key}={value}{builtin}"
        return f"{leaf!r} is not a key of {group}{hint}"
    schema = _nested(parent)
    if schema is None:
        return None
    keys = _fields(schema)
    close = _close(leaf, keys)
    hint = f"; did you mean {parent}.{close[0]}={value}?" if close else f"; its keys are: {', '.join(keys)}"
    return f"{leaf!r} is not a key of {parent}{hint}"


def for_option(group: str, option: str) -> str:
    options = groups().get(group, [])
    close = _close(option, options)
    hint = f"; did you mean {group}={close[0]}?" if close else ""
    return f"{group}={option}: no such option; the options are: {', '.join(options)}{hint}"


def _chosen(message: str) -> str:
    """The option whose schema a ConfigKeyError names ('SGDConfig' -> 'sgd')."""
    schema = re.search(r"object_type=(\w+)", message)
    names = {node.__name__: option for options in SCHEMAS.values() for option, node in options.items()}
    return names.get(schema.group(1), "?") if schema else "?"


def explain(message: str) -> str | None:
    """One line for a Hydra composition error about a misspelt name, or None to keep Hydra's message."""
    override = re.search(r"Could not override '([^']+)'\.\s*\nTo append to your config use \+[^=\s]+=(.*)", message)
    if override and "object_type=dict" in message:  # an untyped node: the user's own model or dataset, whose keys come with +
        key, value = override.group(1), override.group(2).strip()
        return f"{key} is not in the config yet; a key of your own model or dataset is added with +: +{key}={value}"
    if override:
        return for_key(override.group(1), override.group(2).strip())
    preset = re.search(r"In 'task/(\w+)': ConfigKeyError.*?Key '(\w+)' not in .*?full_key: (\w+)\.", message, re.S)
    if preset:  # e.g. task=gan sets optimizer.beta1, which optimizer=sgd lacks
        task, key, group = preset.groups()
        owners = [option for option, schema in SCHEMAS.get(group, {}).items() if key in _fields(schema)]
        choices = " or ".join(f"{group}={o}" for o in owners)
        return f"task={task} sets {group}.{key}, which {group}={_chosen(message)} lacks; with task={task} choose {choices}"
    missing = re.search(r"Could not find '([\w.-]+)/([^']+)'", message)
    if missing and missing.group(1) in groups():
        return for_option(missing.group(1), missing.group(2))
    return None
