"""ECG-CPC: a convolutional encoder and a stack of causal S4 layers, pretrained with contrastive
predictive coding on HEEDB (AI4HealthUOL/ecg-fm-benchmarking, ``code/clinical_ts``).

Written from the published architecture; checkpoints of the original code (Lightning ``.ckpt``
files) load after :func:`convert_checkpoint` and give the same outputs (tested against goldens
made with the original code).

Architecture (as in the original ``RNNEncoder`` + ``S4Predictor`` with its "s42" S4 layer):

* NaNs in the input are set to 0 (the original's ``nan_to_num``);
* encoder: blocks Conv1d (no bias, padding ``(k - 1) // 2``) -> BatchNorm1d -> ReLU, with
  ``encoder_kernel_sizes`` / ``encoder_strides`` (published: 4 x 512 wide, kernels 3,1,1,1,
  strides 2,1,1,1: one token per 2 samples); its output [B, T, C] are the CPC targets;
* a Linear(C, d_model) only when the widths differ (none in the published model);
* ``n_layers`` post-norm residual blocks ``u = LayerNorm(u + dropout(S4(u)))``, S4 causal with
  state size ``d_state`` and kernel length ``kernel_length`` tokens
  (:class:`ecgfoundry.nn.s4.S4Layer`); dropout zeroes whole channels (mask tied over time);
* features: the mean over time of the last block (``pooling="mean"``, the benchmark's linear
  probing and linear fine-tuning), or a learnable-query attention pooling (``"attention"``: one
  learned query, q/k/v projections without bias, ``attention_heads`` heads; the benchmark's
  ``frozen`` and ``finetuning_nonlinear`` modes). Head: Linear(d_model, classes); with attention
  pooling without bias (the original's ``c_proj``);
* the SSL head (``ssl_head=True``): a per-step Linear(d_model, C, no bias) on the S4 output
  that CPC uses to predict future encoder outputs; kept so pretraining can continue from the
  published weights; ``forward`` does not use it.

Added here: stochastic depth (``drop_path_rate``) on each S4 block's residual branch.

Input (the published pretraining, ``config_cpc_ecg_s4_heedb.yaml``): 240 Hz, 10 s (2400 samples
-> 1200 tokens = the S4 kernel length), 12 leads, millivolts as they are: the pipeline neither
normalises (``base.normalize: false``; ``--normalize`` is off in the benchmark's ``run.sh``) nor
filters; the benchmark resamples to 240 Hz and fine-tunes on 2.5 s windows (set ``seconds`` in
the spec; the kernel then uses its first 300 taps).
"""

from __future__ import annotations

import math
import re
import warnings
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any, ClassVar

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from ecgfoundry.models.base import ECGModel, ModelConfig, last_output
from ecgfoundry.models.io import (
    CheckpointError,
    load_restricted_checkpoint,
    load_state_dict_strict,
    plain_config,
    rename_key,
)
from ecgfoundry.models.registry import register_converter, register_model
from ecgfoundry.nn.attention import AttentionPool
from ecgfoundry.nn.benchmark_head import check_input
from ecgfoundry.nn.layers import DropPath, drop_path_rates
from ecgfoundry.nn.s4 import S4Layer
from ecgfoundry.spec import STANDARD_LEADS, InputSpec

WEIGHTS_URL = "https://figshare.com/articles/dataset/ECG-CPC_Checkpoint_zip/30192604"

ECGCPC_SPEC: dict[str, Any] = InputSpec(
    fs=240.0, seconds=10.0, leads=STANDARD_LEADS, normalisation="none"
).to_dict()

# The published encoder (config_cpc_ecg_s4_heedb.yaml, ts/enc: rnn).
PUBLISHED_STRIDES = [2, 1, 1, 1]
POOLINGS = ("mean", "attention")


