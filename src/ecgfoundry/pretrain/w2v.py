"""ECG-FM's pretraining, W2V+CMSC+RLM, as an objective of the engine.

What the original does (Jwoo5/fairseq-signals: ``models/wav2vec2/wav2vec2.py`` and
``wav2vec2_cmsc.py``, ``models/conv_transformer.py`` ``apply_mask``,
``data/data_utils.py`` ``compute_mask_indices``, ``modules/gumbel_vector_quantizer.py``,
``criterions/wav2vec2_criterion.py`` ``Wav2Vec2WithCMSCCriterion``,
``criterions/cmsc_criterion.py``, ``data/ecg/cmsc_ecg_dataset.py``,
``data/ecg/augmentations.py`` ``RandomLeadsMask``, ``tasks/ecg_pretraining.py``,
``examples/w2v_cmsc/config/pretraining/w2v_cmsc_rlm.yaml``; bowang-lab/ECG-FM ``README.md``):

* **wav2vec 2.0.** Conv features ``z`` (``features_pen``: the mean square of the conv output,
  weight 10) are layer-normed; the quantiser's input is ``dropout_features(z)`` (0.1). The
  projected features are masked: spans of ``mask_length`` 10 starting at
  ``int(mask_prob * T / 10 + U)`` distinct random steps (``mask_prob`` 0.65, at least 2
  spans, overlaps allowed), every row cut to the batch's smallest masked count; masked steps
  take the learned ``mask_emb``. The transformer's outputs at masked steps pass
  ``final_proj``; the targets are the Gumbel product quantiser's codewords of the same steps
  (2 groups x 320 entries, codeword size ``final_dim / 2``; straight-through hard Gumbel
  softmax at a temperature annealed per update, ``max(2 * 0.999995 ** updates, 0.5)``; the
  argmax in evaluation) through ``project_q``. Each masked step is scored against its target
  and 100 distractors drawn uniformly from the other masked steps of the same row (cosine
  similarity / 0.1; a distractor equal to the target scores -inf), cross-entropy with the
  target at index 0 (``infonce``), summed and divided by the number of masked steps. The
  diversity penalty ``(G V - prob_perplexity) / (G V)`` (perplexity of the softmax averaged over
  the masked steps, summed over groups) has weight 0.1 (``loss_weights: [0.1, 10]``).
* **CMSC.** A batch is 64 pairs of adjacent 5-s segments of one record (segments (0, 1),
  (2, 3), ... of the manifest, fixed; records with one segment are left out). A second
  transformer pass on the *unmasked* projected features, mean-pooled over the non-zero
  entries and divided by its (detached) L2 norm, represents each segment;
  ``first @ second.T / 0.1`` scores every first segment against every second one, positives
  wherever the stored ids (``idx``, else ``patient_id``) agree; the loss is the mean of the
  positives' row-wise and column-wise cross-entropies, halved and summed, weight 1.
* **RLM.** Every training segment (``p: [1.0]``) has each lead zeroed independently with
  probability 0.5 (``mask_leads_prob``), in the dataset; validation data is not perturbed.
* Adam with decoupled weight decay 0.01 (fairseq's Adam is AdamW), betas (0.9, 0.98), eps
  1e-6, constant lr 5e-5, no clipping, 200 epochs; 64 pairs per GPU, 4 GPUs, ``update_freq``
  2 (512 pairs = 1024 segments per update); model dropouts 0.1 (``dropout``,
  ``attention_dropout``, ``dropout_input``), ``activation_dropout`` 0, ``feature_grad_mult``
  0.1 (:data:`PRETRAINING_MODEL_SETTINGS`).

Where this differs: a step takes ``batch_size`` pairs in all (64 by default: one GPU's share
of the published update, so CMSC sees the same negatives, with 8 times as many steps, and so
temperature updates, per epoch); pairs are two segments of one *patient* (``patients``; by
default the split's record ids: segments of one record, as published), drawn afresh each epoch
and not necessarily adjacent; a segment left over pairs with itself when it holds two model
inputs (two non-overlapping crops: the corpus's 10-s segments hold two 5-s inputs, the
published pair), else it sits the epoch out; losses are in nats (fairseq logs bits); time
masks come from a generator keyed by (seed, epoch, batch), lead masks from one keyed by
(seed, epoch); evaluation uses fixed pairs, crops, masks and distractors.
"""

from __future__ import annotations

import json
import math
from collections.abc import Callable, Iterator
from contextlib import AbstractContextManager
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, NamedTuple

import numpy as np
import torch
import torch.nn.functional as F
from safetensors import safe_open
from safetensors.torch import save_file
from torch import Tensor, nn

