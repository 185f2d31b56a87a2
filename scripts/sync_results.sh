#!/usr/bin/env bash
# Copy the finished run folders (run.json, executed notebook, packed model.npz; no torch
# checkpoints) of a study that runs
# in another checkout into this one, with its post-training and hardware records:
# scripts/sync_results.sh OTHER_CHECKOUT [PROFILE]
# OTHER_CHECKOUT may be a folder holding results/ outside any checkout: the executed notebooks
# then name it by its absolute path, which the copies here replace by the repository's results/
set -euo pipefail
src="$1/results/${2:-cpu}"
abs="$(cd "$1" && pwd)"
dst="results/${2:-cpu}"
mkdir -p "$dst/runs"
cp "$src/grid.json" "$dst/grid.json"
for run in $(python3 scripts/finished_runs.py "$src"); do
  name=$(basename "$run")
  mkdir -p "$dst/runs/$name"
  cp "$run/run.json" "$dst/runs/$name/"
  for f in train.ipynb model.npz; do
    if [ -f "$run/$f" ]; then cp "$run/$f" "$dst/runs/$name/"; fi
    if [ "$f" = train.ipynb ] && [ -f "$dst/runs/$name/$f" ]; then
      sed -i "s#$abs/results/#results/#g" "$dst/runs/$name/$f"
    fi
  done
done
for extra in ptq hardware; do
  if [ -d "$src/$extra" ]; then
    mkdir -p "$dst/$extra" && cp -r "$src/$extra/." "$dst/$extra/"
  fi
done
