"""``benchmark report``: one self-contained HTML file from a benchmark folder — figures embedded
as data URIs, no script or font from the network, readable offline and printable.

Sections: performance (macro AUROC/AUPRC with bootstrap CIs per model, mode, label fraction),
label efficiency (curves), representation (numbers and UMAP maps), cross-dataset transfer
(in-domain, zero-shot and in-target probe AUROC per label), attribution (SHAP maps with their
sanity checks) and provenance (versions, commands, hardware, data, leakage checks).
A section without results says what would fill it. A small inline script marks, for the
browser test, which sections render something visible.
"""

from __future__ import annotations

import base64
import html
import json
import time
from pathlib import Path
from typing import Any

import pandas as pd

from ecgfoundry import __version__
from ecgfoundry.atomic import atomic_write_text
from ecgfoundry.benchmark.figures import efficiency_figure
from ecgfoundry.benchmark.grid import ANALYSIS
from ecgfoundry.benchmark.results import collect, summary_with_test
from ecgfoundry.errors import UsageError

STYLE = """
body{font:14px/1.45 system-ui,-apple-system,"Segoe UI",sans-serif;margin:2em auto;max-width:1100px;
padding:0 1em;color:#1d1d1f}
h1{font-size:1.6em}h2{border-bottom:1px solid #ccc;padding-bottom:.2em;margin-top:2em}
table{border-collapse:collapse;margin:.6em 0 1.2em;font-size:13px}
th,td{border:1px solid #ddd;padding:.25em .6em;text-align:right}th{background:#f4f4f6}
td:first-child,th:first-child,td.text{text-align:left}
img{max-width:100%;border:1px solid #eee;margin:.4em 0}
.note{color:#555;font-size:13px}.fail{color:#b00020;font-weight:600}.pass{color:#1b7f3b}
@media print{body{max-width:none;margin:0}h2{page-break-after:avoid}img{page-break-inside:avoid}}
"""
# Marks each section visible (non-zero size and some text or image) for the browser test.
CHECK = """
document.addEventListener("DOMContentLoaded",()=>{const r=[];
for(const s of document.querySelectorAll("section")){const b=s.getBoundingClientRect();
const shown=b.height>0&&b.width>0&&(s.innerText.trim().length>0||s.querySelector("img"));
r.push(s.id+":"+(shown?"visible":"hidden"));}
document.body.dataset.sections=r.join(" ");});
"""


def _e(value: Any) -> str:
    return html.escape(str(value))


def _image(data: bytes, alt: str) -> str:
    return f'<img alt="{_e(alt)}" src="data:image/png;base64,{base64.b64encode(data).decode()}">'


def _table(headers: list[str], rows: list[list[Any]], text_columns: int = 1) -> str:
    head = "".join(f"<th>{_e(h)}</th>" for h in headers)
    body = "".join(
        "<tr>" + "".join(f'<td class="{"text" if i < text_columns else ""}">{_e(v)}</td>'
                         for i, v in enumerate(row)) + "</tr>"
        for row in rows
    )  # fmt: skip
    return f"<table><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>"


def _number(value: Any, digits: int = 3) -> str:
    return "–" if value is None or pd.isna(value) else f"{value:.{digits}f}"


