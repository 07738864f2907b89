"""The ``ecgfoundry`` command line: each command parses its arguments and calls one function."""

from __future__ import annotations

import json
import sys
from enum import StrEnum
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import numpy as np
import typer

from ecgfoundry.data.record import ECGInputError
from ecgfoundry.errors import ReportedError, UsageError

if TYPE_CHECKING:
    from ecgfoundry.inference import Inputs
    from ecgfoundry.models import ECGModel

app = typer.Typer(
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
    help="ECG foundation models on your ECGs: read data, load and convert published models, "
    "embed, predict, and adapt them to tasks. Start with `ecgfoundry demo`.",
)
data_app = typer.Typer(no_args_is_help=True, help="Read, summarise, cache and download datasets.")
app.add_typer(data_app, name="data")


class Dataset(StrEnum):
    ptbxl = "ptbxl"
    mitdb = "mitdb"
    vfdb = "vfdb"


JsonFlag = Annotated[bool, typer.Option("--json", help="Print JSON instead of a table.")]


def _print_json(value: Any) -> None:
    typer.echo(json.dumps(value, indent=1, default=str))


@app.command()
def demo(as_json: JsonFlag = False) -> None:
    """Run the main job on the bundled sample ECGs (offline)."""
    from ecgfoundry.demo import DEMO_SPEC, run_demo

    rows = run_demo()
    if as_json:
        _print_json(rows)
        return
    from rich.console import Console
    from rich.table import Table

    table = Table(title="ecgfoundry demo: the bundled sample ECGs", title_justify="left")
    for column in ("record", "format", "Hz", "leads", "s", "bpm", "labels", "model input"):
        table.add_column(column, no_wrap=column != "labels")
    for row in rows:
        shape = "x".join(str(n) for n in row["model_input"])
        table.add_row(
            row["record"], row["format"], f"{row['fs']:g}", str(row["leads"]),
            f"{row['seconds']:g}", str(row["heart_rate_bpm"] or "-"), row["labels"], shape,
        )  # fmt: skip
    console = Console()
    console.print(table)
    console.print(
        f"model input = {DEMO_SPEC.fs:g} Hz, {DEMO_SPEC.seconds:g} s, "
        f"{len(DEMO_SPEC.leads)} leads, {DEMO_SPEC.normalisation} (ecgfoundry.demo.DEMO_SPEC)"
    )


RootOption = Annotated[Path, typer.Option("--root", help="The dataset folder.")]
FsOption = Annotated[int, typer.Option("--fs", help="Sampling rate to read (PTB-XL: 100 or 500).")]


@data_app.command("summary")
def data_summary(
    dataset: Dataset,
    root: RootOption,
    fs: Annotated[
        float | None, typer.Option(help="PTB-XL: 100 or 500 (default 100). mitdb/vfdb: window Hz.")
    ] = None,
    seconds: Annotated[float, typer.Option(help="mitdb/vfdb: window length (s).")] = 2.0,
    stride: Annotated[float | None, typer.Option(help="mitdb/vfdb: stride (s).")] = None,
    lead: Annotated[str | None, typer.Option(help="mitdb/vfdb: lead name.")] = None,
) -> None:
    """Print one JSON object describing a dataset (records, folds, tasks, problems)."""
    if dataset is Dataset.ptbxl:
        from ecgfoundry.data import ptbxl

        _print_json(ptbxl.load(root, fs=int(fs or 100)).summary())
        return
    from ecgfoundry.data import arrhythmia

    options = {"seconds": seconds, "stride": stride, "lead": lead}
    if fs is not None:
        options["fs"] = fs
    try:
        summary = arrhythmia.summary(dataset.value, root, **options)
    except (ValueError, KeyError) as error:
        if isinstance(error, ReportedError):
            raise
        raise UsageError(f"{dataset.value} --root {root}: {error}") from error
    _print_json(summary)


