"""The PTB-XL benchmark's own training code run here, beside our cell of the same model, task
and seed: whether a difference from the published table comes from our training or from
something both trainings share (the data release, the fold, the library versions).

The benchmark's ``SCP_Experiment`` steps (``utils.load_dataset``, ``compute_label_aggregations``,
``select_data``, ``preprocess_signals``) prepare folds 1-8 and fold 9, its ``fastai_model``
trains on folds 1-8 exactly as its ``reproduce_results.py`` does (``weight_init``, the learning
rate finder, ``fit_one_cycle``), and its ``predict`` scores fold 9 and the training folds
(sliding windows, max over a record's windows). Fold 9 is then compared with our kept
probabilities of the same cell (``ptbxl_table.py``) record for record (by ecg_id, labels by
name), with a paired bootstrap CI.

Needs a checkout of ``helme/ecg_ptbxl_benchmarking`` (``--published``) and fastai 1.0.61 in a
folder of its own (``--fastai``), installed without its dependencies; with this project's
environment it imports nothing else that is missing:

    pip install --no-deps --target FASTAI_DIR fastai==1.0.61 fastprogress==0.2.3 "setuptools<70"

(setuptools for ``pkg_resources``, which fastai 1 imports). scikit-image, which the benchmark
imports only to resample, is given an inert stand-in (nothing here resamples). The benchmark's
loader caches all records in ``raw100.npy`` (1.9 GB) beside the data, so it is pointed at a
folder of links under ``--out``: the data folder is never written. Running this script is an
explicit opt-in to the benchmark's code, which pickles its own caches there (``raw100.npy``,
``mlb.pkl``, ``standard_scaler.pkl``) and reads ``raw100.npy`` back with ``allow_pickle``. One
cell of xresnet1d101 on ``form`` takes about 45 min on one core (float32, as the benchmark
trains); a rerun re-scores the kept predictions without training.

    python benchmarks/ptbxl_reference_training.py --published DIR --fastai FASTAI_DIR \\
        --root DATA/ptbxl --model xresnet1d101 --task form --seed 0
"""

from __future__ import annotations

import argparse
import json
import random
import sys
import time
import types
from pathlib import Path
from typing import Any

import numpy as np
import ptbxl_table
import torch
from post_training import hardware

from ecgfoundry.evaluate.metrics import (
    auroc_per_label,
    bootstrap_ci,
    bootstrap_difference,
    macro,
)

# our preset -> the benchmark's model name (fastai_model picks the architecture by prefix)
REFERENCE_NAMES = {
    "resnet1d-wang": "fastai_resnet1d_wang",
    "xresnet1d101": "fastai_xresnet1d101",
    "xresnet1d50": "fastai_xresnet1d50",
    "inception1d": "fastai_inception1d",
}
DATA_FILES = ("ptbxl_database.csv", "scp_statements.csv", "records100")
NUMPY_FLOATS = [np._core.multiarray.scalar, np.dtype, type(np.dtype(np.float64))]


def import_reference(published: Path, fastai: Path) -> tuple[types.ModuleType, type]:
    """The benchmark's ``utils.utils`` module and ``fastai_model`` class, importing fastai 1
    from ``fastai`` and an inert ``skimage`` stand-in."""
    if not (fastai / "fastai" / "basic_train.py").is_file():
        raise SystemExit(f"--fastai {fastai}: no fastai 1 here (see this script's docstring)")
    if not (published / "code" / "models" / "fastai_model.py").is_file():
        raise SystemExit(f"--published {published}: not a checkout of ecg_ptbxl_benchmarking")
    skimage = types.ModuleType("skimage")
    skimage.transform = None  # only used to resample, which this run never does
    sys.modules.setdefault("skimage", skimage)
    sys.path[:0] = [str(fastai), str(published / "code")]
    from models.fastai_model import fastai_model
    from utils import utils

    return utils, fastai_model


