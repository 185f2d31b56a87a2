"""The training recipe of study v3: the cosine learning-rate schedule (per step, recorded per
epoch, resumable), per-tensor gradient clipping, and the written convergence rule."""

from __future__ import annotations

import json
import math
import sys
from pathlib import Path

import pytest
import torch
from torch import nn

from qrnn.study.config import LATER_FIELDS, RunConfig, run_id
from qrnn.study.loop import Diverged, clip_gradients_
from qrnn.study.train import convergence, train
from tests.test_train import TINY_LM, _metrics, lm_data

ROOT = Path(__file__).resolve().parent.parent

COSINE = {**TINY_LM, "scheme": "ternary", "lr": 4e-3, "lr_schedule": "cosine", "min_lr": 1e-5,
          "early_stop": 0, "clip_mode": "per-tensor"}  # fmt: skip


def test_cosine_schedule_anneals_from_the_peak_to_min_lr(tmp_path):
    rec = train(RunConfig(**COSINE), tmp_path, quiet=True, data=lm_data())
    e = rec["epochs"]
    steps = e[0]["steps"]  # steps per epoch
    total = steps * COSINE["epochs"]

    def expected(t):
        return 1e-5 + (4e-3 - 1e-5) * 0.5 * (1 + math.cos(math.pi * t / total))

    assert e[0]["lr_start"] == pytest.approx(4e-3)
    for k, entry in enumerate(e, start=1):  # end of epoch k: after k * steps scheduler steps
        assert entry["lr"] == pytest.approx(expected(k * steps), rel=1e-9)
    assert e[-1]["lr"] == pytest.approx(1e-5)
    assert rec["convergence"]["annealed"] and rec["convergence"]["lr_final"] <= 4e-3 / 4


def test_a_killed_cosine_run_resumes_to_the_same_metrics(tmp_path):
    cfg = RunConfig(**{**COSINE, "scheme": "binary", "stochastic": True})
    whole = train(cfg, tmp_path / "whole", quiet=True, data=lm_data())

    def kill(epoch, batch):
        if (epoch, batch) == (2, 4):
            raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        train(cfg, tmp_path / "resumed", quiet=True, callback=kill, data=lm_data())
    resumed = train(cfg, tmp_path / "resumed", quiet=True, data=lm_data())
    assert resumed["resumed_from_epoch"] == 1
    assert _metrics(resumed) == _metrics(whole)  # the lr of every epoch included


def test_plateau_stays_the_default_and_old_run_ids_do_not_move():
    assert LATER_FIELDS["lr_schedule"] == "plateau" and LATER_FIELDS["clip_mode"] == "global"
    old = RunConfig(**TINY_LM)
    assert run_id(old) == run_id(RunConfig(**TINY_LM, lr_schedule="plateau", clip_mode="global"))
    assert run_id(old) != run_id(RunConfig(**TINY_LM, lr_schedule="cosine"))
    assert run_id(old) != run_id(RunConfig(**TINY_LM, clip_mode="per-tensor"))


@pytest.mark.parametrize(("field", "value"), [("lr_schedule", "step"), ("clip_mode", "layer")])
def test_unknown_recipe_values_are_refused_with_the_choices(field, value):
    with pytest.raises(ValueError, match=f"{field}='{value}' is not allowed; choose one of"):
        RunConfig(**{field: value})


def _two_tensors(big: float) -> nn.Module:
    """A model with a small-gradient tensor and one whose gradient is ``big`` per element."""
    m = nn.Module()
    m.small, m.huge = nn.Parameter(torch.zeros(4)), nn.Parameter(torch.zeros(1000))
    m.small.grad = torch.full((4,), 0.1)  # norm 0.2
    m.huge.grad = torch.full((1000,), big)
    return m


def test_per_tensor_clipping_leaves_the_other_tensors_their_step():
    m = _two_tensors(1e23)  # float32 sum of squares overflows, every element is finite
    norm = clip_gradients_(m, 1.0, mode="per-tensor")
    assert norm == pytest.approx(math.sqrt(1000) * 1e23, rel=1e-6)
    assert torch.equal(m.small.grad, torch.full((4,), 0.1))  # below the limit: untouched
    assert torch.linalg.vector_norm(m.huge.grad).item() == pytest.approx(1.0, rel=1e-5)


