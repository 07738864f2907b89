"""The ``ecgfoundry`` command line: each command parses its arguments and calls one function."""

from __future__ import annotations

import json
import sys
from enum import StrEnum
from pathlib import Path
from typing import Annotated, Any

import typer

from ecgfoundry.data.record import ECGInputError

app = typer.Typer(
    no_args_is_help=True, add_completion=False, pretty_exceptions_enable=False, help=__doc__
)
data_app = typer.Typer(no_args_is_help=True, help="Read, summarise, cache and download datasets.")
app.add_typer(data_app, name="data")


class Dataset(StrEnum):
    ptbxl = "ptbxl"
    mitdb = "mitdb"
    vfdb = "vfdb"


def _print_json(value: Any) -> None:
    typer.echo(json.dumps(value, indent=1, default=str))


@app.command()
def demo(
    as_json: Annotated[bool, typer.Option("--json", help="Print JSON instead of a table.")] = False,
) -> None:
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
    _print_json(arrhythmia.summary(dataset.value, root, **options))


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


def main() -> None:
    """Console-script entry: clear one-line errors for bad input instead of tracebacks."""
    from ecgfoundry.data.download import DownloadError

    try:
        app()
    except (ECGInputError, DownloadError) as error:
        typer.echo(f"error: {error}", err=True)
        sys.exit(2)
