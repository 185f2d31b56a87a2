"""Claim 3 of Ott et al. decided per training size: on PTB-char the best stochastic model
beats float by 0.133 BPC, attributed to the regularizing effect of stochastic rounding in a
slightly overfitting setting.

Each overfitting experiment of a study design (:attr:`qrnn.study.designs.Design.overfit`: v2's
``overfit``, v3's ``overfit-250k`` and ``overfit-1m``) is decided on its own: its gate (float
overfits, :func:`overfits`), the stochastic method with the best mean validation metric as the
primary group and its paired test gap to float (:func:`claim3_label`), the other stochastic
methods beside it, and, reported and deciding nothing, the design's float references (float at
a constant learning rate, float with dropout) against float and the best of them against the
chosen stochastic method: if dropout regularizes better than stochastic rounding, the rows say
so. Written into ``claims.csv`` by :func:`qrnn.study.decisions.claims`.

Part of ``qrnn``, the library and study after Ott et al. 2016, *Recurrent Neural Networks With
Limited Numerical Precision*, https://arxiv.org/abs/1608.06902.
"""

from __future__ import annotations

import math

from .designs import CPU, Design
from .evidence import ADJUSTMENT, adjusted, group_name, item
from .verdicts import (
    ALPHA,
    LEVEL,
    MARGINS,
    count_text,
    direction,
    gap_text,
    group_verdict,
    interval,
)

OVERFIT_GAP = 0.1  # claim 3's gate: final valid - final train BPC of float, at least this
CLAIM3_GAIN = 0.133  # the paper's gain of its best stochastic PTB-char model over float (BPC)

__all__ = ["CLAIM3_GAIN", "OVERFIT_GAP", "claim3_label", "claim3_rows", "overfits"]


def overfits(runs, experiment: str = "overfit") -> tuple[bool, str]:
    """Claim 3's gate from the float runs of ``experiment``: every seed's best validation
    epoch comes before its last, and its final training BPC is below its final validation
    BPC by at least :data:`OVERFIT_GAP`."""
    fl = runs[(runs["experiment"] == experiment) & (runs["method"] == "float")]
    if fl.empty:
        return False, f"no float run in the {experiment} experiment"
    early = fl["best_epoch"] < fl["epochs"]
    gap = fl["final_valid"] - fl["final_train"]
    ok = bool(early.all() and (gap >= OVERFIT_GAP).all())
    why = (f"float best epoch {', '.join(str(int(b)) for b in fl['best_epoch'])} of "
           f"{int(fl['epochs'].max())}; final valid - train BPC "
           f"{', '.join(f'{g:.2f}' for g in gap)}")  # fmt: skip
    return ok, why


def claim3_label(row, p_adj: float = math.nan, design: Design = CPU) -> str:
    """Claim 3's verdict on the chosen group: it names a direction and a size, so
    *reproduced* (below 0, the paper's gain inside the interval), *direction reproduced,
    size not reproduced* (below 0, the paper's gain outside), *no effect* (inside the margin
    around 0), *opposite effect* (above 0), else *inconclusive*; ``p_adj`` (adjusted p-value
    of that reading) above ALPHA makes it *inconclusive*; a group with a seed that has not
    converged by the ``design``'s rule is *not converged at this budget*."""
    if design.pending(row):
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


def _rule(design: Design) -> str:
    sizes = design.overfit
    per = (f"per training size ({', '.join(sizes)}), each with its own gate: "
           if len(sizes) > 1 else "")  # fmt: skip
    refs = (f"; beside them, reported and deciding nothing: {', '.join(design.references)} "
            "against float (paired by seed; similar / better / worse by the group rule) and "
            "the best of them on validation against the chosen stochastic method"
            if design.references else "")  # fmt: skip
    return (
        f"{per}only when float overfits (best validation epoch before the last, final train "
        f"BPC below validation by >= {OVERFIT_GAP}); the stochastic method with the best mean "
        "validation BPC is the primary group, then its paired test gap interval: "
        "reproduced when below 0 with the paper's -0.133 inside it; direction reproduced, "
        "size not reproduced when below 0 without it; no effect when inside +-0.05 BPC "
        "around 0; opposite effect when above 0; inconclusive otherwise; "
        f"{design.convergence_rule}; the other stochastic groups support the direction{refs}"
    )


def _paired(runs, experiment: str, method: str, against: str) -> dict | None:
    """The per-seed test gap of ``method`` minus ``against`` within ``experiment``: its
    interval as gap columns and the group rule's verdict (None when ``method`` has no run)."""
    ex = runs[runs["experiment"] == experiment]
    a, b = (ex[ex["method"] == m].groupby("seed")["test"].mean() for m in (method, against))
    if a.empty:
        return None
    iv = interval((a - b).dropna())
    margin = MARGINS.get(str(ex["metric"].iloc[0]), 0.0)
    verdict = ("diverged" if a.notna().sum() == 0 else
               group_verdict(iv["lo"], iv["hi"], margin, n=iv["n"]))  # fmt: skip
    return {"gap_mean": iv["mean"], "gap_lo": iv["lo"], "gap_hi": iv["hi"], "n_paired": iv["n"],
            "verdict": verdict}  # fmt: skip


