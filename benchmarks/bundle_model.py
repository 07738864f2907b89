"""Ship a pretraining run's model inside the package: copy RUN_DIR/model (weights, config,
manifest, pretraining.json) to ``src/ecgfoundry/weights/NAME/`` and write its model card from
what the run recorded (and, with ``--quality``, the held-out results of
``bundled_quality.py --json``). The weights are only replaced with ``--replace`` (that changes
every result's fingerprint). Without RUN_DIR it refreshes the card of the model already
bundled, from its own files (after new results; the run folder need not exist any more).

    python benchmarks/bundle_model.py runs/pretrain/ecgfoundry-cpc --name ecgfoundry-cpc \\
        [--quality benchmarks/results/bundled_quality.json] [--replace] [--ptbxl-root DIR]
    python benchmarks/bundle_model.py --name ecgfoundry-cpc \\
        --quality benchmarks/results/bundled_quality.json --ptbxl-root DIR/ptbxl

``--ptbxl-root`` (the PTB-XL copy the corpus came from) lets the card name the folds its
PTB-XL records come from, how many records that copy lists, and how many of those folds' records
the corpus does not hold.
"""

from __future__ import annotations

import argparse
import json
import shutil
from pathlib import Path
from typing import Any

import pandas as pd

import ecgfoundry
from ecgfoundry.data import ptbxl
from ecgfoundry.models.registry import BUNDLED_DIR, count_parameters, load_model, model_entry

FILES = ("config.json", "model.safetensors", "manifest.json", "pretraining.json")
PACKAGE_LIMIT_MB = 25.0
REPRODUCE = """\
    ecgfoundry data download ptbxl --fs 100 --out DIR/ptbxl
    ecgfoundry pretrain {name} --objective cpc --data ptbxl=DIR/ptbxl \\
        --config benchmarks/configs/{name}.yaml --epochs {epochs} --out runs/pretrain/{name} \\
        --checkpoint-minutes 10
    python benchmarks/bundle_model.py runs/pretrain/{name} --name {name} --ptbxl-root DIR/ptbxl"""


def package_megabytes() -> float:
    """The installed package's size (what a wheel holds, before compression)."""
    package = Path(ecgfoundry.__file__).parent
    files = [f for f in package.rglob("*") if f.is_file() and "__pycache__" not in f.parts]
    return sum(f.stat().st_size for f in files) / 1e6


def quality_section(quality: dict[str, Any] | None) -> str:
    if not quality:
        return ("Not measured yet: `python benchmarks/bundled_quality.py` (README, \"The bundled "
                "model\") compares it with the task-specific models on PTB-XL fold 9.")  # fmt: skip
    lines = [
        "PTB-XL fold 9 (never seen in pretraining), macro AUROC, mean over seeds, paired "
        "bootstrap 95 % CI of the difference (fold-9 records resampled 1000 times); "
        "`python benchmarks/bundled_quality.py`:",
        "",
        "| task | labels | ecgfoundry-cpc post-train | compared with | theirs "
        "| difference [95 % CI] |",
        "|---|---|---|---|---|---|",
    ]
    for row in quality["comparisons"]:
        if row.get("difference") is None:
            continue
        ci = row["difference"]["ci"]
        lines.append(
            f"| {row['task']} | {row['fraction']:.0%} | {row['ours']['macro_auroc']:.3f} "
            f"({seeds(row['ours'])}) | {row['against']} | "
            f"{row['theirs']['macro_auroc']:.3f} ({seeds(row['theirs'])}) | "
            f"{row['difference']['value']:+.3f} [{ci[0]:+.3f}, {ci[1]:+.3f}] |"
        )
    return "\n".join(lines)


def seeds(side: dict[str, Any]) -> str:
    """``2 seeds, bf16``: how many, and the precisions they trained in."""
    n = len(side["seeds"])
    precision = "+".join(side.get("precision", []))
    return (f"{n} seed" if n == 1 else f"{n} seeds") + (f", {precision}" if precision else "")