@data_app.command("cache")
def data_cache(
    dataset: Dataset,
    root: RootOption,
    fs: FsOption = 100,
    cache_dir: Annotated[Path | None, typer.Option(help="Default: $ECGFOUNDRY_CACHE.")] = None,
    workers: Annotated[int, typer.Option(help="Processes decoding records.")] = 1,
) -> None:
    """Build (or reuse) the preprocessed cache of a dataset and print its location."""
    if dataset is not Dataset.ptbxl:
        raise ECGInputError(root, f"caching {dataset.value} is not supported yet; use ptbxl")
    from ecgfoundry.data import ptbxl

    store = ptbxl.load(root, fs=fs).cache(cache_dir=cache_dir, workers=workers)
    typer.echo(str(store.path))


@data_app.command("download")
def data_download(
    dataset: Dataset,
    dest: Annotated[Path, typer.Option("--dest", help="Folder to download into.")],
    fs: Annotated[int | None, typer.Option(help="PTB-XL: 100 or 500 Hz records.")] = None,
) -> None:
    """Download a dataset from PhysioNet (SHA256-verified, resumable: re-run to continue)."""
    from ecgfoundry.data.download import download

    typer.echo(str(download(dataset.value, dest, fs=fs, progress="rich")))


models_app = typer.Typer(no_args_is_help=True, help="The model zoo.")
app.add_typer(models_app, name="models")


class Aggregate(StrEnum):
    mean = "mean"
    max = "max"


class Family(StrEnum):
    ecgfounder = "ecgfounder"
    ecgfm = "ecgfm"
    hubert_ecg = "hubert-ecg"


@models_app.command("list")
def models_list(as_json: JsonFlag = False) -> None:
    """Every architecture preset with its parameter count and input spec."""
    from ecgfoundry.models import list_models

    rows = list_models()
    if as_json:
        _print_json(rows)
        return
    for row in rows:
        spec = row["spec"]
        typer.echo(
            f"{row['name']:<22} {row['family']:<11} {row['parameters'] / 1e6:8.2f} M  "
            f"{spec['fs']:g} Hz x {spec['seconds']:g} s x {len(spec['leads'])} leads  "
            f"{row['description']}"
        )


UnsafeOption = Annotated[
    bool,
    typer.Option(
        "--allow-unsafe",
        help="Allow unpickling Python objects (can run code from the file): trusted files only.",
    ),
]


@app.command()
def convert(
    family: Family,
    checkpoint: Annotated[Path, typer.Argument(help="Published checkpoint file or folder.")],
    out_dir: Annotated[Path, typer.Argument(help="Where to write the ecgfoundry model folder.")],
    config: Annotated[
        Path | None, typer.Option(help="JSON with architecture hyperparameters to use/override.")
    ] = None,
    allow_unsafe: UnsafeOption = False,
) -> None:
    """Convert a published checkpoint into ecgfoundry's folder (config.json + safetensors)."""
    from ecgfoundry.models import hubert, net1d, save_model, wav2vec2

    module = {"ecgfounder": net1d, "ecgfm": wav2vec2, "hubert-ecg": hubert}[family.value]
    try:
        overrides = json.loads(config.read_text()) if config else None
    except (OSError, json.JSONDecodeError) as error:
        raise UsageError(f"--config {config}: not a readable JSON file ({error})") from error
    model = module.convert_checkpoint(checkpoint, overrides=overrides, allow_unsafe=allow_unsafe)
    typer.echo(str(save_model(model, out_dir)))


ModelArgument = Annotated[str, typer.Argument(help="A model folder or a registry name.")]
InputArgument = Annotated[
    Path, typer.Argument(help="A record file, a folder of records, or an .npy [N, leads, samples].")
]
InputFsOption = Annotated[float | None, typer.Option("--fs", help="Sampling rate of .npy/.csv.")]
LeadsOption = Annotated[
    str | None, typer.Option("--leads", help="Comma-separated lead names of .npy/.csv input.")
]
NoPreprocessOption = Annotated[
    bool, typer.Option("--no-preprocess", help="Feed arrays as they are (no resampling etc.).")
]


def _inputs(
    model_name: str, source: Path, fs: float | None, leads: str | None, no_preprocess: bool
) -> tuple[ECGModel, Inputs]:
    from ecgfoundry import inference

    model = inference.resolve_model(model_name)
    lead_names = [name.strip() for name in leads.split(",")] if leads else None
    records = inference.load_inputs(source, fs=fs, leads=lead_names)
    return model, inference.prepare(model, records, preprocess=not no_preprocess)


