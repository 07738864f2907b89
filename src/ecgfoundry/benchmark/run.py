"""``run_benchmark``: run a configuration's cells into OUT (resumable: a rerun skips finished
cells and resumes a killed one) on one machine or a Ray cluster, then write the results table
and, once every cell has run and the configuration asks for them, the analyses.

Backends run the same :func:`~ecgfoundry.benchmark.grid.run_cell` on the same cells, so they
give the same results: ``local`` runs them one after another in this process; ``ray`` sends
each to a Ray worker (one CPU each; ``address`` joins a running cluster, else Ray starts one
on this machine). Every worker must see OUT and the data at the same paths (a shared file
system) and have ecgfoundry installed.
"""

from __future__ import annotations

import json
import sys
import time
from pathlib import Path
from typing import Any

import pandas as pd

from ecgfoundry import __version__
from ecgfoundry.atomic import atomic_write_text
from ecgfoundry.benchmark.analysis import analyse
from ecgfoundry.benchmark.config import BenchmarkConfig, BenchmarkConfigError, load_config
from ecgfoundry.benchmark.grid import Cell, cell_status, cells, run_cell
from ecgfoundry.benchmark.results import write_results
from ecgfoundry.engine.precision import describe_hardware
from ecgfoundry.errors import UsageError

BACKENDS = ("local", "ray")


def _provenance(config: BenchmarkConfig, out: Path) -> None:
    import torch

    record = {"ecgfoundry": __version__, "command": sys.argv, "config": config.source,
              "hardware": describe_hardware(), "torch": torch.__version__,
              "started": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())}  # fmt: skip
    runs = out / "runs.jsonl"
    with runs.open("a") as handle:  # one line per invocation: the grid's history
        handle.write(json.dumps(record, default=str) + "\n")


def _run_ray(pending: list[Cell], out: Path, address: str | None, options: dict[str, Any],
             on_done: Any) -> None:  # fmt: skip
    try:
        import ray
    except ImportError as error:
        raise UsageError("--backend ray needs Ray: pip install 'ecgfoundry[ray]'") from error
    started = not ray.is_initialized()
    if started:
        ray.init(address=address, include_dashboard=False, log_to_driver=False)
    try:
        remote = ray.remote(num_cpus=1)(run_cell)
        refs = {remote.remote(cell, str(out), threads=1, **options): cell for cell in pending}
        while refs:
            ready, _ = ray.wait(list(refs), num_returns=1)
            for ref in ready:
                ray.get(ref)  # a failed cell raises here, naming it
                on_done(refs.pop(ref))
    finally:
        if started:
            ray.shutdown()


def preflight(config: BenchmarkConfig) -> None:
    """Refuse, before anything runs, a PTB-XL label fraction that leaves a label without a
    positive training record (other sources are checked by each cell as it starts)."""
    from ecgfoundry.data import ptbxl

    loaded: dict[str, Any] = {}
    for task in config.tasks:
        if task.data.kind != "ptbxl":
            continue
        db = loaded.setdefault(task.data.root, ptbxl.load(task.data.root))
        labelled = db.task(task.task)
        for fraction in config.fractions:
            for seed in config.seeds:
                counts = labelled.y[labelled.train_subset(fraction, seed)].sum(axis=0)
                if absent := [label for label, n in zip(labelled.labels, counts, strict=True)
                              if n == 0]:  # fmt: skip
                    raise BenchmarkConfigError(
                        f"{config.source}: fractions: {fraction:g} of {task.name}'s training "
                        f"records (seed {seed}) has no positive for {absent}; use a larger "
                        "fraction or another task")  # fmt: skip


def run_benchmark(
    config: str | Path | dict[str, Any] | BenchmarkConfig,
    out: str | Path,
    *,
    backend: str = "local",
    address: str | None = None,
    max_cells: int | None = None,
    cache_dir: str | Path | None = None,
    workers: int = 1,
    allow_overlap: bool = False,
    progress: bool = True,
) -> pd.DataFrame:
    """Run the benchmark ``config`` into ``out`` and return its results table (also written
    to ``out/results.parquet`` and ``.csv``). ``max_cells``: stop after this many cells."""
    if backend not in BACKENDS:
        raise UsageError(f"backend must be one of {list(BACKENDS)}, got {backend!r}")
    if max_cells is not None and max_cells < 0:
        raise UsageError(f"max_cells must be >= 0, got {max_cells}")
    if not isinstance(config, BenchmarkConfig):
        config = load_config(config)
    preflight(config)
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    _provenance(config, out)
    grid = cells(config)
    atomic_write_text(out / "cells.json",
                      json.dumps([c.describe() for c in grid], indent=1))  # fmt: skip
    pending = [c for c in grid if cell_status(c, out) not in ("done", "refused")]
    pending = pending[:max_cells] if max_cells is not None else pending
    options = {"cache_dir": cache_dir, "workers": workers, "allow_overlap": allow_overlap}
    done = len(grid) - len(pending)

    def finished(cell: Cell) -> None:
        nonlocal done
        done += 1
        write_results(out)
        if progress:
            print(f"[{done}/{len(grid)}] {cell.name}: {cell_status(cell, out)}", file=sys.stderr)

    if backend == "ray" and pending:
        _run_ray(pending, out, address, options, finished)
    else:
        for cell in pending:
            run_cell(cell, out, progress_bar=progress, **options)
            finished(cell)
    table = write_results(out)
    wanted = config.analysis is not None or config.transfer is not None
    if wanted and all(cell_status(c, out) != "pending" for c in grid):
        if progress:
            print("analysing (representation, attribution, transfer) ...", file=sys.stderr)
        analyse(config, out, cache_dir=cache_dir, progress=progress, grid=grid,
                allow_overlap=allow_overlap)  # fmt: skip
    return table


__all__ = ["BACKENDS", "run_benchmark"]
