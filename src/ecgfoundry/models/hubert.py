"""HuBERT-ECG (Coppola et al., medRxiv 2024.11.14.24317328) on transformers' ``HubertModel``.

HuBERT-ECG is HuBERT trained on ECGs: the 12 leads of a 5 s, 100 Hz recording are concatenated
lead after lead into one sequence of 12 x 500 = 6000 samples (HuBERT-ECG ``code/dataset.py``
flattens the ``(12, samples)`` array with ``reshape(-1)`` and decimates 500 -> 100 Hz) and fed to
a convolutional feature encoder (5 layers, kernels 10,3,3,2,2, strides 4,2,2,2,2: 6000 -> 93
frames) and a post-LN transformer. Classification mean-pools ``last_hidden_state`` over time
(``HuBERTForECGClassification`` without an attention mask); :meth:`HubertECG.forward_features`
returns exactly that.

The backbone is ``transformers.HubertModel`` built from a plain ``HubertConfig`` (no remote
code), attention ``sdpa`` by default (``eager`` matches within float tolerance). HuBERT-ECG's
pretraining heads (``final_proj`` / ``label_embedding``: one projection and one codebook
embedding per k-means vocabulary in ``vocab_sizes``) are kept so published weights convert
one-to-one and a pretraining loop can use :meth:`HubertECG.pretraining_logits`; nothing at
inference reads them. ``vocab_sizes=[]`` builds the model without them.

Regularisation: stochastic depth (``drop_path_rate``) drops the attention and the feed-forward
branch of each encoder layer per sample, rates rising linearly with depth (identity in eval).
transformers' own ``layerdrop`` (skip whole layers for the whole batch) stays available as a
config field but defaults to 0 here, also when converting checkpoints trained with 0.1, so
stochastic depth is the one knob shared with the other families. SpecAugment-style time masking
(``mask_time_prob``) is off unless ``apply_spec_augment=True`` (HuBERT-ECG turns it off for
fine-tuning; pretraining turns it on).

Preprocessing (:data:`HUBERT_ECG_SPEC`), from HuBERT-ECG ``code/utils.py::ecg_preprocessing``:
band-pass 0.05-47 Hz, per-lead min-max scaling to [-1, 1], 100 Hz, 5 s, leads in the standard
order I, II, III, aVR, aVL, aVF, V1-V6. Their pipeline filters with an FIR filter at the native
rate and scales over the whole recording before cropping; ecgfoundry's pipeline filters with a
Butterworth at 100 Hz and scales the 5 s window, a small documented difference.
"""

from __future__ import annotations

import dataclasses
import json
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import torch
from torch import Tensor, nn

from ecgfoundry.models.base import ECGModel, ModelConfig
from ecgfoundry.models.io import (
    CheckpointError,
    UnsafeCheckpointError,
    load_state_dict_strict,
    load_torch_checkpoint,
)
from ecgfoundry.models.registry import (
    register_converter,
    register_folder_format,
    register_model,
)
from ecgfoundry.nn.layers import DropPath
from ecgfoundry.spec import STANDARD_LEADS, InputSpec

if TYPE_CHECKING:
    from transformers import HubertConfig, HubertModel

HUBERT_ECG_SPEC = InputSpec(
    fs=100, seconds=5, leads=STANDARD_LEADS, normalisation="minmax", bandpass=(0.05, 47.0)
)
# HuBERT-ECG's cosine-similarity temperature for the pretraining logits (code/hubert_ecg.py).
PRETRAINING_TEMPERATURE = 0.1


