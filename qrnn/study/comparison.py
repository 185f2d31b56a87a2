"""The paper against the study, for researchers (``book/paper.md``): each of the paper's
statements and its one number, the study's deciding group beside it with its setting, budget,
95% interval over seeds and verdict, the conjecture's causes, and the study's scale against
published PTB-char numbers.

The paper is Ott et al. 2016, *Recurrent Neural Networks With Limited Numerical Precision*,
https://arxiv.org/abs/1608.06902; its result tables were not available to us, so its statements
are compared as stated. Every number is read from the study's tables (:mod:`qrnn.study.pages`
names the folder); nothing here types one.
"""

from __future__ import annotations

import json
import re

from .pages import claim_table, read_table, study_dir

__all__ = ["CAUSE_WORDS", "CLAIM_METHODS", "CONJECTURE", "PAPER_NUMBER", "budget_words",
           "cause_table", "group_key", "group_rows", "interval_words", "paper_gain",
           "paper_vs_ours", "study_scale", "test_size"]  # fmt: skip

# the paper's conjecture on why binarization fails, in words a student knows (claim 5)
CONJECTURE = (
    "binarization fails because rounding the many near-zero weights to ±1 adds much variance "
    "to every weighted sum, and a recurrent network reuses the same matrices at every time "
    "step; the paper points to the Jacobian of the hidden layers"
)
# the numbers the paper gives, per claim; {gain}: the one in claims.csv (:func:`paper_gain`)
PAPER_NUMBER = {"3": "−{gain} BPC: the best low-precision model against its full-precision "
                     "baseline (model, size and budget not given)"}  # fmt: skip
# the methods each claim speaks of; claim 3's is the best stochastic one, named by claims.csv
CLAIM_METHODS: dict[str, tuple[str, ...]] = {
    "1": ("binary-det", "binary-stoch"),
    "2": ("ternary-det", "ternary-stoch", "pow2-ternary"),
    "4": ("ternary-det", "ternary-stoch", "pow2-ternary", "exponential-det", "exponential-stoch"),
}
CAUSE_WORDS = {
    "noise": "rounding noise: float weights given binary's noise",
    "scale": "weight size: binary scaled to the starting size",
    "zeros": "no zero level: ternary against binary at equal scale",
}
_TASKS = {"ptb-char": "PTB-char", "fsdd": "spoken digits", "fsdd-speakers": "spoken digits, "
          "held-out speakers"}  # fmt: skip


def group_key(text: str) -> dict | None:
    """A group as claims.csv names it, ``"overfit ptb-char LSTM 256, 60 epochs on 250,000 items
    exponential-stoch (best validation)"`` -> ``{experiment, task, cell, hidden, max_epochs,
    train_limit, method?}``; ``None`` when the text names no group."""
    m = re.match(r"(\S+) (\S+) (\w+) (\d+), (\d+) epochs(?: on ([\d,]+) items)?(?: (\S+))?",
                 str(text))  # fmt: skip
    if m is None:
        return None
    key = {
        "experiment": m[1],
        "task": m[2],
        "cell": m[3].lower(),
        "hidden": int(m[4]),
        "max_epochs": int(m[5]),
        "train_limit": int((m[6] or "0").replace(",", "")),
    }
    return key | ({"method": m[7]} if m[7] else {})  # fmt: skip


def group_rows(key: dict):
    """The summary rows (every method, or the one ``key`` names) of one group."""
    summ = read_table("summary.csv")
    if summ is None:
        return None
    sel = summ
    for col, value in key.items():
        sel = sel[sel[col] == value]
    return sel


def test_size(row) -> tuple[int, str] | None:
    """How many items one run of a summary row is tested on, from a run record of its group:
    ``(300, "test recordings")`` or ``(442423, "test characters")``."""
    runs = read_table("runs.csv")
    if runs is None:
        return None
    keys = ("experiment", "task", "cell", "hidden", "max_epochs", "train_limit", "method")
    sel = runs
    for col in keys:
        sel = sel[sel[col] == getattr(row, col)]
    for run_id in sel["run_id"]:
        path = study_dir() / "runs" / run_id / "run.json"
        if not path.exists():
            continue
        data = json.loads(path.read_text()).get("data", {})
        if "splits" in data:
            return int(data["splits"]["test"]["count"]), "test recordings"
        if "used_sizes" in data or "sizes" in data:
            return int((data.get("used_sizes") or data["sizes"])["test"]), "test characters"
    return None


def budget_words(row) -> str:
    """A group's setting in words: task, cell, hidden units and the budget it trained for."""
    data = (
        "the full training text"
        if not row.train_limit
        else f"the first {int(row.train_limit):,} training characters"
    )
    if row.task == "ptb-char":
        seen = f", {row.seen_mean / 1e6:.1f} million characters seen per run"
    else:
        data, seen = "the training recordings", ""
    epochs = (f"{int(row.max_epochs)} epochs" if row.epochs_mean >= row.max_epochs
              else f"at most {int(row.max_epochs)} epochs ({row.epochs_mean:.1f} on average, "
              "early stopping)")  # fmt: skip
    return (f"{_TASKS.get(row.task, row.task)}, {row.cell.upper()} with {int(row.hidden)} "
            f"units, {epochs} over {data}{seen}")  # fmt: skip


