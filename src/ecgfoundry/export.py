"""Export a model to ONNX for devices, checked against onnxruntime, optionally int8-quantised.

The exported graph takes ``[batch, leads, samples]`` (the model's input spec, or ``seconds``
given here; the batch is dynamic) and returns logits (output ``logits``; a model without a
classification head returns its embedding, output ``embedding``). ``NAME.json`` beside it says
what the device must do and read: the input spec (``preprocessing``: rate, leads, filters and
normalisation, all applied before the graph unless ``input_normalisation`` is set) and the
output's ``labels``. Every family exports with PyTorch's
ONNX exporter except for one op: S4's kernel is computed with complex numbers and FFTs, which
ONNX cannot express; its layers are replaced by :class:`ecgfoundry.nn.s4.FixedLengthS4Layer`
(the kernel computed once for the export length, applied as a direct causal convolution).

Each export is checked: the ONNX file run by onnxruntime against the PyTorch model on the
same inputs (``max_abs_error``). ``normalise=(mean, sd)`` makes a fixed input z-scoring part
of the graph (:class:`ecgfoundry.nn.layers.Standardised`): a personalised model's support-set
statistics, so the device feeds millivolts; the CLI takes them from the model folder's
``support.json`` when there is one. Dynamic int8 quantisation (``quantize=True``,
onnxruntime's ``quantize_dynamic``: int8 weights of MatMul/Gemm/Conv, activations quantised
on the fly) shrinks the file; how much it costs in accuracy must be measured on held-out
data, not assumed — ECG classifiers have been seen to collapse under int8.

Needs the ``export`` extra: ``pip install 'ecgfoundry[export]'`` (onnx, onnxscript,
onnxruntime).
"""

from __future__ import annotations

import contextlib
import copy
import json
import logging
import warnings
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from ecgfoundry.errors import UsageError

if TYPE_CHECKING:  # torch loads on first use: the CLI lists FORMATS without it
    from torch import Tensor, nn

    from ecgfoundry.models.base import ECGModel

FORMATS = ("onnx",)
OPSET = 18
TOLERANCE = 1e-4  # max abs error between onnxruntime and PyTorch that the check accepts


class ExportError(UsageError):
    """A model that cannot be exported as asked, or whose export does not match it."""


def _require_onnx() -> None:
    try:
        import onnx  # noqa: F401
        import onnxruntime  # noqa: F401
        import onnxscript  # noqa: F401
    except ImportError as error:
        raise ExportError(f"ONNX export needs the export extra ({error.name} is missing): "
                          "pip install 'ecgfoundry[export]'") from error  # fmt: skip


@contextlib.contextmanager
def _quiet() -> Iterator[None]:
    """Silence the exporter's and quantiser's notes (missing torchvision ops, pre-processing
    advice) that say nothing about this export."""
    loggers = [logging.getLogger(name) for name in ("torch.onnx", "")]
    levels = [logger.level for logger in loggers]
    try:
        for logger in loggers:
            logger.setLevel(logging.ERROR)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            yield
    finally:
        for logger, level in zip(loggers, levels, strict=True):
            logger.setLevel(level)


def example_input(model: ECGModel, seconds: float | None = None, batch: int = 1,
                  seed: int = 0) -> Tensor:  # fmt: skip
    """A random input of the model's spec (or ``seconds`` long) in [batch, leads, samples]."""
    import torch

    spec = model.spec
    samples = round(spec.fs * seconds) if seconds is not None else spec.samples
    if samples < 1:
        raise ExportError(f"seconds={seconds}: under one sample at {spec.fs} Hz")
    generator = torch.Generator().manual_seed(seed)
    return torch.randn(batch, len(spec.leads), samples, generator=generator)


def exportable(model: nn.Module, example: Tensor) -> nn.Module:
    """A copy of ``model`` in eval mode whose layers that offer ``fixed_length`` (S4) are fixed
    to the lengths they see on ``example``."""
    import torch

    model = copy.deepcopy(model).eval()
    lengths: dict[str, int] = {}
    hooks = [
        module.register_forward_pre_hook(
            lambda _m, args, name=name: lengths.__setitem__(name, args[0].shape[-1])
        )
        for name, module in model.named_modules()
        if hasattr(module, "fixed_length")
    ]
    with torch.no_grad():
        model(example)
    for hook in hooks:
        hook.remove()
    for name, length in lengths.items():
        parent_name, _, child = name.rpartition(".")
        parent = model.get_submodule(parent_name) if parent_name else model
        setattr(parent, child, getattr(parent, child).fixed_length(length))
    return model


