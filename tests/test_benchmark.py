"""`ecgfoundry benchmark run`: a configuration is checked before anything runs, its cells run
resumably into one results table, and the Ray backend gives the local backend's results."""

from __future__ import annotations

import importlib.util
import json
import os
import re
import shutil
import subprocess
from pathlib import Path

import pandas as pd
import pytest
from test_ptbxl import first_records_copy
from typer.testing import CliRunner

from ecgfoundry.benchmark import BenchmarkConfigError, cells, load_config, run_benchmark
from ecgfoundry.benchmark.report import _performance as performance_section
from ecgfoundry.benchmark.results import summary, summary_with_test
from ecgfoundry.cli import app


@pytest.fixture(scope="module")
def small_copy(ptbxl_root: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    return first_records_copy(ptbxl_root, tmp_path_factory.mktemp("ptbxl-benchmark"), 10)


def config(root: Path, **changes) -> dict:
    base = {
        "data": {"ptbxl": {"kind": "ptbxl", "root": str(root)}},
        "models": {"ecgfoundry-cpc": ["linear-probe"], "s4-tiny": ["scratch"]},
        "tasks": ["ptbxl:superdiagnostic"],
        "fractions": [0.5, 1.0],
        "seeds": [0],
        "recipes": {"linear-probe": {"batch_size": 16}, "scratch": {"batch_size": 16}},
        "epochs": 1,
    }
    return base | changes


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"colour": "red"}, r"unknown field\(s\) \['colour'\]"),
        ({"models": {"nope-net": ["scratch"]}}, "'nope-net' is neither a registered model"),
        ({"models": {"s4-tiny": ["probing"]}}, "unknown mode 'probing'"),
        ({"models": {"resnet1d-wang": ["linear-probe"]}}, "architecture without weights"),
        ({"models": {"s4-tiny": ["scratch", "finetune"]}}, r"mode 'finetune' starts from"),
        ({"fractions": [0.1, 1.5]}, r"fractions: expected distinct label fractions in \(0, 1\]"),
        ({"tasks": ["georgia:all"]}, "names data 'georgia', which is not under data"),
        ({"tasks": ["ptbxl:everything"]}, "PTB-XL tasks are"),
        ({"recipes": {"post-train": {"batch_size": 8}}}, "no model runs mode 'post-train'"),
        ({"recipes": {"scratch": {"batch_sise": 8}}}, "unknown recipe field 'batch_sise'"),
        ({"data": {"ptbxl": {"kind": "ptbxl", "root": "/nowhere"}}}, "/nowhere does not exist"),
        ({"epochs": 0}, "epochs: expected a whole number >= 1"),
        ({"transfer": {"targets": ["ptbxl"]}}, "'ptbxl' is not a cinc data source"),
        ({"analysis": {"record": 10}}, "analysis: expected a mapping of"),
        ({"analysis": {"attribution": "no"}}, "analysis: attribution must be of type bool"),
        ({"analysis": {"records": "1e3"}}, "analysis: records must be of type int, got '1e3'"),
        ({"analysis": {"steps": 0}}, r"analysis: \['records', .*\] must be whole numbers >= 1"),
    ],
)
def test_a_bad_configuration_is_named_before_anything_runs(tmp_path, change, message) -> None:
    with pytest.raises(BenchmarkConfigError, match=message):
        load_config(config(tmp_path, **change))


def test_a_variant_that_starts_untrained_runs_on_an_architecture(tmp_path) -> None:
    recipes = {"finetune-from-scratch": {"strategy": "finetune", "init": "random"}}
    loaded = load_config(config(tmp_path, models={"s4-tiny": ["finetune-from-scratch"]},
                                recipes=recipes))  # fmt: skip
    assert loaded.recipe("finetune-from-scratch")["init"] == "random"


@pytest.mark.shared_data
def test_transfer_names_the_labels_without_a_snomed_mapping(small_copy, cinc_root) -> None:
    settings = config(small_copy, tasks=["ptbxl:superdiagnostic", "ptbxl:diagnostic"],
                      transfer={"targets": ["sample"]})  # fmt: skip
    settings["data"]["sample"] = {"kind": "cinc", "root": str(cinc_root)}
    with pytest.raises(BenchmarkConfigError, match=r"ptbxl:diagnostic: .*'IMI'.* no SNOMED-CT"):
        load_config(settings)
    settings["transfer"]["tasks"] = ["ptbxl:superdiagnostic"]
    assert load_config(settings).transfer.tasks == ("ptbxl:superdiagnostic",)