def test_global_clipping_shrinks_every_tensor_by_the_exploding_one():
    m = _two_tensors(1e23)
    clip_gradients_(m, 1.0, mode="global")
    assert m.small.grad.abs().max().item() < 1e-24  # what froze the float layers in study v2
    assert torch.linalg.vector_norm(m.huge.grad.double()).item() == pytest.approx(1.0, rel=1e-5)


@pytest.mark.parametrize("mode", ["global", "per-tensor"])
def test_a_non_finite_gradient_is_divergence(mode):
    m = _two_tensors(float("inf"))
    with pytest.raises(Diverged, match="non-finite gradient"):
        clip_gradients_(m, 1.0, mode=mode)


def _rec(valid, lrs, best=None, peak=2e-3):
    epochs = [{"epoch": i + 1, "valid_metric": v, "lr": lr} for i, (v, lr) in
              enumerate(zip(valid, lrs, strict=True))]  # fmt: skip
    best = best or min(range(len(valid)), key=valid.__getitem__) + 1
    return {"epochs": epochs, "best_epoch": best, "status": "completed",
            "config": {"lr": peak, "epochs": len(valid)}, "metric": {"name": "bpc"}}  # fmt: skip


@pytest.mark.parametrize(
    ("valid", "lrs", "annealed", "flat"),
    [
        ([2.0, 1.8, 1.7, 1.66, 1.658, 1.657], [2e-3, 1e-3, 5e-4, 2e-4, 5e-5, 1e-5], True, True),
        ([2.0, 1.8, 1.7, 1.65, 1.62, 1.60], [2e-3, 1e-3, 5e-4, 2e-4, 5e-5, 1e-5], True, False),
        ([2.0, 1.8, 1.7, 1.66, 1.655, 1.657], [2e-3] * 6, False, True),  # best before last
        ([2.0, 1.8, 1.7], [2e-3, 1e-3, 1e-5], True, False),  # too few epochs to call flat
    ],
    ids=["converged", "still-falling", "not-annealed", "short"],
)
def test_the_written_convergence_rule(valid, lrs, annealed, flat):
    c = convergence(_rec(valid, lrs))
    assert (c["annealed"], c["flat"], c["converged"]) == (annealed, flat, annealed and flat)
    json.dumps(c)  # goes into run.json


def test_the_v3_sweep_gives_every_method_the_same_recipe_and_five_learning_rates():
    from qrnn import study

    runs = study.grid("cpu-v3", only=["experiment=lr-sweep"])
    methods = {m[0] for m in study.METHODS}
    assert {r.method for r in runs} == methods
    from qrnn.study.grid import V3_SWEEP_LRS, V3_SWEEP_WIDER

    for m in methods:  # >= 3 values spanning >= 4x (issue 26), the shared range for every method
        lrs = sorted(r.config.lr for r in runs if r.method == m)
        assert len(lrs) >= 3 and lrs[-1] / lrs[0] >= 4
        assert lrs == sorted({*V3_SWEEP_LRS, *V3_SWEEP_WIDER.get(m, ())})
    assert len({r.run_id for r in runs}) == len(runs)
    # only the method's own fields and the learning rate differ between the sweep's runs
    for r in runs:
        assert r.experiment == f"lr-sweep@lr={r.config.lr:g}"
        assert (r.config.lr_schedule, r.config.clip_mode, r.config.early_stop) == (
            "cosine", "per-tensor", 0)  # fmt: skip
        assert (r.config.hidden, r.config.embed, r.config.init) == (256, 32, "glorot")
    clip = study.grid("cpu-v3", only=["experiment=clip-global"])
    twins = {(r.method, r.config.lr): r.config for r in runs}
    for r in clip:  # its twin differs in the clipping mode only
        twin = twins[(r.method, r.config.lr)]
        diff = {k for k, v in vars(r.config).items() if vars(twin)[k] != v}
        assert diff == {"clip_mode"}


