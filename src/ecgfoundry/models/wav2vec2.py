"""ECG-FM: the wav2vec 2.0 transformer of fairseq-signals, loadable without fairseq.

ECG-FM (McKeen et al. 2024, https://github.com/bowang-lab/ECG-FM) is a wav2vec 2.0 encoder
pretrained with W2V+CMSC+RLM in fairseq-signals (https://github.com/Jwoo5/fairseq-signals,
``Wav2Vec2CMSCModel`` / ``ECGTransformerClassificationModel``). This is an independent
re-implementation of its forward pass, checked against golden outputs of the original code.

Forward (eval), for ``x`` [B, 12, samples]:

1. conv feature extractor: Conv1d without bias per ``conv_feature_layers`` (dim, kernel, stride);
   in the "default" mode GroupNorm(groups = channels) + GELU after conv 0 only, GELU after the
   others ("layer_norm" mode: LayerNorm over channels + GELU after every conv);
2. transpose to [B, T, C] and LayerNorm over the conv channels (``layer_norm``);
3. ``post_extract_proj`` to ``encoder_embed_dim`` (absent when the sizes are equal);
4. positional conv: x + GELU(SamePad(weight-normed grouped Conv1d, even kernel, padding K//2));
5. ``encoder.layer_norm`` BEFORE the layers (``layer_norm_first`` False), then post-LN layers
   (x = LN(x + attn(x)); x = LN(x + fc2(GELU(fc1(x))))) -> ``last_hidden_state`` [B, T, D];
6. pooled = mean over time of the non-zero entries (ECG-FM's classifier pooling).

No masking or padding mask at inference. The pretraining heads (``mask_emb``, quantizer,
``project_q``, ``final_proj``) are not part of this encoder: :data:`PRETRAINING_ONLY_KEYS` names the
checkpoint entries that are skipped on purpose, and :meth:`Wav2Vec2ECG.local_features`,
:meth:`~Wav2Vec2ECG.project_features` and :meth:`~Wav2Vec2ECG.contextualize` are the steps a
pretraining objective composes around its masking.
"""

from __future__ import annotations

import ast
import math
import re
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, ClassVar

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from ecgfoundry.models.base import ECGModel, ModelConfig, last_output
from ecgfoundry.models.io import CheckpointError, load_state_dict_strict, load_torch_checkpoint
from ecgfoundry.models.registry import register_converter, register_model
from ecgfoundry.nn.layers import (
    DropPath,
    SamePad,
    drop_path_rates,
    grouped_conv1d,
    nonzero_mean,
)
from ecgfoundry.spec import STANDARD_LEADS, InputSpec

ConvLayers = list[tuple[int, int, int]]

# What ECG-FM was trained on: fairseq-signals scripts/preprocess/ecg/preprocess.py @ 6b9e137
# (--desired_sample_rate 500, --segment_seconds 5, per-lead standardisation to mean 0 / std 1 --
# done there over the whole record before segmenting -- leads I, II, III, aVR, aVL, aVF, V1-V6)
# and ECG-FM's notebooks/infer_quickstart.ipynb @ 9cc0d3f (SAMPLE_RATE = 500, N_SAMPLES =
# SAMPLE_RATE*5, LinearResample then Standardize). No filtering (the configs set filter false).
ECGFM_SPEC = InputSpec(fs=500.0, seconds=5.0, leads=STANDARD_LEADS, normalisation="zscore")

# The base (published) size: fairseq-signals' dataclass defaults, which ECG-FM's
# w2v_cmsc_rlm.yaml keeps (it sets encoder_embed_dim 768 and in_d 12).
DEFAULT_CONV_LAYERS = "[(256, 2, 2)] * 4"
DROPOUT_FIELDS = ("dropout", "attention_dropout", "activation_dropout", "dropout_input",
                  "final_dropout")  # fmt: skip
MAX_CONV_LAYERS = 64


# --------------------------------------------------------------------------------------------
# conv_feature_layers: a Python-literal string in fairseq configs, parsed without eval
# --------------------------------------------------------------------------------------------
def parse_conv_layers(spec: str | Sequence[Sequence[int]]) -> ConvLayers:
    """``conv_feature_layers`` as a list of (dim, kernel, stride).

    Accepts the list itself or fairseq's string form, e.g. ``"[(256, 2, 2)] * 4"`` or
    ``"[(512, 10, 5)] + [(512, 3, 2)] * 4"``. The string is read with :mod:`ast` on a restricted
    grammar (list/tuple literals of integers, ``+`` of lists, ``*`` of a list by an integer),
    never evaluated; anything else raises ``ValueError``.
    """
    if isinstance(spec, str):
        try:
            tree = ast.parse(spec.strip(), mode="eval")
        except SyntaxError as error:
            raise ValueError(f"conv_feature_layers {spec!r} is not a list literal") from error
        value = _literal(tree.body, spec)
    else:
        value = [tuple(layer) for layer in spec]
    if not isinstance(value, list) or not value:
        raise ValueError(f"conv_feature_layers {spec!r} must be a non-empty list")
    layers = []
    for layer in value:
        if not (
            isinstance(layer, tuple)
            and len(layer) == 3
            and all(isinstance(v, int) and not isinstance(v, bool) and v > 0 for v in layer)
        ):
            raise ValueError(
                f"conv_feature_layers {spec!r}: each layer must be (dim, kernel, stride) "
                f"positive integers, got {layer!r}"
            )
        layers.append((int(layer[0]), int(layer[1]), int(layer[2])))
    return layers


