"""The study: grid, profiles, the papermill runner (local and Dask), resume, summaries."""

import json
import math

import pytest

from qrnn import study
from qrnn.cli import main


@pytest.fixture
def data_env(mirror, session_cache, monkeypatch):
    monkeypatch.setenv("QRNN_CACHE", str(session_cache))


def _metrics(results, profile="smoke"):
    out = {}
    for p in sorted((results / profile / "runs").glob("*/run.json")):
        rec = json.loads(p.read_text())
        out[rec["run_id"]] = (
            [{k: v for k, v in e.items() if k != "wall_s"} for e in rec["epochs"]],
            rec["test"],
        )
    return out


def test_grids_cover_the_paper_design():
    cpu = study.grid("cpu")
    main_runs = [r for r in cpu if r.experiment == "main"]
    assert len(main_runs) == 8 * 3  # PTB-char LSTM: method x seed
    assert {r.method for r in main_runs} == {m[0] for m in study.METHODS}
    digits = [r for r in cpu if r.experiment == "digits"]
    assert len(digits) == 2 * 3 * 8 * 5  # split x cell x method x 5 seeds
    assert {r.config.split for r in digits} == {"standard", "speakers"}
    # one parameterization for every method (issue 12): embedding, Glorot init, full text
    assert {(r.config.embed, r.config.init, r.config.train_limit) for r in main_runs} == {
        (32, "glorot", 0)
    }
    assert {r.config.init for r in cpu} == {"glorot"}
    overfit = [r for r in cpu if r.experiment == "overfit"]
    assert {r.method for r in overfit} == set(study.STOCHASTIC_METHODS)
    assert all(r.config.stochastic == (r.method != "float") for r in overfit)
    assert len({r.run_id for r in cpu}) == len(cpu)  # every run distinct
    # the cause experiments change only the method's own fields (issue 14)
    key = {(r.task, r.cell, r.method, r.seed): r.config for r in main_runs + digits}
    base = {(r.task, r.cell, r.seed): r.config for r in main_runs + digits if r.method == "float"}
    for r in cpu:
        if r.experiment in ("scale", "noise", "digits-cause"):
            diff = {
                k for k, v in vars(r.config).items() if vars(base[(r.task, r.cell, r.seed)])[k] != v
            }
            assert diff <= {"scheme", "stochastic", "quantizer_options", "weight_noise"}, diff
    norm = [r for r in cpu if r.experiment == "normalization"]
    assert all(r.config.weight_norm and not r.config.layer_norm for r in norm)
    ln = [r for r in cpu if r.experiment == "layernorm"]
    assert all(r.config.layer_norm and r.cell == "lstm" for r in ln) and len(ln) == 2 * 5 * 3
    # the normalization experiments change nothing else than the normalization; layernorm on
    # PTB runs at the ptb-cells budget, whose LSTM is its twin
    cells = [r for r in cpu if r.experiment == "ptb-cells"]
    assert {r.cell for r in cells} == {"rnn", "gru", "lstm"} and len(cells) == 3 * 8 * 3
    twin = {(r.task, r.cell, r.method, r.seed): r.config for r in cells}
    for r in norm + ln:
        small = r.experiment == "layernorm" and r.task == "ptb-char"
        base_cfg = (twin if small else key)[(r.task, r.cell, r.method, r.seed)]
        diff = {k for k, v in vars(r.config).items() if vars(base_cfg)[k] != v}
        assert diff == ({"weight_norm"} if r in norm else {"layer_norm"})
    paper = study.grid("paper", ["task=ptb-char", "experiment=main"])
    assert {r.config.hidden for r in paper} == {1000}
    assert all(r.config.bptt == 100 and r.config.batch_size == 64 for r in paper)


@pytest.mark.parametrize(
    ("call", "message"),
    [
        (lambda: study.grid("huge"), "unknown profile 'huge'; choose one of smoke, cpu, cpu-v3"),
        (lambda: study.grid("cpu", ["task=imagenet"]), "--only task: unknown imagenet"),
        (lambda: study.grid("cpu", ["cell"]), "malformed filter 'cell'"),
        (lambda: study.grid("cpu", ["colour=red"]), "malformed filter 'colour=red'"),
    ],
)
def test_bad_inputs_are_clear_errors(call, message):
    with pytest.raises(ValueError, match=message.replace("(", r"\(")):
        call()


