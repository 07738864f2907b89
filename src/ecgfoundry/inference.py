"""Embed and predict on people's own ECG files, preprocessed as the model's input spec says.

Each record goes through :func:`ecgfoundry.data.transforms.model_windows`, the path training
and evaluation use: the model's pipeline, zero-padding if shorter than one input (listed as a
repair), then windows of the input length at half-window stride (the last flush with the end).
A record's embedding is the mean of its windows' embeddings and its prediction an aggregate of
their probabilities (``max`` by default, as evaluation does); :func:`predict_windows` keeps
every window's (a Holter over time).

Array outputs (``.npy``) carry their row order beside them: ``NAME.ids.txt``, one record id per
line.
"""

from __future__ import annotations

import sys
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch

from ecgfoundry.data.readers import find_records, load_npy, read_numpy, read_record
from ecgfoundry.data.record import ECGInputError, Record, canonical_leads, describe_repair
from ecgfoundry.data.transforms import (
    MissingLeads,
    MissingLeadsError,
    input_windows,
    model_input,
    window_starts,
)
from ecgfoundry.errors import UsageError, shortened
from ecgfoundry.evaluate.metrics import DEFAULT_AGGREGATE, Aggregate, aggregate_windows
from ecgfoundry.models.base import ECGModel
from ecgfoundry.spec import STANDARD_LEADS, InputSpec


@dataclass
class Inputs:
    """Model-ready windows [W, leads, samples] and, per window, the record it came from and
    where in it the window starts."""

    windows: np.ndarray
    owner: np.ndarray  # int [W]: index into ``ids``
    ids: list[str]
    starts: np.ndarray  # float [W]: seconds from the record's start
    seconds: float  # the length of every window
    repairs: dict[str, list[str]] = field(default_factory=dict)  # record id: repairs in words


NO_RECORDS = ("no ECG records in this folder (WFDB/CinC .hea records, .edf/.bdf/.xml/.scp/.dcm "
              "files, or .npy/.csv arrays with --fs)")  # fmt: skip


def load_inputs(
    source: str | Path | Sequence[str | Path],
    *,
    fs: float | None = None,
    leads: Sequence[str] | None = None,
    preprocess: bool = True,
    units: str = "mV",
) -> list[Record]:
    """Records from a record file, a folder of records, an ``.npy`` [N, leads, samples] (needs
    ``fs``; ``leads`` default to the standard 12 when there are 12), or a list of those.

    ``units``: what the values of ``.npy``/``.csv`` arrays are in (``mV``, ``uV`` or ``V``;
    other formats state their own). An array read as millivolts whose leads span more than
    any ECG does gets a note on stderr suggesting ``--units uV``.
    ``preprocess=False``: an array's leads need no names (it is the model input as it is).
    """
    options = {"fs": fs, "leads": leads, "preprocess": preprocess, "units": units}
    if isinstance(source, list | tuple):
        return [r for item in source for r in load_inputs(item, **options)]
    path = Path(source)
    if path.is_dir():
        found = find_records(path)
        if fs is None:  # .npy/.csv need a sampling rate: read the self-describing records only
            arrays = [p for p in found if p.suffix.lower() in (".npy", ".csv")]
            if arrays:
                names = ", ".join(shortened([p.name for p in arrays], 5))
                print(f"note: skipped {len(arrays)} .npy/.csv file(s) in {path} ({names}): if "
                      "they are ECGs, pass their sampling rate with --fs",
                      file=sys.stderr)  # fmt: skip
            found = [p for p in found if p not in arrays]
        if not found:
            raise ECGInputError(path, NO_RECORDS)
        return _readable(found, **options)
    records, note = read_file(path, **options)
    print_notes([note] if note else [])
    return records


# Peak-to-peak amplitude (median over leads) above which values read as millivolts are
# surely not: a QRS complex spans about 0.5-5 mV; microvolts put a lead at hundreds.
MAX_PLAUSIBLE_MV = 20.0
NOTES_SHOWN = 5  # a folder's per-file notes printed; the rest are counted


