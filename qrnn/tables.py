"""The study's tables: one row per run, one per group with its interval and verdict, the
paper's claims decided by the rules of :mod:`qrnn.verdicts`, the normalization and the
cause (scale / noise) comparisons. Written by ``qrnn study summarize`` under
``results/<profile>/``; the book only reads them.

Ott et al., *Recurrent Neural Networks With Limited Numerical Precision*, arXiv 1608.06902.

Part of ``qrnn``, the library and study after Ott et al. 2016, *Recurrent Neural Networks With
Limited Numerical Precision*, https://arxiv.org/abs/1608.06902.
"""

from __future__ import annotations

import math
from pathlib import Path

from .causes import cause_verdicts, causes_table
from .records import load_record
from .runs import GRID_LABELS, read_grid, runs_dir
from .verdicts import (
    GROUP,
    LEVEL,
    MARGINS,
    claim_verdict,
    count_text,
    gap_text,
    group_verdict,
    interval,
)

# experiments without a float model of their own, and where their float reference lives
REFERENCE = {"scale": "main", "noise": "main", "digits-cause": "digits"}
# the main grid: the claims about methods read these experiments
MAIN_GRID = ("main", "digits", "ptb-cells")
# experiment -> the normalization it adds to the settings of an unnormalized experiment
NORMALIZATIONS = {"main": "none", "digits": "none", "ptb-cells": "none", "normalization": "weight",
                  "layernorm": "layer"}  # fmt: skip
OVERFIT_GAP = 0.1  # claim 3's gate: final valid - final train BPC of float, at least this
# a run at its best at its last epoch counts as still improving unless, past this many epochs,
# its validation metric fell by less than a fifth of the task's similarity margin over them
PLATEAU_WINDOW = 5
CLAIM3_GAIN = 0.133  # the paper's gain of its best stochastic PTB-char model over float (BPC)

# published float baselines for PTB-char (test BPC), cited beside ours with their scale
LITERATURE = (
    {"model": "LSTM, 1 layer, 512 units", "bpc": 1.45, "source": "hou2019normalization"},
    {"model": "LSTM, 1 layer, 1000 units", "bpc": 1.36, "bpc_hi": 1.38,
     "source": "cooijmans2017recurrent"},
)  # fmt: skip

__all__ = [
    "LITERATURE",
    "claims",
    "collect",
    "groups",
    "normalization_table",
    "rescue_groups",
    "summarize",
]


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
        "hidden": cfg["hidden"],
        "wall_s": rec["wall_time_s"],
        "baseline": (rec.get("baseline") or {}).get("metric", math.nan),
        "learned": rec.get("learned"),
        "best_at_last": (rec.get("convergence") or {}).get("still_improving"),
        "still_improving": still_improving(rec),
        "recent_fall": recent_fall(rec),
        "zero_init": sum(q_init) / len(q_init) if q_init else 0.0,
        "packed": (rec.get("packed") or {}).get("file"),
        "diverged_trend": diverged_trend(rec),
    }


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


def _paired_gaps(runs):
    """``gap_to_float`` per run: its test metric minus the float run of the same task, cell
    and seed in the same experiment (or in :data:`REFERENCE`'s experiment)."""
    ref_exp = runs["experiment"].map(lambda e: REFERENCE.get(e, e))
    fl = runs[runs["method"] == "float"].set_index(["experiment", "task", "cell", "seed"])["test"]
    keys = list(zip(ref_exp, runs["task"], runs["cell"], runs["seed"], strict=True))
    runs = runs.copy()
    runs["float_test"] = [fl.get(k, math.nan) for k in keys]
    runs["gap_to_float"] = runs["test"] - runs["float_test"]
    return runs


