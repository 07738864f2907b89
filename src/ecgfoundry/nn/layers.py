"""Shared layers: stochastic depth (DropPath), SamePad for even kernels, non-zero mean pooling,
a fixed input standardisation (Standardised), a grouped convolution safe in bfloat16 on CPUs,
parallel 'same' convolutions by one FFT on CPUs."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from scipy.fft import next_fast_len
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


def grouped_conv1d(x: Tensor, weight: Tensor, bias: Tensor | None, stride: int = 1,
                   padding: int = 0, groups: int = 1) -> Tensor:  # fmt: skip
    """``F.conv1d``, except that a grouped convolution with 2-15 input channels per group
    runs in float32 on the CPU when it would run in bfloat16: oneDNN's bfloat16 kernels for
    those give wrong results on some CPUs (measured on an AMX Xeon with torch 2.13: about
    100 % relative error with even kernels such as 16 and 128, against 0.3 % elsewhere;
    ``tests/test_nn.py``). Under autocast the result stays float32, as autocast allows."""
    autocast = torch.is_autocast_enabled("cpu")
    affected = groups > 1 and 1 < weight.shape[1] < 16 and x.device.type == "cpu"
    if not affected or not (autocast or x.dtype == torch.bfloat16):
        return F.conv1d(x, weight, bias, stride, padding, 1, groups)
    with torch.autocast("cpu", enabled=False):
        out = F.conv1d(x.float(), weight.float(), None if bias is None else bias.float(),
                       stride, padding, 1, groups)  # fmt: skip
    return out if autocast else out.to(x.dtype)


# same_convs1d's FFT pays for 16-128 inputs of 250-4000 samples (Inception1d's kernels, forward
# and backward: 1.07-4.6x faster, measured); for under 8 inputs or 6000 samples it is slower
FFT_MIN_BATCH = 16
FFT_MAX_LENGTH = 4000


def _fft_pays(x: Tensor) -> bool:
    """Whether :func:`same_convs1d` goes by FFT. Never asked while compiling or exporting: a
    test of the batch size would fix a dynamic batch dimension."""
    full_precision = x.dtype in (torch.float32, torch.float64) and x.device.type == "cpu"
    short_batch = len(x) >= FFT_MIN_BATCH and x.shape[-1] <= FFT_MAX_LENGTH
    return full_precision and short_batch and not torch.is_autocast_enabled("cpu")


def same_convs1d(x: Tensor, weights: list[Tensor]) -> list[Tensor]:
    """Stride-1 convolutions of ``x`` [B, C, L] with odd kernels ``weights`` ([O_i, C, K_i]),
    no bias, padded ``(K_i - 1) // 2`` so the length is kept: ``[F.conv1d(x, w, padding=...)]``.

    For batches of short windows in float32/64 on a CPU (no autocast; at least
    :data:`FFT_MIN_BATCH` inputs of at most :data:`FFT_MAX_LENGTH` samples) they run as one FFT
    convolution: each kernel centred in the largest, all stacked, one transform of ``x``. Equal
    up to rounding (about 1e-6 relative in float32), and faster for long kernels there:
    Inception1d's (39/19/9) training step takes 1.5 s instead of 3.1 (a batch of 128 x 2.5 s at
    100 Hz, one thread of an AVX2 EPYC). For a few inputs or long ones the FFT is the slower
    (1 x 6000 samples: 16x), so elsewhere (and on CUDA, in bfloat16, under autocast, when
    compiled, exported or traced) each is ``F.conv1d``."""
    if any(w.shape[-1] % 2 == 0 for w in weights):
        raise ValueError(f"same_convs1d: kernels must be odd, got {[w.shape[-1] for w in weights]}")
    if torch.compiler.is_compiling() or torch.jit.is_tracing() or not _fft_pays(x):
        return [F.conv1d(x, w, padding=(w.shape[-1] - 1) // 2) for w in weights]
    size = max(w.shape[-1] for w in weights)
    half = (size - 1) // 2
    stacked = torch.cat([F.pad(w, ((size - w.shape[-1]) // 2,) * 2) for w in weights])
    length = x.shape[-1]
    n = next_fast_len(length + size - 1, real=True)  # >= length + size - 1: no wrap-around
    kernels = torch.fft.rfft(stacked.flip(-1), n)
    spectrum = torch.einsum("bcf,ocf->bof", torch.fft.rfft(x, n), kernels)
    out = torch.fft.irfft(spectrum, n)[..., half : half + length]
    return list(out.split([w.shape[0] for w in weights], dim=1))
