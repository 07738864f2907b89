"""Summarise the post-training grid's results file as JSON or a Markdown table.

    python benchmarks/summarise_post_training.py [--results FILE] [--split val] [--markdown]

Per (task, fraction, variant): mean and standard deviation over seeds of macro AUROC and
AUPRC, the number of seeds, and the relative change against ``finetune`` with the same task,
fraction and seeds (in %, as the seed paper reports it).
"""

from __future__ import annotations

import argparse
import json
from collections import defaultdict
from pathlib import Path
from typing import Any

import numpy as np


def summarise(rows: list[dict[str, Any]], split: str) -> list[dict[str, Any]]:
    groups: dict[tuple, dict[int, dict[str, float]]] = defaultdict(dict)
    for row in rows:
        if split in row["metrics"]:
            metrics = row["metrics"][split]
            groups[(row["task"], row["fraction"], row["variant"])][row["seed"]] = {
                "auroc": metrics["macro_auroc"], "auprc": metrics["macro_auprc"],
            }  # fmt: skip
    out = []
    for (task, fraction, variant), by_seed in sorted(groups.items()):
        baseline = groups.get((task, fraction, "finetune"), {})
        shared = sorted(set(by_seed) & set(baseline))
        entry: dict[str, Any] = {"task": task, "fraction": fraction, "variant": variant,
                                 "seeds": len(by_seed)}  # fmt: skip
        for metric in ("auroc", "auprc"):
            values = np.array([by_seed[s][metric] for s in sorted(by_seed)])
            entry[f"{metric}_mean"] = float(values.mean())
            entry[f"{metric}_std"] = float(values.std(ddof=1)) if len(values) > 1 else None
            if shared and variant != "finetune":
                ours = np.mean([by_seed[s][metric] for s in shared])
                theirs = np.mean([baseline[s][metric] for s in shared])
                entry[f"{metric}_vs_finetune_pct"] = float(100 * (ours - theirs) / theirs)
        out.append(entry)
    return out


def markdown(entries: list[dict[str, Any]]) -> str:
    def cell(entry: dict[str, Any], metric: str) -> str:
        text = f"{entry[f'{metric}_mean']:.4f}"
        if entry[f"{metric}_std"] is not None:
            text += f" ± {entry[f'{metric}_std']:.4f}"
        change = entry.get(f"{metric}_vs_finetune_pct")
        return text + (f" ({change:+.1f} %)" if change is not None else "")

    columns = ("task", "fraction", "variant", "seeds", "macro AUROC (vs finetune)",
               "macro AUPRC (vs finetune)")  # fmt: skip
    lines = ["| " + " | ".join(columns) + " |", "|" + "---|" * len(columns)]
    for e in entries:
        lines.append(f"| {e['task']} | {e['fraction']:g} | {e['variant']} | {e['seeds']} | "
                     f"{cell(e, 'auroc')} | {cell(e, 'auprc')} |")  # fmt: skip
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--results", type=Path, default=Path("benchmarks/results/post_training.jsonl")
    )
    parser.add_argument("--split", default="val", choices=["val", "test"])
    parser.add_argument("--markdown", action="store_true")
    args = parser.parse_args()
    rows = [json.loads(line) for line in args.results.read_text().splitlines() if line.strip()]
    entries = summarise(rows, args.split)
    print(markdown(entries) if args.markdown else json.dumps(entries, indent=1))


if __name__ == "__main__":
    main()
