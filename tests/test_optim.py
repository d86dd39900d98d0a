"""lean_step: the same update as optimizer.step(), bit for bit, for every optimizer dlrun builds."""

from __future__ import annotations

import contextlib
import copy

import pytest
import torch
from torch import nn

from dlrun.training.models import build_model
from dlrun.training.optim import build_optimizer, clear_grads, lean_step

OPTIMIZERS = [
    ("sgd", {"lr": 0.1}),
    ("momentum", {"lr": 0.1, "momentum": 0.9}),
    ("momentum", {"lr": 0.1, "momentum": 0.9, "nesterov": True}),
    ("adam", {"lr": 0.01}),
    ("adamw", {"lr": 0.01, "beta1": 0.8}),
]


def small_model() -> nn.Module:
    torch.manual_seed(0)
    return nn.Sequential(nn.Linear(6, 5), nn.ReLU(), nn.Linear(5, 3))


def train(model: nn.Module, optimizer: torch.optim.Optimizer, step, steps: int = 4, seed: int = 0) -> None:
    g = torch.Generator().manual_seed(seed)
    for _ in range(steps):
        x, y = torch.randn(8, 6, generator=g), torch.randint(0, 3, (8,), generator=g)
        optimizer.zero_grad(set_to_none=True)
        nn.functional.cross_entropy(model(x), y).backward()
        step()


def assert_same(a: nn.Module, opt_a: torch.optim.Optimizer, b: nn.Module, opt_b: torch.optim.Optimizer) -> None:
    for p, q in zip(a.parameters(), b.parameters(), strict=True):
        assert torch.equal(p, q)
    state_a, state_b = opt_a.state_dict()["state"], opt_b.state_dict()["state"]
    assert state_a.keys() == state_b.keys()
    for key in state_a:
        for name, value in state_a[key].items():
            assert torch.equal(torch.as_tensor(value), torch.as_tensor(state_b[key][name])), name


@pytest.mark.parametrize("name, kwargs", OPTIMIZERS)
@pytest.mark.parametrize("weight_decay", [0.0, 0.01])
def test_lean_step_equals_optimizer_step_bit_for_bit(name, kwargs, weight_decay):
    model = small_model()
    twin = copy.deepcopy(model)
    reference = build_optimizer(name, model, weight_decay=weight_decay, **kwargs)
    optimizer = build_optimizer(name, twin, weight_decay=weight_decay, **kwargs)
    step = lean_step(optimizer)
    assert step != optimizer.step  # the lean path is taken, not the fall-back
    train(model, reference, reference.step)
    train(twin, optimizer, step)
    assert_same(model, reference, twin, optimizer)
    assert any(not torch.equal(p, q) for p, q in zip(model.parameters(), small_model().parameters(), strict=True))  # it trained


@pytest.mark.parametrize("name, kwargs", [OPTIMIZERS[1], OPTIMIZERS[3]])
def test_lean_step_continues_from_a_loaded_state(name, kwargs):
    model = small_model()
    reference = build_optimizer(name, model, **kwargs)
    train(model, reference, reference.step)
    twin = copy.deepcopy(model)
    optimizer = build_optimizer(name, twin, **kwargs)
    optimizer.load_state_dict(copy.deepcopy(reference.state_dict()))
    train(model, reference, reference.step, seed=1)
    train(twin, optimizer, lean_step(optimizer), seed=1)
    assert_same(model, reference, twin, optimizer)


def test_lean_step_follows_a_changed_learning_rate():
    model = small_model()
    twin = copy.deepcopy(model)
    reference, optimizer = build_optimizer("adam", model, lr=0.01), build_optimizer("adam", twin, lr=0.01)
    step = lean_step(optimizer)
    train(model, reference, reference.step, steps=2)
    train(twin, optimizer, step, steps=2)
    for opt in (reference, optimizer):
        opt.param_groups[0]["lr"] = 0.001
    train(model, reference, reference.step, seed=2)
    train(twin, optimizer, step, seed=2)
    assert_same(model, reference, twin, optimizer)


