"""Print the run folders under a results tree whose record is final (completed, diverged,
failed), for committing them while a study is still running:
    git add $(python scripts/finished_runs.py results/cpu) results/cpu/grid.json

The same rule as :func:`qrnn.study.runs.finished_runs`, kept free of imports so that
``scripts/sync_results.sh`` runs it with a bare ``python3`` (no torch); tests/test_runs.py
checks that the two agree."""

import json
import sys
from pathlib import Path

for rec in sorted(Path(sys.argv[1] if len(sys.argv) > 1 else "results").glob("**/run.json")):
    try:
        status = json.loads(rec.read_text())["status"]
    except (OSError, ValueError, KeyError, TypeError):
        continue
    if status in ("completed", "diverged", "failed"):
        print(rec.parent)