@app.command()
def embed(
    model: ModelArgument,
    source: InputArgument,
    out: Annotated[Path, typer.Option("--out", help="Output .npy [records, D].")],
    fs: InputFsOption = None,
    leads: LeadsOption = None,
    no_preprocess: NoPreprocessOption = False,
) -> None:
    """Write one embedding per record (mean over the model's input windows)."""
    from ecgfoundry import inference

    network, inputs = _inputs(model, source, fs, leads, no_preprocess)
    embeddings = inference.embed(network, inputs)
    out.parent.mkdir(parents=True, exist_ok=True)
    np.save(out, embeddings)
    typer.echo(f"{out}: {embeddings.shape[0]} records x {embeddings.shape[1]} features")


@app.command()
def predict(
    model: ModelArgument,
    source: InputArgument,
    out: Annotated[Path, typer.Option("--out", help="Output .npy, .csv or .json.")],
    fs: InputFsOption = None,
    leads: LeadsOption = None,
    no_preprocess: NoPreprocessOption = False,
    aggregate: Annotated[Aggregate, typer.Option(help="Over a record's windows.")] = Aggregate.mean,
) -> None:
    """Write per-label probabilities for each record."""
    from ecgfoundry import inference

    network, inputs = _inputs(model, source, fs, leads, no_preprocess)
    probabilities = inference.predict_proba(network, inputs, aggregate=Aggregate(aggregate).value)
    labels = inference.label_names(network)
    typer.echo(str(inference.write_predictions(out, probabilities, inputs.ids, labels)))


class Strategy(StrEnum):
    scratch = "scratch"
    linear_probe = "linear-probe"
    finetune = "finetune"
    lp_ft = "lp-ft"
    post_train = "post-train"


class Task(StrEnum):
    all = "all"
    diagnostic = "diagnostic"
    subdiagnostic = "subdiagnostic"
    superdiagnostic = "superdiagnostic"
    form = "form"
    rhythm = "rhythm"


@app.command()
def finetune(
    model: Annotated[str, typer.Option("--model", help="Model folder or registry name.")],
    root: RootOption,
    task: Annotated[Task, typer.Option(help="PTB-XL benchmark task.")],
    strategy: Annotated[Strategy, typer.Option(help="Adaptation recipe.")],
    out: Annotated[Path, typer.Option("--out", help="Run folder (resumed if it exists).")],
    data: Annotated[str, typer.Option(help="Dataset (ptbxl).")] = "ptbxl",
    fraction: Annotated[float, typer.Option(help="Share of the training folds (nested).")] = 1.0,
    seed: Annotated[int, typer.Option(help="Seed for subset, initialisation and order.")] = 0,
    config: Annotated[Path | None, typer.Option(help="YAML recipe overrides.")] = None,
    epochs: Annotated[int | None, typer.Option(help="Epochs of the main (last) stage.")] = None,
    cache_dir: Annotated[Path | None, typer.Option(help="Default: $ECGFOUNDRY_CACHE.")] = None,
    workers: Annotated[int, typer.Option(help="Processes building the cache.")] = 1,
) -> None:
    """Adapt a model to a PTB-XL task; writes OUT/metrics.json, OUT/model/, OUT/log.jsonl.

    Run it again after an interruption to resume. Several processes: launch with
    `torchrun --nproc_per_node N -m ecgfoundry finetune ...` (gloo on CPU, NCCL on GPUs).
    """
    from ecgfoundry.adapt import finetune as run

    metrics = run(
        model, root=root, task=task.value, strategy=strategy.value, out=out, data=data,
        fraction=fraction, seed=seed, config=config, epochs=epochs, cache_dir=cache_dir,
        workers=workers,
    )  # fmt: skip
    summary = {split: {k: metrics[split][k] for k in ("macro_auroc", "macro_auprc", "ci")}
               for split in ("val", "test") if split in metrics}  # fmt: skip
    _print_json(summary)


def main() -> None:
    """Console-script entry: clear one-line errors for bad input instead of tracebacks."""
    try:
        app()
    except ReportedError as error:
        typer.echo(f"error: {error}", err=True)
        sys.exit(2)