def groups(runs):
    """One row per (experiment, task, cell, method): counts, test mean and sd, the paired gap
    to float with its interval and verdict, and whether the group *works* (keeps at least
    half of float's gain over the baseline, decided on the interval)."""
    import pandas as pd

    rows = []
    for key, g in runs.groupby(GROUP, sort=False):
        metric = g["metric"].iloc[0]
        margin = MARGINS.get(metric, 0.0)
        gap = interval(g["gap_to_float"])
        test = interval(g["test"])
        baseline = float(g["baseline"].mean())
        float_mean = float(g["float_test"].mean())
        half_loss = 0.5 * (baseline - float_mean)  # the gap that loses half the gain
        tested = int(g["test"].notna().sum())
        if tested == 0:
            verdict = works = "diverged"
        else:
            verdict = group_verdict(gap["lo"], gap["hi"], margin, n=gap["n"])
            if key[3] == "float":
                verdict = "reference"
            if gap["n"] >= 2 and gap["lo"] > half_loss:
                works = "fails"
            elif gap["n"] >= 2 and gap["hi"] < half_loss:
                works = "works"
            else:
                works = "inconclusive"
        rows.append({
            **dict(zip(GROUP, key, strict=True)),
            "metric": metric,
            "n": len(g),
            "completed": int((g["status"] == "completed").sum()),
            "diverged": int((g["status"] == "diverged").sum()),
            "learned": int(g["learned"].fillna(False).astype(bool).sum()),
            "beats_baseline": int((g["test"] < g["baseline"]).sum()),  # = learned, by name
            "still_improving": int(g["still_improving"].fillna(False).astype(bool).sum()),
            "test_mean": test["mean"], "test_std": test["sd"],
            "test_lo": test["lo"], "test_hi": test["hi"],
            "gap_mean": gap["mean"], "gap_lo": gap["lo"], "gap_hi": gap["hi"],
            "n_paired": gap["n"], "margin": margin, "verdict": verdict, "works": works,
            "baseline": baseline, "float_test": float_mean,
            "zero_init": float(g["zero_init"].mean()),
            "hidden": int(g["hidden"].iloc[0]), "epochs_mean": float(g["epochs"].mean()),
            "steps_mean": float(g["steps"].mean()), "seen_mean": float(g["seen"].mean()),
            "wall_s_mean": float(g["wall_s"].mean()),
        })  # fmt: skip
    return pd.DataFrame(rows)


def summarize(profile: str, results: str | Path = "results"):
    """Write ``runs.csv``, ``summary.csv``, ``claims.csv``, ``causes.csv``,
    ``cause_verdicts.csv`` and ``normalization.csv`` under ``results/<profile>/``; return the
    runs and summary frames."""
    import pandas as pd

    from .records import atomic_write_bytes

    runs = pd.DataFrame(collect(profile, results))
    if runs.empty:
        raise ValueError(f"no run records under {runs_dir(results, profile)}; run the study first")
    runs = _paired_gaps(runs)
    summary = groups(runs)
    folder = Path(results) / profile

    def write(name, frame):
        atomic_write_bytes(folder / name, frame.to_csv(index=False).encode())

    write("runs.csv", runs)
    write("summary.csv", summary)
    write("claims.csv", pd.DataFrame(claims(runs, summary)))
    causes = causes_table(summary)
    for name, table in (("causes.csv", causes), ("cause_verdicts.csv", cause_verdicts(causes)),
                        ("normalization.csv", normalization_table(summary))):  # fmt: skip
        if len(table):
            write(name, table)
    return runs, summary


# what a group's verdict says about a claim; anything else is "inconclusive"
FAILS = {"fails": "supports", "diverged": "supports", "works": "contradicts"}  # claim 1
SIMILAR_OR_BETTER = {"similar": "supports", "better": "supports", "worse": "contradicts",
                     "diverged": "contradicts"}  # fmt: skip
BETTER = {"better": "supports", "similar": "contradicts", "worse": "contradicts",
          "diverged": "contradicts"}  # fmt: skip


def _outcomes(verdicts, meaning: dict) -> list[str]:
    return [meaning.get(v, "inconclusive") for v in verdicts]


