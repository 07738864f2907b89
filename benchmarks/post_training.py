"""Post-training experiment (Zhou et al. 2025) on PTB-XL, as a resumable grid.

``--variants sweep`` runs the validation sweep that chooses the post-train defaults (preview
linear-probe epochs x drop-path rate x fine-tuning learning rate), reported on fold 9 only.

Compares scratch, linear-probe, finetune, lp-ft and post-train (plus the ablations post-train
without stochastic depth and without the preview linear probe) on the superdiagnostic and
rhythm tasks at 10/30/100 % of the training folds, 3 seeds, reported on fold 9 (and fold 10
when present). Each finished cell is appended to ``--results`` (JSON lines) at once, and cells
already there are skipped, so the grid carries on across sessions; on a copy with fold 10,
cells whose rows lack fold-10 scores run again (:func:`fold10_present`). A cell is identified by its
task, variant, fraction and seed *and* by a hash of its recipe and backbone weights: after a
change of defaults (or backbone) the affected cells run again, and rows of other recipes are
kept in the file but not counted or summarised. A killed cell resumes from its checkpoint.
The fold-9 (and fold-10) probabilities of every cell are kept beside the results
(``--predictions``) for paired comparisons (``summarise_post_training.py``). Prints a JSON
summary of the cells so far.

    python benchmarks/post_training.py --backbone runs/standin/model --root DIR/ptbxl \\
        [--tasks superdiagnostic,rhythm] [--fractions 0.1,0.3,1] [--seeds 0,1,2] [--max-cells N]

The stand-in backbone (until the bundled pretrained model exists) is net1d-tiny pretrained
with supervised multi-label training on the ``all`` task of folds 1-8:

    ecgfoundry finetune --model net1d-tiny --root DIR/ptbxl --task all --strategy scratch \\
        --out runs/standin
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import time
from pathlib import Path
from typing import Any

import numpy as np
import torch

from ecgfoundry.adapt import finetune, recipe_for
from ecgfoundry.data import ptbxl
from ecgfoundry.engine.precision import describe_hardware
from ecgfoundry.models.registry import weights_fingerprint

# Strategy variants: (strategy, recipe overrides). The ablations change one thing each.
VARIANTS: dict[str, tuple[str, dict[str, Any]]] = {
    "scratch": ("scratch", {}),
    "linear-probe": ("linear-probe", {}),
    "finetune": ("finetune", {}),
    "lp-ft": ("lp-ft", {}),
    "post-train": ("post-train", {}),
    "post-train-no-drop-path": ("post-train", {"stages.1.drop_path_rate": 0.0}),
    "post-train-no-preview": ("post-train", {"stages.0.epochs": 0}),
}
# Validation sweep for the post-train defaults (fold 9 only; run with --variants sweep):
# preview epochs x drop-path rate x fine-tuning rate; it chose the defaults (10, 0.3, 1e-4).
SWEEP: dict[str, tuple[str, dict[str, Any]]] = {
    f"post-train-lp{lp}-dp{dp}-lr{lr:g}": (
        "post-train",
        {"stages.0.epochs": lp, "stages.1.drop_path_rate": dp, "stages.1.lr": lr},
    )
    for lp in (2, 5, 10)
    for dp in (0.1, 0.3)
    for lr in (1e-4, 3e-4)
}
VARIANTS |= SWEEP
MAIN = ("scratch", "linear-probe", "finetune", "lp-ft", "post-train", "post-train-no-drop-path",
        "post-train-no-preview")  # fmt: skip


def cell_key(cell: dict[str, Any]) -> str:
    return "{task}/{variant}/f{fraction}/s{seed}".format(**cell)


def recipe_of(variant: str) -> dict[str, Any]:
    strategy, overrides = VARIANTS[variant]
    return recipe_for(strategy, config=overrides or None).to_dict()


# Stage fields added after the grid started, left out of a cell's hash while at these values
# (which reproduce the earlier behaviour), so committed cells stay current.
LATER_STAGE_FIELDS: dict[str, Any] = {
    "restore_best": True,
    "eval_every": 1,
    "betas": [0.9, 0.999],
}


def _as_first_recorded(recipe: dict[str, Any]) -> dict[str, Any]:
    stages = [
        {
            k: v
            for k, v in stage.items()
            if not (k in LATER_STAGE_FIELDS and v == LATER_STAGE_FIELDS[k])
        }
        for stage in recipe["stages"]
    ]
    return {**recipe, "stages": stages}


def setup_id(recipe: dict[str, Any], backbone_weights: str) -> str:
    """Short hash of what a cell's result depends on besides task, fraction and seed."""
    recipe = _as_first_recorded(recipe)
    text = json.dumps({"recipe": recipe, "backbone": backbone_weights}, sort_keys=True)
    return hashlib.sha256(text.encode()).hexdigest()[:8]


