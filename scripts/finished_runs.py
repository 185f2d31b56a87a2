"""Print the run folders under a results tree whose record is final (completed, diverged,
failed), for committing them while a study is still running:
    git add $(python scripts/finished_runs.py results/cpu) results/cpu/grid.json"""

import json
import sys
from pathlib import Path

for rec in sorted(Path(sys.argv[1] if len(sys.argv) > 1 else "results").glob("**/run.json")):
    try:
        status = json.loads(rec.read_text())["status"]
    except (OSError, ValueError, KeyError):
        continue
    if status in ("completed", "diverged", "failed"):
        print(rec.parent)
