"""The PTB-XL benchmark's own fold-9 and fold-10 predictions, set beside ours: how much of a
difference in the table is fold 9 against fold 10, and how much is our training.

The benchmark's repository (``helme/ecg_ptbxl_benchmarking``) commits, for its xresnet1d101
trained on the ``all`` task (71 statements), the labels and predicted probabilities of fold 9
(``y_val``) and fold 10 (``y_test``) under ``output/exp0``. From them:

1. **The fold shift.** The published model's macro AUROC on fold 9 and on fold 10, over all 71
   labels and over the labels of each task that is a subset of them (form, rhythm,
   diagnostic): what the same model scores on the fold we report against the fold it
   published. It is then added to every cell of our table (``ptbxl_table.py --summary``),
   and the published value, moved to fold 9 by it, is checked against the cell's CI.
2. **Like for like.** Our xresnet1d101 ``all`` cell (seed 0's kept probabilities) against the
   published one on the same fold-9 records, with a paired bootstrap CI. Records are matched
   by their label rows in ecg_id order (our copy of PTB-XL is a later release than the one
   the benchmark used, so a few records differ; only matched records are compared).
3. **Fit** (``--training-fit DATA/ptbxl``, a few CPU minutes): our cell's macro AUROC on its
   own training records (folds 1-8, windows aggregated as in evaluation) beside the
   benchmark's (``results/tr_results.csv``).

The repository's arrays are Python pickles: they are read with an unpickler that builds numpy
arrays and nothing else.

    git clone https://github.com/helme/ecg_ptbxl_benchmarking DIR
    python benchmarks/ptbxl_published_predictions.py --published DIR [--markdown]
        [--training-fit DATA/ptbxl --runs runs/ptbxl_table --cache-dir CACHE]
"""

from __future__ import annotations

import argparse
import codecs
import difflib
import json
import pickle
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import ptbxl_table
from post_training import PREDICTIONS_HELP, predictions_beside

from ecgfoundry.evaluate.metrics import auroc_per_label, bootstrap_difference, macro

SUBSET_TASKS = ("form", "rhythm", "diagnostic")  # tasks whose labels are among the 71 of "all"


def _reconstruct(subtype: type, shape: Any, dtype: Any) -> np.ndarray:
    """numpy's ``_reconstruct``, for the one subtype allowed."""
    if subtype is not np.ndarray:
        raise pickle.UnpicklingError(f"refused array subtype {subtype!r}")
    return np.ndarray.__new__(np.ndarray, shape, dtype)


_ARRAY_GLOBALS = {
    ("numpy.core.multiarray", "_reconstruct"): _reconstruct,
    ("numpy", "ndarray"): np.ndarray,
    ("numpy", "dtype"): np.dtype,
    ("_codecs", "encode"): codecs.encode,
}


class _ArrayUnpickler(pickle.Unpickler):
    """Builds numpy arrays (as ``pickle.dump`` writes them, protocol 2) and refuses anything
    else."""

    def find_class(self, module: str, name: str) -> Any:
        if (module, name) not in _ARRAY_GLOBALS:
            raise pickle.UnpicklingError(f"refused {module}.{name}")
        return _ARRAY_GLOBALS[module, name]


def read_array(path: Path) -> np.ndarray:
    """A pickled numpy array from the benchmark's output folder."""
    with path.open("rb") as handle:
        array = _ArrayUnpickler(handle, encoding="latin1").load()
    if not isinstance(array, np.ndarray) or array.ndim != 2:
        raise ValueError(f"{path}: expected a 2-d numpy array, got {type(array).__name__}")
    return array


def macro_auroc(y: np.ndarray, p: np.ndarray) -> float:
    return macro(auroc_per_label(y, p))


