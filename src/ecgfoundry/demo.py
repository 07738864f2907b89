"""``ecgfoundry demo``: the product's main job, offline, on what ships in the package.

1. Reads the bundled sample ECGs and reports what the data layer sees (format, rate, leads,
   heart rate, labels, repairs).
2. Benchmarks the bundled foundation model ``ecgfoundry-cpc`` on the demo's PTB-XL subset
   (240 training records of folds 1-8, 120 validation records of fold 9; superdiagnostic):
   linear probe against post-training at 25 % and 100 % of the labels, then its embeddings
   (numbers and a UMAP map) and SHAP maps with their sanity checks.
3. Predicts the sample ECGs with the post-trained model and writes the HTML report.
"""

from __future__ import annotations

import ast
import json
import time
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from ecgfoundry.data import ptbxl
from ecgfoundry.data.readers import read_record
from ecgfoundry.data.samples import demo_ptbxl, sample_dir, sample_labels, sample_records
from ecgfoundry.data.snomed import abbreviate, ptbxl_labels
from ecgfoundry.inventory import inspect_records
from ecgfoundry.spec import InputSpec

MODEL = "ecgfoundry-cpc"
SUPERCLASSES = ["CD", "HYP", "MI", "NORM", "STTC"]


def demo_config(root: Path) -> dict[str, Any]:
    """The demo's benchmark: the bundled model, probe vs post-train, two label fractions."""
    return {
        "data": {"ptbxl": {"kind": "ptbxl", "root": str(root)}},
        "models": {MODEL: ["linear-probe", "post-train"]},
        "tasks": ["ptbxl:superdiagnostic"],
        "fractions": [0.25, 1.0],
        "seeds": [0],
        "recipes": {"post-train": {"stages.1.epochs": 15}},  # a demo, not a result
        "analysis": {"records": 400, "attribution_records": 8, "segments": 10, "steps": 2},
    }


def _labels(path: Path, metadata: dict[str, Any]) -> str:
    if metadata.get("dx"):
        return " ".join(abbreviate(metadata["dx"]))  # the challenge's names of its codes
    table = sample_labels().set_index("record")
    key = path.relative_to(sample_dir()).with_suffix("").as_posix()
    if key not in table.index:
        return ""
    codes = ast.literal_eval(table.loc[key, "scp_codes"])
    return " ".join(code for code, likelihood in codes.items() if likelihood > 0) or " ".join(codes)


def read_samples(spec: InputSpec) -> list[dict[str, Any]]:
    """One row per bundled record (:func:`ecgfoundry.inventory.inspect_records`: what was read
    and the input of a model with ``spec`` it becomes), with its cardiologists' labels."""
    paths = sample_records()
    rows = inspect_records(paths, spec=spec)
    for row, path in zip(rows, paths, strict=True):
        row["record"] = path.relative_to(sample_dir()).with_suffix("").as_posix()
        row["labels"] = _labels(path, read_record(path).metadata)
    return rows


def _superclasses(path: Path, metadata: dict[str, Any], statements: pd.DataFrame) -> list[str]:
    """A sample's PTB-XL superclasses: from its SCP statements, or its SNOMED-CT codes."""
    if metadata.get("dx"):
        y = ptbxl_labels([metadata["dx"]], SUPERCLASSES)[0]
        return [label for label, on in zip(SUPERCLASSES, y, strict=True) if on]
    codes = _labels(path, metadata).split()
    diagnostic = statements[statements["diagnostic"] == 1]["diagnostic_class"]
    return sorted({diagnostic[c] for c in codes if c in diagnostic.index})


def predict_samples(model_folder: Path, ptbxl_root: Path) -> list[dict[str, Any]]:
    """The adapted model's probabilities on the bundled sample ECGs (none of them was used to
    train or validate it), beside each record's labels and their PTB-XL superclasses."""
    from ecgfoundry.inference import label_names, load_inputs, predict_proba, prepare
    from ecgfoundry.models import load_model

    model = load_model(model_folder)
    paths = sample_records()
    probabilities = predict_proba(model, prepare(model, load_inputs(paths)))
    names = label_names(model)
    statements = pd.read_csv(ptbxl_root / ptbxl.STATEMENTS_CSV, index_col=0)
    rows = []
    for path, row in zip(paths, probabilities, strict=True):
        record = read_record(path)
        ranked = np.argsort(-row)
        rows.append({"record": path.relative_to(sample_dir()).with_suffix("").as_posix(),
                     "labels": _labels(path, record.metadata),
                     "superclasses": _superclasses(path, record.metadata, statements),
                     "predicted": {names[i]: round(float(row[i]), 3) for i in ranked}})  # fmt: skip
    return rows


def run_demo(out: str | Path, *, progress: bool = True) -> dict[str, Any]:
    """The whole demo into ``out`` (resumable); returns what it found and the report's path."""
    from ecgfoundry.benchmark import load_config, run_benchmark, summary
    from ecgfoundry.benchmark.grid import RUN, cells
    from ecgfoundry.benchmark.report import write_report
    from ecgfoundry.models import resolve_model

    start, out = time.perf_counter(), Path(out)
    spec = resolve_model(MODEL).spec
    samples = read_samples(spec)
    config = load_config(demo_config(demo_ptbxl(out / "data")))
    table = run_benchmark(config, out / "benchmark", cache_dir=out / "cache", progress=progress)
    adapted = next(c for c in cells(config) if c.mode == "post-train" and c.fraction == 1.0)
    root = Path(config.tasks[0].data.root)
    run = adapted.folder(out / "benchmark") / RUN
    trained = json.loads((run / "metrics.json").read_text())["run"]["train_records"]
    predictions = predict_samples(run / "model", root)
    report = write_report(out / "benchmark", out / "report.html")
    return {"samples": samples, "spec": spec.to_dict(), "benchmark": summary(table),
            "predictions": predictions, "model": str(run / "model"), "trained_on": trained,
            "report": str(report), "seconds": round(time.perf_counter() - start, 1)}  # fmt: skip
