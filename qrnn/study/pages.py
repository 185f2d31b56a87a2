"""What the book's pages read and how they say it: the study folder the book shows (one constant,
:data:`STUDY`), the paper's claims in plain words beside the study's verdicts, the answer on the
first screen, and the headline figure.

The claims are those of Ott et al. 2016, *Recurrent Neural Networks With Limited Numerical
Precision*, https://arxiv.org/abs/1608.06902, stated as the paper's; the verdicts, groups and
numbers are read from the study's tables (``claims.csv``, ``cause_verdicts.csv``,
``summary.csv``, written by ``qrnn study summarize``) and ``results/baselines``; nothing here
types a number. Library layer: it reads files and imports nothing of the experiment layer.
"""

from __future__ import annotations

import json
import re
from pathlib import Path

__all__ = [
    "CLAIMS_PLAIN",
    "PROFILE",
    "STUDY",
    "TASK_WORDS",
    "answer",
    "cause_sentences",
    "claim_table",
    "hero_figure",
    "primary_rows",
    "read_table",
    "results_dir",
    "study_dir",
]

# The study the book reads, relative to the checkout: change it here to show another study.
STUDY = "results/cpu"
PROFILE = Path(STUDY).name  # the study profile that writes it (qrnn study ... --profile PROFILE)
ROOT = Path(__file__).resolve().parents[2]  # the checkout (results/, book/)

# the paper's claims in words a student knows, keyed on the number in claims.csv
CLAIMS_PLAIN: dict[str, str] = {
    "1": "weights rounded to −1 or +1 (binarization), by either rounding rule, do not give "
         "working recurrent networks",
    "2": "ternary weights (−W₀, 0, +W₀) and their power-of-two variant are as accurate as full "
         "precision, or better",
    "3": "on Penn Treebank characters, the best model with stochastic rounding beats full "
         "precision by {size} bits per character",
    "4": "on spoken digits, ternary, power-of-two and exponential weights beat full precision",
    "N": "(later work, not the paper) weight or layer normalization makes binary recurrent "
         "networks work",
}  # fmt: skip
TASK_WORDS = {"PTB-char": "Penn Treebank characters", "spoken digits": "spoken digits"}
METHOD_WORDS = {
    "float": "full precision (32 bits)",
    "binary-det": "binary, deterministic", "binary-stoch": "binary, stochastic",
    "ternary-det": "ternary, deterministic", "ternary-stoch": "ternary, stochastic",
    "pow2-ternary": "power-of-two ternary",
    "exponential-det": "exponential, deterministic", "exponential-stoch": "exponential, stochastic",
}  # fmt: skip


def results_dir() -> Path:
    """The checkout's ``results/`` folder."""
    return ROOT / "results"


def study_dir() -> Path:
    """The study folder every page reads (:data:`STUDY`)."""
    return ROOT / STUDY


def read_table(name: str):
    """A table of the study (``claims.csv``, ``summary.csv`` ...) as a DataFrame; None when
    the study has not written it."""
    import pandas as pd

    path = study_dir() / name
    return pd.read_csv(path) if path.exists() else None


def claim_table():
    """One row per claim and task: the paper's statement, the verdict and its primary group,
    columns ``number, paper, task, verdict, primary, counts``; ``None`` without claims."""
    import pandas as pd

    cl = read_table("claims.csv")
    if cl is None:
        return None
    rows = []
    for _, r in cl[cl["task"] != "overall"].iterrows():
        number = str(r["claim"]).split(".")[0]
        size = re.search(r"by (\d+\.\d+)", str(r["claim"]))
        plain = CLAIMS_PLAIN.get(number, str(r["claim"]).split(". ", 1)[-1])
        rows.append({"number": number, "paper": plain.format(size=size[1] if size else "?"),
                     "task": r["task"], "verdict": r["verdict"], "primary": r["primary"],
                     "counts": r["counts"]})  # fmt: skip
    return pd.DataFrame(rows)


def _primary_key(text: str):
    """``"main ptb-char LSTM 256, 5 epochs"`` -> (experiment, task, cell, hidden, epochs)."""
    m = re.match(r"(\S+) (\S+) (\w+) (\d+), (\d+) epochs", str(text))
    return None if m is None else (m[1], m[2], m[3].lower(), int(m[4]), int(m[5]))


def primary_rows(claim: str = "1", task: str = "PTB-char"):
    """The summary rows (every method) of a claim's primary group for one task."""
    tab, summ = claim_table(), read_table("summary.csv")
    if tab is None or summ is None:
        return None
    row = tab[(tab["number"] == claim) & (tab["task"] == task)]
    key = _primary_key(row["primary"].iloc[0]) if len(row) else None
    if key is None:
        return None
    e, t, c, h, ep = key
    return summ[(summ.experiment == e) & (summ.task == t) & (summ.cell == c)
                & (summ.hidden == h) & (summ.max_epochs == ep)]  # fmt: skip


def _gap(r, task: str) -> str:
    if task == "PTB-char":
        return f"{r.gap_mean:+.2f} bits per character behind full precision"
    return f"{100 * r.gap_mean:+.0f} points of error behind full precision"


