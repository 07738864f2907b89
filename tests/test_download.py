"""ecgfoundry.data.download against local mirrors only: a file:// folder laid out like PhysioNet
and a loopback http.server (127.0.0.1, shut down by each test). No other host is contacted."""

from __future__ import annotations

import hashlib
import json
import shutil
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from http.server import SimpleHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest

from ecgfoundry.data import download as dl
from ecgfoundry.data.download import (
    CHECKSUMS,
    MARKER,
    DownloadError,
    ProgressEvent,
    default_patterns,
    download,
    get_dataset,
    parse_sha256sums,
    select,
)

PTBXL = "ptb-xl/1.0.3"
RECORDS = ["00001", "00002", "00003"]  # from records100/00000
ROOT_FILES = ["LICENSE.txt", "ptbxl_database.csv", "scp_statements.csv"]
FAST = {"backoff": 0.0, "timeout": 10.0}


@pytest.fixture(autouse=True)
def _no_proxy(monkeypatch: pytest.MonkeyPatch) -> None:
    """Keep urllib from sending loopback requests to a proxy configured in the environment."""
    for var in ("http_proxy", "HTTP_PROXY", "https_proxy", "HTTPS_PROXY", "all_proxy", "ALL_PROXY"):
        monkeypatch.delenv(var, raising=False)
    monkeypatch.setenv("no_proxy", "127.0.0.1,localhost")


def _write_sums(project: Path) -> dict[str, str]:
    """Write SHA256SUMS.txt the way PhysioNet does: '<sha256> <path>', sorted, itself excluded."""
    files = sorted(p for p in project.rglob("*") if p.is_file() and p.name != CHECKSUMS)
    sums = {p.relative_to(project).as_posix(): dl.sha256_file(p) for p in files}
    (project / CHECKSUMS).write_text("".join(f"{h} {path}\n" for path, h in sums.items()))
    return sums


@pytest.fixture(scope="session")
def pristine_mirror(tmp_path_factory: pytest.TempPathFactory, ptbxl_root: Path) -> Path:
    """A PhysioNet-shaped mirror of a few real PTB-XL files (plus 500 Hz stand-ins)."""
    mirror = tmp_path_factory.mktemp("mirror")
    project = mirror / PTBXL
    for name in ROOT_FILES:
        (project).mkdir(parents=True, exist_ok=True)
        shutil.copyfile(ptbxl_root / name, project / name)
    for folder in ("00000", "01000"):
        records = RECORDS if folder == "00000" else ["01001"]
        for record in records:
            for suffix in (".hea", ".dat"):
                src = ptbxl_root / "records100" / folder / f"{record}_lr{suffix}"
                dst = project / "records100" / folder / src.name
                dst.parent.mkdir(parents=True, exist_ok=True)
                shutil.copyfile(src, dst)
    # 500 Hz files are not in the shared data: small stand-ins, only to test the selection.
    hr = project / "records500" / "00000"
    hr.mkdir(parents=True)
    for record in RECORDS:
        (hr / f"{record}_hr.hea").write_text(f"{record}_hr 12 500 5000\n")
        (hr / f"{record}_hr.dat").write_bytes(hashlib.sha256(record.encode()).digest() * 64)
    (project / "RECORDS").write_text("records100/00000/00001_lr\n")
    _write_sums(project)
    return mirror


@pytest.fixture
def mirror(pristine_mirror: Path, tmp_path: Path) -> Path:
    """A private copy of the PTB-XL mirror that a test may damage."""
    return Path(shutil.copytree(pristine_mirror, tmp_path / "mirror"))


@pytest.fixture
def tiny_mirror(tmp_path: Path) -> Path:
    """A synthetic two-file mitdb mirror for the error paths (no real data needed)."""
    mirror = tmp_path / "tiny"
    project = mirror / "mitdb" / "1.0.0"
    project.mkdir(parents=True)
    (project / "100.hea").write_text("100 2 360 650000\n")
    (project / "100.dat").write_bytes(bytes(range(256)) * 40)
    _write_sums(project)
    return mirror


def _tree(root: Path) -> dict[str, bytes]:
    """Every file under root except the bookkeeping ones, by relative path."""
    return {
        p.relative_to(root).as_posix(): p.read_bytes()
        for p in root.rglob("*")
        if p.is_file() and p.name not in (CHECKSUMS, MARKER)
    }


def _expected_100hz(mirror: Path) -> dict[str, bytes]:
    tree = _tree(mirror / PTBXL)
    return {k: v for k, v in tree.items() if k in ROOT_FILES or k.startswith("records100/")}


