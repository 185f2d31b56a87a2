"""The rules of issue 28 on synthetic run tables: per-task claims with a declared primary
group, labels that follow the counts, "better" before "similar" for a claim of a direction,
claim 3's direction apart from its size, the multiplicity adjustment, one convergence rule,
the thresholds of "works", and claim 5's zeros at equal scale."""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
import pytest

from qrnn.study import tables
from qrnn.study.causes import cause_verdicts, causes_table
from qrnn.study.verdicts import (
    adjust,
    claim_label,
    direction,
    group_verdict,
    interval,
    p_above,
    p_below,
    p_similar,
)


def _run(experiment, method, seed, test, *, task="ptb-char", cell="lstm", hidden=None,
         still=False):  # fmt: skip
    lm = task == "ptb-char"
    hidden = hidden or (256 if lm else 64)  # the sizes of the declared primary groups
    return {
        "experiment": experiment, "task": task, "cell": cell, "method": method, "seed": seed,
        "run_id": f"{experiment}-{task}-{cell}-{hidden}-{method}-{seed}", "status": "completed",
        "metric": "bpc" if lm else "error", "test": test, "valid": test, "train": test,
        "final_train": test, "final_valid": test, "epochs": 3, "best_epoch": 3 if still else 2,
        "steps": 100, "seen": 1000, "hidden": hidden, "wall_s": 1.0,
        "baseline": 4.34 if lm else 0.9, "learned": True, "still_improving": still,
        "zero_init": 0.0, "packed": None,
    }  # fmt: skip


def _claims(rows):
    runs = tables._paired_gaps(pd.DataFrame(rows))
    summary = tables.groups(runs)
    return runs, summary, tables.claims(runs, summary)


def _row(found, number, task):
    return next(c for c in found if c["claim"].startswith(number) and c["task"] == task)


# ------------------------------------------------------------------------- labels and p-values
def test_labels_follow_the_counts():
    assert claim_label([]) == "not tested"
    assert claim_label(["supports", "supports"]) == "reproduced"
    assert claim_label(["supports", "inconclusive"]) == "partly reproduced"
    # a primary group that contradicts with nothing supporting is not reproduced, not
    # "inconclusive" (16 contradict, 0 support was once labelled so)
    assert claim_label(["contradicts", "inconclusive", "not converged"]) == "not reproduced"
    assert claim_label(["supports", "contradicts"]) == "mixed"
    assert claim_label(["not converged", "not converged"]) == "not converged at this budget"
    assert claim_label(["inconclusive", "not converged"]) == "inconclusive"


def test_p_values_decide_exactly_where_the_intervals_do():
    rng = np.random.default_rng(0)
    for _ in range(300):
        n = int(rng.integers(2, 7))
        x = rng.normal(rng.normal(0, 0.05), rng.uniform(0.001, 0.08), n)
        iv = interval(x)
        m, sd = iv["mean"], iv["sd"]
        assert (p_below(m, sd, n) < 0.05) == (iv["hi"] < 0)
        assert (p_above(m, sd, n) < 0.05) == (iv["lo"] > 0)
        inside = -0.05 <= iv["lo"] and iv["hi"] <= 0.05
        assert (p_similar(m, sd, n, 0.05) <= 0.05) == inside  # TOST, 2.5% per side
        assert direction(iv["lo"], iv["hi"], n=n) == (
            "better" if iv["hi"] < 0 else "worse" if iv["lo"] > 0 else "none"
        )
    assert math.isnan(p_below(0.1, 0.0, 1))


def test_holm_and_benjamini_hochberg_by_hand():
    p = [0.01, 0.04, 0.03, 0.005, math.nan]
    # Holm: sorted 0.005, 0.01, 0.03, 0.04 times 4, 3, 2, 1, kept monotone
    assert adjust(p, "holm")[:4] == pytest.approx([0.03, 0.06, 0.06, 0.02])
    # BH: m p / rank from the largest down, kept monotone: 0.02, 0.04, 0.04, 0.04
    assert adjust(p, "bh")[:4] == pytest.approx([0.02, 0.04, 0.04, 0.02])
    assert math.isnan(adjust(p)[4])
    with pytest.raises(ValueError, match="holm or bh"):
        adjust(p, "bonferroni")


# ------------------------------------------------------------------------------ the claims
def test_claim4_reads_better_before_similar():
    # exponential-det beats float by 0.4 points on every seed: inside the 1-point margin
    # (similar by the group rule) and below 0 (better); a claim of a direction counts it
    rows = []
    for seed in range(5):
        f = 0.02 + 0.002 * seed
        rows += [_run("digits", "float", seed, f, task="fsdd", cell="gru"),
                 _run("digits", "exponential-det", seed, f - 0.004 - 0.0002 * seed,
                      task="fsdd", cell="gru")]  # fmt: skip
    _, summary, found = _claims(rows)
    g = summary.set_index("method").loc["exponential-det"]
    assert g["verdict"] == "similar" and g["gap_hi"] < 0
    c4 = _row(found, "4.", "spoken digits")
    assert c4["verdict"] == "reproduced" and c4["counts"] == "1 support", c4
    assert c4["primary"] == "digits fsdd GRU 64" or c4["primary"].startswith("digits fsdd GRU")
    # the same group supports claim 2 (similar or better), by either reading
    assert _row(found, "2.", "spoken digits")["verdict"] == "not tested"  # no ternary group