def _performance(table: pd.DataFrame) -> str:
    rows = summary_with_test(table)
    if not rows:
        return (
            '<p class="note">No finished cell yet: run <code>ecgfoundry benchmark run</code>.</p>'
        )
    headers = ["model", "mode", "labels", "seeds", "macro AUROC", "95 % CI (mean over seeds)",
               "macro AUPRC"]  # fmt: skip
    out = []
    for task in sorted({f"{r['data']}:{r['task']}" for r in rows}):
        chosen = [r for r in rows if f"{r['data']}:{r['task']}" == task]
        with_test = any("test" in r for r in chosen)
        lines = []
        for r in chosen:
            line = [r["model"], r["mode"], f"{r['fraction']:.0%}", len(r["seeds"]), *_scores(r)]
            if with_test:
                line += _scores(r["test"]) if "test" in r else ["–", "–", "–"]
            lines.append(line)
        test_headers = ["test macro AUROC", "test 95 % CI", "test macro AUPRC"]
        out.append(f"<h3>{_e(task)}</h3>" + _table(
            headers + (test_headers if with_test else []), lines, text_columns=2))  # fmt: skip
    refused = table[table["status"] == "refused"]
    if len(refused):
        out.append(f'<p class="fail">{len(refused)} cell(s) refused by the leakage guard: '
                   f"{_e(', '.join(refused['cell']))}</p>")  # fmt: skip
    out.append('<p class="note">Validation split: PTB-XL fold 9; other data, its validation '
               "share or rows. Test columns, where the data has a test split: PTB-XL fold 10 "
               "(when the copy holds it), a CinC folder's held-out test share, a table's test "
               "rows; never used for choosing. "
               "CI: bootstrap over the evaluated records (1000 resamples), averaged over "
               "seeds.</p>")  # fmt: skip
    return "".join(out)


def _scores(entry: dict[str, Any]) -> list[str]:
    """Mean macro AUROC (± sd over seeds), its CI and mean macro AUPRC, as table cells."""
    sd = f" ± {entry['macro_auroc_sd']:.3f}" if entry["macro_auroc_sd"] is not None else ""
    low, high = entry["macro_auroc_low"], entry["macro_auroc_high"]
    return [f"{entry['macro_auroc']:.3f}{sd}", f"[{_number(low)}, {_number(high)}]",
            _number(entry["macro_auprc"])]  # fmt: skip


def _efficiency(table: pd.DataFrame) -> str:
    done = table[(table["status"] == "done") & (table["split"] == "val")]
    if done.empty or done["fraction"].nunique() < 2:
        return '<p class="note">Needs cells at two or more label fractions.</p>'
    tasks = sorted(set(done["data"] + ":" + done["task"]))
    return "".join(_image(efficiency_figure(table, t), f"label efficiency on {t}") for t in tasks)


def _representation(out: Path) -> str:
    path = out / ANALYSIS / "representation.json"
    if not path.is_file():
        return ('<p class="note">Not analysed: add <code>analysis: {representation: true}'
                "</code> to the configuration.</p>")  # fmt: skip
    data = json.loads(path.read_text())
    rows = [[e["model"], e["task"], e["records"]["val"], _number(e["knn_auroc"]),
             _number(e["linear_probe_auroc"]), _number(e.get("silhouette_by_label")),
             f"{e['effective_rank']:.1f} / {e['dimensions']}", _number(e.get("trustworthiness"))]
            for e in data["models"]]  # fmt: skip
    parts = [_table(["model", "task", "records", "k-NN AUROC", "linear-probe AUROC",
                     "silhouette (label)", "effective rank / dims", "UMAP trustworthiness"],
                    rows, text_columns=2)]  # fmt: skip
    if data["cka"]:
        parts.append("<h3>Linear CKA between models (same records)</h3>" + _table(
            ["task", "models", "CKA"],
            [[c["task"], " vs ".join(c["models"]), _number(c["linear_cka"])] for c in data["cka"]],
            text_columns=2))  # fmt: skip
    for entry in data["models"]:
        if "map" in entry:
            parts.append(_image((out / entry["map"]).read_bytes(),
                                f"UMAP of {entry['model']} on {entry['task']}"))  # fmt: skip
    if data["dataset_separability"]:
        parts.append("<h3>Across datasets</h3>" + _table(
            ["model", "datasets", "balanced accuracy", "chance", "separability (0 none, 1 full)",
             "silhouette (dataset)", "UMAP trustworthiness"],
            [[s["model"], ", ".join(s["datasets"]), _number(s["balanced_accuracy"]),
              _number(s["chance"]), _number(s["separability"]),
              _number(s["silhouette_by_dataset"]), _number(s.get("trustworthiness"))]
             for s in data["dataset_separability"]],
            text_columns=2))  # fmt: skip
        for entry in data["dataset_separability"]:
            if "map" in entry:
                parts.append(_image((out / entry["map"]).read_bytes(),
                                    f"UMAP of {entry['model']} across datasets"))  # fmt: skip
    parts.append(
        '<p class="note">k-NN (k = 10, cosine) and linear-probe AUROC: training -> '
        "validation records of the frozen model; silhouette over records with one "
        "label; trustworthiness: how far the 2-D map keeps 10 nearest neighbours.</p>"
    )
    return "".join(parts)


