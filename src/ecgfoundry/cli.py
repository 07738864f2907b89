"""The ``ecgfoundry`` command line: each command parses its arguments and calls one function.

Conventions: the model is the first argument; outputs go to ``--out``; ``--fs`` is in Hz; names
(datasets, tasks, strategies, checkpoint formats) come from the modules that define them.
"""

from __future__ import annotations

import dataclasses
import inspect
import json
import math
import os
import sys
from collections.abc import Iterable
from enum import StrEnum
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any, get_args

import typer

from ecgfoundry.data.download import DATASETS
from ecgfoundry.data.ptbxl import TASKS
from ecgfoundry.data.record import millivolts_per_unit
from ecgfoundry.data.snomed import abbreviate, describe_code
from ecgfoundry.data.transforms import MissingLeads as MissingLeadsPolicy
from ecgfoundry.errors import ReportedError, UsageError, shortened
from ecgfoundry.evaluate.metrics import DEFAULT_AGGREGATE, Aggregate
from ecgfoundry.export import FORMATS
from ecgfoundry.settings import read_settings

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
data_app = typer.Typer(
    no_args_is_help=True,
    help="Inspect your ECG files; read, summarise, cache and download datasets.",
)
app.add_typer(data_app, name="data")
models_app = typer.Typer(no_args_is_help=True, help="The model zoo.")
app.add_typer(models_app, name="models")
benchmark_app = typer.Typer(
    no_args_is_help=True, help="Benchmark models: grids of tasks, modes, fractions, seeds."
)
app.add_typer(benchmark_app, name="benchmark")
personalize_app = typer.Typer(
    no_args_is_help=True,
    help="Personalised VA detection: meta-train an initialisation, adapt it to a person, "
    "evaluate the protocol.",
)
app.add_typer(personalize_app, name="personalize")


def _choices(name: str, values: Iterable[str]) -> type[StrEnum]:
    """Typer choices for names another module defines (typer lists them in --help)."""
    return StrEnum(name, [(value, value) for value in values])


DownloadDataset = _choices("DownloadDataset", DATASETS)  # what `data summary` reads too
AggregateName = _choices("AggregateName", get_args(Aggregate))
MissingLeads = _choices("MissingLeads", get_args(MissingLeadsPolicy))
REFUSE_MISSING = MissingLeads("raise")
ExportFormat = _choices("ExportFormat", FORMATS)
ONNX = ExportFormat("onnx")
EVALUATION_AGGREGATE = AggregateName(DEFAULT_AGGREGATE)


def _one_of(what: str, value: str, names: Iterable[str]) -> None:
    """A UsageError listing ``names`` unless ``value`` is one of them."""
    known = sorted(names)
    if value not in known:
        raise UsageError(f"{what} {value!r}: not one of {', '.join(known)}")


def _whole_hz(fs: float | None) -> int | None:
    """A sampling rate where only whole numbers of Hz are offered (downloads)."""
    if fs is not None and not (fs > 0 and float(fs).is_integer()):
        raise UsageError(f"--fs {fs:g}: a whole positive number of Hz is needed here")
    return None if fs is None else int(fs)


JsonFlag = Annotated[bool, typer.Option("--json", help="Print JSON instead of a table.")]


def _print_json(value: Any) -> None:
    typer.echo(json.dumps(value, indent=1, default=str))


NEXT_STEPS = """Next, on your own ECGs (README: "Reading ECGs", "Adapting a model to a task"):
  ecgfoundry data inspect MY_ECGS/ --model {model}      what it reads, what the model gets
  ecgfoundry embed {model} MY_ECGS/ --out embeddings.npy
  ecgfoundry finetune {model} --data my_labels.csv --strategy post-train --out runs/mine
  ecgfoundry predict runs/mine/model MY_ECGS/ --out predictions.csv
The demo's own post-trained model learned from {trained} records: it shows the workflow, it is
not a diagnostic model:
  {adapted}"""


@app.command()
def demo(
    out: Annotated[
        Path, typer.Option("--out", help="Folder for the demo's data, runs and report.")
    ] = Path("ecgfoundry-demo"),
    as_json: JsonFlag = False,
) -> None:
    """The main job, offline: read the bundled ECGs, benchmark the bundled foundation model
    (linear probe vs post-train at 25 and 100 % of the labels, UMAP, SHAP), predict the
    sample ECGs and write the HTML report (its path is printed last). Rerun to resume."""
    from ecgfoundry.demo import MODEL, run_demo

    result = run_demo(out, progress=not as_json)
    if as_json:
        _print_json(result)
        return
    from rich.console import Console
    from rich.table import Table

    console = Console()
    console.print(_records_table(result["samples"], "The bundled sample ECGs, as the data layer "
                                 "reads them", ("labels", "model input")))  # fmt: skip
    spec = result["spec"]
    leads, norm = len(spec["leads"]), spec["normalisation"]
    console.print(f"({MODEL}'s input: {spec['fs']:g} Hz, {spec['seconds']:g} s, {leads} leads, "
                  f"normalisation: {norm})")  # fmt: skip
    scores = Table(title="ecgfoundry-cpc on PTB-XL superdiagnostic (demo subset, fold-9 records)",
                   title_justify="left")  # fmt: skip
    for column in ("mode", "labels", "macro AUROC", "macro AUPRC"):
        scores.add_column(column)
    for row in result["benchmark"]:
        scores.add_row(row["mode"], f"{row['fraction']:.0%}", f"{row['macro_auroc']:.3f}",
                       f"{row['macro_auprc']:.3f}")  # fmt: skip
    console.print(scores)
    predicted = Table(title="Post-trained model on the sample ECGs", title_justify="left")
    for column in ("record", "cardiologists' superclasses", "predicted (top 2)"):
        predicted.add_column(column)
    for row in result["predictions"]:
        top = ", ".join(f"{k} {v:.2f}" for k, v in list(row["predicted"].items())[:2])
        predicted.add_row(row["record"], " ".join(row["superclasses"]) or "-", top)
    console.print(predicted)
    console.print(
        NEXT_STEPS.format(model=MODEL, adapted=result["model"], trained=result["trained_on"]),
        highlight=False,
        markup=False,
        soft_wrap=True,
    )
    console.print(f"demo took {result['seconds']:.0f} s; report:")
    typer.echo(result["report"])