@dataclass
class HubertECGConfig(ModelConfig):
    """HuBERT-ECG hyperparameters. Defaults are the published *base* size.

    The fields from ``hidden_size`` to ``mask_feature_length`` have transformers' ``HubertConfig``
    meaning. Extras: ``vocab_sizes`` (one pretraining head per k-means vocabulary; ``[]`` = no
    heads; HuBERT-ECG's ``ensemble_length`` is ``len(vocab_sizes)``), ``classifier_proj_size``
    (their projection size), ``mask_embedding`` (keep the learned mask vector
    ``masked_spec_embed``; transformers creates it only when a masking probability is > 0, but
    HuBERT-ECG's fine-tuned checkpoints carry it with masking off), ``apply_spec_augment``
    (mask in training mode), ``attn_implementation`` (``sdpa`` or ``eager``).
    """

    hidden_size: int = 768
    num_hidden_layers: int = 12
    num_attention_heads: int = 12
    intermediate_size: int = 3072
    hidden_act: str = "gelu"
    conv_dim: list[int] = field(default_factory=lambda: [512] * 5)
    conv_kernel: list[int] = field(default_factory=lambda: [10, 3, 3, 2, 2])
    conv_stride: list[int] = field(default_factory=lambda: [4, 2, 2, 2, 2])
    conv_bias: bool = False
    feat_extract_norm: str = "group"
    feat_extract_activation: str = "gelu"
    feat_proj_layer_norm: bool = True
    do_stable_layer_norm: bool = False
    num_conv_pos_embeddings: int = 128
    num_conv_pos_embedding_groups: int = 16
    layer_norm_eps: float = 1e-5
    hidden_dropout: float = 0.1
    activation_dropout: float = 0.1
    attention_dropout: float = 0.1
    feat_proj_dropout: float = 0.0
    layerdrop: float = 0.0
    mask_time_prob: float = 0.33
    mask_time_length: int = 1
    mask_time_min_masks: int = 2
    mask_feature_prob: float = 0.0
    mask_feature_length: int = 10
    apply_spec_augment: bool = False
    mask_embedding: bool = True
    classifier_proj_size: int = 256
    vocab_sizes: list[int] = field(default_factory=lambda: [100])
    attn_implementation: str = "sdpa"
    spec: dict[str, Any] = field(default_factory=HUBERT_ECG_SPEC.to_dict)

    def __post_init__(self) -> None:
        for name in ("conv_dim", "conv_kernel", "conv_stride", "vocab_sizes"):
            setattr(self, name, [int(v) for v in getattr(self, name)])
        if not len(self.conv_dim) == len(self.conv_kernel) == len(self.conv_stride) > 0:
            raise ValueError("conv_dim, conv_kernel and conv_stride need the same (>0) length")
        if self.hidden_size % self.num_attention_heads:
            raise ValueError("hidden_size must be divisible by num_attention_heads")
        if self.hidden_size % self.num_conv_pos_embedding_groups:
            raise ValueError("hidden_size must be divisible by num_conv_pos_embedding_groups")
        if self.feat_extract_norm not in ("group", "layer"):
            raise ValueError("feat_extract_norm must be 'group' or 'layer'")
        if any(v < 1 for v in self.vocab_sizes):
            raise ValueError(f"vocab_sizes must be positive, got {self.vocab_sizes}")
        for name in _PROBABILITIES:
            if not 0.0 <= getattr(self, name) < 1.0:
                raise ValueError(f"{name} must be in [0, 1), got {getattr(self, name)}")
        if self.apply_spec_augment and self.mask_time_prob > 0 and not self.mask_embedding:
            raise ValueError(
                "time masking (apply_spec_augment, mask_time_prob > 0) needs mask_embedding"
            )

    @property
    def ensemble_length(self) -> int:
        """HuBERT-ECG's number of pretraining heads."""
        return len(self.vocab_sizes)

    def hf_config(self) -> HubertConfig:
        """The transformers ``HubertConfig`` of the backbone."""
        from transformers import HubertConfig

        names = [f.name for f in dataclasses.fields(self) if f.name in _HF_FIELDS]
        return HubertConfig(
            **{name: getattr(self, name) for name in names},
            apply_spec_augment=self.apply_spec_augment,
            attn_implementation=self.attn_implementation,
        )


_PROBABILITIES = (
    "hidden_dropout", "activation_dropout", "attention_dropout", "feat_proj_dropout", "layerdrop",
    "mask_time_prob", "mask_feature_prob",
)  # fmt: skip
# Config fields with transformers' HubertConfig meaning (read from checkpoints' config.json).
_HF_FIELDS = (
    "hidden_size", "num_hidden_layers", "num_attention_heads", "intermediate_size", "hidden_act",
    "conv_dim", "conv_kernel", "conv_stride", "conv_bias", "feat_extract_norm",
    "feat_extract_activation", "feat_proj_layer_norm", "do_stable_layer_norm",
    "num_conv_pos_embeddings", "num_conv_pos_embedding_groups", "layer_norm_eps", "hidden_dropout",
    "activation_dropout", "attention_dropout", "feat_proj_dropout", "layerdrop", "mask_time_prob",
    "mask_time_length", "mask_time_min_masks", "mask_feature_prob", "mask_feature_length",
)  # fmt: skip
# Not taken from a checkpoint's config: training-recipe switches that ecgfoundry sets itself.
_NOT_IMPORTED = ("layerdrop",)