def _attribution(out: Path) -> str:
    path = out / ANALYSIS / "attribution.json"
    if not path.is_file():
        return ('<p class="note">Not analysed: add <code>analysis: {attribution: true}</code> '
                "to the configuration.</p>")  # fmt: skip
    parts = []
    for entry in json.loads(path.read_text()):
        rows = []
        for c in entry["classes"]:
            checks = c["checks"]
            verdict = ('<span class="pass">passes</span>' if checks["randomisation_passes"]
                       else '<span class="fail">fails</span>')  # fmt: skip
            rows.append((c["label"], _number(checks["randomisation_similarity"]), verdict,
                         _number(checks["explainer_seed_agreement"]),
                         _number(checks.get("model_seed_agreement")),
                         _number(checks["additivity_error"])))  # fmt: skip
        head = [
            "class",
            "similarity to a randomised model",
            "randomisation check",
            "explainer-seed agreement",
            "training-seed agreement",
            "additivity error",
        ]
        table = "<table><thead><tr>" + "".join(f"<th>{_e(h)}</th>" for h in head) + "</tr>"
        table += "".join(
            "<tr>"
            + "".join(f"<td>{v if i == 2 else _e(v)}</td>" for i, v in enumerate(r))
            + "</tr>"
            for r in rows
        )
        parts.append(f"<h3>{_e(entry['model'])} ({_e(entry['mode'])}) on {_e(entry['task'])}, "
                     f"{entry['records']} records</h3>" + table + "</table>"
                     + _image((out / entry["figure"]).read_bytes(), "SHAP maps"))  # fmt: skip
    parts.append('<p class="note">Expected-gradient SHAP values summed per lead and time '
                 "segment. Randomisation check: Spearman correlation of the absolute maps of the "
                 "trained and a randomly initialised model; below 0.5 passes (the map depends "
                 "on what the model learned). Agreement: Spearman correlation between two "
                 "explainer seeds / two training seeds.</p>")  # fmt: skip
    return "".join(parts) or '<p class="note">No adapted model to explain yet.</p>'


def _transfer(out: Path) -> str:
    path = out / ANALYSIS / "transfer.json"
    if not path.is_file():
        return ('<p class="note">Not configured: add <code>transfer: {targets: [a CinC '
                "data source]}</code> to score the adapted models elsewhere.</p>")  # fmt: skip
    rows = pd.DataFrame(json.loads(path.read_text()))
    if rows.empty:
        return '<p class="note">No adapted model to transfer yet.</p>'
    parts = []
    keys = ["task", "target", "model", "mode"]
    for (task, target, model, mode), group in rows.groupby(keys, sort=True):
        means = group.groupby("label").agg(
            positives=("positives", "first"), test_positives=("test_positives", "first"),
            in_domain=("in_domain", "mean"), zero_shot=("zero_shot", "mean"),
            probe=("probe", "mean"))  # fmt: skip
        lines = [[label, int(r.positives), _number(r.in_domain), _number(r.zero_shot),
                  int(r.test_positives), _number(r.probe)]
                 for label, r in means.iterrows()]  # fmt: skip
        left_out = int(group["ptbxl_records_left_out"].iloc[0])
        parts.append(
            f"<h3>{_e(model)} ({_e(mode)}), adapted on {_e(task)}, scored on {_e(target)} "
            f"({int(group['records'].iloc[0])} records; {left_out} PTB-XL copies left out; "
            f"{group['seed'].nunique()} seed(s))</h3>"
            + _table(["label", "positives", "AUROC in domain (PTB-XL val)", "AUROC zero-shot",
                      "test positives", "AUROC linear probe in target"], lines))  # fmt: skip
    parts.append(
        '<p class="note">Labels via the SNOMED-CT mapping of PTB-XL statements '
        "(ecgfoundry/data/mappings/snomed_scp.md). Zero-shot: the adapted model as it "
        "is, on every target record. Probe: logistic regression on its embeddings, "
        "trained on 80 % of the target's records and scored on 10 % (record level).</p>"
    )
    return "".join(parts)