RootOption = Annotated[Path, typer.Option("--root", help="The dataset folder.")]
# The names of ecgfoundry.adapt.STRATEGIES (a test checks), for --help: importing them here
# would load torch for every command.
STRATEGY_NAMES = ("scratch", "linear-probe", "attention-probe", "finetune", "lp-ft", "post-train",
                  "supervised")  # fmt: skip
# The same for ecgfoundry.pretrain's OBJECTIVES and corpus KINDS (a test checks).
OBJECTIVE_NAMES = ("cpc", "w2v-cmsc-rlm", "supervised")
CORPUS_KINDS = ("ptbxl", "cinc", "mitdb", "vfdb", "wfdb", "folder")
CacheDirOption = Annotated[
    Path | None, typer.Option(help="Default: $ECGFOUNDRY_CACHE, else ~/.cache/ecgfoundry.")
]
AllowOverlapOption = Annotated[
    bool, typer.Option(help="Run although evaluation records are in the model's manifest.")
]
WorkersOption = Annotated[int, typer.Option(help="Processes building the cache.")]
LoaderWorkersOption = Annotated[
    int, typer.Option(help="Background processes feeding batches (DataLoader workers).", min=0)
]
CheckpointMinutesOption = Annotated[
    float | None,
    typer.Option(
        help="Also checkpoint every N minutes within an epoch.",
        callback=lambda value: _positive(value, "minutes"),
    ),
]
CheckpointStepsOption = Annotated[
    int | None, typer.Option(help="Also checkpoint every N optimiser steps within an epoch.", min=1)
]
ModelArgument = Annotated[
    str, typer.Argument(help="A model folder, hf-hub:ORG/REPO or a registry name.")
]


@data_app.command("summary")
def data_summary(
    dataset: DownloadDataset,
    root: RootOption,
    fs: Annotated[
        float | None,
        typer.Option(help="PTB-XL: 100 or 500 (default 100). mitdb/vfdb/cudb: window Hz."),
    ] = None,
    seconds: Annotated[float, typer.Option(help="mitdb/vfdb/cudb: window length (s).")] = 2.0,
    stride: Annotated[float | None, typer.Option(help="mitdb/vfdb/cudb: stride (s).")] = None,
    lead: Annotated[str | None, typer.Option(help="mitdb/vfdb/cudb: lead name.")] = None,
) -> None:
    """Print one JSON object describing a dataset (records, folds, tasks, labels, problems)."""
    if dataset == "ptbxl":
        from ecgfoundry.data import ptbxl

        _print_json(ptbxl.load(root, fs=fs if fs is not None else 100).summary())
        return
    if dataset.value.startswith("cinc"):
        from ecgfoundry.data import challenge

        _print_json(challenge.summary(root))
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
    dataset: Annotated[
        str,
        typer.Argument(
            help="ptbxl or cinc (with --root, or ptbxl=DIR / cinc=DIR), or a .csv "
            "table: what finetune --data takes."
        ),
    ],
    model: Annotated[
        str,
        typer.Option(
            "--model",
            help="A model folder or registry name: the cache holds records prepared for its "
            "input spec, exactly what `finetune MODEL` reads.",
        ),
    ],
    root: Annotated[Path | None, typer.Option(help="The dataset folder (ptbxl, cinc).")] = None,
    cache_dir: CacheDirOption = None,
    workers: Annotated[int, typer.Option(help="Processes decoding records.")] = 1,
) -> None:
    """Build (or reuse) the cache training a model on a dataset reads; print its location
    (records that could not be given are named on stderr)."""
    from ecgfoundry.adapt.sources import source_cache
    from ecgfoundry.models.registry import resolve_model

    spec = resolve_model(model, weights=False).spec  # the architecture is enough
    dataset, root = _named_folder(dataset, root)
    store, left_out = source_cache(dataset, spec, root=root, cache_dir=cache_dir, workers=workers)
    if left_out:
        shown = ", ".join(shortened(left_out, 10))
        print(f"note: {len(store)} records cached; {len(left_out)} listed in {root or dataset} "
              f"were left out (files absent, damaged or unreadable): {shown}",
              file=sys.stderr)  # fmt: skip
    typer.echo(str(store.path))


@data_app.command("download")
def data_download(
    dataset: DownloadDataset,
    out: Annotated[Path, typer.Option("--out", help="Folder to download into.")],
    fs: Annotated[
        float | None, typer.Option(help="Where a dataset offers several rates (PTB-XL: 100, 500).")
    ] = None,
    include: Annotated[
        list[str] | None,
        typer.Option(
            help="Only the files matching this glob ('**' spans folders; the dataset's "
            "metadata come along), repeatable; e.g. cinc2021 --include 'training/georgia/**'."
        ),
    ] = None,
) -> None:
    """Download a dataset from PhysioNet (SHA256-verified, resumable: re-run to continue)."""
    from ecgfoundry.data.download import download

    if fs is not None and include:
        raise UsageError("--fs and --include: give one (PTB-XL: --include 'records500/**' "
                         "picks the 500 Hz files)")  # fmt: skip
    try:
        path = download(dataset.value, out, fs=_whole_hz(fs), include=include or None,
                        progress="rich")  # fmt: skip
    except ValueError as error:
        if isinstance(error, ReportedError):
            raise
        raise UsageError(f"data download {dataset.value}: {error}") from error
    typer.echo(str(path))


@models_app.command("list")
def models_list(as_json: JsonFlag = False) -> None:
    """Every architecture preset with its parameter count and input spec; `pretrained` marks
    the models whose weights ship in the package (the table also lists the checkpoint formats
    `ecgfoundry convert` reads)."""
    from ecgfoundry.models.registry import list_converters, list_models

    rows = list_models()
    if as_json:
        _print_json(rows)
        return
    for row in rows:
        spec = row["spec"]
        typer.echo(
            f"{row['name']:<22} {row['family']:<11} {row['parameters'] / 1e6:8.2f} M  "
            f"{spec['fs']:g} Hz x {spec['seconds']:g} s x {len(spec['leads'])} leads  "
            f"{'pretrained  ' if row['pretrained'] else ''}{row['description']}"
        )
    typer.echo("\ncheckpoint formats (ecgfoundry convert FAMILY CHECKPOINT --out DIR):")
    for row in list_converters():
        typer.echo(f"  {row['name']:<20} {row['description']}")