class _BranchEnd(nn.Module):
    """The end of a residual branch: the layer's own dropout, then stochastic depth."""

    def __init__(self, dropout: nn.Module):
        super().__init__()
        self.dropout = dropout
        self.drop_path = DropPath()

    def forward(self, x: Tensor) -> Tensor:
        return self.drop_path(self.dropout(x))


def _add_drop_path(layer: nn.Module) -> None:
    """Put a DropPath at the end of both residual branches of a transformers Hubert encoder
    layer without touching its forward or its state-dict keys (DropPath has no parameters).

    In both layer variants (post-LN and stable-LN) ``layer.dropout`` is applied only to the
    attention output right before its residual add, and ``feed_forward.output_dropout`` is the
    feed-forward branch's last op before its residual add, so wrapping those two dropouts makes
    them ``drop_path(dropout(branch))``. Registration order stays attention, then feed-forward.
    """
    layer.dropout = _BranchEnd(layer.dropout)
    layer.feed_forward.output_dropout = _BranchEnd(layer.feed_forward.output_dropout)


class HubertECG(ECGModel):
    """HuBERT-ECG: ``forward_features(x [B, leads, samples]) -> [B, hidden_size]``.

    ``backbone`` is a ``transformers.HubertModel``; ``final_proj`` / ``label_embedding`` are
    HuBERT-ECG's pretraining heads (unused by ``forward``).
    """

    family = "hubert-ecg"
    config_class = HubertECGConfig
    config: HubertECGConfig

    def __init__(self, config: HubertECGConfig):
        super().__init__(config)
        from transformers import HubertModel

        self.backbone: HubertModel = HubertModel(config.hf_config())
        # transformers makes this vector with the legacy torch.Tensor(n) constructor, which
        # ignores a `with torch.device("meta")` block; remake it (same U(0, 1) init) or drop it.
        if config.mask_embedding:
            self.backbone.masked_spec_embed = nn.Parameter(
                torch.empty(config.hidden_size).uniform_()
            )
        elif hasattr(self.backbone, "masked_spec_embed"):
            del self.backbone.masked_spec_embed
        for layer in self.backbone.encoder.layers:
            _add_drop_path(layer)
        self.final_proj = nn.ModuleList(
            nn.Linear(config.hidden_size, config.classifier_proj_size) for _ in config.vocab_sizes
        )
        self.label_embedding = nn.ModuleList(
            nn.Embedding(v, config.classifier_proj_size) for v in config.vocab_sizes
        )
        self.set_drop_path_rate(config.drop_path_rate)
        self.reset_head(config.num_classes, config.labels)

    @property
    def has_unused_parameters(self) -> bool:
        return True  # the pretraining heads and mask vector get no gradient when fine-tuning

    @property
    def num_features(self) -> int:
        return self.config.hidden_size

    @staticmethod
    def flatten_leads(x: Tensor) -> Tensor:
        """``[B, leads, samples] -> [B, leads * samples]``: lead after lead, HuBERT-ECG's order
        (all samples of the first lead, then all of the second, ...)."""
        if x.ndim != 3:
            raise ValueError(f"expected [batch, leads, samples], got shape {tuple(x.shape)}")
        return x.reshape(x.shape[0], -1)

    def extract_features(self, x: Tensor) -> Tensor:
        """The convolutional features ``[B, conv_dim[-1], frames]``."""
        return self.backbone.feature_extractor(self.flatten_leads(x))

    def forward_sequence(self, x: Tensor) -> Tensor:
        """``last_hidden_state`` ``[B, frames, hidden_size]`` (93 frames for 5 s at 100 Hz)."""
        return self.backbone(self.flatten_leads(x), return_dict=True).last_hidden_state

    def intermediates(self, x: Tensor) -> list[Tensor]:
        """``hidden_states`` after each transformer layer (the last is ``last_hidden_state``)."""
        out = self.backbone(self.flatten_leads(x), output_hidden_states=True, return_dict=True)
        return list(out.hidden_states[1:])

    def forward_features(self, x: Tensor) -> Tensor:
        """Mean over time of ``last_hidden_state`` (HuBERT-ECG's classification pooling)."""
        return self.forward_sequence(x).mean(dim=1)

    def pretraining_logits(self, hidden: Tensor) -> list[Tensor]:
        """HuBERT-ECG's pretraining logits from ``last_hidden_state``: per vocabulary, cosine
        similarity of the projected frames to each codebook embedding / 0.1, ``[B, T, V_i]``."""
        return [
            torch.cosine_similarity(
                proj(hidden).unsqueeze(2), emb.weight[None, None], dim=-1
            ) / PRETRAINING_TEMPERATURE
            for proj, emb in zip(self.final_proj, self.label_embedding, strict=True)
        ]  # fmt: skip


