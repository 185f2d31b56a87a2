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

:func:`cause_verdicts` turns those groups into one verdict per configuration (study v2: task,
cell, hidden size, budget, setting; from v3 on, where each method trains at its own learning
rate: experiment, task, cell, hidden size, budget), cause and mode with the rule in words; the
book's binarization chapter shows it. Which groups take part, the configuration and the
convergence rule come from the profile's study design (:mod:`qrnn.study.designs`). **Zeros**
are decided on accuracy at equal scale: binary weights at the Glorot scale against ternary
weights, whose level ``W0`` is the same Glorot bound, paired by seed. A verdict that rests on a
group not converged by the design's rule (v2: still improving at its last epoch in any seed)
reads *not converged at this budget* (``verdict_at_budget`` keeps the rule's reading at the
budget run). The dose-response runs (float + noise of binary-stoch's variance at several
``H``, and on the recurrent or input matrices only: :data:`DOSES`, in the design's dose
experiments, v2's name :data:`DOSE_EXPERIMENTS`) are listed in ``dose_response`` of their own
configuration; elsewhere it names the dose experiments, or says "not run yet".

Part of ``qrnn``, the library and study after Ott et al. 2016, *Recurrent Neural Networks With
Limited Numerical Precision*, https://arxiv.org/abs/1608.06902.
"""

from __future__ import annotations

import math

from .designs import CPU, Design
from .verdicts import MARGINS, gap_text, group_verdict, interval

PREFIXES = ("binary-det", "binary-stoch", "binary-glorot", "binary-rms", "float-noise",
            "ternary-det", "ternary-stoch")  # fmt: skip
# (experiment, task, cell) of the groups that take part in study v2 (every profile's own:
# its design's ``pairs``, qrnn.study.designs)
PAIRS = CPU.pairs
COLUMNS = ["experiment", "task", "cell", "hidden", "max_epochs", "train_limit", "setting",
           "method", "metric", "n", "diverged", "learned", "still_improving", "test_mean",
           "gap_mean", "gap_lo", "gap_hi", "verdict", "works", "zero_init"]  # fmt: skip
# the configuration a cause verdict is decided within in study v2 (the experiments differ:
# main / scale / noise share one setting); from v3 on, one experiment and budget (each method
# trains at its own learning rate, part of the setting)
CONFIG = list(CPU.cause_config)
# the study issue's dose-response experiments (v2's name; v3: noise-dose, noise-dose-digits)
DOSE_EXPERIMENTS = CPU.dose
# the dose-response groups, read where they were run: float + binary-stoch's rounding noise at
# H = Glorot, 0.25, 0.5, 1, and at H = 1 on the recurrent or input matrices only
DOSES = ("float-noise-binary-glorot", "float-noise-binary-0.25", "float-noise-binary-0.5",
         "float-noise-binary", "float-noise-binary-rec", "float-noise-binary-in")  # fmt: skip
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


def causes_table(summary, design: Design = CPU):
    """The groups of the ``design``'s ``pairs`` (study v2: :data:`PAIRS`) whose method
    starts with one of :data:`PREFIXES` (with the count of converged seeds where the design
    gates on the written convergence rule)."""
    keep = [(e, t, c) in design.pairs and m.startswith(PREFIXES)
            for e, t, c, m in zip(summary["experiment"], summary["task"], summary["cell"],
                                  summary["method"], strict=True)]  # fmt: skip
    columns = COLUMNS + (["converged"] if design.gate == "written" else [])
    return summary[keep][[c for c in columns if c in summary]].reset_index(drop=True)


def _state(row, gate=None) -> str:
    """works / fails / inconclusive (an all-diverged group fails); with ``gate`` (a design's
    :meth:`~qrnn.study.designs.Design.pending`), a group with a seed that blocks a decision
    is ``not converged``."""
    if gate is not None and gate(row) and row["works"] != "diverged":
        return "not converged"
    if _unpaired(row):
        return "inconclusive"
    return "fails" if row["works"] == "diverged" else str(row["works"])


def _unpaired(row) -> bool:
    """A group with test results but no float run to pair them with (its ``works`` reads
    diverged although fewer than all of its seeds diverged)."""
    n, gone = row.get("n", 0), row.get("diverged", row.get("n", 0))
    return row["works"] == "diverged" and gone < n and math.isfinite(row.get("test_mean", math.nan))


def _evidence(row, design: Design = CPU) -> str:
    n = f"n={int(row['n'])}"
    if k := design.pending(row):
        n += f", {k} still improving" if design.gate == "improving" else f", {k} not converged"
    if _unpaired(row):
        return f"{row['method']}: no float twin to pair with, test {row['test_mean']:.3f} ({n})"
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
        if state(unit) != "fails":  # nothing to explain yet: binary-stoch undecided
            return "inconclusive", used
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


def _converged_reading(cause, mode, get, design: Design = CPU) -> tuple[str, str, list]:
    """(verdict, verdict at the budget, groups read): the rule's reading with the groups
    not converged by the ``design``'s rule treated as undecided; where that changes the
    reading to undecided, the verdict is *not converged at this budget*."""
    at_budget, used = _decide(cause, mode, get)
    conv, _ = _decide(cause, mode, get, lambda r: _state(r, design.pending))
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


def _dose_text(by: dict, present: list[str], design: Design) -> str:
    """The dose-response column: the dose groups of this configuration read here (each at
    its H, or on the recurrent / input matrices only), else where the dose experiments are."""
    if any(m in by for m in DOSES if m != "float-noise-binary"):
        return "; ".join(_evidence(by[m], design) for m in DOSES if m in by)
    if present:
        return f"present in {', '.join(present)} (read in its rows)"
    return "not run yet"


def _cause_row(config: dict, by: dict, cause: str, mode: str, runs, dose: list[str],
               design: Design = CPU) -> dict:  # fmt: skip
    """One verdict row of :func:`cause_verdicts` for ``config``, whose groups are ``by``
    (method -> row): the works reading (:func:`_converged_reading`); for zeros with the run
    rows, the reading at equal scale (:func:`equal_scale`), the works one kept beside it;
    ``dose``: the design's dose experiments that were run."""
    verdict, at_budget, used = _converged_reading(cause, mode, by.get, design)
    evidence = "; ".join(_evidence(r, design) for r in used if r is not None)
    works = at_budget
    eq = equal_scale(runs, config, mode) if cause == "zeros" and runs is not None else None
    if eq is not None:
        at_budget = ZEROS.get(eq["verdict"], "inconclusive")
        pair = [by.get(f"ternary-{mode}"), by.get(f"binary-glorot-{mode}")]
        still = any(r is not None and design.pending(r) for r in pair)
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
        "dose_response": _dose_text(by, dose, design) if cause != "zeros" else "",
    }


def cause_verdicts(causes, runs=None, design: Design = CPU):
    """One row per configuration (the ``design``'s ``cause_config``; study v2: :data:`CONFIG`),
    cause and mode: verdict, the verdict at the budget, the groups' evidence, the rule in
    words and the dose-response groups. ``causes`` is :func:`causes_table`'s frame
    (``results/<profile>/causes.csv``); ``runs`` (the run rows, ``runs.csv``) decides zeros at
    equal scale (without it, zeros keep the works reading)."""
    import pandas as pd

    keys = [c for c in design.cause_config if c in causes]
    ran = set(runs["experiment"]) if runs is not None and "experiment" in runs else set()
    dose = [e for e in design.dose if e in ran]
    rows = []
    for config, g in causes.groupby(keys, sort=False, dropna=False):
        config = dict(zip(keys, config if isinstance(config, tuple) else (config,), strict=True))
        by = {m: r for m, r in zip(g["method"], g.to_dict("records"), strict=True)}
        for cause, modes in (("scale", ("det", "stoch")), ("noise", ("stoch",)),
                             ("zeros", ("det", "stoch"))):  # fmt: skip
            rows += [_cause_row(config, by, cause, mode, runs, dose, design) for mode in modes]
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