UnsafeOption = Annotated[
    bool,
    typer.Option(
        "--allow-unsafe",
        help="Allow unpickling Python objects (can run code from the file): trusted files only.",
    ),
]


@app.command()
def convert(
    family: Annotated[
        str,
        typer.Argument(
            help="A registered checkpoint format (`ecgfoundry models list` lists them)."
        ),
    ],
    checkpoint: Annotated[Path, typer.Argument(help="Published checkpoint file or folder.")],
    out: Annotated[Path, typer.Option("--out", help="Where to write the ecgfoundry model folder.")],
    config: Annotated[
        Path | None,
        typer.Option(help="YAML (or JSON) with architecture hyperparameters to use/override."),
    ] = None,
    allow_unsafe: UnsafeOption = False,
    keep_pretraining_head: Annotated[
        bool,
        typer.Option(
            help="ecgfm: also keep its wav2vec 2.0 pretraining head (quantiser, "
            "projections), so `pretrain --objective w2v-cmsc-rlm` continues from it "
            "(ecgcpc keeps its SSL head in the model)."
        ),
    ] = False,
) -> None:
    """Convert a published checkpoint into ecgfoundry's folder (config.json + safetensors)."""
    from ecgfoundry.models import registry, save_model

    _one_of("FAMILY", family, registry.converter_names())
    if keep_pretraining_head and family != "ecgfm":
        raise UsageError(f"--keep-pretraining-head: only ecgfm has a separate pretraining head, "
                         f"not {family}")  # fmt: skip
    overrides = read_settings(config) if config else None
    model = registry.convert_checkpoint(
        family, checkpoint, overrides=overrides, allow_unsafe=allow_unsafe
    )
    folder = save_model(model, out)
    if keep_pretraining_head:
        from ecgfoundry.pretrain.w2v import convert_pretraining_head, save_pretraining_head

        head = convert_pretraining_head(checkpoint, allow_unsafe=allow_unsafe)
        save_pretraining_head(head, folder)
    typer.echo(str(folder))


InputArgument = Annotated[
    Path,
    typer.Argument(
        help="A record file (WFDB, CinC, EDF/BDF, MUSE/Philips/aECG XML, SCP-ECG, DICOM, CSV), "
        "a folder of records, or an .npy \\[N, leads, samples]."
    ),
]


def _pair(option: str, text: str) -> tuple[str, str]:
    """``OLD=NEW`` as a pair, else a usage error naming the option."""
    old, sep, new = text.partition("=")
    if not sep or not old.strip() or not new.strip():
        raise UsageError(f"{option} {text!r}: expected OLD=NEW")
    return old.strip(), new.strip()


def _positive(value: float | None, unit: str, subject: str = "") -> float | None:
    if value is not None and not (math.isfinite(value) and value > 0):
        raise typer.BadParameter(f"{subject}must be a positive number of {unit}, not {value:g}")
    return value


def _share(value: float) -> float:
    if not 0 < value < 1:
        raise typer.BadParameter(f"must be above 0 and below 1, not {value:g}")
    return value


def _positive_rate(value: float | None) -> float | None:
    return _positive(value, "Hz", "a sampling rate ")


InputFsOption = Annotated[
    float | None,
    typer.Option(
        "--fs",
        help="Sampling rate of .npy/.csv (with --no-preprocess: the model's).",
        callback=_positive_rate,
    ),
]
LeadsOption = Annotated[
    str | None,
    typer.Option(
        "--leads",
        help="Comma-separated lead names of .npy/.csv input (12: I..V6), "
        "or of files that name no channel as a lead (a Holter's ECG1, ECG2).",
    ),
]
UnitsOption = Annotated[
    str,
    typer.Option(
        "--units",
        help="What the values of .npy/.csv input are in: mV, uV or V (other formats state "
        "their own).",
    ),
]
NoPreprocessOption = Annotated[
    bool,
    typer.Option("--no-preprocess", help="Feed arrays as they are: the model's input, unnamed."),
]
MissingLeadsOption = Annotated[
    MissingLeads,
    typer.Option(help="A lead the model needs and a record lacks: refuse, or fill it with zeros, "
                 "a flat line (e.g. a 2-lead Holter into a 12-lead model: expect lower "
                 "accuracy; listed as a repair)."),
]  # fmt: skip


def _model(name: str) -> ECGModel:
    from ecgfoundry.models.registry import resolve_model

    return resolve_model(name).eval()  # a preset without weights is refused: random weights


def _listed(lines: list[str], shown: int = 5) -> str:
    """The first ``shown`` lines, indented on lines of their own, then how many more."""
    return "".join(f"\n  {line}" for line in shortened(lines, shown))


def _units(units: str) -> str:
    """``--units`` checked (a clear error naming the flag, before any file is read)."""
    millivolts_per_unit(units, "--units")
    return units


def _inputs(
    model: ECGModel,
    name: str,
    source: Path,
    fs: float | None,
    leads: str | None,
    units: str,
    no_preprocess: bool,
    missing_leads: MissingLeads,
) -> Inputs:
    from ecgfoundry import inference
    from ecgfoundry.personalize import person_normalisation

    if no_preprocess and fs is None:  # the arrays are model inputs: at the model's rate
        fs = model.spec.fs
    lead_names = _lead_names(leads)
    preprocess = not no_preprocess
    records = inference.load_inputs(source, fs=fs, leads=lead_names, preprocess=preprocess,
                                    units=_units(units))  # fmt: skip
    inputs = inference.prepare(model, records, preprocess=preprocess,
                               missing_leads=missing_leads.value, skip_unusable=True)  # fmt: skip
    if (normalise := person_normalisation(name)) is not None:
        mean, sd = normalise  # part of a person's model (its export has it in the graph)
        inputs = dataclasses.replace(inputs, windows=((inputs.windows - mean) / sd).astype(
            inputs.windows.dtype))  # fmt: skip
        print(f"note: inputs z-scored with the person's support.json (mean {mean:.4g} mV, "
              f"sd {sd:.4g} mV)", file=sys.stderr)  # fmt: skip
    if inputs.repairs:
        done = [f"{rid} ({'; '.join(what)})" for rid, what in inputs.repairs.items()]
        print(f"note: {len(done)} record(s) were repaired before scoring:{_listed(done)}",
              file=sys.stderr)  # fmt: skip
    return inputs


