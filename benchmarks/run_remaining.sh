#!/usr/bin/env bash
# The cells the PTB-XL table (revision 2) and the bundled model's quality grid still need, the
# most telling first, in two lanes that share no cell, so two workers (one per core) can run
# side by side. Every step skips finished cells and resumes an interrupted one from its
# checkpoint, so rerunning a lane goes on where it stopped; each finished cell is committed.
#   lane superdiagnostic: the bundled model post-trained at 100 % (seeds 0-2), the table's
#     superdiagnostic cells and its `all` and `diagnostic` cells, then the bundled grid
#     at 30 % and 100 % on superdiagnostic: fine-tune and post-train (seed 0, then seeds 1-2),
#     the cells the post-training verdict compares, then every variant (seed 0 first, then
#     seeds 1-2);
#   lane rhythm: the same on rhythm, with the table's `subdiagnostic` cells, except that the
#     bundled model's seed 2 at 100 % comes after the table (issue 14's cells first).
# In the table, resnet1d-wang and xresnet1d101 come before inception1d: revision 1's
# xresnet1d101 cells were the ones off the published values, and an inception1d cell takes
# the longest (10 hours on one core with direct convolutions, about 4 since they run by FFT;
# the others about 3).
# Both lanes append to the same results files; run_grid.sh names each commit after the rows it
# adds, whichever lane wrote them.
# Usage: OMP_NUM_THREADS=1 benchmarks/run_remaining.sh superdiagnostic|rhythm --root DIR/ptbxl
#        [--cache-dir DIR]
set -uo pipefail
cd "$(dirname "$0")/.."
lane=${1:-}
case $lane in
    superdiagnostic) others=all,diagnostic first_seeds=0,1,2 ;;
    rhythm) others=subdiagnostic first_seeds=0,1 ;;
    *) echo "usage: $0 superdiagnostic|rhythm --root DIR/ptbxl [--cache-dir DIR]" >&2; exit 2 ;;
esac
shift
bundled() {
    benchmarks/run_grid.sh post_training.py benchmarks/results/post_training_ecgfoundry_cpc.jsonl \
        benchmarks/results/post_training_ecgfoundry_cpc_predictions --backbone ecgfoundry-cpc \
        --runs runs/post_training_cpc --tasks "$lane" "$@"
}
table() { benchmarks/run_ptbxl_table.sh "$@"; }
bundled --fractions 1.0 --variants post-train --seeds "$first_seeds" "$@" &&
    table --models resnet1d-wang --tasks "$lane" --seeds 0,1,2 "$@" &&
    table --models xresnet1d101 --tasks "$lane" --seeds 0 "$@" &&
    table --models resnet1d-wang,xresnet1d101 --tasks "$others" --seeds 0 "$@" &&
    table --models inception1d --tasks "$lane,$others" --seeds 0 "$@" &&
    bundled --fractions 1.0 --variants post-train "$@" &&
    bundled --fractions 0.3,1.0 --variants finetune,post-train --seeds 0 "$@" &&
    bundled --fractions 0.3,1.0 --variants finetune,post-train "$@" &&
    bundled --fractions 0.3,1.0 --variants main --seeds 0 "$@" &&
    bundled --fractions 0.3,1.0 --variants main "$@"
