"""Every model with every regularization option, and every optimizer, on tiny data."""

from __future__ import annotations

import pytest
import torch

from dlrun.config import config_dir
from dlrun.training.models import MODELS, build_model, count_parameters
from dlrun.training.optim import OPTIMIZERS, build_optimizer, l1_penalty, l1_weights
from dlrun.training.settings import model_kwargs, optimizer_kwargs

# Every model family with each of its variants/cells, as the config names them.
MODEL_CHOICES = [
    ("mlp", {}),
    *[("cnn", {"variant": variant}) for variant in ("simple", "lenet5", "vgg", "alexnet")],
    *[("rnn", {"cell": cell}) for cell in ("rnn", "lstm", "gru")],
    ("resnet", {"depth": 8}),
    ("transformer", {"tokens": "patches"}),
    ("transformer", {"tokens": "rows"}),
]
# The input shapes of the datasets dlrun ships: digits, MNIST and Fashion-MNIST, CIFAR-10.
DATASET_SHAPES = {"digits": (1, 8, 8), "mnist": (1, 28, 28), "cifar10": (3, 32, 32)}
ALWAYS_NORMALIZED = {"resnet"}  # batch norm is part of a ResNet's blocks


def model_ids(value):
    return value if isinstance(value, str) else "-".join(map(str, value.values()))


REGULARIZATION = sorted(p.stem for p in (config_dir() / "regularization").glob("*.yaml"))


def test_every_registered_model_is_covered():
    assert {name for name, _ in MODEL_CHOICES} == set(MODELS)


@pytest.mark.parametrize(("name", "extra"), MODEL_CHOICES, ids=model_ids)
@pytest.mark.parametrize("regularization", REGULARIZATION)
def test_model_with_regularization_trains_one_step(compose_cfg, name, extra, regularization):
    overrides = [f"model={name}", f"regularization={regularization}", *[f"model.{k}={v}" for k, v in extra.items()]]
    cfg = compose_cfg(*overrides)
    torch.manual_seed(0)
    model = build_model(name, (1, 16, 12), 5, **model_kwargs(cfg))  # non-square, 5 classes: nothing assumes 28x28 or 10
    optimizer = build_optimizer(cfg.optimizer.name, model, **optimizer_kwargs(cfg))
    x, y = torch.rand(8, 1, 16, 12), torch.randint(0, 5, (8,))
    before = [p.detach().clone() for p in model.parameters()]
    logits = model(x)
    assert logits.shape == (8, 5)
    loss = torch.nn.functional.cross_entropy(logits, y)
    if cfg.regularization.l1 > 0:
        loss = loss + cfg.regularization.l1 * l1_penalty(l1_weights(model))
    loss.backward()
    optimizer.step()
    assert all(torch.isfinite(p).all() for p in model.parameters())
    assert any(not torch.equal(b, p) for b, p in zip(before, model.parameters(), strict=True))
    kinds = {type(m).__name__ for m in model.modules()}
    assert ("Dropout" in kinds) == (cfg.regularization.dropout > 0)
    assert any(k.startswith("BatchNorm") for k in kinds) == (cfg.regularization.batchnorm or name in ALWAYS_NORMALIZED)


