"""No pooled configurations (issue 28): two groups that differ in one setting only (the hidden
size) stay apart in every table the study writes and in the data each book figure receives,
built from run records on disk."""

from __future__ import annotations

import dataclasses
import json

import pandas as pd
import pytest

from qrnn import study
from qrnn.study import tables
from qrnn.study.causes import causes_table
from qrnn.study.config import RunConfig, run_id

# PTB-char LSTM at 128 and 256 units, same experiment, methods, seeds and budget; float
# reaches 1.6 at 256 and 2.0 at 128 units, every method a fixed gap above its own float
FLOAT = {256: 1.6, 128: 2.0}
GAP = {("float", 256): 0.0, ("float", 128): 0.0, ("ternary-det", 256): 0.2,
       ("ternary-det", 128): 0.4, ("binary-det", 256): 2.5, ("binary-det", 128): 2.2,
       ("binary-glorot-det", 256): 0.3, ("binary-glorot-det", 128): 0.5}  # fmt: skip
EXPERIMENT = {"binary-glorot-det": "scale"}


def _epoch(i, v):
    return {"epoch": i, "train_loss": 1.0, "train_metric": v, "valid_loss": 1.0,
            "valid_metric": v, "lr": 1e-3, "wall_s": 1.0, "steps": 10 * i}  # fmt: skip


def _write_run(root, experiment, method, hidden, seed, weight_norm=False):
    fields = study.method_fields(method)
    cfg = RunConfig(task="ptb-char", cell="lstm", hidden=hidden, embed=32, epochs=3, seed=seed,
                    weight_norm=weight_norm, **fields)  # fmt: skip
    rid = run_id(cfg)
    test = FLOAT[hidden] + GAP[method, hidden] + 0.001 * seed - (0.1 if weight_norm else 0.0)
    rec = {"schema": "qrnn.run/1", "run_id": rid, "status": "completed",
           "config": dataclasses.asdict(cfg), "metric": {"name": "bpc"},
           "epochs": [_epoch(1, test + 0.3), _epoch(2, test), _epoch(3, test + 0.01)],
           "best_epoch": 2, "test": {"metric": test}, "diverged": None, "error": None,
           "model": {}, "seeds": {}, "environment": {}, "data": {}, "invocation": {},
           "started": "", "finished": "", "wall_time_s": 1.0, "baseline": {"metric": 4.34},
           "learned": True, "convergence": {"still_improving": False}}  # fmt: skip
    folder = root / "p" / "runs" / rid
    folder.mkdir(parents=True)
    (folder / "run.json").write_text(json.dumps(rec))
    return rid, {"experiment": experiment, "task": "ptb-char", "cell": "lstm", "method": method,
                 "seed": seed}  # fmt: skip


@pytest.fixture
def results(tmp_path):
    grid = {}
    for hidden in (256, 128):
        for seed in range(3):
            for method in ("float", "ternary-det", "binary-det", "binary-glorot-det"):
                rid, lab = _write_run(tmp_path, EXPERIMENT.get(method, "main"), method, hidden,
                                      seed)  # fmt: skip
                grid[rid] = lab
                sz = {"file_bytes": 100.0 * hidden, "fp32_bytes": 1000.0 * hidden, "ratio": 10.0,
                      "quantized_ratio": 16.0}  # fmt: skip
                ops = {
                    k: float(hidden)
                    for k in (
                        "weight_bits",
                        "fp32_mult",
                        "fp32_add",
                        "int32_mult",
                        "int32_add",
                        "shift",
                        "sign_flip",
                        "zero_fraction",
                    )
                }
                hw = {"schema": "qrnn.hardware/1", **lab, "run_id": rid, "size": sz,
                      "unpacked_identical": True, "ops_per_step": ops,
                      "energy_pj_per_step": {"sram": {"total": 1.0, "arithmetic": 1.0},
                                             "dram": {"total": 2.0}},
                      "integer_max_abs_diff": 0.0, "integer_same_prediction": 1.0}  # fmt: skip
                (tmp_path / "p" / "hardware").mkdir(parents=True, exist_ok=True)
                (tmp_path / "p" / "hardware" / f"{rid}.json").write_text(json.dumps(hw))
            for method in ("binary-det",):  # weight-normalized twins, both sizes
                rid, lab = _write_run(tmp_path, "normalization", method, hidden, seed, True)
                grid[rid] = lab
                rid, lab = _write_run(tmp_path, "normalization", "float", hidden, seed, True)
                grid[rid] = lab
    (tmp_path / "p" / "grid.json").write_text(json.dumps(grid))
    # post-training records of each float run (keyed to it by float_run_id)
    for rid, lab in grid.items():
        if lab["method"] != "float" or lab["experiment"] != "main":
            continue
        hidden = json.loads((tmp_path / "p" / "runs" / rid / "run.json").read_text())[
            "config"]["hidden"]  # fmt: skip
        trained = next(r for r, x in grid.items() if x["experiment"] == "main"
                       and x["method"] == "ternary-det" and x["seed"] == lab["seed"]
                       and f'"hidden": {hidden},' in
                       (tmp_path / "p" / "runs" / r / "run.json").read_text())  # fmt: skip
        rec = {"schema": "qrnn.ptq/1", **lab, "method": "ternary-det", "float_run_id": rid,
               "trained_run_id": trained, "metric": "bpc", "float_test": FLOAT[hidden],
               "test": FLOAT[hidden] + 1.0, "test_loss": 1.0}  # fmt: skip
        out = tmp_path / "p" / "ptq" / rid / "ternary-det.json"
        out.parent.mkdir(parents=True)
        out.write_text(json.dumps(rec))
    return tmp_path


