"""Our PTB-XL benchmark CNNs against the benchmark's own module definitions, given the same
weights: outputs in evaluation mode, and outputs, gradients and BatchNorm statistics of one
training step (same dropout draws). Rules out the model definitions when a training result
differs.

The reference modules are imported from a checkout of ``helme/ecg_ptbxl_benchmarking``
(``code/models``); the few fastai v1 helpers they import (``Flatten``, ``bn_drop_lin``,
``listify`` and typing names) are given by small stand-ins written from fastai v1's
documented behaviour, so fastai itself is not needed. Weights are copied layer by layer in
module order (Conv1d, BatchNorm1d, Linear), checking each layer's type and shapes.

    git clone https://github.com/helme/ecg_ptbxl_benchmarking DIR
    python benchmarks/ptbxl_reference_parity.py --published DIR
"""

from __future__ import annotations

import argparse
import importlib
import json
import sys
import types
from collections.abc import Collection
from pathlib import Path
from typing import Any, Optional, Union

import torch
import torch.nn.functional as F
from torch import nn

import ecgfoundry

LAYERS = (nn.Conv1d, nn.BatchNorm1d, nn.Linear)
# our preset -> (reference module, constructor, its keyword arguments as fastai_model passes them)
HEAD = {"ps_head": 0.5, "lin_ftrs_head": [128]}
REFERENCES = {
    "resnet1d-wang": ("resnet1d", "resnet1d_wang", {"kernel_size": 5, **HEAD}),
    "xresnet1d101": ("xresnet1d", "xresnet1d101", {"kernel_size": 5, **HEAD}),
    "inception1d": ("inception1d", "inception1d", {"use_residual": True, "kernel_size": 40,
                                                   **HEAD}),
}  # fmt: skip


class _Flatten(nn.Module):
    """fastai v1 ``Flatten()``: [B, ...] -> [B, -1]."""

    def __init__(self, full: bool = False):
        super().__init__()
        self.full = full

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x.view(-1) if self.full else x.view(x.size(0), -1)


def _bn_drop_lin(n_in: int, n_out: int, bn: bool = True, p: float = 0.0,
                 actn: nn.Module | None = None) -> list[nn.Module]:  # fmt: skip
    """fastai v1 ``bn_drop_lin``: [BatchNorm1d] [Dropout] Linear [activation]."""
    layers: list[nn.Module] = [nn.BatchNorm1d(n_in)] if bn else []
    if p != 0:
        layers.append(nn.Dropout(p))
    layers.append(nn.Linear(n_in, n_out))
    if actn is not None:
        layers.append(actn)
    return layers


def _listify(p: Any = None) -> list:
    """fastai v1 ``listify`` for the values the references pass (None, a number, a list)."""
    if p is None:
        return []
    if isinstance(p, str) or not isinstance(p, Collection):
        return [p]
    return list(p)


def import_references(published: Path) -> dict[str, types.ModuleType]:
    """The reference model modules, with stand-in ``fastai.layers`` / ``fastai.core``."""
    names = {"Flatten": _Flatten, "bn_drop_lin": _bn_drop_lin, "listify": _listify,
             "Optional": Optional, "Collection": Collection, "Union": Union,
             "Floats": float | Collection[float]}  # fmt: skip
    fastai = types.ModuleType("fastai")
    for sub in ("layers", "core"):
        module = types.ModuleType(f"fastai.{sub}")
        module.__dict__.update(names)
        module.__all__ = list(names)
        sys.modules[f"fastai.{sub}"] = module
        setattr(fastai, sub, module)
    sys.modules["fastai"] = fastai
    code = published / "code"
    if not (code / "models" / "xresnet1d.py").is_file():
        raise SystemExit(f"{published}: not a checkout of helme/ecg_ptbxl_benchmarking")
    sys.path.insert(0, str(code))
    return {name: importlib.import_module(f"models.{name}")
            for name in ("resnet1d", "xresnet1d", "inception1d")}  # fmt: skip


def layers_of(model: nn.Module) -> list[nn.Module]:
    return [m for m in model.modules() if isinstance(m, LAYERS)]


def copy_weights(ours: nn.Module, theirs: nn.Module) -> None:
    """Our weights into the reference, layer by layer; a ValueError names a mismatch."""
    a, b = layers_of(ours), layers_of(theirs)
    if len(a) != len(b):
        raise ValueError(f"{len(a)} layers here, {len(b)} in the reference")
    for i, (x, y) in enumerate(zip(a, b, strict=True)):
        xs = {k: v.shape for k, v in x.state_dict().items()}
        ys = {k: v.shape for k, v in y.state_dict().items()}
        if type(x) is not type(y) or xs != ys:
            raise ValueError(f"layer {i}: {x} here, {y} in the reference")
        y.load_state_dict(x.state_dict())


def max_difference(a: list[torch.Tensor], b: list[torch.Tensor]) -> float:
    return max(float((x - y).abs().max()) for x, y in zip(a, b, strict=True))


def compare(name: str, references: dict[str, types.ModuleType], classes: int = 5) -> dict:
    module, constructor, kwargs = REFERENCES[name]
    torch.manual_seed(0)
    ours = ecgfoundry.create_model(name, num_classes=classes).double()
    theirs = getattr(references[module], constructor)(num_classes=classes, input_channels=12,
                                                      **kwargs).double()  # fmt: skip
    copy_weights(ours, theirs)
    x = torch.randn(16, 12, 250, dtype=torch.float64)
    y = torch.randint(0, 2, (16, classes)).double()
    out: dict[str, Any] = {
        "parameters": sum(p.numel() for p in ours.parameters()),
        "reference_parameters": sum(p.numel() for p in theirs.parameters()),
    }
    ours.eval(), theirs.eval()
    with torch.no_grad():
        out["eval_output_max_abs_difference"] = max_difference([ours(x)], [theirs(x)])
    ours.train(), theirs.train()
    logits = []
    for model in (ours, theirs):
        torch.manual_seed(1)  # the same dropout draws
        z = model(x)
        F.binary_cross_entropy_with_logits(z, y).backward()
        logits.append(z.detach())
    out["train_output_max_abs_difference"] = max_difference(logits[:1], logits[1:])
    grads = [[p.grad for m in layers_of(model) for p in m.parameters(recurse=False)]
             for model in (ours, theirs)]  # fmt: skip
    out["gradient_max_abs_difference"] = max_difference(*grads)
    stats = [[b for m in layers_of(model) if isinstance(m, nn.BatchNorm1d)
              for b in (m.running_mean, m.running_var)] for model in (ours, theirs)]  # fmt: skip
    out["batchnorm_statistics_max_abs_difference"] = max_difference(*stats)
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--published", type=Path, required=True,
                        help="a checkout of helme/ecg_ptbxl_benchmarking")  # fmt: skip
    parser.add_argument("--models", default=",".join(REFERENCES))
    args = parser.parse_args()
    references = import_references(args.published)
    result = {name: compare(name, references) for name in args.models.split(",")}
    print(json.dumps(result, indent=1))


if __name__ == "__main__":
    main()
