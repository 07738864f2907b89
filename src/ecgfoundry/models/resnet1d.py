"""The PTB-XL benchmark's ResNet1d family and its ``resnet1d_wang`` model (Strodthoff et al.
2021; Wang et al. 2017's time-series ResNet), written from the published definition
(``helme/ecg_ptbxl_benchmarking``, ``code/models/resnet1d.py``: ``ResNet1d``, ``BasicBlock1d``,
``Bottleneck1d``, ``resnet1d_wang``; built by ``code/models/fastai_model.py``).

Architecture (a 1-D torchvision ResNet):

* stem: Conv1d(leads, ``inplanes``, ``stem_kernel_size``, ``stem_stride``, no bias) -> BN ->
  ReLU [-> MaxPool1d(3, 2, padding 1) if ``stem_pool``];
* ``len(layers)`` stages of ``layers[i]`` blocks; the first stage has stride 1, the others
  ``stride``; every stage is ``inplanes`` wide (``fix_feature_dim``; False doubles the width per
  stage). Basic block: conv(k1, stride) BN ReLU conv(k2) BN, + shortcut, ReLU; bottleneck
  block (expansion 4): conv1x1 BN ReLU conv(k, stride) BN ReLU conv1x1 BN, + shortcut, ReLU.
  The shortcut is Conv1d 1x1 (stride) + BN when the stride or width changes. Every conv pads
  ``(k - 1) // 2`` and has no bias;
* as the reference's ``_make_layer``, only the first block of a stage gets ``kernel_size``; the
  others get the block's default, ``later_kernel_size`` ([3, 3]; a bottleneck uses the first
  entry). ``fastai_model`` passes ``kernel_size=5``, which a basic block turns into
  ``[5, 5 // 2 + 1] = [5, 3]``, the same as ``resnet1d_wang``'s own default;
* features: concat pooling (max ++ average over time) of the last stage, ``2 * width``; head:
  the benchmark's (``ecgfoundry.nn.benchmark_head``).

``resnet1d-wang`` (``resnet1d_wang``): basic blocks, ``layers=[1, 1, 1]``, ``kernel_size=[5, 3]``,
stem kernel 7, stride 1, no stem pooling, ``inplanes=128``: 12 -> 128 channels, lengths 250 ->
250 -> 125 -> 63, features 256.

Parameters (12 leads), derived by reading the reference's layer shapes: stem 12*128*7 + 256 =
11,008; stage 1 block 128*128*(5 + 3) + 2*256 = 131,584; stages 2 and 3 add a 1x1 shortcut
(16,384 + 256): 148,224 each; body 439,040; head ``BN(256) Drop Linear(256,128) ReLU BN(128)
Drop Linear(128,n)`` = 33,664 + 129 n. Total **473,349** for 5 classes (PTB-XL superdiagnostic),
**481,863** for 71 (all statements). Verified also by instantiating the unmodified reference
module (with stand-ins for the three fastai v1 helpers it imports) and counting: the same
numbers, and the same outputs with its weights copied in order. We could not find the "about
0.57 M" figure in the repository or its issues; it does not match this definition.

Initialisation: the benchmark's ``weight_init`` (kaiming-normal convs/Linears, BN 1/0), which
``fastai_model.fit`` applies before training from scratch. Added here: stochastic depth
(``drop_path_rate``, default 0) on every block's residual branch, before the addition.

Input: :data:`ecgfoundry.nn.benchmark_head.PTBXL_BENCHMARK_SPEC`: 100 Hz, 2.5 s (250 samples,
the benchmark's random-crop length; any length works, the pooling is adaptive), the 12 leads
in PTB-XL order, normalisation ``"none"``: the benchmark's single global mean/std
standardisation is an affine map that the first conv + BatchNorm absorb.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any, ClassVar

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

BLOCKS = ("basic", "bottleneck")
EXPANSION = {"basic": 1, "bottleneck": 4}

# resnet1d_wang (code/models/resnet1d.py) as fastai_model builds it.
RESNET1D_WANG: dict[str, Any] = {
    "block": "basic",
    "layers": [1, 1, 1],
    "kernel_size": [5, 3],
    "stem_kernel_size": 7,
    "stem_stride": 1,
    "stem_pool": False,
    "inplanes": 128,
}


@dataclass
class ResNet1dConfig(ModelConfig, BenchmarkHeadConfig):
    """ResNet1d hyperparameters; defaults are ``resnet1d_wang`` with the benchmark's head.

    ``kernel_size``: kernels of the first block of each stage ([conv1, conv2] for a basic block;
    a bottleneck uses ``kernel_size[0]``); ``later_kernel_size``: those of the other blocks.
    """

    leads_field: ClassVar[str] = "in_channels"

    in_channels: int = 12
    block: str = "basic"
    layers: list[int] = field(default_factory=lambda: list(RESNET1D_WANG["layers"]))
    kernel_size: list[int] = field(default_factory=lambda: list(RESNET1D_WANG["kernel_size"]))
    later_kernel_size: list[int] = field(default_factory=lambda: [3, 3])
    stem_kernel_size: int = 7
    stem_stride: int = 1
    stem_pool: bool = False
    inplanes: int = 128
    fix_feature_dim: bool = True
    stride: int = 2

    def __post_init__(self) -> None:
        self.layers = [int(n) for n in self.layers]
        self.kernel_size = [int(k) for k in self.kernel_size]
        self.later_kernel_size = [int(k) for k in self.later_kernel_size]
        problems = self.benchmark_problems(self.in_channels)
        if self.block not in BLOCKS:
            problems.append(f"block must be one of {BLOCKS}, got {self.block!r}")
        if not self.layers or any(n < 1 for n in self.layers):
            problems.append(f"layers needs at least one stage of >= 1 block, got {self.layers}")
        for name in ("kernel_size", "later_kernel_size"):
            kernels = getattr(self, name)
            if len(kernels) != 2 or min(kernels) < 1:
                problems.append(f"{name} needs two kernel sizes >= 1, got {kernels}")
        if min(self.stem_kernel_size, self.stem_stride, self.inplanes, self.stride) < 1:
            problems.append("stem_kernel_size, stem_stride, inplanes and stride must be >= 1")
        if problems:
            raise ValueError("ResNet1dConfig: " + "; ".join(problems))

    def stage_widths(self) -> list[int]:
        """Block width (before expansion) of each stage."""
        return [
            self.inplanes if self.fix_feature_dim else self.inplanes * 2**i
            for i in range(len(self.layers))
        ]


def _shortcut(in_channels: int, out_channels: int, stride: int) -> nn.Module | None:
    if stride == 1 and in_channels == out_channels:
        return None
    return nn.Sequential(
        nn.Conv1d(in_channels, out_channels, 1, stride=stride, bias=False),
        nn.BatchNorm1d(out_channels),
    )


class BasicBlock1d(nn.Module):
    """conv(k1, stride) BN ReLU conv(k2) BN + shortcut, ReLU."""

    def __init__(
        self, in_channels: int, width: int, stride: int, kernels: list[int], drop_path: float
    ):
        super().__init__()
        self.convs = nn.Sequential(
            conv_bn_relu(in_channels, width, kernels[0], stride),
            conv_bn_relu(width, width, kernels[1], relu=False),
        )
        self.shortcut = _shortcut(in_channels, width, stride)
        self.drop_path = DropPath(drop_path)

    def forward(self, x: Tensor) -> Tensor:
        shortcut = x if self.shortcut is None else self.shortcut(x)
        return F.relu(self.drop_path(self.convs(x)) + shortcut)


class Bottleneck1d(nn.Module):
    """conv1x1 BN ReLU conv(k, stride) BN ReLU conv1x1 (4x width) BN + shortcut, ReLU."""

    expansion = 4

    def __init__(
        self, in_channels: int, width: int, stride: int, kernels: list[int], drop_path: float
    ):
        super().__init__()
        out_channels = width * self.expansion
        self.convs = nn.Sequential(
            conv_bn_relu(in_channels, width, 1),
            conv_bn_relu(width, width, kernels[0], stride),
            conv_bn_relu(width, out_channels, 1, relu=False),
        )
        self.shortcut = _shortcut(in_channels, out_channels, stride)
        self.drop_path = DropPath(drop_path)

    def forward(self, x: Tensor) -> Tensor:
        shortcut = x if self.shortcut is None else self.shortcut(x)
        return F.relu(self.drop_path(self.convs(x)) + shortcut)


class ResNet1d(BenchmarkCNN):
    """The benchmark's ResNet1d. ``forward_features``: [B, leads, samples] -> [B, 2 * width]."""

    family = "resnet1d"
    config_class = ResNet1dConfig

    def __init__(self, config: ResNet1dConfig):
        super().__init__(config)
        del self.head  # re-created last by reset_head, so the state dict ends with it
        stem: list[nn.Module] = [
            *conv_bn_relu(
                config.in_channels, config.inplanes, config.stem_kernel_size, config.stem_stride
            )
        ]
        if config.stem_pool:
            stem.append(nn.MaxPool1d(3, stride=2, padding=1))
        self.stem = nn.Sequential(*stem)
        block_class = BasicBlock1d if config.block == "basic" else Bottleneck1d
        expansion = EXPANSION[config.block]
        rates = iter(drop_path_rates(config.drop_path_rate, sum(config.layers)))
        channels = config.inplanes
        stages = []
        for i, (width, blocks) in enumerate(zip(config.stage_widths(), config.layers, strict=True)):
            stage = []
            for j in range(blocks):
                stage.append(
                    block_class(
                        channels,
                        width,
                        stride=(1 if i == 0 else config.stride) if j == 0 else 1,
                        kernels=config.kernel_size if j == 0 else config.later_kernel_size,
                        drop_path=next(rates),
                    )
                )
                channels = width * expansion
            stages.append(nn.Sequential(*stage))
        self.stages = nn.Sequential(*stages)
        self.pool_and_initialise(channels)
        self.reset_head(config.num_classes, config.labels)

    def iter_units(self, x: Tensor) -> Iterator[Tensor]:
        check_input(x, self.config.in_channels, "ResNet1d")
        x = self.stem(x)
        for stage in self.stages:
            x = stage(x)
            yield x


register_model(
    "resnet1d-wang",
    ResNet1d,
    parameters=439_040,
    description="PTB-XL benchmark resnet1d_wang: 3 basic blocks, 128 channels, concat-pool head",
    **RESNET1D_WANG,
)

__all__ = ["RESNET1D_WANG", "BasicBlock1d", "Bottleneck1d", "ResNet1d", "ResNet1dConfig"]
