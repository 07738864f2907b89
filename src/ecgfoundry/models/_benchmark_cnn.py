"""What the PTB-XL benchmark's task-specific CNNs (resnet1d, xresnet1d, inception1d) share as
models: concat pooling into the embedding, the benchmark's head, its weight initialisation."""

from __future__ import annotations

from collections.abc import Iterator

from torch import Tensor

from ecgfoundry.models.base import ECGModel, last_output
from ecgfoundry.nn.benchmark_head import BenchmarkHead, ConcatPool1d, init_benchmark_weights


class BenchmarkCNN(ECGModel):
    """Base of the benchmark's CNNs. A subclass builds its body, then calls
    :meth:`pool_and_initialise` with the body's output channels, then ``reset_head``; it
    implements ``iter_units(x)``, yielding each stage's or residual unit's output [B, C, T]."""

    def iter_units(self, x: Tensor) -> Iterator[Tensor]:
        raise NotImplementedError

    def forward_body(self, x: Tensor) -> Tensor:
        return last_output(self.iter_units(x))

    def intermediates(self, x: Tensor) -> list[Tensor]:
        return [unit.transpose(1, 2) for unit in self.iter_units(x)]

    def forward_features(self, x: Tensor) -> Tensor:
        return self.pool(self.forward_body(x))

    def forward_sequence(self, x: Tensor) -> Tensor:
        return self.forward_body(x).transpose(1, 2)

    def pool_and_initialise(self, out_channels: int) -> None:
        """Concat pooling after the body, then the benchmark's initialisation of everything."""
        self.out_channels = out_channels
        self.pool = ConcatPool1d(self.config.concat_pooling)
        init_benchmark_weights(self)

    @property
    def num_features(self) -> int:
        return self.out_channels * (2 if self.config.concat_pooling else 1)

    @property
    def num_sequence_features(self) -> int:
        return self.out_channels  # concat pooling doubles it for the embedding only

    def reset_head(self, num_classes: int | None, labels: list[str] | None = None,
                   kind: str | None = None) -> None:  # fmt: skip
        """The benchmark's head (hidden Linear, BN, dropout) with ``num_classes`` outputs, or
        an attention head (``kind``)."""
        super().reset_head(num_classes, labels, kind)
        if num_classes and self.config.head == "linear":
            self.head = BenchmarkHead.from_config(self.config, self.num_features, num_classes)
