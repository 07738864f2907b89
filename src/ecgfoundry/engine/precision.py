"""The precision policy: bfloat16 autocast only where it pays, decided at run time."""

from __future__ import annotations

import os
import platform
from collections.abc import Iterable
from pathlib import Path
from typing import Literal

import torch

Precision = Literal["auto", "fp32", "bf16"]


# The instruction sets that decide what runs fast (bf16 pays only with avx512_bf16 or AMX).
CPU_FLAGS = ("avx2", "avx512f", "avx512_vnni", "avx512_bf16", "amx_bf16", "amx_tile")


def _cpuinfo() -> str:
    try:
        return Path("/proc/cpuinfo").read_text()
    except OSError:  # not Linux
        return ""


def cpu_flags() -> list[str]:
    """Which of :data:`CPU_FLAGS` this CPU has (Linux; empty elsewhere)."""
    flags = set(_cpuinfo().split())
    return [flag for flag in CPU_FLAGS if flag in flags]


def describe_hardware(device: torch.device | None = None) -> dict[str, object]:
    """What a measurement ran on: CPU model, cores, torch threads, CPU flags, torch version
    and the accelerator (if ``device`` is one)."""
    names = [line.split(":", 1)[1].strip() for line in _cpuinfo().splitlines()
             if line.startswith("model name")]  # fmt: skip
    out: dict[str, object] = {"cpu": names[0] if names else platform.processor() or "unknown",
                              "cpu_cores": os.cpu_count(), "torch_threads": torch.get_num_threads(),
                              "cpu_flags": cpu_flags(), "torch": torch.__version__}  # fmt: skip
    if device is not None and device.type == "cuda":
        out["accelerator"] = torch.cuda.get_device_name(device)
    return out


def autocast_dtype(precision: Precision, device: torch.device) -> torch.dtype | None:
    """bfloat16 where it pays (CUDA with bf16, or a CPU with AVX512-BF16 or AMX, read from
    /proc/cpuinfo at run time), else None (float32). ``fp32``/``bf16`` force one."""
    if precision == "fp32":
        return None
    if precision == "bf16":
        return torch.bfloat16
    if device.type == "cuda":
        return torch.bfloat16 if torch.cuda.is_bf16_supported() else None
    return torch.bfloat16 if bf16_pays_on_cpu(cpu_flags()) else None


def bf16_pays_on_cpu(flags: Iterable[str]) -> bool:
    """Whether bfloat16 runs faster than float32 on a CPU with these flags (AVX512-BF16 or
    AMX; elsewhere it ran at 0.3-0.7x float32)."""
    return bool({"avx512_bf16", "amx_bf16"} & set(flags))
