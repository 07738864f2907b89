"""The PTB-XL benchmark's XResNet1d family (``xresnet1d50``, ``xresnet1d101``; Strodthoff et al.
2021, after fastai's XResNet, He et al. 2019's "bag of tricks" ResNet-D), written from the
published definition (``helme/ecg_ptbxl_benchmarking``, ``code/models/xresnet1d.py``:
``XResNet1d``, ``ResBlock``, ``ConvLayer``; built by ``code/models/fastai_model.py``).

Architecture:

* stem: three ConvLayers ``leads -> 32 -> 32 -> 64`` (``stem_sizes``), kernel
  ``stem_kernel_size`` 5, the first with stride 2; a ConvLayer is Conv1d (padding
  ``(k - 1) // 2``, no bias) -> BN -> ReLU; then MaxPool1d(3, stride 2, padding 1);
* stages: ``layers`` blocks ([3, 4, 6, 3] for 50, [3, 4, 23, 3] for 101), stride 1 in the first
  stage and 2 in the others (in the first block). The published widths are all 64
  (``block_szs = [64, 64, 64, 64]``, not torchvision's 64-512), so with ``expansion`` 4 every
  stage outputs 256 channels. Bottleneck block (expansion 4): ConvLayer 1x1 (-> w) ->
  ConvLayer k (stride) -> Conv 1x1 (-> 4w) + BN without ReLU; basic block (expansion 1):
  ConvLayer k (stride) -> Conv k + BN. Kernel ``kernel_size`` 5 (``fastai_model`` passes 5).
  Shortcut (ResNet-D): AvgPool1d(2, ceil_mode=True) when strided, then Conv1d 1x1 + BN when the
  channels change (only the first block of the network: 64 -> 256); ReLU after the addition;
* features: concat pooling (max ++ average) of the last stage, 512; head: the benchmark's
  (``ecgfoundry.nn.benchmark_head``).

Initialisation: the XResNet1d constructor initialises BatchNorms with bias 1e-3 and the last BN
of each residual branch with weight 0 (``NormType.BatchZero``), but ``fastai_model.fit`` then
runs ``learn.model.apply(weight_init)`` (``basic_conv1d.py``) before training from scratch,
which resets every BN to weight 1, bias 0 and every conv/Linear to kaiming-normal with zero
bias. So the published models were trained from that, which is our default
(:func:`~ecgfoundry.nn.benchmark_head.init_benchmark_weights`). ``zero_init_last_bn=True``
zeroes the last BN weight of each residual branch as the constructor intended (its 1e-3 BN
biases are not reproduced).

Added here: stochastic depth (``drop_path_rate``, default 0) on every block's residual branch.

Parameters (12 leads), derived by reading the reference's layer shapes: stem
12*32*5 + 32*32*5 + 32*64*5 + 2*(32 + 32 + 64) = 17,536; first block (64 -> 256, with the
1x1 shortcut) 58,624; every other bottleneck block 256*64 + 64*64*5 + 64*256 + 2*(64+64+256)
= 54,016; head 66,944 + 129 n (BN(512), Linear(512, 128), BN(128), Linear(128, n)).
xresnet1d50 (16 blocks): body 886,400; **953,989** parameters for 5 classes, **962,503** for 71.
xresnet1d101 (33 blocks): body 1,804,672; **1,872,261** for 5 classes, **1,880,775** for 71.
Verified also by instantiating the unmodified reference modules (with stand-ins for the fastai
v1 helpers they import) and counting, and by copying their weights in order and comparing
outputs.

Input: :data:`ecgfoundry.nn.benchmark_head.PTBXL_BENCHMARK_SPEC` (100 Hz, 2.5 s = 250 samples,
12 leads in PTB-XL order, normalisation ``"none"``: the benchmark's single global mean/std
standardisation is absorbed by the first conv + BN). Lengths 250 -> 125 (stem) -> 63 (pool)
-> 63, 32, 16, 8 through the stages; any length works.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass, field
from itertools import pairwise
from typing import Any, ClassVar

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
from ecgfoundry.nn.layers import DropPath, drop_path_rates

XRESNET1D50_LAYERS = [3, 4, 6, 3]
XRESNET1D101_LAYERS = [3, 4, 23, 3]


@dataclass
class XResNet1dConfig(ModelConfig, BenchmarkHeadConfig):
    """XResNet1d hyperparameters; defaults are ``xresnet1d50`` with the benchmark's head.

    ``widths``: block width of each stage before expansion (published: 64 for the first four
    stages). ``stem_sizes``: output channels of the three stem convolutions.
    """

    leads_field: ClassVar[str] = "in_channels"

    in_channels: int = 12
    expansion: int = 4
    layers: list[int] = field(default_factory=lambda: list(XRESNET1D50_LAYERS))
    widths: list[int] = field(default_factory=lambda: [64, 64, 64, 64])
    stem_sizes: list[int] = field(default_factory=lambda: [32, 32, 64])
    stem_kernel_size: int = 5
    kernel_size: int = 5
    zero_init_last_bn: bool = False

    def __post_init__(self) -> None:
        self.layers = [int(n) for n in self.layers]
        self.widths = [int(w) for w in self.widths]
        self.stem_sizes = [int(c) for c in self.stem_sizes]
        problems = self.benchmark_problems(self.in_channels)
        if self.expansion not in (1, 4):
            problems.append(f"expansion must be 1 (basic) or 4 (bottleneck), got {self.expansion}")
        if not self.layers or any(n < 1 for n in self.layers):
            problems.append(f"layers needs at least one stage of >= 1 block, got {self.layers}")
        if len(self.widths) != len(self.layers) or any(w < 1 for w in self.widths):
            problems.append(f"widths needs one width >= 1 per stage, got {self.widths}")
        if not self.stem_sizes or any(c < 1 for c in self.stem_sizes):
            problems.append(f"stem_sizes must be >= 1, got {self.stem_sizes}")
        if min(self.stem_kernel_size, self.kernel_size) < 1:
            problems.append("stem_kernel_size and kernel_size must be >= 1")
        if problems:
            raise ValueError("XResNet1dConfig: " + "; ".join(problems))


class XResBlock1d(nn.Module):
    """Residual block: conv path + (avg-pool, 1x1 conv) shortcut, ReLU after the addition."""

    def __init__(
        self,
        in_channels: int,
        width: int,
        expansion: int,
        stride: int,
        kernel_size: int,
        drop_path: float,
    ):
        super().__init__()
        out_channels = width * expansion
        if expansion == 1:
            convs = [
                conv_bn_relu(in_channels, width, kernel_size, stride),
                conv_bn_relu(width, out_channels, kernel_size, relu=False),
            ]
        else:
            convs = [
                conv_bn_relu(in_channels, width, 1),
                conv_bn_relu(width, width, kernel_size, stride),
                conv_bn_relu(width, out_channels, 1, relu=False),
            ]
        self.convs = nn.Sequential(*convs)
        shortcut: list[nn.Module] = []
        if stride != 1:
            shortcut.append(nn.AvgPool1d(2, ceil_mode=True))
        if in_channels != out_channels:
            shortcut.extend(conv_bn_relu(in_channels, out_channels, 1, relu=False))
        self.shortcut = nn.Sequential(*shortcut)
        self.drop_path = DropPath(drop_path)

    @property
    def last_norm(self) -> nn.BatchNorm1d:
        return self.convs[-1][1]

    def forward(self, x: Tensor) -> Tensor:
        return F.relu(self.drop_path(self.convs(x)) + self.shortcut(x))


class XResNet1d(BenchmarkCNN):
    """The benchmark's XResNet1d. ``forward_features``: [B, leads, samples] ->
    [B, 2 * widths[-1] * expansion]."""

    family = "xresnet1d"
    config_class = XResNet1dConfig

    def __init__(self, config: XResNet1dConfig):
        super().__init__(config)
        del self.head  # re-created last by reset_head, so the state dict ends with it
        sizes = [config.in_channels, *config.stem_sizes]
        self.stem = nn.Sequential(
            *(
                conv_bn_relu(c_in, c_out, config.stem_kernel_size, 2 if i == 0 else 1)
                for i, (c_in, c_out) in enumerate(pairwise(sizes))
            ),
            nn.MaxPool1d(3, stride=2, padding=1),
        )
        rates = iter(drop_path_rates(config.drop_path_rate, sum(config.layers)))
        channels = config.stem_sizes[-1]
        stages = []
        for i, (width, blocks) in enumerate(zip(config.widths, config.layers, strict=True)):
            stage = []
            for j in range(blocks):
                stage.append(
                    XResBlock1d(
                        channels,
                        width,
                        config.expansion,
                        stride=2 if i > 0 and j == 0 else 1,
                        kernel_size=config.kernel_size,
                        drop_path=next(rates),
                    )
                )
                channels = width * config.expansion
            stages.append(nn.Sequential(*stage))
        self.stages = nn.Sequential(*stages)
        self.pool_and_initialise(channels)
        if config.zero_init_last_bn:
            with torch.no_grad():
                for stage in self.stages:
                    for block in stage:
                        block.last_norm.weight.zero_()
        self.reset_head(config.num_classes, config.labels)

    def iter_units(self, x: Tensor) -> Iterator[Tensor]:
        check_input(x, self.config.in_channels, "XResNet1d")
        x = self.stem(x)
        for stage in self.stages:
            x = stage(x)
            yield x


XRESNET1D_PRESETS: dict[str, dict[str, Any]] = {
    "xresnet1d50": {"expansion": 4, "layers": XRESNET1D50_LAYERS},
    "xresnet1d101": {"expansion": 4, "layers": XRESNET1D101_LAYERS},
}

register_model(
    "xresnet1d50",
    XResNet1d,
    parameters=886_400,
    description="PTB-XL benchmark xresnet1d50: bottleneck XResNet [3,4,6,3], concat-pool head",
    **XRESNET1D_PRESETS["xresnet1d50"],
)
register_model(
    "xresnet1d101",
    XResNet1d,
    parameters=1_804_672,
    description="PTB-XL benchmark xresnet1d101: bottleneck XResNet [3,4,23,3], concat-pool head",
    **XRESNET1D_PRESETS["xresnet1d101"],
)

__all__ = [
    "XRESNET1D50_LAYERS",
    "XRESNET1D101_LAYERS",
    "XRESNET1D_PRESETS",
    "XResBlock1d",
    "XResNet1d",
    "XResNet1dConfig",
]