# -- checkpoint conversion -------------------------------------------------------------------

# Checkpoint key -> ecgfoundry key. Applied in order:
#   1. "hubert_ecg." prefix dropped (HuBERTForECGClassification wraps the backbone under it)
#   2. legacy weight-norm names renamed:
#        encoder.pos_conv_embed.conv.weight_g -> ...conv.parametrizations.weight.original0
#        encoder.pos_conv_embed.conv.weight_v -> ...conv.parametrizations.weight.original1
#   3. final_proj.N.* and label_embedding.N.* stay (pretraining heads, top level)
#      classifier.weight / classifier.bias  -> head.weight / head.bias (linear fine-tuned head)
#      everything else (HubertModel)        -> backbone.<key>
_WRAPPER_PREFIX = "hubert_ecg."
_POS_CONV = "encoder.pos_conv_embed.conv."
_WEIGHT_NORM_RENAMES = {
    f"{_POS_CONV}weight_g": f"{_POS_CONV}parametrizations.weight.original0",
    f"{_POS_CONV}weight_v": f"{_POS_CONV}parametrizations.weight.original1",
}
_HEAD_RENAMES = {"classifier.weight": "head.weight", "classifier.bias": "head.bias"}
_TOP_LEVEL = re.compile(r"^(final_proj|label_embedding)\.\d+\.")


def map_checkpoint_key(key: str) -> str:
    """The ecgfoundry state-dict key of a HuBERT-ECG / HubertModel checkpoint key."""
    key = key.removeprefix(_WRAPPER_PREFIX)
    key = _WEIGHT_NORM_RENAMES.get(key, key)
    if key in _HEAD_RENAMES:
        return _HEAD_RENAMES[key]
    if _TOP_LEVEL.match(key):
        return key
    return f"backbone.{key}"


class _PickledHubertConfig:
    """Inert stand-in for the config object HuBERT-ECG's training scripts pickle
    (``hubert_ecg.HuBERTECGConfig``, or transformers' ``HubertConfig`` in older files).

    torch's weights-only unpickler may build it (``__new__`` then ``__dict__.update``): it has
    no code that runs on load, and its attributes must themselves be plain data or tensors.
    """

    def to_dict(self) -> dict[str, Any]:
        return dict(vars(self))


_CONFIG_STAND_INS: list[tuple[type, str]] = [
    (_PickledHubertConfig, "hubert_ecg.HuBERTECGConfig"),
    (_PickledHubertConfig, "transformers.models.hubert.configuration_hubert.HubertConfig"),
]
_STAND_IN_NAMES = {name for _, name in _CONFIG_STAND_INS}


def _fields_from_hf(hf: Mapping[str, Any], source: Path) -> dict[str, Any]:
    """Our config fields from a transformers/HuBERT-ECG config dict (sizes, dropouts, masking)."""
    if hf.get("conv_pos_batch_norm"):
        raise CheckpointError(source, "conv_pos_batch_norm=True is not a HuBERT-ECG layout")
    out = {}
    for name in _HF_FIELDS:
        if name in hf and hf[name] is not None and name not in _NOT_IMPORTED:
            value = hf[name]
            out[name] = list(value) if isinstance(value, tuple | list) else value
    if hf.get("classifier_proj_size") is not None:
        out["classifier_proj_size"] = hf["classifier_proj_size"]
    return out