def onnx_session(path: str | Path, threads: int | None = None) -> Any:
    """An onnxruntime CPU session of the ONNX file (``threads``: intra- and inter-op)."""
    import onnxruntime as ort

    options = ort.SessionOptions()
    if threads is not None:
        options.intra_op_num_threads = options.inter_op_num_threads = threads
    return ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])


def run_onnx(path: str | Path, inputs: np.ndarray, threads: int | None = None) -> np.ndarray:
    """The ONNX model's outputs on ``inputs`` [batch, leads, samples] (onnxruntime, CPU)."""
    session = onnx_session(path, threads)
    return session.run(None, {session.get_inputs()[0].name: inputs.astype(np.float32)})[0]


def quantize_int8(path: str | Path, out: str | Path) -> Path:
    """Dynamic int8 quantisation of an ONNX file (onnxruntime.quantization)."""
    from onnxruntime.quantization import QuantType, quantize_dynamic

    with _quiet():
        quantize_dynamic(str(path), str(out), weight_type=QuantType.QInt8)
    return Path(out)


def export_onnx(
    model: ECGModel,
    out: str | Path,
    *,
    seconds: float | None = None,
    quantize: bool = False,
    normalise: tuple[float, float] | None = None,
    check_batch: int = 4,
    tolerance: float = TOLERANCE,
) -> dict[str, Any]:
    """Write ``model`` as ONNX to ``out`` (and, with ``quantize``, an int8 copy beside it,
    ``NAME.int8.onnx``), with ``normalise`` (mean, sd) applied to its input inside the graph;
    check it against PyTorch on ``check_batch`` random inputs. Returns what was written and
    the check's errors; raises :class:`ExportError` when the float export differs from
    PyTorch by more than ``tolerance``."""
    _require_onnx()
    import torch

    from ecgfoundry.inference import tuned_thresholds
    from ecgfoundry.nn.layers import Standardised

    out = Path(out)
    if out.suffix != ".onnx":
        raise ExportError(f"--out {out}: expected a .onnx file name")
    out.parent.mkdir(parents=True, exist_ok=True)
    example = example_input(model, seconds)
    network = exportable(model, example)
    reference: nn.Module = model.eval()
    if normalise is not None:
        mean, sd = normalise
        network, reference = Standardised(network, mean, sd), Standardised(model, mean, sd)
    output = "logits" if model.num_classes else "embedding"
    batch = torch.export.Dim("batch", min=1, max=4096)
    with _quiet():
        program = torch.onnx.export(
            network, (example,), dynamo=True, opset_version=OPSET, input_names=["ecg"],
            output_names=[output], dynamic_shapes=({0: batch},), verbose=False,
        )  # fmt: skip
    program.save(str(out))
    inputs = example_input(model, seconds, batch=check_batch, seed=1)
    if normalise is not None:  # inputs of the scale the graph expects (mean, sd)
        inputs = inputs * normalise[1] + normalise[0]
    with torch.no_grad():
        expected = reference(inputs).float().numpy()
    error = float(np.abs(run_onnx(out, inputs.numpy()) - expected).max())
    report: dict[str, Any] = {
        "family": model.family, "format": "onnx", "path": str(out), "opset": OPSET,
        "input": ["batch", len(model.spec.leads), int(example.shape[-1])],
        "fs": model.spec.fs, "leads": list(model.spec.leads), "outputs": int(expected.shape[1]),
        "output": output, "labels": list(model.config.labels) if model.config.labels else None,
        "preprocessing": model.spec.to_dict(),
        "bytes": out.stat().st_size, "max_abs_error": error, "checked_on": check_batch,
        "fixed_length_layers": sum(hasattr(m, "fixed_length") for m in model.modules()),
        "input_normalisation": None if normalise is None else dict(zip(("mean", "sd"),
                                                                       normalise, strict=True)),
        "thresholds": tuned_thresholds(model),  # finetune's, to name labels as predict does
    }  # fmt: skip
    if error > tolerance:
        raise ExportError(f"{out}: onnxruntime differs from PyTorch by {error:.2e} "
                          f"(> {tolerance:.0e}) on the same inputs")  # fmt: skip
    if quantize:
        int8 = quantize_int8(out, out.with_suffix(".int8.onnx"))
        report["int8"] = {"path": str(int8), "bytes": int8.stat().st_size,
                          "max_abs_error": float(np.abs(run_onnx(int8, inputs.numpy())
                                                        - expected).max())}  # fmt: skip
    out.with_suffix(".json").write_text(json.dumps(report, indent=1))
    return report


__all__ = ["FORMATS", "ExportError", "example_input", "export_onnx", "exportable", "onnx_session",
           "quantize_int8", "run_onnx"]  # fmt: skip