def existing_path(path: Path) -> Path:
    """``path``, or, for a WFDB record named without its suffix as WFDB names records
    (``records100/00000/00001_lr``), its ``.hea``; ECGInputError when neither exists."""
    if path.exists():
        return path
    header = path.with_name(path.name + ".hea")
    if path.name and header.is_file():
        return header
    raise ECGInputError(path, "no such file or folder")


def read_file(
    path: Path,
    *,
    fs: float | None = None,
    leads: Sequence[str] | None = None,
    preprocess: bool = True,
    units: str = "mV",
) -> tuple[list[Record], str | None]:
    """The records of one file (as :func:`load_inputs` reads them), and a note for the user
    naming it (or None)."""
    path = existing_path(path)
    if path.suffix.lower() in (".npy", ".csv"):
        records = _read_array_file(path, fs, leads, preprocess, units)
        spans = [np.median(np.ptp(r.signal, axis=1)) for r in records if r.signal.size]
        span = float(np.median(spans)) if spans and units == "mV" and preprocess else 0.0
        if span > MAX_PLAUSIBLE_MV:
            return records, (f"{path}: read as millivolts, its leads span {span:.0f} (median "
                             "peak to peak), more than an ECG does: if the values are "
                             "microvolts, pass --units uV")  # fmt: skip
        return records, None
    record = read_record(path, fs=fs, leads=list(leads) if leads else None)
    if leads and record.leads != canonical_leads(list(leads)):
        return [record], (f"{path} names its own leads ({', '.join(record.leads)}): --leads, "
                          "for files that name none, was not used")  # fmt: skip
    return [record], None


def _read_array_file(
    path: Path, fs: float | None, leads: Sequence[str] | None, preprocess: bool, units: str
) -> list[Record]:
    """The records of one ``.npy`` or ``.csv`` file."""
    if path.suffix.lower() == ".csv":
        return [read_record(path, fs=fs, leads=list(leads) if leads else None, units=units)]
    if fs is None:
        raise ECGInputError(path, ".npy arrays carry no sampling rate: pass fs (--fs)")
    if leads is not None:
        return read_numpy(path, fs, list(leads), units=units)
    shape = load_npy(path, mmap_mode="r").shape
    if len(shape) not in (2, 3) or 0 in shape:
        raise ECGInputError(path, f"an array of shape {shape}: expected [leads, samples] "
                            "or [records, leads, samples] with none of them 0")  # fmt: skip
    n_leads = shape[-2]
    if n_leads > shape[-1]:
        raise ECGInputError(path, f"an array of shape {shape} has more leads ({n_leads}) "
                            f"than samples ({shape[-1]}): store it as [records, leads, "
                            "samples] (transpose it)")  # fmt: skip
    if n_leads == len(STANDARD_LEADS):
        return read_numpy(path, fs, STANDARD_LEADS, units=units)
    if preprocess:
        raise ECGInputError(path, f"{n_leads} leads: pass their names (--leads)")
    names = [f"lead{i + 1}" for i in range(n_leads)]
    return read_numpy(path, fs, names, allow_unknown_leads=True, units=units)


def _check_model_input(record: Record, spec: InputSpec) -> None:
    """Refuse a record that is not already the model's input (``preprocess=False``)."""
    leads, samples = record.signal.shape
    wanted = f"the model takes {len(spec.leads)} leads x {spec.samples} samples at {spec.fs:g} Hz"
    if record.fs != spec.fs or leads != len(spec.leads) or samples != spec.samples:
        raise ECGInputError(record.source, f"{leads} leads x {samples} samples at "
                            f"{record.fs:g} Hz, but {wanted}: leave preprocessing on (drop "
                            "--no-preprocess) to resample, map leads and cut windows")  # fmt: skip


def _readable(paths: list[Path], **options: Any) -> list[Record]:
    """The records of a folder's files; an unreadable one is left out with a note naming it
    and the problem (all unreadable: the first problem is raised). Other notes about the
    files: the first :data:`NOTES_SHOWN`, then how many more."""
    records, problems, notes = [], [], []
    for path in paths:
        try:
            found, note = read_file(path, **options)
        except ECGInputError as error:
            problems.append(error)
            continue
        records.extend(found)
        if note:
            notes.append(note)
    if problems and not records:
        raise problems[0]
    for error in problems:
        print(f"note: left out {error}", file=sys.stderr)
    print_notes(notes)
    return records


