"""The ReLU MLP's training step written out by hand: autograd's own kernels, without autograd.

For the tutorial's kind of model (Flatten -> Linear -> ReLU -> ... -> Linear, trained with
cross-entropy in fp32 on the CPU), a batch-64 step is so small that autograd's graph bookkeeping
and nn.Module dispatch cost about as much as the arithmetic. This step calls the ATen kernels that
autograd calls for nn.Linear, nn.ReLU and F.cross_entropy, in the same order, writing into
buffers made once per epoch, so its gradients are bit-identical to loss.backward()'s
(tests/test_mlp_step.py checks that, and test_run.py's pinned losses did not move).

Any other model, loss, precision or device, or a model with hooks, takes the generic step.
"""

from __future__ import annotations

import copy
from collections.abc import Callable

import torch
import torch.nn.functional as F
from torch import nn

# (x, y) -> (loss, logits); fills every parameter's .grad
StepFn = Callable[[torch.Tensor, torch.Tensor], tuple[torch.Tensor, torch.Tensor]]

_MEAN = 1  # ATen's reduction code for "mean"
_IGNORE_INDEX = -100  # F.cross_entropy's default


def _aten_kernels() -> tuple | None:
    """The backward kernels autograd calls, by exact overload (resolving one per call costs ~8 us),
    or None where this torch names them differently: then the generic step is used."""
    try:
        ops = torch.ops.aten
        return (
            ops.nll_loss_forward.default,
            ops.nll_loss_backward.default,
            ops._log_softmax_backward_data.default,
            ops.threshold_backward.grad_input,  # grad where the ReLU's output > 0, else 0
        )
    except (AttributeError, RuntimeError):
        return None


_KERNELS = _aten_kernels()


def relu_mlp_layers(model: nn.Module) -> list[nn.Linear] | None:
    """The Linear layers of Sequential(Flatten, Linear, ReLU, ..., Linear), or None for any other model."""
    if type(model) is not nn.Sequential or len(model) < 2 or type(model[0]) is not nn.Flatten:
        return None
    if model[0].start_dim != 1 or model[0].end_dim != -1:
        return None
    body = list(model)[1:]
    shape_ok = len(body) % 2 == 1 and all(type(m) is (nn.Linear if i % 2 == 0 else nn.ReLU) for i, m in enumerate(body))
    if not shape_ok or any(m.inplace for m in body[1::2]):
        return None
    return body[0::2]


def _has_hooks(model: nn.Module) -> bool:
    from torch.nn.modules import module as torch_module

    global_hooks = (
        torch_module._global_forward_hooks,
        torch_module._global_forward_pre_hooks,
        torch_module._global_backward_hooks,
        torch_module._global_backward_pre_hooks,
    )
    module_hooks = ("_forward_hooks", "_forward_pre_hooks", "_backward_hooks", "_backward_pre_hooks")
    return (
        any(global_hooks)
        or any(getattr(m, name) for m in model.modules() for name in module_hooks)
        or any(p._backward_hooks or p._post_accumulate_grad_hooks for p in model.parameters())
    )


def mlp_step(
    model: nn.Module, loss_fn: Callable, precision: str, batch_size: int, warn: Callable[[str], None] | None = None
) -> StepFn | None:
    """A hand-written forward and backward for `model`, or None where only autograd will do.

    `warn` is told when the model would fit but this torch lacks a kernel the step calls.
    """
    layers = relu_mlp_layers(model)
    if layers is None or loss_fn is not F.cross_entropy or precision != "fp32":
        return None
    if _KERNELS is None or not hasattr(torch.nn.modules.module, "_global_forward_hooks"):
        if warn is not None:
            warn(f"the hand-written MLP step is off: torch {torch.__version__} lacks a kernel it calls; using autograd")
        return None
    if _has_hooks(model):
        return None
    _nll_loss_forward, _nll_loss_backward, _log_softmax_backward, _relu_backward = _KERNELS
    params = list(model.parameters())
    if not all(p.device.type == "cpu" and p.dtype == torch.float32 and p.requires_grad for p in params):
        return None
    if any(layer.bias is None for layer in layers):
        return None
    for p in params:  # written in place every step, so never zeroed
        p.grad = torch.empty_like(p)
    full = _Buffers(layers, batch_size)
    short: dict[int, _Buffers] = {}  # views for a last batch smaller than batch_size
    one = torch.ones(())
    last = len(layers) - 1

    @torch.no_grad()
    def step(x: torch.Tensor, y: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        n = len(y)
        buf = full if n == batch_size else short.setdefault(n, full.first(n))
        inputs = [x.flatten(1)]  # (n, features): what each layer reads
        for i, (weight_t, bias) in enumerate(buf.forward):  # F.linear is addmm(bias, x, W.t()); nn.ReLU is relu
            out = torch.addmm(bias, inputs[-1], weight_t, out=buf.outputs[i])
            if i < last:
                out.relu_()
            inputs.append(out)
        logits = inputs[-1]
        lp = torch.log_softmax(logits, 1, out=buf.log_probs)  # F.cross_entropy = log_softmax + nll_loss
        loss, total_weight = _nll_loss_forward(lp, y, None, _MEAN, _IGNORE_INDEX)
        grad_lp = _nll_loss_backward(one, lp, y, None, _MEAN, _IGNORE_INDEX, total_weight)
        grad = _log_softmax_backward(grad_lp, lp, 1, torch.float32)  # (n, classes)
        for i in range(last, -1, -1):  # addmm's backward, as autograd computes it
            weight, weight_grad, bias_grad = buf.backward[i]
            if weight_grad.is_contiguous():
                torch.mm(grad.t(), inputs[i], out=weight_grad)  # (out, in)
            else:  # an input-major weight (see models.input_major): (in, out), as it lies in memory
                torch.mm(inputs[i].t(), grad, out=weight_grad.t())
            torch.sum(grad, 0, out=bias_grad)
            if i > 0:
                below = torch.mm(grad, weight, out=buf.grads[i - 1])  # (n, in)
                grad = _relu_backward(below, inputs[i], 0.0, grad_input=below)
        return loss, logits

    return step


class _Buffers:
    """Everything a step reads or writes besides its batch, looked up once, not every step."""

    def __init__(self, layers: list[nn.Linear], batch_size: int):
        self.forward = [(layer.weight.t(), layer.bias) for layer in layers]  # (in, out) views of the live weights
        self.backward = [(layer.weight, layer.weight.grad, layer.bias.grad) for layer in layers]
        self.outputs = [layer.weight.new_empty(batch_size, layer.out_features) for layer in layers]  # after the ReLU
        # the loss's gradient with respect to each hidden layer's output (the last layer's comes from the loss)
        self.grads = [layer.weight.new_empty(batch_size, layer.out_features) for layer in layers[:-1]]
        self.log_probs = layers[-1].weight.new_empty(batch_size, layers[-1].out_features)

    def first(self, n: int) -> _Buffers:
        """The same buffers cut to the first n rows, for a short last batch."""
        cut = copy.copy(self)
        cut.outputs, cut.grads, cut.log_probs = [b[:n] for b in self.outputs], [b[:n] for b in self.grads], self.log_probs[:n]
        return cut
