"""Shared fixtures. Real-data tests use ../shared/data, unpacked once into .cache/shared-data;
checkpoint-parity tests use the golden fixtures in ../shared/reference.

Without the shared folder those tests skip with the reason, except under CI=true, where they fail.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
SHARED = Path(os.environ.get("ECGFOUNDRY_SHARED", REPO.parent / "shared"))
SHARED_DATA = SHARED / "data"
REFERENCE = Path(os.environ.get("ECGFOUNDRY_REFERENCE", SHARED / "reference"))
UNPACKED = Path(os.environ.get("ECGFOUNDRY_TEST_DATA", REPO / ".cache" / "shared-data"))


def _missing(reason: str) -> None:
    if os.environ.get("CI", "").lower() == "true":
        pytest.fail(f"CI=true and the shared data is missing: {reason}", pytrace=False)
    pytest.skip(reason)


@pytest.fixture(scope="session")
def data_root() -> Path:
    """The unpacked shared datasets (ptbxl/, mitdb/, vfdb/, cinc2020_sample/)."""
    script = SHARED_DATA / "unpack_all.py"
    if not script.exists():
        _missing(f"{script} not found (put the shared folder beside the repo)")
    done = [UNPACKED / name / ".complete" for name in ("ptbxl", "mitdb", "vfdb", "cinc2020_sample")]
    if not all(path.exists() for path in done):
        subprocess.run([sys.executable, str(script), str(UNPACKED)], check=True)
    return UNPACKED


@pytest.fixture(scope="session")
def ptbxl_root(data_root: Path) -> Path:
    return data_root / "ptbxl"


@pytest.fixture(scope="session")
def mitdb_root(data_root: Path) -> Path:
    return data_root / "mitdb"


@pytest.fixture(scope="session")
def vfdb_root(data_root: Path) -> Path:
    return data_root / "vfdb"


@pytest.fixture(scope="session")
def cinc_root(data_root: Path) -> Path:
    return data_root / "cinc2020_sample"


def require_reference(*names: str) -> Path:
    """The reference folder, after checking that ``names`` are in it (skip/fail otherwise)."""
    missing = [name for name in names if not (REFERENCE / name).exists()]
    if not REFERENCE.is_dir() or missing:
        _missing(f"reference fixtures {missing or [str(REFERENCE)]} not found in {REFERENCE}")
    return REFERENCE


def torchrun(*args: str, timeout: int = 600) -> subprocess.CompletedProcess[str]:
    """``python -m torch.distributed.run --nproc_per_node 2 ARGS``: one thread per process, and
    a process that crashes prints every thread's Python stack (faulthandler)."""
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONFAULTHANDLER": "1"}
    command = [sys.executable, "-m", "torch.distributed.run", "--nproc_per_node", "2", *args]
    return subprocess.run(command, capture_output=True, text=True, env=env, timeout=timeout)


def workers_output(stderr: str, limit: int = 6000) -> str:
    """A torchrun launch's stderr for an assertion message: the processes' own lines (torchrun's
    report of a failure, a traceback and a table, would crowd them out), then each exit code."""
    lines = stderr.splitlines()
    agent = next((i for i, line in enumerate(lines) if "torch/distributed/elastic" in line),
                 len(lines))  # fmt: skip
    codes = [line.strip() for line in lines[agent:] if "exitcode" in line]
    return "\n".join(lines[:agent])[-limit:] + "\n" + "\n".join(codes)