def print_notes(notes: Sequence[str]) -> None:
    """Notes about files on stderr: the first :data:`NOTES_SHOWN`, then how many more."""
    for note in shortened(notes, NOTES_SHOWN, "and {} more notes about other files"):
        print(f"note: {note}", file=sys.stderr)


def prepare(
    model: ECGModel,
    records: Sequence[Record],
    *,
    preprocess: bool = True,
    missing_leads: MissingLeads = "raise",
    skip_unusable: bool = False,
) -> Inputs:
    """Cut records into model inputs with ``model_windows(record, model.spec,
    missing_leads=...)`` (``"zero"`` fills leads the model needs and a record lacks);
    ``preprocess=False`` takes each record's signal as one model input, as it is: it must
    already have the model's sampling rate, number of leads and length (else refused).

    A record the model cannot take (a lead it lacks, a wrong shape) is refused; with
    ``skip_unusable`` (the CLI, on a folder) it is left out with a note on stderr naming it
    and why, unless none can be taken."""
    if not preprocess and missing_leads != "raise":
        raise UsageError("missing leads are filled while preprocessing: drop --no-preprocess "
                         "(preprocess=False) or --missing-leads (missing_leads)")  # fmt: skip
    spec = model.spec
    windows, owner, ids, starts, repairs, refused = [], [], [], [], {}, []
    for i, record in enumerate(records):
        record_id = record.source or f"record-{i}"
        try:
            if preprocess:
                cut, record = record_windows(record, spec, missing_leads)
            else:
                _check_model_input(record, spec)
                cut = record.signal[None]
        except ECGInputError as error:
            if not skip_unusable:
                raise
            refused.append((record_id, error))
            continue
        starts.append(window_starts(record.n_samples, spec.samples) / spec.fs
                      if preprocess else np.zeros(1))  # fmt: skip
        done = [describe_repair(r) for r in record.metadata.get("repairs", [])]
        if done:
            repairs[record_id] = done
        windows.append(cut)
        owner.extend([len(ids)] * len(cut))
        ids.append(record_id)
    if refused and not windows:
        raise refused[0][1]
    for record_id, error in refused:
        print(f"note: left out {record_id}: {error.problem}", file=sys.stderr)
    if not windows:
        raise UsageError("no ECG records to run on")
    shapes = {w.shape[1:] for w in windows}
    if len(shapes) > 1:
        raise ECGInputError(None, f"inputs of different shapes {sorted(shapes)}: preprocess them")
    stacked = windows[0] if len(windows) == 1 else np.concatenate(windows)  # a Holter: no copy
    return Inputs(stacked.astype(np.float32, copy=False), np.asarray(owner), ids,
                  np.concatenate(starts), spec.seconds, repairs)  # fmt: skip


def prepared_input(
    record: Record, spec: InputSpec, missing_leads: MissingLeads = "raise"
) -> Record:
    """``model_input``, whose refusal of missing leads names the option that fills them."""
    try:
        return model_input(record, spec, missing_leads=missing_leads)
    except MissingLeadsError as error:
        if missing_leads != "raise" or not error.fillable:
            raise
        raise MissingLeadsError(
            error.source,
            f"{error.problem} (to run anyway, fill them with "
            "zeros: --missing-leads zero, missing_leads='zero')",
        ) from None


def record_windows(
    record: Record, spec: InputSpec, missing_leads: MissingLeads = "raise"
) -> tuple[np.ndarray, Record]:
    """``model_windows`` with :func:`prepared_input`'s refusal: (windows [W, leads, samples],
    the prepared record)."""
    prepared = prepared_input(record, spec, missing_leads)
    return input_windows(prepared, spec), prepared


@torch.no_grad()
def _run(model: ECGModel, inputs: Inputs, fn: str, batch_size: int) -> np.ndarray:
    model.eval()
    step = getattr(model, fn)
    out = [
        step(torch.from_numpy(inputs.windows[i : i + batch_size])).float().numpy()
        for i in range(0, len(inputs.windows), batch_size)
    ]
    return np.concatenate(out)