def _read_folder(folder: Path) -> tuple[dict[str, Any], dict[str, Tensor]]:
    """config.json and the safetensors weights (one file or an index of shards) of a folder."""
    from safetensors.torch import load_file

    config_path = folder / "config.json"
    if not config_path.is_file():
        raise CheckpointError(folder, "no config.json (expected a Hugging Face model folder)")
    try:
        hf = json.loads(config_path.read_text())
    except json.JSONDecodeError as error:
        raise CheckpointError(config_path, f"invalid JSON ({error})") from error
    if "family" in hf and "format_version" in hf:
        raise CheckpointError(folder, "already an ecgfoundry model folder: use load_model")
    if hf.get("model_type") not in ("hubert", "hubert_ecg"):
        raise CheckpointError(
            config_path, f"model_type {hf.get('model_type')!r} is not 'hubert' or 'hubert_ecg'"
        )
    index = folder / "model.safetensors.index.json"
    if index.is_file():
        files = sorted(set(json.loads(index.read_text())["weight_map"].values()))
    elif (folder / "model.safetensors").is_file():
        files = ["model.safetensors"]
    else:
        raise CheckpointError(folder, "no model.safetensors (only safetensors weights are read)")
    state: dict[str, Tensor] = {}
    for name in files:
        try:
            state.update(load_file(str(folder / name)))
        except Exception as error:  # safetensors raises its own error types
            raise CheckpointError(folder / name, f"unreadable safetensors ({error})") from error
    return hf, state


def _read_native(path: Path, allow_unsafe: bool) -> tuple[dict[str, Any], dict[str, Tensor]]:
    """HuBERT-ECG's ``.pt`` training container, read by torch's weights-only unpickler only."""
    try:
        if allow_unsafe:  # one stand-in class more, never arbitrary unpickling
            obj = load_torch_checkpoint(path, safe_globals=_CONFIG_STAND_INS)
        else:
            obj = load_torch_checkpoint(path)
    except UnsafeCheckpointError as error:
        found = re.search(r"GLOBAL (\S+)", str(error.__cause__))
        needed = found[1] if found else None
        if allow_unsafe or (needed and needed not in _STAND_IN_NAMES):
            raise UnsafeCheckpointError(
                path,
                f"it needs {needed or 'Python objects'} to unpickle, beyond HuBERT-ECG's pickled "
                "config: refused, also with allow_unsafe=True (HuBERT-ECG containers are read by "
                "torch's weights-only unpickler with an inert stand-in for that one class only)",
            ) from error
        raise UnsafeCheckpointError(
            path,
            "a HuBERT-ECG training container: it pickles HuBERT-ECG's config class "
            f"({needed or 'hubert_ecg.HuBERTECGConfig'}), which plain weights-only loading "
            "refuses. Opt in with allow_unsafe=True (CLI: --allow-unsafe) if you trust the file; "
            "it is then still read by torch's weights-only unpickler with an inert stand-in for "
            "that one class, never by arbitrary unpickling.",
        ) from error
    if isinstance(obj, Mapping) and "model_state_dict" in obj:
        state = obj["model_state_dict"]
        config = obj.get("model_config")
        hf = config.to_dict() if isinstance(config, _PickledHubertConfig) else {}
    elif isinstance(obj, Mapping) and obj and all(isinstance(v, Tensor) for v in obj.values()):
        state, hf = obj, {}
    else:
        raise CheckpointError(path, "neither a HuBERT-ECG container nor a state dict")
    return hf, dict(state)