def is_current(row: dict[str, Any]) -> bool:
    """Whether a row was made with its variant's present recipe (and the backbone it names)."""
    return row["variant"] in VARIANTS and row.get("setup") == setup_id(
        recipe_of(row["variant"]), row.get("backbone_weights", "")
    )


def hardware() -> dict[str, object]:
    """What a cell trained on (finetune uses the GPU whenever one is visible)."""
    return describe_hardware(torch.device("cuda") if torch.cuda.is_available() else None)


def read_rows(results: Path) -> list[dict[str, Any]]:
    """The results file's rows, one per (cell, setup): a cell run again (to score fold 10,
    :func:`fold10_present`) appends a row that replaces the earlier one."""
    if not results.exists():
        return []
    rows = [json.loads(line) for line in results.read_text().splitlines() if line.strip()]
    return list({(r["cell"], r["setup"]): r for r in rows}.values())


def fold10_present(root: Path | None) -> bool:
    """Whether the PTB-XL copy at ``root`` holds fold 10 (its records' files, not just rows).
    Where it does, a grid runs again each cell whose row lacks fold-10 scores (trained where
    fold 10 was absent, as this repository's committed rows were): its run folder, where kept,
    resumes at its end and is scored; else the cell trains anew."""
    return root is not None and 10 in ptbxl.load(root).folds_present


def scored_enough(row: dict[str, Any], fold10: bool) -> bool:
    """Whether a finished cell's row needs no run again: it scored fold 10 where the copy
    holds it (the validation sweep never scores fold 10)."""
    return not fold10 or "test" in row["metrics"] or row.get("variant") in SWEEP


def run_dir(runs: Path, key: str, setup: str) -> Path:
    return runs / f"{key}-{setup}"


PREDICTIONS_HELP = "folder of the kept probabilities (default: RESULTS' name + _predictions)"


def predictions_beside(results: Path) -> Path:
    """The default folder of a results file's kept probabilities: ``X.jsonl`` ->
    ``X_predictions``, so a results file and its probabilities travel as a pair."""
    return results.with_name(f"{results.stem}_predictions")


def predictions_file(folder: Path, row: dict[str, Any]) -> Path:
    return folder / f"{row['cell'].replace('/', '__')}__{row['setup']}.npz"


def keep_predictions(run: Path, dest: Path) -> None:
    """Copy a run's evaluation probabilities (not its checkpoints) beside the results,
    replacing those of an earlier run of the cell."""
    source = run / "predictions" / "predictions.npz"
    if not source.exists():
        return
    with np.load(source, allow_pickle=False) as saved:
        arrays = {k: saved[k] for k in saved.files}
    for name in [k for k in arrays if k.endswith("_y")]:
        arrays[name] = arrays[name].astype(np.uint8)
    dest.parent.mkdir(parents=True, exist_ok=True)
    partial = dest.with_suffix(".partial.npz")
    np.savez_compressed(partial, **arrays)
    os.replace(partial, dest)