def _per_record(values: np.ndarray, inputs: Inputs, how: Aggregate) -> np.ndarray:
    return aggregate_windows(values, inputs.owner, len(inputs.ids), how)


def embed(model: ECGModel, inputs: Inputs, *, batch_size: int = 32) -> np.ndarray:
    """Embeddings [records, D]: the mean of each record's window embeddings."""
    return _per_record(_run(model, inputs, "forward_features", batch_size), inputs, "mean")


def predict_windows(model: ECGModel, inputs: Inputs, *, batch_size: int = 32) -> np.ndarray:
    """Per-label probabilities of every window [W, classes] (sigmoid: labels are not
    exclusive); ``inputs.owner`` and ``inputs.starts`` say where each window lies."""
    require_head(model)
    logits = _run(model, inputs, "forward", batch_size)
    return 1.0 / (1.0 + np.exp(-logits))


def predict_proba(
    model: ECGModel,
    inputs: Inputs,
    *,
    batch_size: int = 32,
    aggregate: Aggregate = DEFAULT_AGGREGATE,
) -> np.ndarray:
    """Per-label probabilities [records, classes]: each record's windows aggregated."""
    return _per_record(predict_windows(model, inputs, batch_size=batch_size), inputs, aggregate)


def require_head(model: ECGModel, name: str | Path = "this model") -> None:
    """Refuse to predict with a model without a classification head (a pretrained backbone)."""
    if not model.num_classes:
        raise UsageError(f"{name} has no classification head (a pretrained backbone): adapt it "
                         "to your labels first (ecgfoundry finetune), or write its embeddings "
                         "with embed")  # fmt: skip


def label_names(model: ECGModel) -> list[str]:
    return list(model.config.labels or [f"class_{i}" for i in range(model.num_classes)])


THRESHOLDS_FILE = "thresholds.json"  # beside an adapted model: its validation-tuned thresholds


def save_thresholds(folder: str | Path, labels: Sequence[str], thresholds: np.ndarray, *,
                    tuned_on: str, aggregate: str,
                    untuned: Sequence[str] = ()) -> Path:  # fmt: skip
    """Write a model folder's decision thresholds: per label, the probability from which the
    label is named, chosen to maximise F1 on ``tuned_on`` (validation) records whose windows
    were aggregated by ``aggregate``; ``untuned``: labels without validation positives (0.5)."""
    import json

    from ecgfoundry.atomic import atomic_write_text

    path = Path(folder) / THRESHOLDS_FILE
    rows = dict(zip(labels, map(float, thresholds), strict=True))
    atomic_write_text(path, json.dumps({"thresholds": rows, "tuned_on": tuned_on,
                                        "rule": "per label, maximum F1 on validation",
                                        "aggregate": aggregate, "untuned": list(untuned)},
                                       indent=1))  # fmt: skip
    return path


def tuned_thresholds(model: ECGModel) -> dict[str, Any] | None:
    """The thresholds saved beside the model's folder by ``finetune`` (None for a model
    without: a registry preset, a converted checkpoint), checked against its labels."""
    import json

    from ecgfoundry.models.io import CheckpointError

    path = model.origin / THRESHOLDS_FILE if model.origin is not None else None
    if path is None or not path.is_file():
        return None
    try:
        saved = json.loads(path.read_text())
        values = [float(v) for v in saved["thresholds"].values()]
        saved["aggregate"], saved["tuned_on"] = str(saved["aggregate"]), str(saved["tuned_on"])
    except (ValueError, KeyError, TypeError, AttributeError) as error:
        raise CheckpointError(path, f"not a thresholds file ({type(error).__name__}: "
                              f"{error}); remove it, or rerun finetune") from None  # fmt: skip
    if not all(0 <= v <= 1 for v in values):
        raise CheckpointError(path, f"thresholds must be probabilities, got {values}")
    if list(saved["thresholds"]) != label_names(model):
        raise CheckpointError(path, f"thresholds for {list(saved['thresholds'])}, but the model "
                              f"predicts {label_names(model)}")  # fmt: skip
    return {"untuned": [], **saved}


