"""The claims decided by a profile's study design (qrnn.study.designs) on synthetic run tables
shaped like study v3's: each claim from v3's primary groups, the written convergence rule as
the gate, claim 3 per training size with its gate and its float references, the cause verdicts
within one experiment, and the method-selection experiments kept out of every claim."""

from __future__ import annotations

import dataclasses

import pandas as pd
import pytest

from qrnn.study import tables
from qrnn.study.causes import cause_verdicts, causes_table
from qrnn.study.decisions import MAIN_GRID, NORMALIZATIONS, claim_thresholds, claims
from qrnn.study.designs import CPU, CPU_V3, DESIGNS, PAPER, design_for
from qrnn.study.grid import experiments

FOLDS = range(10)


def _run(experiment, method, seed, test, *, task="ptb-char", cell="lstm", hidden=None,
         converged=True, still=False, status="completed", best=2, epochs=3,
         final_train=1.5, final_valid=1.6, valid=None):  # fmt: skip
    lm = task == "ptb-char"
    hidden = hidden or (256 if lm else 64)
    return {
        "experiment": experiment, "task": task, "cell": cell, "method": method, "seed": seed,
        "run_id": f"{experiment}-{task}-{cell}-{method}-{seed}", "status": status,
        "metric": "bpc" if lm else "error", "test": test,
        "valid": test if valid is None else valid, "train": final_train,
        "final_train": final_train, "final_valid": final_valid, "epochs": epochs,
        "best_epoch": best, "steps": 100, "seen": 1000, "hidden": hidden, "wall_s": 1.0,
        "baseline": 4.34 if lm else 0.9, "learned": True, "still_improving": still,
        "zero_init": 0.0, "packed": None, "converged": converged, "lr_final": 1e-5,
        # v3: every method at its own learning rate (the setting), one twin without it
        "setting": f"{experiment}-{method}", "twin": f"{experiment}-twin",
        "max_epochs": epochs, "train_limit": 0,
    }  # fmt: skip


def _decide(rows, design=CPU_V3):
    runs = tables._paired_gaps(pd.DataFrame(rows), design.reference)
    summary = tables.groups(runs)
    return runs, summary, claims(runs, summary, design)


def _row(found, number, task):
    return next(c for c in found if c["claim"].startswith(number) and c["task"] == task)


def _main(**kw):
    rows = []
    for seed in range(3):
        f = 1.50 + 0.03 * seed
        rows += [_run("main", "float", seed, f, **kw),
                 _run("main", "binary-det", seed, 3.9 + 0.01 * seed, **kw),
                 _run("main", "ternary-det", seed, f + 0.01 + 0.001 * seed, **kw)]  # fmt: skip
    return rows


def _kfold():
    rows = []
    for fold in FOLDS:
        for cell in ("gru", "rnn", "lstm"):
            f = 0.05 + 0.002 * fold
            rows += [
                _run("digits-kfold", "float", fold, f, task="fsdd", cell=cell),
                _run("digits-kfold", "binary-stoch", fold, 0.8 + 0.001 * fold, task="fsdd",
                     cell=cell),
                _run("digits-kfold", "exponential-det", fold, f - 0.02 - 0.0005 * fold,
                     task="fsdd", cell=cell),
            ]  # fmt: skip
    return rows


# ------------------------------------------------------------------------------- the designs
def test_v2s_design_is_the_names_its_tables_were_decided_by():
    assert design_for("cpu") is CPU and design_for("smoke") is CPU
    assert CPU.main_grid == MAIN_GRID == ("main", "digits", "ptb-cells")
    assert CPU.normalizations is NORMALIZATIONS and CPU.gate == "improving"
    assert CPU.primary["fsdd"] == ("digits", "fsdd", "gru", 64) and CPU.overfit == ("overfit",)
    assert CPU.reference is tables.REFERENCE
    assert design_for("cpu-v3") is CPU_V3 and CPU_V3.gate == "written"
    assert design_for("paper-dry") is PAPER and design_for("paper") is PAPER
    assert design_for("somewhere-else") is CPU