def claims(runs, summary) -> list[dict]:
    """The paper's claims (../shared/PAPER.md), each decided from the groups by its rule."""
    out = []
    main = summary[summary["experiment"].isin(MAIN_GRID)]

    def row(claim, rule, outcomes, ours=""):
        out.append({"claim": claim, "rule": rule, "verdict": claim_verdict(outcomes),
                    "counts": count_text(outcomes), "ours": ours})  # fmt: skip

    binary = main[main["method"].isin(["binary-det", "binary-stoch"])]
    row("1. binarization (det. and stoch.) does not work for RNNs",
        "per binary group of the main grid: supports when it diverges or the 95% interval of "
        "its gap to float lies above half of float's gain over the unigram/chance baseline "
        "(fails); contradicts when the interval lies below it (works)",
        _outcomes(binary["works"], FAILS),
        f"{len(binary)} groups")  # fmt: skip
    tern = main[main["method"].isin(["ternary-det", "ternary-stoch", "pow2-ternary"])]
    row("2. ternary and pow2-ternary give similar or better accuracy than float",
        "per group of the main grid: supports when the gap interval is within +-margin "
        "(similar) or below 0 (better); contradicts when above 0 (worse) or diverged; margins "
        "0.05 BPC, 1 point of error",
        _outcomes(tern["verdict"], SIMILAR_OR_BETTER),
        "; ".join(f"{r['task']} {r['cell']} {int(r['hidden'])} {r['method']}: {gap_text(r)}"
                  for _, r in tern.iterrows()))  # fmt: skip
    out.append(_claim3(runs, summary))
    dig = summary[
        (summary["experiment"] == "digits")
        & summary["method"].isin(
            ["ternary-det", "ternary-stoch", "pow2-ternary", "exponential-det", "exponential-stoch"]
        )
    ]
    row("4. on spoken digits ternary, pow2 and exponential quantization beat float",
        "per (split, cell, method) of the digits experiment (FSDD for TIDIGITS): supports "
        "when the error-gap interval lies below 0; contradicts when it is similar, above 0 or "
        "diverged",
        _outcomes(dig["verdict"], BETTER),
        f"{len(dig)} groups")  # fmt: skip
    norm = normalization_table(summary)
    if len(norm):
        failing = rescue_groups(norm)
        outcomes = []
        for _, r in failing.iterrows():
            # the normalizations tried at this budget (a missing one is NaN in the table)
            w = [x for n in ("weight", "layer") if isinstance(x := r.get(f"works_{n}"), str)]
            outcomes.append("supports" if "works" in w else
                            "contradicts" if w and all(x in ("fails", "diverged") for x in w)
                            else "inconclusive")  # fmt: skip
        row(
            "N. (later work) weight or layer normalization makes binary RNNs work",
            "per binary group that does not work without normalization: supports when it "
            "works with weight or layer normalization (rule of claim 1), contradicts when it "
            "fails with every normalization tried",
            outcomes,
            f"{len(failing)} groups",
        )
    return out


def overfits(runs) -> tuple[bool, str]:
    """Claim 3's gate from the float runs of the ``overfit`` experiment: every seed's best
    validation epoch comes before its last, and its final training BPC is below its final
    validation BPC by at least :data:`OVERFIT_GAP`."""
    fl = runs[(runs["experiment"] == "overfit") & (runs["method"] == "float")]
    if fl.empty:
        return False, "no float run in the overfit experiment"
    early = fl["best_epoch"] < fl["epochs"]
    gap = fl["final_valid"] - fl["final_train"]
    ok = bool(early.all() and (gap >= OVERFIT_GAP).all())
    why = (f"float best epoch {', '.join(str(int(b)) for b in fl['best_epoch'])} of "
           f"{int(fl['epochs'].max())}; final valid - train BPC "
           f"{', '.join(f'{g:.2f}' for g in gap)}")  # fmt: skip
    return ok, why


