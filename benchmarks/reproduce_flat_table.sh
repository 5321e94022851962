#!/usr/bin/env bash
# Reproduces the CoHiClust paper's flat table (CoHiClust and CC on CIFAR-10, CIFAR-100/20, STL-10,
# ImageNet-10, ImageNet-Dogs) on one GPU with the bundled presets, for every data set that
# DATA_ROOT holds (torchvision's layouts: cifar-10-batches-py/, cifar-100-python/, stl10_binary/;
# ImageNet: train/<wnid>/*.JPEG). Resumable: a run with metrics.json is skipped, a run with a
# checkpoint continues from it; run it again after an interruption. Writes RUNS_DIR/table.md and
# table.csv (ours beside the published numbers) at the end, also when some runs failed.
#
#   benchmarks/reproduce_flat_table.sh DATA_ROOT [RUNS_DIR=runs/flat]
#   HICLUST="python -m hiclust" benchmarks/reproduce_flat_table.sh ...   # without the console script
#
# Each recipe is 1000-1500 epochs: days of GPU time in all (benchmarks/RESULTS.md gives the
# measured rate and the projected hours per preset).
set -uo pipefail

if [ $# -lt 1 ] || [ ! -d "$1" ]; then
  echo "usage: $0 DATA_ROOT [RUNS_DIR]  (DATA_ROOT: an existing directory with the data sets)" >&2
  exit 2
fi
DATA_ROOT=$(cd "$1" && pwd)  # absolute: run.json keeps it, and resumes may start elsewhere
RUNS=${2:-runs/flat}
HICLUST=${HICLUST:-hiclust}

presets=$($HICLUST flat-table available "$DATA_ROOT") || exit 2
if [ -z "$presets" ]; then
  echo "$DATA_ROOT holds none of the flat-table data sets (cifar-10-batches-py, cifar-100-python, stl10_binary, train/<wnid>)" >&2
  exit 2
fi
mkdir -p "$RUNS"
failed=()
for p in $presets; do
  run="$RUNS/$p"
  if [ -f "$run/metrics.json" ]; then
    echo "== $p: done, skipped ($run/metrics.json)"
    continue
  elif [ -f "$run/checkpoint.pt" ]; then
    echo "== $p: resuming from $run/checkpoint.pt"
    $HICLUST train --resume "$run" || failed+=("$p")
  elif [ -f "$run/run.json" ]; then
    # Started but stopped before its first checkpoint: nothing to keep but the files it wrote itself.
    echo "== $p: restarting (no checkpoint yet)"
    $HICLUST train --config "$p" --root "$DATA_ROOT" --out "$run" --overwrite || failed+=("$p")
  else
    echo "== $p: training into $run"
    $HICLUST train --config "$p" --root "$DATA_ROOT" --out "$run" || failed+=("$p")
  fi
done
$HICLUST flat-table table "$RUNS"
if [ ${#failed[@]} -gt 0 ]; then
  echo "failed: ${failed[*]} (run the script again to resume them)" >&2
  exit 1
fi
