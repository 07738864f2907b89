"""Download PhysioNet datasets, verified file by file against the project's ``SHA256SUMS.txt``.

PhysioNet serves every open project at ``https://physionet.org/files/<slug>/<version>/<path>``
and publishes ``SHA256SUMS.txt`` (lines ``<sha256> <relative path>``) at its root. ``download``
fetches that list, selects the files a dataset needs (e.g. only ``records100/`` of PTB-XL) and
fetches each into ``<name>.part`` beside its final place, renaming it there only after its SHA256
matched. So an interrupted run never leaves a half-written file under a final name, and a re-run
skips every file already present with the right hash and finishes the job. A ``.complete``
manifest is written last, when everything selected is verified.

``base_url`` may be ``https://``, ``http://``, ``file://`` or a plain folder: a mirror laid out
like PhysioNet (``<mirror>/<slug>/<version>/...``).

    from ecgfoundry.data.download import download
    download("ptbxl", "data/ptbxl", fs=100, progress="rich")
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import re
import time
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import FIRST_EXCEPTION, ThreadPoolExecutor, wait
from contextlib import AbstractContextManager, contextmanager, nullcontext
from dataclasses import dataclass, field
from datetime import UTC, datetime
from functools import partial
from http.client import HTTPException
from pathlib import Path
from typing import Any, Literal, TypeVar

from ecgfoundry.errors import ReportedError, shortened

log = logging.getLogger(__name__)

PHYSIONET_FILES = "https://physionet.org/files"
CHECKSUMS = "SHA256SUMS.txt"
MARKER = ".complete"
PART_SUFFIX = ".part"
USER_AGENT = "ecgfoundry-download/0.1 (+https://physionet.org)"
_CHUNK = 1 << 20
_MAX_BACKOFF_S = 30.0
_SHA256 = re.compile(r"[0-9a-fA-F]{64}")
T = TypeVar("T")
Status = Literal["downloaded", "skipped"]


@dataclass(frozen=True)
class Dataset:
    """A PhysioNet project and the files fetched from it by default."""

    name: str
    slug: str
    version: str
    title: str
    include: tuple[str, ...]  # the data fetched by default
    by_fs: dict[int, tuple[str, ...]] = field(default_factory=dict)  # added per sampling rate
    default_fs: int | None = None
    always: tuple[str, ...] = ()  # metadata, fetched with any selection

    @property
    def url_path(self) -> str:
        return f"{self.slug}/{self.version}"


DATASETS: dict[str, Dataset] = {
    "ptbxl": Dataset(
        "ptbxl",
        "ptb-xl",
        "1.0.3",
        "PTB-XL, a large publicly available electrocardiography dataset",
        include=(),
        by_fs={100: ("records100/**",), 500: ("records500/**",)},
        default_fs=100,
        always=("ptbxl_database.csv", "scp_statements.csv", "LICENSE.txt"),
    ),
    "mitdb": Dataset("mitdb", "mitdb", "1.0.0", "MIT-BIH Arrhythmia Database", include=("**",)),
    "vfdb": Dataset(
        "vfdb", "vfdb", "1.0.0", "MIT-BIH Malignant Ventricular Ectopy Database", include=("**",)
    ),
    "cinc2020": Dataset(
        "cinc2020",
        "challenge-2020",
        "1.0.2",
        "Classification of 12-lead ECGs: the PhysioNet/Computing in Cardiology Challenge 2020",
        include=("training/**",),
        always=("LICENSE.txt",),
    ),
    "cinc2021": Dataset(
        "cinc2021",
        "challenge-2021",
        "1.0.3",
        "Will Two Do? Varying Dimensions in Electrocardiography: the PhysioNet/Computing in "
        "Cardiology Challenge 2021",
        include=("training/**",),
        always=("LICENSE.txt",),
    ),
    "cudb": Dataset(
        "cudb", "cudb", "1.0.0", "CU Ventricular Tachyarrhythmia Database", include=("**",)
    ),
}


class DownloadError(RuntimeError, ReportedError):
    """A download failed: unreachable URL, HTTP error, hash mismatch or an unsafe checksum list."""


class _Transient(Exception):
    """A failure worth retrying (dropped connection, 5xx, timeout, short or corrupt transfer)."""


class _Permanent(Exception):
    """A failure not worth retrying (HTTP 404/403, missing file in a file:// mirror)."""


@dataclass(frozen=True)
class ProgressEvent:
    """One selected file done: ``status`` is ``"downloaded"`` or ``"skipped"`` (already valid)."""

    path: str
    status: Status
    done: int
    total: int


ProgressCallback = Callable[[ProgressEvent], None]


# --------------------------------------------------------------------------- registry + selection


def get_dataset(name: str) -> Dataset:
    """Look a dataset up by name (``ptbxl``) or PhysioNet slug (``ptb-xl``), case-insensitively."""
    key = name.strip().lower()
    for dataset in DATASETS.values():
        if key in (dataset.name, dataset.slug):
            return dataset
    raise ValueError(f"unknown dataset {name!r}; known: {', '.join(sorted(DATASETS))}")


def default_patterns(dataset: Dataset, fs: int | Sequence[int] | None = None) -> tuple[str, ...]:
    """The include patterns for ``dataset`` at sampling rate(s) ``fs`` (None: its default)."""
    if fs is None:
        rates: list[int] = [] if dataset.default_fs is None else [dataset.default_fs]
    else:
        rates = [fs] if isinstance(fs, int) else list(fs)
    unknown = [rate for rate in rates if rate not in dataset.by_fs]
    if unknown:
        offered = ", ".join(str(rate) for rate in sorted(dataset.by_fs)) or "none (one rate only)"
        raise ValueError(f"{dataset.name}: no {unknown[0]} Hz option; choices: {offered}")
    patterns = [*dataset.always, *dataset.include]
    for rate in rates:
        patterns.extend(dataset.by_fs[rate])
    return tuple(patterns)


def _glob_regex(pattern: str) -> re.Pattern[str]:
    """``**`` matches across folders, ``*`` and ``?`` within one path segment."""
    out = []
    i = 0
    while i < len(pattern):
        if pattern.startswith("**/", i):
            out.append("(?:.*/)?")
            i += 3
        elif pattern.startswith("**", i):
            out.append(".*")
            i += 2
        elif pattern[i] == "*":
            out.append("[^/]*")
            i += 1
        elif pattern[i] == "?":
            out.append("[^/]")
            i += 1
        else:
            out.append(re.escape(pattern[i]))
            i += 1
    return re.compile("".join(out))


def select(paths: Sequence[str], patterns: Sequence[str]) -> list[str]:
    """The paths matching at least one glob pattern, in their original order."""
    regexes = [_glob_regex(p) for p in patterns]
    return [path for path in paths if any(rx.fullmatch(path) for rx in regexes)]


# --------------------------------------------------------------------------- checksum list


def _check_relative(path: str, line_no: int) -> None:
    """Refuse anything that could land outside the destination folder."""
    parts = path.split("/")
    unsafe = (
        not path
        or path.startswith(("/", "\\"))
        or "\\" in path
        or "\x00" in path
        or re.match(r"^[A-Za-z]:", path) is not None
        or any(part in ("", ".", "..") for part in parts)
    )
    if unsafe:
        raise DownloadError(f"{CHECKSUMS} line {line_no}: unsafe path {path!r} refused")


def folders(paths: Sequence[str], depth: int = 2, limit: int = 30) -> str:
    """The distinct folders of ``paths`` down to ``depth`` levels (what ``include`` patterns
    can name), at most ``limit`` of them, as text."""
    found = sorted({"/".join(parts[:level]) for path in paths
                    for parts in [path.split("/")[:-1]] for level in range(1, depth + 1)
                    if len(parts) >= level})  # fmt: skip
    return ", ".join(shortened(found, limit)) or "none"


def parse_sha256sums(text: str) -> dict[str, str]:
    """Parse ``<sha256> <relative path>`` lines into {path: lowercase hex digest}.

    Accepts PhysioNet's single space and ``sha256sum``'s two spaces or `` *``. Raises
    :class:`DownloadError` for malformed lines and for absolute or ``..`` paths.
    """
    sums: dict[str, str] = {}
    for line_no, line in enumerate(text.splitlines(), start=1):
        if not line.strip():
            continue
        digest, _, path = line.partition(" ")
        path = path.lstrip(" ").removeprefix("*").rstrip("\r\n")
        if not _SHA256.fullmatch(digest) or not path:
            raise DownloadError(f"{CHECKSUMS} line {line_no}: malformed {line[:120]!r}")
        _check_relative(path, line_no)
        sums[path] = digest.lower()
    return sums


# --------------------------------------------------------------------------- transfer


def _base(base_url: str | os.PathLike[str]) -> str:
    """A URL as given, or a local mirror folder as a ``file://`` URL."""
    text = os.fspath(base_url)
    return text if "://" in text else Path(text).expanduser().resolve().as_uri()


def _url(base_url: str, dataset: Dataset, path: str) -> str:
    return f"{base_url.rstrip('/')}/{dataset.url_path}/{urllib.parse.quote(path)}"


def _open(url: str, timeout: float) -> Any:  # http.client.HTTPResponse, or addinfourl for file:
    """Open ``url``, classifying failures as :class:`_Transient` or :class:`_Permanent`."""
    request = urllib.request.Request(url, headers={"User-Agent": USER_AGENT})
    try:
        return urllib.request.urlopen(request, timeout=timeout)
    except urllib.error.HTTPError as exc:
        exc.close()
        if exc.code in (408, 425, 429) or exc.code >= 500:
            raise _Transient(f"HTTP {exc.code} {exc.reason}") from exc
        raise _Permanent(f"HTTP {exc.code} {exc.reason}") from exc
    except urllib.error.URLError as exc:
        if isinstance(exc.reason, FileNotFoundError | NotADirectoryError | PermissionError):
            raise _Permanent(f"not found ({exc.reason})") from exc
        raise _Transient(str(exc.reason)) from exc
    except (OSError, HTTPException) as exc:
        raise _Transient(f"{type(exc).__name__}: {exc}") from exc


def _with_retries(label: str, attempt: Callable[[], T], retries: int, backoff: float) -> T:
    """Run ``attempt`` up to ``retries + 1`` times, sleeping ``backoff * 2**n`` s in between.

    Every failure surfaces as :class:`DownloadError` starting with ``label`` (file and URL).
    """
    for n in range(retries + 1):
        try:
            return attempt()
        except _Permanent as exc:
            raise DownloadError(f"{label}: {exc}") from exc
        except _Transient as exc:
            if n == retries:
                raise DownloadError(f"{label}: {exc} (gave up after {n + 1} attempts)") from exc
            delay = min(backoff * 2**n, _MAX_BACKOFF_S)
            log.warning("%s: %s; retrying in %.1f s", label, exc, delay)
            time.sleep(delay)
    raise AssertionError("unreachable")


def _check_length(received: int, content_length: str | None) -> None:
    if content_length is not None and content_length.isdigit() and received != int(content_length):
        raise _Transient(f"connection dropped after {received} of {content_length} bytes")


def _fetch_bytes(url: str, timeout: float) -> bytes:
    """A small file, whole, in memory (used for SHA256SUMS.txt)."""
    try:
        with _open(url, timeout) as response:
            data = response.read()
            _check_length(len(data), response.headers.get("Content-Length"))
    except (OSError, HTTPException) as exc:
        raise _Transient(f"{type(exc).__name__}: {exc}") from exc
    return data


def _fetch_file(url: str, target: Path, sha256: str, timeout: float) -> None:
    """Stream ``url`` into ``<target>.part``; rename it onto ``target`` once size and hash match.

    No fsync: a file lost to a crash after the rename fails its hash on the next run and is
    fetched again.
    """
    part = target.with_name(target.name + PART_SUFFIX)
    target.parent.mkdir(parents=True, exist_ok=True)
    digest = hashlib.sha256()
    received = 0
    try:
        with _open(url, timeout) as response, open(part, "wb") as out:
            while chunk := response.read(_CHUNK):
                digest.update(chunk)
                out.write(chunk)
                received += len(chunk)
            _check_length(received, response.headers.get("Content-Length"))
        if digest.hexdigest() != sha256:
            raise _Transient(f"SHA256 mismatch: expected {sha256}, got {digest.hexdigest()}")
        os.replace(part, target)
    except (OSError, HTTPException) as exc:
        part.unlink(missing_ok=True)
        raise _Transient(f"{type(exc).__name__}: {exc}") from exc
    except BaseException:
        part.unlink(missing_ok=True)
        raise


def sha256_file(path: str | os.PathLike[str]) -> str:
    """Hex SHA256 of a file, read in 1 MiB chunks."""
    digest = hashlib.sha256()
    with open(path, "rb") as stream:
        while chunk := stream.read(_CHUNK):
            digest.update(chunk)
    return digest.hexdigest()


# --------------------------------------------------------------------------- orchestration


@dataclass(frozen=True)
class _Job:
    dataset: Dataset
    dest: Path
    base_url: str
    timeout: float
    retries: int
    backoff: float

    def ensure(self, path: str, sha256: str) -> Status:
        """Make ``dest/path`` a verified copy; skip it when it already is one."""
        target = self.dest.joinpath(*path.split("/"))
        if target.is_file() and sha256_file(target) == sha256:
            target.with_name(target.name + PART_SUFFIX).unlink(missing_ok=True)  # stale partial
            return "skipped"
        url = _url(self.base_url, self.dataset, path)
        fetch = partial(_fetch_file, url, target, sha256, self.timeout)
        _with_retries(f"{path} <- {url}", fetch, self.retries, self.backoff)
        return "downloaded"


def _run_all(
    job: _Job, files: dict[str, str], workers: int, progress: ProgressCallback | None
) -> dict[Status, int]:
    """Ensure every file with a small thread pool; stop at the first failure."""
    counts: dict[Status, int] = {"downloaded": 0, "skipped": 0}
    pool = ThreadPoolExecutor(max_workers=max(1, workers), thread_name_prefix="ecg-download")
    try:
        pending = {pool.submit(job.ensure, path, sha): path for path, sha in files.items()}
        while pending:
            finished, _ = wait(pending, return_when=FIRST_EXCEPTION)
            for future in finished:
                path = pending.pop(future)
                status = future.result()  # re-raises the worker's DownloadError
                counts[status] += 1
                if progress is not None:
                    progress(ProgressEvent(path, status, sum(counts.values()), len(files)))
    finally:
        pool.shutdown(wait=True, cancel_futures=True)  # running files finish (atomically)
    return counts


def _write_atomic(path: Path, data: bytes) -> None:
    part = path.with_name(path.name + PART_SUFFIX)
    part.write_bytes(data)
    os.replace(part, path)


def _fetch(
    dataset: Dataset,
    dest: Path,
    patterns: tuple[str, ...],
    base_url: str,
    *,
    own: tuple[str, ...],
    workers: int,
    retries: int,
    backoff: float,
    timeout: float,
    progress: ProgressCallback | None,
) -> None:
    """The download proper: checksum list, selection, files, then the ``.complete`` manifest.
    ``own``: the caller's patterns, each of which must match a file (else the default
    selection must match something)."""
    dest.mkdir(parents=True, exist_ok=True)
    marker = dest / MARKER
    marker.unlink(missing_ok=True)  # a failed run must not look complete
    sums_url = _url(base_url, dataset, CHECKSUMS)
    fetch_sums = partial(_fetch_bytes, sums_url, timeout)
    raw = _with_retries(f"{CHECKSUMS} <- {sums_url}", fetch_sums, retries, backoff)
    sums = parse_sha256sums(raw.decode("utf-8"))  # refuses unsafe paths before any write
    listed = [path for path in sums if path not in (CHECKSUMS, MARKER)]
    chosen = select(listed, patterns)
    unmatched = [p for p in own if not select(listed, [p])] or ([] if chosen else patterns)
    if unmatched:
        raise DownloadError(f"no file listed in {sums_url} matches {list(unmatched)}; its "
                            f"folders: {folders(listed)}")  # fmt: skip
    _write_atomic(dest / CHECKSUMS, raw)

    job = _Job(dataset, dest, base_url, timeout, retries, backoff)
    counts = _run_all(job, {path: sums[path] for path in chosen}, workers, progress)
    manifest = {
        "dataset": dataset.name,
        "source": f"{base_url.rstrip('/')}/{dataset.url_path}/",
        "include": list(patterns),
        "files": len(chosen),
        **counts,
        "sha256sums_sha256": hashlib.sha256(raw).hexdigest(),
        "completed_at": datetime.now(UTC).isoformat(timespec="seconds"),
    }
    _write_atomic(marker, (json.dumps(manifest, indent=1) + "\n").encode())
    log.info("%s: %s into %s", dataset.name, counts, dest)


@contextmanager
def rich_progress(description: str) -> Iterator[ProgressCallback]:
    """A ``rich`` progress bar (files done / total) usable as a :data:`ProgressCallback`."""
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TimeRemainingColumn

    with Progress(
        "[bold]{task.description}", BarColumn(), MofNCompleteColumn(), TimeRemainingColumn()
    ) as bar:
        task = bar.add_task(description, total=None)

        def update(event: ProgressEvent) -> None:
            bar.update(task, total=event.total, completed=event.done)

        yield update


def download(
    name: str,
    dest: str | os.PathLike[str],
    *,
    fs: int | Sequence[int] | None = None,
    include: Sequence[str] | None = None,
    base_url: str | os.PathLike[str] = PHYSIONET_FILES,
    workers: int = 4,
    retries: int = 3,
    backoff: float = 1.0,
    timeout: float = 60.0,
    progress: ProgressCallback | Literal["rich"] | None = None,
) -> Path:
    """Download dataset ``name`` into ``dest`` (its files directly inside), verified; return dest.

    ``fs`` picks the sampling rate(s) where a dataset offers several (PTB-XL: 100 (default) or
    500, or ``(100, 500)`` for both); ``include`` replaces the default selection by glob patterns
    over the paths in ``SHA256SUMS.txt`` (``**`` spans folders; the dataset's metadata files,
    e.g. PTB-XL's tables, are fetched too; each pattern must match a file). Files already valid are
    skipped, so re-running resumes an interrupted download. Transient failures (dropped
    connection, timeout, HTTP 5xx/429, short or corrupt transfer) are retried ``retries`` times
    after ``backoff * 2**n`` seconds. ``progress``: a callback, ``"rich"`` for a terminal bar,
    or None. Raises :class:`DownloadError` naming the file and URL, ``ValueError`` for an
    unknown dataset or rate.
    """
    dataset = get_dataset(name)
    if fs is not None and include is not None:
        raise ValueError("give either fs or include, not both")
    own = tuple(include or ())
    patterns = (*own, *dataset.always) if own else default_patterns(dataset, fs)
    target = Path(dest).expanduser().resolve()
    if progress == "rich":
        reporter: AbstractContextManager[ProgressCallback | None] = rich_progress(
            f"{dataset.name} {dataset.version}"
        )
    else:
        reporter = nullcontext(progress)
    with reporter as callback:
        _fetch(
            dataset, target, patterns, _base(base_url), own=own, workers=workers, retries=retries,
            backoff=backoff, timeout=timeout, progress=callback,
        )  # fmt: skip
    return target
