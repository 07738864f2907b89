"""Personalised VA detection, the whole protocol (issue 17): subjects with VA windows split by
subject into meta-train / meta-val / test (those without VA join meta-train), a global model
and three meta-trainings (MAML; MAML + curriculum; first-order MAML + curriculum), then every
method scored on the test subjects at 1, 5 and 10 support windows per class under the
leak-free protocol and MetaVA's. Settings are the defaults of ``MAMLConfig``, fixed before any
test number existed (meta-val only picks each meta-training's best epoch).

    python benchmarks/personalize.py --data DIR/mitdb DIR/vfdb [DIR/cudb ...] \
        --runs runs/personalize --results benchmarks/results/personalize.json [--markdown]

Resumable: each training is an engine run under ``--runs`` (rerun the command to continue).
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import time
from pathlib import Path

import torch

from ecgfoundry.atomic import atomic_write_text
from ecgfoundry.personalize import (
    Curriculum,
    MAMLConfig,
    backbone,
    evaluate,
    load_subjects,
    meta_train,
    scorers,
    split_names,
    summarise,
    train_global,
)
from ecgfoundry.personalize.run import META_RUNS


def markdown(table: list[dict]) -> str:
    lines = ["| protocol | shots | method | subjects | pooled AUROC | pooled F1 | median AUROC "
             "| worst-decile AUROC | median F1 | AUROC - reference [95 % CI] |",
             "|---|---|---|---|---|---|---|---|---|---|"]  # fmt: skip
    for e in table:
        diff = (f"{e['auroc_minus_reference']:+.3f} [{e['ci'][0]:+.3f}, {e['ci'][1]:+.3f}]"
                if "ci" in e else "reference")  # fmt: skip
        numbers = [e["pooled_auroc"], e["pooled_f1"], e["median_auroc"], e["worst_decile_auroc"],
                   e["median_f1"]]  # fmt: skip
        lines.append(f"| {e['protocol']} | {e['shots']} | {e['method']} | {e['subjects']} | "
                     + " | ".join(f"{v:.3f}" for v in numbers) + f" | {diff} |")  # fmt: skip
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", nargs="+", type=Path)
    parser.add_argument("--runs", type=Path, default=Path("runs/personalize"))
    parser.add_argument("--results", type=Path, default=Path("benchmarks/results/personalize.json"))
    parser.add_argument("--backbone", default="net1d-tiny")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--shots", default="1,5,10")
    parser.add_argument("--epochs", type=int, default=None, help="override MAMLConfig.epochs")
    parser.add_argument("--markdown", action="store_true", help="print the table of --results")
    args = parser.parse_args()
    if args.markdown:
        print(markdown(json.loads(args.results.read_text())["summary"]))
        return
    torch.set_num_threads(1)
    start = time.perf_counter()
    subjects, problems = load_subjects(args.data)
    by_name = {s.name: s for s in subjects}
    with_va = [s.name for s in subjects if s.counts["va"] > 0]
    parts = split_names(with_va, seed=args.seed)
    parts["meta-train"] += sorted(set(by_name) - set(with_va))
    train = [by_name[n] for n in parts["meta-train"]]
    val = [by_name[n] for n in parts["meta-val"]]
    test = [by_name[n] for n in parts["test"]]
    config = MAMLConfig() if args.epochs is None else MAMLConfig(epochs=args.epochs)

    def architecture() -> torch.nn.Module:
        return backbone(args.backbone, seed=args.seed)

    models = {"global": train_global(architecture(), train, val, args.runs / "global",
                                     seed=args.seed)}  # fmt: skip
    for name, (first, curriculum) in META_RUNS.items():
        c = dataclasses.replace(config, first_order=first,
                                curriculum=Curriculum() if curriculum else None)  # fmt: skip
        models[name] = meta_train(architecture(), train, val, c, args.runs / name, seed=args.seed)
        minutes = round((time.perf_counter() - start) / 60, 1)
        print(json.dumps({"trained": name, "minutes": minutes}), flush=True)
    shots = [int(k) for k in args.shots.split(",")]
    rows, skipped = evaluate(test, scorers(models, config, architecture, seed=args.seed), shots)
    table = summarise(rows)
    result = {
        "config": config.to_dict(), "backbone": args.backbone, "seed": args.seed,
        "data": [str(p) for p in args.data], "records_left_out": problems,
        "subjects": {k: v for k, v in parts.items()},
        "windows": {s.name: s.counts for s in subjects}, "skipped": skipped,
        "minutes": round((time.perf_counter() - start) / 60, 1), "summary": table,
        "per_subject": [{k: v for k, v in r.items() if k not in ("y", "p")} for r in rows],
    }  # fmt: skip
    args.results.parent.mkdir(parents=True, exist_ok=True)
    atomic_write_text(args.results, json.dumps(result, indent=1))
    print(markdown(table))
    print(json.dumps({"subjects_skipped": len(skipped), "minutes": result["minutes"]}))


if __name__ == "__main__":
    main()
