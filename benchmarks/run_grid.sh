#!/usr/bin/env bash
# Runs a resumable grid script (ptbxl_table.py, post_training.py) one cell at a time and commits
# each finished cell's row and kept predictions (only those paths), so a session that ends
# mid-grid loses at most one cell (which resumes from its checkpoint). The commit is named after
# the rows it adds: when two workers share the results files, a row the other one appended but
# has not committed yet goes into this commit, under its own name, and a worker whose row the
# other one already committed commits nothing.
# Usage: benchmarks/run_grid.sh SCRIPT RESULTS PREDICTIONS [the script's other options]
set -uo pipefail
cd "$(dirname "$0")/.."
PY=${PYTHON:-.venv/bin/python}
script=$1 results=$2 predictions=$3
shift 3
rows() { [ -f "$results" ] && wc -l < "$results" || echo 0; }
uncommitted() {  # the cells of the rows the results file has and HEAD has not
    git diff -U0 HEAD -- "$results" | sed -n 's/^+{/{/p' |
        "$PY" -c 'import json,sys; print(", ".join(json.loads(l)["cell"] for l in sys.stdin))'
}
while true; do
    before=$(rows)
    "$PY" "benchmarks/$script" --max-cells 1 --results "$results" --predictions "$predictions" \
        "$@" > /dev/null || exit 1
    [ "$(rows)" -eq "$before" ] && break  # nothing left to run
    for attempt in 1 2 3 4 5; do
        cells=$(uncommitted)
        [ -z "$cells" ] && break  # the other worker committed it
        echo "$(date -u +%FT%TZ) $script: $cells"
        git add "$results" "$predictions" &&
            git commit -q -m "${script%.py}: $cells" -- "$results" "$predictions" && break
        sleep 5
    done
done
