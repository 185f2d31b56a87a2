"""The study's tables: one row per run, one per group with its interval and verdict, the
paper's claims decided by the rules of :mod:`qrnn.study.verdicts`, the normalization and the
cause (scale / noise) comparisons. Written by ``qrnn study summarize`` under
``results/<profile>/``; the book only reads them.

Ott et al., *Recurrent Neural Networks With Limited Numerical Precision*, arXiv 1608.06902.

Part of ``qrnn``, the library and study after Ott et al. 2016, *Recurrent Neural Networks With
Limited Numerical Precision*, https://arxiv.org/abs/1608.06902.
"""

from __future__ import annotations

import hashlib
import json
import math
from pathlib import Path

from .causes import cause_verdicts, causes_table
from .config import identity
from .decisions import (
    CLAIM3_GAIN,
    MAIN_GRID,
    NORMALIZATIONS,
    OVERFIT_GAP,
    PRIMARY,
    WORKS_AT,
    claim_thresholds,
    claims,
    normalization_table,
    overfits,
    rescue_groups,
    works_state,
)
from .designs import CPU, design_for
from .grid import METHOD_CONFIG
from .outcome import convergence
from .records import load_record
from .runs import GRID_LABELS, read_grid, runs_dir
from .verdicts import GROUP, MARGINS, group_verdict, interval, p_above, p_below, p_similar

# experiments without a float model of their own, and where their float reference lives (study
# v2's; a profile's own: its design's ``reference``, qrnn.study.designs)
REFERENCE = CPU.reference
# a run at its best at its last epoch counts as still improving unless, past this many epochs,
# its validation metric fell by less than a fifth of the task's similarity margin over them
PLATEAU_WINDOW = 5
# config fields a method sets (they differ between a group and its float reference), and
# fields that may also differ there (a learning rate chosen per method)
METHOD_FIELDS = ("scheme", "stochastic", "quantizer_options", "weight_noise")
TUNED_FIELDS = ("lr",)
# the fields some grid method sets beyond METHOD_FIELDS (weight_norm of ternary-det-wn, dropout
# of float-dropout-0.1, ...): a method's float twin may differ from it in these
METHOD_SET = tuple(sorted({k for f in METHOD_CONFIG.values() for k in f} - set(METHOD_FIELDS)))
BASELINES = "baselines"  # results/baselines/*.json: the project's independent baselines

# published float baselines for PTB-char (test BPC), cited beside ours with their scale
LITERATURE = (
    {"model": "LSTM, 1 layer, 512 units", "bpc": 1.45, "source": "hou2019normalization"},
    {"model": "LSTM, 1 layer, 1000 units", "bpc": 1.36, "bpc_hi": 1.38,
     "source": "cooijmans2017recurrent"},
)  # fmt: skip

__all__ = [
    "CLAIM3_GAIN",
    "LITERATURE",
    "MAIN_GRID",
    "NORMALIZATIONS",
    "OVERFIT_GAP",
    "PRIMARY",
    "WORKS_AT",
    "claim_thresholds",
    "claims",
    "collect",
    "config_keys",
    "figure_rows",
    "groups",
    "normalization_table",
    "overfits",
    "read_baselines",
    "rescue_groups",
    "summarize",
    "works_state",
]


def _digest(d: dict) -> str:
    return hashlib.sha256(json.dumps(d, sort_keys=True, default=str).encode()).hexdigest()[:10]


def config_keys(config: dict | None) -> dict:
    """The columns that key a run's group: ``hidden``, ``max_epochs`` and ``train_limit`` (the
    budget), ``setting`` (a digest of every setting but the seed, the fold of a ``fold<f>``
    split, the execution fields and the method's own, :data:`METHOD_FIELDS`) and ``twin``
    (the same without :data:`TUNED_FIELDS` and :data:`METHOD_SET`: what a group shares with
    its float reference)."""
    if not config:
        return {"hidden": math.nan, "max_epochs": math.nan, "train_limit": math.nan,
                "setting": "", "twin": ""}  # fmt: skip
    base = {k: v for k, v in identity(config).items() if k not in ("seed", *METHOD_FIELDS)}
    if str(base.get("split", "")).startswith("fold"):  # folds replicate a setting, as seeds do
        base["split"] = "folds"
    twin = {k: v for k, v in base.items() if k not in TUNED_FIELDS and k not in METHOD_SET}
    return {"hidden": config.get("hidden", math.nan), "max_epochs": config.get("epochs", math.nan),
            "train_limit": config.get("train_limit", 0), "setting": _digest(base),
            "twin": _digest(twin)}  # fmt: skip


