"""Attention pooling over a sequence of features: ECG-CPC's downstream pooling, and the head of
the "frozen backbone with an attention-pooling head" evaluation mode for any family."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn

MAX_TOKENS = 64  # AttentionHead: longer sequences are average-pooled to this many steps


class AttentionPool(nn.Module):
    """Learnable-query attention pooling [B, T, D] -> [B, D] (V-JEPA's, as the benchmark's
    ``LearnableQueryAttentionPool1d`` without its output projection, which is the head)."""

    def __init__(self, dim: int, heads: int):
        super().__init__()
        if heads < 1 or dim % heads:
            raise ValueError(f"attention heads {heads} must divide the width {dim}")
        self.heads = heads
        self.query = nn.Parameter(torch.randn(1, 1, dim) / dim**0.5)
        self.q_proj = nn.Linear(dim, dim, bias=False)
        self.k_proj = nn.Linear(dim, dim, bias=False)
        self.v_proj = nn.Linear(dim, dim, bias=False)

    def forward(self, x: Tensor) -> Tensor:
        batch, _, dim = x.shape
        split = (batch, -1, self.heads, dim // self.heads)
        q = self.q_proj(self.query).expand(batch, 1, dim).reshape(split).transpose(1, 2)
        k = self.k_proj(x).reshape(split).transpose(1, 2)
        v = self.v_proj(x).reshape(split).transpose(1, 2)
        return F.scaled_dot_product_attention(q, k, v).reshape(batch, dim)


def attention_heads(dim: int, most: int = 8) -> int:
    """The largest number of heads up to ``most`` that divides ``dim``."""
    return max(h for h in range(1, most + 1) if dim % h == 0)


class AttentionHead(nn.Module):
    """A classifier over per-step features [B, T, D]: average-pool to at most
    :data:`MAX_TOKENS` steps (``reduce``), learnable-query attention pooling, then a linear
    layer (``classify``). ``reduce`` has no weights, so a frozen backbone's reduced sequences
    can be computed once and the head trained on them."""

    def __init__(self, dim: int, num_classes: int, max_tokens: int = MAX_TOKENS):
        super().__init__()
        self.max_tokens = max_tokens
        self.pool = AttentionPool(dim, attention_heads(dim))
        self.linear = nn.Linear(dim, num_classes)

    def reduce(self, sequence: Tensor) -> Tensor:
        if sequence.shape[1] <= self.max_tokens:
            return sequence
        pooled = F.adaptive_avg_pool1d(sequence.transpose(1, 2), self.max_tokens)
        return pooled.transpose(1, 2)

    def classify(self, reduced: Tensor) -> Tensor:
        return self.linear(self.pool(reduced))

    def forward(self, sequence: Tensor) -> Tensor:
        return self.classify(self.reduce(sequence))


__all__ = ["MAX_TOKENS", "AttentionHead", "AttentionPool", "attention_heads"]
