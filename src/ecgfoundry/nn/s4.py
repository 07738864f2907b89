"""The S4 layer (Gu et al., ICLR 2022) with its original NPLR kernel, in plain PyTorch.

Written from the published method; the tensors are laid out as in the S4 file ECG-CPC uses
(``clinical_ts/ts/s4_modules/s42.py`` of AI4HealthUOL/ecg-fm-benchmarking), so its checkpoints
load by renaming keys only.

* State space per channel h: ``x' = A x + B u``, ``y = Re(C x) + D u`` with
  ``A = diag(w) - P Q^T`` (HiPPO-LegS: normal plus rank 1). N/2 complex modes are stored, one
  of each conjugate pair (the other is implied); ``Q = conj(P)`` at initialisation.
* Bilinear (Tustin) discretisation with step ``dt = exp(log_dt)``:
  ``Ā = (I - dt/2 A)^-1 (I + dt/2 A)``, ``B̄ = (I - dt/2 A)^-1 dt B``.
* The convolution kernel ``K_j = C Ā^j B̄`` (j < Lk) is evaluated in the frequency domain at the
  Lk-th roots of unity (``omega``; ``z`` = their bilinear transform): Cauchy sums over the modes,
  the Woodbury identity for the rank-1 term, then an inverse real FFT. ``C`` is stored already
  multiplied by ``(I - Ā^Lk)`` (the "length correction"), which makes this exact.
* The kernel length Lk is set by the ``omega``/``z`` buffers. A shorter input uses the first
  taps; a longer one appends blocks of Lk taps computed with ``C Ā^(m Lk)`` (the original
  instead doubles Lk and rewrites ``C`` in place; the taps are the same).
* The input is convolved causally by zero-padded FFT, ``D u`` added, then GELU, dropout (one
  mask per channel, tied over time) and a linear map to 2H channels with a GLU.

Complex tensors are stored as real views ``[..., 2]``. Only ``C``, ``D`` and the output linear
are parameters; ``log_dt``, ``w``, ``B``, ``P`` and ``Q`` are buffers that training leaves alone
(as in ECG-CPC).
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import Tensor, nn


def as_complex(x: Tensor) -> Tensor:
    """A stored real view ``[..., 2]`` as a complex tensor."""
    return torch.view_as_complex(x.float().contiguous())


def hippo_legs(n: int) -> tuple[Tensor, Tensor, Tensor]:
    """``w``, ``P``, ``B`` of HiPPO-LegS of state size ``n`` in its diagonal-plus-low-rank basis:
    ``n // 2`` modes (those with positive imaginary part), complex128."""
    q = torch.arange(n, dtype=torch.float64, device="cpu")
    r = torch.sqrt(2 * q + 1)
    a = -torch.tril(r[:, None] * r[None, :], -1) - torch.diag(q + 1)
    p = torch.sqrt(q + 0.5)
    skew = a + p[:, None] * p[None, :] + 0.5 * torch.eye(n, dtype=torch.float64, device="cpu")
    mu, v = torch.linalg.eigh(1j * skew.to(torch.complex128))  # skew v = -i mu v
    v = v[:, : n // 2]  # mu < 0: eigenvalues -1/2 - i mu with positive imaginary part
    w = -0.5 - 1j * mu[: n // 2]
    return w, v.conj().T @ p.to(v.dtype), v.conj().T @ r.to(v.dtype)


def full_state_matrix(w: Tensor, p: Tensor, q: Tensor) -> Tensor:
    """``A = diag(w) - P Q^T`` [H, N, N] over all N modes (stored ones, then conjugates)."""
    w, p, q = (torch.cat([t, t.conj()], dim=-1) for t in (w, p, q))
    return torch.diag_embed(w) - p[..., :, None] * q[..., None, :]


def bilinear(a: Tensor, dt: Tensor) -> Tensor:
    """``Ā = (I - dt/2 A)^-1 (I + dt/2 A)`` for A [H, N, N] and dt [H]."""
    eye = torch.eye(a.shape[-1], dtype=a.dtype, device=a.device)
    half = dt.to(a.dtype)[:, None, None] / 2 * a
    return torch.linalg.solve(eye - half, eye + half)


def times_power(c: Tensor, a_power: Tensor) -> Tensor:
    """``C M`` for stored modes ``c`` [H, N/2] and a full-state matrix ``M`` [H, N, N]."""
    full = torch.cat([c, c.conj()], dim=-1)
    return torch.einsum("hn,hnm->hm", full, a_power)[:, : c.shape[-1]]


def cauchy(v: Tensor, z: Tensor, w: Tensor) -> Tensor:
    """``sum_n v_n / (z - w_n) + conj(v_n) / (z - conj(w_n))`` for v [..., H, N], w [H, N],
    z [F] -> [..., H, F] (each mode with its conjugate)."""
    v, w = v[..., None], w[..., None]
    numerator = 2 * (z * v.real - (v * w.conj()).real)
    return (numerator / ((z - w) * (z - w.conj()))).sum(dim=-2)


def fft_conv(u: Tensor, k: Tensor) -> Tensor:
    """Causal convolution of u [B, H, L] with kernels k [H, L] by zero-padded FFT."""
    length = u.shape[-1]
    n = 2 * length
    y = torch.fft.irfft(torch.fft.rfft(u, n=n) * torch.fft.rfft(k, n=n), n=n)
    return y[..., :length]


class S4Kernel(nn.Module):
    """The NPLR convolution kernel of H channels: ``forward(length) -> [H, length]``."""

    def __init__(
        self,
        channels: int,
        state: int,
        length: int,
        dt_min: float = 0.001,
        dt_max: float = 0.1,
    ):
        super().__init__()
        if state < 2 or state % 2 or length < 2 or length % 2:
            raise ValueError(f"S4Kernel needs an even state (got {state}) and length ({length})")
        self.length, self.dt_min, self.dt_max = length, dt_min, dt_max
        modes = (1, channels, state // 2, 2)
        self.C = nn.Parameter(torch.empty(modes))
        self.register_buffer("omega", torch.empty(length // 2 + 1, 2))
        self.register_buffer("z", torch.empty(length // 2 + 1, 2))
        self.register_buffer("log_dt", torch.empty(channels))
        self.register_buffer("B", torch.empty(modes))
        self.register_buffer("P", torch.empty(modes))
        self.register_buffer("w", torch.empty(modes[1:]))
        self.register_buffer("Q", torch.empty(modes))
        self.reset_parameters()

    @torch.no_grad()
    def reset_parameters(self) -> None:
        """HiPPO-LegS ``w``, ``P``, ``B``; ``Q = conj(P)``; dt log-uniform in [dt_min, dt_max];
        complex-normal C, length-corrected. Computed on the CPU in float64; skipped on the meta
        device (shapes only)."""
        if self.C.is_meta:
            return
        channels, half = self.C.shape[1], self.C.shape[2]
        w, p, b = (t.expand(channels, half) for t in hippo_legs(2 * half))
        low, high = math.log(self.dt_min), math.log(self.dt_max)
        log_dt = torch.rand(channels, dtype=torch.float64, device="cpu") * (high - low) + low
        c = torch.randn(channels, half, dtype=torch.complex128, device="cpu")
        a_power = torch.linalg.matrix_power(
            bilinear(full_state_matrix(w, p, p.conj()), log_dt.exp()), self.length
        )
        c = c - times_power(c, a_power)
        steps = torch.arange(self.length // 2 + 1, dtype=torch.float64, device="cpu")
        nodes = torch.exp(-2j * math.pi * steps / self.length)
        for name, value in (("C", c[None]), ("B", b[None]), ("P", p[None]),
                            ("Q", p.conj()[None]), ("w", w)):  # fmt: skip
            getattr(self, name).copy_(torch.view_as_real(value.resolve_conj()))
        self.log_dt.copy_(log_dt)
        self.omega.copy_(torch.view_as_real(nodes))
        self.z.copy_(torch.view_as_real(2 * (1 - nodes) / (1 + nodes)))

    def discrete_state_matrix(self) -> Tensor:
        """``Ā`` [H, N, N] (complex64) over all N modes."""
        w, p, q = (as_complex(t) for t in (self.w, self.P[0], self.Q[0]))
        return bilinear(full_state_matrix(w, p, q), self.log_dt.float().exp())

    def taps(self, c: Tensor) -> Tensor:
        """Lk taps [H, Lk] for length-corrected output modes ``c`` [H, N/2]."""
        dt = self.log_dt.float().exp()
        w = as_complex(self.w) * dt[:, None]
        b, p, q = (as_complex(t[0]) for t in (self.B, self.P, self.Q))
        v = torch.stack([b * c, b * q, p * c, p * q])  # B.C, B.Q, P.C, P.Q
        r = cauchy(v, as_complex(self.z), w) * dt[:, None]
        k_f = r[0] - r[1] * r[2] / (1 + r[3])  # Woodbury for the rank-1 term
        k_f = k_f * 2 / (1 + as_complex(self.omega))
        return torch.fft.irfft(k_f, n=self.length)

    def forward(self, length: int) -> Tensor:
        c = as_complex(self.C[0])
        blocks = [self.taps(c)]
        if length > self.length:
            a_power = torch.linalg.matrix_power(self.discrete_state_matrix(), self.length)
            while len(blocks) * self.length < length:
                c = times_power(c, a_power)
                blocks.append(self.taps(c))
        return torch.cat(blocks, dim=-1)[:, :length]


class ChannelLinear(nn.Module):
    """A linear map over the channels of [B, C, L]; the bias is stored as [out, 1] (as the
    original's ``TransposedLinear``). Initialised as ``nn.Linear``."""

    def __init__(self, in_features: int, out_features: int):
        super().__init__()
        self.weight = nn.Parameter(torch.empty(out_features, in_features))
        self.bias = nn.Parameter(torch.empty(out_features, 1))
        nn.init.kaiming_uniform_(self.weight, a=math.sqrt(5))
        nn.init.uniform_(self.bias, -1 / math.sqrt(in_features), 1 / math.sqrt(in_features))

    def forward(self, x: Tensor) -> Tensor:
        return torch.einsum("bil,oi->bol", x, self.weight) + self.bias


class S4Layer(nn.Module):
    """Causal S4 on [B, H, L]: kernel convolution + ``D u`` -> GELU -> dropout -> linear to 2H
    -> GLU. No residual or norm (the stack around it adds those)."""

    def __init__(
        self,
        channels: int,
        state: int,
        length: int,
        dropout: float = 0.0,
        dt_min: float = 0.001,
        dt_max: float = 0.1,
    ):
        super().__init__()
        self.D = nn.Parameter(torch.randn(1, channels))
        self.kernel = S4Kernel(channels, state, length, dt_min, dt_max)
        self.dropout = nn.Dropout1d(dropout)
        self.output_linear = ChannelLinear(channels, 2 * channels)

    def forward(self, u: Tensor) -> Tensor:
        u = u.float()  # the FFTs stay in float32 under autocast
        y = fft_conv(u, self.kernel(u.shape[-1])) + self.D[0, :, None] * u
        y = self.output_linear(self.dropout(F.gelu(y)))
        return F.glu(y, dim=1)

    def fixed_length(self, length: int) -> FixedLengthS4Layer:
        """This layer for inputs of exactly ``length`` steps, with no complex numbers or FFTs
        (what ONNX can express): see :class:`FixedLengthS4Layer`."""
        return FixedLengthS4Layer(self, length)


class FixedLengthS4Layer(nn.Module):
    """An :class:`S4Layer` whose kernel is computed once for inputs of ``length`` steps and
    applied as a causal depthwise convolution. Same outputs as the layer for that length (up
    to float rounding); shares the layer's ``D`` and output projection. For export: ONNX has
    no complex tensors, and a direct convolution of a 2-10 s input costs little."""

    def __init__(self, layer: S4Layer, length: int):
        super().__init__()
        with torch.no_grad():
            taps = layer.kernel(length).float()  # [H, length]
        self.register_buffer("taps", taps.flip(-1)[:, None, :])  # conv1d correlates
        self.length = length
        self.D, self.dropout, self.output_linear = layer.D, layer.dropout, layer.output_linear

    def forward(self, u: Tensor) -> Tensor:
        if u.shape[-1] != self.length:
            raise ValueError(f"this S4 layer was fixed for {self.length} steps, got {u.shape[-1]}")
        u = u.float()
        y = F.conv1d(F.pad(u, (self.length - 1, 0)), self.taps, groups=u.shape[1])
        y = self.output_linear(self.dropout(F.gelu(y + self.D[0, :, None] * u)))
        return F.glu(y, dim=1)


__all__ = [
    "ChannelLinear",
    "FixedLengthS4Layer",
    "S4Kernel",
    "S4Layer",
    "as_complex",
    "bilinear",
    "cauchy",
    "fft_conv",
    "full_state_matrix",
    "hippo_legs",
    "times_power",
]
