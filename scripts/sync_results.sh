#!/usr/bin/env bash
# Copy the finished run folders (run.json + executed notebook, no weights) of a study that runs
# in another checkout into this one, with its post-training and hardware records:
# scripts/sync_results.sh OTHER_CHECKOUT [PROFILE]
set -euo pipefail
src="$1/results/${2:-cpu}"
dst="results/${2:-cpu}"
mkdir -p "$dst/runs"
cp "$src/grid.json" "$dst/grid.json"
for run in $(python3 scripts/finished_runs.py "$src"); do
  name=$(basename "$run")
  mkdir -p "$dst/runs/$name"
  cp "$run/run.json" "$dst/runs/$name/"
  [ -f "$run/train.ipynb" ] && cp "$run/train.ipynb" "$dst/runs/$name/"
done
for extra in ptq hardware; do
  if [ -d "$src/$extra" ]; then
    mkdir -p "$dst/$extra" && cp -r "$src/$extra/." "$dst/$extra/"
  fi
done