def interval_words(row, what: str = "gap") -> str:
    """A gap to float (``what="gap"``) or a test metric (``"test"``) with its 95% interval over
    seeds and, for an error rate (a percentage), the test size beside it: ``"+0.701 BPC
    [+0.603, +0.800], 3 paired seeds"``, ``"+63.9 points of error [+57.7, +70.1], 5 paired
    seeds x 300 test recordings"``."""
    mean, lo, hi = (getattr(row, f"{what}_{k}") for k in ("mean", "lo", "hi"))
    n = int(row.n_paired if what == "gap" else row.n)
    seeds = f"{n} paired seeds" if what == "gap" else f"{n} seeds"
    if row.metric == "bpc":
        sign = "+" if what == "gap" else ""
        return f"{mean:{sign}.3f} BPC [{lo:{sign}.3f}, {hi:{sign}.3f}], {seeds}"
    size = test_size(row)
    seeds += f" × {size[0]:,} {size[1]}" if size else ""
    if what == "gap":
        return f"{100 * mean:+.1f} points of error [{100 * lo:+.1f}, {100 * hi:+.1f}], {seeds}"
    return f"{100 * mean:.1f}% error [{100 * lo:.1f}, {100 * hi:.1f}], {seeds}"


def paper_vs_ours():
    """One row per claim of the paper and task: the paper's statement and number, the group
    that decides (its budget), every method the claim speaks of with its gap to float (95%
    interval, seeds, test size), and the verdict; ``None`` without claims."""
    import pandas as pd

    tab = claim_table()
    if tab is None:
        return None
    rows = []
    for r in tab[tab["number"] != "N"].itertuples():
        key = group_key(r.primary)
        group = group_rows(key) if key else None
        ours, budget = "no records", ""
        if group is not None and len(group):
            methods = (key.get("method"),) if "method" in key else CLAIM_METHODS.get(r.number, ())
            parts = [f"{m}: {interval_words(g)}" for m in methods
                     for g in group[group.method == m].itertuples()]  # fmt: skip
            ours = "; ".join(parts) or "no records"
            ref = group[group.method == "float"]
            budget = budget_words((ref if len(ref) else group).iloc[0])
            if len(ref):
                budget += f"; float: {interval_words(ref.iloc[0], 'test')}"
                size = test_size(ref.iloc[0])
                if size and ref.iloc[0].metric == "bpc":
                    budget += f", each tested on {size[0]:,} characters"
        rows.append(
            {
                "claim": r.number,
                "the paper": r.paper,
                "the paper's number": PAPER_NUMBER.get(r.number, "none given").format(
                    gain=paper_gain() or "?"
                ),
                "task": r.task,
                "our setting": budget,
                "ours: gap to float, 95% interval": ours,
                "our verdict": r.verdict,
            }
        )
    return pd.DataFrame(rows)


def _points(text: str, size: tuple[int, str] | None) -> str:
    """``gap +0.639 [+0.577, +0.701] (n=5`` in an error rate -> points of error beside the test
    size."""
    each = f" × {size[0]:,} {size[1]}" if size else ""

    def pts(m) -> str:
        a, b, c = (100 * float(m[i]) for i in (2, 3, 4))
        return f"{m[1] or ''}{a:+.1f} points [{b:+.1f}, {c:+.1f}] ({m[5]} seeds{each}"

    return re.sub(r"(gap )?([-+]\d\.\d+) \[([-+]\d\.\d+), ([-+]\d\.\d+)\] \(n=(\d+)", pts,
                  text)  # fmt: skip


def cause_table():
    """Claim 5, the paper's conjecture, per cause, task and rounding rule: the verdict and the
    groups behind it (``cause_verdicts.csv``), error gaps in points beside their test size;
    ``None`` without records."""
    import pandas as pd

    cv = read_table("cause_verdicts.csv")
    summ = read_table("summary.csv")
    if cv is None:
        return None
    rows = []
    for r in cv.itertuples():
        size = None
        if summ is not None and str(r.task).startswith("fsdd"):
            g = summ[(summ.task == r.task) & (summ.cell == r.cell) & (summ.hidden == r.hidden)]
            size = test_size(g.iloc[0]) if len(g) else None
        evidence = (
            _points(str(r.evidence), size)
            if size
            else re.sub(r"\(n=(\d+)", r"(\1 seeds", str(r.evidence))
        )
        rows.append(
            {
                "cause": CAUSE_WORDS.get(r.cause, r.cause),
                "setting": f"{_TASKS.get(r.task, r.task)}, {r.cell.upper()} with "
                f"{int(r.hidden)} units, at most {int(r.max_epochs)} epochs",
                "rounding": "deterministic" if r.mode == "det" else "stochastic",
                "our verdict": r.verdict,
                "the groups behind it": evidence,
            }
        )
    return pd.DataFrame(rows)


def paper_gain() -> str | None:
    """The one number the paper's conclusion gives, as claims.csv states it (claim 3's BPC)."""
    cl = read_table("claims.csv")
    if cl is None:
        return None
    found = cl["claim"].astype(str).str.extract(r"^3\..* by (\d+\.\d+)")[0].dropna()
    return found.iloc[0] if len(found) else None


def study_scale():
    """The study's groups in one line each: experiment, task, cells with their hidden units,
    the budget, the seeds (most of any method) and the number of methods (``summary.csv``)."""
    summ = read_table("summary.csv")
    if summ is None:
        return None
    keys = ["experiment", "task", "max_epochs", "train_limit"]
    rows = []
    for (exp, task, epochs, limit), g in summ.groupby(keys, sort=False):
        cells = ", ".join(f"{c.upper()} {int(h)}" for c, h in
                          dict.fromkeys(zip(g["cell"], g["hidden"], strict=True)))  # fmt: skip
        data = "all" if not limit else f"first {int(limit):,}"
        rows.append(
            {
                "experiment": exp,
                "task": _TASKS.get(task, task),
                "cell and units": cells,
                "epochs (at most)": int(epochs),
                "training items": data,
                "seeds": int(g["n"].max()),
                "methods": g["method"].nunique(),
            }
        )
    import pandas as pd

    return pd.DataFrame(rows)
