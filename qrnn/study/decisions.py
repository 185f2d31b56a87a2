"""The paper's claims decided from the study's groups (``summary.csv``): per task from a
declared primary group (:data:`PRIMARY`; supporting and exploratory groups counted beside it),
labelled by :func:`qrnn.study.verdicts.claim_label`, with the raw and the multiplicity-adjusted
verdicts (Holm within each claim), one convergence rule for every claim (a group still
improving in any seed decides nothing), "works" at the declared share of float's gain and at
stricter ones (:func:`claim_thresholds`), and the normalization table of claim N. Written by
``qrnn study summarize`` through :func:`qrnn.study.tables.summarize`.

Part of ``qrnn``, the library and study after Ott et al. 2016, *Recurrent Neural Networks With
Limited Numerical Precision*, https://arxiv.org/abs/1608.06902.
"""

from __future__ import annotations

import math

from .evidence import (
    ADJUSTMENT,
    CONVERGENCE_RULE,
    LABEL_RULE,
    PRIMARY,
    TASK_SCOPES,
    WORKS_AT,
    adjusted,
    claim_rows,
    group_name,
    item,
    works_p,
    works_state,
)
from .verdicts import ALPHA, LEVEL, count_text, direction, gap_text

# the main grid: the claims about methods read these experiments
MAIN_GRID = ("main", "digits", "ptb-cells")
# experiment -> the normalization it adds to the settings of an unnormalized experiment
NORMALIZATIONS = {"main": "none", "digits": "none", "ptb-cells": "none", "normalization": "weight",
                  "layernorm": "layer"}  # fmt: skip
OVERFIT_GAP = 0.1  # claim 3's gate: final valid - final train BPC of float, at least this
CLAIM3_GAIN = 0.133  # the paper's gain of its best stochastic PTB-char model over float (BPC)
# claim N's primary groups: PTB as every claim, digits the LSTM (the only normalized cell)
RESCUE_PRIMARY = {"ptb-char": PRIMARY["ptb-char"], "fsdd": ("digits", "fsdd", "lstm", 64)}

__all__ = [
    "CLAIM3_GAIN",
    "MAIN_GRID",
    "NORMALIZATIONS",
    "OVERFIT_GAP",
    "PRIMARY",
    "WORKS_AT",
    "claim3_label",
    "claim_thresholds",
    "claims",
    "normalization_table",
    "overfits",
    "rescue_groups",
    "works_state",
]


def _claim1_item(r, share: float, primary: dict) -> dict:
    if r["works"] == "diverged":
        return item(r, "supports", 0.0, f"{group_name(r)} {r['method']}: diverged", primary)
    state = works_state(r, share)
    p_works, p_fails = works_p(r, share)
    outcome, p = {"fails": ("supports", p_fails), "works": ("contradicts", p_works)}.get(
        state, ("inconclusive", min(p_works, p_fails))
    )
    return item(
        r, outcome, p, f"{group_name(r)} {r['method']}: {state}, gap {gap_text(r)}", primary
    )


def _claim2_item(r, primary: dict) -> dict:
    """Similar or better supports (either decides), worse or diverged contradicts."""
    text = f"{group_name(r)} {r['method']}: {r['verdict']}, gap {gap_text(r)}"
    if r["verdict"] == "diverged":
        return item(r, "contradicts", 0.0, text, primary)
    if r["verdict"] in ("similar", "better"):
        return item(r, "supports", min(r["p_similar"], r["p_better"]), text, primary)
    if r["verdict"] == "worse":
        return item(r, "contradicts", r["p_worse"], text, primary)
    return item(r, "inconclusive", min(r["p_similar"], r["p_better"], r["p_worse"]), text,
                 primary)  # fmt: skip


def _claim4_item(r, primary: dict) -> dict:
    """A claim of a direction: better takes precedence over similar."""
    d = direction(r["gap_lo"], r["gap_hi"], n=r["n_paired"])
    text = f"{group_name(r)} {r['method']}: {d if d != 'none' else r['verdict']}, gap {gap_text(r)}"
    if r["verdict"] == "diverged":
        return item(r, "contradicts", 0.0, text, primary)
    if d == "better":
        return item(r, "supports", r["p_better"], text, primary)
    if d == "worse":
        return item(r, "contradicts", r["p_worse"], text, primary)
    if r["verdict"] == "similar":
        return item(r, "contradicts", r["p_similar"], text, primary)
    return item(r, "inconclusive", min(r["p_better"], r["p_similar"]), text, primary)


