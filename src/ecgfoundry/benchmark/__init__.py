"""Benchmarks of any set of ECG models: a grid of models x tasks x modes x label fractions x
seeds (:mod:`~ecgfoundry.benchmark.config`), run as resumable cells
(:mod:`~ecgfoundry.benchmark.grid`) on one machine or a Ray cluster
(:mod:`~ecgfoundry.benchmark.run`), into one tidy results table
(:mod:`~ecgfoundry.benchmark.results`)."""

from ecgfoundry.benchmark.config import BenchmarkConfig, BenchmarkConfigError, load_config
from ecgfoundry.benchmark.grid import Cell, cells
from ecgfoundry.benchmark.results import collect, summary
from ecgfoundry.benchmark.run import run_benchmark

__all__ = [
    "BenchmarkConfig",
    "BenchmarkConfigError",
    "Cell",
    "cells",
    "collect",
    "load_config",
    "run_benchmark",
    "summary",
]