def _binary_words(task: str) -> str:
    rows = primary_rows("1", task)
    if rows is None or rows.empty:
        return ""
    out = []
    for m in ("binary-stoch", "binary-det"):
        r = rows[rows.method == m]
        if r.empty:
            continue
        r = r.iloc[0]
        rule = "stochastic" if m.endswith("stoch") else "deterministic"
        state = ("fail" if r.works == "fails" else "learn") + f" ({_gap(r, task)})"
        if r.still_improving:
            state += (
                f" but were still improving when training stopped ({int(r.still_improving)}"
                f" of {int(r.n)} seeds), so they decide nothing"
            )
        out.append(
            f"with {rule} rounding they {state}"
            if out
            else f"binary weights with {rule} rounding {state}"
        )
    return "; ".join(out)


def cause_sentences() -> list[str]:
    """The paper's conjectured causes and the study's verdict on each, per task."""
    cv = read_table("cause_verdicts.csv")
    if cv is None:
        return []
    words = {
        "noise": "**Rounding noise.** Full-precision weights with the same random noise as "
                 "stochastic binary rounding fail as binary does",
        "scale": "**Weight size.** Weights of ±1 are far larger than the small weights a "
                 "network starts from; binary weights scaled to the usual starting size work",
        "zeros": "**No zero level.** At equal scale, ternary's zero level does better than "
                 "binary",
    }  # fmt: skip
    tasks = {"ptb-char": "Penn Treebank characters", "fsdd": "spoken digits"}
    out = []
    for cause, text in words.items():
        g = cv[cv["cause"] == cause]
        said = []
        for _, r in g.iterrows():
            mode = "deterministic" if r["mode"] == "det" else "stochastic"
            v, at = str(r["verdict"]), str(r["verdict_at_budget"])
            if v.startswith("supported"):
                said.append(f"{tasks.get(r.task, r.task)}, {mode}: supported")
            elif v.startswith("not converged") and at.startswith("supported"):
                said.append(
                    f"{tasks.get(r.task, r.task)}, {mode}: supported at this budget, not converged"
                )
            elif at.startswith("not the cause"):
                said.append(f"{tasks.get(r.task, r.task)}, {mode}: {at}")
        if said:
            out.append(f"{text} ({'; '.join(said)}).")
    return out


def _support(cause: str) -> str:
    """Where a cause is supported: tasks with their rounding rules, "at this budget" where the
    groups were still improving (``cause_verdicts.csv``)."""
    cv = read_table("cause_verdicts.csv")
    if cv is None:
        return ""
    tasks = {"ptb-char": "Penn Treebank characters", "fsdd": "spoken digits"}
    parts = []
    for task, g in cv[cv["cause"] == cause].groupby("task", sort=False):
        got = []
        for _, r in g.iterrows():
            rule = "deterministic" if r["mode"] == "det" else "stochastic"
            if str(r["verdict"]).startswith("supported"):
                got.append((rule, ""))
            elif str(r["verdict_at_budget"]).startswith("supported"):
                got.append((rule, ", at this budget"))
        if not got:
            continue
        if len(got) == 2 and got[0][1] == got[1][1]:
            parts.append(f"{tasks.get(task, task)} (both rounding rules{got[0][1]})")
        else:
            parts.append(
                f"{tasks.get(task, task)} ("
                + "; ".join(f"{rule} rounding{at}" for rule, at in got)
                + ")"
            )
    return " and ".join(parts)


def answer() -> str:
    """The first screen's answer (MyST Markdown): the paper's finding stated as the paper's,
    the study's verdict per task in its own words, and why."""
    tab = claim_table()
    if tab is None:
        return "The study's verdicts are not written yet (`qrnn study summarize`)."
    one = tab[tab["number"] == "1"]
    verdicts = " and ".join(f"**{r.verdict}** on {TASK_WORDS.get(r.task, r.task)}"
                            for r in one.itertuples())  # fmt: skip
    detail = " ".join(f"On {TASK_WORDS.get(t, t)}, {w}." for t in one["task"]
                      if (w := _binary_words(t)))  # fmt: skip
    lines = [
        "**Does rounding the weights of a recurrent network to −1 or +1 make it fail?** "
        "Ott et al. (2016) reported that it does: recurrent networks with binary weights did "
        "not learn, while three-level (ternary) and power-of-two weights did. This study reruns "
        f"their experiments at a smaller scale, in the open. The paper's finding is {verdicts}.",
        "A model *fails* when it loses more than half of full precision's improvement over "
        "the simplest baseline (letter frequencies for text, guessing for digits). " + detail,
    ]
    why = []
    if noise := _support("noise"):
        why.append(
            "The paper's explanation, that rounding adds noise to every weighted sum and "
            "the recurrence feeds it back at every time step, is supported on "
            f"{noise}: full-precision weights given the same noise fail as binary "
            "ones do."
        )
    if scale := _support("scale"):
        why.append(
            "The size of the weights matters as well: ±1 is far larger than the "
            "weights a network starts from, and binary weights scaled down to that size "
            f"work; supported on {scale}."
        )
    if why:
        lines.append("**Why.** " + " ".join(why))
    return "\n\n".join(lines)