def _with_keys(runs):
    """``runs`` with every :data:`GROUP` column (rows built by hand may lack the budget and
    the setting digest: then the hidden size stands for the setting)."""
    runs = runs.copy()
    if "setting" not in runs:
        runs["setting"] = "h" + runs["hidden"].astype(str)
    if "twin" not in runs:
        runs["twin"] = runs["setting"]
    for col in ("max_epochs", "train_limit"):
        if col not in runs:
            runs[col] = 0
    return runs


def still_improving(rec: dict) -> bool:
    """Was validation still improving when the run ended? The record's own flag (its best
    validation epoch is its last, ``convergence.still_improving``), except for a run longer
    than :data:`PLATEAU_WINDOW` epochs whose validation metric fell by less than a fifth of
    the margin (0.01 BPC, 0.2 points of error) over its last :data:`PLATEAU_WINDOW` epochs:
    a plateau where each new best is a rounding-size gain at a decayed learning rate."""
    if not (rec.get("convergence") or {}).get("still_improving"):
        return False
    return (
        len(rec["epochs"]) <= PLATEAU_WINDOW
        or recent_fall(rec) >= MARGINS[rec["metric"]["name"]] / 5
    )


def recent_fall(rec: dict) -> float:
    """How much the validation metric fell over the last :data:`PLATEAU_WINDOW` epochs: the
    best before them minus the last (NaN for a shorter run)."""
    vals = [e["valid_metric"] for e in rec["epochs"]]
    if len(vals) <= PLATEAU_WINDOW:
        return math.nan
    return min(vals[:-PLATEAU_WINDOW]) - vals[-1]


def diverged_trend(rec: dict) -> float:
    """For a diverged record: the mean of the last third of its recorded training losses
    minus the mean of the first third (below 0: the loss was still falling when the run was
    stopped). NaN for other records, for records written before the trail was kept, and for
    trails of fewer than 6 finite losses."""
    trail = (rec.get("diverged") or {}).get("recent_losses") or []
    vals = [v for v in trail if isinstance(v, (int, float)) and math.isfinite(v)]
    if rec["status"] != "diverged" or len(vals) < 6:
        return math.nan
    k = len(vals) // 3
    return sum(vals[-k:]) / k - sum(vals[:k]) / k


def _row(rec: dict, lab: dict) -> dict:
    eps = rec["epochs"]
    best = eps[rec["best_epoch"] - 1] if rec["best_epoch"] else None
    last = eps[-1] if eps else None
    cfg = rec["config"]
    lm = cfg["task"] != "fsdd"
    steps = last.get("steps") if last else 0
    init = rec.get("weights_init") or {}
    q_init = [v["zero"] for v in init.values() if v.get("quantized")]
    return {
        **lab,
        "run_id": rec["run_id"],
        "status": rec["status"],
        "metric": rec["metric"]["name"],
        "test": rec["test"]["metric"] if rec["test"] else math.nan,
        "valid": best["valid_metric"] if best else math.nan,
        "train": best["train_metric"] if best else math.nan,
        "final_train": last["train_metric"] if last else math.nan,
        "final_valid": last["valid_metric"] if last else math.nan,
        "epochs": len(eps),
        "best_epoch": rec["best_epoch"],
        "steps": steps,
        # symbols (LM) or recordings (digits) seen in training
        "seen": (steps or 0) * cfg["batch_size"] * (cfg["bptt"] if lm else 1),
        **config_keys(cfg),
        "wall_s": rec["wall_time_s"],
        "baseline": (rec.get("baseline") or {}).get("metric", math.nan),
        "learned": rec.get("learned"),
        "best_at_last": (rec.get("convergence") or {}).get("still_improving"),
        "still_improving": still_improving(rec),
        "recent_fall": recent_fall(rec),
        "zero_init": sum(q_init) / len(q_init) if q_init else 0.0,
        "packed": (rec.get("packed") or {}).get("file"),
        "diverged_trend": diverged_trend(rec),
        **_convergence_keys(rec),
    }


