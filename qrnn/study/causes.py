"""Claim 5 of Ott et al., tested (issue 14): when binary weights fail, is it
their scale, their lack of zeros, or the variance of stochastic rounding?

The study's controls, each compared with float by the group rules of :mod:`qrnn.study.tables`
(``works``: keeps at least half of float's gain over the unigram / chance baseline, decided on
the 95% interval of the paired gap):

* ``binary-det`` / ``binary-stoch``: the paper's binary weights, H = 1;
* ``binary-{glorot,rms}-{det,stoch}``: the same signs with a matrix-dependent H (no zeros);
* ``float-noise-binary``: float weights plus zero-mean noise of binary-stoch's per-weight
  variance ``1 - w^2`` (variance without discreteness);
* ``ternary-det`` / ``ternary-stoch``: weights with zeros at the Glorot scale.

:func:`cause_verdicts` turns those groups into one verdict per configuration (task, cell,
hidden size, budget, setting), cause and mode with the rule in words; the book's binarization
chapter shows it. **Zeros** are decided on accuracy at equal scale: binary weights at the
Glorot scale against ternary weights, whose level ``W0`` is the same Glorot bound, paired by
seed. A verdict that rests on a group still improving at its last epoch in any seed reads *not
converged at this budget* (``verdict_at_budget`` keeps the rule's reading at the budget run).
The dose-response runs of the study issue (float + noise of binary-stoch's variance at several
``H``, :data:`DOSE_EXPERIMENTS`) are where scale and noise are to be recomputed; until they
exist, ``dose_response`` says "not run yet".

Part of ``qrnn``, the library and study after Ott et al. 2016, *Recurrent Neural Networks With
Limited Numerical Precision*, https://arxiv.org/abs/1608.06902.
"""

from __future__ import annotations

import math

from .verdicts import MARGINS, gap_text, group_verdict, interval

PREFIXES = ("binary-det", "binary-stoch", "binary-glorot", "binary-rms", "float-noise",
            "ternary-det", "ternary-stoch")  # fmt: skip
# (experiment, task, cell) of the groups that take part
PAIRS = {("main", "ptb-char", "lstm"), ("scale", "ptb-char", "lstm"),
         ("noise", "ptb-char", "lstm"), ("digits", "fsdd", "gru"),
         ("digits-cause", "fsdd", "gru")}  # fmt: skip
COLUMNS = ["experiment", "task", "cell", "hidden", "max_epochs", "train_limit", "setting",
           "method", "metric", "n", "diverged", "learned", "still_improving", "test_mean",
           "gap_mean", "gap_lo", "gap_hi", "verdict", "works", "zero_init"]  # fmt: skip
# the configuration a cause verdict is decided within (the experiments differ: main / scale /
# noise share one setting)
CONFIG = ["task", "cell", "hidden", "max_epochs", "train_limit", "setting"]
# the study issue's dose-response experiments: the hook where scale / noise are to be decided
DOSE_EXPERIMENTS = ("noise-dose",)
RULES = {
    "scale": "supported when binary with H = 1 fails and binary with a Glorot or RMS scale "
    "works; not supported when every scale fails; not the cause when H = 1 already works",
    "noise": "supported when float with binary-stoch's rounding variance fails as binary-stoch "
    "does; not supported when it works; not the cause when binary-stoch works",
    "zeros": "on accuracy at equal scale (binary at the Glorot scale minus ternary, paired by "
    "seed, 95% interval, the group margins): supported when binary is worse; not required when "
    "similar or better; inconclusive otherwise (verdict_works: the earlier reading, supported when "
    "ternary works while binary fails at every scale)",
}


def causes_table(summary):
    """The groups of :data:`PAIRS` whose method starts with one of :data:`PREFIXES`."""
    keep = [(e, t, c) in PAIRS and m.startswith(PREFIXES)
            for e, t, c, m in zip(summary["experiment"], summary["task"], summary["cell"],
                                  summary["method"], strict=True)]  # fmt: skip
    return summary[keep][[c for c in COLUMNS if c in summary]].reset_index(drop=True)


def _state(row, converged: bool = False) -> str:
    """works / fails / inconclusive (an all-diverged group fails); with ``converged``, a
    group still improving in any seed is ``not converged``."""
    if converged and row.get("still_improving", 0) and row["works"] != "diverged":
        return "not converged"
    return "fails" if row["works"] == "diverged" else str(row["works"])


def _evidence(row) -> str:
    n = f"n={int(row['n'])}"
    if row.get("still_improving", 0):
        n += f", {int(row['still_improving'])} still improving"
    if row["works"] == "diverged" or not math.isfinite(row["gap_mean"]):
        return f"{row['method']}: {row['works']} ({n})"
    if not math.isfinite(row["gap_lo"]):  # one seed: no interval
        return f"{row['method']}: {_state(row)}, gap {row['gap_mean']:+.3f} ({n})"
    return f"{row['method']}: {_state(row)}, gap {gap_text(row)} ({n})"