def convert_checkpoint(
    path: str | Path, *, overrides: Mapping[str, Any] | None = None, allow_unsafe: bool = False
) -> HubertECG:
    """A :class:`HubertECG` (eval mode) with the weights of a published checkpoint.

    ``path``: a Hugging Face folder (``config.json`` with model_type ``hubert`` or
    ``hubert_ecg`` + safetensors, e.g. a Hub snapshot of ``Edoardo-BS/hubert-ecg-base``), or
    HuBERT-ECG's own ``.pt`` container (pretraining or linear fine-tuning), which needs
    ``allow_unsafe=True`` because it pickles HuBERT-ECG's config object (read with an inert
    stand-in class, never by arbitrary unpickling). Sizes come from the checkpoint's config; the
    pretraining vocabularies, the mask vector and a linear head from its weights; ``layerdrop``
    is left at 0 (see the module docstring). ``overrides`` set any config field last (the
    architecture of a bare state dict, ``attn_implementation``, ...). Weights load strictly.
    """
    path = Path(path)
    if path.is_file() and path.suffix == ".safetensors":
        path = path.parent
    if path.is_dir():
        hf, raw = _read_folder(path)
    elif path.is_file():
        hf, raw = _read_native(path, allow_unsafe)
    else:
        raise CheckpointError(path, "not found")
    odd = sorted(
        k
        for k in raw
        if (k.removeprefix(_WRAPPER_PREFIX).startswith("classifier.") and k not in _HEAD_RENAMES)
        or k == "label_embedding.weight"
    )
    if odd:
        raise CheckpointError(
            path, f"only a linear classifier head converts, not {odd[:4]} (hidden layer or labels)"
        )
    state = {map_checkpoint_key(k): v for k, v in raw.items()}
    fields = _fields_from_hf(hf, path)
    fields["mask_embedding"] = "backbone.masked_spec_embed" in state
    vocab_sizes = []
    while f"label_embedding.{len(vocab_sizes)}.weight" in state:
        emb = state[f"label_embedding.{len(vocab_sizes)}.weight"]
        vocab_sizes.append(emb.shape[0])
        fields["classifier_proj_size"] = emb.shape[1]
    fields["vocab_sizes"] = vocab_sizes
    if "head.weight" in state:
        fields["num_classes"] = state["head.weight"].shape[0]
    fields.update(overrides or {})
    try:
        config = HubertECGConfig.from_dict(fields)
    except (TypeError, ValueError) as error:
        raise CheckpointError(path, f"invalid configuration ({error})") from error
    model = HubertECG(config)
    load_state_dict_strict(model, state, path)
    return model.eval()


# -- presets ---------------------------------------------------------------------------------

_LICENSE = "weights CC BY-NC 4.0"
_CONVERT = "convert with `ecgfoundry convert hubert-ecg`"
# Published sizes: HuBERT-ECG code/pretrain.py (largeness small/base/large) and the Hub
# config.json files; conv encoder for 100 Hz input (downsampling_factor 5).
_SIZES: dict[str, dict[str, Any]] = {
    "small": dict(hidden_size=512, num_hidden_layers=8, num_attention_heads=8,
                  intermediate_size=2048, classifier_proj_size=256),
    "base": dict(hidden_size=768, num_hidden_layers=12, num_attention_heads=12,
                 intermediate_size=3072, classifier_proj_size=256),
    "large": dict(hidden_size=960, num_hidden_layers=16, num_attention_heads=12,
                  intermediate_size=3840, classifier_proj_size=512),
}  # fmt: skip
HUB_REPOS = {size: f"Edoardo-BS/hubert-ecg-{size}" for size in _SIZES}
_PARAMETERS = {"small": 30_366_592, "base": 93_021_312, "large": 188_187_968}

for _size, _fields in _SIZES.items():
    register_model(
        f"hubert-ecg-{_size}",
        HubertECG,
        description=(
            f"HuBERT-ECG {_size} ({_fields['num_hidden_layers']} layers x "
            f"{_fields['hidden_size']}), self-supervised on 9.1 M 12-lead ECGs"
        ),
        weights=f"hf-hub:{HUB_REPOS[_size]} ({_CONVERT}; {_LICENSE})",
        parameters=_PARAMETERS[_size],
        **_fields,
    )

register_model(
    "hubert-ecg-tiny",
    HubertECG,
    parameters=1_055_968,
    description="HuBERT-ECG layout, tiny (4 layers x 128): trains on a laptop CPU; no weights",
    hidden_size=128,
    num_hidden_layers=4,
    num_attention_heads=4,
    intermediate_size=512,
    conv_dim=[128] * 5,
    num_conv_pos_embeddings=32,
    num_conv_pos_embedding_groups=8,
    classifier_proj_size=64,
)


def is_transformers_folder(path: Path) -> bool:
    """A published HuBERT-ECG folder: transformers ``config.json`` with a HuBERT model_type."""
    config = path / "config.json"
    if not config.is_file():
        return False
    try:
        return json.loads(config.read_text()).get("model_type") in ("hubert", "hubert_ecg")
    except json.JSONDecodeError:
        return False


register_converter(
    "hubert-ecg",
    convert_checkpoint,
    description="HuBERT-ECG: a Hugging Face folder (Edoardo-BS/hubert-ecg-*) or its .pt container",
)
register_folder_format(is_transformers_folder, convert_checkpoint)

__all__ = [
    "HUBERT_ECG_SPEC",
    "HUB_REPOS",
    "HubertECG",
    "HubertECGConfig",
    "convert_checkpoint",
    "is_transformers_folder",
    "map_checkpoint_key",
]
