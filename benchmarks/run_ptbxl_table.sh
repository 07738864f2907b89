#!/usr/bin/env bash
# Runs benchmarks/ptbxl_table.py one cell at a time and commits each finished cell's row and
# predictions (only those paths), so a session that ends mid-grid loses at most one cell.
# Usage: benchmarks/run_ptbxl_table.sh --root DIR/ptbxl [other ptbxl_table.py options]
set -uo pipefail
cd "$(dirname "$0")/.."
PY=${PYTHON:-.venv/bin/python}
while true; do
    out=$("$PY" benchmarks/ptbxl_table.py --max-cells 1 "$@") || exit 1
    [ -z "$out" ] && break  # nothing left to run
    echo "$out"
    cell=$(echo "$out" | "$PY" -c 'import json,sys; print(json.loads(sys.stdin.readline())["cell"])')
    for attempt in 1 2 3 4 5; do
        git add benchmarks/results/ptbxl_table.jsonl benchmarks/results/ptbxl_table_predictions &&
            git commit -q -m "PTB-XL table: $cell" -- benchmarks/results/ptbxl_table.jsonl \
                benchmarks/results/ptbxl_table_predictions && break
        sleep 5
    done
done
