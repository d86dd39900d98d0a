"""The user's own code: a model class or a data function named by `_target_`, imported and checked here.

This is the one door for code that dlrun does not ship (built-ins come by name from registries).
Everything that can go wrong with the user's object is one ConfigError naming the key, the target and
what is wrong, before any training: a name that cannot be imported, a class that is not a
torch.nn.Module, a constructor that rejects the keys, a forward whose output is not
(batch, num_classes) logits.

`_target_` is imported as Python imports it; where its top-level package is not importable but
sits in the folder dlrun was started from, that folder is searched too (last, so it never shadows an
installed package): `dlrun` then finds a project's package as `python -m dlrun` would.
"""

from __future__ import annotations

import difflib
import importlib
import importlib.util
import inspect
import re
import sys
import traceback
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from dlrun.errors import ConfigError

NAME = re.compile(r"[A-Za-z_]\w*(\.[A-Za-z_]\w*)+")
# What dlrun offers a model, each to a parameter of that name only.
OFFERED = ("input_shape", "num_classes", "dropout", "batchnorm")


def first_line(err: BaseException) -> str:
    text = str(err).strip()
    return f"{type(err).__name__}: {text.splitlines()[0]}" if text else type(err).__name__


def _where(err: BaseException) -> str:
    """' (my_project/nets.py, line 12)': the innermost frame of the user's code that raised `err`."""
    frames = [f for f in traceback.extract_tb(err.__traceback__) if "/dlrun/" not in f.filename.replace("\\", "/")]
    if isinstance(err, SyntaxError) and err.filename:
        return f" ({err.filename}, line {err.lineno})"
    return f" ({frames[-1].filename}, line {frames[-1].lineno})" if frames else ""


def _search_start_folder(top: str) -> None:
    """Let `top` be imported from the current folder where nothing installed provides it."""
    if importlib.util.find_spec(top) is not None:
        return
    here = Path.cwd()
    if (here / top / "__init__.py").is_file() or (here / f"{top}.py").is_file():
        if str(here) not in sys.path:
            sys.path.append(str(here))
            importlib.invalidate_caches()


def locate(target: Any, key: str) -> Any:
    """The object that `target` ('package.module.Name') names; a ConfigError naming `key` otherwise."""
    if not isinstance(target, str) or not NAME.fullmatch(target):
        raise ConfigError(f"{key}={target!r} is not a dotted Python name such as my_project.nets.TinyResNet")
    parts = target.split(".")
    _search_start_folder(parts[0])
    module, found = None, 0
    for n in range(len(parts) - 1, 0, -1):  # the longest importable module prefix
        name = ".".join(parts[:n])
        try:
            module, found = importlib.import_module(name), n
            break
        except ModuleNotFoundError as err:
            if err.name is not None and name != err.name and not name.startswith(err.name + "."):  # the module imports a missing one
                raise ConfigError(f"{key}={target}: importing {name} failed: {first_line(err)}{_where(err)}") from err
        except Exception as err:  # noqa: BLE001  the user's module failed while importing: say where
            raise ConfigError(f"{key}={target}: importing {name} failed: {first_line(err)}{_where(err)}") from err
    if module is None:
        raise ConfigError(
            f"{key}={target}: there is no module {parts[0]} (not installed, and not in {Path.cwd()}); "
            "run dlrun from the folder that holds it, or install it (pip install -e)"
        )
    obj = module
    for depth, attr in enumerate(parts[found:], start=found):
        if not hasattr(obj, attr):
            owner = ".".join(parts[:depth])
            close = difflib.get_close_matches(attr, [a for a in dir(obj) if not a.startswith("_")], n=1)
            hint = f"; did you mean {owner}.{close[0]}?" if close else ""
            raise ConfigError(f"{key}={target}: {owner} has no {attr}{hint}")
        obj = getattr(obj, attr)
    return obj


def _parameters(obj: Any) -> dict[str, inspect.Parameter] | None:
    try:
        return dict(inspect.signature(obj).parameters)
    except (TypeError, ValueError):  # a builtin without a signature: the call itself will tell
        return None