def summarise(row: dict[str, Any]) -> dict[str, Any]:
    out = {"cell": row["cell"]}
    for split in ("val", "test"):
        if split in row["metrics"]:
            m = row["metrics"][split]
            ci = {k: m["ci"][k] for k in ("macro_auroc", "macro_auprc")}
            out[split] = {
                "macro_auroc": m["macro_auroc"],
                "macro_auprc": m["macro_auprc"],
                "ci": ci,
            }
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--backbone", required=True, help="a model folder or a bundled model")
    parser.add_argument("--root", type=Path, required=True)
    parser.add_argument("--tasks", default="superdiagnostic,rhythm")
    parser.add_argument("--fractions", default="0.1,0.3,1.0")
    parser.add_argument("--seeds", default="0,1,2")
    parser.add_argument("--variants", default="main",
                        help="'main' (strategies + ablations), 'sweep', or names")  # fmt: skip
    parser.add_argument("--runs", type=Path, default=Path("runs/post_training"))
    parser.add_argument(
        "--results", type=Path, default=Path("benchmarks/results/post_training.jsonl")
    )
    parser.add_argument("--predictions", type=Path, help=PREDICTIONS_HELP)
    parser.add_argument("--cache-dir", type=Path, default=None)
    parser.add_argument("--max-cells", type=int, default=None, help="stop after this many cells")
    args = parser.parse_args()
    args.predictions = args.predictions or predictions_beside(args.results)

    chosen = {"main": list(MAIN), "sweep": list(SWEEP)}.get(args.variants, args.variants.split(","))
    cells = [
        {"task": task, "variant": variant, "fraction": float(fraction), "seed": int(seed)}
        for task in args.tasks.split(",")
        for fraction in args.fractions.split(",")
        for seed in args.seeds.split(",")
        for variant in chosen
    ]
    weights = weights_fingerprint(args.backbone)
    rows = read_rows(args.results)
    fold10 = fold10_present(args.root)
    finished = {(row["cell"], row["setup"]) for row in rows
                if is_current(row) and scored_enough(row, fold10)}  # fmt: skip
    ran = 0
    for cell in cells:
        key, strategy = cell_key(cell), VARIANTS[cell["variant"]][0]
        recipe = recipe_of(cell["variant"])
        setup = setup_id(recipe, weights)
        if (key, setup) in finished or (args.max_cells is not None and ran >= args.max_cells):
            continue
        start = time.perf_counter()
        metrics = finetune(
            args.backbone, root=args.root, task=cell["task"], strategy=strategy,
            out=run_dir(args.runs, key, setup), fraction=cell["fraction"], seed=cell["seed"],
            config=recipe, cache_dir=args.cache_dir, progress_bar=False,
            evaluate_test=cell["variant"] not in SWEEP,  # tuning sees fold 9 only
        )  # fmt: skip
        for split in ("val", "test"):
            if split in metrics:
                metrics[split].pop("per_label", None)
        config = json.loads((run_dir(args.runs, key, setup) / "config.json").read_text())
        row = {"cell": key, **cell, "strategy": strategy, "setup": setup, "recipe": recipe,
               "backbone": str(args.backbone), "backbone_weights": weights,
               "precision": config["precision"],
               "seconds": round(time.perf_counter() - start, 1), "hardware": hardware(),
               "metrics": metrics}  # fmt: skip
        keep_predictions(run_dir(args.runs, key, setup), predictions_file(args.predictions, row))
        args.results.parent.mkdir(parents=True, exist_ok=True)
        with args.results.open("a") as handle:
            handle.write(json.dumps(row) + "\n")
        ran += 1
    rows = [row for row in read_rows(args.results) if is_current(row)]
    print(json.dumps({"cells_total": len(cells), "cells_done": len(rows),
                      "results": [summarise(r) for r in rows]}, indent=1))  # fmt: skip


if __name__ == "__main__":
    main()
