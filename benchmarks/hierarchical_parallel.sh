#!/usr/bin/env bash
# The hierarchical table's rows as parallel processes on one machine (a GPU has room for several
# small autoencoder runs at once), one seed each, then one merged table.
#
#   benchmarks/hierarchical_parallel.sh DATA_ROOT OUT_DIR SEED [extra `hiclust bench` flags...]
#
# Rows: deepect | deepect_aug | ae_bisecting + idec_complete (sharing one pre-trained autoencoder).
# Each row's log is OUT_DIR/<row>.log; each writes OUT_DIR/<row>/results.jsonl as it finishes.
set -uo pipefail
root=$1; out=$2; seed=$3; shift 3
mkdir -p "$out"
py=${PYTHON:-python3}
rows=("deepect" "deepect_aug" "ae_bisecting,idec_complete")
pids=()
for row in "${rows[@]}"; do
  name=${row//,/+}
  PYTHONUNBUFFERED=1 $py -m hiclust bench --table hierarchical --dataset mnist --root "$root" --methods "$row" \
    --seeds "$seed" --out "$out/$name" "$@" > "$out/$name.log" 2>&1 &
  pids+=($!)
done
status=0
for pid in "${pids[@]}"; do wait "$pid" || status=1; done
cat "$out"/*/results.jsonl > "$out/results.jsonl" 2>/dev/null
exit $status
