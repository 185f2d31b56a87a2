"""Claim 5 of Ott et al., tested (issue 14): when binary weights fail, is it
their scale, their lack of zeros, or the variance of stochastic rounding?

The study's controls, each compared with float by the group rules of :mod:`qrnn.tables`
(``works``: keeps at least half of float's gain over the unigram / chance baseline, decided on
the 95% interval of the paired gap):

* ``binary-det`` / ``binary-stoch``: the paper's binary weights, H = 1;
* ``binary-{glorot,rms}-{det,stoch}``: the same signs with a matrix-dependent H (no zeros);
* ``float-noise-binary``: float weights plus zero-mean noise of binary-stoch's per-weight
  variance ``1 - w^2`` (variance without discreteness);
* ``ternary-det`` / ``ternary-stoch``: weights with zeros at the Glorot scale.

:func:`cause_verdicts` turns those groups into one verdict per (task, cause, mode) with the
rule in words; the book's binarization chapter shows it.

Part of ``qrnn``, the library and study after Ott et al. 2016, *Recurrent Neural Networks With
Limited Numerical Precision*, https://arxiv.org/abs/1608.06902.
"""

from __future__ import annotations

import math

from .verdicts import gap_text

PREFIXES = ("binary-det", "binary-stoch", "binary-glorot", "binary-rms", "float-noise",
            "ternary-det", "ternary-stoch")  # fmt: skip
# (experiment, task, cell) of the groups that take part
PAIRS = {("main", "ptb-char", "lstm"), ("scale", "ptb-char", "lstm"),
         ("noise", "ptb-char", "lstm"), ("digits", "fsdd", "gru"),
         ("digits-cause", "fsdd", "gru")}  # fmt: skip
COLUMNS = ["task", "cell", "method", "metric", "n", "diverged", "learned", "test_mean",
           "gap_mean", "gap_lo", "gap_hi", "verdict", "works", "zero_init"]  # fmt: skip
RULES = {
    "scale": "supported when binary with H = 1 fails and binary with a Glorot or RMS scale "
    "works; not supported when every scale fails; not the cause when H = 1 already works",
    "noise": "supported when float with binary-stoch's rounding variance fails as binary-stoch "
    "does; not supported when it works; not the cause when binary-stoch works",
    "zeros": "supported when ternary works while binary fails at every scale; not required when "
    "binary (no zeros) works at some scale",
}


def causes_table(summary):
    """The groups of :data:`PAIRS` whose method starts with one of :data:`PREFIXES`."""
    keep = [(e, t, c) in PAIRS and m.startswith(PREFIXES)
            for e, t, c, m in zip(summary["experiment"], summary["task"], summary["cell"],
                                  summary["method"], strict=True)]  # fmt: skip
    return summary[keep][COLUMNS].reset_index(drop=True)


def _state(row) -> str:
    """works / fails / inconclusive (an all-diverged group fails)."""
    return "fails" if row["works"] == "diverged" else str(row["works"])


def _evidence(row) -> str:
    if row["works"] == "diverged" or not math.isfinite(row["gap_mean"]):
        return f"{row['method']}: {row['works']} (n={int(row['n'])})"
    if not math.isfinite(row["gap_lo"]):  # one seed: no interval
        return f"{row['method']}: {_state(row)}, gap {row['gap_mean']:+.3f} (n={int(row['n'])})"
    return f"{row['method']}: {_state(row)}, gap {gap_text(row)} (n={int(row['n'])})"


def _decide(cause: str, mode: str, get) -> tuple[str, list]:
    """(verdict, the groups it read) for one cause and rounding mode; ``get(method)`` is the
    group's row or None."""
    unit = get(f"binary-{mode}")
    scaled = [r for r in (get(f"binary-glorot-{mode}"), get(f"binary-rms-{mode}")) if r is not None]
    if cause == "scale":
        used = [unit, *scaled]
        if unit is not None and _state(unit) == "works":
            return "not the cause (H = 1 works)", used
        if unit is None or not scaled:
            return "not tested", used
        states = {_state(r) for r in scaled}
        if _state(unit) == "fails" and "works" in states:
            return "supported", used
        if _state(unit) == "fails" and states == {"fails"}:
            return "not supported", used
        return "inconclusive", used
    if cause == "noise":
        noisy = get("float-noise-binary")
        used = [unit, noisy]
        if unit is not None and _state(unit) == "works":
            return "not the cause (binary-stoch works)", used
        if unit is None or noisy is None:
            return "not tested", used
        return {"fails": "supported", "works": "not supported"}.get(
            _state(noisy), "inconclusive"
        ), used
    tern = get(f"ternary-{mode}")  # zeros
    used = [tern, unit, *scaled]
    if unit is not None and _state(unit) == "works":
        return "not required (binary with H = 1 works without zeros)", used
    if any(_state(r) == "works" for r in scaled):
        return "not required (scaled binary works without zeros)", used
    if tern is None or not scaled:
        return "not tested", used
    if _state(tern) == "works" and all(
        _state(r) == "fails" for r in [unit, *scaled] if r is not None
    ):
        return "supported", used
    return "inconclusive", used


def cause_verdicts(causes):
    """One row per (task, cause, mode): verdict, the groups' evidence and the rule in words.
    ``causes`` is :func:`causes_table`'s frame (``results/<profile>/causes.csv``)."""
    import pandas as pd

    rows = []
    for task, g in causes.groupby("task", sort=False):
        by = {m: r for m, r in zip(g["method"], g.to_dict("records"), strict=True)}
        for cause, modes in (("scale", ("det", "stoch")), ("noise", ("stoch",)),
                             ("zeros", ("det", "stoch"))):  # fmt: skip
            for mode in modes:
                verdict, used = _decide(cause, mode, by.get)
                rows.append({"task": task, "cause": cause, "mode": mode, "verdict": verdict,
                             "evidence": "; ".join(_evidence(r) for r in used if r is not None),
                             "rule": RULES[cause]})  # fmt: skip
    return pd.DataFrame(rows, columns=["task", "cause", "mode", "verdict", "evidence", "rule"])
