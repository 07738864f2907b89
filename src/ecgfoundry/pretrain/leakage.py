"""Which records a model has seen, and the guard that keeps them out of its evaluation.

Every pretraining or training run writes ``manifest.json`` beside its model
(``OUT/model/manifest.json``): one entry per record it trained on, ``{"id", "patient"}``, sorted
by id, and a hash of that list. Record ids name the dataset and the record:

- ``ptbxl:<ecg_id>`` (PTB-XL), ``cinc:<record>`` (a challenge folder; the path below the root
  without suffix, as :func:`ecgfoundry.adapt.cinc_task` names it), ``mitdb:100``, ``vfdb:418``,
  ``<name>:<record>`` for any other WFDB folder;
- files without a stable name (a user's folder, a table task's records):
  ``<name>:<path below the root>#<content hash>``. Two such ids with the same content hash are
  the same record wherever the file lies, so a copy of a training record is caught too.

Patients are namespaced the same way (``ptbxl:15709``, ``mitdb:201``) or ``null`` when the
source does not say. :func:`check_leakage` compares evaluation ids against a model's manifest
and refuses overlap unless allowed. The PhysioNet/CinC challenges' copies of PTB-XL records
(``HR00599`` is PTB-XL's ecg_id 599, under any dataset name or folder) count as those PTB-XL
records (:func:`same_records`), so a model pretrained on one is caught evaluating on the other;
so do PTB-XL's own files met outside a ``ptbxl`` source (``00599_lr`` in a WFDB folder, a
table task's ``records100/00000/00599_lr.hea``).
"""

from __future__ import annotations

import hashlib
import json
import re
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any

from ecgfoundry.atomic import atomic_write_text
from ecgfoundry.data.record import ECGInputError
from ecgfoundry.errors import ReportedError

MANIFEST = "manifest.json"
MANIFEST_FORMAT = 1
EXAMPLES = 10  # overlapping ids shown in a check's record and in the error


class LeakageError(ValueError, ReportedError):
    """Evaluation records overlap the records a model was (pre)trained on."""

    def __init__(self, model: str | Path, record: dict[str, Any]):
        self.record = record
        shown = ", ".join(record["overlap_examples"])
        more = " ..." if record["overlap"] > len(record["overlap_examples"]) else ""
        super().__init__(
            f"{model}: {record['overlap']} of the {record['checked']} evaluation records are "
            f"in the model's manifest ({MANIFEST}, {record['manifest']}): {shown}{more}; "
            "evaluating on records the model was trained on overstates its performance. "
            "Evaluate on other records, or pass allow_overlap=True (CLI: --allow-overlap) to "
            "run anyway (the overlap is recorded)"
        )


def record_id(dataset: str, record: str | int) -> str:
    """The stable id of a named record: ``dataset:record``."""
    return f"{dataset}:{record}"


def record_files(path: str | Path) -> list[Path]:
    """The existing files a record is read from: a WFDB/challenge record's ``.hea``, ``.dat``
    and ``.mat`` (given any of them or the path without suffix), else the file itself."""
    path = Path(path)
    if path.suffix.lower() not in ("", ".hea", ".dat", ".mat"):
        return [path] if path.is_file() else []
    base = path.with_suffix("") if path.suffix else path
    return [f for f in (base.with_suffix(s) for s in (".hea", ".dat", ".mat")) if f.is_file()]


def content_hash(path: str | Path) -> str:
    """A hash of a record's file contents (not their names): 16 hex digits."""
    digest = hashlib.sha256()
    files = record_files(path)
    if not files:
        raise ECGInputError(path, "record file not found")
    for file in files:
        digest.update(f"{file.suffix.lower()}\0{file.stat().st_size}\n".encode())
        with file.open("rb") as handle:
            for chunk in iter(lambda: handle.read(1 << 20), b""):
                digest.update(chunk)
    return digest.hexdigest()[:16]


def file_record_id(dataset: str, root: str | Path, path: str | Path) -> str:
    """The id of a record file without a stable name: ``dataset:<path below root>#<hash>``."""
    path, root = Path(path), Path(root)
    relative = path.relative_to(root) if path.is_relative_to(root) else path
    return f"{dataset}:{relative.as_posix()}#{content_hash(path)}"


def manifest_hash(records: Sequence[Mapping[str, Any]]) -> str:
    """The hash of a sorted record list (ids and patients)."""
    text = json.dumps([[r["id"], r["patient"]] for r in records], separators=(",", ":"))
    return f"sha256:{hashlib.sha256(text.encode()).hexdigest()[:16]}"