@dataclass
class S4Config(ModelConfig):
    """ECG-CPC hyperparameters; defaults are the published model.

    ``kernel_length``: S4 kernel length Lk in tokens; 0 sets it to the spec's input in tokens.
    ``spec`` left empty is the published input (12 leads); other lead counts need a ``spec``.
    """

    leads_field: ClassVar[str] = "in_channels"

    in_channels: int = 12
    encoder_features: list[int] = field(default_factory=lambda: [512, 512, 512, 512])
    encoder_kernel_sizes: list[int] = field(default_factory=lambda: [3, 1, 1, 1])
    encoder_strides: list[int] = field(default_factory=lambda: list(PUBLISHED_STRIDES))
    d_model: int = 512
    d_state: int = 8
    n_layers: int = 4
    kernel_length: int = 0
    dropout: float = 0.2
    dt_min: float = 0.001
    dt_max: float = 0.1
    pooling: str = "mean"
    attention_heads: int = 16
    ssl_head: bool = True

    def __post_init__(self) -> None:
        self.encoder_features = [int(c) for c in self.encoder_features]
        self.encoder_kernel_sizes = [int(k) for k in self.encoder_kernel_sizes]
        self.encoder_strides = [int(s) for s in self.encoder_strides]
        if not self.spec and self.in_channels == 12:
            self.spec = dict(ECGCPC_SPEC)
        problems = self._problems()
        if problems:
            raise ValueError("S4Config: " + "; ".join(problems))
        if not self.kernel_length:
            self.kernel_length = self.tokens(InputSpec.from_dict(self.spec).samples)

    def tokens(self, samples: int) -> int:
        """Encoder output steps for ``samples`` input samples (ceil per stride; even)."""
        for stride in self.encoder_strides:
            samples = math.ceil(samples / stride)
        return samples + samples % 2

    def _problems(self) -> list[str]:
        problems = []
        encoder = (self.encoder_features, self.encoder_kernel_sizes, self.encoder_strides)
        if not self.encoder_features or len({len(values) for values in encoder}) != 1:
            problems.append("encoder_features, _kernel_sizes and _strides need one equal length")
        sizes = [
            self.in_channels,
            self.d_model,
            self.n_layers,
            *(min(v, default=1) for v in encoder),
        ]
        if min(sizes) < 1:
            problems.append("in_channels, d_model, n_layers and the encoder sizes must be >= 1")
        if self.d_state < 2 or self.d_state % 2:
            problems.append(f"d_state must be even and >= 2, got {self.d_state}")
        if self.kernel_length < 0 or self.kernel_length % 2:
            problems.append(f"kernel_length must be even (0: the spec's), got {self.kernel_length}")
        if not 0 < self.dt_min <= self.dt_max:
            problems.append(f"need 0 < dt_min <= dt_max, got {self.dt_min}, {self.dt_max}")
        if self.pooling not in POOLINGS:
            problems.append(f"pooling must be one of {POOLINGS}, got {self.pooling!r}")
        heads = self.attention_heads
        if self.pooling == "attention" and (heads < 1 or self.d_model % heads):
            problems.append(f"attention_heads {heads} must divide d_model {self.d_model}")
        for name in ("dropout", "drop_path_rate"):
            if not 0.0 <= getattr(self, name) < 1.0:
                problems.append(f"{name} must be in [0, 1), got {getattr(self, name)}")
        if self.labels is not None and len(self.labels) != (self.num_classes or 0):
            problems.append(f"{len(self.labels)} labels for {self.num_classes} classes")
        if not self.spec:
            problems.append(f"in_channels {self.in_channels}: give a spec naming the leads")
        elif (leads := len(InputSpec.from_dict(self.spec).leads)) != self.in_channels:
            problems.append(f"spec has {leads} leads but in_channels is {self.in_channels}")
        return problems


class ConvBlock(nn.Module):
    """Conv1d (no bias, padding (k - 1) // 2) -> BatchNorm1d -> ReLU."""

    def __init__(self, in_channels: int, out_channels: int, kernel_size: int, stride: int):
        super().__init__()
        padding = (kernel_size - 1) // 2
        self.conv = nn.Conv1d(in_channels, out_channels, kernel_size, stride, padding, bias=False)
        self.norm = nn.BatchNorm1d(out_channels)

    def forward(self, x: Tensor) -> Tensor:
        return F.relu(self.norm(self.conv(x)))


class S4Block(nn.Module):
    """``u = LayerNorm(u + drop_path(dropout(S4(u))))`` on [B, H, L] (post-norm, over H)."""

    def __init__(self, config: S4Config, drop_path: float):
        super().__init__()
        self.s4 = S4Layer(config.d_model, config.d_state, config.kernel_length,
                          config.dropout, config.dt_min, config.dt_max)  # fmt: skip
        self.dropout = nn.Dropout1d(config.dropout)
        self.drop_path = DropPath(drop_path)
        self.norm = nn.LayerNorm(config.d_model)

    def forward(self, u: Tensor) -> Tensor:
        u = u + self.drop_path(self.dropout(self.s4(u)))
        return self.norm(u.transpose(1, 2)).transpose(1, 2)


