"""Summarise the post-training grid's results as JSON or Markdown tables.

    python benchmarks/summarise_post_training.py [--results FILE ...] [--split val] [--markdown]
        [--backbone MODEL_DIR]

Per (task, fraction, variant): mean and standard deviation over seeds of macro AUROC and
AUPRC, and the paired comparison with ``finetune`` at the same task and fraction: the
difference of the seed means, its 95 % CI from a paired bootstrap over the evaluation records
(both sides rescored on the same resamples, from the probabilities the grid keeps), and the
relative change in % as the seed paper reports it. The data-efficiency claim gets its own
table: each variant at a fraction against ``finetune`` on all of the training folds.

``--sweep`` instead tabulates the validation sweep (one row per post-train setting, both tasks,
ranked by mean macro AUROC): ``--results benchmarks/results/post_training_sweep.jsonl --sweep``.
"""

from __future__ import annotations

import argparse
import json
from collections import defaultdict
from pathlib import Path
from typing import Any

import numpy as np
from post_training import (
    PREDICTIONS_HELP,
    SWEEP,
    is_current,
    predictions_beside,
    predictions_file,
    read_rows,
)

from ecgfoundry.evaluate import bootstrap_difference
from ecgfoundry.models.registry import weights_fingerprint

Group = tuple[str, float, str]  # task, fraction, variant


def load(
    results: list[Path], split: str, backbone: str | None = None
) -> dict[Group, dict[int, dict[str, Any]]]:
    """Rows made with their variant's present recipe, by (task, fraction, variant), then seed.

    Rows of one backbone only (``backbone``: its weights fingerprint): rows of two backbones
    are never mixed in one table."""
    groups: dict[Group, dict[int, dict[str, Any]]] = defaultdict(dict)
    backbones = set()
    for path in results:
        for row in read_rows(path):
            weights = row.get("backbone_weights", "")
            if is_current(row) and split in row["metrics"] and backbone in (None, weights):
                backbones.add(weights)
                groups[(row["task"], row["fraction"], row["variant"])][row["seed"]] = row
    if len(backbones) > 1:
        raise SystemExit(f"the results hold rows of {len(backbones)} backbones "
                         f"{sorted(backbones)}: choose one with --backbone")  # fmt: skip
    if backbone is not None and not backbones:
        raise SystemExit(f"no {split} rows of backbone {backbone} in {[str(r) for r in results]}")
    return groups


def paired(
    ours: dict[int, dict[str, Any]],
    theirs: dict[int, dict[str, Any]],
    predictions: Path,
    split: str,
    resamples: int,
    their_predictions: Path | None = None,
) -> dict[str, Any] | None:
    """Paired bootstrap of ours minus theirs over the seeds both have; None without the
    kept probabilities (theirs under ``their_predictions`` when they were kept elsewhere)."""
    seeds = sorted(set(ours) & set(theirs))
    folders = (predictions, their_predictions or predictions)
    files = [
        predictions_file(f, side[s])
        for f, side in zip(folders, (ours, theirs), strict=True)
        for s in seeds
    ]
    if not seeds or not all(f.exists() for f in files):
        return None
    loaded = []
    for f in files:  # read each file whole, then close it
        with np.load(f, allow_pickle=False) as z:
            loaded.append({k: z[k] for k in z.files})
    ids, y = loaded[0][f"{split}_ids"], loaded[0][f"{split}_y"]
    if any(not np.array_equal(z[f"{split}_ids"], ids) for z in loaded):
        raise ValueError(f"the kept predictions do not cover the same {split} records: {files}")
    scores = [z[f"{split}_probabilities"] for z in loaded]
    report = bootstrap_difference(y, scores[: len(seeds)], scores[len(seeds) :],
                                  n_resamples=resamples)  # fmt: skip
    return {"seeds": seeds, **{k: report[k] for k in ("macro_auroc", "macro_auprc")}}


def summarise(
    groups: dict[Group, dict[int, dict[str, Any]]],
    predictions: Path,
    split: str,
    resamples: int,
    baseline_fraction: float | None = None,
) -> list[dict[str, Any]]:
    """One entry per group; compared with ``finetune`` at the same fraction, or, when
    ``baseline_fraction`` is given, one entry per group below it, against that fraction."""
    out = []
    for (task, fraction, variant), by_seed in sorted(groups.items()):
        if baseline_fraction is not None and fraction >= baseline_fraction:
            continue
        entry: dict[str, Any] = {"task": task, "fraction": fraction, "variant": variant,
                                 "seeds": sorted(by_seed)}  # fmt: skip
        for metric in ("macro_auroc", "macro_auprc"):
            values = np.array([by_seed[s]["metrics"][split][metric] for s in sorted(by_seed)])
            spread = float(values.std(ddof=1)) if len(values) > 1 else None
            entry[metric] = {"mean": float(values.mean()), "std": spread}
        against = baseline_fraction if baseline_fraction is not None else fraction
        baseline = groups.get((task, against, "finetune"), {})
        if baseline and (fraction, variant) != (against, "finetune"):
            entry["vs_finetune"] = paired(by_seed, baseline, predictions, split, resamples)
        out.append(entry)
    return out