def _rescue_items(summary, share: float, primary: dict) -> list[dict]:
    """Claim N: per binary group that does not work without normalization at ``share``, its
    twins of the same task, cell, hidden size, budget and method with a normalization:
    supports when one works, contradicts when every one tried fails."""
    s = summary[summary["experiment"].isin(NORMALIZATIONS)]
    s = s.assign(norm=s["experiment"].map(NORMALIZATIONS))
    key = ["task", "cell", "hidden", "max_epochs", "train_limit", "method"]
    out = []
    base = s[(s["norm"] == "none") & s["method"].str.startswith("binary")]
    for _, r in base.iterrows():
        if works_state(r, share) == "works" and r["works"] != "diverged":
            continue
        twins = s[(s["norm"] != "none")
                  & (s[key] == r[key]).all(axis=1)]  # fmt: skip
        if twins.empty:
            continue
        states = {t["norm"]: ("fails" if t["works"] == "diverged" else works_state(t, share))
                  for _, t in twins.iterrows()}  # fmt: skip
        ps = {t["norm"]: (0.0, 0.0) if t["works"] == "diverged" else works_p(t, share)
              for _, t in twins.iterrows()}  # fmt: skip
        improving = {t["norm"]: int(t["still_improving"]) for _, t in twins.iterrows()}
        text = f"{group_name(r)} {r['method']} with " + ", ".join(
            f"{n} normalization: {st}" for n, st in states.items()
        )
        works = [n for n, st in states.items() if st == "works"]
        if works:
            n = min(works, key=lambda n: (improving[n] > 0, ps[n][0]))
            outcome, p, still = "supports", ps[n][0], improving[n]
        elif all(st == "fails" for st in states.values()):
            outcome, p = "contradicts", max(ps[n][1] for n in states)
            still = max(improving.values())
        else:
            outcome, p, still = "inconclusive", min(min(v) for v in ps.values()), 0
        out.append(item({**r.to_dict(), "still_improving": still}, outcome, p, text, primary))
    return out


def _claim1(main, share: float) -> list[dict]:
    binary = main[main["method"].isin(["binary-det", "binary-stoch"])]
    return claim_rows(
        "1. binarization (det. and stoch.) does not work for RNNs",
        f"per binary group of the main grid: supports when it diverges or the 95% interval "
        f"of its gap to float lies above {share:g} of float's gain over the unigram/chance "
        f"baseline (fails); contradicts when it lies below (works); {CONVERGENCE_RULE}; "
        f"{LABEL_RULE}",
        [_claim1_item(r, share, PRIMARY) for _, r in binary.iterrows()],
        TASK_SCOPES,
        f"works at {share:g} of float's gain" + (" (declared)" if share == WORKS_AT[0] else ""),
    )


def _claimN(summary, share: float) -> list[dict]:
    return claim_rows(
        "N. (later work) weight or layer normalization makes binary RNNs work",
        f"per binary group that does not work without normalization (at {share:g} of "
        "float's gain): supports when its twin of the same task, cell, hidden size and "
        "budget works with weight or layer normalization, contradicts when it fails with "
        f"every normalization tried; {CONVERGENCE_RULE}; {LABEL_RULE} (primary: PTB the "
        "headline LSTM, digits the LSTM on the standard split, the only normalized digits "
        "cell)",
        _rescue_items(summary, share, RESCUE_PRIMARY),
        TASK_SCOPES,
        f"works at {share:g} of float's gain" + (" (declared)" if share == WORKS_AT[0] else ""),
    )