class S4Model(ECGModel):
    """ECG-CPC: conv encoder -> causal S4 stack -> mean or attention pooling -> linear head."""

    family = "s4"
    config_class = S4Config

    def __init__(self, config: S4Config):
        super().__init__(config)
        widths = [config.in_channels, *config.encoder_features]
        blocks = zip(widths[:-1], widths[1:], config.encoder_kernel_sizes,
                     config.encoder_strides, strict=True)  # fmt: skip
        self.encoder = nn.Sequential(*(ConvBlock(*block) for block in blocks))
        self.proj = nn.Linear(widths[-1], config.d_model) if widths[-1] != config.d_model else None
        rates = drop_path_rates(config.drop_path_rate, config.n_layers)
        self.layers = nn.ModuleList(S4Block(config, rate) for rate in rates)
        self.pool = (
            AttentionPool(config.d_model, config.attention_heads)
            if config.pooling == "attention"
            else None
        )
        self.ssl_head = (
            nn.Linear(config.d_model, widths[-1], bias=False) if config.ssl_head else None
        )
        self.reset_head(config.num_classes, config.labels)

    @property
    def num_features(self) -> int:
        return self.config.d_model

    @property
    def has_unused_parameters(self) -> bool:
        return self.ssl_head is not None  # only the CPC objective uses it

    def forward_tokens(self, x: Tensor) -> Tensor:
        """Encoder output [B, T, C] for input [B, leads, samples] (CPC's targets)."""
        check_input(x, self.config.in_channels, "S4Model")
        return self.encoder(torch.nan_to_num(x)).transpose(1, 2)

    def iter_layers(self, tokens: Tensor) -> Iterator[Tensor]:
        """Each S4 layer's output [B, T, d_model] on encoder tokens [B, T, C], in turn."""
        u = tokens if self.proj is None else self.proj(tokens)
        u = u.transpose(1, 2)
        for layer in self.layers:
            u = layer(u)
            yield u.transpose(1, 2)

    def forward_context(self, tokens: Tensor) -> Tensor:
        """The S4 stack on encoder tokens [B, T, C] -> [B, T, d_model]."""
        return last_output(self.iter_layers(tokens))

    def intermediates(self, x: Tensor) -> list[Tensor]:
        return list(self.iter_layers(self.forward_tokens(x)))

    def forward_sequence(self, x: Tensor) -> Tensor:
        """Per-step features [B, T, d_model] after the S4 stack, before pooling."""
        return self.forward_context(self.forward_tokens(x))

    def forward_features(self, x: Tensor) -> Tensor:
        sequence = self.forward_sequence(x)
        return sequence.mean(dim=1) if self.pool is None else self.pool(sequence)

    def reset_head(self, num_classes: int | None, labels: list[str] | None = None,
                   kind: str | None = None) -> None:  # fmt: skip
        """A fresh head; the linear one without bias after attention pooling (the original's)."""
        super().reset_head(num_classes, labels, kind)
        if num_classes and self.pool is not None and self.config.head == "linear":
            self.head = nn.Linear(self.num_features, num_classes, bias=False)


# -- checkpoint conversion ---------------------------------------------------------------------