def decisions(probabilities: np.ndarray, labels: Sequence[str],
              thresholds: Sequence[float] | float) -> list[list[str]]:  # fmt: skip
    """Per row, the labels whose probability reaches their threshold (one per label, or one
    for all)."""
    cut = np.broadcast_to(np.asarray(thresholds, dtype=np.float64), (len(labels),))
    named = np.asarray(probabilities) >= cut[None, :]
    return [[label for label, on in zip(labels, row, strict=True) if on] for row in named]


def ids_path(path: str | Path) -> Path:
    """Where the record ids of an ``.npy`` output go: ``NAME.npy`` -> ``NAME.ids.txt``."""
    return Path(path).with_suffix(".ids.txt")


def _save_array(path: Path, values: np.ndarray, ids: list[str]) -> None:
    np.save(path, values)
    ids_path(path).write_text("".join(f"{rid}\n" for rid in ids))


EMBEDDING_FORMATS = (".npy",)
PREDICTION_FORMATS = (".npy", ".csv", ".json")


def check_output(path: str | Path, formats: Sequence[str]) -> Path:
    """``path`` as an output file: one of ``formats``, in a folder that exists or can be made
    (checked before any work is done)."""
    path = Path(path)
    if path.suffix.lower() not in formats:
        raise UsageError(f"--out {path}: must end in {' or '.join(formats)}")
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
    except OSError as error:
        raise UsageError(f"--out {path}: cannot write there ({error.strerror})") from error
    return path


def write_embeddings(path: str | Path, embeddings: np.ndarray, ids: list[str]) -> Path:
    """Save ``.npy`` [records, D] with the record ids in ``NAME.ids.txt``."""
    path = check_output(path, EMBEDDING_FORMATS)
    _save_array(path, embeddings, ids)
    return path


def _write_table(path: Path, where: dict[str, Any], probabilities: np.ndarray,
                 labels: list[str], named: list[list[str]] | None) -> None:  # fmt: skip
    """Rows as ``.csv`` (the ``where`` columns, one column per label, ``predicted_labels``
    ``;``-joined) or ``.json`` (one object per row: ``where``, ``probabilities``,
    ``predicted_labels``)."""
    import json

    import pandas as pd

    frame = pd.DataFrame(where)
    if path.suffix.lower() == ".csv":
        scores = pd.DataFrame(probabilities, columns=labels)
        if named is not None:
            scores["predicted_labels"] = [";".join(row) for row in named]
        pd.concat([frame, scores], axis=1).to_csv(path, index=False, float_format="%.6f")
        return
    rows = [{**row, "probabilities": dict(zip(labels, map(float, p), strict=True))}
            for row, p in zip(frame.to_dict("records"), probabilities, strict=True)]  # fmt: skip
    for row, chosen in zip(rows, named or [], strict=False):
        row["predicted_labels"] = chosen
    path.write_text(json.dumps(rows, indent=1))


def write_predictions(path: str | Path, probabilities: np.ndarray, ids: list[str],
                      labels: list[str], named: list[list[str]] | None = None) -> Path:  # fmt: skip
    """Save as ``.npy`` (array, ids in ``NAME.ids.txt``), ``.csv`` (record + one column per
    label) or ``.json``; with ``named`` (:func:`decisions`), ``.csv``/``.json`` also list each
    record's ``predicted_labels``."""
    path = check_output(path, PREDICTION_FORMATS)
    if path.suffix.lower() == ".npy":
        _save_array(path, probabilities, ids)
    else:
        _write_table(path, {"record": ids}, probabilities, labels, named)
    return path


WINDOW_PREDICTION_FORMATS = (".csv", ".json")


def write_window_predictions(path: str | Path, probabilities: np.ndarray, inputs: Inputs,
                             labels: list[str],
                             named: list[list[str]] | None = None) -> Path:  # fmt: skip
    """Save one row per window [W, classes] as ``.csv`` (record, start_s, end_s, one column per
    label) or ``.json``: where in each record the model saw what (windows overlap by half);
    with ``named``, each window's ``predicted_labels`` too."""
    path = check_output(path, WINDOW_PREDICTION_FORMATS)
    where = {"record": [inputs.ids[i] for i in inputs.owner], "start_s": inputs.starts,
             "end_s": inputs.starts + inputs.seconds}  # fmt: skip
    _write_table(path, where, probabilities, labels, named)
    return path