def claims(runs, summary) -> list[dict]:
    """The paper's claims (../shared/PAPER.md), each decided per task from its declared
    primary groups (:data:`PRIMARY`) by its rule, with the raw and the multiplicity-adjusted
    verdict, and once overall."""
    out = []
    main = summary[summary["experiment"].isin(MAIN_GRID)]
    out += _claim1(main, WORKS_AT[0])
    tern = main[main["method"].isin(["ternary-det", "ternary-stoch", "pow2-ternary"])]
    out += claim_rows(
        "2. ternary and pow2-ternary give similar or better accuracy than float",
        "per group of the main grid: supports when the gap interval is within +-margin "
        "(similar; a 95% interval inside the margin is a two one-sided test at 2.5% per side) "
        "or below 0 (better); contradicts when above 0 (worse) or diverged; margins 0.05 BPC, "
        f"1 point of error; {CONVERGENCE_RULE}; {LABEL_RULE}",
        [_claim2_item(r, PRIMARY) for _, r in tern.iterrows()],
        TASK_SCOPES,
    )
    out += _claim3(runs, summary)
    dig = summary[
        (summary["experiment"] == "digits")
        & summary["method"].isin(
            ["ternary-det", "ternary-stoch", "pow2-ternary", "exponential-det", "exponential-stoch"]
        )
    ]
    out += claim_rows(
        "4. on spoken digits ternary, pow2 and exponential quantization beat float",
        "per (split, cell, method) of the digits experiment (FSDD for TIDIGITS): supports "
        "when the error-gap interval lies below 0 (better, read before similar: a claim of a "
        "direction); contradicts when it is similar and not below 0, above 0 or diverged; "
        f"{CONVERGENCE_RULE}; {LABEL_RULE}",
        [_claim4_item(r, PRIMARY) for _, r in dig.iterrows()],
        ("spoken digits",),
    )
    if len(normalization_table(summary)):
        out += _claimN(summary, WORKS_AT[0])
    return out


def claim_thresholds(runs, summary):
    """How claims 1 and N move with the share of float's gain that decides "works"
    (:data:`WORKS_AT`): one row per claim, task and share."""
    import pandas as pd

    main = summary[summary["experiment"].isin(MAIN_GRID)]
    rows = []
    for share in WORKS_AT:
        got = _claim1(main, share)
        if len(normalization_table(summary)):
            got += _claimN(summary, share)
        rows += [{"claim": r["claim"], "task": r["task"], "share": share,
                  "verdict": r["verdict"], "verdict_unadjusted": r["verdict_unadjusted"],
                  "counts": r["counts"], "supporting": r["supporting"],
                  "exploratory": r["exploratory"]} for r in got]  # fmt: skip
    return pd.DataFrame(rows)


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


def claim3_label(row, p_adj: float = math.nan) -> str:
    """Claim 3's verdict on the chosen group: it names a direction and a size, so
    *reproduced* (below 0, the paper's gain inside the interval), *direction reproduced,
    size not reproduced* (below 0, the paper's gain outside), *no effect* (inside the margin
    around 0), *opposite effect* (above 0), else *inconclusive*; ``p_adj`` (adjusted p-value
    of that reading) above ALPHA makes it *inconclusive*."""
    if row.get("still_improving", 0):
        return "not converged at this budget"
    d = direction(row["gap_lo"], row["gap_hi"], n=row["n_paired"])
    if d == "better":
        label = ("reproduced (direction and size)" if row["gap_lo"] <= -CLAIM3_GAIN <=
                 row["gap_hi"] else "direction reproduced, size not reproduced (the paper's "
                 f"{-CLAIM3_GAIN:+.3f} lies outside the interval)")  # fmt: skip
    elif d == "worse":
        label = "opposite effect"
    elif row["verdict"] == "similar":
        label = "no effect"
    else:
        return "inconclusive"
    return label if not (math.isfinite(p_adj) and p_adj > ALPHA) else "inconclusive"


