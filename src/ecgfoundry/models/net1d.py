"""ECGFounder's Net1D: a RegNet-like 1-D CNN (Li et al., NEJM AI 2025; Hong et al. 2020).

Written from the published architecture; checkpoints of the original implementation
(``PKUDigitalHealth/ECGFounder``, ``net1d.py``) load after :func:`convert_checkpoint` and give
the same outputs (tested against goldens made with the original code).

Architecture (as in the original):

* stem: convolution (``kernel_size``, stride 2, always 2) -> [BatchNorm] -> Swish;
* stages: ``len(filter_list)`` stages of ``m_blocks_list[i]`` pre-activation bottleneck blocks
  ``[BN] Swish [Dropout] conv1x1 -> [BN] Swish [Dropout] grouped conv k -> [BN] Swish [Dropout]
  conv1x1 -> squeeze-excitation``; the grouped conv has ``filter_list[i] // groups_width``
  groups and ``int(filter_list[i] * ratio)`` channels. The very first block of the network
  skips its pre-activation (the stem has just applied it). The first block of every stage
  downsamples by ``stride`` (in the grouped conv); its shortcut is a max-pool of the same size
  and, when the channels grow, zero-padded channels (half before, half after);
* every convolution pads like TensorFlow's ``'same'``: output length ``ceil(L / stride)``,
  the odd padding sample on the right. The shortcut max-pool pads with zeros (not -inf),
  as the original does;
* squeeze-excitation: time mean -> Linear(C, C // 2) -> Swish -> Linear(C // 2, C) ->
  sigmoid -> channel scale;
* features: the last stage averaged over time; the head (the original ``dense``) is linear.

``use_bn=False`` (the published models): the BatchNorm layers still exist (their tensors are in
the checkpoints) but are not applied. ``use_do=True``: dropout with p=0.5 before each conv of a
block. Added here: stochastic depth (``drop_path_rate``) on every block's residual branch.

Input (the published preprocessing, ``dataset.py`` of the original repository): 500 Hz,
10 s (5000 samples: ``self.fs = 5000 # 500Hz * 10s``), leads I, II, III, aVR, aVL, aVF,
V1-V6 (the 1-lead model: lead I), ``util.filter_bandpass(data, 500)`` = 50 Hz notch (Q 30),
4th-order Butterworth 0.67-40 Hz band-pass (filtfilt) and subtraction of a 0.4 s median
baseline, then z-score over the whole [leads, samples] array (one mean and std:
``zscore-global``). The :class:`InputSpec` records all of these.
"""

from __future__ import annotations

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
    load_state_dict_strict,
    load_torch_checkpoint,
    rename_key,
)
from ecgfoundry.models.registry import register_converter, register_model
from ecgfoundry.nn.layers import DropPath, drop_path_rates, grouped_conv1d
from ecgfoundry.spec import STANDARD_LEADS, InputSpec

WEIGHTS_URL = "https://huggingface.co/PKUDigitalHealth/ECGFounder"

ECGFOUNDER_SPEC_12LEAD: dict[str, Any] = InputSpec(
    fs=500.0,
    seconds=10.0,
    leads=STANDARD_LEADS,
    normalisation="zscore-global",
    bandpass=(0.67, 40.0),
    bandpass_order=4,
    notch=50.0,
    baseline_window=0.4,
).to_dict()
ECGFOUNDER_SPEC_1LEAD: dict[str, Any] = {**ECGFOUNDER_SPEC_12LEAD, "leads": ["I"]}

# The published architecture (finetune_model.py / ptbxl_eval.py of the original repository).
ECGFOUNDER_ARCHITECTURE: dict[str, Any] = {
    "in_channels": 12,
    "base_filters": 64,
    "ratio": 1.0,
    "filter_list": [64, 160, 160, 400, 400, 1024, 1024],
    "m_blocks_list": [2, 2, 2, 3, 3, 4, 4],
    "kernel_size": 16,
    "stride": 2,
    "groups_width": 16,
    "use_bn": False,
    "use_do": False,
}