def call(obj: Any, kwargs: dict[str, Any], key: str, target: str, keys_prefix: str) -> Any:
    """obj(**kwargs), with a rejected or missing keyword named as the config key to change."""
    params = _parameters(obj)
    if params is not None:
        try:
            inspect.signature(obj).bind(**kwargs)
        except TypeError as err:
            takes = [n for n, p in params.items() if p.kind not in (p.VAR_POSITIONAL, p.VAR_KEYWORD)]
            unknown = [k for k in kwargs if k not in params] if not any(p.kind == p.VAR_KEYWORD for p in params.values()) else []
            if unknown:
                raise ConfigError(
                    f"{key}={target} takes no {unknown[0]} ({keys_prefix}{unknown[0]}); its parameters are: {', '.join(takes) or 'none'}"
                ) from err
            needed = [n for n, p in params.items() if p.default is p.empty and p.kind in (p.POSITIONAL_OR_KEYWORD, p.KEYWORD_ONLY)
                      and n not in kwargs]  # fmt: skip
            if needed:
                raise ConfigError(f"{key}={target} needs {needed[0]}: add +{keys_prefix}{needed[0]}=VALUE") from err
            raise ConfigError(f"{key}={target} cannot be called with keyword arguments ({err})") from err
    try:
        return obj(**kwargs)
    except Exception as err:  # noqa: BLE001  the user's code failed: one line saying where
        raise ConfigError(f"{key}={target} failed: {first_line(err)}{_where(err)}") from err


# ---------------------------------------------------------------------------------------------
# Models.


def build_own_model(target: str, input_shape: Sequence[int], num_classes: int, keys: dict[str, Any], *, dropout: float = 0.0,
                    batchnorm: bool = False):  # fmt: skip
    """The user's nn.Module: `target` called with the offered values its signature names, and `keys`
    (the model node's own keys)."""
    from torch import nn

    key = "model._target_"
    obj = locate(target, key)
    if inspect.isclass(obj) and not issubclass(obj, nn.Module):
        raise ConfigError(f"{key}={target} is a class but not a torch.nn.Module; name an nn.Module class or a function returning one")
    if not callable(obj):
        raise ConfigError(f"{key}={target} is a {type(obj).__name__}, not a torch.nn.Module class or a function returning one")
    clash = [k for k in keys if k in OFFERED]
    if clash:
        source = f"regularization.{clash[0]}" if clash[0] in ("dropout", "batchnorm") else "the data"
        raise ConfigError(f"model.{clash[0]} is dlrun's to pass (from {source}); remove it from the model's config")
    params = _parameters(obj) or {}
    offered = {"input_shape": tuple(input_shape), "num_classes": num_classes, "dropout": dropout, "batchnorm": batchnorm}
    passed = {name: value for name, value in offered.items() if name in params}
    settings = {"dropout": f"regularization.dropout={dropout:g}", "batchnorm": "regularization.batchnorm=true"}
    for name, setting in settings.items():
        if offered[name] and name not in params:
            raise ConfigError(f"{setting} would do nothing: {target} takes no {name} parameter; add one, or drop the setting")
    model = call(obj, {**passed, **keys}, key, target, "model.")
    if not isinstance(model, nn.Module):
        raise ConfigError(f"{key}={target} returned a {type(model).__name__}, not a torch.nn.Module")
    if not any(p.requires_grad for p in model.parameters()):
        raise ConfigError(f"{key}={target} has no trainable parameters")
    return model


def check_forward(model, input_shape: Sequence[int], num_classes: int, device, target: str) -> None:
    """One forward pass on a batch of zeros (in eval mode, without gradients): the output must be
    (batch, num_classes) logits. Lazy modules are initialized by it, before the optimizer sees them."""
    import torch

    shape = (2, *input_shape)
    was_training = model.training
    model.eval()
    try:
        with torch.no_grad():
            out = model(torch.zeros(shape, device=device))
    except Exception as err:  # noqa: BLE001  the user's forward failed: one line saying where
        raise ConfigError(f"model._target_={target}: forward failed on a batch of shape {shape}: {first_line(err)}{_where(err)}") from err
    finally:
        model.train(was_training)
    got = tuple(out.shape) if isinstance(out, torch.Tensor) else type(out).__name__
    if got != (2, num_classes) or not out.is_floating_point():
        raise ConfigError(
            f"model._target_={target}: forward returned {got} for a batch of shape {shape}; "
            f"dlrun needs float logits of shape (batch, num_classes) = (2, {num_classes})"
        )


# ---------------------------------------------------------------------------------------------
# Data.


def call_data_function(target: str, keys: dict[str, Any]) -> Any:
    """What the user's data function returns, called with the dataset node's own keys."""
    key = "dataset._target_"
    obj = locate(target, key)
    if not callable(obj):
        raise ConfigError(f"{key}={target} is a {type(obj).__name__}, not a function returning data")
    return call(obj, keys, key, target, "dataset.")