def markdown(entries: list[dict[str, Any]], baseline: str) -> str:
    def value(entry: dict[str, Any], metric: str) -> str:
        stats = entry[metric]
        return f"{stats['mean']:.4f}" + (f" ± {stats['std']:.4f}" if stats["std"] else "")

    def change(entry: dict[str, Any], metric: str) -> str:
        if "vs_finetune" not in entry:  # the baseline itself
            return ""
        comparison = entry["vs_finetune"]
        if comparison is None:
            return "n/a (no kept probabilities of the same seeds)"
        c = comparison[metric]
        low, high = c["ci"]
        return f"{c['difference']:+.4f} [{low:+.4f}, {high:+.4f}] ({c['relative_pct']:+.1f} %)"

    columns = ("task", "fraction", "variant", "seeds", "macro AUROC", f"Δ vs {baseline} [95 % CI]",
               "macro AUPRC", f"Δ vs {baseline} [95 % CI]")  # fmt: skip
    lines = ["| " + " | ".join(columns) + " |", "|" + "---|" * len(columns)]
    for e in entries:
        lines.append(f"| {e['task']} | {e['fraction']:g} | {e['variant']} | {len(e['seeds'])} | "
                     f"{value(e, 'macro_auroc')} | {change(e, 'macro_auroc')} | "
                     f"{value(e, 'macro_auprc')} | {change(e, 'macro_auprc')} |")  # fmt: skip
    return "\n".join(lines)


def sweep_table(groups: dict[Group, dict[int, dict[str, Any]]]) -> str:
    """Sweep settings ranked by mean macro AUROC over the tasks that have them all."""
    tasks = sorted({task for task, _, variant in groups if variant in SWEEP})
    scores: dict[str, dict[str, tuple[float, float]]] = defaultdict(dict)
    for (task, _, variant), by_seed in groups.items():
        if variant in SWEEP:
            metrics = [row["metrics"]["val"] for row in by_seed.values()]
            scores[variant][task] = tuple(  # type: ignore[assignment]
                float(np.mean([m[k] for m in metrics])) for k in ("macro_auroc", "macro_auprc")
            )
    complete = {v: s for v, s in scores.items() if len(s) == len(tasks)}
    mean_auroc = {v: float(np.mean([s[t][0] for t in tasks])) for v, s in complete.items()}
    ranked = sorted(complete, key=lambda v: -mean_auroc[v])
    columns = ["preview epochs", "drop path", "lr", *(f"{t} AUROC / AUPRC" for t in tasks),
               "mean AUROC"]  # fmt: skip
    lines = ["| " + " | ".join(columns) + " |", "|" + "---|" * len(columns)]
    for variant in ranked:
        overrides = SWEEP[variant][1]
        settings = [overrides[k] for k in ("stages.0.epochs", "stages.1.drop_path_rate",
                                           "stages.1.lr")]  # fmt: skip
        cells = [f"{complete[variant][t][0]:.4f} / {complete[variant][t][1]:.4f}" for t in tasks]
        lines.append("| " + " | ".join([*(f"{v:g}" for v in settings), *cells,
                                         f"{mean_auroc[variant]:.4f}"])
                     + " |")  # fmt: skip
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--results", type=Path, nargs="+",
                        default=[Path("benchmarks/results/post_training.jsonl")])  # fmt: skip
    parser.add_argument(
        "--predictions",
        type=Path,
        help=PREDICTIONS_HELP.replace("RESULTS'", "the first results file's"),
    )
    parser.add_argument("--split", default="val", choices=["val", "test"])
    parser.add_argument("--backbone", help="the rows of this backbone (model folder) only")
    parser.add_argument("--resamples", type=int, default=1000)
    parser.add_argument("--markdown", action="store_true")
    parser.add_argument("--sweep", action="store_true", help="tabulate the validation sweep")
    args = parser.parse_args()
    args.predictions = args.predictions or predictions_beside(args.results[0])
    backbone = weights_fingerprint(args.backbone) if args.backbone else None
    groups = load(args.results, args.split, backbone)
    if args.sweep:
        print(sweep_table(groups))
        return
    same = summarise(groups, args.predictions, args.split, args.resamples)
    efficiency = [e for e in summarise(groups, args.predictions, args.split, args.resamples, 1.0)
                  if "vs_finetune" in e]  # fmt: skip
    if args.markdown:
        print(markdown(same, "finetune") + "\n\nAgainst finetune on 100 % of the labels:\n\n"
              + markdown(efficiency, "finetune 100 %"))  # fmt: skip
    else:
        print(json.dumps({"same_fraction": same, "against_full_finetune": efficiency}, indent=1))


if __name__ == "__main__":
    main()