def _apart(frame, method="ternary-det", column="hidden"):
    """The rows of ``method``: one per hidden size."""
    rows = frame[frame["method"] == method]
    assert sorted(rows[column].astype(int)) == [128, 256], rows
    return rows.set_index(rows[column].astype(int))


def test_two_hidden_sizes_stay_apart_in_every_table_and_figure(results):
    runs, summary = tables.summarize("p", results)
    s = _apart(summary)
    # each gap is paired with the float of its own size (pooled, 0.3 would be averaged)
    assert s.loc[256, "gap_mean"] == pytest.approx(0.2)
    assert s.loc[128, "gap_mean"] == pytest.approx(0.4)
    assert s.loc[256, "setting"] != s.loc[128, "setting"]
    assert (summary.groupby(tables.GROUP).size() == 1).all()
    # claims: each size is its own group (the 256-unit one the declared primary)
    c2 = next(
        c
        for c in tables.claims(runs, summary)
        if c["claim"].startswith("2.") and c["task"] == "PTB-char"
    )
    assert c2["counts"] == "1 contradict" and c2["supporting"] == "1 contradict"
    assert "LSTM 256" in c2["primary"] and "LSTM 128" not in c2["primary"]
    # normalization table: one row per size and method
    norm = pd.read_csv(results / "p" / "normalization.csv")
    n = _apart(norm, "binary-det")
    assert n.loc[256, "test_mean_none"] == pytest.approx(4.101)
    assert n.loc[128, "test_mean_none"] == pytest.approx(4.201)
    # causes: one configuration per size, its verdicts decided within it
    causes = causes_table(summary)
    assert sorted(causes.loc[causes["method"] == "binary-det", "hidden"]) == [128, 256]
    cv = pd.read_csv(results / "p" / "cause_verdicts.csv")
    assert set(cv["hidden"]) == {128, 256} and len(cv) == 2 * 5
    zeros = cv[(cv["cause"] == "zeros") & (cv["mode"] == "det")].set_index("hidden")
    assert "+0.100 [" in zeros.loc[256, "evidence"] and "+0.100 [" in zeros.loc[128, "evidence"]
    # hardware and post-training tables
    hw = _apart(study.summarize_hardware("p", results))
    assert hw.loc[256, "file_bytes"] == 25600 and hw.loc[128, "file_bytes"] == 12800
    assert (hw["n"] == 3).all()
    ptq = _apart(study.summarize_ptq("p", results))
    assert ptq.loc[256, "gain"] == pytest.approx(1.0 - 0.201)
    assert ptq.loc[128, "gain"] == pytest.approx(1.0 - 0.401)
    # the results page's figure: one series per size
    fig = tables.figure_rows(summary[summary["experiment"] == "main"])
    keys = [(r["task"], r["cell"], r["method"]) for r in fig]
    assert len(keys) == len(set(keys))
    tern = {r["cell"]: r["test_mean"] for r in fig if r["method"] == "ternary-det"}
    assert tern == pytest.approx({"lstm 256": 1.801, "lstm 128": 2.401})
    # init.csv keys its groups the same way (config_keys of the grid's configs)
    a, b = (tables.config_keys(dataclasses.asdict(RunConfig(hidden=h))) for h in (128, 256))
    assert a["setting"] != b["setting"] and (a["hidden"], b["hidden"]) == (128, 256)


def test_a_per_method_learning_rate_still_pairs_with_float():
    """A group whose learning rate differs from float's (chosen per method) pairs with the one
    float of its setting; two floats at different rates leave it unpaired."""
    base = dataclasses.asdict(RunConfig(hidden=64))
    keys = {lr: tables.config_keys({**base, "lr": lr}) for lr in (1e-3, 2e-3)}
    assert keys[1e-3]["setting"] != keys[2e-3]["setting"]
    assert keys[1e-3]["twin"] == keys[2e-3]["twin"]
    rows = []
    for seed in range(2):
        common = {"experiment": "main", "task": "ptb-char", "cell": "lstm", "seed": seed,
                  "hidden": 64, "max_epochs": 3, "train_limit": 0, "twin": "t"}  # fmt: skip
        rows += [
            {**common, "method": "float", "setting": "a", "test": 1.5},
            {**common, "method": "ternary-det", "setting": "b", "test": 1.7},
        ]
    runs = tables._paired_gaps(pd.DataFrame(rows))
    assert list(runs["gap_to_float"]) == pytest.approx([0.0, 0.2, 0.0, 0.2])
    rows += [{**rows[0], "setting": "c", "test": 1.4}]  # a second float rate for seed 0
    runs = tables._paired_gaps(pd.DataFrame(rows))
    assert runs["gap_to_float"].isna().tolist() == [False, True, False, False, False]