def _literal(node: ast.AST, text: str) -> Any:
    """Value of a node of the restricted grammar (see :func:`parse_conv_layers`)."""
    if isinstance(node, ast.Constant) and type(node.value) is int:
        return node.value
    if isinstance(node, ast.Tuple):
        return tuple(_literal(e, text) for e in node.elts)
    if isinstance(node, ast.List):
        return [_literal(e, text) for e in node.elts]
    if isinstance(node, ast.BinOp) and isinstance(node.op, ast.Add | ast.Mult):
        left, right = _literal(node.left, text), _literal(node.right, text)
        if isinstance(node.op, ast.Add) and isinstance(left, list) and isinstance(right, list):
            result = left + right
        elif isinstance(node.op, ast.Mult) and isinstance(left, list) and type(right) is int:
            result = _repeat(left, right, text)
        elif isinstance(node.op, ast.Mult) and type(left) is int and isinstance(right, list):
            result = _repeat(right, left, text)
        else:
            raise ValueError(f"conv_feature_layers {text!r}: unsupported operation")
        if len(result) > MAX_CONV_LAYERS:
            raise ValueError(f"conv_feature_layers {text!r}: more than {MAX_CONV_LAYERS} layers")
        return result
    raise ValueError(
        f"conv_feature_layers {text!r}: only list/tuple literals of integers, + and * are "
        f"allowed (found {type(node).__name__})"
    )


def _repeat(items: list, times: int, text: str) -> list:
    if not 0 <= times * len(items) <= MAX_CONV_LAYERS:
        raise ValueError(f"conv_feature_layers {text!r}: more than {MAX_CONV_LAYERS} layers")
    return items * times


def format_conv_layers(layers: ConvLayers) -> str:
    """fairseq's string form of ``layers`` (compressed to ``[(d, k, s)] * n`` when uniform)."""
    if len(set(layers)) == 1:
        return f"[{layers[0]}] * {len(layers)}"
    return str(list(layers))


# --------------------------------------------------------------------------------------------
# Config
# --------------------------------------------------------------------------------------------
@dataclass
class Wav2Vec2Config(ModelConfig):
    """ECG-FM / fairseq-signals wav2vec 2.0 hyperparameters (fairseq-signals' field names).

    Architecture defaults are the published base size. Dropout defaults follow fairseq-signals'
    fine-tuning recipe (``examples/w2v_cmsc/config/finetuning/ecg_transformer/diagnosis.yaml``:
    dropout 0, attention_dropout 0, activation_dropout 0.1, dropout_input 0, final_dropout 0).
    ``feature_grad_mult`` scales the conv extractor's gradients: 1 trains it normally, 0 freezes
    it (fairseq-signals' fine-tuning default), 0.1 is its pretraining value.
    ``final_dropout`` is applied to the hidden states before pooling, as in the classifier.
    """

    leads_field: ClassVar[str] = "in_d"

    # conv feature extractor
    conv_feature_layers: ConvLayers | str = DEFAULT_CONV_LAYERS  # [(dim, kernel, stride), ...]
    in_d: int = 12
    extractor_mode: str = "default"  # or "layer_norm"
    conv_bias: bool = False
    feature_grad_mult: float = 1.0
    # transformer
    encoder_layers: int = 12
    encoder_embed_dim: int = 768
    encoder_ffn_embed_dim: int = 3072
    encoder_attention_heads: int = 12
    layer_norm_first: bool = False
    # convolutional positional embedding
    conv_pos: int = 128
    conv_pos_groups: int = 16
    # dropouts
    dropout: float = 0.0
    attention_dropout: float = 0.0
    activation_dropout: float = 0.1
    dropout_input: float = 0.0
    final_dropout: float = 0.0
    spec: dict[str, Any] = field(default_factory=ECGFM_SPEC.to_dict)

    def __post_init__(self) -> None:
        self.conv_feature_layers = parse_conv_layers(self.conv_feature_layers)
        if self.extractor_mode not in ("default", "layer_norm"):
            raise ValueError(f"unknown extractor_mode {self.extractor_mode!r}")
        if self.encoder_embed_dim % self.encoder_attention_heads:
            raise ValueError(
                f"encoder_embed_dim {self.encoder_embed_dim} is not divisible by "
                f"encoder_attention_heads {self.encoder_attention_heads}"
            )
        if self.encoder_embed_dim % self.conv_pos_groups:
            raise ValueError(
                f"encoder_embed_dim {self.encoder_embed_dim} is not divisible by "
                f"conv_pos_groups {self.conv_pos_groups}"
            )
        for name in DROPOUT_FIELDS:
            if not 0.0 <= getattr(self, name) < 1.0:
                raise ValueError(f"{name} must be in [0, 1), got {getattr(self, name)}")
        if self.feature_grad_mult < 0:
            raise ValueError(f"feature_grad_mult must be >= 0, got {self.feature_grad_mult}")
        spec = InputSpec.from_dict(self.spec)
        if len(spec.leads) != self.in_d:
            raise ValueError(f"spec has {len(spec.leads)} leads but in_d is {self.in_d}")
        self.spec = spec.to_dict()

    def to_dict(self) -> dict[str, Any]:
        """As the dataclass fields, with ``conv_feature_layers`` in fairseq's compact string
        form (``"[(256, 2, 2)] * 4"``), which :func:`parse_conv_layers` reads back."""
        data = super().to_dict()
        data["conv_feature_layers"] = format_conv_layers(self.conv_feature_layers)
        return data

    @property
    def conv_dim(self) -> int:
        """Channels of the last conv layer (the local feature size)."""
        return self.conv_feature_layers[-1][0]