# (original, ours) key prefixes. The original's tensors live under ``ts_encoder.`` of the
# pretraining LightningModule; fine-tuned ``main_lite`` checkpoints nest them under
# ``model.model.`` and add the head under ``model.head.`` (see :func:`_strip_wrapper`).
_KEY_MAP: tuple[tuple[str, str], ...] = (
    (r"ts_encoder\.encoder\.layers\.(\d+)\.0\.", r"encoder.\1.conv."),
    (r"ts_encoder\.encoder\.layers\.(\d+)\.1\.", r"encoder.\1.norm."),
    (r"ts_encoder\.predictor\.predictor\.encoder\.", "proj."),
    (r"ts_encoder\.predictor\.predictor\.s4_layers\.(\d+)\.D", r"layers.\1.s4.D"),
    (
        r"ts_encoder\.predictor\.predictor\.s4_layers\.(\d+)\.kernel\.kernel\.",
        r"layers.\1.s4.kernel.",
    ),
    (
        r"ts_encoder\.predictor\.predictor\.s4_layers\.(\d+)\.output_linear\.0\.",
        r"layers.\1.s4.output_linear.",
    ),
    (r"ts_encoder\.predictor\.predictor\.norms\.(\d+)\.", r"layers.\1.norm."),
    (r"ts_encoder\.head_ssl\.proj\.0\.", "ssl_head."),
    (r"head\.head\.c_proj\.", "head."),
    (r"head\.head\.(query|q_proj|k_proj|v_proj)", r"pool.\1"),
    (r"head\.", "head."),
)
_REVERSE_MAP: tuple[tuple[str, str], ...] = (
    (r"encoder\.(\d+)\.conv\.", r"ts_encoder.encoder.layers.\1.0."),
    (r"encoder\.(\d+)\.norm\.", r"ts_encoder.encoder.layers.\1.1."),
    (r"proj\.", "ts_encoder.predictor.predictor.encoder."),
    (r"layers\.(\d+)\.s4\.D", r"ts_encoder.predictor.predictor.s4_layers.\1.D"),
    (r"layers\.(\d+)\.s4\.kernel\.", r"ts_encoder.predictor.predictor.s4_layers.\1.kernel.kernel."),
    (
        r"layers\.(\d+)\.s4\.output_linear\.",
        r"ts_encoder.predictor.predictor.s4_layers.\1.output_linear.0.",
    ),
    (r"layers\.(\d+)\.norm\.", r"ts_encoder.predictor.predictor.norms.\1."),
    (r"ssl_head\.", "ts_encoder.head_ssl.proj.0."),
)
# Pickled config names (ts.enc, ts.pred, base) -> ours.
_HPARAM_NAMES = {
    "features": "encoder_features",
    "kss": "encoder_kernel_sizes",
    "strides": "encoder_strides",
    "model_dim": "d_model",
    "state_dim": "d_state",
    "layers": "n_layers",
    "dropout": "dropout",
    "input_channels": "in_channels",
}
_WRAPPER_PREFIX = "model.model."
_HEAD_PREFIX = "model."
# The packages whose classes a clinical_ts Lightning checkpoint pickles (its Hydra config).
_CONFIG_PACKAGES = ("omegaconf", "clinical_ts", "typing")


def _strip_wrapper(key: str) -> str:
    """An original key without the fine-tuning wrappers (``model.model.``, ``model.``)."""
    if key.startswith(_WRAPPER_PREFIX):
        return key[len(_WRAPPER_PREFIX) :]
    if key.startswith(_HEAD_PREFIX + "head."):
        return key[len(_HEAD_PREFIX) :]
    return key


def map_original_key(key: str) -> str:
    """Our name for a tensor of the original (unknown names come back unchanged, so strict
    loading reports them)."""
    key = _strip_wrapper(key)
    return rename_key(key, _KEY_MAP) or key


def original_key(key: str) -> str:
    """The pretraining checkpoint's name for one of our body tensors."""
    name = rename_key(key, _REVERSE_MAP)
    if name is None:
        raise KeyError(f"no original ECG-CPC name for {key!r}")
    return name


def config_from_hparams(hparams: Mapping[str, Any], path: str | Path) -> dict[str, Any]:
    """Our config fields from the pickled Hydra config (``hyper_parameters``) of a clinical_ts
    checkpoint: ``ts.enc``, ``ts.pred`` and ``base`` (input channels, fs, seconds)."""
    ts = hparams.get("ts") or {}
    enc, pred, base = ts.get("enc") or {}, ts.get("pred") or {}, hparams.get("base") or {}
    unsupported = [
        f"{where}.{name}={section.get(name)!r}"
        for where, section, name, ok in (
            ("ts.enc", enc, "dilations", lambda v: all(d == 1 for d in v)),
            ("ts.enc", enc, "normalization", lambda v: v is True),
            ("ts.enc", enc, "layer_norm", lambda v: v is False),
            ("ts.enc", enc, "multi_prediction", lambda v: v is False),
            ("ts.pred", pred, "causal", lambda v: v is True),
            ("ts.pred", pred, "prenorm", lambda v: v is False),
            ("ts.pred", pred, "batchnorm", lambda v: v is False),
            ("ts.pred", pred, "backbone", lambda v: v == "s42"),
        )
        if name in section and not ok(section[name])
    ]
    if unsupported:
        found = ", ".join(unsupported)
        raise CheckpointError(path, f"not an ECG-CPC layout this family implements: {found}")
    out = {
        _HPARAM_NAMES[k]: v
        for section in (enc, pred, base)
        for k, v in section.items()
        if k in _HPARAM_NAMES
    }
    if base.get("normalize"):
        warnings.warn(f"{path}: the original normalised inputs with its dataset's statistics, "
                      "which the checkpoint does not hold; the spec says 'none'",
                      stacklevel=3)  # fmt: skip
    if "fs" in base and "input_size" in base and out.get("in_channels", 12) == 12:
        spec = {**ECGCPC_SPEC, "fs": float(base["fs"]), "seconds": float(base["input_size"])}
        out["spec"] = spec
    return out


