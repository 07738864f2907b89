"""Self-supervised pretraining objectives on the training engine: CPC as ECG-CPC does it."""

from ecgfoundry.pretrain.cpc import CPCConfig, CPCObjective, cpc_logits, info_nce, sample_negatives
from ecgfoundry.pretrain.run import pretrain_cpc

__all__ = [
    "CPCConfig",
    "CPCObjective",
    "cpc_logits",
    "info_nce",
    "pretrain_cpc",
    "sample_negatives",
]