def test_per_task_split_ptb_contradicts_digits_inconclusive():
    rows = []
    for seed in range(3):
        f = 1.6 + 0.05 * seed
        rows += [
            _run("main", "float", seed, f),
            _run("main", "ternary-det", seed, f + 0.2 + 0.001 * seed),  # primary: worse
            _run("ptb-cells", "float", seed, 2.0, hidden=128),
            _run("ptb-cells", "ternary-det", seed, 2.3 + 0.001 * seed, hidden=128),
        ]
    for seed in range(5):  # digits: seeds disagree, the interval crosses 0 and the margin
        f = 0.05
        rows += [_run("digits", "float", seed, f, task="fsdd", cell="gru"),
                 _run("digits", "ternary-det", seed, f + (0.05 if seed % 2 else -0.04),
                      task="fsdd", cell="gru"),
                 _run("digits", "float", seed, 0.4, task="fsdd-speakers", cell="gru"),
                 _run("digits", "ternary-det", seed, 0.5 + 0.01 * seed, task="fsdd-speakers",
                      cell="gru")]  # fmt: skip
    _, _, found = _claims(rows)
    ptb, dig, both = (_row(found, "2.", t) for t in ("PTB-char", "spoken digits", "overall"))
    assert ptb["verdict"] == "not reproduced" and ptb["counts"] == "1 contradict"
    assert ptb["primary"] == "main ptb-char LSTM 256"
    assert ptb["supporting"] == "1 contradict"  # ptb-cells, beside the primary
    assert dig["verdict"] == "inconclusive" and dig["counts"] == "1 inconclusive"
    assert dig["exploratory"] == "1 contradict"  # the held-out speakers do not decide
    assert both["verdict"] == "PTB-char: not reproduced; spoken digits: inconclusive"


def test_multiplicity_turns_a_marginal_win_inconclusive():
    # one digits GRU group better with p about 0.03 alone; beside four other groups of the
    # claim, Holm's adjusted p-value exceeds 0.05: raw "reproduced", adjusted "inconclusive"
    rows = []
    gaps = [-0.006, -0.003, -0.004, -0.008, -0.001]
    for seed, d in enumerate(gaps):
        rows += [
            _run("digits", "float", seed, 0.1, task="fsdd", cell="gru"),
            _run("digits", "ternary-det", seed, 0.1 + d, task="fsdd", cell="gru"),
        ]
        for cell in ("lstm", "rnn"):
            rows += [_run("digits", "float", seed, 0.1, task="fsdd", cell=cell),
                     _run("digits", "ternary-det", seed, 0.1 + 0.02 * (seed % 2 - 0.5),
                          task="fsdd", cell=cell)]  # fmt: skip
    _, summary, found = _claims(rows)
    g = summary[(summary["cell"] == "gru") & (summary["method"] == "ternary-det")].iloc[0]
    assert g["gap_hi"] < 0 and 0.01 < g["p_better"] < 0.05
    c4 = _row(found, "4.", "spoken digits")
    assert c4["verdict_unadjusted"] == "reproduced" and c4["counts_unadjusted"] == "1 support"
    assert c4["verdict"] == "inconclusive" and c4["counts"] == "1 inconclusive"
    assert c4["multiplicity"].startswith("Holm over the 3 group(s)")


def test_one_convergence_rule_for_every_claim():
    # every PTB group far worse than float (or failing) but still improving at its last
    # epoch: no claim is decided on it, and its interval is still shown
    rows = []
    for seed in range(3):
        f = 1.6 + 0.05 * seed
        rows += [
            _run("main", "float", seed, f, still=True),
            _run("main", "ternary-det", seed, f + 0.2 + 0.001 * seed, still=True),
            _run("main", "binary-det", seed, 4.2 + 0.01 * seed, still=seed == 0),
        ]
    _, _, found = _claims(rows)
    c2, c1 = _row(found, "2.", "PTB-char"), _row(found, "1.", "PTB-char")
    assert c2["verdict"] == "not converged at this budget" and c2["counts"] == "1 not converged"
    assert "gap +0.201 [" in c2["ours"] and "still improving in 3 of 3 seeds" in c2["ours"]
    # one seed of three still improving is enough
    assert c1["verdict"] == "not converged at this budget"
    assert "still improving in 1 of 3 seeds" in c1["ours"]