# --------------------------------------------------------------------------------------------
# Layers
# --------------------------------------------------------------------------------------------
class _GradMultiply(torch.autograd.Function):
    """Identity forward; gradient multiplied by ``scale`` (fairseq's GradMultiply)."""

    @staticmethod
    def forward(ctx: Any, x: Tensor, scale: float) -> Tensor:
        ctx.scale = scale
        return x.view_as(x)

    @staticmethod
    def backward(ctx: Any, grad: Tensor) -> tuple[Tensor, None]:
        return grad * ctx.scale, None


class Fp32GroupNorm(nn.GroupNorm):
    """GroupNorm computed in float32 (also under autocast), cast back to the input dtype."""

    def forward(self, x: Tensor) -> Tensor:
        weight = self.weight.float() if self.weight is not None else None
        bias = self.bias.float() if self.bias is not None else None
        return F.group_norm(x.float(), self.num_groups, weight, bias, self.eps).type_as(x)


class Fp32ChannelLayerNorm(nn.LayerNorm):
    """LayerNorm over the channels of [B, C, T], in float32 ("layer_norm" extractor mode)."""

    def forward(self, x: Tensor) -> Tensor:
        weight = self.weight.float() if self.weight is not None else None
        bias = self.bias.float() if self.bias is not None else None
        y = F.layer_norm(x.transpose(1, 2).float(), self.normalized_shape, weight, bias, self.eps)
        return y.transpose(1, 2).type_as(x)


class ConvBlock(nn.Module):
    """Conv1d -> [norm] -> GELU (fairseq's extractor dropout is 0 and omitted)."""

    def __init__(self, n_in: int, n_out: int, kernel: int, stride: int, norm: str, bias: bool):
        super().__init__()
        self.conv = nn.Conv1d(n_in, n_out, kernel, stride=stride, bias=bias)
        nn.init.kaiming_normal_(self.conv.weight)
        if norm == "group_norm":
            self.group_norm = Fp32GroupNorm(n_out, n_out, affine=True)
        elif norm == "layer_norm":
            self.layer_norm = Fp32ChannelLayerNorm(n_out, elementwise_affine=True)

    def forward(self, x: Tensor) -> Tensor:
        x = self.conv(x)
        if hasattr(self, "group_norm"):
            x = self.group_norm(x)
        elif hasattr(self, "layer_norm"):
            x = self.layer_norm(x)
        return F.gelu(x)


class ConvFeatureExtractor(nn.Module):
    """[B, in_d, samples] -> [B, C, T]; ``default`` mode normalises after conv 0 only."""

    def __init__(self, layers: ConvLayers, in_d: int, mode: str, bias: bool):
        super().__init__()
        self.conv_layers = nn.ModuleList()
        for i, (dim, kernel, stride) in enumerate(layers):
            norm = "layer_norm" if mode == "layer_norm" else "group_norm" if i == 0 else "none"
            self.conv_layers.append(ConvBlock(in_d, dim, kernel, stride, norm, bias))
            in_d = dim

    def forward(self, x: Tensor) -> Tensor:
        for layer in self.conv_layers:
            x = layer(x)
        return x