def _convergence_keys(rec: dict) -> dict:
    """The written convergence rule on the record's epochs (:func:`qrnn.study.outcome.
    convergence`): the learning rate of its last epoch, annealed (<= 1/4 of the peak), flat,
    converged (both). Empty for a run without epochs."""
    if not rec["epochs"]:
        return {"lr_final": math.nan, "annealed": False, "flat": False, "converged": False}
    c = convergence(rec)
    return {"lr_final": c["lr_final"], "annealed": c["annealed"], "flat": c["flat"],
            "converged": c["converged"]}  # fmt: skip


def collect(profile: str, results: str | Path = "results") -> list[dict]:
    """One tidy row per finished run of the profile (labels from ``grid.json``)."""
    out = runs_dir(results, profile)
    labels = read_grid(results, profile)  # not a map: one line naming the file
    rows = []
    for rec_path in sorted(out.glob("*/run.json")):
        rec = load_record(rec_path)  # a corrupt record: one line naming the file and the fix
        lab = labels.get(rec["run_id"])
        if lab is None or rec["status"] in ("running", "failed"):  # not a result
            continue
        if not set(GRID_LABELS) <= set(lab):  # refused by study.summarize unless skipped
            continue
        rows.append(_row(rec, lab))
    return rows


def _paired_gaps(runs, reference: dict | None = None):
    """``gap_to_float`` per run: its test metric minus the float run of the same task, cell,
    setting and seed in the same experiment (or in the experiment ``reference`` names, by
    default :data:`REFERENCE`); when no float run has the same setting, the only one that
    differs from it in :data:`TUNED_FIELDS` alone (none when several do)."""
    runs = _with_keys(runs)
    reference = REFERENCE if reference is None else reference
    ref_exp = runs["experiment"].map(lambda e: reference.get(e, e))
    fl = runs[runs["method"] == "float"]
    where = [fl[c] for c in ("experiment", "task", "cell")]
    exact = dict(zip(zip(*where, fl["setting"], fl["seed"], strict=True), fl["test"],
                     strict=True))  # fmt: skip
    loose: dict = {}
    for k, t in zip(zip(*where, fl["twin"], fl["seed"], strict=True), fl["test"], strict=True):
        loose.setdefault(k, []).append(t)
    found = []
    for e, t, c, s, w, seed in zip(ref_exp, runs["task"], runs["cell"], runs["setting"],
                                   runs["twin"], runs["seed"], strict=True):  # fmt: skip
        if (e, t, c, s, seed) in exact:
            found.append(exact[e, t, c, s, seed])
        else:
            cands = loose.get((e, t, c, w, seed), [])
            found.append(cands[0] if len(cands) == 1 else math.nan)
    runs["float_test"] = found
    runs["gap_to_float"] = runs["test"] - runs["float_test"]
    return runs


def _standing(test_lo, test_hi, test_mean, refs) -> str:
    """Where a group's test interval lies among the independent baselines ``refs`` (name,
    test): the best it beats and the first it does not beat."""
    if not refs:
        return "not computed"
    lo = test_lo if math.isfinite(test_lo) else test_mean
    hi = test_hi if math.isfinite(test_hi) else test_mean
    if not math.isfinite(hi):
        return "no test result"
    beaten = [r for r in refs if hi < r["test"]]
    above = [r for r in refs if lo > r["test"]]
    parts = []
    if beaten:
        best = min(beaten, key=lambda r: r["test"])
        parts.append(f"beats {best['name']} ({best['test']:.3f})")
    if above:
        first = max(above, key=lambda r: r["test"])
        parts.append(f"behind {first['name']} ({first['test']:.3f})")
    return "; ".join(parts) or "not separable from any baseline (intervals overlap)"