@app.command()
def embed(
    model: ModelArgument,
    source: InputArgument,
    out: Annotated[
        Path, typer.Option("--out", help="Output .npy \\[records, D]; record ids in NAME.ids.txt.")
    ],
    fs: InputFsOption = None,
    leads: LeadsOption = None,
    units: UnitsOption = "mV",
    no_preprocess: NoPreprocessOption = False,
    missing_leads: MissingLeadsOption = REFUSE_MISSING,
) -> None:
    """Write one embedding per record (mean over the model's input windows)."""
    from ecgfoundry import inference

    inference.check_output(out, inference.EMBEDDING_FORMATS)
    network = _model(model)
    inputs = _inputs(network, model, source, fs, leads, units, no_preprocess, missing_leads)
    embeddings = inference.embed(network, inputs)
    path = inference.write_embeddings(out, embeddings, inputs.ids)
    typer.echo(f"{path}: {embeddings.shape[0]} records x {embeddings.shape[1]} features "
               f"(record ids: {inference.ids_path(path)})")  # fmt: skip


@app.command()
def predict(
    model: ModelArgument,
    source: InputArgument,
    out: Annotated[
        Path,
        typer.Option("--out", help="Output .csv, .json or .npy (record ids in NAME.ids.txt)."),
    ],
    fs: InputFsOption = None,
    leads: LeadsOption = None,
    units: UnitsOption = "mV",
    no_preprocess: NoPreprocessOption = False,
    missing_leads: MissingLeadsOption = REFUSE_MISSING,
    aggregate: Annotated[
        AggregateName, typer.Option(help="Over a record's windows (evaluation uses the default).")
    ] = EVALUATION_AGGREGATE,
    per_window: Annotated[
        bool,
        typer.Option(
            "--per-window",
            help="One row per window (record, start_s, end_s; .csv or "
            ".json), not per record: a long recording over time.",
        ),
    ] = False,
    threshold: Annotated[
        str | None,
        typer.Option(
            metavar="tuned|none|P",
            help="Name each record's (or window's) labels, as 'predicted_labels' in .csv/.json: "
            "'tuned', the thresholds finetune chose on validation (thresholds.json in the model "
            "folder), 'none', or one probability such as 0.5. Default: tuned where the model "
            "has them and the aggregate matches.",
        ),
    ] = None,
) -> None:
    """Write per-label probabilities for each record (or each window of it)."""
    from ecgfoundry import inference

    formats = inference.WINDOW_PREDICTION_FORMATS if per_window else inference.PREDICTION_FORMATS
    inference.check_output(out, formats)
    network = _model(model)
    inference.require_head(network, model)
    labels = inference.label_names(network)
    tabular = Path(out).suffix.lower() in (".csv", ".json")
    cut = _thresholds(network, threshold, aggregate.value, per_window, tabular)
    inputs = _inputs(network, model, source, fs, leads, units, no_preprocess, missing_leads)
    if per_window:
        probabilities = inference.predict_windows(network, inputs)
        named = None if cut is None else inference.decisions(probabilities, labels, cut)
        written = inference.write_window_predictions(out, probabilities, inputs, labels, named)
    else:
        probabilities = inference.predict_proba(network, inputs, aggregate=aggregate.value)
        named = None if cut is None else inference.decisions(probabilities, labels, cut)
        written = inference.write_predictions(out, probabilities, inputs.ids, labels, named)
    typer.echo(str(written))


def _thresholds(
    network: Any, threshold: str | None, aggregate: str, per_window: bool, tabular: bool
) -> list[float] | float | None:
    """``predict --threshold``: the probabilities from which labels are named, or None. Left
    out, the model's tuned thresholds where they apply; asked for, they must."""
    from ecgfoundry import inference

    if threshold == "none" or (threshold is None and not tabular):
        return None
    if not tabular:
        raise UsageError(f"--threshold {threshold}: labels are written to .csv or .json "
                         "outputs only")  # fmt: skip
    if threshold not in (None, "tuned"):
        try:
            value = float(threshold)
        except ValueError:
            value = -1.0
        if not 0 < value < 1:
            raise UsageError(f"--threshold {threshold}: expected tuned, none or a probability "
                             "strictly between 0 and 1")  # fmt: skip
        return value
    saved = inference.tuned_thresholds(network)
    if saved is None and threshold == "tuned":
        raise UsageError("--threshold tuned: the model has no thresholds.json (finetune writes "
                         "one); give a probability, e.g. --threshold 0.5")  # fmt: skip
    if saved is None:
        return None
    if not per_window and saved["aggregate"] != aggregate:
        mismatch = (f"the model's thresholds were tuned on {saved['aggregate']}-aggregated "
                    f"windows, not {aggregate}")  # fmt: skip
        if threshold == "tuned":
            raise UsageError(f"--aggregate {aggregate}: {mismatch}; use --aggregate "
                             f"{saved['aggregate']} or --threshold P")  # fmt: skip
        typer.echo(f"note: no predicted_labels: {mismatch} (--threshold P names them)", err=True)
        return None
    typer.echo(f"note: predicted_labels at thresholds tuned on {saved['tuned_on']}", err=True)
    if saved["untuned"]:
        typer.echo(f"note: no validation positives for {', '.join(saved['untuned'])}: their "
                   "threshold is 0.5, not tuned", err=True)  # fmt: skip
    return list(saved["thresholds"].values())