def test_claim1_states_its_threshold_and_moves_with_it():
    # binary-det loses 30% of float's gain over the unigram (4.34 - 1.6 = 2.74; gap 0.83):
    # it works at the declared half of the gain, fails at the stricter 0.2 and 0.1
    rows = []
    for seed in range(3):
        rows += [
            _run("main", "float", seed, 1.6),
            _run("main", "binary-det", seed, 2.42 + 0.01 * seed),
        ]
    runs, summary, found = _claims(rows)
    g = summary.set_index("method").loc["binary-det"]
    assert (g["works"], g["works_0.2"], g["works_0.1"]) == ("works", "fails", "fails")
    assert g["gain_lost"] == pytest.approx(0.83 / 2.74, rel=1e-3)
    assert _row(found, "1.", "PTB-char")["threshold"] == "works at 0.5 of float's gain (declared)"
    moved = tables.claim_thresholds(runs, summary)
    ptb = moved[(moved["task"] == "PTB-char") & moved["claim"].str.startswith("1.")]
    assert dict(zip(ptb["share"], ptb["verdict"], strict=True)) == {
        0.5: "not reproduced",
        0.2: "reproduced",
        0.1: "reproduced",
    }


def test_standing_against_the_independent_baselines():
    refs = [{"task": "ptb-char", "name": "KN 4-gram", "test": 2.03},
            {"task": "ptb-char", "name": "KN 5-gram", "test": 1.69},
            {"task": "ptb-char", "name": "KN 6-gram", "test": 1.55}]  # fmt: skip
    rows = [_run("main", "float", s, 1.60 + 0.01 * s) for s in range(3)]
    runs = tables._paired_gaps(pd.DataFrame(rows))
    g = tables.groups(runs, refs).iloc[0]
    assert g["vs_reference"] == "beats KN 5-gram (1.690); behind KN 6-gram (1.550)"
    assert tables.groups(runs).iloc[0]["vs_reference"] == "not computed"


def test_baselines_reader_tolerates_absence_and_reads_the_record_schema(tmp_path):
    assert tables.read_baselines(tmp_path / "nowhere") == []
    (tmp_path / "bad.json").write_text("{not json")
    (tmp_path / "ptb-char_kneser-ney.json").write_text(
        '{"schema": "qrnn.baseline/1", "baseline": "kneser-ney", "task": "ptb-char", '
        '"results": {"orders": [{"order": 3, "test_bpc": 2.648}]}}'
    )
    (tmp_path / "fsdd_pooled-logreg.json").write_text(
        '{"baseline": "pooled-logreg", "task": "fsdd", "results": {"splits": {"speakers": '
        '{"moments": {"test_error": 0.478}}}}}'
    )
    got = tables.read_baselines(tmp_path)
    assert {(r["task"], r["name"], r["test"]) for r in got} == {
        ("ptb-char", "KN 3-gram", 2.648),
        ("fsdd-speakers", "pooled-logreg (moments)", 0.478),
    }


def test_claim5_zeros_are_decided_on_accuracy_at_equal_scale():
    # binary at the Glorot scale "works" as ternary does, yet costs 0.1 BPC against it on
    # every seed: zeros matter at equal scale, although both work
    rows = []
    for seed in range(3):
        f = 1.6 + 0.05 * seed
        rows += [
            _run("main", "float", seed, f),
            _run("main", "binary-det", seed, 4.0),
            _run("main", "ternary-det", seed, f + 0.2 + 0.001 * seed),
            _run("scale", "binary-glorot-det", seed, f + 0.3 + 0.002 * seed),
        ]
    runs = tables._paired_gaps(pd.DataFrame(rows))
    summary = tables.groups(runs)
    v = cause_verdicts(causes_table(summary), runs).set_index(["cause", "mode"])
    zeros = v.loc[("zeros", "det")]
    assert zeros["verdict"] == "supported (no zeros costs accuracy at equal scale)"
    assert zeros["verdict_works"].startswith("not required (scaled binary works")
    assert "binary-glorot-det - ternary-det at equal scale: +0.101 [" in zeros["evidence"]
    assert v.loc[("scale", "det"), "dose_response"] == "not run yet"
    # the same with the ternary runs still improving: not converged at this budget
    for r in rows:
        r["still_improving"] = r["method"] == "ternary-det"
    runs = tables._paired_gaps(pd.DataFrame(rows))
    v = cause_verdicts(causes_table(tables.groups(runs)), runs).set_index(["cause", "mode"])
    assert v.loc[("zeros", "det"), "verdict"] == "not converged at this budget"
    assert v.loc[("zeros", "det"), "verdict_at_budget"].startswith("supported")


def test_group_verdict_is_unchanged_for_the_tables():
    # the summary's verdict column keeps "similar" first; only claims of a direction differ
    assert group_verdict(-0.04, -0.01, 0.05) == "similar"
    assert direction(-0.04, -0.01) == "better"