def corpus_sentence(manifest: dict[str, Any], ptbxl_root: Path | None) -> str:
    """What the corpus was, from its manifest (and, given the PTB-XL copy, its folds)."""
    parts = ", ".join(f"{k}: {n:,}" for k, n in manifest["datasets"].items())
    text = f"{manifest['count']:,} records ({parts})"
    if "ptbxl" not in manifest["datasets"] or ptbxl_root is None:
        return text
    folds = pd.read_csv(ptbxl_root / ptbxl.DATABASE_CSV, usecols=["ecg_id", "strat_fold"])
    folds = folds.set_index("ecg_id")["strat_fold"]
    used = {int(r["id"].split(":")[1]) for r in manifest["records"] if r["id"].startswith("ptbxl:")}
    unknown = sorted(used - set(folds.index))
    if unknown:
        raise SystemExit(
            f"{ptbxl_root}: its database lacks {len(unknown)} of the corpus' PTB-XL records "
            f"(e.g. {unknown[:3]}): not the copy it came from"
        )
    chosen = sorted(set(folds[sorted(used)]))
    lacked = int(folds.isin(chosen).sum()) - len(used)
    contiguous = chosen == list(range(chosen[0], chosen[-1] + 1))
    span = f"{chosen[0]}-{chosen[-1]}" if contiguous else ", ".join(map(str, chosen))
    text += (f": PTB-XL folds {span} of a copy whose database lists {len(folds):,} of the "
             f"release's {ptbxl.RELEASE_RECORDS:,} records")  # fmt: skip
    if lacked:
        text += f", less {lacked} records of those folds that the corpus does not hold"
    return text