@pytest.mark.parametrize("profile", sorted(DESIGNS))
def test_every_experiment_a_design_names_is_in_its_profiles_grid(profile):
    d = DESIGNS[profile]
    cells, sizes = {}, {}  # one name may hold several experiments (a cell and fold each)
    for e in experiments(profile):
        cells.setdefault(e.name, set()).update(e.cells)
        for task, cfg in e.tasks.items():
            sizes.setdefault((e.name, task), set()).add(cfg.get("hidden"))
    named = {*d.main_grid, d.digits, *d.overfit, *(e for e, _, _ in d.pairs)}
    if profile != "cpu":  # v2's dose experiment was a hook that never ran
        named |= set(d.dose)
    assert named <= set(cells), sorted(named - set(cells))
    for task, (e, t, cell, hidden) in d.primary.items():
        assert t == task and cell in cells[e], (profile, task)
        assert sizes[e, task] == {hidden}, (profile, task)


# ------------------------------------------------------------------------- claims 1, 2 and 4
def test_v3_claims_are_decided_from_v3s_primary_groups():
    # a v2-named digits experiment that contradicts everything: v3 never reads it
    stray = [_run("digits", m, s, 0.9 if m != "float" else 0.05, task="fsdd", cell="gru")
             for s in range(5) for m in ("float", "exponential-det")]  # fmt: skip
    _, _, found = _decide(_main() + _kfold() + stray)
    c1, d1 = _row(found, "1.", "PTB-char"), _row(found, "1.", "spoken digits")
    assert c1["primary"] == "main ptb-char LSTM 256, 3 epochs" and c1["verdict"] == "reproduced"
    assert d1["primary"] == "digits-kfold fsdd GRU 64, 3 epochs" and d1["verdict"] == "reproduced"
    assert d1["supporting"] == "2 support"  # the RNN and LSTM on the folds
    c2 = _row(found, "2.", "PTB-char")
    assert c2["verdict"] == "reproduced" and "ternary-det: similar" in c2["ours"]
    c4 = _row(found, "4.", "spoken digits")
    assert c4["verdict"] == "reproduced" and c4["primary"].startswith("digits-kfold fsdd GRU")
    assert c4["counts"] == "1 support" and c4["supporting"] == "2 support"
    assert "of the digits-kfold experiment" in c4["rule"]
    # the same rows under v2's design read the stray digits experiment instead
    _, _, v2 = _decide(_main() + _kfold() + stray, CPU)
    assert _row(v2, "4.", "spoken digits")["verdict"] == "not reproduced"


def test_a_primary_group_without_a_finished_run_says_so():
    _, _, found = _decide(_kfold())  # main not finished
    c1 = _row(found, "1.", "PTB-char")
    assert c1["verdict"] == "not tested"
    assert c1["primary"] == "main ptb-char LSTM 256 (no finished run yet)"
    assert _row(found, "1.", "overall")["verdict"] == "reproduced"  # digits alone


def test_a_group_not_converged_by_the_written_rule_decides_nothing():
    rows = _main(still=True)  # still improving at the last epoch: the written rule decides
    for r in rows:
        if r["method"] == "binary-det" and r["seed"] == 1:
            r["converged"] = False
    _, _, found = _decide(rows)
    c1, c2 = _row(found, "1.", "PTB-char"), _row(found, "2.", "PTB-char")
    assert c1["verdict"] == "not converged at this budget" and c1["counts"] == "1 not converged"
    assert "not converged by the written rule in 1 of 3 seeds" in c1["ours"]
    assert "converged by the written rule" in c1["rule"]
    assert c2["verdict"] == "reproduced"  # every seed converged although best at the last
    # v2's rule on the same rows: every group still improving, nothing decided
    _, _, v2 = _decide(rows, CPU)
    assert _row(v2, "2.", "PTB-char")["verdict"] == "not converged at this budget"


def test_a_diverged_seed_decides_by_diverging():
    rows = [r for r in _main() if r["method"] == "float"]
    rows += [_run("main", "binary-stoch", s, float("nan"), status="diverged", converged=False)
             for s in range(3)]  # fmt: skip
    _, _, found = _decide(rows)
    assert _row(found, "1.", "PTB-char")["verdict"] == "reproduced"


