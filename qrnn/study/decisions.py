"""The paper's claims decided from the study's groups (``summary.csv``) by a profile's study
design (:class:`qrnn.study.designs.Design`: which experiments form the main grid, each task's
declared primary group, claim N's, claim 3's and claim 4's experiments, the convergence rule):
per task from the primary group (supporting and exploratory groups counted beside it),
labelled by :func:`qrnn.study.verdicts.claim_label`, with the raw and the multiplicity-adjusted
verdicts (Holm within each claim), one convergence rule for every claim, "works" at the
declared share of float's gain and at stricter ones (:func:`claim_thresholds`), and the
normalization table of claim N. Claim 3 is decided per training size in
:mod:`qrnn.study.overfitting`. Written by ``qrnn study summarize`` through
:func:`qrnn.study.tables.summarize`.

Part of ``qrnn``, the library and study after Ott et al. 2016, *Recurrent Neural Networks With
Limited Numerical Precision*, https://arxiv.org/abs/1608.06902.
"""

from __future__ import annotations

from .designs import CPU, Design
from .evidence import (
    LABEL_RULE,
    PRIMARY,
    SCOPES,
    TASK_SCOPES,
    WORKS_AT,
    claim_rows,
    group_name,
    item,
    works_p,
    works_state,
)
from .overfitting import CLAIM3_GAIN, OVERFIT_GAP, claim3_label, claim3_rows, overfits
from .verdicts import direction, gap_text

# study v2's names (profile cpu); every profile's own are its design's (qrnn.study.designs)
MAIN_GRID = CPU.main_grid  # the main grid: the claims about methods read these experiments
# experiment -> the normalization it adds to the settings of an unnormalized experiment
NORMALIZATIONS = CPU.normalizations
# claim N's primary groups: PTB as every claim, digits the LSTM (the only normalized cell)
RESCUE_PRIMARY = CPU.rescue
DIGIT_METHODS = ("ternary-det", "ternary-stoch", "pow2-ternary", "exponential-det",
                 "exponential-stoch")  # fmt: skip

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


def _claim1_item(r, share: float, design: Design) -> dict:
    primary = design.primary
    if r["works"] == "diverged":
        return item(r, "supports", 0.0, f"{group_name(r)} {r['method']}: diverged", primary,
                    design)  # fmt: skip
    state = works_state(r, share)
    p_works, p_fails = works_p(r, share)
    outcome, p = {"fails": ("supports", p_fails), "works": ("contradicts", p_works)}.get(
        state, ("inconclusive", min(p_works, p_fails))
    )
    text = f"{group_name(r)} {r['method']}: {state}, gap {gap_text(r)}"
    return item(r, outcome, p, text, primary, design)


def _claim2_item(r, design: Design) -> dict:
    """Similar or better supports (either decides), worse or diverged contradicts."""
    text = f"{group_name(r)} {r['method']}: {r['verdict']}, gap {gap_text(r)}"
    if r["verdict"] == "diverged":
        outcome, p = "contradicts", 0.0
    elif r["verdict"] in ("similar", "better"):
        outcome, p = "supports", min(r["p_similar"], r["p_better"])
    elif r["verdict"] == "worse":
        outcome, p = "contradicts", r["p_worse"]
    else:
        outcome, p = "inconclusive", min(r["p_similar"], r["p_better"], r["p_worse"])
    return item(r, outcome, p, text, design.primary, design)


def _claim4_item(r, design: Design) -> dict:
    """A claim of a direction: better takes precedence over similar."""
    d = direction(r["gap_lo"], r["gap_hi"], n=r["n_paired"])
    text = f"{group_name(r)} {r['method']}: {d if d != 'none' else r['verdict']}, gap {gap_text(r)}"
    if r["verdict"] == "diverged":
        outcome, p = "contradicts", 0.0
    elif d == "better":
        outcome, p = "supports", r["p_better"]
    elif d == "worse":
        outcome, p = "contradicts", r["p_worse"]
    elif r["verdict"] == "similar":
        outcome, p = "contradicts", r["p_similar"]
    else:
        outcome, p = "inconclusive", min(r["p_better"], r["p_similar"])
    return item(r, outcome, p, text, design.primary, design)


def _rescue_items(summary, share: float, design: Design) -> list[dict]:
    """Claim N: per binary group that does not work without normalization at ``share``, its
    twins of the same task, cell, hidden size, budget and method with a normalization:
    supports when one works, contradicts when every one tried fails."""
    s = summary[summary["experiment"].isin(design.normalizations)]
    s = s.assign(norm=s["experiment"].map(design.normalizations))
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
        improving = {t["norm"]: design.pending(t) for _, t in twins.iterrows()}
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
        out.append(item(r, outcome, p, text, design.rescue or {}, design, pending=still))
    return out


def _planned(primary: dict | None) -> dict:
    """Task scope -> its declared primary group in words (named while it has no run)."""
    return {SCOPES[t]: f"{e} {t} {str(c).upper()} {h}" for t, (e, _, c, h) in
            (primary or {}).items() if t in SCOPES}  # fmt: skip


def _threshold(share: float) -> str:
    return f"works at {share:g} of float's gain" + (" (declared)" if share == WORKS_AT[0] else "")