def _decide(cause: str, mode: str, get, state=_state) -> tuple[str, list]:
    """(verdict, the groups it read) for one cause and rounding mode by the works readings;
    ``get(method)`` is the group's row or None, ``state(row)`` its reading."""
    unit = get(f"binary-{mode}")
    scaled = [r for r in (get(f"binary-glorot-{mode}"), get(f"binary-rms-{mode}")) if r is not None]
    if cause == "scale":
        used = [unit, *scaled]
        if unit is not None and state(unit) == "works":
            return "not the cause (H = 1 works)", used
        if unit is None or not scaled:
            return "not tested", used
        states = {state(r) for r in scaled}
        if state(unit) == "fails" and "works" in states:
            return "supported", used
        if state(unit) == "fails" and states == {"fails"}:
            return "not supported", used
        return "inconclusive", used
    if cause == "noise":
        noisy = get("float-noise-binary")
        used = [unit, noisy]
        if unit is not None and state(unit) == "works":
            return "not the cause (binary-stoch works)", used
        if unit is None or noisy is None:
            return "not tested", used
        return {"fails": "supported", "works": "not supported"}.get(
            state(noisy), "inconclusive"
        ), used
    tern = get(f"ternary-{mode}")  # zeros
    used = [tern, unit, *scaled]
    if unit is not None and state(unit) == "works":
        return "not required (binary with H = 1 works without zeros)", used
    if any(state(r) == "works" for r in scaled):
        return "not required (scaled binary works without zeros)", used
    if tern is None or not scaled:
        return "not tested", used
    if state(tern) == "works" and all(
        state(r) == "fails" for r in [unit, *scaled] if r is not None
    ):
        return "supported", used
    return "inconclusive", used


def _converged_reading(cause, mode, get) -> tuple[str, str, list]:
    """(verdict, verdict at the budget, groups read): the rule's reading with the groups
    still improving treated as undecided; where that changes the reading to undecided, the
    verdict is *not converged at this budget*."""
    at_budget, used = _decide(cause, mode, get)
    conv, _ = _decide(cause, mode, get, lambda r: _state(r, converged=True))
    if conv != at_budget and conv == "inconclusive":
        conv = "not converged at this budget"
    return conv, at_budget, used


def equal_scale(runs, config: dict, mode: str) -> dict | None:
    """Zeros at equal scale: test metric of binary at the Glorot scale minus ternary (same
    level ``W0``), paired by seed within ``config`` (:data:`CONFIG` values); its interval and
    the group rule's verdict (worse: binary without zeros is worse). None without both."""
    sel = runs
    for k, v in config.items():
        if k in sel:
            sel = sel[sel[k] == v]
    tern = sel[sel["method"] == f"ternary-{mode}"].set_index("seed")["test"]
    glor = sel[sel["method"] == f"binary-glorot-{mode}"].set_index("seed")["test"]
    if tern.empty or glor.empty:
        return None
    diff = (glor - tern).dropna()
    iv = interval(diff)
    margin = MARGINS.get(str(sel["metric"].iloc[0]), 0.0)
    return {**iv, "verdict": group_verdict(iv["lo"], iv["hi"], margin, n=iv["n"]),
            "text": f"binary-glorot-{mode} - ternary-{mode} at equal scale: "
                    + gap_text({"gap_mean": iv["mean"], "gap_lo": iv["lo"], "gap_hi": iv["hi"],
                                "n_paired": iv["n"]}) + f" (n={iv['n']})"}  # fmt: skip


ZEROS = {"worse": "supported (no zeros costs accuracy at equal scale)",
         "similar": "not required (equal accuracy without zeros at equal scale)",
         "better": "not required (no zeros is better at equal scale)"}  # fmt: skip


def _cause_row(config: dict, by: dict, cause: str, mode: str, runs, dose: bool) -> dict:
    """One verdict row of :func:`cause_verdicts` for ``config``, whose groups are ``by``
    (method -> row): the works reading (:func:`_converged_reading`); for zeros with the run
    rows, the reading at equal scale (:func:`equal_scale`), the works one kept beside it."""
    verdict, at_budget, used = _converged_reading(cause, mode, by.get)
    evidence = "; ".join(_evidence(r) for r in used if r is not None)
    works = at_budget
    eq = equal_scale(runs, config, mode) if cause == "zeros" and runs is not None else None
    if eq is not None:
        at_budget = ZEROS.get(eq["verdict"], "inconclusive")
        pair = [by.get(f"ternary-{mode}"), by.get(f"binary-glorot-{mode}")]
        still = any(r is not None and r.get("still_improving", 0) for r in pair)
        verdict = "not converged at this budget" if still else at_budget
        evidence = f"{eq['text']}; {evidence}"
    return {
        **config,
        "cause": cause,
        "mode": mode,
        "verdict": verdict,
        "verdict_at_budget": at_budget,
        "verdict_works": works if cause == "zeros" else "",
        "evidence": evidence,
        "rule": RULES[cause],
        "dose_response": ("present, not yet read" if dose else "not run yet")
        if cause != "zeros"
        else "",
    }


def cause_verdicts(causes, runs=None):
    """One row per configuration (:data:`CONFIG`), cause and mode: verdict, the verdict at
    the budget, the groups' evidence and the rule in words. ``causes`` is
    :func:`causes_table`'s frame (``results/<profile>/causes.csv``); ``runs`` (the run rows,
    ``runs.csv``) decides zeros at equal scale (without it, zeros keep the works reading)."""
    import pandas as pd

    keys = [c for c in CONFIG if c in causes]
    dose = (
        runs is not None
        and "experiment" in runs
        and runs["experiment"].isin(DOSE_EXPERIMENTS).any()
    )
    rows = []
    for config, g in causes.groupby(keys, sort=False, dropna=False):
        config = dict(zip(keys, config if isinstance(config, tuple) else (config,), strict=True))
        by = {m: r for m, r in zip(g["method"], g.to_dict("records"), strict=True)}
        for cause, modes in (("scale", ("det", "stoch")), ("noise", ("stoch",)),
                             ("zeros", ("det", "stoch"))):  # fmt: skip
            rows += [_cause_row(config, by, cause, mode, runs, dose) for mode in modes]
    columns = [
        *keys,
        "cause",
        "mode",
        "verdict",
        "verdict_at_budget",
        "verdict_works",
        "evidence",
        "rule",
        "dose_response",
    ]
    return pd.DataFrame(rows, columns=columns)