def link_data(root: Path, out: Path) -> Path:
    """A folder named ``ptbxl`` (the benchmark's loader checks the name) of links to the data,
    where the loader may write its ``raw100.npy`` cache."""
    folder = out / "ptbxl"
    folder.mkdir(parents=True, exist_ok=True)
    for name in DATA_FILES:
        if not (root / name).exists():
            raise SystemExit(f"--root {root}: {name} is missing (not a PTB-XL folder)")
        link = folder / name
        if not link.is_symlink():
            link.symlink_to((root / name).resolve())
    return folder


def align(ids: np.ndarray, labels: list[str], ref_ids: np.ndarray, ref_labels: list[str],
          ref_scores: np.ndarray) -> tuple[np.ndarray, np.ndarray]:  # fmt: skip
    """Our record rows present in the reference, and the reference's scores in our record and
    label order."""
    if sorted(labels) != sorted(ref_labels):
        raise ValueError(f"the label sets differ: {sorted(set(labels) ^ set(ref_labels))}")
    position = {int(i): k for k, i in enumerate(ref_ids)}
    ours = np.array([k for k, i in enumerate(ids) if int(i) in position])
    rows = [position[int(ids[k])] for k in ours]
    cols = [ref_labels.index(label) for label in labels]
    return ours, ref_scores[np.ix_(rows, cols)]


def train_reference(args: argparse.Namespace, out: Path) -> dict[str, Any]:
    utils, fastai_model = import_reference(args.published, args.fastai)
    random.seed(args.seed)
    np.random.seed(args.seed)
    torch.manual_seed(args.seed)
    data_dir = f"{link_data(args.root, args.out)}/"  # shared by the cells: one raw100.npy
    work = out / "reference"
    (work / "data").mkdir(parents=True, exist_ok=True)
    (work / "models").mkdir(parents=True, exist_ok=True)
    records, raw_labels = utils.load_dataset(data_dir, 100)
    statements = utils.compute_label_aggregations(raw_labels, data_dir, args.task)
    records, statements, y, binarizer = utils.select_data(
        records, statements, args.task, 0, f"{work}/data/"
    )
    train, val = (statements.strat_fold <= 8).values, (statements.strat_fold == 9).values
    x_train, x_val, _ = utils.preprocess_signals(
        records[train], records[val], records[val][:1], f"{work}/data/"
    )
    model = fastai_model(REFERENCE_NAMES[args.model], y.shape[1], 100, f"{work}/models/",
                         x_train[0].shape, epochs=args.epochs)  # fmt: skip
    start = time.perf_counter()
    model.fit(x_train, y[train], x_val, y[val])
    seconds = time.perf_counter() - start
    # predict reloads the saved learner with torch.load (weights only): its optimiser state
    # holds numpy floats, which are allowed by name and nothing else
    with torch.serialization.safe_globals(NUMPY_FLOATS):
        val_probabilities, train_probabilities = model.predict(x_val), model.predict(x_train)
    return {
        "labels": [str(c) for c in binarizer.classes_],
        "val_ids": statements.index.values[val], "val_y": y[val],
        "val_probabilities": val_probabilities,
        "train_y": y[train], "train_probabilities": train_probabilities,
        "train_seconds": seconds, "fastai": sys.modules["fastai"].__version__,
    }  # fmt: skip


def load_reference(out: Path) -> dict[str, Any] | None:
    """A finished reference training's kept predictions (a rerun only scores them again)."""
    path = out / "reference_predictions.npz"
    if not path.is_file():
        return None
    with np.load(path, allow_pickle=False) as kept:
        reference: dict[str, Any] = {k: kept[k] for k in kept.files}
    reference["labels"] = reference["labels"].tolist()
    reference["fastai"] = str(reference["fastai"])
    seconds = reference.get("train_seconds")
    reference["train_seconds"] = float(seconds) if seconds is not None else None
    return reference


