"""Pretraining on the training engine: the corpus, objectives (CPC as ECG-CPC does it,
W2V+CMSC+RLM as ECG-FM does it, supervised), record manifests and the leakage guard;
``pretrain`` runs one."""

from ecgfoundry.pretrain.api import OBJECTIVES, parse_source, pretrain
from ecgfoundry.pretrain.cpc import CPCConfig, CPCObjective, cpc_logits, info_nce, sample_negatives
from ecgfoundry.pretrain.run import pretrain_cpc
from ecgfoundry.pretrain.w2v import (
    PRETRAINING_MODEL_SETTINGS,
    HeadConfig,
    W2VCMSCRLMObjective,
    W2VConfig,
    W2VPretrainingHead,
    convert_pretraining_head,
    load_pretraining_head,
    save_pretraining_head,
)
from ecgfoundry.pretrain.w2v_run import pretrain_w2v

__all__ = [
    "OBJECTIVES",
    "PRETRAINING_MODEL_SETTINGS",
    "CPCConfig",
    "CPCObjective",
    "HeadConfig",
    "W2VCMSCRLMObjective",
    "W2VConfig",
    "W2VPretrainingHead",
    "convert_pretraining_head",
    "cpc_logits",
    "info_nce",
    "load_pretraining_head",
    "parse_source",
    "pretrain",
    "pretrain_cpc",
    "pretrain_w2v",
    "sample_negatives",
    "save_pretraining_head",
]
