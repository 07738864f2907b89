"""The PTB-XL benchmark's task-specific models (Strodthoff et al. 2021), reproduced as a
resumable grid: resnet1d-wang, xresnet1d101 and inception1d x the six tasks, trained from
scratch with the benchmark's recipe (``--strategy supervised``: AdamW, one-cycle to 0.01, 50
epochs, batch 128, random 2.5-s crops, the last epoch's weights), scored on fold 9 by sliding
windows (stride 1.25 s) with the maximum per record, and on fold 10 whenever it is present.

The recipe is the published one, not tuned here: fold 9 chooses nothing and is reported.
Each finished cell is appended to ``--results`` at once, with its probabilities kept under
``--predictions``; cells already there are skipped (a cell is keyed by model, task, seed and
a hash of its recipe), so the grid carries on across sessions. A killed cell resumes from its
run folder's checkpoint (written every epoch and every ``--checkpoint-minutes``). On a copy
that holds fold 10, a cell whose row lacks fold-10 scores (trained where fold 10 was absent,
as this repository's committed rows were) counts as not run: it is run again and its new row,
with fold 10, replaces the old one in the summary.

    python benchmarks/ptbxl_table.py --root DIR/ptbxl [--models ...] [--tasks ...]
        [--max-cells N] [--cache-dir DIR]
    python benchmarks/ptbxl_table.py --summary [--markdown]    # the table so far
    python benchmarks/ptbxl_table.py --per-label form [--markdown]  # per label, seed 0
    python benchmarks/ptbxl_table.py --summary --against-revision 1 [--markdown]
        # + each cell minus its revision-1 cell on the same seeds (paired bootstrap)

``--fraction 0.1 --seeds 0,1,2`` trains on a share of the training folds instead (the label-
scarce baseline the bundled model is compared with, ``bundled_quality.py``); such cells are
keyed ``MODEL/TASK/fFRACTION/sSEED`` in the same results and left out of the table.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import time
from pathlib import Path
from typing import Any

import numpy as np
import torch
from post_training import (
    PREDICTIONS_HELP,
    fold10_present,
    hardware,
    keep_predictions,
    predictions_beside,
    read_rows,
    scored_enough,
)

import ecgfoundry
from ecgfoundry.adapt import finetune, recipe_for
from ecgfoundry.adapt.data import ptbxl_task
from ecgfoundry.adapt.objective import predict_split
from ecgfoundry.data.ptbxl import TASKS
from ecgfoundry.evaluate.metrics import auroc_per_label, bootstrap_difference, macro

MODELS = ("resnet1d-wang", "xresnet1d101", "inception1d")
# 1: the supervised objective dropped the recipe's Adam betas, so cells trained with torch's
# (0.9, 0.999) instead of the benchmark's (0.9, 0.99); 2: fixed (and its own setup)
REVISION = 2
# Published fold-10 macro AUROC (Strodthoff et al. 2021, Table 2 / the repository's README).
PUBLISHED: dict[str, dict[str, float]] = {
    "resnet1d-wang": dict(zip(TASKS, (0.919, 0.936, 0.928, 0.930, 0.880, 0.946), strict=True)),
    "inception1d": dict(zip(TASKS, (0.925, 0.931, 0.930, 0.921, 0.899, 0.953), strict=True)),
    "xresnet1d101": dict(zip(TASKS, (0.925, 0.937, 0.929, 0.928, 0.896, 0.957), strict=True)),
}
# One seed per cell; three for resnet1d-wang on superdiagnostic and rhythm (in this order:
# the cells that say most first).
EXTRA_SEEDS = {("resnet1d-wang", "superdiagnostic"): (1, 2), ("resnet1d-wang", "rhythm"): (1, 2)}
ORDER = ("superdiagnostic", "rhythm", "all", "diagnostic", "subdiagnostic", "form")


def cells(models: list[str], tasks: list[str], fraction: float = 1.0,
          seeds: list[int] | None = None) -> list[dict[str, Any]]:  # fmt: skip
    """The grid's cells in running order; ``seeds`` None: the table's seeds."""
    out = []
    for task in ORDER:
        for model in models:
            if task in tasks:
                chosen = seeds if seeds is not None else (0, *EXTRA_SEEDS.get((model, task), ()))
                out += [{"model": model, "task": task, "seed": s, "fraction": fraction}
                        for s in chosen]  # fmt: skip
    return out


def cell_key(cell: dict[str, Any]) -> str:
    if cell.get("fraction", 1.0) == 1.0:
        return "{model}/{task}/s{seed}".format(**cell)
    return "{model}/{task}/f{fraction}/s{seed}".format(**cell)


def setup_id(recipe: dict[str, Any], revision: int = REVISION) -> str:
    """The cells' setup: the recipe, and the training code's revision after the first."""
    keyed = {**recipe, "revision": revision} if revision > 1 else recipe
    return hashlib.sha256(json.dumps(keyed, sort_keys=True).encode()).hexdigest()[:8]


def table_setup(args: argparse.Namespace) -> str:
    return setup_id(table_recipe(args), args.revision)


def table_recipe(args: argparse.Namespace) -> dict[str, Any]:
    """The published recipe; ``--precision`` other than ``auto`` makes a separate setup (its
    own cells, reported with ``--summary --precision ...``)."""
    recipe = recipe_for("supervised").to_dict()
    if args.precision != "auto":
        recipe["precision"] = args.precision
    return recipe


def run_grid(args: argparse.Namespace) -> None:
    if args.revision != REVISION:
        raise SystemExit(f"--revision {args.revision}: only revision {REVISION} can be trained "
                         "(older revisions' cells can be summarised)")  # fmt: skip
    recipe = table_recipe(args)
    setup = table_setup(args)
    done = finished_cells(read_rows(args.results), setup, fold10_present(args.root))
    ran = 0
    seeds = [int(s) for s in args.seeds.split(",")] if args.seeds else None
    for cell in cells(args.models.split(","), args.tasks.split(","), args.fraction, seeds):
        key = cell_key(cell)
        if key in done:
            continue
        if args.max_cells is not None and ran >= args.max_cells:
            break
        start = time.perf_counter()
        run = args.runs / f"{key}-{setup}"
        metrics = finetune(
            cell["model"], root=args.root, task=cell["task"], strategy="supervised", out=run,
            seed=cell["seed"], fraction=cell["fraction"], config=recipe,
            cache_dir=args.cache_dir, progress_bar=False,
            checkpoint_every_minutes=args.checkpoint_minutes,
        )  # fmt: skip
        for split in ("val", "test"):
            if split in metrics:
                metrics[split].pop("per_label", None)
        config = json.loads((run / "config.json").read_text())
        log = [json.loads(line) for line in (run / "log.jsonl").read_text().splitlines()]
        row = {
            "cell": key, **cell, "setup": setup, "recipe": recipe,
            "published_fold10_macro_auroc": PUBLISHED[cell["model"]][cell["task"]],
            "precision": config["precision"], "torch_threads": torch.get_num_threads(),
            "seconds": round(time.perf_counter() - start, 1), "hardware": hardware(),
            "train_seconds": round(sum(h["seconds"] for h in log), 1), "metrics": metrics,
        }  # fmt: skip
        keep_predictions(run, args.predictions / f"{key.replace('/', '__')}__{setup}.npz")
        args.results.parent.mkdir(parents=True, exist_ok=True)
        with args.results.open("a") as handle:
            handle.write(json.dumps(row) + "\n")
        ran += 1
        print(json.dumps({"cell": key, "val_macro_auroc": metrics["val"]["macro_auroc"],
                          "seconds": row["seconds"]}), flush=True)  # fmt: skip


def finished_cells(rows: list[dict[str, Any]], setup: str, fold10: bool) -> set[str]:
    """The cells of ``setup`` that need no run. Where the copy holds fold 10, only those whose
    row scored it: a cell trained on a copy without fold 10 runs again (its run folder, where
    kept, resumes at its end and is scored; else it trains anew) and appends a row that
    replaces the earlier one (:func:`read_rows`)."""
    return {r["cell"] for r in rows if r["setup"] == setup and scored_enough(r, fold10)}


def training_hours(rows: list[dict[str, Any]]) -> dict[str, float]:
    """Hours spent training, per kind of hardware (the accelerator's name, else ``"cpu"``):
    CPU and GPU hours are not added together."""
    seconds: dict[str, float] = {}
    for r in rows:
        kind = str(r.get("hardware", {}).get("accelerator", "cpu"))
        seconds[kind] = seconds.get(kind, 0.0) + r["train_seconds"]
    return {kind: round(s / 3600, 2) for kind, s in seconds.items()}


def training_folds_auroc(run: Path, root: Path, task: str,
                         cache_dir: Path | None) -> tuple[int, float]:  # fmt: skip
    """A cell's (training records, macro AUROC on them): its model scores its own training
    folds, windows aggregated as in evaluation."""
    model = ecgfoundry.load_model(run / "model")
    data = ptbxl_task(root, task, model.spec, cache_dir=cache_dir)
    probabilities = predict_split(model, data, data.train, recipe_for("supervised"),
                                  torch.device("cpu"))  # fmt: skip
    return len(data.train), float(macro(auroc_per_label(data.train.y, probabilities)))


def summary(args: argparse.Namespace) -> list[dict[str, Any]]:
    """One row per (model, task) at ``args.fraction``: fold-9 (and fold-10) macro AUROC over
    the seeds run, with the bootstrap 95 % CI of each seed's score (fold-9 records resampled,
    1000 times), and the hours spent training per kind of hardware (the epochs' time; a
    resumed cell's ``seconds`` counts only its last process). The published values are of
    training on all of folds 1-8, so they stand beside full-data rows only."""
    setup = table_setup(args)
    rows = [r for r in read_rows(args.results)
            if r["setup"] == setup and r.get("fraction", 1.0) == args.fraction]  # fmt: skip
    full = args.fraction == 1.0
    table = []
    for model in MODELS:
        for task in TASKS:
            mine = sorted((r for r in rows if r["model"] == model and r["task"] == task),
                          key=lambda r: r["seed"])  # fmt: skip
            if not mine:
                continue
            published = PUBLISHED[model][task] if full else None
            entry: dict[str, Any] = {"model": model, "task": task, "seeds": len(mine),
                                     "fraction": args.fraction,
                                     "published_fold10": published}  # fmt: skip
            for split in ("val", "test"):
                scored_rows = [r for r in mine if split in r["metrics"]]
                if not scored_rows:
                    continue
                scores = [r["metrics"][split]["macro_auroc"] for r in scored_rows]
                cis = [r["metrics"][split]["ci"]["macro_auroc"] for r in scored_rows]
                entry[split] = {
                    "seeds": [r["seed"] for r in scored_rows],
                    "macro_auroc": float(np.mean(scores)),
                    "sd": float(np.std(scores, ddof=1)) if len(scores) > 1 else None,
                    "ci_per_seed": cis,
                    "minus_published": float(np.mean(scores)) - published if full else None,
                }
            entry["training_hours"] = training_hours(mine)
            entry["precision"] = sorted({short_precision(r["precision"]) for r in mine})
            if args.against_revision is not None:
                entry["against_revision"] = against_revision(args, model, task, mine)
            table.append(entry)
    return table


def short_precision(name: str) -> str:
    """``torch.bfloat16`` -> ``bf16``, ``float32`` -> ``fp32`` (the table's precision column)."""
    return {"bfloat16": "bf16", "float32": "fp32"}.get(name.removeprefix("torch."), name)


def against_revision(args: argparse.Namespace, model: str, task: str,
                     rows: list[dict[str, Any]]) -> dict[str, Any] | None:  # fmt: skip
    """This revision's cell minus ``--against-revision``'s on the seeds both ran: paired
    bootstrap of the seed-mean fold-9 macro AUROC over the same records (their kept
    probabilities); None where the older revision has none of these seeds."""
    older = setup_id(table_recipe(args), args.against_revision)
    setup = table_setup(args)
    ours, theirs, seeds, y = [], [], [], None
    for seed in sorted(r["seed"] for r in rows):
        cell = cell_key({"model": model, "task": task, "seed": seed, "fraction": args.fraction})
        stem = args.predictions / cell.replace("/", "__")
        old_path = Path(f"{stem}__{older}.npz")
        if not old_path.is_file():
            continue
        new, old = (np.load(f"{stem}__{s}.npz", allow_pickle=False) for s in (setup, older))
        if not np.array_equal(new["val_y"], old["val_y"]):
            raise ValueError(f"{cell}: the revisions' fold-9 labels differ")
        y = new["val_y"]
        ours.append(new["val_probabilities"])
        theirs.append(old["val_probabilities"])
        seeds.append(seed)
    if not seeds:
        return None
    compared = bootstrap_difference(y, ours, theirs)["macro_auroc"]
    return {"revision": args.against_revision, "seeds": seeds,
            "difference": compared["difference"], "ci": compared["ci"]}  # fmt: skip


def per_label(args: argparse.Namespace, task: str, rare: int = 10) -> dict[str, Any]:
    """Each label of ``task``: its fold-9 positives and each model's fold-9 AUROC (seed 0's
    kept probabilities), and each model's macro AUROC over the labels with at least ``rare``
    positives and over the others: where a shortfall comes from."""
    setup = table_setup(args)
    out: dict[str, Any] = {"task": task, "rare_below": rare, "labels": {}, "macro": {}}
    for model in MODELS:
        path = args.predictions / f"{model}__{task}__s0__{setup}.npz"
        if not path.is_file():
            continue
        kept = np.load(path, allow_pickle=False)
        y, p = kept["val_y"], kept["val_probabilities"]
        positives = y.sum(axis=0).astype(int)
        scores = auroc_per_label(y, p)
        for label, n, score in zip(kept["labels"].tolist(), positives, scores, strict=True):
            out["labels"].setdefault(label, {"positives": int(n)})[model] = float(score)
        out["macro"][model] = {"all": mean_or_none(scores),
                               f">={rare}": mean_or_none(scores[positives >= rare]),
                               f"<{rare}": mean_or_none(scores[positives < rare])}  # fmt: skip
    return out


def mean_or_none(scores: np.ndarray) -> float | None:
    """The mean of some labels' AUROCs; None when there are no such labels."""
    return float(scores.mean()) if scores.size else None


def per_label_markdown(result: dict[str, Any]) -> str:
    models = list(result["macro"])
    lines = ["| label | fold-9 positives | " + " | ".join(models) + " |",
             "|---|---|" + "---|" * len(models)]  # fmt: skip
    for label, row in result["labels"].items():
        lines.append(f"| {label} | {row['positives']} | "
                     + " | ".join(f"{row[m]:.3f}" for m in models) + " |")  # fmt: skip
    for key in next(iter(result["macro"].values()), {}):
        scores = " | ".join("no labels" if result["macro"][m][key] is None
                            else f"{result['macro'][m][key]:.3f}" for m in models)  # fmt: skip
        lines.append(f"| macro, {key} positives | | {scores} |")
    return "\n".join(lines)


def scored(split: dict[str, Any]) -> str:
    """``mean ± sd [95 % CI] (seed N)`` of one split's macro AUROC over its seeds; the CI is
    that of its first seed, named when there are several."""
    ci, seeds = split["ci_per_seed"][0], split["seeds"]
    text = f"{split['macro_auroc']:.3f}" + (f" ± {split['sd']:.3f}" if split["sd"] else "")
    return text + f" [{ci[0]:.3f}, {ci[1]:.3f}]" + (f" (seed {seeds[0]})" if len(seeds) > 1 else "")


def seeds_text(seeds: list[int]) -> str:
    """``seed 0``, ``seeds 0-2`` (consecutive) or ``seeds 0,2``."""
    if len(seeds) == 1:
        return f"seed {seeds[0]}"
    consecutive = list(seeds) == list(range(seeds[0], seeds[0] + len(seeds)))
    return f"seeds {seeds[0]}-{seeds[-1]}" if consecutive else f"seeds {','.join(map(str, seeds))}"


def markdown(table: list[dict[str, Any]]) -> str:
    older = next((e["against_revision"]["revision"] for e in table
                  if e.get("against_revision")), None)  # fmt: skip
    extra = f" minus revision {older}, same seeds [95 % CI] |" if older else ""
    lines = [
        "| model | task | seeds | precision | fold-9 macro AUROC [95 % CI] | published (fold 10) "
        "| difference | fold 10 here [95 % CI] |" + extra,
        "|---|---|---|---|---|---|---|---|" + ("---|" if older else ""),
    ]
    for e in table:
        val = e["val"]
        score = scored(val)
        test = "absent"
        if "test" in e:
            test = scored(e["test"])
            if e["test"]["seeds"] != val["seeds"]:
                test += f", {seeds_text(e['test']['seeds'])} only"
            if e["test"]["minus_published"] is not None:
                test += f", {e['test']['minus_published']:+.3f} vs published"
        published, difference = e["published_fold10"], val["minus_published"]
        versus = (f"{published:.3f} | {difference:+.3f}" if published is not None
                  else "n/a (100 % only) | n/a")  # fmt: skip
        precision = "+".join(e["precision"])
        row = (f"| {e['model']} | {e['task']} | {e['seeds']} | {precision} | {score} | {versus} "
               f"| {test} |")  # fmt: skip
        if older:
            c = e.get("against_revision")
            row += (f" {c['difference']:+.3f} [{c['ci'][0]:+.3f}, {c['ci'][1]:+.3f}]"
                    f" ({seeds_text(c['seeds'])}) |" if c else " |")  # fmt: skip
        lines.append(row)
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--root", type=Path)
    parser.add_argument("--models", default=",".join(MODELS))
    parser.add_argument("--tasks", default=",".join(TASKS))
    parser.add_argument("--runs", type=Path, default=Path("runs/ptbxl_table"))
    parser.add_argument(
        "--results", type=Path, default=Path("benchmarks/results/ptbxl_table.jsonl")
    )
    parser.add_argument("--predictions", type=Path, help=PREDICTIONS_HELP)
    parser.add_argument(
        "--fraction",
        type=float,
        default=1.0,
        help="share of the training folds (nested, as finetune --fraction)",
    )
    parser.add_argument(
        "--precision",
        choices=("auto", "fp32", "bf16"),
        default="auto",
        help="training precision; other than auto: a separate setup (the table uses auto)",
    )
    parser.add_argument(
        "--revision", type=int, choices=range(1, REVISION + 1), default=REVISION,
        help="training code revision: 2 gives Adam the recipe's betas (0.9, 0.99); revision 1 "
        "cells trained with (0.9, 0.999) and can only be summarised",
    )  # fmt: skip
    parser.add_argument(
        "--against-revision",
        type=int,
        choices=range(1, REVISION),
        default=None,
        help="with --summary: each cell minus that revision's on the same seeds (paired)",
    )
    parser.add_argument("--seeds", default=None, help="e.g. 0,1,2 (default: the table's)")
    parser.add_argument("--cache-dir", type=Path, default=None)
    parser.add_argument("--max-cells", type=int, default=None, help="stop after this many cells")
    parser.add_argument("--checkpoint-minutes", type=float, default=10.0)
    parser.add_argument("--summary", action="store_true", help="print the table so far")
    parser.add_argument("--markdown", action="store_true", help="with --summary: a table")
    parser.add_argument("--per-label", metavar="TASK", help="fold-9 AUROC per label of TASK")
    args = parser.parse_args()
    args.predictions = args.predictions or predictions_beside(args.results)
    if args.per_label:
        result = per_label(args, args.per_label)
        print(per_label_markdown(result) if args.markdown else json.dumps(result, indent=1))
        return
    if args.summary:
        table = summary(args)
        print(markdown(table) if args.markdown else json.dumps(table, indent=1))
        return
    if args.root is None:
        parser.error("--root is required to run cells")
    run_grid(args)


if __name__ == "__main__":
    main()