def _baselines() -> dict[str, dict[str, float]]:
    out: dict[str, dict[str, float]] = {}
    for path in sorted((results_dir() / "baselines").glob("*.json")):
        rec = json.loads(path.read_text())
        res = rec.get("results", {})
        for o in res.get("orders") or []:
            out.setdefault(rec["task"], {})[f"{o['order']}-gram"] = o["test_bpc"]
        std = (res.get("splits") or {}).get("standard", {})
        if "moments" in std:
            out.setdefault(rec["task"], {})["logistic regression"] = std["moments"]["test_error"]
    return out


def _hero_points(ax, rows, scale: float) -> list[str]:
    """One row per method (in :data:`METHOD_WORDS` order, the returned list): its mean test
    metric times ``scale`` with the 95% interval over seeds; stochastic rounding hollow."""
    from ..viz import METHOD_COLORS

    order = [m for m in METHOD_WORDS if m in set(rows.method)]
    for y, m in enumerate(order):
        r = rows[rows.method == m].iloc[0]
        hue = METHOD_COLORS[m.replace("-stoch", "-det") if m != "pow2-stoch" else m]
        stoch = m.endswith("stoch")
        ax.errorbar(scale * r.test_mean, y, xerr=[[scale * (r.test_mean - r.test_lo)],
                    [scale * (r.test_hi - r.test_mean)]], fmt="o", ms=7, color=hue,
                    mfc="white" if stoch else hue, mew=2, capsize=3,
                    ls="none")  # fmt: skip
    return order


def _hero_references(task: str, rows, refs: dict, scale: float) -> list[tuple[float, str, str]]:
    """The vertical lines ``(x, label, line style)``: the simplest baseline, the line where a
    model stops working (``float_test + gain / 2``: half of full precision's gain over the
    baseline kept) and the independent baselines of ``results/baselines`` (``refs``)."""
    f = rows[rows.method == "float"].iloc[0]
    limit = f.float_test + 0.5 * f.gain
    lines = [
        (scale * f.baseline, "simplest baseline", ":"),
        (scale * limit, "← works | fails →", "--"),
    ]
    key = "ptb-char" if task == "PTB-char" else "fsdd"
    for name in ("3-gram", "6-gram", "logistic regression"):
        if name in refs.get(key, {}):
            label = f"{name} (n-gram)" if "gram" in name else name
            lines.append((scale * refs[key][name], label, "-."))
    return lines


def _draw_references(ax, lines: list[tuple[float, str, str]], scale: float) -> None:
    """The reference lines across the panel, labelled in four staggered rows above the
    methods; the x range widened to show them all."""
    lo, hi = ax.get_xlim()
    hi = max(hi, max(x for x, _, _ in lines) * 1.04)
    ax.set_xlim(min(lo, 0.0) if scale != 1.0 else lo, hi)
    for i, (x, label, ls) in enumerate(sorted(lines)):
        ax.axvline(x, color="#666", ls=ls, lw=1.2)
        right = x > lo + 0.55 * (hi - lo)
        ax.text(
            x,
            -3.1 + 0.62 * (i % 4),
            f" {label} ",
            fontsize=10,
            color="#333",
            ha="center" if "|" in label else "right" if right else "left",
            va="center",
            bbox={"fc": "white", "ec": "none", "pad": 0.5},
        )


def _hero_panel(ax, task: str, rows, refs: dict) -> None:
    """One task's panel of :func:`hero_figure` (bits per character, or error in %)."""
    scale = 1.0 if task == "PTB-char" else 100.0
    order = _hero_points(ax, rows, scale)
    _draw_references(ax, _hero_references(task, rows, refs, scale), scale)
    ax.set_yticks(range(len(order)), [METHOD_WORDS[m] for m in order], fontsize=11)
    ax.set_ylim(len(order) - 0.4, -3.5)
    unit = "test bits per character" if scale == 1.0 else "test error, %"
    ax.set_title(TASK_WORDS.get(task, task), fontsize=12, loc="left", fontweight="bold")
    ax.set_xlabel(f"{unit} (lower is better)", fontsize=11)
    ax.tick_params(axis="x", labelsize=10)
    ax.grid(axis="x", alpha=0.3)


def hero_figure():
    """Test metric per method of claim 1's primary groups, with 95% intervals over seeds, the
    line where a model stops working and the independent baselines; ``None`` without records."""
    import matplotlib.pyplot as plt

    panels = [(t, rows) for t in ("PTB-char", "spoken digits")
              if (rows := primary_rows("1", t)) is not None and not rows.empty]  # fmt: skip
    if not panels:
        return None
    refs = _baselines()
    fig, axes = plt.subplots(len(panels), 1, figsize=(5.8, 3.5 * len(panels)), dpi=100,
                             layout="constrained")  # fmt: skip
    axes = list(axes) if len(panels) > 1 else [axes]
    for ax, (task, rows) in zip(axes, panels, strict=True):
        _hero_panel(ax, task, rows, refs)
    return fig