@pytest.mark.parametrize(("name", "extra"), MODEL_CHOICES, ids=model_ids)
@pytest.mark.parametrize("dataset", sorted(DATASET_SHAPES))
def test_model_trains_a_step_and_round_trips_a_checkpoint_on_each_dataset_shape(compose_cfg, tmp_path, name, extra, dataset):
    """As a run would: the config's own defaults, one training step, then last.pt's weights into a fresh model."""
    cfg = compose_cfg(f"model={name}", *[f"model.{k}={v}" for k, v in extra.items()])
    shape = DATASET_SHAPES[dataset]
    if (name, extra) == ("cnn", {"variant": "lenet5"}) and shape[1] < 12:
        with pytest.raises(ValueError, match="lenet5 needs images of at least 12x12"):
            build_model(name, shape, 10, **model_kwargs(cfg))
        return
    torch.manual_seed(0)
    model = build_model(name, shape, 10, **model_kwargs(cfg))
    optimizer = build_optimizer(cfg.optimizer.name, model, **optimizer_kwargs(cfg))
    x, y = torch.rand(4, *shape), torch.randint(0, 10, (4,))
    loss = torch.nn.functional.cross_entropy(model(x), y)
    loss.backward()
    optimizer.step()
    torch.save({"model": model.state_dict(), "optimizer": optimizer.state_dict()}, tmp_path / "last.pt")
    saved = torch.load(tmp_path / "last.pt", weights_only=True)
    torch.manual_seed(1)
    fresh = build_model(name, shape, 10, **model_kwargs(cfg))
    fresh.load_state_dict(saved["model"])
    build_optimizer(cfg.optimizer.name, fresh, **optimizer_kwargs(cfg)).load_state_dict(saved["optimizer"])
    model.eval(), fresh.eval()
    assert torch.equal(model(x), fresh(x))


def test_mlp_default_is_the_tutorial_network():
    model = build_model("mlp", (1, 28, 28), 10)
    shapes = [tuple(p.shape) for p in model.parameters()]
    assert shapes == [(128, 784), (128,), (256, 128), (256,), (10, 256), (10,)]
    assert count_parameters(model) == 784 * 128 + 128 + 128 * 256 + 256 + 256 * 10 + 10


def test_the_mlps_first_weight_lies_input_major_and_loads_from_any_layout():
    model = build_model("mlp", (1, 28, 28), 10)
    first, second = model[1].weight, model[3].weight
    assert first.shape == (128, 784) and first.t().is_contiguous() and not first.is_contiguous()
    assert second.is_contiguous()  # layers below need their input gradient, which this layout would slow
    plain = torch.nn.Sequential(
        torch.nn.Flatten(), torch.nn.Linear(784, 128), torch.nn.ReLU(), torch.nn.Linear(128, 256), torch.nn.ReLU(), torch.nn.Linear(256, 10)
    )
    plain.load_state_dict(model.state_dict())
    assert torch.equal(plain[1].weight, first)
    model.load_state_dict({k: v + 1 for k, v in plain.state_dict().items()})
    assert model[1].weight.t().is_contiguous() and torch.equal(model[1].weight, plain[1].weight + 1)
    plain.load_state_dict(model.state_dict())
    x = torch.rand(64, 1, 28, 28)
    assert torch.equal(model(x), plain(x))  # the layout changes the speed, not the result


@pytest.mark.parametrize("activation", ["relu", "sigmoid", "tanh", "leaky_relu", "gelu"])
def test_activation_is_used(activation):
    model = build_model("mlp", (1, 4, 4), 3, activation=activation, negative_slope=0.2)
    expected = {"relu": "ReLU", "sigmoid": "Sigmoid", "tanh": "Tanh", "leaky_relu": "LeakyReLU", "gelu": "GELU"}[activation]
    assert sum(type(m).__name__ == expected for m in model.modules()) == 2
    if activation == "leaky_relu":
        assert next(m for m in model.modules() if isinstance(m, torch.nn.LeakyReLU)).negative_slope == 0.2


@pytest.mark.parametrize(("depth", "params"), [(20, 0.27e6), (32, 0.46e6), (56, 0.85e6)])
def test_resnet_depths_have_the_papers_parameter_counts(depth, params):
    """He et al. 2016, Table 6: 0.27M, 0.46M and 0.85M parameters on CIFAR-10."""
    model = build_model("resnet", (3, 32, 32), 10, depth=depth)
    assert round(count_parameters(model), -4) == params
    convs = [m for m in model.modules() if isinstance(m, torch.nn.Conv2d)]
    assert len(convs) + 1 == depth  # every conv and the Linear layer: no projection shortcuts


def test_resnet_and_transformer_shapes_are_checked_in_words():
    with pytest.raises(ValueError, match=r"model.depth=21 must be 6n\+2"):
        build_model("resnet", (3, 32, 32), 10, depth=21)
    with pytest.raises(ValueError, match="model.patch_size=7 does not divide 8x8 images"):
        build_model("transformer", (1, 8, 8), 10, patch_size=7)
    with pytest.raises(ValueError, match="model.dim=30 must be a multiple of model.heads=4"):
        build_model("transformer", (1, 8, 8), 10, dim=30)


