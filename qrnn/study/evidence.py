"""How a group's interval becomes a claim's evidence: "works" at a share of float's gain,
each group's role in its task (the declared primary group, supporting, exploratory), its
outcome and p-value, one convergence rule per study design (v2: a group still improving in
any seed decides nothing; from v3 on: a group with a seed not converged by the written rule;
:mod:`qrnn.study.designs`), the multiplicity adjustment within a claim and the rows of a claim
per task and overall (:func:`claim_rows`). The claims themselves are in
:mod:`qrnn.study.decisions`.

Part of ``qrnn``, the library and study after Ott et al. 2016, *Recurrent Neural Networks With
Limited Numerical Precision*, https://arxiv.org/abs/1608.06902.
"""

from __future__ import annotations

import math
from numbers import Real

from .designs import CPU, Design
from .verdicts import ALPHA, adjust, claim_label, count_text, p_above, p_below

# "works": the gap to float is below this share of float's gain over the unigram / chance
# baseline (0.5: keeps at least half of the gain; 0.2 and 0.1 are stricter); the first
# decides claims 1 and N (declared before the runs), the others show how the claims move
WORKS_AT = (0.5, 0.2, 0.1)
# each task's declared primary group (experiment, task, cell, hidden) in study v2; every
# profile's own is its design's (qrnn.study.designs)
PRIMARY = CPU.primary
EXPLORATORY = ("fsdd-speakers",)
SCOPES = {"ptb-char": "PTB-char", "fsdd": "spoken digits", "fsdd-speakers": "spoken digits"}
ADJUSTMENT = "holm"  # within each claim, over its groups (qrnn.study.verdicts.adjust)
TASK_SCOPES = ("PTB-char", "spoken digits")
CONVERGENCE_RULE = CPU.convergence_rule  # study v2's; a design names its own
LABEL_RULE = (
    "per task, from its primary group(s): reproduced when all support, partly "
    "reproduced when some support and none contradicts, not reproduced when some "
    "contradict and none supports, mixed when both; supporting and exploratory "
    "groups are counted beside it"
)

__all__ = [
    "ADJUSTMENT",
    "CONVERGENCE_RULE",
    "LABEL_RULE",
    "PRIMARY",
    "TASK_SCOPES",
    "WORKS_AT",
    "adjusted",
    "claim_rows",
    "group_name",
    "item",
    "role",
    "works_p",
    "works_state",
]


def works_state(row, share: float = WORKS_AT[0]) -> str:
    """works | fails | inconclusive | diverged: does the group lose less than ``share`` of
    float's gain over the baseline (``gain``)? Decided on the 95% interval of the gap: fails
    when it lies above ``share * gain``, works when below."""
    if not math.isfinite(row["gap_mean"]) and not row.get("n_paired"):
        return "diverged"
    lo, hi, thr = row["gap_lo"], row["gap_hi"], share * row["gain"]
    if row["n_paired"] >= 2 and lo > thr:
        return "fails"
    if row["n_paired"] >= 2 and hi < thr:
        return "works"
    return "inconclusive"


def works_p(row, share: float) -> tuple[float, float]:
    """(p works, p fails) at ``share`` of float's gain, on the interval's scale."""
    args = (row["gap_mean"], row["gap_sd"], int(row["n_paired"]), share * row["gain"])
    return p_below(*args), p_above(*args)


def group_name(r) -> str:
    """A group's configuration in words: ``main ptb-char LSTM 256, 5 epochs``."""

    def num(v):
        return isinstance(v, Real) and math.isfinite(v) and v

    h, e, limit = r.get("hidden"), r.get("max_epochs"), r.get("train_limit")
    size = f" {int(h)}" if num(h) else ""
    budget = f", {int(e)} epochs" if num(e) else ""
    if num(limit):
        budget += f" on {int(limit):,} items"
    return f"{r.get('experiment', '')} {r['task']} {str(r['cell']).upper()}{size}{budget}".strip()


def role(r, primary: dict) -> str:
    """primary | supporting | exploratory: a group's part in its task's verdict."""
    if r["task"] in EXPLORATORY:
        return "exploratory"
    want = primary.get(r["task"])
    have = tuple(r.get(k) for k in ("experiment", "task", "cell", "hidden"))
    return "primary" if want is not None and have[: len(want)] == tuple(want) else "supporting"


