"""Claim 5's cause verdicts (qrnn.study.causes) on synthetic group rows."""

import math

import pandas as pd
import pytest

from qrnn.study.causes import cause_verdicts, causes_table


def _group(method, works, gap=0.5, experiment="main", task="ptb-char", cell="lstm"):
    return {"experiment": experiment, "task": task, "cell": cell, "method": method,
            "metric": "bpc", "n": 3, "diverged": 3 if works == "diverged" else 0,
            "learned": 0 if works in ("fails", "diverged") else 3, "test_mean": 2.0,
            "gap_mean": math.nan if works == "diverged" else gap, "gap_lo": gap - 0.1,
            "gap_hi": gap + 0.1, "verdict": "worse", "works": works, "zero_init": 0.0}  # fmt: skip


def _verdicts(states: dict[str, str]):
    rows = [_group(m, w) for m, w in states.items()]
    return cause_verdicts(causes_table(pd.DataFrame(rows))).set_index(["cause", "mode"])


def test_scale_supported_only_when_h1_fails_and_a_scaled_binary_works():
    v = _verdicts({"binary-stoch": "fails", "binary-glorot-stoch": "works",
                   "binary-rms-stoch": "fails"})  # fmt: skip
    assert v.loc[("scale", "stoch"), "verdict"] == "supported"
    v = _verdicts({"binary-stoch": "fails", "binary-glorot-stoch": "diverged",
                   "binary-rms-stoch": "fails"})  # fmt: skip
    assert v.loc[("scale", "stoch"), "verdict"] == "not supported"
    v = _verdicts({"binary-det": "works"})  # nothing to explain, with or without controls
    assert v.loc[("scale", "det"), "verdict"] == "not the cause (H = 1 works)"
    v = _verdicts({"binary-det": "fails", "binary-glorot-det": "inconclusive"})
    assert v.loc[("scale", "det"), "verdict"] == "inconclusive"


def test_a_cause_without_its_groups_is_not_tested():
    v = _verdicts({"binary-stoch": "fails", "binary-det": "fails"})
    assert set(v["verdict"]) == {"not tested"}
    assert "binary-stoch: fails, gap +0.500 [+0.400, +0.600] (n=3)" in v.loc[
        ("scale", "stoch"), "evidence"]  # fmt: skip


def test_noise_follows_the_matched_noise_control():
    base = {"binary-stoch": "fails"}
    cases = (("fails", "supported"), ("diverged", "supported"), ("works", "not supported"),
             ("inconclusive", "inconclusive"))  # fmt: skip
    for control, expected in cases:
        v = _verdicts({**base, "float-noise-binary": control})
        assert v.loc[("noise", "stoch"), "verdict"] == expected
    v = _verdicts({"binary-stoch": "works", "float-noise-binary": "fails"})
    assert v.loc[("noise", "stoch"), "verdict"].startswith("not the cause")


def test_zeros_are_required_only_when_every_binary_scale_fails_and_ternary_works():
    v = _verdicts({"ternary-stoch": "works", "binary-stoch": "fails",
                   "binary-glorot-stoch": "fails", "binary-rms-stoch": "diverged"})  # fmt: skip
    assert v.loc[("zeros", "stoch"), "verdict"] == "supported"
    v = _verdicts({"ternary-stoch": "works", "binary-stoch": "fails",
                   "binary-glorot-stoch": "works"})  # fmt: skip
    assert v.loc[("zeros", "stoch"), "verdict"].startswith("not required")
    v = _verdicts({"binary-stoch": "fails", "binary-rms-stoch": "works"})  # no ternary needed
    assert v.loc[("zeros", "stoch"), "verdict"].startswith("not required")
    v = _verdicts({"ternary-det": "works", "binary-det": "works"})
    assert v.loc[("zeros", "det"), "verdict"].startswith("not required")


def test_only_the_cause_groups_enter_the_table():
    rows = [_group("binary-stoch", "fails"), _group("float", "works"),
            _group("exponential-det", "works"),
            _group("binary-stoch", "fails", experiment="ptb-cells", cell="gru"),
            _group("binary-glorot-stoch", "works", experiment="digits-cause", task="fsdd",
                   cell="gru")]  # fmt: skip
    table = causes_table(pd.DataFrame(rows))
    assert list(zip(table["task"], table["method"], strict=True)) == [
        ("ptb-char", "binary-stoch"), ("fsdd", "binary-glorot-stoch")]  # fmt: skip
    verdicts = cause_verdicts(table)
    assert set(verdicts["task"]) == {"ptb-char", "fsdd"}
    assert len(verdicts) == 2 * 5  # scale det/stoch, noise stoch, zeros det/stoch per task


@pytest.mark.parametrize("cause", ["scale", "noise", "zeros"])
def test_every_verdict_states_its_rule(cause):
    v = _verdicts({"binary-stoch": "fails"})
    assert v.loc[cause, "rule"].str.contains("supported when").all()


def test_noise_is_not_supported_while_binary_stoch_is_undecided():
    # the control fails, but binary-stoch itself neither fails nor works: nothing to explain
    for state in ("inconclusive", "not converged"):
        v = _verdicts({"binary-stoch": state, "float-noise-binary": "fails"})
        assert v.loc[("noise", "stoch"), "verdict"] == "inconclusive", state
    v = _verdicts({"binary-stoch": "fails", "float-noise-binary": "fails"})
    assert v.loc[("noise", "stoch"), "verdict"] == "supported"


def test_a_group_without_a_float_twin_is_not_read_as_diverged():
    # test results but no float run of the same setting to pair with: its gap is unknown,
    # which the group table writes as "diverged"; the causes read it as undecided
    unpaired = {**_group("float-noise-binary", "diverged"), "diverged": 0, "test_mean": 0.7}
    rows = [_group("binary-stoch", "fails"), unpaired]
    v = cause_verdicts(causes_table(pd.DataFrame(rows))).set_index(["cause", "mode"])
    assert v.loc[("noise", "stoch"), "verdict"] == "inconclusive"
    assert "float-noise-binary: no float twin to pair with, test 0.700 (n=3)" in v.loc[
        ("noise", "stoch"), "evidence"]  # fmt: skip