def test_sweeps_never_enter_a_claim():
    base = _main() + _kfold()
    sweep = [_run("lr-sweep@lr=0.032", m, 0, t) for m, t in
             (("float", 1.5), ("binary-det", 1.55), ("ternary-det", 2.5))]  # fmt: skip
    sweep += [
        _run("lr-sweep-digits@lr=0.01", m, 0, t, task="fsdd", cell="gru")
        for m, t in (("float", 0.05), ("binary-stoch", 0.05), ("exponential-det", 0.5))
    ]
    sweep += [_run("clip-global", m, 0, t) for m, t in (("float", 1.5), ("binary-det", 1.5))]
    _, summary, found = _decide(base + sweep)
    assert "lr-sweep@lr=0.032" in set(summary["experiment"])  # in the tables, not the claims
    _, _, alone = _decide(base)
    keys = ("verdict", "counts", "supporting", "exploratory", "primary", "ours")
    assert [{k: c[k] for k in keys} for c in found] == [{k: c[k] for k in keys} for c in alone]
    assert not any("sweep" in c["ours"] or "clip-global" in c["ours"] for c in found)


def test_claim_n_is_reported_as_not_tested_in_v3():
    runs, summary, found = _decide(_main())
    rows = [c for c in found if c["claim"].startswith("N.")]
    assert [c["task"] for c in rows] == ["PTB-char", "spoken digits", "overall"]
    assert {c["verdict"] for c in rows} == {"not tested"}
    assert "runs no normalization experiment" in rows[0]["rule"]
    moved = claim_thresholds(runs, summary, CPU_V3)
    assert set(moved["claim"].str[:2]) == {"1."}
    # v2 without any normalization run: no claim-N rows, as before
    assert not any(c["claim"].startswith("N.") for c in _decide(_main(), CPU)[2])


# ---------------------------------------------------------------------------------- claim 3
def _overfit(experiment, *, overfits, gain, dropout=-0.25, converged=True):
    rows = []
    for seed in range(3):
        f = 1.80 + 0.05 * seed
        best, train = (20, 1.2) if overfits else (30, 1.85)
        rows.append(_run(experiment, "float", seed, f, best=best, epochs=30, final_train=train,
                         final_valid=1.9))  # fmt: skip
        rows.append(_run(experiment, "ternary-stoch", seed, f + gain + 0.001 * seed,
                         valid=f + gain, best=25, epochs=30, converged=converged))  # fmt: skip
        rows.append(_run(experiment, "binary-stoch", seed, 3.0, valid=3.0, best=25, epochs=30))
        rows.append(_run(experiment, "float-dropout-0.1", seed, f + dropout + 0.002 * seed,
                         valid=f + dropout, best=25, epochs=30))  # fmt: skip
        rows.append(_run(experiment, "float-const", seed, f + 0.2 + 0.001 * seed, best=25,
                         epochs=30))  # fmt: skip
    for r in rows:  # the references change a setting of float's: no twin to pair with
        if r["method"].startswith("float-"):
            r["twin"] = r["setting"]
    return rows


def test_claim3_is_decided_per_training_size_with_its_own_gate():
    rows = _overfit("overfit-250k", overfits=True, gain=-0.133)
    rows += _overfit("overfit-1m", overfits=False, gain=-0.133)
    _, summary, found = _decide(rows)
    small, large = (
        _row(found, "3.", "PTB-char (overfit-250k)"),
        _row(found, "3.", "PTB-char (overfit-1m)"),
    )
    assert small["verdict"] == "reproduced (direction and size)"
    assert small["primary"].endswith("ternary-stoch (best validation)")
    assert large["verdict"] == "not tested" and large["counts"] == "no overfitting regime"
    both = _row(found, "3.", "overall")
    assert both["verdict"] == ("PTB-char (overfit-250k): reproduced (direction and size); "
                               "PTB-char (overfit-1m): not tested")  # fmt: skip
    # the references are not stochastic methods: they never become the primary group
    assert set(summary.loc[summary["experiment"] == "overfit-250k", "method"]) >= {
        "float-const", "float-dropout-0.1"}  # fmt: skip
    assert "float-dropout" not in small["primary"] and small["supporting"] == "1 contradict"


