"""The bundled model's quality targets (issue 15, point 7), from results the grids keep; runs
nothing.

On PTB-XL fold 9 (superdiagnostic and rhythm; seeds 0-2), macro AUROC and AUPRC:

1. ``ecgfoundry-cpc`` post-trained on 100 % of folds 1-8 against the best task-specific model
   (``ptbxl_table.py``'s resnet1d-wang / xresnet1d101 / inception1d, same harness) at 100 %:
   target difference >= 0;
2. the same at 10 % (``ptbxl_table.py --fraction 0.1 --seeds 0,1,2``; the best of the models
   that have cells at 10 %): target difference >= +0.01;
3. post-train at 10 % against the same architecture from scratch at 10 %: target > 0.

"Best" is the task-specific model with the highest mean fold-9 macro AUROC over its seeds, so
the comparison is chosen in the baseline's favour. Differences are of seed means, with a
paired bootstrap 95 % CI (both sides rescored on the same 1000 resamples of the records scored,
from the kept probabilities); a target counts as met on the point estimate, and the CI says
how sure that is.

``--split test`` gives the same comparisons on PTB-XL fold 10, for grids run on a copy that
holds it; the best task-specific model is still chosen on fold 9.

    python benchmarks/bundled_quality.py [--markdown] [--json FILE] [--split val|test]
        [--post-training benchmarks/results/post_training_ecgfoundry_cpc.jsonl]
"""

from __future__ import annotations

import argparse
import json
from collections import defaultdict
from pathlib import Path
from typing import Any

import numpy as np
import ptbxl_table
from post_training import PREDICTIONS_HELP, is_current, predictions_beside, read_rows
from summarise_post_training import paired

from ecgfoundry.adapt import recipe_for
from ecgfoundry.engine.precision import bf16_pays_on_cpu
from ecgfoundry.models.registry import weights_fingerprint

BUNDLED = "ecgfoundry-cpc"
TASKS = ("superdiagnostic", "rhythm")
SEEDS = (0, 1, 2)
# (name, our variant, our fraction, their source, their fraction, target difference, strict)
TARGETS = (
    ("reaches the best task-specific model at 100 %", "post-train", 1.0, "task-specific", 1.0,
     0.0, False),
    ("beats the best task-specific model at 10 % by >= 0.01", "post-train", 0.1,
     "task-specific", 0.1, 0.01, False),
    ("beats its architecture from scratch at 10 %", "post-train", 0.1, "scratch", 0.1, 0.0, True),
)  # fmt: skip
BySeed = dict[int, dict[str, Any]]


def bundled_rows(path: Path, weights: str, split: str) -> dict[tuple[str, str, float], BySeed]:
    """Current post-training rows of the bundled backbone scored on ``split``, by (task,
    variant, fraction)."""
    groups: dict[tuple[str, str, float], BySeed] = defaultdict(dict)
    for row in read_rows(path):
        if is_current(row) and row.get("backbone_weights") == weights and split in row["metrics"]:
            groups[(row["task"], row["variant"], row["fraction"])][row["seed"]] = row
    return groups


def table_rows(path: Path, split: str) -> dict[tuple[str, str, float], BySeed]:
    """Task-specific rows of the present ``supervised`` recipe scored on ``split`` (and fold 9,
    where the best is chosen) by (task, model, fraction), each group from the newest training
    revision that has it (``row["revision"]`` says which)."""
    recipe = recipe_for("supervised").to_dict()
    revision_of = {ptbxl_table.setup_id(recipe, r): r for r in range(1, ptbxl_table.REVISION + 1)}
    found: dict[tuple[str, str, float], dict[int, BySeed]] = defaultdict(lambda: defaultdict(dict))
    for row in read_rows(path):
        revision = revision_of.get(row["setup"])
        if revision is not None and {"val", split} <= set(row["metrics"]):
            key = (row["task"], row["model"], row.get("fraction", 1.0))
            found[key][revision][row["seed"]] = {**row, "revision": revision}
    return {key: by_revision[max(by_revision)] for key, by_revision in found.items()}


def mean_auroc(by_seed: BySeed) -> float:
    """Mean fold-9 macro AUROC over the seeds: what the best baseline is chosen by."""
    return float(np.mean([r["metrics"]["val"]["macro_auroc"] for r in by_seed.values()]))


def row_precision(row: dict[str, Any]) -> str:
    """The precision a cell trained in: recorded, or (rows written before it was) what
    ``precision: auto`` picks on the recorded hardware (bf16 on a GPU, or a CPU with
    AVX512-BF16 or AMX); ``unrecorded`` for the first rows, which kept no hardware."""
    if "precision" in row:
        return ptbxl_table.short_precision(row["precision"])
    forced, hardware = row.get("recipe", {}).get("precision", "auto"), row.get("hardware")
    if forced != "auto":
        return forced
    if hardware is None:
        return "unrecorded"
    bf16 = "accelerator" in hardware or bf16_pays_on_cpu(hardware["cpu_flags"])
    return "bf16" if bf16 else "fp32"


def side(name: str, by_seed: BySeed, split: str) -> dict[str, Any]:
    seeds = sorted(by_seed)
    first = by_seed[seeds[0]]
    revision = {"revision": first["revision"]} if "revision" in first else {}  # a table row
    precision = sorted({row_precision(by_seed[s]) for s in seeds})
    return {"name": name, "seeds": seeds, **revision, "precision": precision,
            **{m: float(np.mean([by_seed[s]["metrics"][split][m] for s in seeds]))
               for m in ("macro_auroc", "macro_auprc")}}  # fmt: skip