def _leads_text(leads: list[str]) -> str:
    from ecgfoundry.spec import STANDARD_LEADS

    return "12" if tuple(leads) == STANDARD_LEADS else f"{len(leads)} ({', '.join(leads)})"


def _notes(row: dict[str, Any]) -> list[str]:
    """What to say about an ``inspect_records`` row beyond its columns, the problem first."""
    flat = [f"flat: {', '.join(row['flat_leads'])}"] if row["flat_leads"] else []
    return [row["problem"]] * bool(row["problem"]) + (row["repairs"] or []) + flat


def _records_table(rows: list[dict[str, Any]], title: str, extra: Iterable[str]) -> Any:
    """A rich table of ``inspect_records`` rows (their ``record`` as it should be shown): what
    was read, then the ``extra`` columns (labels, age/sex, model input); a file not read shows
    dashes (its problem is a note)."""
    from rich.markup import escape
    from rich.table import Table

    table = Table(title=escape(title), title_justify="left")
    columns = ("record", "format", "Hz", "leads", "s", "bpm", *extra)
    for column in columns:  # the long cells wrap in a narrow terminal; numbers never do
        short = column in ("format", "Hz", "s", "bpm")
        table.add_column(column, no_wrap=short, overflow="fold", min_width=None if short else 7)
    for row in rows:
        if row["format"] is None:
            table.add_row(escape(row["record"]), *["-"] * (len(columns) - 1))
            continue
        shape = "x".join(map(str, row["model_input"])) if row.get("model_input") else "-"
        windows = f" ({row['windows']} windows)" if (row.get("windows") or 0) > 1 else ""
        age = f"{row['age']:g}" if row["age"] is not None else "-"
        cells = {
            "labels": row.get("labels", ""),
            "age/sex": age + (f" {row['sex'][0]}" if row["sex"] else ""),
            "model input": shape + windows,
        }
        table.add_row(
            escape(row["record"]), row["format"], f"{row['fs']:g}", _leads_text(row["leads"]),
            f"{row['seconds']:g}", str(row["heart_rate_bpm"] or "-"), *[cells[c] for c in extra],
        )  # fmt: skip
    return table


def _lead_names(leads: str | None) -> list[str] | None:
    return [name.strip() for name in leads.split(",")] if leads else None


@data_app.command("inspect")
def data_inspect(
    source: InputArgument,
    model: Annotated[
        str | None,
        typer.Option(
            "--model",
            help="Also give the input this model (folder or registry "
            "name) makes of each record, or why it cannot.",
        ),
    ] = None,
    fs: Annotated[
        float | None,
        typer.Option("--fs", help="Sampling rate of .npy/.csv.", callback=_positive_rate),
    ] = None,
    leads: LeadsOption = None,
    units: UnitsOption = "mV",
    missing_leads: MissingLeadsOption = REFUSE_MISSING,
    as_json: JsonFlag = False,
) -> None:
    """What ecgfoundry reads in your files, one row per ECG: format, rate, leads, length,
    heart rate, labels (a challenge header's SNOMED-CT codes), age/sex, repairs, and with
    --model the model input each becomes (ids as predict/embed write them). In a folder, files
    that cannot be read are listed with their problem (exit status 0)."""
    from ecgfoundry.inventory import inspect_records
    from ecgfoundry.models.registry import resolve_model

    if missing_leads.value != "raise" and not model:
        raise UsageError("--missing-leads says how a model's input is made: give --model")
    spec = resolve_model(model, weights=False).spec if model else None
    rows = inspect_records(source, spec=spec, fs=fs, leads=_lead_names(leads),
                           missing_leads=missing_leads.value, units=_units(units))  # fmt: skip
    if as_json:
        _print_json(rows)
        return
    from rich.console import Console

    base = source if source.is_dir() else source.parent  # the table names records below it
    shown = [{**row, "record": os.path.relpath(row["record"], base)} for row in rows]
    labelled = any(row["labels"] for row in rows)
    for row in shown:  # the challenge's abbreviations of a header's codes
        row["labels"] = " ".join(abbreviate(row["labels"] or []))
    extra = ("labels",) * labelled + (("age/sex", "model input") if spec else ("age/sex",))
    title = f"{source}" + (f" as input of {model}" if model else "")
    Console().print(_records_table(shown, title, extra))
    for row in shown:
        if notes := _notes(row):
            typer.echo(f"{row['record']}: {'; '.join(notes)}")
    unread = sum(row["format"] is None for row in rows)
    summary = f"{len(rows) - unread} ECG(s) read"
    if spec:
        ready = sum(row["model_input"] is not None for row in rows)
        summary += f", {ready} ready for {model}"
    typer.echo(summary + (f", {unread} file(s) not read" if unread else ""))


@app.command()
def export(
    model: ModelArgument,
    out: Annotated[
        Path, typer.Option("--out", help="Output file (.onnx); what was checked goes to NAME.json.")
    ],
    format: Annotated[ExportFormat, typer.Option("--format")] = ONNX,
    seconds: Annotated[
        float | None, typer.Option(help="Input length in seconds (default: the model's).")
    ] = None,
    int8: Annotated[
        bool, typer.Option("--int8", help="Also write a dynamically int8-quantised NAME.int8.onnx.")
    ] = False,
    as_json: JsonFlag = False,
) -> None:
    """Export a model for devices, checked against onnxruntime on the same inputs. A person's
    model from `personalize adapt` takes its support.json z-scoring into the graph (inputs in
    mV)."""
    from ecgfoundry.export import export_onnx
    from ecgfoundry.models.registry import resolve_model
    from ecgfoundry.personalize import person_normalisation

    normalise = person_normalisation(model)
    report = export_onnx(resolve_model(model), out, seconds=seconds, quantize=int8,
                         normalise=normalise)  # fmt: skip
    if as_json:
        _print_json(report)
        return
    size = report["bytes"] / 1e6
    line = (
        f"{report['path']}: {format.value}, input {report['input']}, {size:.2f} MB, max abs "
        f"error vs PyTorch {report['max_abs_error']:.1e}"
    )
    if normalise is not None:
        line += "; inputs in mV, z-scored in the graph with the person's support.json"
    if "int8" in report:
        line += (
            f"; int8 {report['int8']['path']} {report['int8']['bytes'] / 1e6:.2f} MB, max "
            f"abs error {report['int8']['max_abs_error']:.1e} (measure its accuracy)"
        )
    typer.echo(line)


