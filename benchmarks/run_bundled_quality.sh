#!/usr/bin/env bash
# The bundled model's quality grid (issue 15, point 7), the most telling cells first: post-train
# and scratch at 10 %, then post-train at 100 % (the 100 % target), then fine-tune and
# post-train at 30 % and 100 % (seed 0: the cells the post-training verdict compares), then the
# whole post-training grid, seed 0 first (one seed of every cell), then seeds 1-2; each finished
# cell is committed (run_grid.sh). Extra arguments go to every step: two workers can split the
# tasks (--tasks superdiagnostic / --tasks rhythm).
# The task-specific baselines at 10 % come from
#   benchmarks/run_ptbxl_table.sh --root DIR --fraction 0.1 --seeds 0,1,2 --tasks superdiagnostic,rhythm
# Usage: benchmarks/run_bundled_quality.sh --root DIR/ptbxl [--cache-dir DIR]; then
#   python benchmarks/bundled_quality.py --markdown
set -uo pipefail
cd "$(dirname "$0")/.."
grid() {
    benchmarks/run_grid.sh post_training.py benchmarks/results/post_training_ecgfoundry_cpc.jsonl \
        benchmarks/results/post_training_ecgfoundry_cpc_predictions --backbone ecgfoundry-cpc \
        --runs runs/post_training_cpc "$@"
}
grid --fractions 0.1 --variants post-train,scratch "$@" &&
    grid --fractions 1.0 --variants post-train "$@" &&
    grid --fractions 0.3,1.0 --variants finetune,post-train --seeds 0 "$@" &&
    grid --fractions 0.1,0.3,1.0 --variants main --seeds 0 "$@" &&
    grid --fractions 0.1,0.3,1.0 --variants main "$@"