def test_the_runner_orders_variant_experiments(tmp_path, monkeypatch):
    from qrnn.study import runner

    seen = []

    def fake(run, *args, **kwargs):
        seen.append(run.experiment)
        return {"run_id": run.run_id, "status": "completed", "seconds": 0.0}

    monkeypatch.setattr(runner, "execute_run", fake)
    runner.run_study("cpu-v3", tmp_path, only=["method=float"], jobs=1, quiet=True)
    exps = [r.experiment for r in runner.grid("cpu-v3", ["method=float"])]
    assert sorted(seen) == sorted(exps)
    digits = next(i for i, e in enumerate(exps) if e.startswith("lr-sweep-digits"))
    assert exps.index("clip-global") == digits - 1  # the PTB sweep, clip-global, the digits


def _sweep_record(folder, status, valid):
    from qrnn.study import records

    rec = {k: None for k in records.REQUIRED_KEYS}
    epochs = [dict.fromkeys(records.EPOCH_KEYS, 0.0) | {"valid_metric": v} for v in valid]
    rec |= {"schema": records.SCHEMA, "status": status, "epochs": epochs}
    folder.mkdir(parents=True)
    (folder / "run.json").write_text(json.dumps(rec))


def test_each_method_gets_the_rate_of_its_best_validation_and_edges_are_flagged(tmp_path):
    from qrnn import study
    from qrnn.study.lrsweep import choose_lr, sweep_table

    runs = study.grid("cpu-v3", only=["experiment=lr-sweep"])
    lrs = sorted({r.config.lr for r in runs})
    folder = tmp_path / "cpu-v3" / "runs"
    for r in runs:
        k = lrs.index(r.config.lr)
        if r.method == "float":  # best at the second rate, in an earlier epoch
            valid = [2.0, 1.5 + 0.1 * abs(k - 1), 1.9]
        elif r.method == "binary-stoch":  # the largest rate diverges; the best finite is edge
            valid = [3.0 - 0.1 * k]
        else:
            valid = [2.0 - 0.01 * k]
        status = "diverged" if r.method == "binary-stoch" and k == len(lrs) - 1 else "completed"
        if r.method == "ternary-det" and k == 0:
            continue  # not run yet: no choice for ternary-det
        _sweep_record(folder / r.run_id, status, valid)
    chosen, path = choose_lr("cpu-v3", tmp_path)
    assert chosen[("ptb-char", "lstm", "float")] == lrs[1]
    assert chosen[("ptb-char", "lstm", "binary-stoch")] == lrs[-2]  # diverged counts as worst
    assert ("ptb-char", "lstm", "ternary-det") not in chosen
    table = sweep_table("cpu-v3", tmp_path)
    edge = table[table["chosen"]].set_index("method")["at_edge"]
    assert not edge["float"] and not edge["binary-stoch"] and edge["ternary-stoch"]
    assert path.read_text().startswith("task,cell,method,hidden")


def test_ternary_at_k_times_the_glorot_bound():
    from qrnn import quantizer

    w = torch.randn(64, 32) * 0.3
    w0 = math.sqrt(6 / (64 + 32))
    q = quantizer("ternary", scale="glorot*2")
    assert q.scale(w) == pytest.approx(2 * w0) and q.clip_bound(w) == pytest.approx(2 * w0)
    assert set(q(w).unique().tolist()) <= {-2 * w0, 0.0, 2 * w0} or torch.allclose(
        q(w).abs().max(), torch.tensor(2 * w0))  # fmt: skip
    with pytest.raises(ValueError, match="'glorot\\*K'"):
        quantizer("ternary", scale="glorot*-1")


