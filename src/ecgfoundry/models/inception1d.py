"""The PTB-XL benchmark's Inception1d (an InceptionTime network, Fawaz et al. 2020; Strodthoff
et al. 2021), written from the published definition (``helme/ecg_ptbxl_benchmarking``,
``code/models/inception1d.py``: ``Inception1d``, ``InceptionBackbone``, ``InceptionBlock1d``,
``Shortcut1d``; built by ``code/models/fastai_model.py`` with ``kernel_size=8*5=40``).

Architecture:

* ``depth`` (6) inception modules of ``nb_filters`` (32) filters each. A module: bottleneck
  Conv1d 1x1 (-> ``bottleneck_size`` 32; 0 = none) followed by three parallel convolutions with
  kernels ``[k, k // 2, k // 4]`` made odd (k = 40 -> 39, 19, 9), plus a fourth branch
  MaxPool1d(3, stride 1, padding 1) -> Conv1d 1x1 on the module input; the four outputs are
  concatenated (4 * 32 = 128 channels) -> BatchNorm -> ReLU. Convolutions pad ``(k - 1) // 2``
  and have no bias; the length never changes. In training on CPUs in float32 (batches of
  short windows) the three run as one FFT convolution (:func:`ecgfoundry.nn.layers.same_convs1d`:
  the same up to rounding, half the step time);
* residual connections (``use_residual``) every 3 modules: ``ReLU(modules(x) +
  BN(Conv1x1(x)))`` where ``x`` is the input of the three modules (the network input for the
  first one);
* features: concat pooling (max ++ average) of the last module, 256; head: the benchmark's
  (``ecgfoundry.nn.benchmark_head``).

Stochastic depth (added here; ``drop_path_rate`` 0 = the published model): one DropPath per
residual unit, on the output of its three modules before the shortcut is added. That is the
unit's residual branch, the only place where dropping a path leaves a working network (the
modules are not residual individually). Rates rise with depth over the ``depth // 3`` units;
without residual connections there is nothing to drop, so there are no DropPath modules.

Initialisation: the benchmark's ``weight_init`` (kaiming-normal convs/Linears, BN weight 1 and
bias 0), which ``fastai_model.fit`` applies before training from scratch.

Parameters (12 leads), derived by reading the reference's layer shapes: a module with ``c``
input channels has 32c (bottleneck) + 32*32*(39 + 19 + 9) + 32c (pool branch) + 2*128 (BN) =
64c + 68,864: 69,632 for the first (c = 12), 77,056 for the others; shortcuts 12*128 + 256 =
1,792 and 128*128 + 256 = 16,640; body 473,344; head 33,664 + 129 n. Total **507,653** for 5
classes, **516,167** for 71. Verified also by instantiating the unmodified reference module
(with stand-ins for the fastai v1 helpers it imports), counting, and comparing outputs with its
weights copied in order.

Input: :data:`ecgfoundry.nn.benchmark_head.PTBXL_BENCHMARK_SPEC` (100 Hz, 2.5 s = 250 samples,
12 leads in PTB-XL order, normalisation ``"none"``: the benchmark's single global mean/std
standardisation is absorbed by the first convolutions + BN). Any length works.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from typing import ClassVar

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from ecgfoundry.models._benchmark_cnn import BenchmarkCNN
from ecgfoundry.models.base import ModelConfig
from ecgfoundry.models.registry import register_model
from ecgfoundry.nn.benchmark_head import (
    BenchmarkHeadConfig,
    check_input,
    conv_bn_relu,
)
from ecgfoundry.nn.layers import DropPath, drop_path_rates, same_convs1d


@dataclass
class Inception1dConfig(ModelConfig, BenchmarkHeadConfig):
    """Inception1d hyperparameters; defaults are the benchmark's ``inception1d``.

    ``kernel_size``: the largest kernel before it is made odd (the three branches use
    ``[k, k // 2, k // 4]``, each minus one when even).
    """

    leads_field: ClassVar[str] = "in_channels"

    in_channels: int = 12
    kernel_size: int = 40
    depth: int = 6
    nb_filters: int = 32
    bottleneck_size: int = 32
    use_residual: bool = True

    def __post_init__(self) -> None:
        problems = self.benchmark_problems(self.in_channels)
        if self.kernel_size < 4:
            problems.append(f"kernel_size must be >= 4 (three branches), got {self.kernel_size}")
        if self.depth < 3 or self.depth % 3:
            problems.append(f"depth must be a positive multiple of 3, got {self.depth}")
        if self.nb_filters < 1 or self.bottleneck_size < 0:
            problems.append("nb_filters must be >= 1 and bottleneck_size >= 0")
        if problems:
            raise ValueError("Inception1dConfig: " + "; ".join(problems))

    def kernel_sizes(self) -> list[int]:
        """The three branch kernels: ``[k, k // 2, k // 4]``, even ones minus one."""
        return [k - 1 if k % 2 == 0 else k for k in (self.kernel_size, self.kernel_size // 2,
                                                      self.kernel_size // 4)]  # fmt: skip


def _conv(in_channels: int, out_channels: int, kernel_size: int) -> nn.Conv1d:
    return nn.Conv1d(
        in_channels, out_channels, kernel_size, padding=(kernel_size - 1) // 2, bias=False
    )


class InceptionModule1d(nn.Module):
    """Bottleneck -> three parallel convolutions, ++ max-pool -> 1x1 branch, BN, ReLU."""

    def __init__(
        self, in_channels: int, filters: int, kernel_sizes: list[int], bottleneck_size: int
    ):
        super().__init__()
        self.bottleneck = (
            _conv(in_channels, bottleneck_size, 1) if bottleneck_size > 0 else nn.Identity()
        )
        branch_in = bottleneck_size if bottleneck_size > 0 else in_channels
        self.convs = nn.ModuleList(_conv(branch_in, filters, k) for k in kernel_sizes)
        self.pool_branch = nn.Sequential(
            nn.MaxPool1d(3, stride=1, padding=1), _conv(in_channels, filters, 1)
        )
        self.norm = nn.BatchNorm1d((len(kernel_sizes) + 1) * filters)

    def forward(self, x: Tensor) -> Tensor:
        branches = same_convs1d(self.bottleneck(x), [conv.weight for conv in self.convs])
        out = torch.cat([*branches, self.pool_branch(x)], dim=1)
        return F.relu(self.norm(out))


class Inception1d(BenchmarkCNN):
    """The benchmark's Inception1d. ``forward_features``: [B, leads, samples] ->
    [B, 2 * 4 * nb_filters]."""

    family = "inception1d"
    config_class = Inception1dConfig

    def __init__(self, config: Inception1dConfig):
        super().__init__(config)
        del self.head  # re-created last by reset_head, so the state dict ends with it
        kernels = config.kernel_sizes()
        width = (len(kernels) + 1) * config.nb_filters
        self.blocks = nn.ModuleList(
            InceptionModule1d(
                config.in_channels if d == 0 else width,
                config.nb_filters,
                kernels,
                config.bottleneck_size,
            )
            for d in range(config.depth)
        )
        units = config.depth // 3 if config.use_residual else 0
        self.shortcuts = nn.ModuleList(
            conv_bn_relu(config.in_channels if u == 0 else width, width, 1, relu=False)
            for u in range(units)
        )
        self.drop_paths = nn.ModuleList(
            DropPath(p) for p in drop_path_rates(config.drop_path_rate, units)
        )
        self.pool_and_initialise(width)
        self.reset_head(config.num_classes, config.labels)

    def iter_units(self, x: Tensor) -> Iterator[Tensor]:
        """The output of each residual unit (three blocks and their shortcut), or of each
        block without shortcuts."""
        check_input(x, self.config.in_channels, "Inception1d")
        unit_input = x
        for d, block in enumerate(self.blocks):
            x = block(x)
            if self.shortcuts and d % 3 == 2:
                u = d // 3
                x = F.relu(self.drop_paths[u](x) + self.shortcuts[u](unit_input))
                unit_input = x
            if not self.shortcuts or d % 3 == 2 or d == len(self.blocks) - 1:
                yield x


register_model(
    "inception1d",
    Inception1d,
    parameters=473_344,
    description="PTB-XL benchmark inception1d: 6 inception modules (kernels 39/19/9), "
    "residual every 3, concat-pool head",
)

__all__ = ["Inception1d", "Inception1dConfig", "InceptionModule1d"]