def test_unwritable_results_folder(tmp_path):
    blocker = tmp_path / "file"
    blocker.write_text("not a folder")
    with pytest.raises(ValueError, match="not writable"):
        study.run_study("smoke", blocker, only=["task=fsdd"], quiet=True)
    assert main(["study", "run", "--profile", "smoke", "--results", str(blocker), "--quiet"]) == 2


def test_smoke_profile_end_to_end(data_env, tmp_path, capsys):
    """grid -> papermill runs -> summary -> results notebook, as CI runs it."""
    assert main(["study", "run", "--profile", "smoke", "--results", str(tmp_path), "--quiet"]) == 0
    runs = study.grid("smoke")
    for r in runs:
        d = tmp_path / "smoke" / "runs" / r.run_id
        assert json.loads((d / "run.json").read_text())["status"] == "completed"
        assert (d / "train.ipynb").exists()  # the executed notebook is kept
    capsys.readouterr()
    assert main(["study", "status", "--profile", "smoke", "--results", str(tmp_path)]) == 0
    assert f"{len(runs)}/{len(runs)}" in capsys.readouterr().out
    frame, summary = study.summarize("smoke", tmp_path)
    assert len(frame) == len(runs)
    assert set(summary["method"]) == {"float", "binary-det", "ternary-stoch"}
    assert (summary["n"] == 1).all()
    assert (tmp_path / "smoke" / "summary.csv").exists()
    floats = frame[frame["method"] == "float"]
    assert (floats["gap_to_float"] == 0).all()
    bpc = frame[frame["metric"] == "bpc"]
    # each record's own no-learning reference: the unigram model of its training text
    assert ((bpc["baseline"] > 3.5) & (bpc["baseline"] < math.log2(50))).all()
    # post-training quantization of the trained float runs: one record per run and method
    made = study.post_training("smoke", tmp_path)
    n_float = sum(1 for r in runs if r.experiment == "main" and r.method == "float")
    assert len(made) == n_float * len(study.PTQ_METHODS)
    assert all(m["schema"] == "qrnn.ptq/1" and m["test"] == m["test"] for m in made)
    ptq = study.summarize_ptq("smoke", tmp_path)
    assert set(ptq["method"]) == set(study.PTQ_METHODS)
    assert len(study.post_training("smoke", tmp_path)) == len(made)  # kept, not redone
    # hardware: packed files round-trip exactly, the integer path follows the float one
    hw = study.hardware("smoke", tmp_path)
    assert len(hw) == sum(1 for r in runs if r.experiment == "main")
    for h in hw:
        assert h["schema"] == "qrnn.hardware/1" and h["unpacked_identical"]
        if h["scheme"] == "float":
            assert h["integer_max_abs_diff"] is None and h["ops_per_step"]["int32_add"] == 0
        else:
            assert h["integer_max_abs_diff"] < 1e-2 and h["ops_per_step"]["int32_add"] > 0
            assert h["size"]["ratio"] > 1
    table = study.summarize_hardware("smoke", tmp_path)
    assert len(table) == len(hw) and (tmp_path / "smoke" / "hardware.csv").exists()
    # a rerun does nothing: every record is recognized
    outcomes = study.run_study("smoke", tmp_path, quiet=True)
    assert all(o["skipped"] for o in outcomes)
    # the results notebook renders the profile
    study.execute_notebook(
        str(study.ROOT / "notebooks" / "results.ipynb"), str(tmp_path / "results.ipynb"),
        parameters={"profile": "smoke", "results_dir": str(tmp_path)}, cwd=str(study.ROOT),
        kernel_name="python3", progress_bar=False,
    )  # fmt: skip


ONLY = ["experiment=main", "task=fsdd", "method=float,ternary-stoch"]