from ecgfoundry.adapt.data import Split, window_loader
from ecgfoundry.engine import distributed as dist
from ecgfoundry.engine.objective import StagePlan, StageSetup, StepOutput, batch_starts
from ecgfoundry.engine.seeding import LEAD_MASKS, SHUFFLE, TIME_MASKS, epoch_rng
from ecgfoundry.models.io import CheckpointError, load_state_dict_strict, load_torch_checkpoint
from ecgfoundry.models.wav2vec2 import Wav2Vec2ECG, is_pretraining_key
from ecgfoundry.nn.layers import nonzero_mean
from ecgfoundry.pretrain.cpc import sample_negatives
from ecgfoundry.pretrain.settings import PretrainSettings

Autocast = Callable[[], AbstractContextManager[None]]
HEAD_FILE = "pretraining_head.safetensors"
HEAD_KEYS = ("mask_emb", "quantizer.", "project_q.", "final_proj.")
MIN_SPANS = 2  # apply_mask's min_masks

# The model settings of ECG-FM's pretraining (w2v_cmsc_rlm.yaml and ConvTransformerConfig's
# defaults): create_model("ecgfm-base", **PRETRAINING_MODEL_SETTINGS).
PRETRAINING_MODEL_SETTINGS: dict[str, float] = {
    "dropout": 0.1, "attention_dropout": 0.1, "activation_dropout": 0.0, "dropout_input": 0.1,
    "feature_grad_mult": 0.1,
}  # fmt: skip


# --------------------------------------------------------------------------------------------
# The pretraining head: mask embedding, Gumbel product quantiser, project_q, final_proj
# --------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class HeadConfig:
    """Sizes of the pretraining head. ``conv_dim``: the conv features (quantiser input);
    ``embed_dim``: the transformer's width; ``final_dim``: the contrastive space;
    ``latent_vars`` codewords in each of ``latent_groups`` groups, of size
    ``latent_dim / latent_groups`` (``latent_dim`` 0: ``final_dim``)."""

    conv_dim: int
    embed_dim: int
    final_dim: int = 256
    latent_vars: int = 320
    latent_groups: int = 2
    latent_dim: int = 0

    def __post_init__(self) -> None:
        for name in ("conv_dim", "embed_dim", "final_dim", "latent_vars", "latent_groups"):
            if getattr(self, name) < 1:
                raise ValueError(f"HeadConfig: {name} must be >= 1, got {getattr(self, name)}")
        if self.latent_dim < 0:
            raise ValueError(f"HeadConfig: latent_dim must be >= 0, got {self.latent_dim}")
        if self.vq_dim % self.latent_groups:
            raise ValueError(f"HeadConfig: latent_groups {self.latent_groups} does not divide "
                             f"the codeword size {self.vq_dim}")  # fmt: skip

    @property
    def vq_dim(self) -> int:
        """Size of a quantised vector (the groups' codewords concatenated)."""
        return self.latent_dim or self.final_dim

    @classmethod
    def for_model(cls, model: Wav2Vec2ECG, **sizes: int) -> HeadConfig:
        """The head of ``model``'s sizes; ``sizes`` override the published ones."""
        return cls(conv_dim=model.config.conv_dim, embed_dim=model.config.encoder_embed_dim,
                   **sizes)  # fmt: skip


class Quantized(NamedTuple):
    """The quantiser's codewords [B, T, vq_dim] and its perplexities (sums over groups): of
    the codes picked (``code``) and of the mean softmax (``prob``, which the diversity
    penalty uses)."""

    x: Tensor
    code_perplexity: Tensor
    prob_perplexity: Tensor


def _perplexity(probs: Tensor) -> Tensor:
    """exp(entropy) of each group's distribution [G, V], summed over groups."""
    return torch.exp(-(probs * torch.log(probs + 1e-7)).sum(-1)).sum()