def test_claim3_reports_dropout_beside_the_stochastic_methods_without_changing_the_verdict():
    rows = _overfit("overfit-250k", overfits=True, gain=-0.133, dropout=-0.4)
    rows += _overfit("overfit-1m", overfits=True, gain=-0.133, dropout=-0.4)
    _, _, found = _decide(rows)
    c3 = _row(found, "3.", "PTB-char (overfit-250k)")
    assert c3["verdict"] == "reproduced (direction and size)"
    assert c3["counts"].startswith("1 support; references vs float: ")
    assert "float-const worse" in c3["counts"] and "float-dropout-0.1 better" in c3["counts"]
    assert "float-dropout-0.1 vs ternary-stoch: better" in c3["counts"]
    assert "float-dropout-0.1: better, gap -0.398 [" in c3["ours"]
    assert "deciding nothing" in c3["ours"] and "float-dropout-0.1" in c3["rule"]


def test_claim3_waits_for_the_written_convergence_rule():
    rows = _overfit("overfit-250k", overfits=True, gain=-0.2, converged=False)
    rows += _overfit("overfit-1m", overfits=True, gain=-0.2)
    _, _, found = _decide(rows)
    c3 = _row(found, "3.", "PTB-char (overfit-250k)")
    assert c3["verdict"] == "not converged at this budget"
    assert "not converged by the written rule in 3 of 3 seeds" in c3["ours"]
    assert _row(found, "3.", "PTB-char (overfit-1m)")["verdict"].startswith("direction reproduced")


# ---------------------------------------------------------------------------------- claim 5
def _dose(binary_converged=True):
    rows = []
    for seed in range(5):
        f = 0.02 + 0.005 * seed
        for m, gap in (
            ("float", 0.0),
            ("binary-stoch", 0.8),
            ("float-noise-binary", 0.79),
            ("float-noise-binary-glorot", 0.03),
            ("float-noise-binary-0.5", 0.64),
        ):
            rows.append(
                _run(
                    "noise-dose-digits",
                    m,
                    seed,
                    f + gap + 0.001 * seed,
                    task="fsdd",
                    cell="gru",
                    converged=binary_converged or m != "binary-stoch",
                )
            )
    return rows  # fmt: skip


def test_v3_causes_pair_methods_trained_at_their_own_rates():
    runs = tables._paired_gaps(pd.DataFrame(_dose()), CPU_V3.reference)
    summary = tables.groups(runs)
    v3 = cause_verdicts(causes_table(summary, CPU_V3), runs, CPU_V3)
    noise = v3.set_index(["experiment", "cause", "mode"]).loc[("noise-dose-digits", "noise",
                                                               "stoch")]  # fmt: skip
    assert noise["verdict"] == "supported"
    assert noise["dose_response"].startswith("float-noise-binary-glorot: works, gap +0.03")
    assert "float-noise-binary-0.5: fails" in noise["dose_response"]
    # v2's configuration keeps each learning rate (setting) apart: nothing meets its control
    v2 = dataclasses.replace(CPU_V3, cause_config=CPU.cause_config)
    v2 = cause_verdicts(causes_table(summary, v2), runs, v2)
    assert set(v2.loc[v2["cause"] == "noise", "verdict"]) == {"not tested"}
    # binary-stoch not converged by the written rule: the cause waits
    runs = tables._paired_gaps(pd.DataFrame(_dose(binary_converged=False)))
    summary = tables.groups(runs)
    v3 = cause_verdicts(causes_table(summary, CPU_V3), runs, CPU_V3).set_index(["cause", "mode"])
    assert v3.loc[("noise", "stoch"), "verdict"] == "not converged at this budget"
    assert v3.loc[("noise", "stoch"), "verdict_at_budget"] == "supported"
    assert "5 not converged" in v3.loc[("noise", "stoch"), "evidence"]
