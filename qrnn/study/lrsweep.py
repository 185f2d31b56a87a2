"""Each method's own learning rate, chosen on validation from a recorded sweep (study v3,
issue 26): every method gets the same recipe and the peak learning rate that gave its lowest
validation metric in the profile's sweep experiments (every experiment whose name starts with
``lr-sweep``: ``lr-sweep`` for PTB, ``lr-sweep-digits`` for the digits; one seed, a short
budget).

The rule, written once: per (sweep, task, cell, method), the swept rate whose run reached the lowest
best-epoch validation metric; a diverged or failed run counts as infinitely bad; a choice at
the smallest or largest swept rate is flagged ``at_edge`` (the optimum may lie outside the
range, and the sweep should be widened before the choice is used). After Ott et al. 2016,
*Recurrent Neural Networks With Limited Numerical Precision*, https://arxiv.org/abs/1608.06902,
which trains every method at one rate.
"""

from __future__ import annotations

import math
from pathlib import Path

import pandas as pd

from .grid import grid
from .records import atomic_write_bytes, load_record
from .runs import runs_dir

__all__ = ["SWEEP", "choose_lr", "sweep_table"]

SWEEP = "lr-sweep"  # the sweeps' name prefix; their variants are <name>@lr=<rate>


def sweep_table(profile: str, results: str | Path = "results") -> pd.DataFrame:
    """One row per sweep run of ``profile``: its labels, rate, status and best validation
    metric (NaN while not finished), with ``chosen`` and ``at_edge`` per group."""
    rows = []
    folder = runs_dir(results, profile)
    for run in grid(profile):
        sweep = run.experiment.split("@")[0]
        if not sweep.startswith(SWEEP):
            continue
        path = folder / run.run_id / "run.json"
        rec = load_record(path) if path.exists() else None
        status = rec["status"] if rec else "not run"
        valid = [e["valid_metric"] for e in rec["epochs"]] if rec else []
        finite = [v for v in valid if math.isfinite(v)]
        best = min(finite) if finite and status in ("completed", "diverged") else math.nan
        rows.append({"task": run.task, "cell": run.cell, "method": run.method,
                     "hidden": run.config.hidden, "epochs": run.config.epochs,
                     "train_limit": run.config.train_limit, "seed": run.seed,
                     "lr": run.config.lr, "status": status, "best_valid": best,
                     "epochs_run": len(valid), "run_id": run.run_id,
                     "sweep": sweep})  # fmt: skip
    table = pd.DataFrame(rows)
    if table.empty:
        raise ValueError(f"the {profile} profile has no {SWEEP} experiment")
    table["chosen"], table["at_edge"] = False, False
    for _, g in table.groupby(["sweep", "task", "cell", "method"], sort=False):
        if (g["status"] == "not run").any() or (g["status"] == "running").any():
            continue  # decided only when every rate has finished
        score = g["best_valid"].where(g["status"] == "completed", math.inf).fillna(math.inf)
        if not math.isfinite(score.min()):
            continue  # every rate diverged: no choice
        pick = score.idxmin()
        table.loc[pick, "chosen"] = True
        table.loc[pick, "at_edge"] = table.loc[pick, "lr"] in (g["lr"].min(), g["lr"].max())
    return table


def choose_lr(profile: str, results: str | Path = "results") -> tuple[dict, Path]:
    """Write ``results/<profile>/lr_choice.csv`` (every sweep run, the chosen ones marked) and
    return ``{(task, cell, method): rate}`` for the groups whose sweep has finished (two sweeps
    deciding the same group are an error)."""
    table = sweep_table(profile, results)
    twice = table[table["chosen"]].duplicated(["task", "cell", "method"], keep=False)
    if twice.any():
        dup = table[table["chosen"]][twice].iloc[0]
        raise ValueError(f"two sweeps choose a rate for {dup.task} {dup.cell} {dup.method}")
    path = Path(results) / profile / "lr_choice.csv"
    atomic_write_bytes(path, table.to_csv(index=False).encode())
    chosen = table[table["chosen"]]
    return {(r.task, r.cell, r.method): float(r.lr) for r in chosen.itertuples()}, path
