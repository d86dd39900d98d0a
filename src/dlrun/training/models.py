"""Model builders: a closed registry of name -> builder taking flat keyword arguments.

Every builder takes the input shape (C, H, W) and the number of classes from the dataset, so
nothing is tied to 28x28 or to 10 classes, plus the regularization that lives inside a model
(dropout probability, batch normalization on or off). No builder ever sees a DictConfig.
The deeper families live beside this file: VGG, AlexNet and ResNet in convnets.py, the vision
Transformer in transformer.py.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence

import torch
from torch import nn

from dlrun.training.activations import MONOTONIC, make_activation
from dlrun.training.convnets import alexnet_features, build_resnet, he_init, vgg_features
from dlrun.training.transformer import build_transformer


def build_mlp(
    input_shape: Sequence[int],
    num_classes: int,
    *,
    hidden_sizes: Sequence[int] = (128, 256),
    activation: str = "relu",
    negative_slope: float = 0.01,
    dropout: float = 0.0,
    batchnorm: bool = False,
) -> nn.Module:
    """Flatten -> [Linear -> (BatchNorm) -> activation -> (Dropout)] per hidden size -> Linear."""
    layers: list[nn.Module] = [nn.Flatten()]
    width = math.prod(input_shape)
    for size in hidden_sizes:
        layers.append(input_major(nn.Linear(width, size)) if len(layers) == 1 else nn.Linear(width, size))
        if batchnorm:
            layers.append(nn.BatchNorm1d(size))
        layers.append(make_activation(activation, negative_slope))
        if dropout > 0:
            layers.append(nn.Dropout(dropout))
        width = size
    layers.append(input_major(nn.Linear(width, num_classes)) if len(layers) == 1 else nn.Linear(width, num_classes))
    return nn.Sequential(*layers)


def input_major(layer: nn.Linear) -> nn.Linear:
    """Store the weight (out, in) in shape but (in, out) in memory, for a layer that reads the input.

    F.linear computes x @ W.t(); MKL runs that 1.6-1.9x faster when W.t() is row-major (measured
    for (64, 784) @ (784, 128) on a Xeon core, with bit-identical results), and autograd then writes
    the weight's gradient in the same layout. The cost, a slower input gradient (grad @ W), only
    falls on layers below this one, and a model's first layer has none. Checkpoints hold the same
    values; loading copies them into whichever layout the model has.
    """
    layer.weight = nn.Parameter(layer.weight.detach().t().contiguous().t())
    return layer


def _conv_block(c_in: int, c_out: int, kernel: int, padding: int, act: Callable[[], nn.Module], batchnorm: bool,
                pool_first: bool) -> list[nn.Module]:  # fmt: skip
    """conv, [batch norm], activation and 2x2 max-pool; with `pool_first` (a non-decreasing activation,
    see activations.MONOTONIC) the pool runs before the activation: the same outputs, and the
    activation and its backward touch a quarter of the values. Only parameter-free modules change
    places, so state_dict keys stay the same."""
    block: list[nn.Module] = [nn.Conv2d(c_in, c_out, kernel, padding=padding)]
    if batchnorm:
        block.append(nn.BatchNorm2d(c_out))
    block += [nn.MaxPool2d(2), act()] if pool_first else [act(), nn.MaxPool2d(2)]
    return block


def build_cnn(
    input_shape: Sequence[int],
    num_classes: int,
    *,
    variant: str = "simple",
    channels: Sequence[int] = (32, 64),
    convs_per_stage: int = 2,
    hidden_size: int = 128,
    activation: str = "relu",
    negative_slope: float = 0.01,
    dropout: float = 0.0,
    batchnorm: bool = False,
) -> nn.Module:
    """variant=simple: a 3x3 conv + 2x2 max-pool block per entry of `channels`, then a hidden
    Linear layer. variant=lenet5: LeNet-5 (5x5 convs with 6 and 16 filters, 120 and 84 units).
    variant=vgg: `convs_per_stage` 3x3 convs per entry of `channels`, each stage then pooled, and
    a hidden Linear layer. variant=alexnet: AlexNet's shape scaled to small images, two hidden
    Linear layers. Dropout and batch norm act on the hidden Linear layers; batch norm on the convs too."""
    c, h, w = input_shape
    act = lambda: make_activation(activation, negative_slope)  # noqa: E731
    pool_first = activation in MONOTONIC
    if variant == "simple":  # VGG's pattern with one conv per stage: the same layers, so the same state_dict keys
        convs, (c, h, w) = vgg_features(input_shape, channels, 1, act, batchnorm, pool_first)
        hidden = [hidden_size]
    elif variant == "lenet5":
        if min(h, w) < 12:
            raise ValueError(f"model.variant=lenet5 needs images of at least 12x12, got {h}x{w}; use model.variant=simple")
        convs = _conv_block(c, 6, 5, 2, act, batchnorm, pool_first) + _conv_block(6, 16, 5, 0, act, batchnorm, pool_first)
        c, h, w = 16, (h // 2 - 4) // 2, (w // 2 - 4) // 2
        hidden = [120, 84]
    elif variant == "vgg":
        convs, (c, h, w) = vgg_features(input_shape, channels, convs_per_stage, act, batchnorm, pool_first)
        hidden = [hidden_size]
    elif variant == "alexnet":
        convs, (c, h, w) = alexnet_features(input_shape, act, batchnorm)
        hidden = [hidden_size, hidden_size]
    else:
        raise ValueError(f"unknown model.variant {variant!r}; choose one of: simple, lenet5, vgg, alexnet")
    head = build_mlp(
        (c, h, w),
        num_classes,
        hidden_sizes=hidden,
        activation=activation,
        negative_slope=negative_slope,
        dropout=dropout,
        batchnorm=batchnorm,
    )
    model = nn.Sequential(*convs, head)
    return he_init(model) if variant in ("vgg", "alexnet") else model


class RowRNN(nn.Module):
    """Reads an image as a sequence of rows: (B, C, H, W) -> H steps of C*W features."""

    def __init__(
        self,
        input_shape: Sequence[int],
        num_classes: int,
        *,
        cell: str,
        hidden_size: int,
        num_layers: int,
        bidirectional: bool,
        nonlinearity: str,
        dropout: float,
        batchnorm: bool,
    ):
        super().__init__()
        c, _, w = input_shape
        kinds = {"rnn": nn.RNN, "lstm": nn.LSTM, "gru": nn.GRU}
        if cell not in kinds:
            raise ValueError(f"unknown model.cell {cell!r}; choose one of: {', '.join(kinds)}")
        extra = {"nonlinearity": nonlinearity} if cell == "rnn" else {}
        self.rnn = kinds[cell](
            c * w,
            hidden_size,
            num_layers=num_layers,
            batch_first=True,
            bidirectional=bidirectional,
            dropout=dropout if num_layers > 1 else 0.0,
            **extra,
        )
        features = hidden_size * (2 if bidirectional else 1)
        self.norm = nn.BatchNorm1d(features) if batchnorm else nn.Identity()
        self.drop = nn.Dropout(dropout) if dropout > 0 else nn.Identity()
        self.head = nn.Linear(features, num_classes)
        self.directions = 2 if bidirectional else 1

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        B, C, H, W = x.shape
        seq = x.permute(0, 2, 1, 3).reshape(B, H, C * W)  # (batch, rows, channels * row pixels)
        _, h_n = self.rnn(seq)
        if isinstance(h_n, tuple):  # LSTM returns (h_n, c_n)
            h_n = h_n[0]
        last = h_n[-self.directions :]  # (directions, batch, hidden): the top layer's final states
        features = last.transpose(0, 1).reshape(B, -1)  # (batch, directions * hidden)
        return self.head(self.drop(self.norm(features)))


def build_rnn(
    input_shape: Sequence[int],
    num_classes: int,
    *,
    cell: str = "lstm",
    hidden_size: int = 128,
    num_layers: int = 1,
    bidirectional: bool = False,
    nonlinearity: str = "tanh",
    dropout: float = 0.0,
    batchnorm: bool = False,
) -> nn.Module:
    """A plain RNN, LSTM or GRU over image rows, classifying from its last hidden state."""
    return RowRNN(
        input_shape,
        num_classes,
        cell=cell,
        hidden_size=hidden_size,
        num_layers=num_layers,
        bidirectional=bidirectional,
        nonlinearity=nonlinearity,
        dropout=dropout,
        batchnorm=batchnorm,
    )


MODELS: dict[str, Callable[..., nn.Module]] = {
    "mlp": build_mlp,
    "cnn": build_cnn,
    "rnn": build_rnn,
    "resnet": build_resnet,
    "transformer": build_transformer,
}


def build_model(name: str, input_shape: Sequence[int], num_classes: int, **kwargs) -> nn.Module:
    """Look `name` up in MODELS and build it; an unknown name lists the valid ones."""
    if name not in MODELS:
        raise ValueError(f"unknown model {name!r}; choose one of: {', '.join(MODELS)}")
    return MODELS[name](input_shape, num_classes, **kwargs)


def count_parameters(model: nn.Module) -> int:
    return sum(p.numel() for p in model.parameters() if p.requires_grad)
