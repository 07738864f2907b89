"""Deploying a personalised VA detector (issue 17, points 6-7): latency per 2-s window at batch
1 on one thread (PyTorch eager, onnxruntime float32 and int8), and what int8 costs: each test
subject's personalised model (``--model``'s initialisation + pre-fine-tuning unless
``--no-pre-finetune`` + adaptation on its first 10 windows per class, leak-free) exported to
ONNX with its support-set z-scoring inside the graph, float32 and dynamically int8 quantised,
and scored by onnxruntime on the subject's test windows in mV, as a device would feed them.
The latency is that of such a graph.

    python benchmarks/personalize_deploy.py --data DIR/mitdb DIR/vfdb \
        --model runs/personalize/maml-curriculum/model \
        --subjects benchmarks/results/personalize.json \
        --out benchmarks/results/personalize_deploy.json
"""

from __future__ import annotations

import argparse
import json
import platform
import statistics
import tempfile
import time
from pathlib import Path

import numpy as np
import torch
from sklearn.metrics import roc_auc_score

from ecgfoundry.engine.precision import describe_hardware
from ecgfoundry.export import export_onnx, onnx_session, run_onnx
from ecgfoundry.models import load_model
from ecgfoundry.nn.layers import Standardised
from ecgfoundry.personalize import MAMLConfig, load_subjects, split_subject
from ecgfoundry.personalize.maml import personalise_split, probabilities
from ecgfoundry.personalize.protocol import SubjectSkipped, normalised


def timed(run, repeats: int = 2000, warmup: int = 200) -> dict[str, float]:
    for _ in range(warmup):
        run()
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        run()
        times.append((time.perf_counter() - start) * 1e3)
    times.sort()
    return {"median_ms": statistics.median(times), "p90_ms": times[int(0.9 * len(times))]}


def latency(model: torch.nn.Module, folder: Path) -> dict[str, dict[str, float]]:
    """Per window at batch 1 on one thread, the input z-scoring included (its values do not
    change the time)."""
    torch.set_num_threads(1)
    x = torch.randn(1, 1, model.spec.samples)
    deployed = Standardised(model, 0.0, 1.0)
    with torch.no_grad():
        eager = timed(lambda: deployed(x))
    report = export_onnx(model, folder / "m.onnx", quantize=True, normalise=(0.0, 1.0))
    out = {"pytorch_eager": eager}
    for name, path in (("onnxruntime_fp32", report["path"]),
                       ("onnxruntime_int8", report["int8"]["path"])):  # fmt: skip
        session = onnx_session(path, threads=1)
        feed = {session.get_inputs()[0].name: x.numpy()}
        out[name] = timed(lambda s=session, f=feed: s.run(None, f))
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", nargs="+", type=Path, required=True)
    parser.add_argument("--model", type=Path, required=True, help="a meta-trained model folder")
    parser.add_argument("--subjects", type=Path, required=True, help="personalize.py's results")
    parser.add_argument("--shots", type=int, default=10)
    parser.add_argument(
        "--no-pre-finetune",
        action="store_true",
        help="adapt without pre-fine-tuning (with the global model as --model: "
        "the global-finetune method)",
    )
    parser.add_argument(
        "--out", type=Path, default=Path("benchmarks/results/personalize_deploy.json")
    )
    args = parser.parse_args()
    model = load_model(args.model).eval()
    test_names = json.loads(args.subjects.read_text())["subjects"]["test"]
    subjects = {s.name: s for s in load_subjects(args.data)[0]}
    config = MAMLConfig()
    per_subject: list[dict] = []
    labels: dict[str, list] = {k: [] for k in ("eager", "fp32", "int8")}
    scores: dict[str, list] = {k: [] for k in labels}
    with tempfile.TemporaryDirectory() as tmp:
        speed = latency(model, Path(tmp))
        for name in test_names:
            subject = subjects[name]
            try:
                split = split_subject(subject, args.shots, "leak-free")
            except SubjectSkipped as error:
                per_subject.append({"subject": name, "skipped": error.problem})
                continue
            mine = personalise_split(model, subject, split, config, not args.no_pre_finetune)
            report = export_onnx(mine, Path(tmp) / "p.onnx", quantize=True,
                                 normalise=(split.mean, split.sd))  # fmt: skip
            millivolts = subject.x[split.test]
            y = subject.y[split.test]
            eager = probabilities(mine, torch.from_numpy(normalised(subject, split, split.test)))
            probs = {
                "eager": eager,
                "fp32": 1 / (1 + np.exp(-run_onnx(report["path"], millivolts).reshape(-1))),
                "int8": 1 / (1 + np.exp(-run_onnx(report["int8"]["path"], millivolts).reshape(-1))),
            }
            for k, p in probs.items():
                labels[k].append(y)
                scores[k].append(p)
            per_subject.append(
                {
                    "subject": name,
                    "windows": len(y),
                    **{f"auroc_{k}": float(roc_auc_score(y, p)) for k, p in probs.items()},
                    "max_abs_error_fp32": report["max_abs_error"],
                }
            )
    pooled = {
        k: float(roc_auc_score(np.concatenate(labels[k]), np.concatenate(scores[k])))
        for k in labels
    }
    result = {
        "model": str(args.model),
        "pre_finetune": not args.no_pre_finetune,
        "parameters": sum(p.numel() for p in model.parameters()),
        "input": [1, 1, model.spec.samples],
        "latency_batch1_one_thread": speed,
        "pooled_auroc": pooled,
        "int8_minus_fp32_auroc": pooled["int8"] - pooled["fp32"],
        "per_subject": per_subject,
        "hardware": describe_hardware(),
        "python": platform.python_version(),
    }
    args.out.write_text(json.dumps(result, indent=1))
    print(
        json.dumps(
            {
                k: result[k]
                for k in (
                    "parameters",
                    "latency_batch1_one_thread",
                    "pooled_auroc",
                    "int8_minus_fp32_auroc",
                )
            },
            indent=1,
        )
    )


if __name__ == "__main__":
    main()