def test_cells_are_keyed_by_what_they_depend_on(tmp_path: Path) -> None:
    grid = cells(load_config(config(tmp_path)))
    assert [(c.model, c.mode, c.fraction) for c in grid] == [
        ("ecgfoundry-cpc", "linear-probe", 0.5), ("s4-tiny", "scratch", 0.5),
        ("ecgfoundry-cpc", "linear-probe", 1.0), ("s4-tiny", "scratch", 1.0),
    ]  # fmt: skip
    recipes = {"linear-probe": {"batch_size": 16}, "scratch": {"batch_size": 8}}
    changed = cells(load_config(config(tmp_path, recipes=recipes)))
    same = [a.folder(tmp_path) == b.folder(tmp_path) for a, b in zip(grid, changed, strict=True)]
    assert same == [True, False, True, False]  # only the scratch cells depend on its recipe


def test_the_summary_keeps_each_task_its_own_ci() -> None:
    rows = [
        {
            "model": "m",
            "data": "ptbxl",
            "task": task,
            "mode": "probe",
            "fraction": 0.1,
            "seed": seed,
            "status": "done",
            "split": "val",
            "macro_auroc": auroc + seed / 100,
            "macro_auroc_low": auroc - 0.01,
            "macro_auroc_high": auroc + 0.03,
            "macro_auprc": 0.5,
            "macro_auprc_low": 0.4,
            "macro_auprc_high": 0.6,
        }
        for task, auroc in (("rhythm", 0.9), ("superdiagnostic", 0.7))
        for seed in (0, 1)
    ]
    by_task = {r["task"]: r for r in summary(pd.DataFrame(rows))}
    assert by_task["rhythm"]["macro_auroc"] == pytest.approx(0.905)
    assert (by_task["rhythm"]["macro_auroc_low"], by_task["rhythm"]["macro_auroc_high"]) == (
        pytest.approx(0.89),
        pytest.approx(0.93),
    )
    assert by_task["superdiagnostic"]["macro_auroc_high"] == pytest.approx(0.73)


def test_the_report_shows_test_columns_only_for_tasks_with_a_test_split() -> None:
    def row(task: str, model: str, split: str, auroc: float) -> dict:
        return {"model": model, "data": "d", "task": task, "mode": "probe", "fraction": 1.0,
                "seed": 0, "status": "done", "split": split, "macro_auroc": auroc,
                "macro_auroc_low": auroc - 0.01, "macro_auroc_high": auroc + 0.01,
                "macro_auprc": 0.5, "macro_auprc_low": 0.4, "macro_auprc_high": 0.6,
                "cell": f"{model}-{task}"}  # fmt: skip

    table = pd.DataFrame([row("a", "m1", "val", 0.81), row("a", "m1", "test", 0.71),
                          row("a", "m2", "val", 0.82), row("b", "m1", "val", 0.91)])  # fmt: skip
    rows = {(r["task"], r["model"]): r for r in summary_with_test(table)}
    assert rows[("a", "m1")]["test"]["macro_auroc"] == pytest.approx(0.71)
    assert "test" not in rows[("a", "m2")] and "test" not in rows[("b", "m1")]
    html = performance_section(table)
    task_a, task_b = html.split("<h3>d:b</h3>")
    assert task_a.count("<th>test macro AUROC</th>") == 1 and "<th>test" not in task_b
    assert '0.710</td><td class="">[0.700, 0.720]' in task_a  # m1's fold-10 cells
    assert task_a.count('<td class="">–</td>') == 3  # m2 has no test scores