def _claim3(runs, summary) -> dict:
    claim = f"3. on PTB-char the best stochastic model beats float by {CLAIM3_GAIN} BPC"
    rule = ("only when float overfits (best validation epoch before the last, final train BPC "
            f"below validation by >= {OVERFIT_GAP}); the stochastic method with the best mean "
            "validation BPC is chosen, then its paired test gap interval: reproduced when "
            "better (below 0 and not inside +-0.05), refuted when similar (inside +-0.05 BPC) "
            "or worse and the chosen method had stopped improving; inconclusive when it was "
            "still improving at its last epoch in any seed (best validation at the last "
            f"epoch, and past {PLATEAU_WINDOW} epochs a fall of at least 0.01 BPC over the "
            f"last {PLATEAU_WINDOW}; its final accuracy is not known)")  # fmt: skip
    ok, why = overfits(runs)
    over = summary[(summary["experiment"] == "overfit") & (summary["method"] != "float")]
    if not ok or over.empty:
        return {"claim": claim, "rule": rule, "verdict": "not tested",
                "counts": "no overfitting regime" if not ok else "no stochastic group",
                "ours": why}  # fmt: skip
    valid = runs[runs["experiment"] == "overfit"].groupby("method")["valid"].mean()
    best = over.loc[over["method"].map(valid).idxmin()]
    outcome = {"better": "supports", "similar": "contradicts", "worse": "contradicts"}.get(
        best["verdict"], "inconclusive"
    )
    improving = int(best["still_improving"])
    if outcome == "contradicts" and improving:  # not beaten yet, but not finished either
        outcome = "inconclusive"
    size = ""
    if best["verdict"] == "similar" and best["gap_hi"] < 0:  # a real gain, of no claimed size
        size = (
            f" (below 0 but inside the +-{MARGINS['bpc']} BPC margin; the paper's "
            f"{-CLAIM3_GAIN:+.3f} lies {'inside' if best['gap_lo'] <= -CLAIM3_GAIN else 'outside'}"
            " the interval)"
        )
    return {"claim": claim, "rule": rule, "verdict": claim_verdict([outcome]),
            "counts": count_text([outcome]),
            "ours": f"{best['method']} (best validation): gap {gap_text(best)} BPC, {LEVEL:.0%} "
                    f"interval, n={int(best['n_paired'])}{size}, still improving at its last "
                    f"epoch in {improving} of {int(best['n'])} seeds; {why}"}  # fmt: skip


def rescue_groups(norm):
    """The rows of :func:`normalization_table` that the normalization claim covers: binary
    groups that do not *work* without normalization (fail, diverge or are inconclusive),
    counted only where that unnormalized twin of the same budget was run."""
    if "works_none" not in norm:
        return norm.iloc[0:0]
    none = norm["works_none"]
    return norm[norm["method"].str.startswith("binary") & none.notna() & (none != "works")]


def normalization_table(summary):
    """The normalization rescue side by side: one row per (task, cell, hidden, method) trained
    with a normalization: test mean, gap to the float of the same normalization with its
    interval, and the works verdict (``none``: the unnormalized experiment of the same budget,
    main / ptb-cells / digits; ``weight``; ``layer``)."""
    import pandas as pd

    s = summary[summary["experiment"].isin(NORMALIZATIONS)].copy()
    s["norm"] = s["experiment"].map(NORMALIZATIONS)
    key = ["task", "cell", "hidden", "method"]
    normed = s[s["norm"] != "none"][key].drop_duplicates()
    if normed.empty:
        return pd.DataFrame()
    s = s.merge(normed, on=key)
    values = ("test_mean", "n", "learned", "gap_mean", "gap_lo", "gap_hi", "works")
    wide = s.pivot_table(index=[*key, "metric"], columns="norm",
                         values=list(values), aggfunc="first")  # fmt: skip
    order = [(v, n) for n in ("none", "weight", "layer") for v in values if (v, n) in wide.columns]
    wide = wide[order]
    wide.columns = [f"{v}_{n}" for v, n in wide.columns]
    return wide.reset_index()