def _references(runs, summary, experiment: str, design: Design, chosen: str | None):
    """(short, long) texts of the design's float references in ``experiment`` against float
    and, the best of them on validation, against the ``chosen`` stochastic method; None
    without references."""
    short, long, valid = [], [], {}
    for m in design.references:
        got = _paired(runs, experiment, m, "float")
        if got is None:
            continue
        g = summary[(summary["experiment"] == experiment) & (summary["method"] == m)]
        k = design.pending(g.iloc[0]) if len(g) else 0
        late = f" ({design.pending_text(k, g.iloc[0]['n'])})" if k else ""
        short.append(f"{m} {got['verdict']}{' (not converged)' if k else ''}")
        long.append(f"{m}: {got['verdict']}, gap {gap_text(got)} BPC{late}")
        ex = runs[(runs["experiment"] == experiment) & (runs["method"] == m)]
        valid[m] = float(ex["valid"].mean())
    if not short:
        return None
    best = min((m for m in valid if math.isfinite(valid[m])), key=valid.get, default=None)
    vs = _paired(runs, experiment, best, chosen) if best and chosen else None
    if vs is not None:
        short.append(f"{best} vs {chosen}: {vs['verdict']}")
        long.append(f"the best on validation, {best}, against {chosen} (the chosen stochastic "
                    f"model): {vs['verdict']}, gap {gap_text(vs)} BPC")  # fmt: skip
    return (
        "references vs float: " + ", ".join(short),
        "references against float (paired by seed, deciding nothing): " + "; ".join(long),
    )


def _size_row(runs, summary, experiment: str, task: str, design: Design) -> dict:
    """Claim 3's row for one overfitting experiment (one training size)."""
    claim = f"3. on PTB-char the best stochastic model beats float by {CLAIM3_GAIN} BPC"
    base = {"claim": claim, "task": task, "primary": f"{experiment} ptb-char LSTM",
            "supporting": "none", "exploratory": "none", "threshold": "",
            "multiplicity": "", "rule": _rule(design)}  # fmt: skip
    ok, why = overfits(runs, experiment)
    mine = summary[summary["experiment"] == experiment]
    over = mine[~mine["method"].str.startswith("float")]
    if not ok or over.empty:
        refs = _references(runs, summary, experiment, design, None)
        ran = ((runs["experiment"] == experiment) & (runs["method"] == "float")).any()
        counts = ("no finished float run yet" if not ran else
                  "no overfitting regime" if not ok else "no stochastic group")  # fmt: skip
        return {**base, "verdict": "not tested", "verdict_unadjusted": "not tested",
                "counts": counts,
                "counts_unadjusted": "", "ours": f"{why}; {refs[1]}" if refs else why}  # fmt: skip
    valid = runs[runs["experiment"] == experiment].groupby("method")["valid"].mean()
    best = over.loc[over["method"].map(valid).idxmin()]
    items = []
    for _, r in over.iterrows():
        d = direction(r["gap_lo"], r["gap_hi"], n=r["n_paired"])
        outcome, p = {"better": ("supports", r["p_better"]),
                      "worse": ("contradicts", r["p_worse"])}.get(
            d, ("inconclusive", min(r["p_better"], r["p_worse"])))  # fmt: skip
        if r["method"] == best["method"] and r.get("verdict") == "similar" and d == "none":
            outcome, p = "contradicts", r["p_similar"]  # no effect
        it = item(r, outcome, p, f"{r['method']}: gap {gap_text(r)} BPC", {}, design)
        it["role"] = "primary" if r["method"] == best["method"] else "supporting"
        items.append(it)
    items = adjusted(items)
    prim = next(it for it in items if it["role"] == "primary")
    sup = [it["adjusted"] for it in items if it["role"] == "supporting"]
    where = "inside" if best["gap_lo"] <= -CLAIM3_GAIN <= best["gap_hi"] else "outside"
    late = design.pending_text(design.pending(best), best["n"], long=True)
    refs = _references(runs, summary, experiment, design, best["method"])
    return {**base, "verdict": claim3_label(best, prim["p_adj"], design),
            "verdict_unadjusted": claim3_label(best, design=design),
            "primary": f"{group_name(best)} {best['method']} (best validation)",
            "counts": count_text([prim["adjusted"]]) + (f"; {refs[0]}" if refs else ""),
            "counts_unadjusted": count_text([prim["outcome"]]),
            "supporting": count_text(sup) if sup else "none",
            "multiplicity": f"{ADJUSTMENT.capitalize()} over the {len(items)} stochastic "
                            f"groups, family-wise {ALPHA:.0%}",
            "ours": f"{best['method']} (best validation): gap {gap_text(best)} BPC, {LEVEL:.0%} "
                    f"interval, n={int(best['n_paired'])} (the paper's {-CLAIM3_GAIN:+.3f} lies "
                    f"{where} the interval), {late}; {why}"
                    + (f"; {refs[1]}" if refs else "")}  # fmt: skip


def claim3_rows(runs, summary, design: Design = CPU) -> list[dict]:
    """Claim 3's rows: one per overfitting experiment of the ``design`` (task ``PTB-char``
    when it has one, ``PTB-char (<experiment>)`` per training size when several) and one
    overall (each size's verdict, or the one they share)."""
    sizes = design.overfit or ("overfit",)
    rows = [_size_row(runs, summary, e, "PTB-char" if len(sizes) == 1 else f"PTB-char ({e})",
                      design) for e in sizes]  # fmt: skip
    if len(rows) == 1:
        return [rows[0], {**rows[0], "task": "overall"}]

    def joined(key):
        v = [r[key] for r in rows]
        return v[0] if len(set(v)) == 1 else "; ".join(f"{r['task']}: {r[key]}" for r in rows)

    every = {
        k: "; ".join(f"{r['task']}: {r[k]}" for r in rows)
        for k in ("primary", "counts", "counts_unadjusted", "supporting", "multiplicity")
    }
    return [*rows, {**rows[0], **every, "task": "overall", "verdict": joined("verdict"),
                    "verdict_unadjusted": joined("verdict_unadjusted"),
                    "ours": "; ".join(f"{r['task']}: {r['verdict']}" for r in rows)}]  # fmt: skip