def _named_folder(data: str, root: Path | None) -> tuple[str, Path | None]:
    """``ptbxl=DIR`` / ``cinc=DIR`` as (``ptbxl``/``cinc``, DIR); other data as given."""
    kind, named, folder = data.partition("=")
    if not (named and kind in ("ptbxl", "cinc")):
        return data, root
    if root is not None:
        raise UsageError(f"{data} names the folder already: drop --root")
    return kind, Path(folder)


@app.command()
def finetune(
    model: ModelArgument,
    strategy: Annotated[
        str,
        typer.Option(
            help=f"Adaptation recipe: {', '.join(STRATEGY_NAMES)} (ecgfoundry.adapt.STRATEGIES)."
        ),
    ],
    out: Annotated[Path, typer.Option("--out", help="Run folder (resumed if it exists).")],
    data: Annotated[
        str,
        typer.Option(
            help="ptbxl, cinc (a PhysioNet/CinC challenge folder) or a CSV table; "
            "ptbxl=DIR / cinc=DIR name the folder too, as in pretrain."
        ),
    ] = "ptbxl",
    root: Annotated[Path | None, typer.Option(help="The dataset folder.")] = None,
    task: Annotated[
        str | None,
        typer.Option(
            help=f"PTB-XL: one of {', '.join(TASKS)}. CinC (optional): SNOMED-CT codes or "
            "their abbreviations, e.g. AF,IAVB. Table (optional): label columns."
        ),
    ] = None,
    fraction: Annotated[float, typer.Option(help="Share of the training folds (nested).")] = 1.0,
    seed: Annotated[int, typer.Option(help="Seed for subset, initialisation and order.")] = 0,
    config: Annotated[Path | None, typer.Option(help="YAML recipe overrides.")] = None,
    epochs: Annotated[int | None, typer.Option(help="Epochs of the main (last) stage.")] = None,
    cache_dir: CacheDirOption = None,
    workers: WorkersOption = 1,
    loader_workers: LoaderWorkersOption = 0,
    checkpoint_minutes: CheckpointMinutesOption = None,
    checkpoint_steps: CheckpointStepsOption = None,
    allow_overlap: AllowOverlapOption = False,
) -> None:
    """Adapt MODEL to a task; writes OUT/metrics.json, OUT/model/, OUT/log.jsonl.

    Run it again after an interruption to resume. Several processes: launch with
    `torchrun --nproc_per_node N -m ecgfoundry finetune ...` (gloo on CPU, NCCL on GPUs).
    """
    from ecgfoundry.adapt import STRATEGIES
    from ecgfoundry.adapt import finetune as run

    _one_of("--strategy", strategy, STRATEGIES)
    data, root = _named_folder(data, root)
    metrics = run(
        model, data=data, root=root, task=task, strategy=strategy, out=out, fraction=fraction,
        seed=seed, config=config, epochs=epochs, cache_dir=cache_dir, workers=workers,
        loader_workers=loader_workers, checkpoint_every_minutes=checkpoint_minutes,
        checkpoint_every_steps=checkpoint_steps,
        allow_overlap=allow_overlap,
    )  # fmt: skip
    described = metrics["run"].get("data")
    if left_out := (described.get("unreadable_records") if isinstance(described, dict) else []):
        unread = [f"{e['record']}: {e['problem']}" for e in left_out]
        print(f"note: {len(unread)} record(s) could not be read and were left out (all in "
              f"metrics.json, run.data.unreadable_records):{_listed(unread)}",
              file=sys.stderr)  # fmt: skip
    summary = {split: {k: metrics[split][k] for k in ("macro_auroc", "macro_auprc", "ci")}
               for split in ("val", "test") if split in metrics}  # fmt: skip
    labels = [describe_code(row["label"]) for row in metrics["val"]["per_label"]]
    _print_json({"splits": metrics["run"]["splits"], "labels": labels, **summary})


@app.command()
def pretrain(
    model: ModelArgument,
    objective: Annotated[str, typer.Option(help=f"One of {', '.join(OBJECTIVE_NAMES)}.")],
    data: Annotated[
        list[str],
        typer.Option(help=f"KIND=PATH, repeatable; KIND: {', '.join(CORPUS_KINDS)}."),
    ],
    out: Annotated[Path, typer.Option("--out", help="Run folder (resumed if it exists).")],
    task: Annotated[str | None, typer.Option(help="supervised: the PTB-XL task (all).")] = None,
    seed: Annotated[int, typer.Option(help="Seed for initialisation, order and holdout.")] = 0,
    epochs: Annotated[int | None, typer.Option(help="Epochs (default: the objective's).")] = None,
    config: Annotated[Path | None, typer.Option(help="YAML settings of the objective.")] = None,
    holdout: Annotated[
        float,
        typer.Option(help="Share of patients that validate, above 0 and below 1.", callback=_share),
    ] = 0.05,
    cache_dir: CacheDirOption = None,
    workers: WorkersOption = 1,
    loader_workers: LoaderWorkersOption = 0,
    checkpoint_minutes: CheckpointMinutesOption = None,
    checkpoint_steps: CheckpointStepsOption = None,
    missing_leads: MissingLeadsOption = REFUSE_MISSING,
    rename_lead: Annotated[
        list[str] | None,
        typer.Option(
            help="OLD=NEW, repeatable: a source's lead name as the model's "
            "(mitdb: --rename-lead MLII=II)."
        ),
    ] = None,
) -> None:
    """Pretrain MODEL (a registry name, even a bundled model's, starts from random weights; a
    model folder continues from its weights);
    writes OUT/model/ with its manifest.json. Run it again to resume (at the last step
    checkpoint). Several processes: `torchrun --nproc_per_node N -m ecgfoundry pretrain ...`."""
    from ecgfoundry.pretrain import parse_source
    from ecgfoundry.pretrain import pretrain as run

    renames = dict(_pair("--rename-lead", item) for item in rename_lead or [])
    sources = [dataclasses.replace(parse_source(item), rename_leads=renames,
                                   missing_leads=missing_leads.value) for item in data]  # fmt: skip
    summary = run(
        model, objective=objective, data=sources, out=out, seed=seed, epochs=epochs, config=config,
        task=task, holdout=holdout, cache_dir=cache_dir, workers=workers,
        loader_workers=loader_workers, checkpoint_every_minutes=checkpoint_minutes,
        checkpoint_every_steps=checkpoint_steps,
    )  # fmt: skip
    _print_json(summary)