def config_from_weights(state: Mapping[str, Tensor]) -> dict[str, Any]:
    """What our (renamed) tensors fix: widths, kernel sizes, depth, state size, kernel length,
    the SSL head and the downstream head."""
    out: dict[str, Any] = {}
    convs = sorted((int(m[1]), v) for k, v in state.items()
                   if (m := re.fullmatch(r"encoder\.(\d+)\.conv\.weight", k)))  # fmt: skip
    if convs:
        out["in_channels"] = int(convs[0][1].shape[1])
        out["encoder_features"] = [int(v.shape[0]) for _, v in convs]
        out["encoder_kernel_sizes"] = [int(v.shape[2]) for _, v in convs]
    layers = {int(m[1]) for k in state if (m := re.match(r"layers\.(\d+)\.", k))}
    if layers:
        out["n_layers"] = max(layers) + 1
    if "layers.0.norm.weight" in state:
        out["d_model"] = int(state["layers.0.norm.weight"].shape[0])
    if "layers.0.s4.kernel.C" in state:
        out["d_state"] = 2 * int(state["layers.0.s4.kernel.C"].shape[2])
    if "layers.0.s4.kernel.omega" in state:
        out["kernel_length"] = 2 * (int(state["layers.0.s4.kernel.omega"].shape[0]) - 1)
    out["ssl_head"] = "ssl_head.weight" in state
    out["num_classes"] = None
    if "head.weight" in state:
        out["num_classes"] = int(state["head.weight"].shape[0])
        out["pooling"] = "attention" if "pool.query" in state else "mean"
    return out


def _read(path: str | Path) -> tuple[dict[str, Tensor], dict[str, Any]]:
    """The tensors and the plain hyper_parameters of a Lightning container (or a bare state
    dict), read by the restricted unpickler."""
    checkpoint = load_restricted_checkpoint(path, stand_in_modules=_CONFIG_PACKAGES)
    state = checkpoint.get("state_dict", checkpoint) if isinstance(checkpoint, Mapping) else None
    if not isinstance(state, Mapping):
        raise CheckpointError(path, "no state dict found (expected a 'state_dict' entry)")
    tensors = {k: v for k, v in state.items() if isinstance(v, Tensor)}
    if not tensors:
        raise CheckpointError(path, "no tensors found in the checkpoint's state dict")
    hparams = plain_config(checkpoint.get("hyper_parameters")) or {}
    return tensors, hparams if isinstance(hparams, Mapping) else {}


def _check_overrides(overrides: Mapping[str, Any] | None) -> dict[str, Any]:
    known = {f.name for f in fields(S4Config)}
    unknown = sorted(set(overrides or {}) - known)
    if unknown:
        raise ValueError(f"unknown S4 override(s) {unknown}; known: {sorted(known)}")
    return dict(overrides or {})


