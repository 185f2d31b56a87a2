"""Verdicts from run records: intervals over seeds, group verdicts, claim verdicts.

The paper (Ott et al., *Recurrent Neural Networks With Limited Numerical Precision*,
https://arxiv.org/abs/1608.06902) states its results as claims; this module decides each one from
the records by a rule written next to it, never by comparing two means:

* a **group** is one configuration and method: every run with the same experiment, task, cell,
  hidden size, budget and every other setting (:data:`GROUP`; only the seed differs); its
  *gap* is the test metric minus the float model's, per seed (paired: runs with the same seed
  share the data order and init);
* the **interval** is the Student-t 95% confidence interval of the mean gap over seeds;
* a group is **similar** when the whole interval lies inside ``+-margin`` (PTB 0.05 BPC,
  digits 1 percentage point of error; a 95% interval inside the margin is a two one-sided test
  at 2.5% per side), **better** / **worse** when it lies below / above zero (and is not
  similar), **inconclusive** otherwise (or with fewer than two paired seeds), and **diverged**
  when no run of it has a test result; a claim that names a direction ("beats float") reads
  the direction first (:func:`direction`);
* each decision has a p-value on the scale of the two-sided 95% interval (:func:`p_below`,
  :func:`p_above`, :func:`p_similar`: below 0.05 exactly when the interval decides), so the
  groups of one claim can be adjusted together (:func:`adjust`: Holm or Benjamini-Hochberg);
* a **claim** is labelled from the outcomes of its groups (``supports`` / ``contradicts`` /
  ``inconclusive`` / ``not converged``) by :func:`claim_label`: *reproduced* when every group
  supports, *partly reproduced* when some support and none contradicts, *not reproduced* when
  some contradict and none supports, *mixed* when some do each, *not converged at this
  budget* when no group decides and none has converged, *inconclusive* otherwise, *not
  tested* without groups. (:func:`claim_verdict` is the first study's unanimity rule.)
"""

from __future__ import annotations

import math
from collections.abc import Iterable

import numpy as np

# the half-width of "similar", per metric (lower is better for both)
MARGINS = {"bpc": 0.05, "error": 0.01, "perplexity": 1.0}
LEVEL = 0.95
# a group: the full configuration that differs between runs, then the method (``setting``:
# a digest of every other setting, written by ``qrnn.study.tables``)
GROUP = ["experiment", "task", "cell", "hidden", "max_epochs", "train_limit", "setting", "method"]
ALPHA = round(1 - LEVEL, 10)  # the two-sided error level of the intervals

__all__ = [
    "ALPHA",
    "GROUP",
    "LEVEL",
    "MARGINS",
    "adjust",
    "claim_label",
    "claim_verdict",
    "direction",
    "gap_text",
    "group_verdict",
    "interval",
    "p_above",
    "p_below",
    "p_similar",
]


def interval(values: Iterable[float], level: float = LEVEL) -> dict:
    """Mean and Student-t interval of the finite ``values``: ``{n, mean, sd, lo, hi}``
    (``lo = hi = nan`` with fewer than two values)."""
    from scipy import stats

    x = np.asarray([v for v in values if v is not None and math.isfinite(v)], dtype=float)
    n = len(x)
    if n == 0:
        return {"n": 0, "mean": math.nan, "sd": math.nan, "lo": math.nan, "hi": math.nan}
    mean = float(x.mean())
    if n < 2:
        return {"n": 1, "mean": mean, "sd": math.nan, "lo": math.nan, "hi": math.nan}
    sd = float(x.std(ddof=1))
    half = float(stats.t.ppf(0.5 + level / 2, n - 1)) * sd / math.sqrt(n)
    return {"n": n, "mean": mean, "sd": sd, "lo": mean - half, "hi": mean + half}


def group_verdict(lo: float, hi: float, margin: float, *, n: int = 2) -> str:
    """similar | better | worse | inconclusive for a gap interval ``[lo, hi]`` (lower is
    better); see the module docstring."""
    if n < 2 or not (math.isfinite(lo) and math.isfinite(hi)):
        return "inconclusive"
    if -margin <= lo and hi <= margin:
        return "similar"
    if hi < 0:
        return "better"
    if lo > 0:
        return "worse"
    return "inconclusive"


def direction(lo: float, hi: float, *, n: int = 2) -> str:
    """better | worse | none: where the gap interval ``[lo, hi]`` lies against 0 (the
    direction read first by a claim that names one, before "similar")."""
    if n < 2 or not (math.isfinite(lo) and math.isfinite(hi)):
        return "none"
    return "better" if hi < 0 else "worse" if lo > 0 else "none"


def _t(mean: float, sd: float, n: int, null: float) -> float:
    """The one-sample t statistic of ``mean`` against ``null`` (infinite when sd is 0)."""
    diff = mean - null
    if sd > 0:
        return diff / (sd / math.sqrt(n))
    return math.copysign(math.inf, diff) if diff else 0.0