def _sorted_records(records: Iterable[Mapping[str, Any]], source: str | Path) -> list[dict]:
    """One entry per id, sorted; the same id with two different patients is refused."""
    by_id: dict[str, str | None] = {}
    for entry in records:
        rid, patient = str(entry["id"]), entry.get("patient")
        patient = None if patient is None else str(patient)
        if by_id.get(rid, patient) != patient:
            raise ECGInputError(source, f"record {rid} listed with patients {by_id[rid]} and "
                                f"{patient}")  # fmt: skip
        by_id[rid] = patient
    return [{"id": rid, "patient": by_id[rid]} for rid in sorted(by_id)]


def write_manifest(folder: str | Path, records: Iterable[Mapping[str, Any]]) -> dict[str, Any]:
    """Write ``folder/manifest.json``: the records (``{"id", "patient"}`` mappings; repeats
    merged) sorted by id, their count per dataset and their hash. Returns what was written."""
    path = Path(folder) / MANIFEST
    entries = _sorted_records(records, path)
    datasets: dict[str, int] = {}
    for entry in entries:
        name = entry["id"].split(":", 1)[0]
        datasets[name] = datasets.get(name, 0) + 1
    manifest = {"format": MANIFEST_FORMAT, "hash": manifest_hash(entries), "count": len(entries),
                "datasets": datasets, "records": entries}  # fmt: skip
    atomic_write_text(path, json.dumps(manifest, indent=0))
    return manifest


def read_manifest(folder: str | Path) -> dict[str, Any] | None:
    """The manifest of a model folder (or a ``manifest.json`` path); None when there is none.
    A manifest that is unreadable or whose hash does not match its records is refused."""
    path = Path(folder)
    path = path if path.name == MANIFEST and not path.is_dir() else path / MANIFEST
    if not path.is_file():
        return None
    try:
        manifest = json.loads(path.read_text())
        records = manifest["records"]
        ok = manifest.get("format") == MANIFEST_FORMAT and all("id" in r for r in records)
    except (OSError, ValueError, KeyError, TypeError) as error:
        raise ECGInputError(path, f"unreadable manifest ({error})") from error
    if not ok:
        raise ECGInputError(path, f"not an ecgfoundry manifest (format {MANIFEST_FORMAT})")
    if manifest.get("hash") != manifest_hash(records):
        raise ECGInputError(path, "its hash does not match its records (edited by hand?)")
    return manifest


# a PTB-XL record under its own file name (00599_lr, 00599_hr) or the CinC challenges' (HR00599)
PTBXL_NAME = re.compile(r"^(?:(\d{5})_[lh]r|HR(\d{5}))$")


def ptbxl_ecg_id(name: str) -> int | None:
    """The PTB-XL ecg_id of a record named as PTB-XL names its files (``00599_lr``,
    ``00599_hr``) or as the CinC challenges name their copies (``HR00599``), else None."""
    match = PTBXL_NAME.match(name)
    return int(match.group(1) or match.group(2)) if match else None


def same_records(record: str) -> set[str]:
    """A record id and the ids of the same recording elsewhere: a PTB-XL record met outside
    PTB-XL (``cinc:WFDB_PTBXL/HR00599``, ``data:HR00599.mat#...``,
    ``records:00599_lr.hea#...``) is also ``ptbxl:599``."""
    name = record.split(":", 1)[-1].split("#", 1)[0].rsplit("/", 1)[-1]
    ecg_id = ptbxl_ecg_id(name.split(".", 1)[0])  # without a file suffix
    return {record} if ecg_id is None else {record, record_id("ptbxl", ecg_id)}


def _content(record: str) -> str | None:
    return record.rsplit("#", 1)[1] if "#" in record else None


def check_leakage(
    model: str | Path | None, evaluation_ids: Iterable[str], *, allow: bool = False
) -> dict[str, Any]:
    """Compare evaluation record ids with a model's manifest (``model``: a model folder or a
    ``manifest.json``; None for a model without one, e.g. an object or a registry preset).

    Returns the record of the check: ``status`` ("no manifest", "clean" or "overlap"),
    ``manifest`` (its hash or None), ``checked``, ``overlap`` (None without a manifest),
    ``overlap_examples`` and ``allowed``. Raises :class:`LeakageError` naming the model and the
    overlapping ids when there is overlap and not ``allow``."""
    ids = sorted(set(map(str, evaluation_ids)))
    manifest = read_manifest(model) if model is not None else None
    if manifest is None:
        return {"status": "no manifest", "manifest": None, "checked": len(ids), "overlap": None,
                "overlap_examples": [], "allowed": allow}  # fmt: skip
    seen = {alias for r in manifest["records"] for alias in same_records(r["id"])}
    contents = {c for c in map(_content, seen) if c is not None}
    overlap = [i for i in ids if not same_records(i).isdisjoint(seen) or _content(i) in contents]
    record = {"status": "overlap" if overlap else "clean", "manifest": manifest["hash"],
              "checked": len(ids), "overlap": len(overlap),
              "overlap_examples": overlap[:EXAMPLES], "allowed": allow}  # fmt: skip
    if overlap and not allow:
        raise LeakageError(model, record)
    return record