@pytest.mark.shared_data
def test_a_grid_runs_resumes_and_tabulates(small_copy: Path, tmp_path: Path) -> None:
    out = tmp_path / "bench"
    (tmp_path / "bench.yaml").write_text(json.dumps(config(small_copy)))  # JSON is YAML
    result = CliRunner().invoke(app, ["benchmark", "run", str(tmp_path / "bench.yaml"), "--out",
                                      str(out), "--cache-dir", str(tmp_path / "cache"),
                                      "--json"])  # fmt: skip
    assert result.exit_code == 0, result.output
    table = pd.read_parquet(out / "results.parquet")
    assert (table["status"] == "done").all() and set(table["split"]) == {"val"}
    assert len(table) == 4 and table["macro_auroc"].between(0, 1).all()
    checks = dict(zip(table["model"], table["leakage_check"], strict=False))
    assert checks == {"ecgfoundry-cpc": "clean", "s4-tiny": "no manifest"}
    assert (table["macro_auroc_low"] <= table["macro_auroc"]).all()
    assert pd.read_csv(out / "results.csv").shape == table.shape
    summary = json.loads(result.stdout)
    assert {(s["model"], s["fraction"]) for s in summary} == {
        (m, f) for m in ("ecgfoundry-cpc", "s4-tiny") for f in (0.5, 1.0)
    }
    logs = {p: p.read_text() for p in out.glob("cells/*/log.jsonl")}
    again = run_benchmark(tmp_path / "bench.yaml", out, cache_dir=tmp_path / "cache",
                          progress=False)  # fmt: skip
    assert {p: p.read_text() for p in out.glob("cells/*/log.jsonl")} == logs  # nothing re-ran
    pd.testing.assert_frame_equal(again, table)


@pytest.mark.shared_data
def test_the_ray_backend_gives_the_local_results(small_copy: Path, tmp_path: Path) -> None:
    environment = dict(os.environ)  # importing ray and ray.init set RAY_*, PYTHONBREAKPOINT
    pytest.importorskip("ray")
    import ray

    settings = config(small_copy, models={"s4-tiny": ["scratch"]}, fractions=[1.0], seeds=[0, 1],
                      recipes={"scratch": {"batch_size": 16}})  # fmt: skip
    local = run_benchmark(settings, tmp_path / "local", cache_dir=tmp_path / "cache",
                          progress=False)  # fmt: skip
    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False)
    try:
        distributed = run_benchmark(settings, tmp_path / "ray", backend="ray",
                                    cache_dir=tmp_path / "cache", progress=False)  # fmt: skip
    finally:
        ray.shutdown()
        os.environ.clear()
        os.environ.update(environment)  # later tests' subprocesses inherit the suite's own
    columns = ["cell", "seed", "macro_auroc", "macro_auprc"]
    pd.testing.assert_frame_equal(local[columns], distributed[columns], atol=1e-6)


SECTIONS = ("performance", "efficiency", "representation", "transfer", "attribution",
            "provenance")  # fmt: skip


def chromium() -> str | None:
    return shutil.which("chromium") or shutil.which("chromium-browser")


@pytest.mark.shared_data
def test_analyses_and_the_report_render_in_a_browser(
    small_copy: Path, cinc_root: Path, tmp_path: Path
) -> None:
    settings = config(small_copy, seeds=[0, 1], analysis={
        "records": 80, "attribution_records": 4, "segments": 5, "steps": 2},
        transfer={"targets": ["sample"]})  # fmt: skip
    settings["data"]["sample"] = {"kind": "cinc", "root": str(cinc_root)}
    out = tmp_path / "bench"
    run_benchmark(settings, out, cache_dir=tmp_path / "cache", progress=False)
    representation = json.loads((out / "analysis/representation.json").read_text())
    (entry,) = representation["models"]  # s4-tiny has no weights: not analysed
    assert entry["model"] == "ecgfoundry-cpc" and 0 <= entry["knn_auroc"] <= 1
    assert 1 <= entry["effective_rank"] <= entry["dimensions"]
    attribution = json.loads((out / "analysis/attribution.json").read_text())
    assert {(a["model"], a["mode"]) for a in attribution} == {
        ("ecgfoundry-cpc", "linear-probe"), ("s4-tiny", "scratch")}  # fmt: skip
    checks = attribution[0]["classes"][0]["checks"]
    assert {"randomisation_similarity", "model_seed_agreement"} <= set(checks)
    transfer = pd.DataFrame(json.loads((out / "analysis/transfer.json").read_text()))
    assert len(transfer) == 2 * 2 * 5  # 2 models x 2 seeds (largest fraction) x 5 labels
    assert (transfer["records"] == 26).all()  # the sample's 28 less its 2 PTB-XL copies
    assert (transfer["ptbxl_records_left_out"] == 2).all()
    assert transfer["in_domain"].notna().any() and transfer["zero_shot"].notna().any()

    result = CliRunner().invoke(app, ["benchmark", "report", str(out)])
    assert result.exit_code == 0, result.output
    report = Path(result.stdout.strip())
    page = report.read_text()
    assert "http://" not in page and "https://" not in page  # nothing to fetch: works offline
    for section in SECTIONS:
        assert f'<section id="{section}">' in page
    assert page.count("data:image/png;base64,") >= 2  # label efficiency + SHAP maps
    browser = chromium()
    if browser is None:
        pytest.skip("no chromium to open the report in (Debian: apt-get install chromium)")
    shown = subprocess.run(
        [browser, "--headless", "--no-sandbox", "--disable-gpu", "--enable-logging=stderr",
         "--v=0", "--virtual-time-budget=5000", "--dump-dom", report.as_uri()],
        capture_output=True, text=True, timeout=120,
    )  # fmt: skip
    assert shown.returncode == 0, shown.stderr[-2000:]
    sections = re.search(r'data-sections="([^"]*)"', shown.stdout)
    assert sections is not None, shown.stdout[:500]
    assert sections.group(1).split() == [f"{s}:visible" for s in SECTIONS]
    assert "CONSOLE" not in shown.stderr and "Uncaught" not in shown.stderr