def read_baselines(folder: str | Path) -> list[dict]:
    """The independent baselines under ``folder`` (``results/baselines/*.json``, schema
    ``qrnn.baseline/1`` of :mod:`qrnn.study.baselines`), one row per (task, name, test): PTB-char's
    Kneser-Ney n-grams per order, the digits baseline per split and pooling (the speakers
    split as task ``fsdd-speakers``). Absent or unreadable files give no rows."""
    rows = []
    for path in sorted(Path(folder).glob("*.json")):
        try:
            rec = json.loads(path.read_text())
        except (OSError, ValueError):
            continue
        if not isinstance(rec, dict) or not isinstance(rec.get("results"), dict):
            continue
        task, res = rec.get("task"), rec["results"]
        base = str(rec.get("baseline") or path.stem)
        short = "KN" if base == "kneser-ney" else base
        for o in res.get("orders") or []:
            if isinstance(o, dict) and isinstance(o.get("test_bpc"), (int, float)):
                rows.append({"task": task, "name": f"{short} {o.get('order')}-gram",
                             "test": float(o["test_bpc"])})  # fmt: skip
        for split, pools in (res.get("splits") or {}).items():
            for pool, r in (pools or {}).items():
                if isinstance(r, dict) and isinstance(r.get("test_error"), (int, float)):
                    rows.append(
                        {
                            "task": task if split == "standard" else f"{task}-{split}",
                            "name": f"{short} ({pool})",
                            "test": float(r["test_error"]),
                        }
                    )
    return [r for r in rows if math.isfinite(r["test"])]


def groups(runs, baselines: list[dict] | None = None):
    """One row per group (:data:`GROUP`: experiment, task, cell, hidden, budget, setting,
    method): counts, test mean and sd, the paired gap to float with its interval, p-values and
    verdict, and the group's standing against float's gain over the baseline (``gain``):
    ``works`` at :data:`WORKS_AT`'s first share (the one that decides), ``works_0.2`` /
    ``works_0.1`` at the others, ``gain_lost`` (gap / gain, with its interval), and
    ``vs_reference`` against the project's independent ``baselines`` (:func:`read_baselines`;
    "not computed" without them)."""
    import pandas as pd

    runs = _with_keys(runs)
    refs = {}
    for b in baselines or []:
        refs.setdefault(b["task"], []).append(b)
    rows = [_group_row(key, g, refs) for key, g in runs.groupby(GROUP, sort=False, dropna=False)]
    return pd.DataFrame(rows)


def _count(g, col: str) -> int:
    """How many of a group's runs have ``col`` true (0 when the runs lack the column)."""
    return int(g[col].fillna(False).astype(bool).sum()) if col in g else 0


def _group_row(key: tuple, g, refs: dict[str, list[dict]]) -> dict:
    """The row of one group (``key``: its :data:`GROUP` values, ``g``: its runs) as
    :func:`groups` describes it; ``refs``: the independent baselines per task."""
    metric = g["metric"].iloc[0]
    margin = MARGINS.get(metric, 0.0)
    gap = interval(g["gap_to_float"])
    test = interval(g["test"])
    baseline = float(g["baseline"].mean())
    float_mean = float(g["float_test"].mean())
    row = {
        **dict(zip(GROUP, key, strict=True)),
        "metric": metric,
        "n": len(g),
        "completed": int((g["status"] == "completed").sum()),
        "diverged": int((g["status"] == "diverged").sum()),
        "learned": _count(g, "learned"),
        "beats_baseline": int((g["test"] < g["baseline"]).sum()),  # = learned, by name
        "still_improving": _count(g, "still_improving"),
        "test_mean": test["mean"], "test_std": test["sd"],
        "test_lo": test["lo"], "test_hi": test["hi"],
        "gap_mean": gap["mean"], "gap_lo": gap["lo"], "gap_hi": gap["hi"],
        "gap_sd": gap["sd"], "n_paired": gap["n"], "margin": margin,
        "p_better": p_below(gap["mean"], gap["sd"], gap["n"]),
        "p_worse": p_above(gap["mean"], gap["sd"], gap["n"]),
        "p_similar": p_similar(gap["mean"], gap["sd"], gap["n"], margin),
        "baseline": baseline, "float_test": float_mean, "gain": baseline - float_mean,
    }  # fmt: skip
    _judge(row, gap, tested=int(g["test"].notna().sum()))
    row["vs_reference"] = _standing(test["lo"], test["hi"], test["mean"],
                                    refs.get(row["task"], []))  # fmt: skip
    row.update({
        "zero_init": float(g["zero_init"].mean()),
        "epochs_mean": float(g["epochs"].mean()),
        "steps_mean": float(g["steps"].mean()), "seen_mean": float(g["seen"].mean()),
        "wall_s_mean": float(g["wall_s"].mean()),
        "converged": _count(g, "converged"),
        "lr_final_mean": float(g["lr_final"].mean()) if "lr_final" in g else math.nan,
    })  # fmt: skip
    return row


