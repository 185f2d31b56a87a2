"""Each profile's study design: which experiments and groups decide the paper's claims.

A :class:`Design` names, for one profile (``results/<profile>/``), the main grid of claims 1
and 2, each task's declared primary group, claim N's primary groups (or none), claim 4's digits
experiment, claim 3's overfitting experiments (one per training size) and their float
references, claim 5's dose-response experiments, the groups and configuration of the cause
verdicts, the experiments whose float model lives in another one, and the convergence rule
that gates every claim. :data:`DESIGNS` holds study v2 (``cpu``, exactly as its tables were
decided), study v3 (``cpu-v3``) and the paper profile; :func:`design_for` picks one for any
profile. The claims are decided by :mod:`qrnn.study.decisions` and :mod:`qrnn.study.causes`.

Part of ``qrnn``, the library and study after Ott et al. 2016, *Recurrent Neural Networks With
Limited Numerical Precision*, https://arxiv.org/abs/1608.06902.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

# the convergence rules a design gates its claims with: the rule in words, the words for the
# seeds that block a decision in an item's text and in claim 3's longer text
GATES = {
    "improving": {
        "rule": "a group still improving at its last epoch in any seed (qrnn.study.tables."
        "still_improving) decides nothing: not converged at this budget",
        "short": "still improving",
        "long": "still improving at its last epoch",
    },
    "written": {
        "rule": "a group with any seed not converged by the written rule (qrnn.study.outcome."
        "convergence: learning rate annealed to <= 1/4 of its peak and validation flat over "
        "the last epochs; a diverged seed decides by diverging) decides nothing: not "
        "converged at this budget",
        "short": "not converged by the written rule",
        "long": "not converged by the written rule",
    },
}
# the cause verdicts' configuration in study v2: main / scale / noise share one setting
V2_CAUSE_CONFIG = ("task", "cell", "hidden", "max_epochs", "train_limit", "setting")
# from study v3 on every method trains at its own learning rate (part of ``setting``), so a
# cause is decided within one experiment and budget
V3_CAUSE_CONFIG = ("experiment", "task", "cell", "hidden", "max_epochs", "train_limit")

__all__ = ["DESIGNS", "GATES", "Design", "design_for"]


@dataclass(frozen=True)
class Design:
    """One profile's study design (the fields are described in the module docstring).

    ``primary`` and ``rescue`` map a task to its primary group ``(experiment, task, cell,
    hidden)``; ``rescue`` is None where the design runs no normalization experiment (claim N
    is then reported as not tested). ``overfit`` names claim 3's experiments, one per
    training size; ``references`` the float methods reported beside its stochastic ones.
    ``pairs`` holds the ``(experiment, task, cell)`` of the cause groups, ``cause_config``
    the columns a cause verdict is decided within, ``reference`` the experiments without a
    float model of their own (-> where it lives), ``normalizations`` claim N's experiments
    (-> the normalization each adds) and ``gate`` a key of :data:`GATES`."""

    profile: str
    main_grid: tuple[str, ...]
    primary: dict = field(default_factory=dict)
    rescue: dict | None = None
    digits: str = ""
    overfit: tuple[str, ...] = ()
    references: tuple[str, ...] = ()
    dose: tuple[str, ...] = ()
    pairs: frozenset = frozenset()
    cause_config: tuple[str, ...] = V3_CAUSE_CONFIG
    reference: dict = field(default_factory=dict)
    normalizations: dict = field(default_factory=dict)
    gate: str = "written"

    @property
    def convergence_rule(self) -> str:
        """The convergence rule in words, as the claims' rules quote it."""
        return GATES[self.gate]["rule"]

    def pending(self, r) -> int:
        """How many seeds of the group ``r`` (a summary row) block a decision: still
        improving at the last epoch (v2), or neither converged by the written rule nor
        diverged (``n - converged - diverged``, from v3 on)."""
        if self.gate == "improving":
            return _count(r.get("still_improving", 0))
        n, done = _count(r.get("n", 0)), _count(r.get("converged", 0))
        return max(0, n - done - _count(r.get("diverged", 0)))

    def pending_text(self, k: int, n: int, long: bool = False) -> str:
        """``still improving in 2 of 3 seeds`` in the design's words."""
        return f"{GATES[self.gate]['long' if long else 'short']} in {int(k)} of {int(n)} seeds"


def _count(v) -> int:
    try:
        v = float(v)
    except (TypeError, ValueError):
        return 0
    return int(v) if math.isfinite(v) else 0


_PTB = ("main", "ptb-char", "lstm", 256)
CPU = Design(
    profile="cpu",
    main_grid=("main", "digits", "ptb-cells"),
    # the PTB headline LSTM 256 and the digits GRU 64 on the standard split (the
    # held-out-speaker split is exploratory: float error 42-59% on one test speaker)
    primary={"ptb-char": _PTB, "fsdd": ("digits", "fsdd", "gru", 64)},
    # claim N: PTB as every claim, digits the LSTM (the only normalized digits cell)
    rescue={"ptb-char": _PTB, "fsdd": ("digits", "fsdd", "lstm", 64)},
    digits="digits",
    overfit=("overfit",),
    dose=("noise-dose",),
    pairs=frozenset(
        {
            ("main", "ptb-char", "lstm"),
            ("scale", "ptb-char", "lstm"),
            ("noise", "ptb-char", "lstm"),
            ("digits", "fsdd", "gru"),
            ("digits-cause", "fsdd", "gru"),
        }
    ),
    cause_config=V2_CAUSE_CONFIG,
    reference={"scale": "main", "noise": "main", "digits-cause": "digits"},
    normalizations={
        "main": "none",
        "digits": "none",
        "ptb-cells": "none",
        "normalization": "weight",
        "layernorm": "layer",
    },
    gate="improving",
)
CPU_V3 = Design(
    profile="cpu-v3",
    main_grid=("main", "digits-kfold"),
    # the digits GRU on the 10 folds (the folds are its seeds); the RNN and LSTM support it
    primary={"ptb-char": _PTB, "fsdd": ("digits-kfold", "fsdd", "gru", 64)},
    rescue=None,  # v3 runs no normalization experiment
    digits="digits-kfold",
    overfit=("overfit-250k", "overfit-1m"),
    references=("float-const", "float-dropout-0.1", "float-dropout-0.3"),
    dose=("noise-dose", "noise-dose-digits"),
    pairs=frozenset({("main", "ptb-char", "lstm"), ("noise-dose", "ptb-char", "lstm"),
                     ("digits-kfold", "fsdd", "gru"), ("noise-dose-digits", "fsdd", "gru")}),
)  # fmt: skip
PAPER = Design(
    profile="paper",
    main_grid=("main",),
    primary={"ptb-char": ("main", "ptb-char", "lstm", 1000), "fsdd": ("main", "fsdd", "gru", 256)},
    digits="main",
    overfit=("overfit",),
    pairs=frozenset({("main", "ptb-char", "lstm"), ("main", "fsdd", "gru")}),
)
DESIGNS = {"cpu": CPU, "cpu-v3": CPU_V3, "paper": PAPER}
# profiles without a design of their own: the smoke test runs v2's names (main, overfit), the
# GPU window's dry run the paper profile's
FALLBACK = {"smoke": "cpu", "paper-dry": "paper"}


def design_for(profile: str | None) -> Design:
    """The design of ``profile`` (:data:`DESIGNS`, else its fallback; any other profile gets
    study v2's, the design the tables were first decided by)."""
    return DESIGNS.get(str(profile), DESIGNS[FALLBACK.get(str(profile), "cpu")])