class WeightNormConv1d(nn.Module):
    """Conv1d whose weight is ``weight_g * weight_v / ||weight_v||`` with the norm over every
    dimension but ``dim`` 2 (the kernel axis), as ``torch.nn.utils.weight_norm(conv, dim=2)``.

    The parameters keep the names ``weight_g`` [1, 1, K] and ``weight_v`` [C_out, C_in/groups, K].
    """

    def __init__(self, channels: int, kernel: int, groups: int, padding: int):
        super().__init__()
        self.groups, self.padding = groups, padding
        std = math.sqrt(4.0 / (kernel * channels))  # fairseq-signals' init (dropout 0)
        self.weight_v = nn.Parameter(torch.empty(channels, channels // groups, kernel))
        nn.init.normal_(self.weight_v, mean=0.0, std=std)
        with torch.no_grad():
            norm = torch.linalg.vector_norm(self.weight_v, dim=(0, 1), keepdim=True)
        self.weight_g = nn.Parameter(norm)
        self.bias = nn.Parameter(torch.zeros(channels))

    @property
    def weight(self) -> Tensor:
        # the fused op behind torch.nn.utils.weight_norm: v * (g / ||v|| over dims != 2)
        return torch._weight_norm(self.weight_v, self.weight_g, 2)

    def forward(self, x: Tensor) -> Tensor:
        return grouped_conv1d(x, self.weight, self.bias, padding=self.padding, groups=self.groups)


class ConvPositionalEncoding(nn.Module):
    """[B, T, D] -> x + GELU(SamePad(conv(x))): relative positions from a wide grouped conv."""

    def __init__(self, dim: int, kernel: int, groups: int):
        super().__init__()
        self.conv = WeightNormConv1d(dim, kernel, groups, padding=kernel // 2)
        self.same_pad = SamePad(kernel)

    def forward(self, x: Tensor) -> Tensor:
        pos = F.gelu(self.same_pad(self.conv(x.transpose(1, 2))))
        return x + pos.transpose(1, 2)


class SelfAttention(nn.Module):
    """Multi-head self-attention with fused q/k/v (``qkv_proj`` rows: q, k, v) and SDPA."""

    def __init__(self, dim: int, heads: int, dropout: float):
        super().__init__()
        self.heads, self.dropout = heads, dropout
        self.qkv_proj = nn.Linear(dim, 3 * dim)
        self.out_proj = nn.Linear(dim, dim)

    def forward(self, x: Tensor) -> Tensor:
        b, t, d = x.shape
        qkv = self.qkv_proj(x).view(b, t, 3, self.heads, d // self.heads).permute(2, 0, 3, 1, 4)
        q, k, v = qkv.unbind(0)  # each [B, H, T, hd]; scale hd**-0.5 as fairseq
        dropout = self.dropout if self.training else 0.0
        y = F.scaled_dot_product_attention(q, k, v, dropout_p=dropout)
        return self.out_proj(y.transpose(1, 2).reshape(b, t, d))


class TransformerLayer(nn.Module):
    """fairseq-signals' TransformerEncoderLayer (post-LN unless ``layer_norm_first``), with
    stochastic depth on the attention and feed-forward residual branches."""

    def __init__(self, config: Wav2Vec2Config, drop_path: tuple[float, float]):
        super().__init__()
        dim = config.encoder_embed_dim
        self.layer_norm_first = config.layer_norm_first
        heads = config.encoder_attention_heads
        self.self_attn = SelfAttention(dim, heads, config.attention_dropout)
        self.self_attn_layer_norm = nn.LayerNorm(dim)
        self.fc1 = nn.Linear(dim, config.encoder_ffn_embed_dim)
        self.fc2 = nn.Linear(config.encoder_ffn_embed_dim, dim)
        self.final_layer_norm = nn.LayerNorm(dim)
        self.dropout = nn.Dropout(config.dropout)
        self.activation_dropout = nn.Dropout(config.activation_dropout)
        self.drop_path_attn = DropPath(drop_path[0])
        self.drop_path_ffn = DropPath(drop_path[1])

    def _ffn(self, x: Tensor) -> Tensor:
        return self.fc2(self.activation_dropout(F.gelu(self.fc1(x))))

    def forward(self, x: Tensor) -> Tensor:
        if self.layer_norm_first:
            x = x + self.drop_path_attn(self.dropout(self.self_attn(self.self_attn_layer_norm(x))))
            return x + self.drop_path_ffn(self.dropout(self._ffn(self.final_layer_norm(x))))
        x = self.self_attn_layer_norm(x + self.drop_path_attn(self.dropout(self.self_attn(x))))
        return self.final_layer_norm(x + self.drop_path_ffn(self.dropout(self._ffn(x))))


class TransformerEncoder(nn.Module):
    """``layer_norm`` then the layers (post-LN); with ``layer_norm_first``, layers then norm."""

    def __init__(self, config: Wav2Vec2Config):
        super().__init__()
        self.layer_norm_first = config.layer_norm_first
        self.dropout = nn.Dropout(config.dropout)
        rates = drop_path_rates(config.drop_path_rate, 2 * config.encoder_layers)
        self.layers = nn.ModuleList(
            TransformerLayer(config, (rates[2 * i], rates[2 * i + 1]))
            for i in range(config.encoder_layers)
        )
        self.layer_norm = nn.LayerNorm(config.encoder_embed_dim)
        self.apply(_init_bert_params)

    def iter_layers(self, x: Tensor) -> Iterator[Tensor]:
        """Each layer's output, in turn (before the final norm of ``layer_norm_first``)."""
        if not self.layer_norm_first:
            x = self.layer_norm(x)
        x = self.dropout(x)
        for layer in self.layers:
            x = layer(x)
            yield x

    def forward_layers(self, x: Tensor) -> list[Tensor]:
        """Each layer's output; with ``layer_norm_first`` the last one normalised, as the
        encoder's output is."""
        outputs = list(self.iter_layers(x))
        outputs[-1] = self._final(outputs[-1])
        return outputs

    def _final(self, x: Tensor) -> Tensor:
        return self.layer_norm(x) if self.layer_norm_first else x

    def forward(self, x: Tensor) -> Tensor:
        return self._final(last_output(self.iter_layers(x)))


def _init_bert_params(module: nn.Module) -> None:
    """fairseq's init of the transformer: linear weights N(0, 0.02), biases 0."""
    if isinstance(module, nn.Linear):
        nn.init.normal_(module.weight, mean=0.0, std=0.02)
        if module.bias is not None:
            nn.init.zeros_(module.bias)


# --------------------------------------------------------------------------------------------
# Model
# --------------------------------------------------------------------------------------------
class Wav2Vec2ECG(ECGModel):
    """ECG-FM's wav2vec 2.0 encoder (+ optional linear head on the pooled embedding).

    ``forward_features(x)`` [B, in_d, samples] -> pooled [B, D];
    ``forward_sequence(x)`` -> last hidden state [B, T, D].
    """

    family: ClassVar[str] = "ecgfm"
    config_class: ClassVar[type[ModelConfig]] = Wav2Vec2Config
    config: Wav2Vec2Config

    def __init__(self, config: Wav2Vec2Config):
        super().__init__(config)
        c = config
        self.feature_extractor = ConvFeatureExtractor(
            c.conv_feature_layers, c.in_d, c.extractor_mode, c.conv_bias
        )
        self.layer_norm = nn.LayerNorm(c.conv_dim)
        self.post_extract_proj = (
            nn.Linear(c.conv_dim, c.encoder_embed_dim)
            if c.conv_dim != c.encoder_embed_dim
            else nn.Identity()
        )
        self.dropout_input = nn.Dropout(c.dropout_input)
        self.conv_pos = ConvPositionalEncoding(c.encoder_embed_dim, c.conv_pos, c.conv_pos_groups)
        self.encoder = TransformerEncoder(c)
        self.final_dropout = nn.Dropout(c.final_dropout)
        self.reset_head(c.num_classes, c.labels)

    @property
    def num_features(self) -> int:
        return self.config.encoder_embed_dim

    def conv_features(self, x: Tensor) -> Tensor:
        """The conv stack's output [B, C, T] (gradient scaled by ``feature_grad_mult``)."""
        mult = self.config.feature_grad_mult
        if mult == 0.0:
            with torch.no_grad():
                return self.feature_extractor(x)
        features = self.feature_extractor(x)
        if mult != 1.0 and torch.is_grad_enabled():
            features = _GradMultiply.apply(features, mult)
        return features

    def local_features(self, x: Tensor) -> Tensor:
        """Layer-normed conv features [B, T, C] (fairseq's unmasked ``features``; the
        quantizer's input in pretraining)."""
        return self.layer_norm(self.conv_features(x).transpose(1, 2))

    def project_features(self, features: Tensor) -> Tensor:
        """[B, T, C] -> [B, T, D]: ``post_extract_proj`` and input dropout (masking goes after)."""
        return self.dropout_input(self.post_extract_proj(features))

    def contextualize(self, x: Tensor) -> Tensor:
        """[B, T, D] -> last hidden state [B, T, D]: positional conv, then the transformer."""
        return self.encoder(self.conv_pos(x))

    def forward_sequence(self, x: Tensor) -> Tensor:
        """Per-step hidden states of the last layer, [B, T, D]."""
        return self.contextualize(self.project_features(self.local_features(x)))

    def intermediates(self, x: Tensor) -> list[Tensor]:
        features = self.project_features(self.local_features(x))
        return self.encoder.forward_layers(self.conv_pos(features))

    def forward_features(self, x: Tensor) -> Tensor:
        """Pooled embedding [B, D]: mean over time of the non-zero hidden-state entries."""
        return nonzero_mean(self.final_dropout(self.forward_sequence(x)), dim=1)

    def output_length(self, samples: int) -> int:
        """Time steps T the conv stack makes of ``samples`` input samples."""
        for _, kernel, stride in self.config.conv_feature_layers:
            samples = (samples - kernel) // stride + 1
        return max(samples, 0)


# --------------------------------------------------------------------------------------------
# Checkpoint key map: fairseq-signals <-> ecgfoundry
# --------------------------------------------------------------------------------------------
# Pretraining-only entries of a Wav2Vec2(CMSC)Model checkpoint: not part of the encoder, skipped
# on purpose when converting (a pretraining objective owns them). "x.*" is a prefix.
PRETRAINING_ONLY_KEYS: tuple[str, ...] = (
    "mask_emb",  # learned mask embedding (masked prediction)
    "quantizer.*",  # Gumbel vector quantizer of the targets
    "input_quantizer.*",  # quantize_input variant
    "project_q.*",  # projection of the quantized targets
    "project_inp.*",  # quantize_input variant
    "target_glu.*",  # target_glu variant
    "final_proj.*",  # projection of the context vectors for the contrastive loss
)

# One row per renamed tensor: (fairseq-signals name, ecgfoundry name); {n} is a layer index.
# Keys not listed keep their name (layer_norm.*, post_extract_proj.*, encoder.layer_norm.*,
# encoder.layers.{n}.self_attn.out_proj.*, .self_attn_layer_norm.*, .fc1.*, .fc2.*,
# .final_layer_norm.*). q_proj/k_proj/v_proj are fused, see QKV_PARTS.
# fmt: off
KEY_TABLE: tuple[tuple[str, str], ...] = (
    ("feature_extractor.conv_layers.{n}.0.weight", "feature_extractor.conv_layers.{n}.conv.weight"),
    ("feature_extractor.conv_layers.{n}.0.bias", "feature_extractor.conv_layers.{n}.conv.bias"),
    # "default" mode: Fp32GroupNorm at index 2 of conv block 0
    ("feature_extractor.conv_layers.{n}.2.weight", "feature_extractor.conv_layers.{n}.group_norm.weight"),  # noqa: E501
    ("feature_extractor.conv_layers.{n}.2.bias", "feature_extractor.conv_layers.{n}.group_norm.bias"),  # noqa: E501
    # "layer_norm" mode: Sequential(TransposeLast, Fp32LayerNorm, TransposeLast) at index 2
    ("feature_extractor.conv_layers.{n}.2.1.weight", "feature_extractor.conv_layers.{n}.layer_norm.weight"),  # noqa: E501
    ("feature_extractor.conv_layers.{n}.2.1.bias", "feature_extractor.conv_layers.{n}.layer_norm.bias"),  # noqa: E501
    # positional conv; torch.nn.utils.weight_norm names (fairseq-signals before 4fd498b)
    ("conv_pos.pos_conv.0.weight_g", "conv_pos.conv.weight_g"),
    ("conv_pos.pos_conv.0.weight_v", "conv_pos.conv.weight_v"),
    ("conv_pos.pos_conv.0.bias", "conv_pos.conv.bias"),
    # fine-tuned classifier's Linear(encoder_embed_dim, num_labels)
    ("proj.weight", "head.weight"),
    ("proj.bias", "head.bias"),
)
# fmt: on
# Read-only aliases (fairseq-signals >= 4fd498b saves torch.nn.utils.parametrizations names).
KEY_ALIASES: tuple[tuple[str, str], ...] = (
    ("conv_pos.pos_conv.0.parametrizations.weight.original0", "conv_pos.conv.weight_g"),
    ("conv_pos.pos_conv.0.parametrizations.weight.original1", "conv_pos.conv.weight_v"),
)
# encoder.layers.{n}.self_attn.{q,k,v}_proj.* are stacked (in this order) into .qkv_proj.*
QKV_PARTS: tuple[str, ...] = ("q_proj", "k_proj", "v_proj")
CLASSIFIER_PREFIX = "encoder."  # ECGTransformerClassificationModel keeps the encoder here ...
CLASSIFIER_HEAD = "proj."  # ... and its Linear(encoder_embed_dim, num_labels) here (ours: head.)

_QKV_RE = re.compile(r"^(encoder\.layers\.\d+\.self_attn)\.(q_proj|k_proj|v_proj)\.(weight|bias)$")
_OURS_QKV_RE = re.compile(r"^(encoder\.layers\.\d+\.self_attn)\.qkv_proj\.(weight|bias)$")


def _compile(rows: tuple[tuple[str, str], ...], reverse: bool = False) -> list:
    compiled = []
    for source, target in rows:
        if reverse:
            source, target = target, source
        pattern = re.escape(source).replace(re.escape("{n}"), r"(?P<n>\d+)")
        compiled.append((re.compile(f"^{pattern}$"), target))
    return compiled


_TO_OURS = _compile(KEY_TABLE + KEY_ALIASES)
_TO_FAIRSEQ = _compile(KEY_TABLE, reverse=True)


def _rename(key: str, table: list) -> str:
    for pattern, target in table:
        match = pattern.match(key)
        if match:
            return target.replace("{n}", match.groupdict().get("n") or "")
    return key


def is_pretraining_key(key: str) -> bool:
    """Whether ``key`` is one of :data:`PRETRAINING_ONLY_KEYS`."""
    return any(
        key.startswith(name[:-1]) if name.endswith(".*") else key == name
        for name in PRETRAINING_ONLY_KEYS
    )


def is_classifier_state(state: Mapping[str, Any]) -> bool:
    """A fine-tuned ECGTransformerClassificationModel state (``encoder.*`` + ``proj.*``)."""
    return f"{CLASSIFIER_HEAD}weight" in state and any(
        k.startswith(f"{CLASSIFIER_PREFIX}feature_extractor.") for k in state
    )


def fairseq_to_ecgfoundry(state: Mapping[str, Tensor]) -> tuple[dict[str, Tensor], list[str]]:
    """A fairseq-signals state_dict (pretrained or classifier) in this model's naming.

    Returns (state, ignored pretraining-only keys). Unknown keys are passed through under their
    own names, so a strict load lists them as unexpected.
    """
    if is_classifier_state(state):
        state = {k.removeprefix(CLASSIFIER_PREFIX): v for k, v in state.items()}
    out: dict[str, Tensor] = {}
    ignored: list[str] = []
    qkv: dict[tuple[str, str], dict[str, Tensor]] = {}
    for key, value in state.items():
        if is_pretraining_key(key):
            ignored.append(key)
            continue
        match = _QKV_RE.match(key)
        if match:
            qkv.setdefault((match[1], match[3]), {})[match[2]] = value
            continue
        out[_rename(key, _TO_OURS)] = value
    for (prefix, kind), parts in qkv.items():
        if set(parts) == set(QKV_PARTS):
            out[f"{prefix}.qkv_proj.{kind}"] = torch.cat([parts[p] for p in QKV_PARTS])
        else:  # incomplete: leave them as they are, a strict load reports them
            out.update({f"{prefix}.{p}.{kind}": v for p, v in parts.items()})
    return out, ignored


def ecgfoundry_to_fairseq(
    state: Mapping[str, Tensor], *, classifier: bool = False
) -> dict[str, Tensor]:
    """This model's state_dict in fairseq-signals' naming (old ``weight_g``/``weight_v`` names).

    ``classifier``: ECGTransformerClassificationModel layout (``encoder.`` prefix, ``proj.*``);
    otherwise a pretrained-model layout without the pretraining-only entries.
    """
    out: dict[str, Tensor] = {}
    for key, value in state.items():
        match = _OURS_QKV_RE.match(key)
        if match:
            for part, chunk in zip(QKV_PARTS, value.chunk(3), strict=True):
                out[f"{match[1]}.{part}.{match[2]}"] = chunk
        else:
            out[_rename(key, _TO_FAIRSEQ)] = value
    if classifier:
        out = {(k if k.startswith(CLASSIFIER_HEAD) else CLASSIFIER_PREFIX + k): v
               for k, v in out.items()}  # fmt: skip
    return out


# --------------------------------------------------------------------------------------------
# Conversion of published checkpoints
# --------------------------------------------------------------------------------------------
ARCHITECTURE_FIELDS: tuple[str, ...] = (
    "conv_feature_layers", "in_d", "extractor_mode", "conv_bias", "encoder_layers",
    "encoder_embed_dim", "encoder_ffn_embed_dim", "encoder_attention_heads", "layer_norm_first",
    "conv_pos", "conv_pos_groups",
)  # fmt: skip
# Training fields taken from a fine-tuned classifier's cfg (a pretrained checkpoint's values are
# pretraining settings, so converted pretrained models keep this module's fine-tuning defaults).
FINETUNING_FIELDS: tuple[str, ...] = (*DROPOUT_FIELDS, "feature_grad_mult")
HEAD_FIELDS: tuple[str, ...] = ("num_classes", "labels")


def config_from_fairseq(cfg_model: Mapping[str, Any], *, classifier: bool) -> dict[str, Any]:
    """Config fields from a fairseq-signals ``cfg["model"]`` (missing ones: our defaults, which
    are fairseq-signals' dataclass defaults for the architecture)."""
    names = ARCHITECTURE_FIELDS + (FINETUNING_FIELDS if classifier else ())
    fields = {name: cfg_model[name] for name in names if cfg_model.get(name) is not None}
    if classifier and cfg_model.get("num_labels") is not None:
        fields["num_classes"] = int(cfg_model["num_labels"])
    return fields


def _unpack(checkpoint: Any, path: str | Path) -> tuple[dict[str, Tensor], dict[str, Any]]:
    if not isinstance(checkpoint, Mapping) or not isinstance(checkpoint.get("model"), Mapping):
        raise CheckpointError(path, "not a fairseq-signals checkpoint (no 'model' state_dict)")
    cfg = checkpoint.get("cfg")
    cfg_model = cfg.get("model") if isinstance(cfg, Mapping) else None
    if not isinstance(cfg_model, Mapping):
        raise CheckpointError(path, "fairseq-signals checkpoint without cfg['model'] (sizes)")
    state = dict(checkpoint["model"])
    bad = sorted(k for k, v in state.items() if not isinstance(v, Tensor))
    if bad:
        raise CheckpointError(path, f"non-tensor state_dict entries: {', '.join(bad[:10])}")
    return state, dict(cfg_model)


def convert_checkpoint(
    path: str | Path, *, overrides: dict[str, Any] | None = None, allow_unsafe: bool = False
) -> Wav2Vec2ECG:
    """An ECG-FM / fairseq-signals checkpoint (pretrained ``Wav2Vec2(CMSC)Model`` or fine-tuned
    ``ECGTransformerClassificationModel``) as a :class:`Wav2Vec2ECG` in eval mode.

    Sizes come from ``ckpt["cfg"]["model"]`` (for a classifier also its dropouts and
    ``num_labels``); ``overrides`` (config fields) are applied on top. Pretraining-only entries
    (:data:`PRETRAINING_ONLY_KEYS`) are skipped; any other mismatch raises
    :class:`CheckpointError`. A ``num_classes`` override different from the checkpoint's head
    gives a freshly initialised head; ``labels`` name the outputs.
    """
    overrides = dict(overrides or {})
    checkpoint = load_torch_checkpoint(path, allow_unsafe=allow_unsafe)
    state, cfg_model = _unpack(checkpoint, path)
    classifier = is_classifier_state(state)
    mapped, _ = fairseq_to_ecgfoundry(state)  # pretraining-only entries dropped
    head = {k: overrides.pop(k) for k in HEAD_FIELDS if k in overrides}
    fields = config_from_fairseq(cfg_model, classifier=classifier) | overrides
    if "head.weight" in mapped:  # the checkpoint's head decides the loaded size
        fields["num_classes"] = int(mapped["head.weight"].shape[0])
    else:
        fields.pop("num_classes", None)
    try:
        config = Wav2Vec2Config.from_dict(fields)
    except (TypeError, ValueError) as error:
        raise CheckpointError(path, f"unusable configuration: {error}") from error
    model = Wav2Vec2ECG(config)
    load_state_dict_strict(model, mapped, path)
    num_classes = head.get("num_classes", model.config.num_classes) or None
    labels = head.get("labels", model.config.labels)
    if num_classes != model.config.num_classes:
        model.reset_head(num_classes, labels)  # a fresh head of the requested size
    elif "labels" in head:  # keep the loaded head, name its outputs
        if labels and len(labels) != model.num_classes:
            raise ValueError(f"{len(labels)} labels for {model.num_classes} classes")
        model.config.labels = list(labels) if labels else None
    return model.eval()


# --------------------------------------------------------------------------------------------
# Presets
# --------------------------------------------------------------------------------------------
register_model(
    "ecgfm-base",
    Wav2Vec2ECG,
    parameters=90_373_248,
    description="ECG-FM wav2vec 2.0 base (12 x 768, W2V+CMSC+RLM pretraining)",
    weights=(
        "https://huggingface.co/wanglab/ecg-fm: mimic_iv_ecg_physionet_pretrained.pt, "
        "mimic_iv_ecg_finetuned.pt (17 labels); convert with `ecgfoundry convert ecgfm`"
    ),
)
register_model(
    "ecgfm-small",
    Wav2Vec2ECG,
    parameters=3_556_928,
    description="ECG-FM architecture, small (4 x 256) for CPU training",
    conv_feature_layers="[(128, 2, 2)] * 4",
    encoder_layers=4,
    encoder_embed_dim=256,
    encoder_ffn_embed_dim=1024,
    encoder_attention_heads=4,
    conv_pos=64,
)
register_model(
    "ecgfm-tiny",
    Wav2Vec2ECG,
    parameters=80_400,
    description="ECG-FM architecture, tiny (2 x 64; the test fixture's size)",
    conv_feature_layers="[(32, 2, 2)] * 4",
    encoder_layers=2,
    encoder_embed_dim=64,
    encoder_ffn_embed_dim=128,
    encoder_attention_heads=4,
    conv_pos=16,
)
register_converter(
    "ecgfm",
    convert_checkpoint,
    description="ECG-FM / fairseq-signals .pt, pretrained or fine-tuned (wanglab/ecg-fm)",
)

__all__ = [
    "ECGFM_SPEC",
    "KEY_ALIASES",
    "KEY_TABLE",
    "PRETRAINING_ONLY_KEYS",
    "Wav2Vec2Config",
    "Wav2Vec2ECG",
    "config_from_fairseq",
    "convert_checkpoint",
    "ecgfoundry_to_fairseq",
    "fairseq_to_ecgfoundry",
    "format_conv_layers",
    "is_classifier_state",
    "is_pretraining_key",
    "parse_conv_layers",
]