def model_card(
    name: str, folder: Path, quality: dict[str, Any] | None, ptbxl_root: Path | None = None
) -> str:
    model = load_model(folder)
    config, run = model.config, json.loads((folder / "pretraining.json").read_text())
    manifest = json.loads((folder / "manifest.json").read_text())
    settings, cpc = run["settings"], run["settings"]["config"]
    hardware, spec = run["hardware"], config.spec
    samples = round(spec["fs"] * spec["seconds"])
    tokens_per_s = config.tokens(samples) / spec["seconds"]
    megabytes = (folder / "model.safetensors").stat().st_size / 1e6
    return f"""# {name}: ecgfoundry's own ECG foundation model

{model_entry(name).description}. It ships inside the package and loads offline:

```python
from ecgfoundry.models import create_model, resolve_model
backbone = resolve_model("{name}")                                # the pretrained model
model = create_model("{name}", pretrained=True, num_classes=5)    # with a fresh head
```

or `ecgfoundry finetune {name} ...`, `ecgfoundry embed {name} ...`; `ecgfoundry predict` takes \
the fine-tuned model (this one has no classification head).

## Model
- Family `s4`, ECG-CPC's architecture (AI4HealthUOL; arXiv 2509.25095): a convolutional \
encoder of {len(config.encoder_features)} layers ({config.encoder_features[0]} channels, \
kernels {config.encoder_kernel_sizes}, strides {config.encoder_strides}), then \
{config.n_layers} causal S4 layers ({config.d_model} wide, state size {config.d_state}, \
dropout {config.dropout}), mean pooling. The CPC prediction head is kept (`ssl_head`), so \
pretraining can continue from it.
- {count_parameters(model):,} parameters ({megabytes:.1f} MB of float32 weights).
- Input: {len(spec["leads"])} leads ({", ".join(spec["leads"])}), {spec["fs"]:g} Hz, \
{spec["seconds"]:g} s, in millivolts without normalisation (as ECG-CPC); ecgfoundry's \
preprocessing resamples, selects leads and cuts windows for you. {tokens_per_s:g} feature \
steps per second (`forward_sequence`).

## Pretraining
- Objective: contrastive predictive coding (`cpc`). The causal context predicts the \
encoder's output {cpc["steps_ahead"]} steps ({cpc["steps_ahead"] * 1000 / tokens_per_s:.0f} \
ms) ahead against {cpc["negatives"]} negatives from the same record. AdamW (weight decay \
{cpc["weight_decay"]:g}), constant learning rate {cpc["lr"]:g} for every part (`lr_factor` \
{cpc["lr_factor"]:g}), batch {cpc["batch_size"]}, random 10-s crops. Settings: \
`benchmarks/configs/{name}.yaml`: ECG-CPC's published ones except the horizon (kept at \
ECG-CPC's 117 ms) and the learning-rate factor (chosen in a one-epoch pilot on the \
pretraining corpus' own held-out patients).
- Corpus: {corpus_sentence(manifest, ptbxl_root)} (ids in `manifest.json`, hash \
`{manifest["hash"]}`). {settings["val"]["records"]:,} records of 5 % \
of the patients validated the objective and {settings["train"]["records"]:,} trained it. \
**PTB-XL folds 9 and 10 were never used**: fine-tuning or evaluating this model on any \
record of its manifest is refused unless explicitly allowed.
- Length: {run["epochs"]} epochs, {run["optimizer_steps"]:,} optimiser steps, \
{run["train_hours"]:.2f} hours of training at {run["samples_per_s"]:g} samples/s, \
{settings["precision"].replace("torch.", "")}, on CPU {hardware["cpu"]} \
({hardware["torch_threads"]} torch thread(s); flags {", ".join(hardware["cpu_flags"])}), \
torch {hardware["torch"]}.
- Last epoch: CPC validation loss {run["last_epoch"]["val_loss"]:.3f}, accuracy \
{run["last_epoch"]["val_accuracy"]:.3f} (the true future among {cpc["negatives"] + 1}).

Reproduce on a CPU (resumable: stop and rerun the same command any number of times):

{REPRODUCE.format(name=name, epochs=run["epochs"])}

## Held-out results
{quality_section(quality)}

## Data licence and citation
Trained on PTB-XL (Wagner et al., Scientific Data 2020; PhysioNet, Goldberger et al. 2000), \
licensed CC BY 4.0: cite both when you use this model. The weights are distributed with \
ecgfoundry under Apache-2.0.

## Intended use and limits
Research on ECG representation learning and label-efficient adaptation. Not a medical \
device and not validated for clinical decisions. Its corpus is one German dataset of 10-s \
resting 12-lead ECGs (PTB-XL, 1989-1996, Schiller devices): expect weaker transfer to other \
populations, devices, ambulatory or single-lead recordings; measure it on your own data.
"""


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "run", type=Path, nargs="?", help="the pretraining run (none: refresh the bundled card)"
    )
    parser.add_argument("--name", required=True, help="a preset registered with bundled=True")
    parser.add_argument("--quality", type=Path, help="bundled_quality.py --json output")
    parser.add_argument("--replace", action="store_true", help="replace bundled weights")
    parser.add_argument("--ptbxl-root", type=Path, help="the PTB-XL copy the corpus came from")
    args = parser.parse_args()
    if args.ptbxl_root and not (args.ptbxl_root / ptbxl.DATABASE_CSV).is_file():
        parser.error(f"--ptbxl-root {args.ptbxl_root}: no {ptbxl.DATABASE_CSV} there")
    entry = model_entry(args.name)
    if not entry.bundled:
        parser.error(f"{args.name} is not registered with bundled=True")
    folder = BUNDLED_DIR / args.name
    source = args.run / "model" if args.run else folder
    missing = [f for f in FILES if not (source / f).is_file()]
    if missing:
        parser.error(f"{source}: missing {missing} (has the run finished?)")
    if args.run:  # ship the run's files; without a run the bundled ones stay as they are
        weights = folder / "model.safetensors"
        other = weights.exists() and weights.read_bytes() != (source / weights.name).read_bytes()
        if other and not args.replace:
            parser.error(f"{folder} holds other weights: pass --replace to replace them")
        folder.mkdir(parents=True, exist_ok=True)
        for name in FILES:
            shutil.copyfile(source / name, folder / name)
    quality = json.loads(args.quality.read_text()) if args.quality else None
    (folder / "MODEL_CARD.md").write_text(model_card(args.name, folder, quality, args.ptbxl_root))
    size = package_megabytes()
    print(json.dumps({"bundled": str(folder), "package_mb": round(size, 2)}))
    if size > PACKAGE_LIMIT_MB:
        raise SystemExit(f"the package is {size:.1f} MB, over the {PACKAGE_LIMIT_MB} MB limit")


if __name__ == "__main__":
    main()