def _provenance(out: Path, table: pd.DataFrame) -> str:
    runs = []
    if (out / "runs.jsonl").is_file():
        runs = [json.loads(line) for line in (out / "runs.jsonl").read_text().splitlines()]
    rows = [[r.get("started", ""), r.get("ecgfoundry", ""), r.get("torch", ""),
             r.get("hardware", {}).get("cpu", ""), " ".join(map(str, r.get("command", [])))]
            for r in runs]  # fmt: skip
    parts = [_table(["started", "ecgfoundry", "torch", "CPU", "command"], rows, text_columns=5)]
    checks = table.drop_duplicates("cell")["leakage_check"].fillna("not run").value_counts()
    parts.append("<p>Leakage checks of the cells (evaluation records against each model's "
                 "pretraining manifest): " + ", ".join(f"{_e(k)}: {v}" for k, v in checks.items())
                 + ".</p>")  # fmt: skip
    cells_file = out / "cells.json"
    if cells_file.is_file():
        sources = {(c["data"], c["data_kind"], c["data_root"]) for c in json.loads(
            cells_file.read_text())}  # fmt: skip
        parts.append(_table(["data", "kind", "location"], sorted(map(list, sources)),
                            text_columns=3))  # fmt: skip
    return "".join(parts)


def write_report(out: str | Path, report: str | Path | None = None) -> Path:
    """Write the HTML report of the benchmark folder ``out`` (default ``out/report.html``)."""
    out = Path(out)
    if not (out / "cells.json").is_file():
        raise UsageError(f"{out}: not a benchmark folder (no cells.json); run "
                         "`ecgfoundry benchmark run CONFIG --out DIR` first")  # fmt: skip
    table = collect(out)
    sections = [
        ("performance", "Performance", _performance(table)),
        ("efficiency", "Label efficiency", _efficiency(table)),
        ("representation", "Representation", _representation(out)),
        ("transfer", "Cross-dataset transfer", _transfer(out)),
        ("attribution", "Attribution (SHAP)", _attribution(out)),
        ("provenance", "Provenance", _provenance(out, table)),
    ]
    body = "".join(f'<section id="{key}"><h2>{_e(title)}</h2>{content}</section>'
                   for key, title, content in sections)  # fmt: skip
    stamp = time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime())
    page = (f'<!DOCTYPE html><html lang="en"><head><meta charset="utf-8"><title>ecgfoundry '
            f"benchmark: {_e(out.name)}</title><style>{STYLE}</style><script>{CHECK}</script>"
            f"</head><body><h1>ecgfoundry benchmark: {_e(out.name)}</h1><p class=\"note\">"
            f"{stamp}, ecgfoundry {__version__}, {len(table.drop_duplicates('cell'))} cells."
            f"</p>{body}</body></html>")  # fmt: skip
    target = Path(report) if report is not None else out / "report.html"
    atomic_write_text(target, page)
    return target


__all__ = ["write_report"]
