"""The hand-written ReLU MLP step: autograd's results, bit for bit, and only where it applies."""

from __future__ import annotations

import copy

import pytest
import torch
import torch.nn.functional as F

import dlrun.training.steps
from dlrun.training.data import Split
from dlrun.training.mlp_step import mlp_step, relu_mlp_layers
from dlrun.training.models import build_model
from dlrun.training.optim import build_optimizer
from dlrun.training.steps import StepSettings
from tests.helpers import train_epoch

SHAPE = (1, 8, 8)


def mlp(**kwargs) -> torch.nn.Module:
    torch.manual_seed(0)
    return build_model("mlp", SHAPE, 10, **{"hidden_sizes": [32, 16], **kwargs})


@pytest.mark.parametrize("hidden_sizes", [[], [24], [32, 16], [20, 12, 8]])
@pytest.mark.parametrize("n", [16, 5])  # a full batch and a short last batch
def test_loss_logits_and_gradients_equal_autograds(hidden_sizes, n):
    model = mlp(hidden_sizes=hidden_sizes)
    twin = copy.deepcopy(model)
    g = torch.Generator().manual_seed(1)
    x, y = torch.rand(n, *SHAPE, generator=g), torch.randint(0, 10, (n,), generator=g)
    logits = model(x)
    loss = F.cross_entropy(logits, y)
    loss.backward()
    step = mlp_step(twin, F.cross_entropy, "fp32", batch_size=16)
    for _ in range(2):  # the buffers are reused: a second call gives the same again
        by_hand_loss, by_hand_logits = step(x, y)
        assert torch.equal(by_hand_loss, loss) and torch.equal(by_hand_logits, logits)
        for p, q in zip(model.parameters(), twin.parameters(), strict=True):
            assert torch.equal(p.grad, q.grad)


def test_an_epoch_by_hand_equals_the_generic_epoch(monkeypatch):
    g = torch.Generator().manual_seed(0)
    data = Split(torch.rand(70, *SHAPE, generator=g), torch.randint(0, 10, (70,), generator=g))
    settings = StepSettings(16, F.cross_entropy)
    results = []
    for by_hand in (True, False):
        if not by_hand:
            monkeypatch.setattr(dlrun.training.steps, "mlp_step", lambda *args: None)
        model = mlp()
        optimizer = build_optimizer("adam", model, lr=0.01)
        scores = [train_epoch(model, optimizer, data, settings, torch.Generator().manual_seed(epoch)) for epoch in range(3)]
        results.append(([{k: v for k, v in s.items() if k != "seconds"} for s in scores], [p.detach().clone() for p in model.parameters()]))
    (scores_a, params_a), (scores_b, params_b) = results
    assert scores_a == scores_b
    assert all(torch.equal(p, q) for p, q in zip(params_a, params_b, strict=True))
    assert scores_a[-1]["loss"] < scores_a[0]["loss"]


@pytest.mark.parametrize(
    "model",
    [
        lambda: mlp(dropout=0.2),
        lambda: mlp(batchnorm=True),
        lambda: mlp(activation="tanh"),
        lambda: build_model("cnn", SHAPE, 10, channels=[4]),
        lambda: build_model("rnn", SHAPE, 10, hidden_size=8),
    ],
)
def test_other_models_take_the_generic_step(model):
    assert relu_mlp_layers(model()) is None
    assert mlp_step(model(), F.cross_entropy, "fp32", 16) is None


def test_other_losses_precisions_and_hooked_models_take_the_generic_step():
    assert mlp_step(mlp(), F.mse_loss, "fp32", 16) is None
    assert mlp_step(mlp(), F.cross_entropy, "bf16", 16) is None
    hooked = mlp()
    hooked[1].register_forward_hook(lambda *_: None)
    assert mlp_step(hooked, F.cross_entropy, "fp32", 16) is None
    assert mlp_step(mlp(), F.cross_entropy, "fp32", 16) is not None


def test_an_l1_penalty_takes_the_generic_step(monkeypatch):
    calls = []
    monkeypatch.setattr(dlrun.training.steps, "mlp_step", lambda *args: calls.append(args))
    g = torch.Generator().manual_seed(0)
    data = Split(torch.rand(16, *SHAPE, generator=g), torch.randint(0, 10, (16,), generator=g))
    model = mlp()
    train_epoch(model, build_optimizer("sgd", model, lr=0.1), data, StepSettings(8, F.cross_entropy, l1=1e-3), g)
    assert calls == []