def convert_checkpoint(
    path: str | Path, *, overrides: Mapping[str, Any] | None = None, allow_unsafe: bool = False
) -> S4Model:
    """An :class:`S4Model` (eval mode) with the weights of an original ECG-CPC checkpoint.

    ``path``: the pretraining Lightning ``.ckpt`` (``ts_encoder.*``, with the SSL head), a
    fine-tuned ``main_lite`` one (``model.model.ts_encoder.*`` + ``model.head.*``: linear or
    attention-pooling head), or a bare state dict of either. It is read by the restricted
    unpickler with inert stand-ins for the OmegaConf/clinical_ts config classes it pickles
    (:func:`ecgfoundry.models.io.load_restricted_checkpoint`), never by plain unpickling, so
    ``allow_unsafe`` changes nothing. Hyperparameters come from the pickled config
    (``hyper_parameters``), then ``overrides`` (our field names), then the tensor shapes, which
    win (with a warning when they disagree). Encoder strides are not in the shapes: the
    config's are used when its kernel sizes match the weights, else the published 2,1,1,1 (the
    released file's config is reported to be stale there). Every tensor must fit the model.
    """
    raw, hparams = _read(path)
    state = {map_original_key(k): v for k, v in raw.items()}
    from_config = config_from_hparams(hparams, path) if hparams else {}
    given = _check_overrides(overrides)
    from_weights = config_from_weights(state)
    values = {**from_config, **given}
    kernels = from_weights.get("encoder_kernel_sizes")
    pickled = from_config.get("encoder_kernel_sizes", kernels)
    if pickled != kernels and "encoder_strides" not in given:
        values["encoder_strides"] = list(PUBLISHED_STRIDES)
        values["encoder_kernel_sizes"] = kernels
        warnings.warn(f"{path}: the pickled config's encoder kernel sizes {pickled} are not the "
                      f"weights' {kernels}; using the published strides {PUBLISHED_STRIDES}",
                      stacklevel=2)  # fmt: skip
    for name, value in from_weights.items():
        if name in values and values[name] != value:
            warnings.warn(f"{path}: the weights have {name}={value}, not {values[name]} as "
                          "configured; using the weights'", stacklevel=2)  # fmt: skip
        values[name] = value
    try:
        model = S4Model(S4Config.from_dict(values))
    except ValueError as error:
        raise CheckpointError(path, f"cannot build the model ({error})") from error
    load_state_dict_strict(model, state, path)
    return model.eval()


# -- presets -----------------------------------------------------------------------------------

# Small presets for training from scratch on a CPU: the same input at 100 Hz (PTB-XL's
# records100), 10 s -> 500 tokens.
SMALL_SPEC: dict[str, Any] = {**ECGCPC_SPEC, "fs": 100.0}

register_model(
    "ecg-cpc",
    S4Model,
    parameters=3_194_880,
    description="ECG-CPC: conv encoder + 4 causal S4 layers (512 wide), CPC on HEEDB; SSL head",
    weights=f"{WEIGHTS_URL} (last_11597276.ckpt; `ecgfoundry convert ecgcpc`)",
)
register_model(
    "s4-small",
    S4Model,
    parameters=208_896,
    description="ECG-CPC layout, 128 wide, 4 S4 layers, 100 Hz: trains on a CPU",
    encoder_features=[128, 128, 128, 128],
    d_model=128,
    spec=SMALL_SPEC,
)
register_model(
    "s4-tiny",
    S4Model,
    parameters=8_256,
    description="ECG-CPC layout, 32 wide, 2 S4 layers, 100 Hz: trains on a CPU",
    encoder_features=[32, 32],
    encoder_kernel_sizes=[3, 1],
    encoder_strides=[2, 1],
    d_model=32,
    n_layers=2,
    attention_heads=4,
    spec=SMALL_SPEC,
)
# ecgfoundry's own foundation model: the s4-small layout with a 4x first stride (25 tokens/s,
# 2.2x faster on a CPU core than stride 2), pretrained with CPC by ecgfoundry; its weights ship
# in the package (ecgfoundry/weights/ecgfoundry-cpc/, with MODEL_CARD.md).
register_model(
    "ecgfoundry-cpc",
    S4Model,
    parameters=208_896,
    description="ecgfoundry's own: ECG-CPC layout, 128 wide, 4 S4 layers, 100 Hz, CPC on PTB-XL "
    "folds 1-8",
    encoder_features=[128, 128, 128, 128],
    encoder_strides=[4, 1, 1, 1],
    d_model=128,
    spec=SMALL_SPEC,
    bundled=True,
)
register_converter(
    "ecgcpc",
    convert_checkpoint,
    description="ECG-CPC's Lightning .ckpt (AI4HealthUOL/ecg-fm-benchmarking; config read safely)",
)

__all__ = [
    "ECGCPC_SPEC",
    "AttentionPool",
    "ConvBlock",
    "S4Block",
    "S4Config",
    "S4Model",
    "config_from_hparams",
    "config_from_weights",
    "convert_checkpoint",
    "map_original_key",
    "original_key",
]