class _Handler(SimpleHTTPRequestHandler):
    """Serves the mirror, logs each GET path and can drop chosen files mid-transfer."""

    log: list[str]
    drop: dict[str, int]  # url path -> how many more times to cut the connection halfway
    stall: dict[str, tuple[threading.Event, threading.Event]]  # path -> (half sent, resume)

    def log_message(self, format: str, *args: object) -> None:  # quiet
        pass

    def do_GET(self) -> None:
        self.log.append(self.path)
        if self.drop.get(self.path, 0) > 0:
            self.drop[self.path] -= 1
            body = Path(self.translate_path(self.path)).read_bytes()
            self.send_response(200)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body[: len(body) // 2])
            self.close_connection = True
            return
        if self.path in self.stall:
            half_sent, resume = self.stall[self.path]
            body = Path(self.translate_path(self.path)).read_bytes()
            self.send_response(200)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body[: len(body) // 2])
            self.wfile.flush()
            half_sent.set()
            resume.wait(timeout=10)
            self.wfile.write(body[len(body) // 2 :])
            return
        super().do_GET()


@contextmanager
def serve(
    root: Path,
    drop: dict[str, int] | None = None,
    stall: dict[str, tuple[threading.Event, threading.Event]] | None = None,
) -> Iterator[tuple[str, list[str]]]:
    """An http.server on 127.0.0.1 (ephemeral port) for ``root``: yields (base_url, GET log)."""
    log: list[str] = []
    attributes = {"log": log, "drop": dict(drop or {}), "stall": dict(stall or {})}
    handler = type("Handler", (_Handler,), attributes)

    def make(*args: object) -> _Handler:
        return handler(*args, directory=str(root))

    server = ThreadingHTTPServer(("127.0.0.1", 0), make)
    server.daemon_threads = True
    thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05})
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}", log
    finally:
        server.shutdown()
        server.server_close()
        thread.join(timeout=5)


# --------------------------------------------------------------------------- pure functions


def test_registry_and_patterns() -> None:
    ptbxl = get_dataset("PTB-XL")
    assert (ptbxl.name, ptbxl.slug, ptbxl.version) == ("ptbxl", "ptb-xl", "1.0.3")
    assert get_dataset("challenge-2020").version == "1.0.2"
    assert {get_dataset(n).version for n in ("mitdb", "vfdb")} == {"1.0.0"}
    assert "records100/**" in default_patterns(ptbxl)
    assert "records500/**" not in default_patterns(ptbxl)
    assert {"records100/**", "records500/**"} <= set(default_patterns(ptbxl, (100, 500)))
    with pytest.raises(ValueError, match="250 Hz"):
        default_patterns(ptbxl, 250)
    with pytest.raises(ValueError, match="unknown dataset"):
        get_dataset("nope")


def test_select_globs() -> None:
    paths = ["a.csv", "records100/00000/1.dat", "records500/00000/1.dat", "x/y.csv"]
    assert select(paths, ["records100/**"]) == ["records100/00000/1.dat"]
    assert select(paths, ["*.csv"]) == ["a.csv"]
    assert select(paths, ["**/*.csv"]) == ["a.csv", "x/y.csv"]
    assert select(paths, ["**"]) == paths


def test_parse_sha256sums_formats() -> None:
    h = "ab" * 32
    text = f"{h} a b.txt\n{h.upper()}  dir/c.dat\n{h} *bin.dat\n\n"
    assert parse_sha256sums(text) == {"a b.txt": h, "dir/c.dat": h, "bin.dat": h}
    with pytest.raises(DownloadError, match="line 1: malformed"):
        parse_sha256sums("nothex file\n")


@pytest.mark.parametrize(
    "path", ["../evil.txt", "records100/../../evil", "/etc/passwd", "C:/x", "a\\..\\b", "a//b"]
)
def test_parse_refuses_traversal(path: str) -> None:
    with pytest.raises(DownloadError, match="unsafe path"):
        parse_sha256sums(f"{'0' * 64} ok.txt\n{'0' * 64} {path}\n")


# --------------------------------------------------------------------------- real PTB-XL mirror


def test_file_mirror_full_download_is_byte_identical(mirror: Path, tmp_path: Path) -> None:
    events: list[ProgressEvent] = []
    dest = download("ptbxl", tmp_path / "out", base_url=mirror.as_uri(), progress=events.append)
    assert dest == (tmp_path / "out").resolve()
    expected = _expected_100hz(mirror)
    assert _tree(dest) == expected  # byte-identical, nothing else (no records500, no RECORDS)
    assert (dest / CHECKSUMS).read_bytes() == (mirror / PTBXL / CHECKSUMS).read_bytes()
    manifest = json.loads((dest / MARKER).read_text())
    assert manifest["files"] == len(expected) == manifest["downloaded"]
    assert [e.done for e in events] == list(range(1, len(expected) + 1))
    assert {e.total for e in events} == {len(expected)}
    assert not list(dest.rglob("*.part"))


def test_http_download_then_rerun_skips(mirror: Path, tmp_path: Path) -> None:
    dest = tmp_path / "out"
    with serve(mirror) as (url, log):
        download("ptbxl", dest, base_url=url, workers=3, **FAST)
        first = list(log)
        mtimes = {p: p.stat().st_mtime_ns for p in dest.rglob("*") if p.is_file()}
        log.clear()
        statuses: list[str] = []
        download("ptbxl", dest, base_url=url, progress=lambda e: statuses.append(e.status), **FAST)
    expected = _expected_100hz(mirror)
    assert _tree(dest) == expected
    assert len(first) == len(expected) + 1  # every file once, plus SHA256SUMS.txt
    assert log == [f"/{PTBXL}/{CHECKSUMS}"]  # second run: only the checksum list
    assert statuses == ["skipped"] * len(expected)
    for path, mtime in mtimes.items():
        if path.name not in (CHECKSUMS, MARKER):
            assert path.stat().st_mtime_ns == mtime


def test_fs_selection(mirror: Path, tmp_path: Path) -> None:
    base = mirror.as_uri()
    hr = download("ptbxl", tmp_path / "hr", fs=500, base_url=base)
    names = set(_tree(hr))
    assert any(n.startswith("records500/") for n in names)
    assert not any(n.startswith("records100/") for n in names)
    assert set(ROOT_FILES) <= names
    both = download("ptbxl", tmp_path / "both", fs=(100, 500), base_url=base)
    assert {n.split("/")[0] for n in _tree(both)} >= {"records100", "records500"}
    only = download("ptbxl", tmp_path / "only", include=["records100/00000/00001*"],
                    base_url=base)  # fmt: skip
    assert set(_tree(only)) == {
        *ROOT_FILES,
        "records100/00000/00001_lr.dat",
        "records100/00000/00001_lr.hea",
    }  # the tables come along
    with pytest.raises(ValueError, match="either fs or include"):
        download("ptbxl", tmp_path / "x", fs=100, include=["*"], base_url=base)


def test_corrupted_mirror_file_raises_and_leaves_nothing(mirror: Path, tmp_path: Path) -> None:
    bad = "records100/00000/00002_lr.dat"
    path = mirror / PTBXL / bad
    data = bytearray(path.read_bytes())
    data[100] ^= 0xFF
    path.write_bytes(bytes(data))
    dest = tmp_path / "out"
    with pytest.raises(DownloadError, match=f"{bad}.*SHA256 mismatch.*3 attempts") as info:
        download("ptbxl", dest, base_url=mirror.as_uri(), workers=1, retries=2, **FAST)
    assert path.as_uri() in str(info.value)
    assert not (dest / bad).exists()
    assert not (dest / (bad + ".part")).exists()
    assert not (dest / MARKER).exists()


def test_dropped_connection_is_retried(mirror: Path, tmp_path: Path) -> None:
    victim = f"/{PTBXL}/ptbxl_database.csv"
    with serve(mirror, drop={victim: 2}) as (url, log):
        dest = download("ptbxl", tmp_path / "out", base_url=url, retries=2, **FAST)
    assert log.count(victim) == 3
    assert _tree(dest) == _expected_100hz(mirror)


def test_file_in_flight_never_sits_under_its_final_name(mirror: Path, tmp_path: Path) -> None:
    victim = "ptbxl_database.csv"
    half_sent, resume = threading.Event(), threading.Event()
    dest = tmp_path / "out"
    errors: list[BaseException] = []

    def run(url: str) -> None:
        try:
            download("ptbxl", dest, base_url=url, include=[victim], **FAST)
        except BaseException as exc:  # reported by the main thread
            errors.append(exc)

    with serve(mirror, stall={f"/{PTBXL}/{victim}": (half_sent, resume)}) as (url, _):
        worker = threading.Thread(target=run, args=(url,))
        worker.start()
        try:
            assert half_sent.wait(timeout=10)
            part = dest / (victim + ".part")
            for _ in range(200):  # until the first half reached the temporary file
                if part.exists() and part.stat().st_size > 0:
                    break
                time.sleep(0.01)
            assert part.stat().st_size > 0
            assert not (dest / victim).exists()
        finally:
            resume.set()
            worker.join(timeout=10)
    assert not errors
    assert (dest / victim).read_bytes() == (mirror / PTBXL / victim).read_bytes()
    assert not (dest / (victim + ".part")).exists()


def test_interrupted_download_recovers_on_rerun(mirror: Path, tmp_path: Path) -> None:
    victim = "records100/00000/00003_lr.dat"
    dest = tmp_path / "out"
    with serve(mirror, drop={f"/{PTBXL}/{victim}": 1}) as (url, log):
        with pytest.raises(DownloadError, match=f"{victim}.*connection dropped"):
            download("ptbxl", dest, base_url=url, workers=1, retries=0, **FAST)
        assert not (dest / victim).exists()
        assert not (dest / (victim + ".part")).exists()
        assert not (dest / MARKER).exists()
        fetched_before = {p for p in log if not p.endswith(CHECKSUMS)}
        log.clear()
        download("ptbxl", dest, base_url=url, workers=2, **FAST)
    assert _tree(dest) == _expected_100hz(mirror)
    assert (dest / MARKER).exists()
    refetched = {p for p in log if not p.endswith(CHECKSUMS)}
    assert f"/{PTBXL}/{victim}" in refetched
    assert not (refetched & (fetched_before - {f"/{PTBXL}/{victim}"}))  # finished ones skipped


def test_stopped_run_and_stale_partials_recover(mirror: Path, tmp_path: Path) -> None:
    dest = tmp_path / "out"
    seen: list[str] = []

    def stop_after_two(event: ProgressEvent) -> None:
        seen.append(event.path)
        if len(seen) == 2:
            raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        download("ptbxl", dest, base_url=mirror.as_uri(), workers=1, progress=stop_after_two)
    assert not (dest / MARKER).exists()
    # Leftovers of a crash: a partial temp file, and a truncated file under a final name.
    partial = "records100/01000/01001_lr.dat"
    (dest / partial).parent.mkdir(parents=True, exist_ok=True)
    (dest / (partial + ".part")).write_bytes(b"half")
    truncated = "records100/00000/00001_lr.hea"
    (dest / truncated).write_bytes((mirror / PTBXL / truncated).read_bytes()[:10])

    statuses: dict[str, str] = {}
    download("ptbxl", dest, base_url=mirror.as_uri(), progress=_record(statuses))
    assert _tree(dest) == _expected_100hz(mirror)
    assert not list(dest.rglob("*.part"))
    assert statuses[truncated] == "downloaded"
    assert all(statuses[p] == "skipped" for p in seen if p != truncated)


def _record(into: dict[str, str]) -> Callable[[ProgressEvent], None]:
    return lambda event: into.__setitem__(event.path, event.status)


# --------------------------------------------------------------------------- synthetic mirror


def test_traversal_in_checksums_refused_before_any_write(tiny_mirror: Path, tmp_path: Path) -> None:
    project = tiny_mirror / "mitdb" / "1.0.0"
    sums = (project / CHECKSUMS).read_text()
    (project / CHECKSUMS).write_text(sums + f"{'0' * 64} ../../escaped.txt\n")
    dest = tmp_path / "a" / "out"
    with pytest.raises(DownloadError, match=r"unsafe path '\.\./\.\./escaped\.txt'"):
        download("mitdb", dest, base_url=tiny_mirror.as_uri(), **FAST)
    assert not (tmp_path / "escaped.txt").exists()
    assert not any(p.is_file() for p in dest.rglob("*"))


def test_http_404_names_file_and_url(tiny_mirror: Path, tmp_path: Path) -> None:
    (tiny_mirror / "mitdb" / "1.0.0" / "100.dat").unlink()  # listed but missing
    pattern = r"100\.dat <- http://127\.0\.0\.1:\d+/.*404"
    with serve(tiny_mirror) as (url, log), pytest.raises(DownloadError, match=pattern):
        download("mitdb", tmp_path / "out", base_url=url, workers=1, retries=3, **FAST)
    assert log.count("/mitdb/1.0.0/100.dat") == 1  # permanent: not retried
    assert not (tmp_path / "out" / "100.dat").exists()


def test_missing_checksums_and_empty_selection(tiny_mirror: Path, tmp_path: Path) -> None:
    with pytest.raises(DownloadError, match=r"no file listed.*; its folders: none"):
        download("mitdb", tmp_path / "a", include=["*.xyz"], base_url=tiny_mirror.as_uri())
    with pytest.raises(DownloadError, match=f"{CHECKSUMS} <- file://.*not found"):
        download("vfdb", tmp_path / "b", base_url=tiny_mirror.as_uri())


def test_unreachable_server_gives_up(tmp_path: Path) -> None:
    with serve(tmp_path) as (url, _):
        pass  # server closed: the port now refuses connections
    with pytest.raises(DownloadError, match="gave up after 2 attempts"):
        download("mitdb", tmp_path / "out", base_url=url, retries=1, **FAST)


def test_plain_folder_mirror_and_rich_progress(tiny_mirror: Path, tmp_path: Path) -> None:
    dest = download("mitdb", tmp_path / "out", base_url=str(tiny_mirror), progress="rich")
    assert _tree(dest) == _tree(tiny_mirror / "mitdb" / "1.0.0")
    assert json.loads((dest / MARKER).read_text())["source"].startswith("file://")


# --------------------------------------------------------------------------- the command line


def test_cli_downloads_to_out(
    tiny_mirror: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from typer.testing import CliRunner

    from ecgfoundry.cli import app

    real = dl.download
    monkeypatch.setattr(
        dl, "download", lambda *a, **kw: real(*a, base_url=tiny_mirror.as_uri(), **kw)
    )
    result = CliRunner().invoke(app, ["data", "download", "mitdb", "--out", str(tmp_path / "out")])
    assert result.exit_code == 0, result.output
    assert result.output.strip().endswith(str(tmp_path / "out"))
    assert _tree(tmp_path / "out") == _tree(tiny_mirror / "mitdb" / "1.0.0")


def test_cli_offers_every_dataset_and_checks_the_rate(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from typer.testing import CliRunner

    from ecgfoundry.cli import app
    from ecgfoundry.errors import UsageError

    def invoke(*args: str) -> object:
        return CliRunner().invoke(app, ["data", "download", *args, "--out", str(tmp_path)])

    refused = invoke("ptbxl", "--fs", "250")  # checked before anything is fetched
    assert isinstance(refused.exception, UsageError)
    assert "ptbxl: no 250 Hz option; choices: 100, 500" in str(refused.exception)
    calls: list[tuple[str, int | None]] = []
    monkeypatch.setattr(
        dl, "download", lambda name, dest, *, fs, include, progress: calls.append((name, fs))
    )
    for name in dl.DATASETS:
        assert invoke(name).exit_code == 0, name
    assert invoke("ptbxl", "--fs", "500").exit_code == 0
    assert calls == [(name, None) for name in dl.DATASETS] + [("ptbxl", 500)]
    assert isinstance(calls[-1][1], int)
    fractional = invoke("ptbxl", "--fs", "99.5")
    assert isinstance(fractional.exception, UsageError) and "--fs 99.5" in str(fractional.exception)


def test_include_fetches_part_of_a_dataset_and_a_typo_lists_its_folders(
    tiny_mirror: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """`--include` (e.g. one database of a challenge) fetches only the matching files; a
    pattern matching nothing is refused with the folders the dataset has."""
    from typer.testing import CliRunner

    from ecgfoundry.cli import app

    project = tiny_mirror / "mitdb" / "1.0.0"
    for database, record in (("georgia", "E00001"), ("ptb", "S0001")):
        folder = project / "training" / database / "g1"
        folder.mkdir(parents=True)
        (folder / f"{record}.hea").write_text(f"{record} 12 500 5000\n")
    _write_sums(project)
    real = dl.download
    monkeypatch.setattr(
        dl, "download", lambda *a, **kw: real(*a, base_url=tiny_mirror.as_uri(), **kw)
    )

    def invoke(out: Path, *include: str):
        options = [arg for pattern in include for arg in ("--include", pattern)]
        return CliRunner().invoke(app, ["data", "download", "mitdb", "--out", str(out), *options])

    result = invoke(tmp_path / "one", "training/georgia/**")
    assert result.exit_code == 0, result.output
    assert list(_tree(tmp_path / "one")) == ["training/georgia/g1/E00001.hea"]
    result = invoke(tmp_path / "two", "training/georgia/**", "100.*")
    georgia = "training/georgia/g1/E00001.hea"
    assert sorted(_tree(tmp_path / "two")) == ["100.dat", "100.hea", georgia]
    typo = invoke(tmp_path / "typo", "training/georgia/**", "training/georiga/**")
    message = str(typo.exception) + typo.output
    assert typo.exit_code != 0 and not (tmp_path / "typo" / "training").exists()
    assert (
        "matches ['training/georiga/**']; its folders: training, training/georgia, "
        "training/ptb" in message
    )
    both = CliRunner().invoke(app, ["data", "download", "ptbxl", "--out", str(tmp_path / "x"),
                                    "--fs", "500", "--include", "records500/**"])  # fmt: skip
    assert both.exit_code != 0 and "--fs and --include" in str(both.exception)
