"""A small vision Transformer (model=transformer): the image as a sequence of tokens, a class
token, learned position embeddings, pre-norm encoder blocks of multi-head self-attention and an
MLP, and one Linear on the class token's features.

The tokens are square patches (tokens=patches, as in Dosovitskiy et al.) or the image's rows
(tokens=rows: the very sequence model=rnn reads, so the two compare on the same input).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import torch
import torch.nn.functional as F
from torch import nn

from dlrun.training.activations import make_activation


class SelfAttention(nn.Module):
    def __init__(self, dim: int, heads: int, dropout: float):
        super().__init__()
        self.heads = heads
        self.qkv = nn.Linear(dim, 3 * dim)
        self.proj = nn.Linear(dim, dim)
        self.dropout = dropout

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        B, T, D = x.shape
        qkv = self.qkv(x).view(B, T, 3, self.heads, D // self.heads)  # (batch, tokens, q|k|v, heads, head dim)
        q, k, v = qkv.permute(2, 0, 3, 1, 4)  # each (batch, heads, tokens, head dim)
        out = attention(q, k, v, dropout_p=self.dropout if self.training else 0.0)
        return self.proj(out.transpose(1, 2).reshape(B, T, D))  # (batch, tokens, dim)


def attention(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, dropout_p: float) -> torch.Tensor:
    """torch's scaled_dot_product_attention; in fp32 for bf16 inputs on a CPU, where torch's bf16
    kernel measured several times slower than its fp32 one, casts included (README, "Per-model
    speed"). The attention's products are a small part of the model's work; its softmax is more
    exact in fp32."""
    if q.dtype != torch.bfloat16 or q.device.type != "cpu":
        return F.scaled_dot_product_attention(q, k, v, dropout_p=dropout_p)
    with torch.autocast("cpu", enabled=False):  # autocast would cast the fp32 inputs back to bf16
        return F.scaled_dot_product_attention(q.float(), k.float(), v.float(), dropout_p=dropout_p).to(q.dtype)


class EncoderBlock(nn.Module):
    """x + attention(norm(x)), then x + mlp(norm(x))."""

    def __init__(self, dim: int, heads: int, hidden: int, act: Callable[[], nn.Module], dropout: float):
        super().__init__()
        self.norm1 = nn.LayerNorm(dim)
        self.attn = SelfAttention(dim, heads, dropout)
        self.norm2 = nn.LayerNorm(dim)
        drop = [nn.Dropout(dropout)] if dropout > 0 else []
        self.mlp = nn.Sequential(nn.Linear(dim, hidden), act(), *drop, nn.Linear(hidden, dim), *drop)
        self.drop = nn.Dropout(dropout) if dropout > 0 else nn.Identity()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = x + self.drop(self.attn(self.norm1(x)))
        return x + self.mlp(self.norm2(x))


class VisionTransformer(nn.Module):
    def __init__(
        self,
        input_shape: Sequence[int],
        num_classes: int,
        *,
        tokens: str,
        patch_size: int,
        dim: int,
        heads: int,
        layers: int,
        mlp_ratio: float,
        act: Callable[[], nn.Module],
        dropout: float,
        batchnorm: bool,
    ):
        super().__init__()
        c, h, w = input_shape
        if dim % heads:
            raise ValueError(f"model.dim={dim} must be a multiple of model.heads={heads}")
        if tokens == "patches":
            if h % patch_size or w % patch_size:
                sides = f"{h}" if h == w else f"both {h} and {w}"
                raise ValueError(
                    f"model.patch_size={patch_size} does not divide {h}x{w} images; choose one that divides {sides}, or model.tokens=rows"
                )
            self.embed: nn.Module = nn.Conv2d(c, dim, patch_size, stride=patch_size)  # one linear map per patch
            count = (h // patch_size) * (w // patch_size)
        elif tokens == "rows":
            self.embed = nn.Linear(c * w, dim)
            count = h
        else:
            raise ValueError(f"unknown model.tokens {tokens!r}; choose one of: patches, rows")
        self.tokens = tokens
        self.cls = nn.Parameter(torch.zeros(1, 1, dim))
        self.pos = nn.Parameter(torch.randn(1, count + 1, dim) * 0.02)
        self.drop = nn.Dropout(dropout) if dropout > 0 else nn.Identity()
        hidden = max(1, round(dim * mlp_ratio))
        self.blocks = nn.Sequential(*[EncoderBlock(dim, heads, hidden, act, dropout) for _ in range(layers)])
        self.norm = nn.LayerNorm(dim)
        self.head_norm = nn.BatchNorm1d(dim) if batchnorm else nn.Identity()  # as model=rnn: on the features the head reads
        self.head = nn.Linear(dim, num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        B, C, H, W = x.shape
        if self.tokens == "patches":
            seq = self.embed(x).flatten(2).transpose(1, 2)  # (batch, patches, dim)
        else:
            seq = self.embed(x.permute(0, 2, 1, 3).reshape(B, H, C * W))  # (batch, rows, dim)
        seq = torch.cat([self.cls.expand(B, -1, -1), seq], dim=1) + self.pos  # (batch, 1 + tokens, dim)
        seq = self.norm(self.blocks(self.drop(seq)))
        return self.head(self.head_norm(seq[:, 0]))  # the class token's features: (batch, dim) -> (batch, classes)


def build_transformer(
    input_shape: Sequence[int],
    num_classes: int,
    *,
    tokens: str = "patches",
    patch_size: int = 4,
    dim: int = 64,
    heads: int = 4,
    layers: int = 4,
    mlp_ratio: float = 2.0,
    activation: str = "gelu",
    negative_slope: float = 0.01,
    dropout: float = 0.0,
    batchnorm: bool = False,
) -> nn.Module:
    """A vision Transformer; `dropout` applies to the embeddings, attention weights, and each block's outputs."""
    act = lambda: make_activation(activation, negative_slope)  # noqa: E731
    return VisionTransformer(input_shape, num_classes, tokens=tokens, patch_size=patch_size, dim=dim, heads=heads, layers=layers,
                             mlp_ratio=mlp_ratio, act=act, dropout=dropout, batchnorm=batchnorm)  # fmt: skip
