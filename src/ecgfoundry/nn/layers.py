"""Shared layers: stochastic depth (DropPath), SamePad for even kernels, non-zero mean pooling,
a fixed input standardisation (Standardised)."""

from __future__ import annotations

from torch import Tensor, nn


def drop_path(x: Tensor, p: float, training: bool) -> Tensor:
    """Zero whole samples of a residual branch with probability ``p`` (stochastic depth,
    Huang et al. 2016), scaling the kept ones by 1/(1-p). Identity when not training."""
    if p == 0.0 or not training:
        return x
    if not 0.0 <= p < 1.0:
        raise ValueError(f"drop path rate must be in [0, 1), got {p}")
    keep = x.new_empty((x.shape[0],) + (1,) * (x.ndim - 1)).bernoulli_(1.0 - p)
    return x * keep / (1.0 - p)


class DropPath(nn.Module):
    """Stochastic depth on a residual branch; ``p`` may be changed after creation."""

    def __init__(self, p: float = 0.0):
        super().__init__()
        self.p = float(p)

    def forward(self, x: Tensor) -> Tensor:
        return drop_path(x, self.p, self.training)

    def extra_repr(self) -> str:
        return f"p={self.p:.3f}"


def drop_path_rates(rate: float, depth: int) -> list[float]:
    """Per-block rates rising linearly from 0 at the first block to ``rate`` at the last."""
    if depth <= 1:
        return [float(rate)] * depth
    return [rate * i / (depth - 1) for i in range(depth)]


class SamePad(nn.Module):
    """Trim the extra trailing step an even-kernel 'same' convolution produces."""

    def __init__(self, kernel_size: int):
        super().__init__()
        self.remove = 1 if kernel_size % 2 == 0 else 0

    def forward(self, x: Tensor) -> Tensor:
        return x[..., : -self.remove] if self.remove else x


def nonzero_mean(x: Tensor, dim: int = 1) -> Tensor:
    """Mean over ``dim`` of the non-zero entries (ECG-FM's pooling: padded steps are zeros)."""
    count = (x != 0).sum(dim=dim).clamp_min(1)
    return x.sum(dim=dim) / count


class Standardised(nn.Module):
    """``model((x - mean) / sd)``: a fixed input normalisation made part of the network (a
    personalised model's support-set statistics, exported with it)."""

    def __init__(self, model: nn.Module, mean: float, sd: float):
        super().__init__()
        if not sd > 0:
            raise ValueError(f"sd must be > 0, got {sd}")
        self.model, self.mean, self.sd = model, float(mean), float(sd)

    def forward(self, x: Tensor) -> Tensor:
        return self.model((x - self.mean) / self.sd)

    def extra_repr(self) -> str:
        return f"mean={self.mean:.6g}, sd={self.sd:.6g}"