@dataclass
class Net1DConfig(ModelConfig):
    """Net1D hyperparameters, named as the original constructor names them.

    Defaults are the published ECGFounder architecture. ``spec`` left empty is filled from
    ``in_channels``: 12 -> the published 12-lead input, 1 -> lead I; other lead counts need an
    explicit ``spec``.
    """

    leads_field: ClassVar[str] = "in_channels"

    in_channels: int = 12
    base_filters: int = 64
    ratio: float = 1.0
    filter_list: list[int] = field(
        default_factory=lambda: list(ECGFOUNDER_ARCHITECTURE["filter_list"])
    )
    m_blocks_list: list[int] = field(
        default_factory=lambda: list(ECGFOUNDER_ARCHITECTURE["m_blocks_list"])
    )
    kernel_size: int = 16
    stride: int = 2
    groups_width: int = 16
    use_bn: bool = False
    use_do: bool = False

    def __post_init__(self) -> None:
        self.filter_list = [int(c) for c in self.filter_list]
        self.m_blocks_list = [int(m) for m in self.m_blocks_list]
        problems = []
        if not self.filter_list or len(self.filter_list) != len(self.m_blocks_list):
            problems.append("filter_list and m_blocks_list need the same, non-zero length")
        if any(m < 1 for m in self.m_blocks_list):
            problems.append("every stage needs at least one block (m_blocks_list >= 1)")
        for channels in self.filter_list:
            groups = channels // self.groups_width if self.groups_width > 0 else 0
            middle = int(channels * self.ratio)
            if groups < 1 or middle < 1 or middle % groups:
                problems.append(
                    f"stage width {channels}: {channels} // groups_width {self.groups_width} "
                    f"= {groups} groups must divide int({channels} * ratio {self.ratio}) = "
                    f"{middle} channels"
                )
        if min(self.in_channels, self.base_filters, self.kernel_size, self.stride) < 1:
            problems.append("in_channels, base_filters, kernel_size and stride must be >= 1")
        if not 0.0 <= self.drop_path_rate < 1.0:
            problems.append(f"drop_path_rate must be in [0, 1), got {self.drop_path_rate}")
        if self.labels is not None and len(self.labels) != (self.num_classes or 0):
            problems.append(f"{len(self.labels)} labels for {self.num_classes} classes")
        if not self.spec:
            if self.in_channels == 12:
                self.spec = dict(ECGFOUNDER_SPEC_12LEAD)
            elif self.in_channels == 1:
                self.spec = dict(ECGFOUNDER_SPEC_1LEAD)
            else:
                problems.append(f"in_channels {self.in_channels}: give a spec naming the leads")
        if self.spec:
            leads = InputSpec.from_dict(self.spec).leads
            if len(leads) != self.in_channels:
                problems.append(
                    f"spec has {len(leads)} leads but in_channels is {self.in_channels}"
                )
        if problems:
            raise ValueError("Net1DConfig: " + "; ".join(problems))