@pytest.mark.parametrize(
    ("spec", "flags", "noisy"),
    [
        ("binary", {}, {"weight_ih_l0", "weight_hh_l0", "bias_ih_l0", "bias_hh_l0"}),
        ("binary:0.25", {"quantize_input": False, "quantize_bias": False}, {"weight_hh_l0"}),
        ("binary:glorot", {"quantize_recurrent": False, "quantize_bias": False}, {"weight_ih_l0"}),
    ],
)
def test_weight_noise_reaches_the_chosen_tensors_with_the_chosen_variance(spec, flags, noisy):
    from qrnn import QuantLSTM
    from qrnn.layers import noise_quantizer

    layer = QuantLSTM(8, 16, weight_noise=spec, **flags).train()
    layer.generator = torch.Generator().manual_seed(0)
    q = layer.quantized_parameters()
    changed = {n for n, w in q.items() if not torch.equal(w, getattr(layer, n))}
    assert changed == noisy
    fans = layer.param_fans("weight_hh_l0")  # Glorot per gate block
    h = noise_quantizer(spec).scale(layer.weight_hh_l0, *fans)
    assert h == {"binary": 1.0, "binary:0.25": 0.25}.get(spec, math.sqrt(6 / sum(fans)))
    with pytest.raises(ValueError, match="weight_noise='binary:-2' is not allowed"):
        RunConfig(weight_noise="binary:-2")


def test_derived_methods_take_their_base_methods_learning_rate():
    import qrnn.study.grid  # noqa: F401  (qrnn.study.grid is also a function's name)

    g = sys.modules["qrnn.study.grid"]
    assert g.base_method("ternary-stoch-2w0") == "ternary-stoch"
    assert g.base_method("ternary-det") == "ternary-det"
    assert g.base_method("float-dropout-0.3") == "float"
    assert g.base_method("pow2-stoch") == "pow2-ternary"
    assert g.base_method("exponential-stoch") == "exponential-stoch"


def test_the_chosen_learning_rates_are_the_sweeps_choice():
    """grid.V3_LR, the table the headline uses, equals what choose-lr wrote from the sweep."""
    import pandas as pd

    import qrnn.study.grid  # noqa: F401  (qrnn.study.grid is also a function's name)

    g = sys.modules["qrnn.study.grid"]
    path = g.ROOT / "results" / "cpu-v3" / "lr_choice.csv"
    if not path.exists():
        assert not g.V3_LR  # nothing chosen before the sweep is committed
        return
    t = pd.read_csv(path)
    final = t["chosen"] & ~t["at_edge"]  # an edge choice waits for the wider range
    chosen = {(r.task, r.cell, r.method): r.lr for r in t[final].itertuples()}
    assert chosen == g.V3_LR


def test_the_paper_profile_adopts_the_v3_recipe():
    from qrnn import study

    for r in study.grid("paper", ["task=ptb-char"]):
        assert (r.config.lr_schedule, r.config.clip_mode, r.config.early_stop) == (
            "cosine", "per-tensor", 0)  # fmt: skip


def test_provenance_lists_records_from_dirty_or_foreign_revisions(tmp_path):
    import subprocess

    from qrnn.study.provenance import provenance

    head = subprocess.run(["git", "rev-parse", "HEAD"], capture_output=True, text=True,
                          cwd=ROOT).stdout.strip()  # fmt: skip
    runs = tmp_path / "p" / "runs"
    cases = {"clean": {"commit": head, "dirty": False}, "dirty": {"commit": head, "dirty": True},
             "foreign": {"commit": "f" * 40, "dirty": False}, "none": {}}  # fmt: skip
    for name, git in cases.items():
        (runs / name).mkdir(parents=True)
        rec = {"status": "completed", "environment": {"git": git}}
        (runs / name / "run.json").write_text(json.dumps(rec))
    (runs / "running").mkdir()
    (runs / "running" / "run.json").write_text(json.dumps({"status": "running"}))
    found = dict(provenance("p", tmp_path, root=ROOT))
    assert set(found) == {"dirty", "foreign", "none"}
    assert "local changes" in found["dirty"] and "no commit" in found["none"]


def test_the_v3_records_come_from_clean_ancestors_of_main():
    """Issue 26 item 8: every finished record of results/cpu-v3 was made by a committed
    revision that is an ancestor of HEAD, with no local changes."""
    from qrnn.study.provenance import provenance

    if not (ROOT / "results" / "cpu-v3" / "runs").is_dir():
        pytest.skip("no cpu-v3 records committed yet")
    bad = [(r, why) for r, why in provenance("cpu-v3", ROOT / "results", root=ROOT)
           if "cannot be checked" not in why]  # fmt: skip
    assert not bad, bad
