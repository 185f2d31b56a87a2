"""Verdicts from run records: intervals over seeds, group verdicts, claim verdicts.

The paper (Ott et al., *Recurrent Neural Networks With Limited Numerical Precision*,
https://arxiv.org/abs/1608.06902) states its results as claims; this module decides each one from
the records by a rule written next to it, never by comparing two means:

* a **group** is one (experiment, task, cell, method); its *gap* is the test metric minus the
  float model's, per seed (paired: runs with the same seed share the data order and init);
* the **interval** is the Student-t 95% confidence interval of the mean gap over seeds;
* a group is **similar** when the whole interval lies inside ``+-margin`` (PTB 0.05 BPC,
  digits 1 percentage point of error), **better** / **worse** when it lies below / above zero
  (and is not similar), **inconclusive** otherwise (or with fewer than two paired seeds), and
  **diverged** when no run of it has a test result;
* a **claim** is *reproduced* when every group it covers supports it, *refuted* when every
  group contradicts it, *mixed* when some do each, *inconclusive* otherwise, and *not tested*
  when no group covers it or its precondition (e.g. an overfitting float baseline) is not met.
"""

from __future__ import annotations

import math
from collections.abc import Iterable

import numpy as np

# the half-width of "similar", per metric (lower is better for both)
MARGINS = {"bpc": 0.05, "error": 0.01, "perplexity": 1.0}
LEVEL = 0.95
GROUP = ["experiment", "task", "cell", "method"]

__all__ = ["GROUP", "LEVEL", "MARGINS", "claim_verdict", "gap_text", "group_verdict", "interval"]


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


def claim_verdict(outcomes: Iterable[str]) -> str:
    """Combine per-group outcomes (``supports`` | ``contradicts`` | ``inconclusive``)."""
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
    """``"3 support, 1 contradict, 2 inconclusive"`` (zero counts left out)."""
    outcomes = list(outcomes)
    parts = [
        (outcomes.count("supports"), "support"),
        (outcomes.count("contradicts"), "contradict"),
        (outcomes.count("inconclusive"), "inconclusive"),
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
