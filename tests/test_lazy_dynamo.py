"""torch.optim without torch._dynamo until something compiles (dlrun.training.lazy_dynamo).

The fresh-process tests train, save, load and schedule every built-in optimizer before and after
torch._dynamo is imported, and check that the first half never imported it and that both halves
compute the same; the in-process ones take the paths a torch built differently would take.
"""

from __future__ import annotations

import json
import subprocess
import sys

import torch
import torch.nn.functional as F

from dlrun.training import lazy_dynamo
from dlrun.training.models import build_model
from dlrun.training.optim import build_optimizer

BOTH_SIDES = """
import json, sys
import torch
import torch.nn.functional as F
from dlrun.training.hooks import build_schedule
from dlrun.training.lazy_dynamo import MARKER, _closure
from dlrun.training.models import build_model
from dlrun.training.optim import build_optimizer, clear_grads, lean_step

def train(name, schedule):
    torch.manual_seed(0)
    model = build_model("mlp", (1, 8, 8), 10, hidden_sizes=[16])
    optimizer = build_optimizer(name, model, lr=0.01, weight_decay=1e-3)
    hook = build_schedule(schedule, optimizer, epochs=3, steps_per_epoch=2)
    step, clear = lean_step(optimizer), clear_grads(optimizer)
    x, y = torch.rand(16, 1, 8, 8), torch.randint(0, 10, (16,))
    for epoch in range(3):
        for _ in range(2):
            clear()
            F.cross_entropy(model(x), y).backward()
            step()
            hook.on_step_end(None)
        hook.on_epoch_end(None, {"val/loss": 1.0 / (epoch + 1)})
    resumed = build_optimizer(name, model, lr=0.01, weight_decay=1e-3)  # as a resumed run loads last.pt
    resumed.load_state_dict(optimizer.state_dict())
    resumed.zero_grad(set_to_none=True)
    F.cross_entropy(model(x), y).backward()
    lean_step(resumed)()  # the state exists: the fused kernel, as a resumed run steps
    state = [t for s in resumed.state_dict()["state"].values() for t in s.values()]
    return [p.detach().clone() for p in model.parameters()] + state

def torch_markers():
    fn = _closure(torch.optim.Optimizer.state_dict)["fn"]
    return "_until_dynamo_loads" not in getattr(fn, MARKER).__qualname__

runs = [("adam", "onecycle"), ("adamw", "cosine"), ("sgd", "step"), ("momentum", "plateau")]
before = [train(*run) for run in runs]
loaded_before = "torch._dynamo" in sys.modules
import torch._dynamo
after = [train(*run) for run in runs]
same = all(torch.equal(a, b) for one, other in zip(before, after) for a, b in zip(one, other))
print(json.dumps({"loaded_before": loaded_before, "same": same, "torch_markers_after": torch_markers()}), file=sys.__stderr__)
"""


def test_optimizers_train_save_load_and_schedule_alike_without_dynamo_and_with_it(tmp_path):
    done = subprocess.run([sys.executable, "-c", BOTH_SIDES], capture_output=True, text=True, timeout=300, cwd=tmp_path)
    assert done.returncode == 0, done.stderr
    result = json.loads(done.stderr.strip().splitlines()[-1])
    assert result == {"loaded_before": False, "same": True, "torch_markers_after": True}


def tiny_optimizer(seed: int = 0) -> tuple[torch.nn.Module, torch.optim.Optimizer]:
    torch.manual_seed(seed)
    model = build_model("mlp", (1, 8, 8), 10, hidden_sizes=[16])
    optimizer = build_optimizer("adam", model, lr=0.01)
    F.cross_entropy(model(torch.rand(8, 1, 8, 8)), torch.arange(8)).backward()
    return model, optimizer


def test_first_step_equals_optimizer_step(monkeypatch):
    monkeypatch.setattr(lazy_dynamo, "_dynamo", lambda: None)  # as in a process that has not imported dynamo
    model, optimizer = tiny_optimizer()
    reference, plain = tiny_optimizer()
    lazy_dynamo.first_step(optimizer)
    plain.step()
    assert all(torch.equal(a, b) for a, b in zip(model.parameters(), reference.parameters(), strict=True))
    assert str(optimizer.state_dict()) == str(plain.state_dict())


def test_first_step_runs_the_hooks_through_optimizer_step(monkeypatch):
    monkeypatch.setattr(lazy_dynamo, "_dynamo", lambda: None)
    _, optimizer = tiny_optimizer()
    seen = []
    optimizer.register_step_post_hook(lambda *_: seen.append("post"))
    lazy_dynamo.first_step(optimizer)
    assert seen == ["post"]


def test_a_torch_without_the_graph_break_wrapper_steps_through_optimizer_step(monkeypatch):
    monkeypatch.setattr(lazy_dynamo, "_dynamo", lambda: None)
    monkeypatch.setattr(lazy_dynamo, "_graph_break_code", lambda: None)
    _, optimizer = tiny_optimizer()
    calls = []
    step = optimizer.step
    monkeypatch.setattr(optimizer, "step", lambda: calls.append(1) or step())
    lazy_dynamo.first_step(optimizer)
    assert calls == [1] and optimizer.state


def test_a_torch_without_the_disable_wrapper_is_left_alone(monkeypatch):
    monkeypatch.setattr(torch._compile, "_disable_dynamo", lambda fn=None, recursive=True: fn)
    monkeypatch.setattr(lazy_dynamo, "_dynamo", lambda: None)
    assert lazy_dynamo.defer_dynamo.__wrapped__() == 0
