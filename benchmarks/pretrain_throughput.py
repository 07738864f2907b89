"""Pretraining throughput: training samples per second of each objective and model family on
this CPU, float32 and bfloat16 autocast, with and without DataLoader workers.

Each case runs one epoch of the real objective on the engine (random crops from a
memory-mapped cache of random records, optimizer steps included, evaluation excluded) and
reports the epoch's samples/s from the engine's log. bfloat16 pays only on CPUs with
AVX512-BF16 or AMX, so the CPU flags are recorded. Prints each case's row as it finishes,
then one JSON object holding them all.

    python benchmarks/pretrain_throughput.py [--threads 2] [--records 256] [--cases a,b]
"""

from __future__ import annotations

import argparse
import json
import platform
import tempfile
from pathlib import Path
from typing import Any

import numpy as np
import torch

from ecgfoundry.adapt import SupervisedObjective, recipe_for
from ecgfoundry.adapt.data import Split, TaskData
from ecgfoundry.engine import Engine
from ecgfoundry.engine.precision import cpu_flags
from ecgfoundry.models import create_model
from ecgfoundry.pretrain import CPCConfig, CPCObjective, W2VCMSCRLMObjective, W2VConfig

# (objective, preset, batch size): the CPU-sized presets of each family (the families that
# pretrain self-supervised, then every family under the supervised objective).
CASES = {
    "cpc/s4-small": ("cpc", "s4-small", 32),
    "cpc/ecg-cpc": ("cpc", "ecg-cpc", 8),
    "cpc/ecgfoundry-cpc": ("cpc", "ecgfoundry-cpc", 32),
    "w2v-cmsc-rlm/ecgfm-tiny": ("w2v-cmsc-rlm", "ecgfm-tiny", 16),
    "w2v-cmsc-rlm/ecgfm-small": ("w2v-cmsc-rlm", "ecgfm-small", 8),
    "supervised/resnet1d-wang": ("supervised", "resnet1d-wang", 128),
    "supervised/net1d-small": ("supervised", "net1d-small", 64),
    "supervised/s4-small": ("supervised", "s4-small", 64),
    "supervised/ecgfoundry-cpc": ("supervised", "ecgfoundry-cpc", 64),
    "supervised/xresnet1d101": ("supervised", "xresnet1d101", 128),
    "supervised/inception1d": ("supervised", "inception1d", 128),
    "supervised/hubert-ecg-tiny": ("supervised", "hubert-ecg-tiny", 32),
}


def random_split(folder: Path, records: int, leads: int, samples: int, labels: int) -> Split:
    """``records`` random ECG-like records in a memory-mapped array, as a cached split."""
    path = folder / f"signals-{leads}x{samples}.npy"
    if not path.exists():
        array = np.lib.format.open_memmap(path, "w+", np.float32, (records, leads, samples))
        array[:] = np.random.default_rng(0).normal(size=array.shape).astype(np.float32)
        array.flush()
    signals = np.load(path, mmap_mode="r")
    y = (np.random.default_rng(1).random((records, labels)) < 0.2).astype(np.float32)
    return Split(signals, np.arange(records), y, np.arange(records))


def objective_for(case: str, split: Split, batch: int, engine: Engine, workers: int) -> Any:
    kind, preset, _ = CASES[case]
    common = {"seed": 0, "device": engine.device, "autocast": engine.autocast,
              "workers": workers}  # fmt: skip
    if kind == "cpc":
        model = create_model(preset)
        return CPCObjective(model, split, split, config=CPCConfig(batch_size=batch, epochs=1),
                            **common)  # fmt: skip
    if kind == "w2v-cmsc-rlm":
        model = create_model(preset)
        return W2VCMSCRLMObjective(model, split, split, **common,
                                   config=W2VConfig(batch_size=batch // 2, epochs=1))  # fmt: skip
    model = create_model(preset, num_classes=split.y.shape[1])
    spec = model.spec
    data = TaskData(labels=[f"l{i}" for i in range(split.y.shape[1])], window=spec.samples,
                    train=split, val=split, test=None, description={})  # fmt: skip
    recipe = recipe_for("supervised", config={"batch_size": batch, "stages.0.epochs": 1})
    return SupervisedObjective(model, recipe, data, **common)


def measure(case: str, folder: Path, records: int, precision: str, workers: int) -> float:
    _, preset, batch = CASES[case]
    spec = create_model(preset).spec
    seconds = max(spec.seconds, 10.0)
    split = random_split(folder, records, len(spec.leads), round(spec.fs * seconds), 5)
    with tempfile.TemporaryDirectory() as run:
        engine = Engine(run, precision=precision, progress_bar=False)  # type: ignore[arg-type]
        progress = engine.fit(objective_for(case, split, batch, engine, workers))
    return round(progress.history[0]["samples_per_s"], 1)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--records", type=int, default=256)
    parser.add_argument("--cases", default=",".join(CASES))
    args = parser.parse_args()
    unknown = sorted(set(args.cases.split(",")) - set(CASES))
    if unknown:
        parser.error(f"--cases: unknown {unknown}; cases: {', '.join(CASES)}")
    torch.set_num_threads(args.threads)
    rows = []
    with tempfile.TemporaryDirectory() as folder:
        for case in args.cases.split(","):
            row: dict[str, Any] = {"case": case, "batch": CASES[case][2]}
            row["float32"] = measure(case, Path(folder), args.records, "fp32", 0)
            row["bfloat16"] = measure(case, Path(folder), args.records, "bf16", 0)
            row["bf16_speedup"] = round(row["bfloat16"] / row["float32"], 2)
            row["float32_2_loader_workers"] = measure(case, Path(folder), args.records, "fp32", 2)
            rows.append(row)
            print(json.dumps(row), flush=True)
    print(json.dumps({"benchmark": "pretrain_throughput", "unit": "training samples/s",
                      "threads": args.threads, "records": args.records,
                      "torch": torch.__version__, "cpu": platform.processor() or platform.machine(),
                      "cpu_flags": cpu_flags(), "cases": rows}, indent=1))  # fmt: skip


if __name__ == "__main__":
    main()
