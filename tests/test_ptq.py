"""The post-training summary (``ptq.csv``) on synthetic records: the gain of quantizing during
training is paired per seed and decided on its 95% interval over seeds, not on means."""

from __future__ import annotations

import json
import math

import pytest

from qrnn import study
from qrnn.study.verdicts import interval


def _write(tmp_path, task, cell, method, metric, seed, float_test, ptq_test, trained_test):
    """One post-training record and, unless ``trained_test`` is ``"missing"``, the run record
    of its training-time counterpart (``None``: that run diverged, no test result)."""
    trained_id = f"{task}_{cell}_{method}_s{seed}"
    rec = {"schema": "qrnn.ptq/1", "experiment": "main", "task": task, "cell": cell,
           "method": method, "seed": seed, "float_run_id": f"{task}_{cell}_float_s{seed}",
           "trained_run_id": trained_id, "metric": metric, "float_test": float_test,
           "test": ptq_test, "test_loss": 1.0}  # fmt: skip
    path = tmp_path / "p" / "ptq" / f"{task}_{cell}_float_s{seed}" / f"{method}.json"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(rec))
    if trained_test != "missing":
        run = tmp_path / "p" / "runs" / trained_id / "run.json"
        run.parent.mkdir(parents=True, exist_ok=True)
        test = None if trained_test is None else {"metric": trained_test}
        run.write_text(json.dumps({"test": test}))


def test_summarize_ptq_decides_the_gain_on_paired_intervals(tmp_path):
    # bpc (margin 0.05): training wins clearly on every seed
    for s, (p, t) in enumerate([(3.0, 2.0), (3.2, 2.1), (2.9, 2.0)]):
        _write(tmp_path, "ptb-char", "lstm", "binary-det", "bpc", s, 1.6, p, t)
    # bpc: gains of about zero on every seed -> similar
    for s, (p, t) in enumerate([(1.80, 1.80), (1.81, 1.80), (1.80, 1.81)]):
        _write(tmp_path, "ptb-char", "lstm", "ternary-det", "bpc", s, 1.6, p, t)
    # error (margin 0.01): post-training wins on every seed -> training is worse
    for s, (p, t) in enumerate([(0.40, 0.60), (0.42, 0.61), (0.41, 0.63)]):
        _write(tmp_path, "fsdd", "gru", "binary-det", "error", s, 0.02, p, t)
    # error: means say training wins, but the seeds disagree -> inconclusive
    for s, (p, t) in enumerate([(0.30, 0.10), (0.10, 0.25)]):
        _write(tmp_path, "fsdd", "gru", "ternary-det", "error", s, 0.02, p, t)
    # one seed: a mean but no interval
    _write(tmp_path, "fsdd", "rnn", "ternary-det", "error", 0, 0.2, 0.5, 0.3)
    # one trained counterpart diverged and one has no record: only the paired seed counts
    _write(tmp_path, "fsdd", "lstm", "ternary-det", "error", 0, 0.03, 0.16, 0.05)
    _write(tmp_path, "fsdd", "lstm", "ternary-det", "error", 1, 0.03, 0.20, None)
    _write(tmp_path, "fsdd", "lstm", "ternary-det", "error", 2, 0.03, 0.18, "missing")

    table = study.summarize_ptq("p", tmp_path).set_index(["task", "cell", "method"])
    assert (tmp_path / "p" / "ptq.csv").exists()
    row = table.loc[("ptb-char", "lstm", "binary-det")]
    iv = interval([1.0, 1.1, 0.9])
    assert row["n"] == 3 and row["n_paired"] == 3
    assert (row["gain"], row["gain_lo"], row["gain_hi"]) == pytest.approx(
        (iv["mean"], iv["lo"], iv["hi"])
    )
    assert row["verdict"] == "better"
    assert table.loc[("ptb-char", "lstm", "ternary-det"), "verdict"] == "similar"
    assert table.loc[("fsdd", "gru", "binary-det"), "verdict"] == "worse"
    tern = table.loc[("fsdd", "gru", "ternary-det")]
    assert tern["gain"] > 0 and tern["gain_lo"] < 0 < tern["gain_hi"]
    assert tern["verdict"] == "inconclusive"
    one = table.loc[("fsdd", "rnn", "ternary-det")]
    assert one["n_paired"] == 1 and one["gain"] == pytest.approx(0.2)
    assert math.isnan(one["gain_lo"]) and one["verdict"] == "inconclusive"
    part = table.loc[("fsdd", "lstm", "ternary-det")]
    assert part["n"] == 3 and part["n_paired"] == 1 and part["gain"] == pytest.approx(0.11)
    # recovered: gain over the post-training loss, defined only where that loss is positive
    assert row["recovered"] == pytest.approx(row["gain"] / (row["ptq_test"] - 1.6))
