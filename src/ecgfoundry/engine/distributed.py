"""Multi-process training with torch.distributed: started by ``torchrun`` (which sets
RANK/WORLD_SIZE), gloo on CPU, NCCL on GPUs; a plain run is one process.

Every process draws the same global batch and takes its slice (``rank::world``); losses are
scaled so that DDP's gradient average equals the single-process gradient of the whole batch.
BatchNorm statistics are per process (no SyncBatchNorm), so models that apply BatchNorm differ
slightly from a single-process run; the published Net1D applies none.
"""

from __future__ import annotations

import logging
import os
import sys
from typing import NoReturn

import torch
import torch.distributed as dist

_joined = False  # whether this process has taken part in a multi-process run


def setup() -> torch.device:
    """Join the process group if launched as several processes; return this process's device."""
    global _joined
    world = int(os.environ.get("WORLD_SIZE", "1"))
    cuda = torch.cuda.is_available()
    if world > 1 and not dist.is_initialized():
        dist.init_process_group("nccl" if cuda else "gloo")
        _joined = True
    if cuda:
        local = int(os.environ.get("LOCAL_RANK", "0"))
        torch.cuda.set_device(local)
        return torch.device("cuda", local)
    return torch.device("cpu")


def rank() -> int:
    return dist.get_rank() if dist.is_initialized() else 0


def world() -> int:
    return dist.get_world_size() if dist.is_initialized() else 1


def is_main() -> bool:
    return rank() == 0


def barrier() -> None:
    if dist.is_initialized():
        dist.barrier()


def gather_rows(local: torch.Tensor, total: int) -> torch.Tensor:
    """Concatenate every process's rows of a ``rank::world`` split back into global order."""
    if world() == 1:
        return local
    size = -(-total // world())
    padded = torch.zeros((size, *local.shape[1:]), dtype=local.dtype, device=local.device)
    padded[: len(local)] = local
    parts = [torch.empty_like(padded) for _ in range(world())]
    dist.all_gather(parts, padded)
    out = torch.empty((total, *local.shape[1:]), dtype=local.dtype, device=local.device)
    for r, part in enumerate(parts):
        count = len(range(r, total, world()))
        out[r :: world()] = part[:count]
    return out


def gather_tensors(local: dict[str, torch.Tensor]) -> list[dict[str, torch.Tensor]]:
    """Every process's tensors (the same keys and shapes on each), in rank order, on the CPU."""
    if world() == 1:
        return [{k: v.cpu() for k, v in local.items()}]
    out: list[dict[str, torch.Tensor]] = [{} for _ in range(world())]
    for key, value in local.items():
        value = value.to(_device())
        parts = [torch.empty_like(value) for _ in range(world())]
        dist.all_gather(parts, value)
        for r, part in enumerate(parts):
            out[r][key] = part.cpu()
    return out


def _device() -> torch.device:
    """Where collective tensors must live: NCCL takes CUDA tensors only."""
    if torch.cuda.is_available() and dist.get_backend() == "nccl":
        return torch.device("cuda", torch.cuda.current_device())
    return torch.device("cpu")


def broadcast_flag(flag: bool) -> bool:
    """The main process's decision, shared (e.g. whether to stop early)."""
    if world() == 1:
        return flag
    value = torch.tensor([int(flag)], device=_device())
    dist.broadcast(value, src=0)
    return bool(value.item())


def all_sum(value: float) -> float:
    """The sum of a number over processes."""
    if world() == 1:
        return value
    total = torch.tensor([value], dtype=torch.float64, device=_device())
    dist.all_reduce(total)
    return float(total.item())


def cleanup() -> None:
    """Leave the process group together: a process that tears its connections down while
    another still talks to it can abort that one (gloo: "terminate called without an active
    exception")."""
    if dist.is_initialized():
        dist.barrier()
        dist.destroy_process_group()


def exit_process(code: int = 0) -> NoReturn:
    """End this process with ``code``. A process that took part in a multi-process run flushes
    its output and skips the interpreter's shutdown: there, with gloo (torch 2.13), a finished
    process now and then aborted (SIGABRT, "terminate called without an active exception", no
    Python frame) after every file was written, a native thread meeting the finalising
    interpreter as in pytorch/pytorch#179291. Any other process exits normally."""
    if not _joined:
        sys.exit(code)
    logging.shutdown()
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(code)