class GumbelQuantizer(nn.Module):
    """Product quantiser: per group, logits over its ``latent_vars`` codewords
    (``weight_proj``); a straight-through hard Gumbel-softmax sample while training, the
    argmax in eval mode; the groups' codewords (``vars`` [1, G V, vq_dim / G]) concatenated."""

    def __init__(self, config: HeadConfig):
        super().__init__()
        self.groups, self.num_vars = config.latent_groups, config.latent_vars
        self.vars = nn.Parameter(torch.empty(1, self.groups * self.num_vars,
                                             config.vq_dim // self.groups))  # fmt: skip
        nn.init.uniform_(self.vars)
        self.weight_proj = nn.Linear(config.conv_dim, self.groups * self.num_vars)
        nn.init.normal_(self.weight_proj.weight, mean=0.0, std=1.0)
        nn.init.zeros_(self.weight_proj.bias)

    def forward(self, x: Tensor, temperature: float) -> Quantized:
        b, t, _ = x.shape
        logits = self.weight_proj(x).float().view(b * t, self.groups, self.num_vars)
        hard = F.one_hot(logits.argmax(-1), self.num_vars).float()
        code = _perplexity(hard.mean(0))
        prob = _perplexity(logits.softmax(-1).mean(0))
        picks = F.gumbel_softmax(logits, tau=temperature, hard=True) if self.training else hard
        codebook = self.vars.view(self.groups, self.num_vars, -1)
        words = torch.einsum("ngv,gvd->ngd", picks.to(codebook.dtype), codebook)
        return Quantized(words.reshape(b, t, -1), code, prob)


class W2VPretrainingHead(nn.Module):
    """What wav2vec 2.0 pretraining adds to the encoder, under fairseq-signals' names:
    ``mask_emb`` [embed_dim], ``quantizer.vars`` / ``quantizer.weight_proj.*``,
    ``project_q`` (vq_dim -> final_dim) and ``final_proj`` (embed_dim -> final_dim)."""

    def __init__(self, config: HeadConfig):
        super().__init__()
        self.config = config
        self.mask_emb = nn.Parameter(torch.empty(config.embed_dim).uniform_())
        self.quantizer = GumbelQuantizer(config)
        self.project_q = nn.Linear(config.vq_dim, config.final_dim)
        self.final_proj = nn.Linear(config.embed_dim, config.final_dim)

    @classmethod
    def for_model(cls, model: Wav2Vec2ECG, **sizes: int) -> W2VPretrainingHead:
        """A new head for ``model`` (see :meth:`HeadConfig.for_model`)."""
        return cls(HeadConfig.for_model(model, **sizes))

    def check_fits(self, model: Wav2Vec2ECG) -> None:
        """Raise if the head's input sizes are not ``model``'s."""
        c = self.config
        if (c.conv_dim, c.embed_dim) != (model.config.conv_dim, model.config.encoder_embed_dim):
            raise ValueError(
                f"head: sizes conv_dim {c.conv_dim}, embed_dim {c.embed_dim} do not fit the "
                f"model's {model.config.conv_dim}, {model.config.encoder_embed_dim}"
            )


def save_pretraining_head(head: W2VPretrainingHead, folder: str | Path) -> Path:
    """Write ``folder/pretraining_head.safetensors`` (its sizes in the metadata) atomically."""
    path = Path(folder) / HEAD_FILE
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp")
    state = {k: v.detach().contiguous().cpu() for k, v in head.state_dict().items()}
    save_file(state, str(tmp), metadata={"config": json.dumps(asdict(head.config))})
    tmp.replace(path)
    return path


def load_pretraining_head(path: str | Path) -> W2VPretrainingHead:
    """A head saved by :func:`save_pretraining_head` (its file, or the model folder)."""
    path = Path(path)
    if path.is_dir():
        path = path / HEAD_FILE
    if not path.is_file():
        raise CheckpointError(path, "file not found (pretrain_w2v writes it beside the model)")
    try:
        with safe_open(str(path), framework="pt") as handle:
            config = HeadConfig(**json.loads((handle.metadata() or {})["config"]))
            state = {k: handle.get_tensor(k) for k in handle.keys()}  # noqa: SIM118
    except (KeyError, TypeError, ValueError, OSError) as error:
        raise CheckpointError(path, f"not a pretraining head ({error})") from error
    head = W2VPretrainingHead(config)
    load_state_dict_strict(head, state, path)
    return head


def convert_pretraining_head(path: str | Path, *, allow_unsafe: bool = False) -> W2VPretrainingHead:
    """The pretraining head of a fairseq-signals wav2vec 2.0 (CMSC) checkpoint, e.g. ECG-FM's
    ``mimic_iv_ecg_physionet_pretrained.pt``: ``mask_emb``, ``quantizer.*``, ``project_q.*``
    and ``final_proj.*`` (the tensors :func:`~ecgfoundry.models.wav2vec2.convert_checkpoint`
    skips), sized by ``cfg["model"]`` (``latent_groups``) and the tensors' shapes."""
    checkpoint = load_torch_checkpoint(path, allow_unsafe=allow_unsafe)
    state = checkpoint.get("model") if isinstance(checkpoint, dict) else None
    cfg = checkpoint.get("cfg") if isinstance(checkpoint, dict) else None
    cfg_model = cfg.get("model") if isinstance(cfg, dict) else None
    if not isinstance(state, dict) or not isinstance(cfg_model, dict):
        raise CheckpointError(path, "not a fairseq-signals checkpoint (no 'model' state_dict "
                              "and cfg['model'])")  # fmt: skip
    head_state = {k: v for k, v in state.items() if k.startswith(HEAD_KEYS)}
    others = sorted(k for k in state if is_pretraining_key(k) and k not in head_state)
    if others:
        raise CheckpointError(path, f"unsupported wav2vec 2.0 variant (has {', '.join(others)})")
    needed = ("mask_emb", "quantizer.vars", "quantizer.weight_proj.weight", "project_q.weight",
              "final_proj.weight")  # fmt: skip
    if missing := [k for k in needed if k not in head_state]:
        raise CheckpointError(path, f"no pretraining head (missing {', '.join(missing)}): a "
                              "fine-tuned checkpoint has none")  # fmt: skip
    try:
        groups = int(cfg_model.get("latent_groups") or 2)
        final, vq = state["final_proj.weight"].shape[0], state["project_q.weight"].shape[1]
        config = HeadConfig(
            conv_dim=int(state["quantizer.weight_proj.weight"].shape[1]),
            embed_dim=int(state["mask_emb"].shape[0]), final_dim=int(final),
            latent_vars=int(state["quantizer.vars"].shape[1]) // groups, latent_groups=groups,
            latent_dim=0 if vq == final else int(vq),
        )  # fmt: skip
    except (TypeError, ValueError) as error:
        raise CheckpointError(path, f"unusable head sizes ({error})") from error
    head = W2VPretrainingHead(config)
    load_state_dict_strict(head, head_state, path)
    return head


# --------------------------------------------------------------------------------------------
# Pairs, masks and losses
# --------------------------------------------------------------------------------------------
def draw_pairs(patients: np.ndarray, samples: int, window: int,
               rng: np.random.Generator | None) -> tuple[np.ndarray, np.ndarray]:  # fmt: skip
    """Pairs of segments of one patient: ([P, 2] split rows, [P, 2] crop offsets).

    ``patients``: an integer code per split row. A patient's rows pair up in random order; a
    row left over pairs with itself when it holds two windows (two non-overlapping crops),
    else it sits the epoch out. Crops are uniform; the pairs come in random order. With
    ``rng`` None (evaluation): rows in order, crops at the start (a self pair: the first two
    windows), pairs sorted by patient."""
    order = np.arange(len(patients)) if rng is None else rng.permutation(len(patients))
    order = order[np.argsort(patients[order], kind="stable")]
    codes = patients[order]
    positions = np.arange(len(codes))
    first = np.r_[True, codes[1:] != codes[:-1]]
    last = np.r_[codes[1:] != codes[:-1], True]
    rank = positions - np.maximum.accumulate(np.where(first, positions, 0))
    leaders = np.flatnonzero((rank % 2 == 0) & ~last)
    distinct = np.stack([order[leaders], order[leaders + 1]], axis=1)
    alone = order[(rank % 2 == 0) & last] if samples >= 2 * window else order[:0]
    if rng is None:
        starts = np.zeros(distinct.shape, dtype=np.int64)
        own = np.tile(np.array([0, window]), (len(alone), 1))
    else:
        slack = max(samples - 2 * window, 0)  # a self pair's crops: early, then late
        starts = rng.integers(0, samples - window + 1, distinct.shape)
        early = rng.integers(0, slack + 1, len(alone))
        own = np.stack([early, rng.integers(early + window, slack + window + 1)], axis=1)
    pairs = np.concatenate([distinct, np.stack([alone, alone], axis=1)]).astype(np.int64)
    offsets = np.concatenate([starts, own.reshape(-1, 2)]).astype(np.int64)
    if rng is not None:
        shuffled = rng.permutation(len(pairs))
        pairs, offsets = pairs[shuffled], offsets[shuffled]
    return pairs, offsets


def lead_keep(segments: int, leads: int, prob: float, rng: np.random.Generator) -> np.ndarray:
    """Random lead masking: bool [segments, leads], each lead dropped (False) with ``prob``."""
    return rng.random((segments, leads)) >= prob


def time_mask(rows: int, steps: int, prob: float, length: int,
              rng: np.random.Generator) -> np.ndarray:  # fmt: skip
    """wav2vec 2.0's span mask, bool [rows, steps]: ``int(prob * steps / length + U)`` (at
    least 2) distinct span starts, spans of ``length`` (overlaps allowed); every row then keeps
    as many masked steps as the row with fewest."""
    spans = max(MIN_SPANS, int(prob * steps / length + rng.random()))
    if steps < spans + 2:
        raise ValueError(f"mask_prob {prob}, mask_length {length}: {spans} spans need at "
                         f"least {spans + 2} feature steps, the window gives {steps}")  # fmt: skip
    reach = length if steps - length > spans else steps - spans - 1
    chosen = []
    for _ in range(rows):
        starts = rng.choice(steps - reach, spans, replace=False)
        steps_in = np.unique((starts[:, None] + np.arange(length)).ravel())
        chosen.append(steps_in[steps_in < steps])
    count = min(len(c) for c in chosen)
    mask = np.zeros((rows, steps), dtype=bool)
    for row, steps_in in enumerate(chosen):
        if len(steps_in) > count:
            steps_in = rng.choice(steps_in, count, replace=False)
        mask[row, steps_in] = True
    return mask


def contrastive_logits(context: Tensor, targets: Tensor, negatives: Tensor,
                       temperature: float) -> Tensor:  # fmt: skip
    """Scores [B, M, 1 + N] in float32: each masked step's context [B, M, F] against its
    target [B, M, F] (column 0) and the targets at steps ``negatives`` [B, M, N] of its row,
    by cosine similarity / ``temperature``; a distractor equal to the target scores -inf."""
    with torch.autocast(context.device.type, enabled=False):
        context, targets = context.float(), targets.float()
        rows = torch.arange(targets.shape[0], device=targets.device)[:, None, None]
        distractors = targets[rows, negatives]  # [B, M, N, F]
        candidates = torch.cat((targets.unsqueeze(2), distractors), dim=2)
        logits = F.cosine_similarity(context.unsqueeze(2), candidates, dim=-1) / temperature
        same = (distractors == targets.unsqueeze(2)).all(-1)
        return torch.cat((logits[..., :1], logits[..., 1:].masked_fill(same, -math.inf)), -1)


def contrastive_loss(logits: Tensor) -> tuple[Tensor, Tensor]:
    """Per-step cross-entropy with the target at index 0, and whether it was right (highest
    score, and not all scores equal, as fairseq counts)."""
    right = (logits.argmax(-1) == 0) & (logits.argmin(-1) != 0)
    return -logits.log_softmax(-1)[..., 0], right


def cmsc_loss(first: Tensor, second: Tensor, same_patient: Tensor, temperature: float,
              eps: float = 1e-8) -> Tensor:  # fmt: skip
    """CMSC: representations [P, D] of the pairs' first and second segments, divided by their
    (detached) norms, scored ``first @ second.T / temperature``; the mean cross-entropy of
    the positives (``same_patient`` [P, P]) over rows plus that over columns, halved."""
    with torch.autocast(first.device.type, enabled=False):
        first, second = first.float(), second.float()
        first = first / first.detach().norm(dim=-1, keepdim=True).clamp_min(eps)
        second = second / second.detach().norm(dim=-1, keepdim=True).clamp_min(eps)
        logits = first @ second.T / temperature
        rows = -logits.log_softmax(-1)[same_patient].mean()
        columns = -logits.T.log_softmax(-1)[same_patient.T].mean()
        return (rows + columns) / 2


# --------------------------------------------------------------------------------------------
# The objective
# --------------------------------------------------------------------------------------------
class W2VOutput(NamedTuple):
    """One forward: contrastive scores [B, M, 1 + N], the unmasked pass pooled [B, D] (CMSC),
    the conv features' mean square and the quantiser's perplexities."""

    logits: Tensor
    pooled: Tensor
    features_pen: Tensor
    code_perplexity: Tensor
    prob_perplexity: Tensor


class W2VNet(nn.Module):
    """Encoder and pretraining head as one module (what the engine checkpoints and
    DistributedDataParallel wraps)."""

    def __init__(self, encoder: Wav2Vec2ECG, head: W2VPretrainingHead, dropout_features: float,
                 logit_temp: float):  # fmt: skip
        super().__init__()
        head.check_fits(encoder)
        self.encoder, self.head = encoder, head
        self.dropout_features = nn.Dropout(dropout_features)
        self.logit_temp = logit_temp

    def trained_parameters(self) -> list[nn.Parameter]:
        """Every weight but the encoder's classifier head."""
        return [p for n, p in self.named_parameters() if not n.startswith("encoder.head.")]

    @property
    def has_unused_parameters(self) -> bool:
        encoder = self.encoder
        return (encoder.num_classes > 0 or encoder.config.feature_grad_mult == 0
                or encoder.has_unused_parameters)  # fmt: skip

    def forward(self, x: Tensor, mask: Tensor, negatives: Tensor, temperature: float) -> W2VOutput:
        """``x`` [B, leads, samples]; ``mask`` bool [B, T] (M per row); ``negatives`` [B, M, N]
        indices of the masked steps."""
        encoder, rows = self.encoder, x.shape[0]
        conv = encoder.conv_features(x)
        features_pen = conv.float().pow(2).mean()
        local = encoder.layer_norm(conv.transpose(1, 2))
        projected = encoder.project_features(local)
        masked = torch.where(mask.unsqueeze(-1), self.head.mask_emb.to(projected.dtype), projected)
        context = encoder.contextualize(masked)[mask].view(rows, -1, projected.shape[-1])
        pooled = nonzero_mean(encoder.contextualize(projected), dim=1)
        targets = self.dropout_features(local)[mask].view(rows, -1, local.shape[-1])
        quantized = self.head.quantizer(targets, temperature)
        logits = contrastive_logits(
            self.head.final_proj(context),
            self.head.project_q(quantized.x),
            negatives,
            self.logit_temp,
        )
        return W2VOutput(logits, pooled, features_pen, quantized.code_perplexity,
                         quantized.prob_perplexity)  # fmt: skip


@dataclass(frozen=True)
class W2VConfig(PretrainSettings):
    """W2V+CMSC+RLM settings; defaults are ECG-FM's published ones (module docstring).

    ``batch_size``: pairs per step (two segments each). ``latent_temp``: the Gumbel
    temperature's (start, end, decay per step). ``betas`` / ``eps``: Adam's. The rest:
    :class:`~ecgfoundry.pretrain.settings.PretrainSettings`.
    """

    lr: float = 5e-5
    weight_decay: float = 0.01
    mask_prob: float = 0.65
    mask_length: int = 10
    negatives: int = 100
    logit_temp: float = 0.1
    latent_temp: tuple[float, float, float] = (2.0, 0.5, 0.999995)
    diversity_weight: float = 0.1
    feature_weight: float = 10.0
    cmsc_weight: float = 1.0
    cmsc_temp: float = 0.1
    lead_mask_prob: float = 0.5
    dropout_features: float = 0.1
    betas: tuple[float, float] = (0.9, 0.98)
    eps: float = 1e-6

    def __post_init__(self) -> None:
        super().__post_init__()
        self._at_least(1, "mask_length", "negatives")
        self._positive("logit_temp", "cmsc_temp", "eps")
        self._at_least(0, "diversity_weight", "feature_weight", "cmsc_weight")
        if not 0 < self.mask_prob <= 1:
            self._refuse("mask_prob", "must be in (0, 1]")
        for name in ("lead_mask_prob", "dropout_features"):
            if not 0 <= getattr(self, name) < 1:
                self._refuse(name, "must be in [0, 1)")
        start, end, decay = self.latent_temp
        if not (start >= end > 0 and 0 < decay <= 1):
            self._refuse("latent_temp", "must be (start >= end > 0, decay in (0, 1])")

    def temperature(self, step: int) -> float:
        """The Gumbel temperature at (0-based) training step ``step``."""
        start, end, decay = self.latent_temp
        return max(start * decay**step, end)


def _no_autocast() -> AbstractContextManager[None]:
    return torch.autocast("cpu", enabled=False)


def _patient_codes(patients: Any, split: Split, name: str) -> np.ndarray:
    """An integer per split row naming its patient (None: the split's record ids)."""
    values = np.asarray(split.ids if patients is None else patients)
    if values.shape != (len(split),):
        raise ValueError(f"{name}: expected one patient id per split row ({len(split)}), got "
                         f"shape {values.shape}")  # fmt: skip
    return np.unique(values, return_inverse=True)[1].astype(np.int64)


class W2VCMSCRLMObjective:
    """ECG-FM's W2V+CMSC+RLM on pairs of segments of one patient from ``train``;
    ``val_loss`` (monitored, ``min``) and its parts on fixed pairs of ``val``.

    ``model`` is trained in place; ``head`` continues a pretraining head (e.g. from
    :func:`convert_pretraining_head`; None: a new one of the published sizes, drawn from
    ``seed``). ``self.model`` (what the engine checkpoints) holds both. ``patients_train`` /
    ``patients_val``: a patient id per split row (``Corpus.patient_ids``; None: the record
    ids). ``autocast`` and ``device`` come from the engine.
    """

    def __init__(
        self,
        model: Wav2Vec2ECG,
        train: Split,
        val: Split,
        *,
        head: W2VPretrainingHead | None = None,
        patients_train: Any = None,
        patients_val: Any = None,
        config: W2VConfig | None = None,
        seed: int = 0,
        device: torch.device | None = None,
        autocast: Autocast = _no_autocast,
        workers: int = 0,
    ):
        self.config = c = config or W2VConfig()
        self.device = device or torch.device("cpu")
        if head is None:  # a new head drawn from ``seed``, whatever torch's generator holds
            with torch.random.fork_rng(devices=[]):
                torch.manual_seed(seed)
                head = W2VPretrainingHead.for_model(model)
        self.head = head
        self.net = W2VNet(model, self.head, c.dropout_features, c.logit_temp).to(self.device)
        self.model = self.net
        self.window = c.crop_window(model.spec.samples, train, val)
        self.steps = model.output_length(self.window)
        time_mask(1, self.steps, c.mask_prob, c.mask_length, np.random.default_rng(0))
        self.train, self.val, self.seed = train, val, seed
        self.train_codes = _patient_codes(patients_train, train, "patients_train")
        self.val_codes = _patient_codes(patients_val, val, "patients_val")
        self.val_pairs = draw_pairs(self.val_codes, val.signals.shape[-1], self.window, None)
        self.train_pairs = len(draw_pairs(self.train_codes, train.signals.shape[-1],
                                          self.window, None)[0])  # fmt: skip
        for name, count in (("train", self.train_pairs), ("val", len(self.val_pairs[0]))):
            if count == 0:
                raise ValueError(f"{name}: no pairs for CMSC (every patient has one segment "
                                 f"shorter than two windows of {self.window} samples)")  # fmt: skip
        self.autocast, self.workers = autocast, workers

    def stages(self) -> list[StagePlan]:
        return [self.config.stage_plan(betas=self.config.betas)]

    def _global_batches(self, pairs: int) -> list[range]:
        """Pair positions of each step (:func:`~ecgfoundry.engine.objective.batch_starts`)."""
        size = self.config.batch_size
        return [range(i, min(i + size, pairs)) for i in batch_starts(pairs, size, dist.world())]

    def setup_stage(self, index: int) -> StageSetup:
        params = self.net.trained_parameters()
        for p in params:
            p.requires_grad = True
        group = {"params": params, "lr": self.config.lr, "eps": self.config.eps}
        steps = len(self._global_batches(self.train_pairs))
        return StageSetup([group], steps, distribute=self.net)

    @staticmethod
    def _keys(pairs: np.ndarray, offsets: np.ndarray) -> list[tuple[int, int]]:
        """Window keys: the pairs' first segments, then their second segments."""
        return [(int(r), int(o)) for side in (0, 1)
                for r, o in zip(pairs[:, side], offsets[:, side], strict=True)]  # fmt: skip

    def _same_patient(self, codes: np.ndarray, pairs: np.ndarray) -> Tensor:
        return torch.from_numpy(codes[pairs[:, 0]][:, None] == codes[pairs[:, 1]][None, :])

    def train_batches(self, index: int, epoch: int, skip: int) -> Iterator[dict[str, Any]]:
        """This process's share of each step: segments [2p, leads, window] (first segments,
        then second ones) with their leads masked, the step's time mask and step number."""
        c, samples = self.config, self.train.signals.shape[-1]
        pairs, offsets = draw_pairs(self.train_codes, samples, self.window,
                                    epoch_rng(self.seed, index, epoch, SHUFFLE))  # fmt: skip
        leads = self.train.signals.shape[1]
        keep = lead_keep(
            2 * len(pairs), leads, c.lead_mask_prob, epoch_rng(self.seed, index, epoch, LEAD_MASKS)
        ).reshape(-1, 2, leads)
        batches = self._global_batches(len(pairs))
        mine = [np.asarray(b)[dist.rank() :: dist.world()] for b in batches]
        loader = window_loader(self.train, self.window,
                               [self._keys(pairs[m], offsets[m]) for m in mine[skip:]],
                               workers=self.workers, device=self.device)  # fmt: skip
        for number, batch in enumerate(loader, start=skip):
            chosen = mine[number]
            kept = np.concatenate([keep[chosen, 0], keep[chosen, 1]])
            rng = np.random.default_rng([self.seed, index, epoch, TIME_MASKS, number, dist.rank()])
            mask = time_mask(2 * len(chosen), self.steps, c.mask_prob, c.mask_length, rng)
            yield {
                "x": batch["x"] * torch.from_numpy(kept)[:, :, None],
                "mask": torch.from_numpy(mask),
                "same_patient": self._same_patient(self.train_codes, pairs[chosen]),
                "step": epoch * len(batches) + number,
                "size": 2 * len(batches[number]),
            }

    def _losses(self, out: W2VOutput, same_patient: Tensor) -> tuple[Tensor, dict[str, Tensor],
                                                                       Tensor]:  # fmt: skip
        """(total, its parts, right per masked step) of one forward."""
        c = self.config
        steps_loss, right = contrastive_loss(out.logits)
        num_vars = self.head.config.latent_groups * self.head.config.latent_vars
        pairs = same_patient.shape[0]
        parts = {
            "contrastive": steps_loss.mean(),
            "diversity": (num_vars - out.prob_perplexity) / num_vars,
            "features": out.features_pen,
            "cmsc": cmsc_loss(out.pooled[:pairs], out.pooled[pairs:], same_patient, c.cmsc_temp),
        }
        weights = {"contrastive": 1.0, "diversity": c.diversity_weight,
                   "features": c.feature_weight, "cmsc": c.cmsc_weight}  # fmt: skip
        total = sum(weights[name] * value for name, value in parts.items())
        return total, parts, right

    def _forward(self, net: nn.Module, batch: dict[str, Any], temperature: float,
                 generator: torch.Generator | None) -> tuple[W2VOutput, int]:  # fmt: skip
        mask = batch["mask"].to(self.device)
        rows, masked = mask.shape[0], int(mask[0].sum())
        negatives = sample_negatives(rows, masked, 0, self.config.negatives, device=self.device,
                                     generator=generator).to(self.device)  # fmt: skip
        x = batch["x"].to(self.device, non_blocking=True)
        return net(x, mask, negatives, temperature), rows * masked

    def training_step(self, net: nn.Module, batch: dict[str, Any], index: int) -> StepOutput:
        """Distractors and Gumbel noise come from torch's generator, which the engine seeds
        per epoch and restores on resume; the temperature follows the batch's step."""
        temperature = self.config.temperature(batch["step"])
        out, count = self._forward(net, batch, temperature, None)
        total, parts, right = self._losses(out, batch["same_patient"].to(self.device))
        # fairseq's gradient: every process's loss x its masked steps / all masked steps
        scale = count * dist.world() / dist.all_sum(float(count))
        logs = {name: value.item() for name, value in parts.items()}
        logs |= {"code_perplexity": out.code_perplexity.item(),
                 "accuracy": right.float().mean().item(), "temperature": temperature}  # fmt: skip
        return StepOutput(total * scale, batch["size"], logs)

    @torch.no_grad()
    def evaluate(self, index: int) -> dict[str, float]:
        """The loss over fixed pairs of ``val`` (no lead masks, as the original validates),
        time masks and distractors from a fixed seed per batch: the same numbers every call.
        Means weighted by masked steps, as fairseq reduces them."""
        self.net.eval()
        c, (pairs, offsets) = self.config, self.val_pairs
        size = c.batch_size
        batches = [np.arange(i, min(i + size, len(pairs))) for i in range(0, len(pairs), size)]
        numbers = list(range(dist.rank(), len(batches), dist.world()))
        keys = [self._keys(pairs[batches[n]], offsets[batches[n]]) for n in numbers]
        loader = window_loader(self.val, self.window, keys, workers=self.workers,
                               device=self.device)  # fmt: skip
        sums: dict[str, float] = {}
        for number, batch in zip(numbers, loader, strict=True):
            chosen = pairs[batches[number]]
            rng = np.random.default_rng([number])
            batch["mask"] = torch.from_numpy(time_mask(2 * len(chosen), self.steps, c.mask_prob,
                                                       c.mask_length, rng))  # fmt: skip
            with self.autocast():
                out, count = self._forward(self.net, batch, c.latent_temp[1],
                                           torch.Generator().manual_seed(number))  # fmt: skip
            total, parts, right = self._losses(out, self._same_patient(self.val_codes, chosen)
                                               .to(self.device))  # fmt: skip
            values = {"loss": total, **parts, "code_perplexity": out.code_perplexity,
                      "accuracy": right.float().mean()}  # fmt: skip
            for name, value in values.items():
                sums[name] = sums.get(name, 0.0) + value.item() * count
            sums["count"] = sums.get("count", 0.0) + count
        count = dist.all_sum(sums.pop("count", 0.0))
        names = ("loss", "contrastive", "diversity", "features", "cmsc", "code_perplexity",
                 "accuracy")  # fmt: skip
        return {f"val_{name}": dist.all_sum(sums.get(name, 0.0)) / count for name in names}
