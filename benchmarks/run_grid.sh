#!/usr/bin/env bash
# Runs a resumable grid script (ptbxl_table.py, post_training.py) one cell at a time and commits
# each finished cell's row and kept predictions (only those paths), so a session that ends
# mid-grid loses at most one cell (which resumes from its checkpoint).
# Usage: benchmarks/run_grid.sh SCRIPT RESULTS PREDICTIONS [the script's other options]
set -uo pipefail
cd "$(dirname "$0")/.."
PY=${PYTHON:-.venv/bin/python}
script=$1 results=$2 predictions=$3
shift 3
rows() { [ -f "$results" ] && wc -l < "$results" || echo 0; }
while true; do
    before=$(rows)
    "$PY" "benchmarks/$script" --max-cells 1 --results "$results" --predictions "$predictions" \
        "$@" > /dev/null || exit 1
    [ "$(rows)" -eq "$before" ] && break  # nothing left to run
    cell=$(tail -n 1 "$results" | "$PY" -c 'import json,sys; print(json.load(sys.stdin)["cell"])')
    echo "$(date -u +%FT%TZ) $script: $cell"
    for attempt in 1 2 3 4 5; do
        git add "$results" "$predictions" &&
            git commit -q -m "${script%.py}: $cell" -- "$results" "$predictions" && break
        sleep 5
    done
done
