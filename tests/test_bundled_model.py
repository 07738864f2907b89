"""The bundled foundation model ships in the package and loads offline by name: it is the
registered architecture, pretrained (it predicts real ECGs' future far better than chance or
its untrained self), never saw PTB-XL folds 9-10, and carries its model card."""

from __future__ import annotations

import json
import shutil
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch
from test_ptbxl import first_records_copy
from test_published_predictions import load_script

from ecgfoundry.adapt import finetune
from ecgfoundry.data import ptbxl
from ecgfoundry.data.transforms import model_windows
from ecgfoundry.inference import load_inputs
from ecgfoundry.models.registry import (
    BUNDLED_DIR,
    build_config,
    create_model,
    list_models,
    load_model,
    model_folder,
    resolve_model,
)
from ecgfoundry.pretrain.cpc import CPCNet, cpc_logits, info_nce, sample_negatives
from ecgfoundry.pretrain.leakage import LeakageError, check_leakage, read_manifest

NAME = "ecgfoundry-cpc"
PACKAGE_LIMIT_MB = 25.0


def test_it_is_listed_as_pretrained_and_loads_offline_by_name() -> None:
    rows = {row["name"]: row for row in list_models()}
    assert [name for name, row in rows.items() if row["pretrained"]] == [NAME]
    model = resolve_model(NAME)
    assert model.config.to_dict() == build_config(NAME).to_dict()  # the registered architecture
    assert model_folder(NAME) == BUNDLED_DIR / NAME
    loaded = load_model(NAME)  # load_model takes the name too, and remembers where it read
    assert loaded.origin == model.origin == BUNDLED_DIR / NAME
    assert all(torch.equal(v, loaded.state_dict()[k]) for k, v in model.state_dict().items())
    classifier = create_model(NAME, pretrained=True, num_classes=5)
    body = {k: v for k, v in model.state_dict().items() if not k.startswith("head.")}
    assert all(torch.equal(v, classifier.state_dict()[k]) for k, v in body.items())
    assert classifier.num_classes == 5


def test_the_package_holds_the_card_and_stays_small() -> None:
    folder = BUNDLED_DIR / NAME
    expected = {"config.json", "model.safetensors", "manifest.json", "pretraining.json"}
    assert expected | {"MODEL_CARD.md"} <= {p.name for p in folder.iterdir()}
    card = (folder / "MODEL_CARD.md").read_text()
    run = json.loads((folder / "pretraining.json").read_text())
    manifest = read_manifest(folder)
    assert manifest is not None and manifest["hash"] in card
    assert f"{run['epochs']} epochs" in card and "CC BY 4.0" in card
    package = BUNDLED_DIR.parent
    size = sum(f.stat().st_size for f in package.rglob("*") if "__pycache__" not in f.parts
               and f.is_file())  # fmt: skip
    assert size / 1e6 < PACKAGE_LIMIT_MB


@pytest.mark.shared_data
def test_its_card_is_what_the_committed_quality_results_give(
    ptbxl_root: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    root = Path(__file__).resolve().parents[1]
    script = load_script("bundle_model")
    shutil.copytree(BUNDLED_DIR / NAME, tmp_path / NAME)
    (tmp_path / NAME / "MODEL_CARD.md").unlink()
    monkeypatch.setattr(script, "BUNDLED_DIR", tmp_path)
    quality = root / "benchmarks/results/bundled_quality.json"
    monkeypatch.setattr(sys, "argv", ["bundle_model.py", "--name", NAME, "--quality", str(quality),
                                      "--ptbxl-root", str(ptbxl_root)])  # fmt: skip
    script.main()  # no run folder: the card is refreshed from the bundled files
    card = (tmp_path / NAME / "MODEL_CARD.md").read_text()
    assert card == (BUNDLED_DIR / NAME / "MODEL_CARD.md").read_text()
    listed = len(pd.read_csv(ptbxl_root / ptbxl.DATABASE_CSV))
    assert f"PTB-XL folds 1-8 of a copy whose database lists {listed:,} of the release's" in card
    rows = json.loads(quality.read_text())["comparisons"]
    assert all(f"{row['difference']['value']:+.3f}" in card for row in rows if row["difference"])


@pytest.mark.shared_data
def test_its_corpus_never_held_ptbxl_folds_9_or_10(ptbxl_root: Path) -> None:
    manifest = read_manifest(BUNDLED_DIR / NAME)
    assert manifest is not None
    table = pd.read_csv(ptbxl_root / ptbxl.DATABASE_CSV, index_col="ecg_id")
    ids = [int(r["id"].split(":")[1]) for r in manifest["records"]]
    assert all(r["id"].startswith("ptbxl:") for r in manifest["records"])
    assert set(table.loc[ids, "strat_fold"]) <= set(range(1, 9))
    fold9 = [f"ptbxl:{i}" for i in table.index[table.strat_fold == 9]]
    assert check_leakage(model_folder(NAME), fold9)["status"] == "clean"
    with pytest.raises(LeakageError):
        check_leakage(model_folder(NAME), [f"ptbxl:{ids[0]}", *fold9[:3]])


@pytest.mark.shared_data
def test_it_predicts_unseen_ecgs_futures_far_better_than_untrained(ptbxl_root: Path) -> None:
    """CPC accuracy (the true future among 129) on fold-9 records: the pretraining worked."""
    table = pd.read_csv(ptbxl_root / ptbxl.DATABASE_CSV, index_col="ecg_id")
    fold9 = table.index[table.strat_fold == 9][:16]
    records = load_inputs([ptbxl_root / f"{table.loc[i, 'filename_lr']}.hea" for i in fold9])
    model = resolve_model(NAME)
    x = torch.from_numpy(np.stack([model_windows(r, model.spec)[0][0] for r in records]))
    torch.manual_seed(0)
    untrained = resolve_model(NAME, weights=False).eval()
    run = json.loads((BUNDLED_DIR / NAME / "pretraining.json").read_text())
    steps = run["settings"]["config"]["steps_ahead"]

    def accuracy(net: torch.nn.Module) -> float:
        with torch.no_grad():
            predictions, targets = CPCNet(net)(x)
            generator = torch.Generator().manual_seed(0)
            negatives = sample_negatives(len(x), targets.shape[1], steps, 128, generator=generator)
            right = info_nce(cpc_logits(predictions, targets, steps, negatives))[1]
            return right.float().mean().item()

    trained, chance = accuracy(model), accuracy(untrained)
    assert trained > 0.3 and trained > 5 * max(chance, 1 / 129)


@pytest.mark.shared_data
def test_finetuning_it_by_name_checks_its_manifest(ptbxl_root: Path, tmp_path: Path) -> None:
    copy = first_records_copy(ptbxl_root, tmp_path / "ptbxl", 10, folds=(1, 5, 7, 9))
    metrics = finetune(NAME, root=copy, task="superdiagnostic",
                       strategy="linear-probe", out=tmp_path / "probe",
                       config={"batch_size": 8, "stages.0.epochs": 1},
                       cache_dir=tmp_path / "cache", progress_bar=False)  # fmt: skip
    check = metrics["run"]["leakage_check"]
    assert check["status"] == "clean" and check["checked"] == metrics["run"]["val_records"] > 0
    assert check["manifest"] == read_manifest(BUNDLED_DIR / NAME)["hash"]
