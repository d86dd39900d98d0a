"""channels_last (trainer.memory_format), the max-pool placed before a non-decreasing activation,
and the hint about native bf16. No timing here: benchmarks/bench_models.py measures the speed."""

from __future__ import annotations

import copy
from pathlib import Path

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from dlrun.training import recipe
from dlrun.training.activations import MONOTONIC
from dlrun.training.device import choose_memory_format, memory_format_of, native_bf16
from dlrun.training.models import build_model
from tests.helpers import read_summary

CPU = torch.device("cpu")


def act_first(model: nn.Sequential) -> nn.Sequential:
    """A copy with each max-pool moved back after the activation it now precedes (the textbook order)."""
    layers = list(copy.deepcopy(model))
    for i in range(len(layers) - 1):
        if isinstance(layers[i], nn.MaxPool2d) and not isinstance(layers[i + 1], (nn.Conv2d, nn.Sequential)):
            layers[i], layers[i + 1] = layers[i + 1], layers[i]
    return nn.Sequential(*layers)


@pytest.mark.parametrize("activation", sorted(MONOTONIC))
@pytest.mark.parametrize("variant", ["simple", "lenet5", "vgg"])
def test_pooling_before_a_non_decreasing_activation_changes_no_output_or_gradient(activation, variant):
    torch.manual_seed(0)
    model = build_model("cnn", (1, 16, 16), 10, variant=variant, activation=activation, channels=[4, 8])
    textbook = act_first(model)
    assert [type(m) for m in textbook] != [type(m) for m in model]  # the pools did move
    x, y = torch.randn(6, 1, 16, 16), torch.randint(0, 10, (6,))
    outputs = []
    for m in (model, textbook):
        out = m(x)
        F.cross_entropy(out, y).backward()
        outputs.append((out.detach(), [p.grad.clone() for p in m.parameters()]))
    (out_a, grads_a), (out_b, grads_b) = outputs
    torch.testing.assert_close(out_a, out_b, rtol=1e-6, atol=1e-7)
    for a, b in zip(grads_a, grads_b, strict=True):
        torch.testing.assert_close(a, b, rtol=1e-5, atol=1e-6)
    assert model.state_dict().keys() == textbook.state_dict().keys()  # checkpoints of either order load in the other


def test_gelu_keeps_the_pool_after_the_activation():
    model = build_model("cnn", (1, 16, 16), 10, activation="gelu", channels=[4])
    assert [type(m) for m in model[:3]] == [nn.Conv2d, nn.GELU, nn.MaxPool2d]


def test_auto_chooses_channels_last_for_measured_conv_families_on_a_cpu_only():
    assert choose_memory_format("auto", "cnn", CPU) == torch.channels_last
    assert choose_memory_format("auto", "resnet", CPU) == torch.channels_last
    assert choose_memory_format("auto", "mlp", CPU) == torch.contiguous_format
    assert choose_memory_format("auto", None, CPU) == torch.contiguous_format  # a user's own model
    assert choose_memory_format("auto", "cnn", torch.device("cuda")) == torch.contiguous_format  # not yet measured
    assert choose_memory_format("channels_last", "mlp", CPU) == torch.channels_last
    assert choose_memory_format("contiguous", "cnn", CPU) == torch.contiguous_format


def test_a_channels_last_state_dict_loads_into_a_contiguous_model_and_back():
    torch.manual_seed(0)
    fast = build_model("cnn", (1, 16, 16), 10, channels=[4, 8], batchnorm=True).to(memory_format=torch.channels_last)
    plain = build_model("cnn", (1, 16, 16), 10, channels=[4, 8], batchnorm=True)
    assert (memory_format_of(fast), memory_format_of(plain)) == ("channels_last", "contiguous")
    plain.load_state_dict(fast.state_dict())
    x = torch.randn(5, 1, 16, 16)
    fast.eval(), plain.eval()
    torch.testing.assert_close(plain(x), fast(x), rtol=1e-5, atol=1e-6)
    assert memory_format_of(plain) == "contiguous"  # loading copies values into the model's own layout
    fast.load_state_dict(plain.state_dict())
    assert memory_format_of(fast) == "channels_last"