def match_records(ours: np.ndarray, theirs: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Row indices of equal label rows in the two (ecg_id-ordered) record lists."""
    matcher = difflib.SequenceMatcher(
        None, [r.tobytes() for r in ours], [r.tobytes() for r in theirs], autojunk=False
    )
    pairs = [(block.a + k, block.b + k) for block in matcher.get_matching_blocks()
             for k in range(block.size)]  # fmt: skip
    return np.array([a for a, _ in pairs]), np.array([b for _, b in pairs])


def compare(published: Path, predictions: Path, setup: str) -> dict[str, Any]:
    exp = published / "output" / "exp0"
    y9 = read_array(exp / "data" / "y_val.npy").astype(np.uint8)
    y10 = read_array(exp / "data" / "y_test.npy").astype(np.uint8)
    model = exp / "models" / "fastai_xresnet1d101"
    p9, p10 = read_array(model / "y_val_pred.npy"), read_array(model / "y_test_pred.npy")
    kept = np.load(predictions / f"xresnet1d101__all__s0__{setup}.npz", allow_pickle=False)
    labels = kept["labels"].tolist()
    ours_idx, theirs_idx = match_records(kept["val_y"], y9)
    subsets = {"all": labels}
    for task in SUBSET_TASKS:
        path = predictions / f"xresnet1d101__{task}__s0__{setup}.npz"
        if path.is_file():
            subsets[task] = np.load(path, allow_pickle=False)["labels"].tolist()
    out: dict[str, Any] = {
        "published_records": {"fold9": len(y9), "fold10": len(y10)},
        "our_fold9_records": len(kept["val_y"]),
        "matched_fold9_records": len(ours_idx),
        "subsets": {},
    }
    y_matched = kept["val_y"][ours_idx]
    ours_matched, theirs_matched = kept["val_probabilities"][ours_idx], p9[theirs_idx]
    for name, subset in subsets.items():
        cols = [labels.index(label) for label in subset]
        y, ours_p, theirs_p = y_matched[:, cols], ours_matched[:, cols], theirs_matched[:, cols]
        difference = bootstrap_difference(y, [ours_p], [theirs_p])["macro_auroc"]
        fold9 = macro_auroc(y9[:, cols], p9[:, cols])
        fold10 = macro_auroc(y10[:, cols], p10[:, cols])
        out["subsets"][name] = {
            "labels": len(cols),
            "published_fold9": fold9,
            "published_fold10": fold10,
            "fold_shift": fold10 - fold9,
            "matched": {"ours": macro_auroc(y, ours_p), "published": macro_auroc(y, theirs_p),
                        "difference": difference["difference"], "ci": difference["ci"]},
        }  # fmt: skip
    return out


def training_fit(published: Path, run: Path, root: Path, cache_dir: Path | None) -> dict:
    """Macro AUROC on the training records: our run's model against the benchmark's."""
    records, ours = ptbxl_table.training_folds_auroc(run, root, "all", cache_dir)
    results = published / "output/exp0/models/fastai_xresnet1d101/results"
    theirs = pd.read_csv(results / "tr_results.csv", index_col=0)
    return {"records": records, "ours": ours,
            "published": float(theirs.loc["point", "macro_auc"])}  # fmt: skip


def shifted_table(result: dict[str, Any], args: argparse.Namespace) -> list[dict[str, Any]]:
    """Our table's cells with the published model's fold shift of their task added."""
    rows = []
    for cell in ptbxl_table.summary(args):
        shift = result["subsets"].get(cell["task"], {}).get("fold_shift")
        if shift is None:
            continue
        ours, low, high = cell["val"]["macro_auroc"], *cell["val"]["ci_per_seed"][0]
        expected = cell["published_fold10"] - shift  # the published value, moved to fold 9
        rows.append({"model": cell["model"], "task": cell["task"], "fold9": ours,
                     "fold_shift": shift, "published": cell["published_fold10"],
                     "difference": ours - cell["published_fold10"],
                     "shifted_difference": ours - expected,
                     "shifted_inside_ci": bool(low <= expected <= high)})  # fmt: skip
    return rows


def markdown(result: dict[str, Any]) -> str:
    lines = [
        f"Published xresnet1d101 (`all`): fold 9 {result['published_records']['fold9']} records,"
        f" fold 10 {result['published_records']['fold10']}; ours fold 9"
        f" {result['our_fold9_records']}, matched {result['matched_fold9_records']}.",
        "",
        "| labels | n | published fold 9 | published fold 10 | fold shift | ours, matched |"
        " published, matched | ours - published [95 % CI] |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for name, s in result["subsets"].items():
        m = s["matched"]
        lines.append(
            f"| {name} | {s['labels']} | {s['published_fold9']:.3f} | {s['published_fold10']:.3f}"
            f" | {s['fold_shift']:+.3f} | {m['ours']:.3f} | {m['published']:.3f} |"
            f" {m['difference']:+.3f} [{m['ci'][0]:+.3f}, {m['ci'][1]:+.3f}] |"
        )
    lines += ["", "| model | task | fold 9 here | + fold shift | published (fold 10) |"
              " difference | after the shift | inside the CI (seed 0) |",
              "|---|---|---|---|---|---|---|---|"]  # fmt: skip
    for r in result["shifted_table"]:
        lines.append(
            f"| {r['model']} | {r['task']} | {r['fold9']:.3f} | {r['fold_shift']:+.3f} |"
            f" {r['published']:.3f} | {r['difference']:+.3f} | {r['shifted_difference']:+.3f} |"
            f" {'yes' if r['shifted_inside_ci'] else 'no'} |"
        )
    if "training_fit" in result:
        fit = result["training_fit"]
        lines += ["", f"Training-set macro AUROC ({fit['records']} records): ours"
                  f" {fit['ours']:.3f}, published {fit['published']:.3f}."]  # fmt: skip
    return "\n".join(lines)


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--published", type=Path, required=True,
                        help="a checkout of helme/ecg_ptbxl_benchmarking")  # fmt: skip
    parser.add_argument("--results", type=Path,
                        default=Path("benchmarks/results/ptbxl_table.jsonl"))  # fmt: skip
    parser.add_argument("--predictions", type=Path, help=PREDICTIONS_HELP)
    parser.add_argument(
        "--training-fit",
        type=Path,
        metavar="PTBXL_ROOT",
        help="also score our xresnet1d101 all model on its training records",
    )
    parser.add_argument("--runs", type=Path, default=Path("runs/ptbxl_table"))
    parser.add_argument("--cache-dir", type=Path, default=None)
    parser.add_argument("--markdown", action="store_true")
    parser.add_argument("--revision", type=int, default=1,
                        help="the table's training revision to compare (ptbxl_table.py; "
                        "the committed comparison is revision 1's)")  # fmt: skip
    # the table's setup (ptbxl_table.table_recipe) and its full-data cells
    parser.set_defaults(precision="auto", fraction=1.0, against_revision=None)
    args = parser.parse_args(argv)
    args.predictions = args.predictions or predictions_beside(args.results)
    return args


def main() -> None:
    args = parse_args()
    setup = ptbxl_table.table_setup(args)
    result = compare(args.published, args.predictions, setup)
    result["shifted_table"] = shifted_table(result, args)
    if args.training_fit:
        run = args.runs / f"xresnet1d101/all/s0-{setup}"
        result["training_fit"] = training_fit(args.published, run, args.training_fit,
                                              args.cache_dir)  # fmt: skip
    print(markdown(result) if args.markdown else json.dumps(result, indent=1))


if __name__ == "__main__":
    main()
