"""torch.optim without importing torch._dynamo, until something compiles.

torch.optim keeps torch.compile's tracer (dynamo) out of some of its methods: `Optimizer.__init__`'s
add_param_group, state_dict, load_state_dict, zero_grad and each optimizer's update function are
wrapped by `torch._compile._disable_dynamo`, whose wrapper imports torch._dynamo on its first call
to build the "not here" marker; and `Optimizer.step` is wrapped by `_use_grad_for_differentiable`,
which imports it on every call to place graph breaks. Importing torch._dynamo costs about as much
as importing torch itself (it pulls in the tracer, sympy and torch.fx), so a plain run would pay it
for markers that mean nothing: until torch._dynamo is imported, nothing can be tracing, so keeping
dynamo out of a frame and breaking a graph are both no-ops.

`defer_dynamo` makes the first half lazy. `_disable_dynamo`'s wrapper looks its marker up in an
attribute of the wrapped function (`__dynamo_disable`) and builds it only when absent; this module
puts a stand-in there that calls the function directly while torch._dynamo is not imported and,
on its first call once it is (torch.compile imports it: `trainer.compile=true`, or the user's own
code), builds torch's own marker, puts it in the attribute in its own place and calls through it:
from then on torch's wrapper runs exactly as torch wrote it.

`first_step` is the other half, for the one optimizer.step() that `lean_step` makes (it creates
the optimizer's state): the step function under the graph-break wrapper, with the grad mode the
wrapper sets. Every other step of `lean_step` calls the fused kernel directly, never
optimizer.step(); `trainer.fast_path=off` runs torch.optim exactly as torch does, dynamo included.

Both are private parts of torch, looked up by the code of the wrappers: where this torch has
them differently, nothing is changed and torch.optim imports dynamo as it would anyway (only
start-up is slower; every result is the same, so there is nothing to warn about).
"""

from __future__ import annotations

import functools
import sys
import types
from collections.abc import Callable
from typing import Any

import torch

MARKER = "__dynamo_disable"  # the attribute _disable_dynamo's wrapper caches torch._dynamo.disable(fn) in


def _inner_code(outer: Callable, name: str) -> types.CodeType | None:
    """The code of the function named `name` that `outer` defines inside itself, or None."""
    consts = getattr(getattr(outer, "__code__", None), "co_consts", ())
    return next((c for c in consts if isinstance(c, types.CodeType) and c.co_name == name), None)


def _closure(fn: types.FunctionType) -> dict[str, Any]:
    """A closure's variables by name (those that have a value)."""
    variables = {}
    for name, cell in zip(fn.__code__.co_freevars, fn.__closure__ or (), strict=True):
        try:
            variables[name] = cell.cell_contents
        except ValueError:  # an empty cell: a variable not assigned yet
            pass
    return variables


def _dynamo() -> types.ModuleType | None:
    """torch._dynamo if it has been imported (fully: a module half way through its import is not)."""
    dynamo = sys.modules.get("torch._dynamo")
    return dynamo if dynamo is not None and hasattr(dynamo, "disable") else None


def _until_dynamo_loads(fn: Callable, recursive: bool) -> Callable:
    """`fn` itself while torch._dynamo is not imported; torch's own marker once it is."""

    def call(*args, **kwargs):
        dynamo = _dynamo()
        if dynamo is None:  # nothing can be tracing: there is no frame to keep dynamo out of
            return fn(*args, **kwargs)
        disabled = dynamo.disable(fn, recursive, wrapping=False)
        setattr(fn, MARKER, disabled)  # torch's wrapper finds its own marker from now on
        return disabled(*args, **kwargs)

    return call


def _wrappers(value: Any, code: types.CodeType):
    """The `_disable_dynamo` wrappers `value` is, or holds one closure deep (the update functions'
    fallback wrapper holds the disabled function)."""
    if isinstance(value, (staticmethod, classmethod)):
        value = value.__func__
    if not isinstance(value, types.FunctionType):
        return
    if value.__code__ is code:
        yield value
        return
    for inner in _closure(value).values():
        if isinstance(inner, types.FunctionType) and inner.__code__ is code:
            yield inner


@functools.cache
def defer_dynamo() -> int:
    """Put the stand-in marker on every torch.optim function that `_disable_dynamo` wraps and that
    has no marker yet; returns how many. Once per process; harmless after dynamo is imported (a
    stand-in then builds torch's marker on its first call)."""
    code = _inner_code(getattr(torch._compile, "_disable_dynamo", None), "inner")
    if code is None or _dynamo() is not None or not {"fn", "recursive"} <= set(code.co_freevars):
        return 0
    modules = [m for name, m in list(sys.modules.items()) if name == "torch.optim" or name.startswith("torch.optim.")]
    values = [v for m in modules for v in vars(m).values()]
    values += [v for cls in values if isinstance(cls, type) and cls.__module__.startswith("torch.optim") for v in vars(cls).values()]
    deferred = 0
    for value in values:
        for wrapper in _wrappers(value, code):
            variables = _closure(wrapper)
            fn = variables["fn"]
            if getattr(fn, MARKER, None) is None:
                setattr(fn, MARKER, _until_dynamo_loads(fn, variables["recursive"]))
                deferred += 1
    return deferred


def _graph_break_code() -> types.CodeType | None:
    optimizer_module = sys.modules.get("torch.optim.optimizer")
    return _inner_code(getattr(optimizer_module, "_use_grad_for_differentiable", None), "_use_grad")


def _global_hooks() -> bool:
    """Whether a step hook is registered for every optimizer (or this torch keeps them elsewhere)."""
    optimizer_module = sys.modules.get("torch.optim.optimizer")
    pre = getattr(optimizer_module, "_global_optimizer_pre_hooks", None)
    post = getattr(optimizer_module, "_global_optimizer_post_hooks", None)
    return pre is None or post is None or bool(pre) or bool(post)


def first_step(optimizer: torch.optim.Optimizer) -> None:
    """optimizer.step(), without importing torch._dynamo while it is not imported: the step under
    torch.optim's graph-break wrapper, in the grad mode the wrapper sets. Exactly optimizer.step()
    once dynamo is imported, where a step hook is registered (the wrapper skipped here runs them),
    or where this torch differs."""
    code = _graph_break_code()
    hooked = getattr(optimizer, "_optimizer_step_pre_hooks", True) or getattr(optimizer, "_optimizer_step_post_hooks", True)
    hooked = hooked or _global_hooks()
    step = None if hooked else type(optimizer).step
    while code is not None and _dynamo() is None and isinstance(step, types.FunctionType):
        if step.__code__ is code and isinstance(getattr(step, "__wrapped__", None), types.FunctionType):
            with torch.set_grad_enabled(optimizer.defaults["differentiable"]):
                step.__wrapped__(optimizer)
            return
        step = getattr(step, "__wrapped__", None)  # the profiler's wrapper around it, then the graph-break wrapper
    optimizer.step()