def test_transformer_on_rows_reads_the_sequence_the_rnn_reads():
    model = build_model("transformer", (3, 16, 12), 10, tokens="rows", dim=32, heads=2, layers=1)
    assert model.pos.shape == (1, 16 + 1, 32)  # a token per row and the class token
    assert model.embed.in_features == 3 * 12  # each row's channels * pixels, as model=rnn's input


def test_lenet5_refuses_images_too_small_with_a_clear_message():
    with pytest.raises(ValueError, match="lenet5 needs images of at least 12x12, got 8x8"):
        build_model("cnn", (1, 8, 8), 10, variant="lenet5")


def test_unknown_model_lists_the_registry():
    with pytest.raises(ValueError, match="choose one of: mlp, cnn, rnn, resnet, transformer"):
        build_model("mamba", (1, 8, 8), 10)


@pytest.mark.parametrize("name", sorted(OPTIMIZERS))
def test_every_optimizer_reduces_a_simple_loss(compose_cfg, name):
    cfg = compose_cfg(f"optimizer={name}")
    torch.manual_seed(0)
    model = build_model("mlp", (1, 4, 4), 3, hidden_sizes=[16])
    optimizer = build_optimizer(name, model, **optimizer_kwargs(cfg))
    x, y = torch.rand(64, 1, 4, 4), torch.randint(0, 3, (64,))
    first = None
    for _ in range(30):
        loss = torch.nn.functional.cross_entropy(model(x), y)
        first = first if first is not None else loss.item()
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
    assert loss.item() < first


def test_l2_decays_weights_but_not_biases_or_norm_parameters():
    model = build_model("mlp", (1, 4, 4), 3, hidden_sizes=[8], batchnorm=True)
    optimizer = build_optimizer("sgd", model, lr=0.1, weight_decay=0.5)
    decayed = {id(p) for g in optimizer.param_groups if g["weight_decay"] > 0 for p in g["params"]}
    for p in model.parameters():
        assert (id(p) in decayed) == (p.dim() >= 2)
    # With zero gradients, a decayed weight shrinks by lr * wd and a bias stays put.
    weight, bias = model[1].weight, model[1].bias
    w0, b0 = weight.detach().clone(), bias.detach().clone()
    for p in model.parameters():
        p.grad = torch.zeros_like(p)
    optimizer.step()
    assert torch.allclose(weight, w0 * (1 - 0.1 * 0.5))
    assert torch.equal(bias, b0)


def test_momentum_options_reach_torch():
    model = build_model("mlp", (1, 4, 4), 3)
    optimizer = build_optimizer("momentum", model, lr=0.05, momentum=0.8, nesterov=True)
    group = optimizer.param_groups[0]
    assert (group["lr"], group["momentum"], group["nesterov"]) == (0.05, 0.8, True)


def test_bf16_attention_on_a_cpu_runs_in_fp32_and_the_rest_in_bf16(monkeypatch):
    """torch's CPU attention kernel is ~10x slower in bf16 than in fp32, so a bf16 run's attention
    is computed in fp32 (dlrun.training.transformer.attention) while its Linear layers stay bf16."""
    real = torch.nn.functional.scaled_dot_product_attention
    seen = []

    def recording(q, k, v, **kwargs):
        seen.append((q.dtype, torch.is_autocast_enabled("cpu")))
        return real(q, k, v, **kwargs)

    monkeypatch.setattr(torch.nn.functional, "scaled_dot_product_attention", recording)
    torch.manual_seed(0)
    model = build_model("transformer", (1, 28, 28), 10, layers=2)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        logits = model(torch.randn(4, 1, 28, 28))
    logits.float().sum().backward()
    assert seen == [(torch.float32, False)] * 2
    assert logits.dtype == torch.bfloat16  # the classifier's Linear ran in bf16
    assert all(p.grad is not None and torch.isfinite(p.grad).all() for p in model.parameters())