def p_below(mean: float, sd: float, n: int, null: float = 0.0) -> float:
    """Twice the one-sided p-value for "the true mean lies below ``null``": below
    :data:`ALPHA` exactly when the Student-t 95% interval's upper end is below ``null``
    (NaN with fewer than two values)."""
    from scipy import stats

    if n < 2 or not (math.isfinite(mean) and math.isfinite(sd)):
        return math.nan
    return min(1.0, 2 * float(stats.t.cdf(_t(mean, sd, n, null), n - 1)))


def p_above(mean: float, sd: float, n: int, null: float = 0.0) -> float:
    """Twice the one-sided p-value for "the true mean lies above ``null``" (see
    :func:`p_below`)."""
    return p_below(-mean, sd, n, -null)


def p_similar(mean: float, sd: float, n: int, margin: float) -> float:
    """The two one-sided tests of equivalence within ``+-margin`` on the interval's scale:
    at most :data:`ALPHA` exactly when the 95% interval lies inside the margin (2.5% per
    side)."""
    return max(p_above(mean, sd, n, -margin), p_below(mean, sd, n, margin))


def adjust(pvalues: Iterable[float], method: str = "holm") -> list[float]:
    """Multiplicity-adjusted p-values of one family: ``holm`` (Holm 1979, the family-wise
    error) or ``bh`` (Benjamini & Hochberg 1995, the false discovery rate). NaN values stay NaN
    and do not count in the family."""
    p = [float(v) for v in pvalues]
    idx = sorted((i for i, v in enumerate(p) if math.isfinite(v)), key=lambda i: p[i])
    m, out = len(idx), [math.nan] * len(p)
    if method == "holm":
        running = 0.0
        for rank, i in enumerate(idx):  # step down: (m - rank) p, never decreasing
            running = max(running, min(1.0, (m - rank) * p[i]))
            out[i] = running
    elif method == "bh":
        running = 1.0
        for rank in range(m - 1, -1, -1):  # step up: m p / (rank + 1), never increasing
            i = idx[rank]
            running = min(running, m * p[i] / (rank + 1))
            out[i] = running
    else:
        raise ValueError(f"unknown adjustment {method!r}; choose holm or bh")
    return out


def claim_label(outcomes: Iterable[str]) -> str:
    """A claim's label from its groups' outcomes (``supports``, ``contradicts``,
    ``inconclusive``, ``not converged``); see the module docstring."""
    outcomes = list(outcomes)
    sup, con = outcomes.count("supports"), outcomes.count("contradicts")
    if not outcomes:
        return "not tested"
    if sup and con:
        return "mixed"
    if sup:
        return "reproduced" if sup == len(outcomes) else "partly reproduced"
    if con:
        return "not reproduced"
    if outcomes.count("not converged") == len(outcomes):
        return "not converged at this budget"
    return "inconclusive"


def claim_verdict(outcomes: Iterable[str]) -> str:
    """The first study's unanimity rule over per-group outcomes (``supports`` |
    ``contradicts`` | ``inconclusive``); the claims use :func:`claim_label`."""
    outcomes = list(outcomes)
    if not outcomes:
        return "not tested"
    sup, con = outcomes.count("supports"), outcomes.count("contradicts")
    if sup == len(outcomes):
        return "reproduced"
    if con == len(outcomes):
        return "refuted"
    if sup and con:
        return "mixed"
    return "inconclusive"


def count_text(outcomes: Iterable[str]) -> str:
    """``"3 support, 1 contradict, 2 inconclusive, 1 not converged"`` (zero counts left
    out)."""
    outcomes = list(outcomes)
    parts = [
        (outcomes.count("supports"), "support"),
        (outcomes.count("contradicts"), "contradict"),
        (outcomes.count("inconclusive"), "inconclusive"),
        (outcomes.count("not converged"), "not converged"),
    ]
    return ", ".join(f"{n} {w}" for n, w in parts if n) or "no groups"


def gap_text(group) -> str:
    """A group's mean gap and its interval as text: ``+0.210 [+0.184, +0.237]``; a group with
    one paired seed has no interval and says so (``+0.037, n=1: no interval``), and one
    without a test result (all its runs diverged) says that."""
    lo, hi = group["gap_lo"], group["gap_hi"]
    if not math.isfinite(group["gap_mean"]):  # every run diverged before a test result
        return "no test result"
    if not (math.isfinite(lo) and math.isfinite(hi)):
        return f"{group['gap_mean']:+.3f}, n={int(group.get('n_paired', 1) or 1)}: no interval"
    return f"{group['gap_mean']:+.3f} [{lo:+.3f}, {hi:+.3f}]"
