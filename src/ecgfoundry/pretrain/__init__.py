"""Pretraining on the training engine: the corpus, objectives (CPC as ECG-CPC does it;
supervised), record manifests and the leakage guard; ``pretrain`` runs one."""

from ecgfoundry.pretrain.api import OBJECTIVES, pretrain
from ecgfoundry.pretrain.cpc import CPCConfig, CPCObjective, cpc_logits, info_nce, sample_negatives
from ecgfoundry.pretrain.run import pretrain_cpc

__all__ = [
    "OBJECTIVES",
    "CPCConfig",
    "CPCObjective",
    "cpc_logits",
    "info_nce",
    "pretrain",
    "pretrain_cpc",
    "sample_negatives",
]