@benchmark_app.command("run")
def benchmark_run(
    config: Annotated[Path, typer.Argument(help="The benchmark's YAML configuration.")],
    out: Annotated[Path, typer.Option("--out", help="Benchmark folder (resumed if it exists).")],
    backend: Annotated[str, typer.Option(help="local (this process) or ray.")] = "local",
    address: Annotated[
        str | None, typer.Option(help="ray: a running cluster's address (default: start one).")
    ] = None,
    max_cells: Annotated[int | None, typer.Option(help="Stop after this many cells.")] = None,
    cache_dir: CacheDirOption = None,
    workers: WorkersOption = 1,
    allow_overlap: AllowOverlapOption = False,
    as_json: JsonFlag = False,
) -> None:
    """Run a benchmark's cells (models x tasks x modes x label fractions x seeds) into OUT;
    writes OUT/results.parquet and .csv and one folder per cell. Rerun to resume."""
    from ecgfoundry.benchmark import run_benchmark
    from ecgfoundry.benchmark.results import summary_with_test

    table = run_benchmark(config, out, backend=backend, address=address, max_cells=max_cells,
                          cache_dir=cache_dir, workers=workers, allow_overlap=allow_overlap,
                          progress=not as_json)  # fmt: skip
    rows = summary_with_test(table)
    if as_json:
        _print_json(rows)
        return
    for row in rows:
        sd = f" ± {row['macro_auroc_sd']:.3f}" if row["macro_auroc_sd"] is not None else ""
        test = f", test {row['test']['macro_auroc']:.3f}" if "test" in row else ""
        typer.echo(f"{row['model']:<24} {row['data']}:{row['task']:<18} {row['mode']:<14} "
                   f"{row['fraction']:>5.0%}  AUROC {row['macro_auroc']:.3f}{sd}{test} "
                   f"(seeds {row['seeds']})")  # fmt: skip
    typer.echo(f"results: {Path(out) / 'results.parquet'}")


@benchmark_app.command("report")
def benchmark_report(
    folder: Annotated[Path, typer.Argument(help="A benchmark folder (benchmark run --out).")],
    out: Annotated[
        Path | None, typer.Option("--out", help="The HTML file (default: FOLDER/report.html).")
    ] = None,
) -> None:
    """Write the benchmark's self-contained HTML report (figures embedded, works offline);
    prints its path."""
    from ecgfoundry.benchmark.report import write_report

    typer.echo(str(write_report(folder, out)))


DataFolders = Annotated[
    list[Path],
    typer.Option("--data", help="WFDB folders with rhythm or episode annotations (mitdb, vfdb, "
                 "cudb, yours); repeat for several."),
]  # fmt: skip
SeedOption = Annotated[int, typer.Option(help="Splits subjects and seeds training.")]
MAMLConfigOption = Annotated[
    Path | None,
    typer.Option("--config", help="YAML of MAMLConfig fields (epochs, iterations, inner_lr, "
                 "adapt_steps, curriculum: {start, full_at}, ...); unset ones keep defaults."),
]  # fmt: skip


@personalize_app.command("meta-train")
def personalize_meta_train(
    data: DataFolders,
    out: Annotated[Path, typer.Option("--out", help="Run folder (resumed if it exists).")],
    backbone: Annotated[
        str, typer.Option(help="A registry preset (made one-lead).")
    ] = "net1d-tiny",
    seed: SeedOption = 0,
    config: MAMLConfigOption = None,
    first_order: Annotated[
        bool | None,
        typer.Option(
            "--first-order/--second-order",
            help="First-order MAML (no second derivatives), or second-order; unset: the "
            "config's first_order (default second-order).",
        ),
    ] = None,
    curriculum: Annotated[bool, typer.Option(help="Easy subjects first.")] = True,
    as_json: JsonFlag = False,
) -> None:
    """Meta-train an initialisation on the training subjects of --data (subjects with VA split
    by --seed into meta-train / meta-val / test; the test subjects are recorded, never seen)."""
    from ecgfoundry import personalize as P

    settings = P.MAMLConfig.from_yaml(config, source=f"--config {config}")
    subjects, problems = P.load_subjects(data)
    parts = P.split_subjects(subjects, seed)
    by_name = {s.name: s for s in subjects}
    if first_order is not None:
        settings = dataclasses.replace(settings, first_order=first_order)
    if not curriculum:
        settings = dataclasses.replace(settings, curriculum=None)
    P.meta_train(P.backbone(backbone, seed=seed), [by_name[n] for n in parts["meta-train"]],
                 [by_name[n] for n in parts["meta-val"]], settings, out, seed=seed,
                 progress_bar=not as_json)  # fmt: skip
    summary = {"model": str(out / "model"), "subjects": parts, "records_left_out": problems}
    (out / "subjects.json").write_text(json.dumps(summary, indent=1))
    if as_json:
        _print_json(summary)
    else:
        typer.echo(f"{out / 'model'}: meta-trained on {len(parts['meta-train'])} subjects; "
                   f"test subjects (held out): {', '.join(parts['test'])}")  # fmt: skip