def _claim1(main, share: float, design: Design) -> list[dict]:
    binary = main[main["method"].isin(["binary-det", "binary-stoch"])]
    return claim_rows(
        "1. binarization (det. and stoch.) does not work for RNNs",
        f"per binary group of the main grid: supports when it diverges or the 95% interval "
        f"of its gap to float lies above {share:g} of float's gain over the unigram/chance "
        f"baseline (fails); contradicts when it lies below (works); "
        f"{design.convergence_rule}; {LABEL_RULE}",
        [_claim1_item(r, share, design) for _, r in binary.iterrows()],
        TASK_SCOPES,
        _threshold(share),
        _planned(design.primary),
    )


def _claimN(summary, share: float, design: Design) -> list[dict]:
    claim = "N. (later work) weight or layer normalization makes binary RNNs work"
    if design.rescue is None:
        return claim_rows(
            claim,
            f"not in this study's design: profile {design.profile} runs no normalization "
            "experiment, so claim N is not tested here (study v2 decides it: "
            "results/cpu/claims.csv)",
            [],
            TASK_SCOPES,
            _threshold(share),
        )
    return claim_rows(
        claim,
        f"per binary group that does not work without normalization (at {share:g} of "
        "float's gain): supports when its twin of the same task, cell, hidden size and "
        "budget works with weight or layer normalization, contradicts when it fails with "
        f"every normalization tried; {design.convergence_rule}; {LABEL_RULE} (primary: PTB "
        "the headline LSTM, digits the LSTM on the standard split, the only normalized digits "
        "cell)",
        _rescue_items(summary, share, design),
        TASK_SCOPES,
        _threshold(share),
    )


def _claim4(summary, design: Design) -> list[dict]:
    dig = summary[(summary["experiment"] == design.digits)
                  & summary["task"].map(SCOPES).eq("spoken digits")
                  & summary["method"].isin(DIGIT_METHODS)]  # fmt: skip
    return claim_rows(
        "4. on spoken digits ternary, pow2 and exponential quantization beat float",
        f"per (split, cell, method) of the {design.digits} experiment (FSDD for TIDIGITS): "
        "supports when the error-gap interval lies below 0 (better, read before similar: a "
        "claim of a direction); contradicts when it is similar and not below 0, above 0 or "
        f"diverged; {design.convergence_rule}; {LABEL_RULE}",
        [_claim4_item(r, design) for _, r in dig.iterrows()],
        ("spoken digits",),
        planned=_planned({t: v for t, v in design.primary.items() if v[0] == design.digits}),
    )


def claims(runs, summary, design: Design = CPU) -> list[dict]:
    """The paper's claims (../shared/PAPER.md), each decided per task from the declared
    primary groups of the profile's ``design`` by its rule, with the raw and the
    multiplicity-adjusted verdict, and once overall (claim 3 per training size)."""
    out = []
    main = summary[summary["experiment"].isin(design.main_grid)]
    out += _claim1(main, WORKS_AT[0], design)
    tern = main[main["method"].isin(["ternary-det", "ternary-stoch", "pow2-ternary"])]
    out += claim_rows(
        "2. ternary and pow2-ternary give similar or better accuracy than float",
        "per group of the main grid: supports when the gap interval is within +-margin "
        "(similar; a 95% interval inside the margin is a two one-sided test at 2.5% per side) "
        "or below 0 (better); contradicts when above 0 (worse) or diverged; margins 0.05 BPC, "
        f"1 point of error; {design.convergence_rule}; {LABEL_RULE}",
        [_claim2_item(r, design) for _, r in tern.iterrows()],
        TASK_SCOPES,
        planned=_planned(design.primary),
    )
    out += claim3_rows(runs, summary, design)
    out += _claim4(summary, design)
    if design.rescue is None or len(normalization_table(summary, design)):
        out += _claimN(summary, WORKS_AT[0], design)
    return out


def claim_thresholds(runs, summary, design: Design = CPU):
    """How claims 1 and N move with the share of float's gain that decides "works"
    (:data:`WORKS_AT`): one row per claim, task and share (claim N where the ``design``
    tests it)."""
    import pandas as pd

    main = summary[summary["experiment"].isin(design.main_grid)]
    rows = []
    for share in WORKS_AT:
        got = _claim1(main, share, design)
        if design.rescue is not None and len(normalization_table(summary, design)):
            got += _claimN(summary, share, design)
        rows += [{"claim": r["claim"], "task": r["task"], "share": share,
                  "verdict": r["verdict"], "verdict_unadjusted": r["verdict_unadjusted"],
                  "counts": r["counts"], "supporting": r["supporting"],
                  "exploratory": r["exploratory"]} for r in got]  # fmt: skip
    return pd.DataFrame(rows)


def rescue_groups(norm):
    """The rows of :func:`normalization_table` that the normalization claim covers at the
    declared share: binary groups that do not *work* without normalization (fail, diverge or
    are inconclusive), counted only where that unnormalized twin of the same budget was run."""
    if "works_none" not in norm:
        return norm.iloc[0:0]
    none = norm["works_none"]
    return norm[norm["method"].str.startswith("binary") & none.notna() & (none != "works")]


def normalization_table(summary, design: Design = CPU):
    """The normalization rescue side by side: one row per (task, cell, hidden, budget,
    method) trained with a normalization: test mean, gap to the float of the same
    normalization with its interval, the works verdict and the seeds still improving
    (``none``: the unnormalized experiment of the same budget, main / ptb-cells / digits;
    ``weight``; ``layer``; the experiments are the ``design``'s ``normalizations``)."""
    import pandas as pd

    s = summary[summary["experiment"].isin(design.normalizations)].copy()
    s["norm"] = s["experiment"].map(design.normalizations)
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