def test_a_channels_last_run_is_recorded_and_matches_the_contiguous_run(run_dlrun):
    """Same seed, two epochs of the CNN on digits: only the convolutions' summation order differs.
    Measured on MNIST (README.md) it moved test accuracy by 0.04-0.06 point and the loss by 2-3%; here the
    tolerance is 1% relative on the losses and 2 points of accuracy."""
    common = ("model=cnn", "device=cpu", "trainer.epochs=2", "trainer.plots=false", "trainer.checkpoints=false")
    fast = read_summary(run_dlrun(*common))  # auto: channels_last for a CNN on a CPU
    plain = read_summary(run_dlrun(*common, "trainer.memory_format=contiguous"))
    assert (fast["memory_format"], plain["memory_format"]) == ("channels_last", "contiguous")
    assert fast["test"]["loss"] == pytest.approx(plain["test"]["loss"], rel=1e-2)
    assert fast["final"]["train/loss"] == pytest.approx(plain["final"]["train/loss"], rel=1e-2)
    assert abs(fast["test"]["acc"] - plain["test"]["acc"]) <= 0.02
    assert read_summary(run_dlrun("model=mlp", "device=cpu", "trainer.epochs=1", "trainer.plots=false"))["memory_format"] == "contiguous"


@pytest.mark.parametrize(
    "text, expected",
    [
        ("processor\t: 0\nflags\t\t: fpu avx512f avx512_bf16 amx_tile amx_bf16\n", "AMX"),
        ("flags\t\t: fpu avx512f avx512_bf16\n", "AVX512-BF16"),
        ("Features\t: fp asimd bf16 i8mm\n", "Arm BF16"),
        ("flags\t\t: fpu sse2 avx2\n", None),
    ],
)
def test_native_bf16_reads_the_cpu_flags(tmp_path, text, expected):
    cpuinfo = tmp_path / "cpuinfo"
    cpuinfo.write_text(text)
    assert native_bf16(cpuinfo) == expected
    assert native_bf16(tmp_path / "missing") is None


def test_the_bf16_hint_shows_only_for_fp32_on_a_cpu_with_native_bf16(compose_cfg, monkeypatch):
    on_cpu = {"device": "cpu (2 threads)"}
    monkeypatch.setattr(recipe, "native_bf16", lambda: "AMX")
    hint = recipe.bf16_hint(compose_cfg("model=cnn"), on_cpu)
    assert hint is not None and "AMX" in hint and "trainer.precision=bf16" in hint
    assert recipe.bf16_hint(compose_cfg("model=cnn", "trainer.precision=bf16"), on_cpu) is None
    assert recipe.bf16_hint(compose_cfg("model=cnn"), {"device": "cuda (H100)"}) is None
    monkeypatch.setattr(recipe, "native_bf16", lambda: None)
    assert recipe.bf16_hint(compose_cfg("model=cnn"), on_cpu) is None


def test_the_bf16_hint_goes_by_the_measured_model_kind(compose_cfg, monkeypatch):
    on_cpu = {"device": "cpu (2 threads)"}
    monkeypatch.setattr(recipe, "native_bf16", lambda: "AMX")
    assert "~1.5x" in recipe.bf16_hint(compose_cfg("model=resnet", "model.depth=32"), on_cpu)  # measured as 'resnet', any depth
    assert "~1.4x" in recipe.bf16_hint(compose_cfg("model=rnn", "model.cell=lstm"), on_cpu)
    for unmeasured in (["model=cnn", "model.variant=lenet5"], ["model=rnn", "model.cell=gru"], ["model=mlp"]):
        assert recipe.bf16_hint(compose_cfg(*unmeasured), on_cpu) is None, unmeasured


def test_the_hint_is_printed_once_in_the_final_panel(run_dlrun, monkeypatch):
    monkeypatch.setattr(recipe, "native_bf16", lambda: "AMX")
    run_dir = run_dlrun("model=cnn", "device=cpu", "trainer.epochs=1", "trainer.plots=false", "trainer.limit_train_batches=2")
    log = (Path(run_dir) / "dlrun.log").read_text()
    assert log.count("this CPU has native bf16 (AMX)") == 1
