"""The precision policy: bfloat16 autocast only where it pays, decided at run time."""

from __future__ import annotations

from pathlib import Path
from typing import Literal

import torch

Precision = Literal["auto", "fp32", "bf16"]


def autocast_dtype(precision: Precision, device: torch.device) -> torch.dtype | None:
    """bfloat16 where it pays (CUDA with bf16, or a CPU with AVX512-BF16 or AMX, read from
    /proc/cpuinfo at run time), else None (float32). ``fp32``/``bf16`` force one."""
    if precision == "fp32":
        return None
    if precision == "bf16":
        return torch.bfloat16
    if device.type == "cuda":
        return torch.bfloat16 if torch.cuda.is_bf16_supported() else None
    try:
        flags = Path("/proc/cpuinfo").read_text()
    except OSError:
        return None
    return torch.bfloat16 if (" avx512_bf16" in flags or " amx_bf16" in flags) else None