def compare(args: argparse.Namespace) -> dict[str, Any]:
    weights = weights_fingerprint(BUNDLED)
    ours_rows = bundled_rows(args.post_training, weights, args.split)
    table = table_rows(args.table, args.split)
    if not ours_rows and not table:
        raise SystemExit(f"no {args.split} scores in {args.post_training} or {args.table}"
                         + (": the grids score fold 10 only where the PTB-XL copy holds it"
                            if args.split == "test" else ""))  # fmt: skip
    out: list[dict[str, Any]] = []
    for task in TASKS:
        for name, variant, fraction, source, their_fraction, target, strict in TARGETS:
            ours = {s: r for s, r in ours_rows.get((task, variant, fraction), {}).items()
                    if s in SEEDS}  # fmt: skip
            if source == "scratch":
                against = f"{BUNDLED} scratch"
                theirs = ours_rows.get((task, "scratch", their_fraction), {})
                folder = args.post_training_predictions
            else:
                candidates = {m: rows for (t, m, f), rows in table.items()
                              if t == task and f == their_fraction}  # fmt: skip
                best = max(candidates, key=lambda m: mean_auroc(candidates[m]), default=None)
                against, theirs = best or "task-specific (none run yet)", candidates.get(best, {})
                folder = args.table_predictions
            theirs = {s: r for s, r in theirs.items() if s in SEEDS}
            entry: dict[str, Any] = {"target": name, "task": task, "fraction": fraction,
                                     "against": against, "their_fraction": their_fraction,
                                     "ours": side(BUNDLED, ours, args.split) if ours else None,
                                     "theirs": side(against, theirs, args.split)
                                     if theirs else None,
                                     "difference": None, "met": None}  # fmt: skip
            report = paired(ours, theirs, args.post_training_predictions, args.split,
                            args.resamples, folder) if ours and theirs else None  # fmt: skip
            if report is not None:
                auroc = report["macro_auroc"]
                entry["difference"] = {"value": auroc["difference"], "ci": auroc["ci"],
                                       "seeds": report["seeds"],
                                       "auprc": report["macro_auprc"]["difference"],
                                       "auprc_ci": report["macro_auprc"]["ci"]}  # fmt: skip
                value = auroc["difference"]
                entry["met"] = bool(value > target if strict else value >= target)
            out.append(entry)
    split = {"val": "val (fold 9)", "test": "test (fold 10)"}[args.split]
    return {"backbone": BUNDLED, "backbone_weights": weights, "split": split,
            "comparisons": out}  # fmt: skip


def seeds_of(side: dict[str, Any]) -> str:
    """``2, bf16+fp32``: how many seeds, and the precisions they trained in."""
    return f"{len(side['seeds'])}, {'+'.join(side['precision'])}"


def markdown(summary: dict[str, Any]) -> str:
    lines = ["| task | target | ours (seeds) | against (seeds) | difference [95 % CI] | met |",
             "|---|---|---|---|---|---|"]  # fmt: skip
    if not summary["split"].startswith("val"):
        lines.insert(0, f"Scored on {summary['split']}; the best task-specific model chosen on "
                        "fold 9.\n")  # fmt: skip
    for e in summary["comparisons"]:
        ours = f"{e['ours']['macro_auroc']:.3f} ({seeds_of(e['ours'])})" if e["ours"] else "-"
        theirs = (f"{e['against']} {e['theirs']['macro_auroc']:.3f} ({seeds_of(e['theirs'])})"
                  if e["theirs"] else e["against"])  # fmt: skip
        if e["difference"]:
            d = e["difference"]
            diff = f"{d['value']:+.3f} [{d['ci'][0]:+.3f}, {d['ci'][1]:+.3f}]"
        else:
            diff = "not yet"
        met = {True: "yes", False: "**no**", None: "-"}[e["met"]]
        lines.append(f"| {e['task']} | {e['target']} | {ours} | {theirs} | {diff} | {met} |")
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    results = Path("benchmarks/results")
    parser.add_argument("--post-training", type=Path,
                        default=results / "post_training_ecgfoundry_cpc.jsonl")  # fmt: skip
    parser.add_argument("--post-training-predictions", type=Path,
                        help=PREDICTIONS_HELP.replace("RESULTS'", "--post-training's"))  # fmt: skip
    parser.add_argument("--table", type=Path, default=results / "ptbxl_table.jsonl")
    parser.add_argument("--table-predictions", type=Path,
                        help=PREDICTIONS_HELP.replace("RESULTS'", "--table's"))  # fmt: skip
    parser.add_argument("--split", default="val", choices=["val", "test"],
                        help="val: fold 9; test: fold 10, where the grids scored it")  # fmt: skip
    parser.add_argument("--resamples", type=int, default=1000)
    parser.add_argument("--markdown", action="store_true")
    parser.add_argument("--json", type=Path, help="also write the JSON here")
    args = parser.parse_args()
    args.post_training_predictions = (args.post_training_predictions
                                      or predictions_beside(args.post_training))  # fmt: skip
    args.table_predictions = args.table_predictions or predictions_beside(args.table)
    summary = compare(args)
    if args.json:
        args.json.write_text(json.dumps(summary, indent=1) + "\n")
    print(markdown(summary) if args.markdown else json.dumps(summary, indent=1))


if __name__ == "__main__":
    main()