def same_padding(length: int, kernel_size: int, stride: int) -> tuple[int, int]:
    """(left, right) padding of TensorFlow's 'same': output ``ceil(length / stride)`` steps,
    the odd sample on the right."""
    out = -(-length // stride)
    total = max(0, (out - 1) * stride + kernel_size - length)
    return total // 2, total - total // 2


class SameConv1d(nn.Conv1d):
    """``nn.Conv1d`` with TensorFlow-style 'same' padding computed from the input length."""

    def __init__(
        self,
        in_channels: int,
        out_channels: int,
        kernel_size: int,
        stride: int = 1,
        groups: int = 1,
    ):
        super().__init__(in_channels, out_channels, kernel_size, stride=stride, groups=groups)

    def forward(self, x: Tensor) -> Tensor:
        pad = same_padding(x.shape[-1], self.kernel_size[0], self.stride[0])
        if any(pad):
            x = F.pad(x, pad)
        return grouped_conv1d(x, self.weight, self.bias, self.stride[0], 0, self.groups)


def max_pool_same(x: Tensor, size: int) -> Tensor:
    """Max-pool with window = stride = ``size`` after padding ``size - 1`` zeros the 'same'
    way (zeros, as the original: it matters only at a trailing edge of negative values)."""
    if size == 1:
        return x
    total = size - 1
    return F.max_pool1d(F.pad(x, (total // 2, total - total // 2)), size)


class SqueezeExcite(nn.Module):
    """Channel gates from the time mean: Linear -> Swish -> Linear -> sigmoid."""

    def __init__(self, channels: int, hidden: int):
        super().__init__()
        self.fc1 = nn.Linear(channels, hidden)
        self.fc2 = nn.Linear(hidden, channels)

    def forward(self, x: Tensor) -> Tensor:
        gate = torch.sigmoid(self.fc2(F.silu(self.fc1(x.mean(-1)))))
        return x * gate.unsqueeze(-1)


class Net1DBlock(nn.Module):
    """Pre-activation bottleneck block with a grouped middle conv, SE and a residual shortcut
    (max-pooled when downsampling, zero-padded on channels when they grow)."""

    def __init__(
        self,
        in_channels: int,
        out_channels: int,
        *,
        ratio: float,
        kernel_size: int,
        stride: int,
        groups: int,
        preactivate: bool,
        use_bn: bool,
        use_do: bool,
        drop_path: float = 0.0,
    ):
        super().__init__()
        middle = int(out_channels * ratio)
        self.in_channels, self.out_channels = in_channels, out_channels
        self.stride = stride
        self.preactivate = preactivate
        self.use_bn = use_bn
        # Registration order = the original's state_dict order (bn1, conv1, bn2, ..., se).
        self.norm1 = nn.BatchNorm1d(in_channels)
        self.conv1 = SameConv1d(in_channels, middle, 1)
        self.norm2 = nn.BatchNorm1d(middle)
        self.conv2 = SameConv1d(middle, middle, kernel_size, stride=stride, groups=groups)
        self.norm3 = nn.BatchNorm1d(middle)
        self.conv3 = SameConv1d(middle, out_channels, 1)
        self.se = SqueezeExcite(out_channels, out_channels // 2)
        self.dropout = nn.Dropout(0.5) if use_do else nn.Identity()
        self.drop_path = DropPath(drop_path)

    def _activate(self, x: Tensor, norm: nn.BatchNorm1d) -> Tensor:
        if self.use_bn:
            x = norm(x)
        return self.dropout(F.silu(x))

    def forward(self, x: Tensor) -> Tensor:
        out = self._activate(x, self.norm1) if self.preactivate else x
        out = self.conv1(out)
        out = self.conv2(self._activate(out, self.norm2))
        out = self.conv3(self._activate(out, self.norm3))
        out = self.se(out)
        shortcut = max_pool_same(x, self.stride)
        grow = self.out_channels - self.in_channels
        if grow:
            shortcut = F.pad(shortcut, (0, 0, grow // 2, grow - grow // 2))
        return shortcut + self.drop_path(out)


class Net1D(ECGModel):
    """ECGFounder's Net1D. ``forward_features``: [B, leads, samples] -> [B, filter_list[-1]]."""

    family = "net1d"
    config_class = Net1DConfig

    def __init__(self, config: Net1DConfig):
        super().__init__(config)
        del self.head  # re-created last by reset_head, so the state dict ends with it
        self.use_bn = config.use_bn
        self.stem = SameConv1d(config.in_channels, config.base_filters, config.kernel_size, 2)
        self.stem_norm = nn.BatchNorm1d(config.base_filters)
        rates = iter(drop_path_rates(config.drop_path_rate, sum(config.m_blocks_list)))
        stages = []
        channels = config.base_filters
        for i, (width, blocks) in enumerate(
            zip(config.filter_list, config.m_blocks_list, strict=True)
        ):
            stage = nn.Sequential(
                *(
                    Net1DBlock(
                        channels if j == 0 else width,
                        width,
                        ratio=config.ratio,
                        kernel_size=config.kernel_size,
                        stride=config.stride if j == 0 else 1,
                        groups=width // config.groups_width,
                        preactivate=(i, j) != (0, 0),
                        use_bn=config.use_bn,
                        use_do=config.use_do,
                        drop_path=next(rates),
                    )
                    for j in range(blocks)
                )
            )
            stages.append(stage)
            channels = width
        self.stages = nn.ModuleList(stages)
        self.reset_head(config.num_classes, config.labels)

    @property
    def has_unused_parameters(self) -> bool:
        return not self.use_bn  # the BatchNorm tensors exist but are not applied

    @property
    def num_features(self) -> int:
        return self.config.filter_list[-1]

    def iter_stages(self, x: Tensor) -> Iterator[Tensor]:
        """Each stage's output [B, C, T], in turn."""
        if x.ndim != 3 or x.shape[1] != self.config.in_channels:
            raise ValueError(
                f"Net1D expects [batch, {self.config.in_channels} leads, samples], "
                f"got {tuple(x.shape)}"
            )
        x = self.stem(x)
        if self.use_bn:
            x = self.stem_norm(x)
        x = F.silu(x)
        for stage in self.stages:
            x = stage(x)
            yield x

    def forward_body(self, x: Tensor) -> Tensor:
        """The last stage's output [B, C, T]."""
        return last_output(self.iter_stages(x))

    def intermediates(self, x: Tensor) -> list[Tensor]:
        return [stage.transpose(1, 2) for stage in self.iter_stages(x)]

    def forward_features(self, x: Tensor) -> Tensor:
        return self.forward_body(x).mean(-1)

    def forward_sequence(self, x: Tensor) -> Tensor:
        return self.forward_body(x).transpose(1, 2)


# -- checkpoint conversion ---------------------------------------------------------------------

_BLOCK = r"stage_list\.(\d+)\.block_list\.(\d+)\."
# original name prefix (regex) -> ours
_ORIGINAL_TO_OURS: tuple[tuple[str, str], ...] = (
    (r"first_conv\.conv\.", "stem."),
    (r"first_bn\.", "stem_norm."),
    (_BLOCK + r"bn(\d)\.", r"stages.\1.\2.norm\3."),
    (_BLOCK + r"conv(\d)\.conv\.", r"stages.\1.\2.conv\3."),
    (_BLOCK + r"se_fc(\d)\.", r"stages.\1.\2.se.fc\3."),
    (r"dense\.", "head."),
)
_OURS_TO_ORIGINAL: tuple[tuple[str, str], ...] = (
    (r"stem\.", "first_conv.conv."),
    (r"stem_norm\.", "first_bn."),
    (r"stages\.(\d+)\.(\d+)\.norm(\d)\.", r"stage_list.\1.block_list.\2.bn\3."),
    (r"stages\.(\d+)\.(\d+)\.conv(\d)\.", r"stage_list.\1.block_list.\2.conv\3.conv."),
    (r"stages\.(\d+)\.(\d+)\.se\.fc(\d)\.", r"stage_list.\1.block_list.\2.se_fc\3."),
    (r"head\.", "dense."),
)


def map_original_key(key: str) -> str:
    """Our name for a tensor of the original Net1D (unknown names are returned unchanged, so
    strict loading reports them)."""
    return rename_key(key, _ORIGINAL_TO_OURS) or key


def original_key(key: str) -> str:
    """The original Net1D's name for one of our tensors."""
    name = rename_key(key, _OURS_TO_ORIGINAL)
    if name is None:
        raise KeyError(f"no original Net1D name for {key!r}")
    return name


# Original constructor kwargs that differ from our field names / have no effect on weights.
_RENAMED_KWARGS = {"n_classes": "num_classes"}
_IGNORED_KWARGS = {"verbose", "return_features"}


def config_overrides(overrides: Mapping[str, Any] | None) -> dict[str, Any]:
    """Normalise conversion overrides to :class:`Net1DConfig` field names.

    Accepts our field names, the original constructor kwargs (``n_classes``; ``verbose`` and
    ``return_features`` are ignored), a dict with a ``constructor_kwargs`` entry (the format of
    the reference configs) or a saved model's ``config.json`` (``{"family", "config"}``).
    """
    if not overrides:
        return {}
    data = dict(overrides)
    if "constructor_kwargs" in data:
        data = dict(data["constructor_kwargs"])
    elif "config" in data and "family" in data:
        data = dict(data["config"])
    out: dict[str, Any] = {}
    for key, value in data.items():
        if key in _IGNORED_KWARGS:
            continue
        name = _RENAMED_KWARGS.get(key, key)
        if name in out and out[name] != value:
            raise ValueError(f"conflicting overrides for {name!r}: {out[name]!r} and {value!r}")
        out[name] = value
    known = {f.name for f in fields(Net1DConfig)}
    unknown = sorted(set(out) - known)
    if unknown:
        raise ValueError(
            f"unknown Net1D override(s) {unknown}; known: {sorted(known | set(_RENAMED_KWARGS))}"
        )
    return out


def _state_dict_of(checkpoint: Any, path: str | Path) -> dict[str, Tensor]:
    """The tensors of a training container (``state_dict`` entry) or a bare state dict, with a
    DataParallel ``module.`` prefix removed."""
    state = checkpoint
    if isinstance(checkpoint, Mapping):
        for key in ("state_dict", "model_state_dict", "model"):
            if isinstance(checkpoint.get(key), Mapping):
                state = checkpoint[key]
                break
    if not isinstance(state, Mapping) or not state:
        raise CheckpointError(path, "no state dict found (expected a 'state_dict' entry)")
    tensors = {k: v for k, v in state.items() if isinstance(v, Tensor)}
    if not tensors:
        found = ", ".join(sorted(map(str, state))[:10])
        raise CheckpointError(path, f"no tensors found; top-level entries: {found}")
    if all(k.startswith("module.") for k in tensors):
        tensors = {k[len("module.") :]: v for k, v in tensors.items()}
    return tensors


def convert_checkpoint(
    path: str | Path, *, overrides: Mapping[str, Any] | None = None, allow_unsafe: bool = False
) -> Net1D:
    """A :class:`Net1D` (eval mode) with the weights of an original ECGFounder ``.pth``.

    The file (a training container with ``state_dict``, or a bare state dict; a ``module.``
    prefix is removed) holds no architecture hyperparameters: the published architecture is
    the default and ``overrides`` change it (see :func:`config_overrides` for the accepted
    forms). Two values are read from the checkpoint itself and win over the config: the number
    of input leads (``in_channels``, from the first conv) and the number of classes (from
    ``dense``; no ``dense`` -> no head). With the published body and 150 outputs the head gets
    the published labels. The file is read with ``weights_only`` unpickling (numpy scalars
    allowed); anything else needs ``allow_unsafe=True``. Every tensor must fit the model, else
    a :class:`CheckpointError` lists the mismatches.
    """
    original = _state_dict_of(load_torch_checkpoint(path, allow_unsafe=allow_unsafe), path)
    state = {map_original_key(k): v for k, v in original.items()}
    given = config_overrides(overrides)
    values = {**ECGFOUNDER_ARCHITECTURE, **given}

    from_checkpoint: dict[str, Any] = {"num_classes": None}
    if "stem.weight" in state and state["stem.weight"].ndim == 3:
        from_checkpoint["in_channels"] = int(state["stem.weight"].shape[1])
    if "head.weight" in state and state["head.weight"].ndim == 2:
        from_checkpoint["num_classes"] = int(state["head.weight"].shape[0])
    for name, value in from_checkpoint.items():
        if name in given and given[name] != value:
            warnings.warn(
                f"{path}: the checkpoint has {name}={value}, not {given[name]} as configured; "
                f"using {value}",
                stacklevel=2,
            )
            if name == "in_channels" and "spec" in given:
                del values["spec"]  # its leads were for the configured lead count
        values[name] = value
    labels = values.get("labels")
    if labels is None:
        values["labels"] = _published_labels(values)
    elif len(labels) != (values["num_classes"] or 0):
        warnings.warn(
            f"{path}: {len(labels)} labels configured for {values['num_classes']} outputs; "
            "dropping the labels",
            stacklevel=2,
        )
        values["labels"] = None

    model = Net1D(Net1DConfig.from_dict(values))
    try:
        load_state_dict_strict(model, state, path)
    except CheckpointError as error:
        error.args = (
            f"{error.args[0]}. The .pth holds no architecture hyperparameters: pass the original "
            f"constructor kwargs as overrides (CLI: --config, a JSON file){_describe(state)}",
        )
        raise
    return model.eval()


def _describe(state: Mapping[str, Tensor]) -> str:
    """What the tensor shapes say about the architecture (a hint for mismatch errors)."""
    blocks: dict[int, int] = {}
    widths: dict[int, int] = {}
    for key, value in state.items():
        match = re.fullmatch(r"stages\.(\d+)\.(\d+)\.conv3\.weight", key)
        if match and value.ndim == 3:
            stage, block = int(match[1]), int(match[2])
            blocks[stage] = max(blocks.get(stage, 0), block + 1)
            widths[stage] = int(value.shape[0])
    stem = state.get("stem.weight")
    if stem is None or stem.ndim != 3 or sorted(blocks) != list(range(len(blocks))):
        return ""
    return (
        f"; the checkpoint's shapes suggest base_filters={stem.shape[0]}, "
        f"kernel_size={stem.shape[2]}, filter_list={[widths[i] for i in sorted(widths)]}, "
        f"m_blocks_list={[blocks[i] for i in sorted(blocks)]}"
    )


def _published_labels(values: Mapping[str, Any]) -> list[str] | None:
    body = {k: v for k, v in ECGFOUNDER_ARCHITECTURE.items() if k != "in_channels"}
    published = all(values.get(k) == v for k, v in body.items())
    if published and values.get("num_classes") == len(ECGFOUNDER_LABELS):
        return list(ECGFOUNDER_LABELS)
    return None


# -- published labels --------------------------------------------------------------------------

# The 150 outputs of the published models, in order (tasks.txt of the original repository).
ECGFOUNDER_LABELS: tuple[str, ...] = (
    "ABNORMAL ECG",
    "NORMAL SINUS RHYTHM",
    "NORMAL ECG",
    "SINUS RHYTHM",
    "SINUS BRADYCARDIA",
    "ATRIAL FIBRILLATION",
    "SINUS TACHYCARDIA",
    "otherwise normal ecg",
    "LEFT AXIS DEVIATION",
    "PREMATURE VENTRICULAR COMPLEXES",
    "BORDERLINE ECG",
    "RIGHT BUNDLE BRANCH BLOCK",
    "SEPTAL INFARCT",
    "LEFT ATRIAL ENLARGEMENT",
    "NONSPECIFIC T WAVE ABNORMALITY",
    "LOW VOLTAGE QRS",
    "PREMATURE ATRIAL COMPLEXES",
    "ANTERIOR INFARCT",
    "INCOMPLETE RIGHT BUNDLE BRANCH BLOCK",
    "PREMATURE SUPRAVENTRICULAR COMPLEXES",
    "LEFT BUNDLE BRANCH BLOCK",
    "NONSPECIFIC T WAVE ABNORMALITY NOW EVIDENT IN",
    "NONSPECIFIC T WAVE ABNORMALITY NO LONGER EVIDENT IN",
    "T WAVE INVERSION NOW EVIDENT IN",
    "LATERAL INFARCT",
    "NONSPECIFIC ST ABNORMALITY",
    "LEFT VENTRICULAR HYPERTROPHY",
    "T WAVE INVERSION NO LONGER EVIDENT IN",
    "WITH RAPID VENTRICULAR RESPONSE",
    "QT HAS SHORTENED",
    "QT HAS LENGTHENED",
    "FUSION COMPLEXES",
    "ATRIAL FLUTTER",
    "MARKED SINUS BRADYCARDIA",
    "WITH SINUS ARRHYTHMIA",
    "NONSPECIFIC ST AND T WAVE ABNORMALITY",
    "LEFT ANTERIOR FASCICULAR BLOCK",
    "RIGHT AXIS DEVIATION",
    "ECTOPIC ATRIAL RHYTHM",
    "UNDETERMINED RHYTHM",
    "ANTEROSEPTAL INFARCT",
    "RIGHTWARD AXIS",
    "ST NOW DEPRESSED IN",
    "WITH SHORT PR",
    "WITH MARKED SINUS ARRHYTHMIA",
    "ST NO LONGER DEPRESSED IN",
    "INVERTED T WAVES HAVE REPLACED NONSPECIFIC T WAVE ABNORMALITY IN",
    "NON-SPECIFIC CHANGE IN ST SEGMENT IN",
    "NONSPECIFIC T WAVE ABNORMALITY HAS REPLACED INVERTED T WAVES IN",
    "JUNCTIONAL RHYTHM",
    "ELECTRONIC ATRIAL PACEMAKER",
    "ABERRANT CONDUCTION",
    "ELECTRONIC VENTRICULAR PACEMAKER",
    "T WAVE INVERSION LESS EVIDENT IN",
    "ANTEROLATERAL INFARCT",
    "WITH REPOLARIZATION ABNORMALITY",
    "RSR' OR QR PATTERN IN V1 SUGGESTS RIGHT VENTRICULAR CONDUCTION DELAY",
    "T WAVE INVERSION MORE EVIDENT IN",
    "WIDE QRS RHYTHM",
    "WITH PREMATURE VENTRICULAR OR ABERRANTLY CONDUCTED COMPLEXES",
    "RIGHT ATRIAL ENLARGEMENT",
    "INFERIOR INFARCT",
    "INCOMPLETE LEFT BUNDLE BRANCH BLOCK",
    "VOLTAGE CRITERIA FOR LEFT VENTRICULAR HYPERTROPHY",
    "OR DIGITALIS EFFECT",
    "BIFASCICULAR BLOCK",
    "ST NO LONGER ELEVATED IN",
    "WITH SLOW VENTRICULAR RESPONSE",
    "ST ELEVATION NOW PRESENT IN",
    "PREMATURE ECTOPIC COMPLEXES",
    "LEFT POSTERIOR FASCICULAR BLOCK",
    "T WAVE AMPLITUDE HAS DECREASED IN",
    "WITH A COMPETING JUNCTIONAL PACEMAKER",
    "RIGHT SUPERIOR AXIS DEVIATION",
    "BIATRIAL ENLARGEMENT",
    "VENTRICULAR-PACED RHYTHM",
    "ATRIAL-PACED RHYTHM",
    "T WAVE AMPLITUDE HAS INCREASED IN",
    "WITH QRS WIDENING",
    "WITH 1ST DEGREE AV BLOCK",
    "PROLONGED QT",
    "WITH PROLONGED AV CONDUCTION",
    "RIGHT VENTRICULAR HYPERTROPHY",
    "WITH QRS WIDENING AND REPOLARIZATION ABNORMALITY",
    "ATRIAL-SENSED VENTRICULAR-PACED RHYTHM",
    "AV SEQUENTIAL OR DUAL CHAMBER ELECTRONIC PACEMAKER",
    "PULMONARY DISEASE PATTERN",
    "ACUTE MI / STEMI",
    "INFERIOR-POSTERIOR INFARCT",
    "NONSPECIFIC INTRAVENTRICULAR CONDUCTION DELAY",
    "PREMATURE VENTRICULAR AND FUSION COMPLEXES",
    "IN A PATTERN OF BIGEMINY",
    "AV DUAL-PACED RHYTHM",
    "SUPRAVENTRICULAR TACHYCARDIA",
    "VENTRICULAR-PACED COMPLEXES",
    "WIDE QRS TACHYCARDIA",
    "RSR' PATTERN IN V1",
    "ST LESS DEPRESSED IN",
    "VENTRICULAR TACHYCARDIA",
    "EARLY REPOLARIZATION",
    "ST MORE DEPRESSED IN",
    "ANTEROLATERAL LEADS",
    "ELECTRONIC DEMAND PACING",
    "RBBB AND LEFT ANTERIOR FASCICULAR BLOCK",
    "LATERAL INJURY PATTERN",
    "BIVENTRICULAR PACEMAKER DETECTED",
    "SUSPECT UNSPECIFIED PACEMAKER FAILURE",
    "WOLFF-PARKINSON-WHITE",
    "WITH VENTRICULAR ESCAPE COMPLEXES",
    "INFERIOR INJURY PATTERN",
    "CONSIDER RIGHT VENTRICULAR INVOLVEMENT IN ACUTE INFERIOR INFARCT",
    "ST ELEVATION HAS REPLACED ST DEPRESSION IN",
    "NONSPECIFIC INTRAVENTRICULAR BLOCK",
    "MASKED BY FASCICULAR BLOCK",
    "PEDIATRIC ECG ANALYSIS",
    "BLOCKED",
    "WITH UNDETERMINED RHYTHM IRREGULARITY",
    "LEFTWARD AXIS",
    "WITH 2ND DEGREE SA BLOCK MOBITZ I",
    "ACUTE",
    "ABNORMAL LEFT AXIS DEVIATION",
    "WITH COMPLETE HEART BLOCK",
    "NO P-WAVES FOUND",
    "ST LESS ELEVATED IN",
    "WITH RETROGRADE CONDUCTION",
    "ST MORE ELEVATED IN",
    "JUNCTIONAL BRADYCARDIA",
    "WITH VARIABLE AV BLOCK",
    "ANTERIOR INJURY PATTERN",
    "WITH JUNCTIONAL ESCAPE COMPLEXES",
    "ACUTE MI",
    "ACUTE PERICARDITIS",
    "POSTERIOR INFARCT",
    "IDIOVENTRICULAR RHYTHM",
    "WITH 2ND DEGREE SA BLOCK MOBITZ II",
    "R IN AVL",
    "SINUS/ATRIAL CAPTURE",
    "AV DUAL-PACED COMPLEXES",
    "INFEROLATERAL INJURY PATTERN",
    "RBBB AND LEFT POSTERIOR FASCICULAR BLOCK",
    "ANTEROLATERAL INJURY PATTERN",
    "ATRIAL-PACED COMPLEXES",
    "WITH SINUS PAUSE",
    "BIVENTRICULAR HYPERTROPHY",
    "ABNORMAL RIGHT AXIS DEVIATION",
    "SUPRAVENTRICULAR COMPLEXES",
    "WITH 2ND DEGREE AV BLOCK MOBITZ I",
    "WITH 2:1 AV CONDUCTION",
    "WITH AV DISSOCIATION",
    "MULTIFOCAL ATRIAL TACHYCARDIA",
)

# -- presets -----------------------------------------------------------------------------------

# Small presets for training from scratch on a CPU: the same preprocessing at 100 Hz (PTB-XL's
# records100), so a 10 s input is 1000 samples; no 50 Hz notch (it is the Nyquist frequency).
SMALL_SPEC: dict[str, Any] = {**ECGFOUNDER_SPEC_12LEAD, "fs": 100.0, "notch": None}

register_model(
    "ecgfounder-12lead",
    Net1D,
    parameters=30_819_014,
    description="ECGFounder, 12 leads: the published Net1D with its 150 labels",
    weights=f"{WEIGHTS_URL} (12_lead_ECGFounder.pth; `ecgfoundry convert ecgfounder`)",
    num_classes=len(ECGFOUNDER_LABELS),
    labels=list(ECGFOUNDER_LABELS),
)
register_model(
    "ecgfounder-1lead",
    Net1D,
    parameters=30_807_750,
    description="ECGFounder, lead I: the published Net1D with its 150 labels",
    weights=f"{WEIGHTS_URL} (1_lead_ECGFounder.pth; `ecgfoundry convert ecgfounder`)",
    in_channels=1,
    num_classes=len(ECGFOUNDER_LABELS),
    labels=list(ECGFOUNDER_LABELS),
)
register_model(
    "net1d-small",
    Net1D,
    parameters=2_125_312,
    description="Net1D, 7 stages x 2 blocks, 32-320 channels: trains on a CPU",
    base_filters=32,
    filter_list=[32, 64, 64, 160, 160, 320, 320],
    m_blocks_list=[2, 2, 2, 2, 2, 2, 2],
    spec=SMALL_SPEC,
)
register_model(
    "net1d-tiny",
    Net1D,
    parameters=414_872,
    description="Net1D, 6 stages, 9 blocks, 16-160 channels: trains on a CPU",
    base_filters=16,
    filter_list=[16, 32, 32, 80, 80, 160],
    m_blocks_list=[1, 1, 1, 2, 2, 2],
    spec=SMALL_SPEC,
)
register_model(
    "net1d-micro",
    Net1D,
    parameters=214_392,
    description="Net1D, 6 stages x 1 block, 16-160 channels: per-window inference on a device",
    base_filters=16,
    filter_list=[16, 32, 32, 80, 80, 160],
    m_blocks_list=[1, 1, 1, 1, 1, 1],
    spec=SMALL_SPEC,
)
register_converter(
    "ecgfounder",
    convert_checkpoint,
    description="ECGFounder's .pth (PKUDigitalHealth/ECGFounder; architecture via --config)",
)

__all__ = [
    "ECGFOUNDER_ARCHITECTURE",
    "ECGFOUNDER_LABELS",
    "ECGFOUNDER_SPEC_1LEAD",
    "ECGFOUNDER_SPEC_12LEAD",
    "Net1D",
    "Net1DBlock",
    "Net1DConfig",
    "SameConv1d",
    "SqueezeExcite",
    "config_overrides",
    "convert_checkpoint",
    "map_original_key",
    "original_key",
    "same_padding",
]