def _judge(row: dict, gap: dict, tested: int) -> None:
    """Add to a group's ``row`` its verdict, its ``works`` states at each share of
    :data:`WORKS_AT` and ``gain_lost`` (gap / gain, with its interval); ``tested``: how many of
    its runs have a test metric."""
    if tested == 0:
        row["verdict"] = "diverged"
    else:
        row["verdict"] = group_verdict(gap["lo"], gap["hi"], row["margin"], n=gap["n"])
        if row["method"] == "float":
            row["verdict"] = "reference"
    for i, share in enumerate(WORKS_AT):
        state = "diverged" if tested == 0 else works_state(row, share)
        row["works" if i == 0 else f"works_{share}"] = state
    row["gain_lost"], row["gain_lost_lo"], row["gain_lost_hi"] = (
        v / row["gain"] if row["gain"] > 0 else math.nan
        for v in (gap["mean"], gap["lo"], gap["hi"])
    )


def summarize(profile: str, results: str | Path = "results"):
    """Write ``runs.csv``, ``summary.csv``, ``claims.csv``, ``claims_thresholds.csv``,
    ``causes.csv``, ``cause_verdicts.csv`` and ``normalization.csv`` under
    ``results/<profile>/``, the claims by the profile's study design
    (:func:`qrnn.study.designs.design_for`); return the runs and summary frames. The
    independent baselines are read from ``results/baselines/`` when present."""
    import pandas as pd

    from .records import atomic_write_bytes

    runs = pd.DataFrame(collect(profile, results))
    if runs.empty:
        raise ValueError(f"no run records under {runs_dir(results, profile)}; run the study first")
    design = design_for(profile)
    runs = _paired_gaps(runs, design.reference)
    summary = groups(runs, read_baselines(Path(results) / BASELINES))
    folder = Path(results) / profile

    def write(name, frame):
        atomic_write_bytes(folder / name, frame.to_csv(index=False).encode())

    write("runs.csv", runs)
    write("summary.csv", summary)
    write("claims.csv", pd.DataFrame(claims(runs, summary, design)))
    write("claims_thresholds.csv", claim_thresholds(runs, summary, design))
    causes = causes_table(summary, design)
    for name, table in (("causes.csv", causes),
                        ("cause_verdicts.csv", cause_verdicts(causes, runs, design)),
                        ("normalization.csv", normalization_table(summary, design))):  # fmt: skip
        if len(table):
            write(name, table)
    return runs, summary


def figure_rows(summary) -> list[dict]:
    """The groups as the results page's figure receives them: ``cell`` names the series,
    ``lstm 256`` (with the experiment when two groups of a task would still share a series
    and method), so no two configurations are drawn as one."""
    rows = summary.to_dict("records")
    for r in rows:
        r["cell"] = f"{r['cell']} {int(r['hidden'])}"
    seen: dict = {}
    for r in rows:
        seen.setdefault((r["task"], r["cell"], r["method"]), set()).add(r["experiment"])
    for r in rows:
        if len(seen[r["task"], r["cell"], r["method"]]) > 1:
            r["cell"] = f"{r['cell']} ({r['experiment']})"
    return rows
