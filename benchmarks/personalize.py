"""Personalised VA detection, the whole protocol (issue 17): subjects with VA windows split by
subject into meta-train / meta-val / test (those without VA join meta-train), a global model
and three meta-trainings (MAML; MAML + curriculum; first-order MAML + curriculum), the bundled
foundation model's post-training steps chosen on the meta-validation subjects, then every
method scored on the test subjects at 1, 5 and 10 support windows per class under the
leak-free protocol and MetaVA's. Settings are the defaults of ``MAMLConfig``, fixed before any
test number existed (meta-val only picks each meta-training's best epoch).

    python benchmarks/personalize.py --data DIR/mitdb DIR/vfdb [DIR/cudb ...] \
        --runs runs/personalize --results benchmarks/results/personalize.json [--markdown]

Resumable: each training is an engine run under ``--runs`` (rerun the command to continue).
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import torch

from ecgfoundry.atomic import atomic_write_text
from ecgfoundry.personalize import (
    FoundationConfig,
    MAMLConfig,
    parse_shots,
    run_protocol,
    summary_markdown,
)
from ecgfoundry.personalize.run import per_subject_markdown


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", nargs="+", type=Path)
    parser.add_argument("--runs", type=Path, default=Path("runs/personalize"))
    parser.add_argument("--results", type=Path, default=Path("benchmarks/results/personalize.json"))
    parser.add_argument("--backbone", default="net1d-tiny")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--shots", default="1,5,10")
    parser.add_argument("--epochs", type=int, default=None, help="override MAMLConfig.epochs")
    parser.add_argument(
        "--foundation",
        default="ecgfoundry-cpc",
        help="pretrained model for the foundation-post-train baseline ('none')",
    )
    parser.add_argument("--markdown", action="store_true", help="print the table of --results")
    parser.add_argument(
        "--per-subject",
        metavar="PROTOCOL:SHOTS",
        help="with --markdown: each subject's AUROC / F1 per method instead",
    )
    args = parser.parse_args()
    if args.markdown:
        saved = json.loads(args.results.read_text())
        if args.per_subject:
            protocol, shots = args.per_subject.split(":")
            print(per_subject_markdown(saved["per_subject"], protocol, int(shots)))
        else:
            print(summary_markdown(saved["summary"]))
        return
    torch.set_num_threads(1)
    config = MAMLConfig() if args.epochs is None else MAMLConfig(epochs=args.epochs)
    result = run_protocol(args.data, args.runs, backbone_name=args.backbone, seed=args.seed,
                          shots=parse_shots(args.shots), config=config,
                          foundation=None if args.foundation == "none" else
                          FoundationConfig(model=args.foundation),
                          log=lambda line: print(line, flush=True))  # fmt: skip
    table = result["summary"]
    args.results.parent.mkdir(parents=True, exist_ok=True)
    atomic_write_text(args.results, json.dumps(result, indent=1))
    print(summary_markdown(table))
    print(json.dumps({"subjects_skipped": len(result["skipped"]), "minutes": result["minutes"]}))


if __name__ == "__main__":
    main()
