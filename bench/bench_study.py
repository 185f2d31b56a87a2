"""Wall time of the study profiles and runs per hour on this machine.

* ``smoke``: runs the whole smoke profile now in a temporary folder (papermill included) and
  times it, once with the local executor; ``--dask`` adds a Dask LocalCluster run (ratio
  against local in the same invocation).
* ``cpu`` (or any profile with records): reads the committed run records under
  ``results/<profile>/runs`` and reports the span from the first start to the last finish,
  the summed training time, and runs per hour (records do not need rerunning).

    python bench/bench_study.py [--dask] [--profile cpu]
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from qrnn import study


def time_smoke(executor: str) -> tuple[float, int]:
    with tempfile.TemporaryDirectory() as tmp:
        t0 = time.perf_counter()
        out = study.run_study("smoke", tmp, executor=executor, quiet=True)
        return time.perf_counter() - t0, len(out)


def _busy_hours(intervals: list[tuple[dt.datetime, dt.datetime]]) -> float:
    """Hours during which at least one run was active (union of [started, finished])."""
    total, end = 0.0, None
    for a, b in sorted(intervals):
        if end is None or a > end:
            total += (b - a).total_seconds()
            end = b
        elif b > end:
            total += (b - end).total_seconds()
            end = b
    return total / 3600


def from_records(profile: str, results: Path) -> dict:
    recs = []
    for p in sorted((results / profile / "runs").glob("*/run.json")):
        r = json.loads(p.read_text())
        if r["status"] != "running" and r["finished"]:
            recs.append(r)
    if not recs:
        return {"runs": 0}

    def ts(s):
        return dt.datetime.strptime(s, "%Y-%m-%dT%H:%M:%SZ")

    labels = {run.run_id: run.labels()["experiment"] for run in study.grid(profile)}
    rows: dict[str, dict] = {}
    for r in recs:
        row = rows.setdefault(labels.get(r["run_id"], "(not in grid)"), {"runs": 0, "train_h": 0.0})
        row["runs"] += 1
        row["train_h"] += r["wall_time_s"] / 3600
    span = max(ts(r["finished"]) for r in recs) - min(ts(r["started"]) for r in recs)
    busy = _busy_hours([(ts(r["started"]), ts(r["finished"])) for r in recs])
    train_h = sum(r["wall_time_s"] for r in recs) / 3600
    return {"runs": len(recs), "span_h": span.total_seconds() / 3600, "busy_h": busy,
            "train_h": train_h, "runs_per_hour": len(recs) / busy if busy else float("nan"),
            "grid": len(labels), "experiments": rows}  # fmt: skip


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--profile", default="cpu", help="profile whose records are read")
    ap.add_argument("--results", default=str(study.ROOT / "results"))
    ap.add_argument("--dask", action="store_true", help="also time the smoke profile on Dask")
    ap.add_argument("--no-smoke", action="store_true", help="only read the records")
    args = ap.parse_args()
    if not args.no_smoke:
        local_s, n = time_smoke("local")
        print(f"smoke, local executor: {n} runs in {local_s:.0f} s "
              f"({3600 * n / local_s:.0f} runs/hour)")  # fmt: skip
        if args.dask:
            dask_s, n = time_smoke("dask")
            print(f"smoke, dask LocalCluster: {n} runs in {dask_s:.0f} s "
                  f"(ratio to local {dask_s / local_s:.2f})")  # fmt: skip
    r = from_records(args.profile, Path(args.results))
    if r["runs"]:
        print(f"{args.profile} (from records): {r['runs']} of {r['grid']} runs finished; "
              f"{r['busy_h']:.2f} h with at least one run active ({r['runs_per_hour']:.0f} "
              f"runs/hour), first start to last finish {r['span_h']:.2f} h (includes pauses); "
              f"{r['train_h']:.2f} h of training summed over runs")  # fmt: skip
        print(f"{'experiment':<16}{'runs':>6}{'train h':>9}{'h at 2 workers':>16}")
        for name, row in sorted(r["experiments"].items()):
            print(f"{name:<16}{row['runs']:>6}{row['train_h']:>9.2f}{row['train_h'] / 2:>16.2f}")
    else:
        print(f"{args.profile}: no finished run records under {args.results}")


if __name__ == "__main__":
    main()