def item(
    r,
    outcome: str,
    p: float,
    text: str,
    primary: dict,
    design: Design = CPU,
    pending: int | None = None,
) -> dict:
    """One group's evidence for a claim; a group with a seed that has not converged by the
    ``design``'s rule (:meth:`~qrnn.study.designs.Design.pending`, or ``pending`` seeds when
    given) cannot decide a claim about converged accuracy (``not converged``)."""
    k = design.pending(r) if pending is None else pending
    if outcome in ("supports", "contradicts", "inconclusive") and k:
        outcome, p = "not converged", math.nan
        text += f", {design.pending_text(k, r['n'])}"
    return {"task": r["task"], "scope": SCOPES.get(r["task"], r["task"]),
            "role": role(r, primary), "config": group_name(r), "outcome": outcome, "p": p,
            "text": text}  # fmt: skip


def adjusted(items: list[dict]) -> list[dict]:
    """Add ``p_adj`` (:data:`ADJUSTMENT` over the claim's groups with a p-value) and
    ``adjusted`` (the outcome kept only when its adjusted p-value is at most ALPHA)."""
    for it, q in zip(items, adjust([it["p"] for it in items], ADJUSTMENT), strict=True):
        it["p_adj"] = q
        decided = it["outcome"] in ("supports", "contradicts")
        it["adjusted"] = "inconclusive" if decided and not q <= ALPHA else it["outcome"]
    return items


def _scope_row(claim: str, scope: str, items: list[dict], common: dict, waiting) -> dict:
    """The row of one task scope of a claim, decided by its primary groups; ``waiting``: the
    primary group in words when it has no finished run yet (else None)."""
    mine = [it for it in items if it["scope"] == scope]
    prim = [it for it in mine if it["role"] == "primary"]

    def counts(role, key="adjusted"):
        got = [it[key] for it in mine if it["role"] == role]
        return count_text(got) if got else "none"

    untested = "not tested in the primary group" if mine else "not tested"
    return {
        "claim": claim, "task": scope,
        "verdict": claim_label([it["adjusted"] for it in prim]) if prim else untested,
        "verdict_unadjusted": claim_label([it["outcome"] for it in prim]) if prim
        else untested,
        "primary": "; ".join(dict.fromkeys(it["config"] for it in prim))
        or (f"{waiting} (no finished run yet)" if waiting else "not run"),
        "counts": counts("primary"), "counts_unadjusted": counts("primary", "outcome"),
        "supporting": counts("supporting"), "exploratory": counts("exploratory"),
        **common,
        "ours": "; ".join(f"{it['text']}: {it['adjusted']}" for it in prim)
        or ("the primary group has no finished run yet" if waiting else "no group"),
    }  # fmt: skip


def claim_rows(
    claim: str, rule: str, items: list[dict], scopes, note: str = "", planned: dict | None = None
) -> list[dict]:
    """The rows of one claim: one per task scope (decided by its primary groups) and one
    overall; ``planned`` (scope -> the primary group in words) names a primary group that has
    no finished run yet."""
    items = adjusted(items)
    family = sum(1 for it in items if math.isfinite(it["p"]))
    multiplicity = (f"{ADJUSTMENT.capitalize()} over the {family} group(s) of the claim with a "
                    f"p-value, family-wise {ALPHA:.0%}")  # fmt: skip
    common = {"threshold": note, "multiplicity": multiplicity, "rule": rule}
    rows = [_scope_row(claim, scope, items, common, (planned or {}).get(scope))
            for scope in scopes]  # fmt: skip
    verdicts = {r["task"]: r["verdict"] for r in rows}
    raw = {r["task"]: r["verdict_unadjusted"] for r in rows}

    def overall(v):
        """The tasks' verdicts: one word when they agree, else each task's (tasks without
        any group left out)."""
        v = {k: x for k, x in v.items() if x != "not tested"} or {"": "not tested"}
        return (
            next(iter(v.values()))
            if len(set(v.values())) == 1
            else "; ".join(f"{k}: {x}" for k, x in v.items())
        )

    def every(role, key="adjusted"):
        got = [it[key] for it in items if it["role"] == role]
        return count_text(got) if got else "none"

    rows.append({
        "claim": claim, "task": "overall", "verdict": overall(verdicts),
        "verdict_unadjusted": overall(raw),
        "primary": "; ".join(r["primary"] for r in rows),
        "counts": every("primary"), "counts_unadjusted": every("primary", "outcome"),
        "supporting": every("supporting"), "exploratory": every("exploratory"),
        "threshold": note, "multiplicity": multiplicity, "rule": rule,
        "ours": "; ".join(f"{r['task']}: {r['verdict']}" for r in rows),
    })  # fmt: skip
    return rows
