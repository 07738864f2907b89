"""The command-line contracts, as a user meets them: through the console script's entry point
(one-line errors, exit codes, stdout apart from stderr). The demo runs as ``python -m ecgfoundry``
in a process of its own, with the network unreachable; the other commands run in this process,
which spares each a new Python and its imports."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from unittest import mock

import numpy as np
from test_ptbxl import copy_records, fold_counts, present_records
from typer.testing import CliRunner

from ecgfoundry.cli import main
from ecgfoundry.models import resolve_model


def ecgfoundry(*args: str | Path) -> subprocess.CompletedProcess:
    """``ecgfoundry ARGS`` through :func:`ecgfoundry.cli.main`, in this process."""
    argv = ["ecgfoundry", *map(str, args)]
    with CliRunner().isolation() as (out, err, _), mock.patch.object(sys, "argv", argv):
        try:
            main()
            code = 0
        except SystemExit as exit:
            code = exit.code if isinstance(exit.code, int) else int(exit.code is not None)
        sys.stdout.flush()  # print() output is buffered until then
        sys.stderr.flush()
        stdout, stderr = out.getvalue().decode(), err.getvalue().decode()
    return subprocess.CompletedProcess(argv, code, stdout, stderr)


def ecgfoundry_process(*args: str | Path, env: dict, timeout: int) -> subprocess.CompletedProcess:
    """``python -m ecgfoundry ARGS`` in a new process."""
    command = [sys.executable, "-m", "ecgfoundry", *map(str, args)]
    return subprocess.run(command, capture_output=True, text=True, timeout=timeout, env=env)


def test_demo_runs_the_main_job_offline_and_resumes(tmp_path: Path) -> None:
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "NO_PROXY": "*", "HTTP_PROXY": "http://0.0.0.0:9",
           "HTTPS_PROXY": "http://0.0.0.0:9"}  # fmt: skip  # no network to reach
    result = ecgfoundry_process("demo", "--out", tmp_path / "demo", "--json", env=env, timeout=600)
    assert result.returncode == 0, result.stderr[-3000:]
    demo = json.loads(result.stdout)
    rows = {row["record"]: row for row in demo["samples"]}
    assert len(rows) == 7
    assert demo["spec"] == resolve_model("ecgfoundry-cpc").spec.to_dict()  # the model it runs
    assert all(row["model_input"] == [12, 1000] for row in rows.values())
    assert rows["cinc2020/E00009"]["fs"] == 500  # resampled to the 100 Hz input
    assert rows["ptbxl/00010_lr"]["labels"] == "NORM"
    assert rows["cinc2020/E00009"]["labels"] == "NSSTTA LAD STach"  # its codes, named
    assert rows["ptbxl/00017_lr"]["heart_rate_bpm"] > 120  # tachycardic atrial flutter
    assert all(40 <= row["heart_rate_bpm"] <= 160 for row in rows.values())
    scores = {(r["mode"], r["fraction"]): r["macro_auroc"] for r in demo["benchmark"]}
    assert set(scores) == {(m, f) for m in ("linear-probe", "post-train") for f in (0.25, 1.0)}
    assert all(0.6 < v <= 1 for v in scores.values())  # the pretrained model learns the task
    predicted = {row["record"]: row for row in demo["predictions"]}
    assert set(predicted) == set(rows)
    assert predicted["ptbxl/00008_lr"]["superclasses"] == ["MI"]
    assert resolve_model(demo["model"]).config.labels == ["CD", "HYP", "MI", "NORM", "STTC"]
    assert 200 < demo["trained_on"] <= 240  # the subset's training records with a superclass
    assert set(predicted["ptbxl/00010_lr"]["predicted"]) == {"CD", "HYP", "MI", "NORM", "STTC"}
    page = Path(demo["report"]).read_text()
    assert all(f'<section id="{s}">' in page for s in ("performance", "representation",
                                                        "attribution"))  # fmt: skip
    again = ecgfoundry_process("demo", "--out", tmp_path / "demo", env=env, timeout=600)
    assert again.returncode == 0, again.stderr[-3000:]
    assert "ptbxl/00008_lr" in again.stdout and "12x1000" in again.stdout
    assert "ecgfoundry-cpc's input: 100 Hz, 10 s, 12 leads, normalisation: none" in again.stdout
    assert f"learned from {demo['trained_on']} records" in again.stdout
    assert f"not a diagnostic model:\n  {demo['model']}\n" in again.stdout
    assert "ecgfoundry finetune ecgfoundry-cpc --data my_labels.csv" in again.stdout
    assert again.stdout.strip().endswith("report.html")


def test_ptbxl_summary_contract(ptbxl_root: Path) -> None:
    result = ecgfoundry("data", "summary", "ptbxl", "--root", ptbxl_root, "--fs", "100")
    assert result.returncode == 0, result.stderr
    summary = json.loads(result.stdout)
    present = present_records(ptbxl_root)  # what this copy holds
    assert summary["records"] == len(present)
    assert summary["patients"] == present.patient_id.nunique()
    assert summary["folds"] == fold_counts(ptbxl_root)
    labels = {name: task["labels"] for name, task in summary["tasks"].items()}
    assert labels == {"all": 71, "diagnostic": 44, "subdiagnostic": 23, "superdiagnostic": 5,
                      "form": 19, "rhythm": 12}  # fmt: skip
    for task in summary["tasks"].values():
        assert set(task) == {"labels", "train", "val", "test"}
        assert (task["test"] > 0) == (summary["folds"]["10"] > 0)
    assert summary["unreadable_records"] == []
    bad_rate = ecgfoundry("data", "summary", "ptbxl", "--root", ptbxl_root, "--fs", "250")
    assert bad_rate.returncode == 2 and "fs=100 or fs=500, not 250" in bad_rate.stderr


def test_summary_of_a_damaged_copy_lists_problems_and_exits_0(ptbxl_root: Path, tmp_path: Path):
    ids = [1, 2, 3, 4, 5, 6]
    copy_records(ptbxl_root, tmp_path, ids)
    (tmp_path / "records100/00000/00002_lr.dat").unlink()
    dat = tmp_path / "records100/00000/00005_lr.dat"
    dat.write_bytes(dat.read_bytes()[:1000])
    result = ecgfoundry("data", "summary", "ptbxl", "--root", tmp_path)
    assert result.returncode == 0, result.stderr
    summary = json.loads(result.stdout)
    assert summary["records"] == 4 and summary["missing_records"] == [2]
    (entry,) = summary["unreadable_records"]
    assert entry["ecg_id"] == 5 and "00005_lr.dat" in entry["problem"]


def test_cache_command_builds_the_cache_training_reads(ptbxl_root: Path, tmp_path: Path) -> None:
    from ecgfoundry.adapt.data import ptbxl_cache
    from ecgfoundry.data import ptbxl
    from ecgfoundry.data.transforms import pipeline_for
    from ecgfoundry.models import create_model

    copy_records(ptbxl_root, tmp_path / "copy", [1, 2, 3])
    args = ("data", "cache", "ptbxl", "--root", tmp_path / "copy", "--cache-dir", tmp_path / "c",
            "--model", "net1d-tiny")  # fmt: skip
    first = ecgfoundry(*args)
    assert first.returncode == 0, first.stderr
    path = Path(first.stdout.strip())
    signals = np.load(path / "signals.npy", mmap_mode="r")
    assert signals.shape == (3, 12, 1000) and path.parent == tmp_path / "c"
    mtime = (path / "signals.npy").stat().st_mtime_ns
    second = ecgfoundry(*args)
    assert Path(second.stdout.strip()) == path
    spec = create_model("net1d-tiny").spec
    store = ptbxl_cache(tmp_path / "copy", spec, cache_dir=tmp_path / "c")  # what training reads
    assert store.path == path
    assert (path / "signals.npy").stat().st_mtime_ns == mtime  # reused, not rebuilt
    record = ptbxl.load(tmp_path / "copy").read(2)
    np.testing.assert_allclose(signals[1], pipeline_for(spec)(record).signal, atol=1e-6)
    no_model = ecgfoundry("data", "cache", "ptbxl", "--root", tmp_path / "copy")
    assert no_model.returncode == 2 and "Missing option '--model'" in no_model.stderr
    assert "left out" not in first.stderr
    dat = next((tmp_path / "copy").rglob("00003_lr.dat"))
    dat.write_bytes(dat.read_bytes()[:100])  # damaged: the cache leaves it out and says so
    damaged = ecgfoundry("data", "cache", "ptbxl", "--root", tmp_path / "copy", "--cache-dir",
                         tmp_path / "d", "--model", "net1d-tiny")  # fmt: skip
    assert damaged.returncode == 0, damaged.stderr
    assert "note: 2 records cached; 1 listed in" in damaged.stderr
    assert damaged.stderr.rstrip().endswith(": 3")


def test_arrhythmia_summaries(vfdb_root: Path, mitdb_root: Path) -> None:
    vfdb = json.loads(ecgfoundry("data", "summary", "vfdb", "--root", vfdb_root).stdout)
    assert vfdb["subjects"] == 22 and set(vfdb["va"]["classes"]) == {"va", "other"}
    assert vfdb["va"]["classes"]["va"] > 1000
    mitdb = ecgfoundry("data", "summary", "mitdb", "--root", mitdb_root, "--seconds", "4")
    summary = json.loads(mitdb.stdout)
    assert summary["window_seconds"] == 4 and summary["subjects"] >= 44
    assert set(summary["beat"]["classes"]) == {"N", "S", "V", "F", "Q"}


def test_bad_input_gives_one_line_error_and_status_2(tmp_path: Path) -> None:
    result = ecgfoundry("data", "summary", "ptbxl", "--root", tmp_path)
    assert result.returncode == 2
    assert result.stderr.strip() == f"error: {tmp_path / 'ptbxl_database.csv'}: " + (
        "not found (is this the root of a PTB-XL copy?)"
    )
    assert "Traceback" not in result.stderr
    missing = ecgfoundry("predict")  # typer's usage errors take the same form
    assert missing.returncode == 2 and missing.stderr.lower() == (
        "error: missing argument 'model' (see `ecgfoundry predict --help`)\n"
    )
    unknown = ecgfoundry("data", "summary", "ptbxl", "--bogus")
    assert unknown.returncode == 2 and unknown.stderr.startswith("error: No such option: --bogus")
    assert unknown.stderr.count("\n") == 1
    bare = ecgfoundry("data")  # a command group alone prints its help (status 2 from click 8.2)
    assert "Usage: ecgfoundry data" in bare.stdout + bare.stderr and bare.stderr.strip() == ""
