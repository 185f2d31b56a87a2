"""Drop the run records of a profile that its current grid no longer has.

A changed experiment setting gives its runs new ids; the old records would otherwise stay in
``results/<profile>/grid.json`` and be summarized beside the new ones. They remain in git
history. Usage: ``python scripts/prune_stale.py PROFILE [--results DIR] [--dry-run]``.
"""

from __future__ import annotations

import argparse
import json
import shutil
from pathlib import Path

from qrnn import study
from qrnn.study.records import atomic_write_json


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("profile", choices=list(study.PROFILES))
    ap.add_argument("--results", default="results")
    ap.add_argument("--dry-run", action="store_true", help="list what would go, change nothing")
    args = ap.parse_args(argv)
    folder = Path(args.results) / args.profile
    current = {r.run_id for r in study.grid(args.profile)}
    gpath = folder / "grid.json"
    labels = json.loads(gpath.read_text()) if gpath.exists() else {}
    runs = folder / "runs"
    on_disk = {p.name for p in runs.iterdir() if p.is_dir()} if runs.is_dir() else set()
    # the per-run records of the post-training and hardware steps
    extras = {p.stem: p for sub in ("ptq", "hardware") for p in (folder / sub).glob("*.json")}
    stale = sorted((set(labels) | on_disk | set(extras)) - current)
    for run_id in stale:
        print(f"{'would drop' if args.dry_run else 'dropping'} {run_id}")
        if not args.dry_run and (runs / run_id).is_dir():
            shutil.rmtree(runs / run_id)
        if not args.dry_run and run_id in extras:
            extras[run_id].unlink()
    if not args.dry_run and labels:
        atomic_write_json(gpath, {k: v for k, v in labels.items() if k in current})
    print(f"{len(stale)} stale of {len(labels)} labelled runs ({args.profile})")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