def step_both(model: nn.Module, name: str, loss, steps: int, around_step=contextlib.nullcontext):
    """Train `model` with optimizer.step() and a copy of it with lean_step on the same batches.

    `loss(model, i, generator)` gives step i's loss; `around_step()` is entered around each step.
    Returns the reference optimizer, the copy and its optimizer.
    """
    twin = copy.deepcopy(model)
    reference, optimizer = build_optimizer(name, model, lr=0.1), build_optimizer(name, twin, lr=0.1)
    for m, opt, step in ((model, reference, reference.step), (twin, optimizer, lean_step(optimizer))):
        g = torch.Generator().manual_seed(0)
        for i in range(steps):
            opt.zero_grad(set_to_none=True)
            loss(m, i, g).backward()
            with around_step():
                step()
    return reference, twin, optimizer


@pytest.mark.parametrize("name", ["momentum", "adam"])
def test_a_parameter_without_a_gradient_takes_the_full_step(name):
    model = nn.Sequential(nn.Linear(6, 3), nn.Linear(6, 3))

    def loss(m, i, g):  # the second layer rests in steps 2, 3 and 5
        x = torch.randn(4, 6, generator=g)
        return m[0](x).sum() + (m[1](x).sum() if i in (0, 1, 4) else 0)

    reference, twin, optimizer = step_both(model, name, loss, steps=6)
    assert_same(model, reference, twin, optimizer)


@pytest.mark.parametrize(
    "make",
    [
        lambda params: torch.optim.Adam(params, lr=0.01, amsgrad=True, fused=True),
        lambda params: torch.optim.Adam(params, lr=0.01),  # not fused
        lambda params: torch.optim.SGD(params, lr=0.1, maximize=True, fused=True),
        lambda params: torch.optim.RMSprop(params, lr=0.01),
    ],
)
def test_settings_it_does_not_cover_use_optimizer_step(make):
    optimizer = make(small_model().parameters())
    assert lean_step(optimizer) == optimizer.step


def test_a_step_hook_uses_optimizer_step():
    optimizer = build_optimizer("adam", small_model(), lr=0.01)
    optimizer.register_step_post_hook(lambda *_: None)
    assert lean_step(optimizer) == optimizer.step


def test_clear_grads_sets_every_gradient_to_none():
    model = small_model()
    optimizer = build_optimizer("sgd", model, lr=0.1)
    model(torch.randn(2, 6)).sum().backward()
    clear_grads(optimizer)()
    assert all(p.grad is None for p in model.parameters())


def step_and_record_copies(model, name: str, input_shape: tuple[int, ...], weight_dims: int):
    """Three steps of `name` on `model` and on its twin stepped by torch.optim (asserting the same
    result), and the shapes of the weight copies (tensors of `weight_dims` dims) the last made."""
    profiles = []

    def profiled():
        profiles.append(torch.profiler.profile(activities=[torch.profiler.ProfilerActivity.CPU], record_shapes=True))
        return profiles[-1]

    reference, twin, optimizer = step_both(model, name, lambda m, i, g: m(torch.randn(*input_shape, generator=g)).sum(), 3, profiled)
    assert_same(model, reference, twin, optimizer)
    events = profiles[-1].events()
    copied = [e.input_shapes for e in events if e.name == "aten::copy_" and any(len(shape) == weight_dims for shape in e.input_shapes)]
    return twin, copied


@pytest.mark.parametrize("name", ["adam", "momentum"])
def test_an_input_major_weight_is_updated_in_place_without_copies(name):
    torch.manual_seed(0)
    model = build_model("mlp", (1, 6, 6), 3, hidden_sizes=[5])  # its first weight is input-major
    twin, copied = step_and_record_copies(model, name, (4, 1, 6, 6), weight_dims=2)
    assert twin[1].weight.t().is_contiguous()
    assert copied == []  # torch.optim's own step copies the (5, 36) weight in and out


@pytest.mark.parametrize("name", ["adam", "momentum"])
def test_a_channels_last_conv_weight_is_updated_in_place_without_copies(name):
    torch.manual_seed(0)
    model = build_model("cnn", (1, 8, 8), 3, channels=[4, 6]).to(memory_format=torch.channels_last)
    twin, copied = step_and_record_copies(model, name, (4, 1, 8, 8), weight_dims=4)
    assert twin[3].weight.is_contiguous(memory_format=torch.channels_last) and not twin[3].weight.is_contiguous()
    assert copied == []  # torch.optim's own step copies each (6, 4, 3, 3) weight in and out