def test_interrupted_study_resumes_with_the_same_summary(data_env, tmp_path):
    seen = []

    def stop_after_first(run, outcome):
        seen.append(run.run_id)
        raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        study.run_study("smoke", tmp_path / "a", only=ONLY, jobs=1, quiet=True,
                        on_result=stop_after_first)  # fmt: skip
    outcomes = study.run_study("smoke", tmp_path / "a", only=ONLY, jobs=1, quiet=True)
    skipped = {o["run_id"] for o in outcomes if o["skipped"]}
    assert set(seen) <= skipped  # finished runs are not redone (a running one may finish)
    study.run_study("smoke", tmp_path / "b", only=ONLY, jobs=1, quiet=True)
    assert _metrics(tmp_path / "a") == _metrics(tmp_path / "b")
    sa = study.summarize("smoke", tmp_path / "a")[1].drop(columns="wall_s_mean")
    sb = study.summarize("smoke", tmp_path / "b")[1].drop(columns="wall_s_mean")
    assert sa.equals(sb)


def test_threads_per_run_must_be_positive(tmp_path):
    with pytest.raises(ValueError, match="threads must be at least 1, got 0"):
        study.run_study("smoke", tmp_path, only=ONLY, jobs=1, threads=0, quiet=True)


def test_cost_sums_finished_runs_and_estimates_the_rest_from_their_group(tmp_path):
    runs = study.grid("cpu")
    main = [r for r in runs if r.experiment == "main"]  # PTB-char LSTM 256, one budget
    for r, wall in zip(main[:2], (100.0, 300.0), strict=True):
        d = study.runs_dir(tmp_path, "cpu") / r.run_id
        d.mkdir(parents=True)
        (d / "run.json").write_text(json.dumps({"status": "completed", "wall_time_s": wall}))
    table = study.cost("cpu", tmp_path, jobs=2).set_index("experiment")
    row = table.loc["main"]
    assert row["finished"] == 2
    assert row["measured_h"] == pytest.approx(400 / 3600)
    # the unfinished runs of the measured group cost its mean
    assert row["remaining_h"] == pytest.approx((len(main) - 2) * 200 / 3600)
    assert row["wall_h"] == pytest.approx((400 + (len(main) - 2) * 200) / 3600 / 2)
    # the scale experiment trains the same model on the same budget: estimated from main
    n_scale = sum(r.experiment == "scale" for r in runs)
    assert table.loc["scale", "remaining_h"] == pytest.approx(n_scale * 200 / 3600)
    # a different budget (digits; the 30-epoch overfitting runs; layer norm's slower loop)
    # cannot be estimated from it: NaN, not 0 and not main's mean
    for exp in ("digits", "overfit", "layernorm"):
        assert math.isnan(table.loc[exp, "remaining_h"]), exp
    assert math.isnan(table.loc["total", "remaining_h"])


def test_dask_executor_gives_the_same_records_as_local(data_env, tmp_path):
    pytest.importorskip("distributed")
    local = study.run_study("smoke", tmp_path / "local", only=ONLY, jobs=2, quiet=True)
    dask = study.run_study("smoke", tmp_path / "dask", only=ONLY, jobs=2, executor="dask",
                           quiet=True)  # fmt: skip
    assert [o["status"] for o in dask] == [o["status"] for o in local] == ["completed"] * 2
    assert _metrics(tmp_path / "dask") == _metrics(tmp_path / "local")


def test_cost_estimates_a_new_budget_from_seconds_per_character(tmp_path):
    """A language model not yet run at its budget is estimated from the seconds per training
    character of finished runs of the same model (here: cpu-v3's short sweep -> its headline)."""
    runs = study.grid("cpu-v3")
    sweep = [r for r in runs if r.experiment.startswith("lr-sweep@")][:2]
    for r in sweep:  # 600 steps of batch 64 x BPTT 100 in 192 s: 5e-5 s per character
        d = study.runs_dir(tmp_path, "cpu-v3") / r.run_id
        d.mkdir(parents=True)
        rec = {"status": "completed", "wall_time_s": 192.0, "epochs": [{"steps": 600}],
               "data": {"sizes": {"train": 5_000_000}}}  # fmt: skip
        (d / "run.json").write_text(json.dumps(rec))
    table = study.cost("cpu-v3", tmp_path).set_index("experiment")
    main = [r for r in runs if r.experiment == "main"]
    per_run = 192.0 / (600 * 64 * 100) * 12 * 5_000_000  # 12 epochs of the whole text
    assert table.loc["main", "remaining_h"] == pytest.approx(len(main) * per_run / 3600)
    assert math.isnan(table.loc["digits-kfold", "remaining_h"])  # no digit run to go by
