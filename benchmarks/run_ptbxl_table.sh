#!/usr/bin/env bash
# The PTB-XL table grid through run_grid.sh (each finished cell committed).
# Usage: benchmarks/run_ptbxl_table.sh --root DIR/ptbxl [other ptbxl_table.py options]
cd "$(dirname "$0")/.." || exit 1
exec benchmarks/run_grid.sh ptbxl_table.py benchmarks/results/ptbxl_table.jsonl \
    benchmarks/results/ptbxl_table_predictions "$@"