@pytest.mark.shared_data
def test_the_post_training_grid_is_one_configuration(ptbxl_root: Path, tmp_path: Path) -> None:
    """benchmarks/configs/post_training.yaml runs post_training.py's cells: the same backbone,
    tasks, fractions, seeds and, per variant, the same recipe."""
    repo = Path(__file__).resolve().parents[1]
    spec = importlib.util.spec_from_file_location("post_training", repo / "benchmarks" /
                                                  "post_training.py")  # fmt: skip
    post_training = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(post_training)
    text = (repo / "benchmarks/configs/post_training.yaml").read_text()
    copy = repo / "benchmarks/configs" / f".test-{os.getpid()}.yaml"
    copy.write_text(text.replace("../../.cache/shared-data/ptbxl", str(ptbxl_root)))
    try:
        grid = cells(load_config(copy))
    finally:
        copy.unlink()
    assert {c.mode for c in grid} == set(post_training.MAIN)
    assert {(c.task.task, c.fraction, c.seed) for c in grid} == {
        (t, f, s) for t in ("superdiagnostic", "rhythm") for f in (0.1, 0.3, 1.0) for s in (0, 1, 2)
    }
    for cell in grid:
        assert cell.recipe == post_training.recipe_of(cell.mode), cell.mode
    (model,) = {c.model for c in grid}
    assert Path(model) == repo / "benchmarks/artifacts/standin-net1d-tiny-all/model"


@pytest.mark.shared_data
def test_a_fraction_leaving_a_label_without_positives_is_refused_first(
    small_copy: Path, tmp_path: Path
) -> None:
    settings = config(small_copy, fractions=[0.05], tasks=["ptbxl:rhythm"])
    with pytest.raises(BenchmarkConfigError, match=r"0.05 of ptbxl:rhythm's training records"):
        run_benchmark(settings, tmp_path / "bench", progress=False)
    assert not (tmp_path / "bench").exists()  # nothing ran, nothing was written


@pytest.mark.shared_data
def test_representations_are_compared_across_data_sources(
    small_copy: Path, ptbxl_root: Path, tmp_path: Path
) -> None:
    other = first_records_copy(ptbxl_root, tmp_path / "other", 12, folds=(1, 5, 7, 9))
    settings = config(small_copy, models={"ecgfoundry-cpc": ["linear-probe"]}, fractions=[1.0],
                      tasks=["ptbxl:superdiagnostic", "second:superdiagnostic"],
                      recipes={"linear-probe": {"batch_size": 16}},
                      analysis={"records": 80, "attribution": False})  # fmt: skip
    settings["data"]["second"] = {"kind": "ptbxl", "root": str(other)}
    run_benchmark(settings, tmp_path / "bench", cache_dir=tmp_path / "cache", progress=False)
    result = json.loads((tmp_path / "bench/analysis/representation.json").read_text())
    assert [e["task"] for e in result["models"]] == [
        "ptbxl:superdiagnostic", "second:superdiagnostic"]  # fmt: skip
    (across,) = result["dataset_separability"]
    assert across["datasets"] == ["ptbxl", "second"] and across["chance"] == 0.5
    assert -1 <= across["silhouette_by_dataset"] <= 1 and 0 <= across["balanced_accuracy"] <= 1
    assert not (tmp_path / "bench/analysis/attribution.json").exists()  # switched off