def compare(reference: dict[str, Any], ours_file: Path) -> dict[str, Any]:
    """The reference's fold-9 score, ours, and their paired difference on shared records."""
    kept = np.load(ours_file, allow_pickle=False)
    labels = kept["labels"].tolist()
    rows, theirs = align(kept["val_ids"], labels, reference["val_ids"], reference["labels"],
                         reference["val_probabilities"])  # fmt: skip
    y, ours = kept["val_y"][rows], kept["val_probabilities"][rows]
    difference = bootstrap_difference(y, [ours], [theirs])["macro_auroc"]
    return {"file": ours_file.name, "records": len(kept["val_ids"]), "shared_records": len(rows),
            "ours": macro(auroc_per_label(y, ours)),
            "reference": macro(auroc_per_label(y, theirs)),
            "difference": difference["difference"], "ci": difference["ci"]}  # fmt: skip


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--published", type=Path, required=True,
                        help="a checkout of helme/ecg_ptbxl_benchmarking")  # fmt: skip
    parser.add_argument("--fastai", type=Path, required=True,
                        help="a folder with fastai 1.0.61 installed (pip --target)")  # fmt: skip
    parser.add_argument("--root", type=Path, required=True, help="the PTB-XL folder")
    parser.add_argument("--model", choices=sorted(REFERENCE_NAMES), default="xresnet1d101")
    parser.add_argument("--task", choices=ptbxl_table.TASKS, default="form")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--epochs", type=int, default=50,
                        help="the benchmark's 50; fewer only to check the set-up")  # fmt: skip
    parser.add_argument("--out", type=Path, default=Path("runs/ptbxl_reference_training"))
    parser.add_argument(
        "--results", type=Path, default=Path("benchmarks/results/ptbxl_reference_training.jsonl")
    )
    parser.add_argument("--predictions", type=Path,
                        default=Path("benchmarks/results/ptbxl_table_predictions"),
                        help="our kept probabilities (ptbxl_table.py)")  # fmt: skip
    parser.add_argument("--runs", type=Path, default=Path("runs/ptbxl_table"),
                        help="our cells' run folders, for our training-fold score")  # fmt: skip
    parser.add_argument("--cache-dir", type=Path, default=None)
    parser.add_argument("--revision", type=int, default=ptbxl_table.REVISION,
                        help="our table cells' revision (ptbxl_table.py)")  # fmt: skip
    parser.set_defaults(precision="auto")  # the table's setup (ptbxl_table.table_recipe)
    args = parser.parse_args()
    cell = f"{args.model}/{args.task}/s{args.seed}"
    out = args.out / cell
    setup = ptbxl_table.table_setup(args)
    ours_file = args.predictions / f"{cell.replace('/', '__')}__{setup}.npz"
    # before fastai 1 is imported: it patches DataLoader.__init__, which our loaders then fail
    run = args.runs / f"{cell}-{setup}"
    ours_fit = (ptbxl_table.training_folds_auroc(run, args.root, args.task, args.cache_dir)[1]
                if (run / "model").is_dir() else None)  # fmt: skip
    reference = load_reference(out)
    if reference is None:
        reference = train_reference(args, out)
        kept = {k: np.asarray(v) for k, v in reference.items() if v is not None}
        np.savez(out / "reference_predictions.npz", **kept)
    row = {
        "cell": cell, "model": args.model, "task": args.task, "seed": args.seed,
        "epochs": args.epochs,
        "reference": {
            "fold9_macro_auroc": macro(auroc_per_label(reference["val_y"],
                                                       reference["val_probabilities"])),
            "fold9_ci": bootstrap_ci(reference["val_y"], reference["val_probabilities"]),
            "training_folds_macro_auroc": macro(auroc_per_label(
                reference["train_y"], reference["train_probabilities"])),
            "train_seconds": reference["train_seconds"],
        },
        "ours_revision": args.revision,
        "ours": compare(reference, ours_file) if ours_file.is_file() else None,
        "ours_training_folds_macro_auroc": ours_fit,
        "published_fold10_macro_auroc": ptbxl_table.PUBLISHED.get(args.model, {}).get(args.task),
        "fastai": reference["fastai"], "hardware": hardware(),
    }  # fmt: skip
    args.results.parent.mkdir(parents=True, exist_ok=True)
    with args.results.open("a") as handle:
        handle.write(json.dumps(row) + "\n")
    print(json.dumps(row, indent=1))


if __name__ == "__main__":
    main()