@personalize_app.command("adapt")
def personalize_adapt(
    model: Annotated[
        str,
        typer.Argument(
            help="A meta-trained model: RUN/model of `personalize meta-train` (any "
            "model folder or hf-hub:ORG/REPO with one input lead and one output)."
        ),
    ],
    data: Annotated[Path, typer.Option("--data", help="The WFDB folder holding the person.")],
    subject: Annotated[str, typer.Option(help="The person: a record name (e.g. 425).")],
    out: Annotated[Path, typer.Option("--out", help="Folder for the person's model.")],
    shots: Annotated[int, typer.Option(help="Support windows per class: the earliest.")] = 10,
    pre_finetune: Annotated[bool, typer.Option(help="MetaVA's pre-fine-tuning first.")] = True,
    config: MAMLConfigOption = None,
    as_json: JsonFlag = False,
) -> None:
    """Adapt a meta-trained model to one person from their earliest labelled windows (steps and
    rates from --config: adapt_steps, inner_lr, pre_finetune_steps, pre_finetune_lr); writes
    the person's model and support.json (its windows and the normalisation to apply)."""
    from ecgfoundry import personalize as P
    from ecgfoundry.personalize.maml import personalise_split

    P.check_shots([shots], "--shots")
    settings = P.MAMLConfig.from_yaml(config, source=f"--config {config}")
    initial = P.adaptable_model(model)
    spec = initial.spec
    subjects, _ = P.load_subjects([data], seconds=spec.seconds, fs=spec.fs)
    found = [s for s in subjects if s.name.split("/", 1)[1] == subject or s.name == subject]
    if not found:
        names = ", ".join(s.name.split("/", 1)[1] for s in subjects)
        raise UsageError(f"--subject {subject}: not in {data} (subjects: {names})")
    person = found[0]
    if note := P.training_note(model, person.name):
        typer.echo(f"note: {note}", err=True)
    split = P.split_subject(person, shots, "leak-free")
    mine = personalise_split(initial, person, split, settings, pre_finetune)
    support = P.save_person(mine, person, split, out, pre_finetune=pre_finetune)
    if as_json:
        _print_json(support | {"model": str(out)})
    else:
        typer.echo(f"{out}: {person.name} from {2 * shots} windows; inputs z-scored with mean "
                   f"{split.mean:.4g} mV, sd {split.sd:.4g} mV (support.json)")  # fmt: skip


@personalize_app.command("evaluate")
def personalize_evaluate(
    data: DataFolders,
    runs: Annotated[Path, typer.Option("--runs", help="Folder of the trainings (resumable).")],
    out: Annotated[Path, typer.Option("--out", help="Results .json.")],
    backbone: Annotated[
        str, typer.Option(help="A registry preset (made one-lead).")
    ] = "net1d-tiny",
    seed: SeedOption = 0,
    shots: Annotated[
        str, typer.Option(help="Support windows per class, comma-separated.")
    ] = "1,5,10",
    config: MAMLConfigOption = None,
    foundation: Annotated[
        str,
        typer.Option(
            help="A pretrained model post-trained on each support set as one more "
            "baseline (its steps chosen on the meta-validation subjects); "
            "'none' leaves it out."
        ),
    ] = "ecgfoundry-cpc",
    as_json: JsonFlag = False,
) -> None:
    """The whole protocol: every method (global, fine-tuned, scratch, MAML variants, a
    post-trained foundation model) on the held-out subjects, leak-free and MetaVA's, pooled
    and per subject."""
    from ecgfoundry import personalize as P
    from ecgfoundry.atomic import atomic_write_text

    counts = P.parse_shots(shots, "--shots")
    settings = P.MAMLConfig.from_yaml(config, source=f"--config {config}")
    fm = None if foundation == "none" else P.FoundationConfig(model=foundation)
    result = P.run_protocol(data, runs, backbone_name=backbone, seed=seed, shots=counts,
                            config=settings, foundation=fm,
                            log=lambda line: typer.echo(line, err=True))  # fmt: skip
    out.parent.mkdir(parents=True, exist_ok=True)
    atomic_write_text(out, json.dumps(result, indent=1))
    if as_json:
        _print_json(result["summary"])
    else:
        typer.echo(P.summary_markdown(result["summary"]))
        typer.echo(f"{out}; skipped: {len(result['skipped'])} subject/shot cases (listed there)")


def _one_line_summaries(*apps: typer.Typer) -> None:
    """Each command's summary in its group's list: its docstring's first paragraph as one line
    (typer keeps the source's line breaks there, so the list came out ragged)."""
    for group in apps:
        for info in group.registered_commands:
            if info.short_help is None and info.callback is not None:
                first = inspect.cleandoc(info.callback.__doc__ or "").split("\n\n")[0]
                info.short_help = " ".join(first.split())


_one_line_summaries(app, data_app, models_app, benchmark_app, personalize_app)


# click's usage-error classes as typer raises them (newer typer vendors its own copy of click)
_ClickUsageError, _ClickException = typer.BadParameter.__mro__[1:3]


def main() -> None:
    """Console-script entry: bad input, ours or a usage error typer finds, gives one line
    ``error: ...`` and status 2 instead of a traceback or a box. A process of a multi-process
    run (torchrun) ends through ``distributed.exit_process``."""
    code = _run()
    if "ecgfoundry.engine.distributed" in sys.modules:  # the command trained or evaluated
        from ecgfoundry.engine.distributed import exit_process

        exit_process(code)
    sys.exit(code)


def _run() -> int:
    """The command's exit status, after printing any error as one line."""
    try:
        code = app(prog_name="ecgfoundry", standalone_mode=False)
    except ReportedError as error:
        typer.echo(f"error: {error}", err=True)
        return 2
    except _ClickUsageError as error:
        if type(error).__name__ == "NoArgsIsHelpError":  # a bare command group: its help
            if error.format_message().strip():  # rich has printed it already
                error.show()
        else:
            message = " ".join(error.format_message().split()).rstrip(".")
            see = f" (see `{error.ctx.command_path} --help`)" if error.ctx else ""
            typer.echo(f"error: {message}{see}", err=True)
        return error.exit_code
    except _ClickException as error:
        typer.echo(f"error: {' '.join(error.format_message().split())}", err=True)
        return error.exit_code
    except typer.Abort:
        typer.echo("aborted", err=True)
        return 1
    return code if isinstance(code, int) and not isinstance(code, bool) else 0