def _claim3(runs, summary) -> list[dict]:
    claim = f"3. on PTB-char the best stochastic model beats float by {CLAIM3_GAIN} BPC"
    rule = (
        "only when float overfits (best validation epoch before the last, final train BPC "
        f"below validation by >= {OVERFIT_GAP}); the stochastic method with the best mean "
        "validation BPC is the primary group, then its paired test gap interval: "
        "reproduced when below 0 with the paper's -0.133 inside it; direction reproduced, "
        "size not reproduced when below 0 without it; no effect when inside +-0.05 BPC "
        "around 0; opposite effect when above 0; inconclusive otherwise; "
        f"{CONVERGENCE_RULE}; the other stochastic groups support the direction"
    )
    base = {"claim": claim, "task": "PTB-char", "primary": "overfit ptb-char LSTM",
            "supporting": "none", "exploratory": "none", "threshold": "",
            "multiplicity": "", "rule": rule}  # fmt: skip
    ok, why = overfits(runs)
    over = summary[(summary["experiment"] == "overfit") & (summary["method"] != "float")]
    if not ok or over.empty:
        row = {**base, "verdict": "not tested", "verdict_unadjusted": "not tested",
               "counts": "no overfitting regime" if not ok else "no stochastic group",
               "counts_unadjusted": "", "ours": why}  # fmt: skip
        return [row, {**row, "task": "overall"}]
    valid = runs[runs["experiment"] == "overfit"].groupby("method")["valid"].mean()
    best = over.loc[over["method"].map(valid).idxmin()]
    items = []
    for _, r in over.iterrows():
        d = direction(r["gap_lo"], r["gap_hi"], n=r["n_paired"])
        outcome, p = {"better": ("supports", r["p_better"]),
                      "worse": ("contradicts", r["p_worse"])}.get(
            d, ("inconclusive", min(r["p_better"], r["p_worse"])))  # fmt: skip
        if r["method"] == best["method"] and r.get("verdict") == "similar" and d == "none":
            outcome, p = "contradicts", r["p_similar"]  # no effect
        it = item(r, outcome, p, f"{r['method']}: gap {gap_text(r)} BPC", {})
        it["role"] = "primary" if r["method"] == best["method"] else "supporting"
        items.append(it)
    items = adjusted(items)
    prim = next(it for it in items if it["role"] == "primary")
    verdict = claim3_label(best, prim["p_adj"])
    improving = int(best["still_improving"])
    where = "inside" if best["gap_lo"] <= -CLAIM3_GAIN <= best["gap_hi"] else "outside"
    row = {**base, "verdict": verdict, "verdict_unadjusted": claim3_label(best),
           "primary": f"{group_name(best)} {best['method']} (best validation)",
           "counts": count_text([prim["adjusted"]]),
           "counts_unadjusted": count_text([prim["outcome"]]),
           "supporting": count_text(sup) if (sup := [it["adjusted"] for it in items
                                                     if it["role"] == "supporting"]) else "none",
           "multiplicity": f"{ADJUSTMENT.capitalize()} over the {len(items)} stochastic "
                           f"groups, family-wise {ALPHA:.0%}",
           "ours": f"{best['method']} (best validation): gap {gap_text(best)} BPC, {LEVEL:.0%} "
                   f"interval, n={int(best['n_paired'])} (the paper's {-CLAIM3_GAIN:+.3f} lies "
                   f"{where} the interval), still improving at its last epoch in {improving} of "
                   f"{int(best['n'])} seeds; {why}"}  # fmt: skip
    return [row, {**row, "task": "overall"}]


def rescue_groups(norm):
    """The rows of :func:`normalization_table` that the normalization claim covers at the
    declared share: binary groups that do not *work* without normalization (fail, diverge or
    are inconclusive), counted only where that unnormalized twin of the same budget was run."""
    if "works_none" not in norm:
        return norm.iloc[0:0]
    none = norm["works_none"]
    return norm[norm["method"].str.startswith("binary") & none.notna() & (none != "works")]


def normalization_table(summary):
    """The normalization rescue side by side: one row per (task, cell, hidden, budget,
    method) trained with a normalization: test mean, gap to the float of the same
    normalization with its interval, the works verdict and the seeds still improving
    (``none``: the unnormalized experiment of the same budget, main / ptb-cells / digits;
    ``weight``; ``layer``)."""
    import pandas as pd

    s = summary[summary["experiment"].isin(NORMALIZATIONS)].copy()
    s["norm"] = s["experiment"].map(NORMALIZATIONS)
    key = ["task", "cell", "hidden", "max_epochs", "train_limit", "method"]
    for col in key:
        if col not in s:
            s[col] = 0
    normed = s[s["norm"] != "none"][key].drop_duplicates()
    if normed.empty:
        return pd.DataFrame()
    s = s.merge(normed, on=key)
    values = (
        "test_mean",
        "n",
        "learned",
        "gap_mean",
        "gap_lo",
        "gap_hi",
        "works",
        "still_improving",
    )
    wide = s.pivot_table(index=[*key, "metric"], columns="norm",
                         values=list(values), aggfunc="first")  # fmt: skip
    order = [(v, n) for n in ("none", "weight", "layer") for v in values if (v, n) in wide.columns]
    wide = wide[order]
    wide.columns = [f"{v}_{n}" for v, n in wide.columns]
    return wide.reset_index()
