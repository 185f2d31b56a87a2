"""The training rules of the study protocol on injected synthetic data (no mirror needed):
divergence only on the training loss, the learned flag, zero shares at step 0, the packed
model kept with the run, a corrupt checkpoint set aside (issues 12 and 16)."""

from __future__ import annotations

import math

import pytest
import torch

from qrnn.study import records
from qrnn.study.loop import Diverged, LossMonitor, clip_gradients_
from qrnn.study.outcome import learned
from qrnn.study.runs import load_model
from qrnn.study.train import RunConfig, RunData, evaluate, run_id, train

V = 8
SMALL = dict(task="ptb-char", hidden=16, embed=8, bptt=10, batch_size=4, threads=1,
             early_stop=0, lr=1e-2)  # fmt: skip


def pattern_data(n=4000, valid_random=False, seed=0) -> RunData:
    """A cyclic text 0 1 2 ... V-1 (learnable); the validation text random if asked."""
    g = torch.Generator().manual_seed(seed)
    cyc = torch.arange(n) % V
    valid = torch.randint(0, V, (n // 2,), generator=g) if valid_random else cyc[: n // 2]
    return RunData(cyc, valid, cyc[: n // 2].clone(), V, {"synthetic": True})


def test_monitor_rules():
    m = LossMonitor(limit=4.0)
    with pytest.raises(Diverged, match="non-finite"):
        m.update(math.nan, 3)
    m = LossMonitor(limit=4.0)
    for i in range(20):
        m.update(2.0, i)
    m.update(50.0, 20)  # one spike moves the running mean by (50 - 2) / 50 < 2: no stop
    assert m.value < 4.0
    with pytest.raises(Diverged, match="running training loss") as e:
        for i in range(21, 200):
            m.update(10.0, i)  # a sustained explosion does
    assert e.value.batch > 21


def test_rising_validation_loss_does_not_stop_a_run(tmp_path):
    # the model learns the cycle by heart and becomes over-confident on a random validation
    # text: validation loss far above 2 x uniform, training loss near zero -> completed
    cfg = RunConfig(**SMALL, epochs=4)
    rec = train(cfg, tmp_path, quiet=True, data=pattern_data(valid_random=True))
    limit = cfg.diverge_factor * math.log(V)
    assert max(e["valid_loss"] for e in rec["epochs"]) > limit  # the old rule would stop it
    assert rec["epochs"][-1]["train_loss"] < 0.5
    assert rec["status"] == "completed" and rec["test"] is not None
    assert rec["divergence_rule"].startswith("non-finite training loss")
    for e in rec["epochs"]:  # the gradient norm before clipping, per epoch
        g = e["grad_norm"]
        assert 0 < g["median"] <= g["max"] and g["float32_overflow"] == 0


def test_exploding_training_loss_diverges(tmp_path):
    # binary output weights with H = 1000 blow the logits up
    cfg = RunConfig(**SMALL, epochs=2, scheme="binary", quantizer_options={"scale": 1000.0},
                    quantize_io=True)  # fmt: skip
    rec = train(cfg, tmp_path, quiet=True, data=pattern_data())
    assert rec["status"] == "diverged" and rec["diverged"]["epoch"] == 1
    assert rec["test"] is None and rec["learned"] is None  # no checkpoint to test


def test_learned_flag_and_baseline(tmp_path):
    rec = train(RunConfig(**SMALL, epochs=2), tmp_path, quiet=True, data=pattern_data())
    assert rec["baseline"] == {"name": "unigram", "metric": pytest.approx(math.log2(V), abs=1e-3)}
    assert rec["learned"] is True and rec["test"]["metric"] < 0.5
    assert learned({"test": {"metric": 3.1}, "baseline": {"metric": 3.0}}) is False
    conv = rec["convergence"]
    assert conv["epochs_run"] == 2 and conv["still_improving"] == (rec["best_epoch"] == 2)


@pytest.mark.parametrize(
    ("method", "zero"),
    [({"scheme": "float"}, 0.0), ({"scheme": "binary"}, 0.0), ({"scheme": "exponential"}, 0.0),
     ({"scheme": "ternary"}, 0.5), ({"scheme": "pow2-ternary"}, 1.0)],
)  # fmt: skip
def test_zero_share_at_step_0_per_method(method, zero):
    # Glorot-uniform U(-a, a) per gate block; ternary's threshold is a/2 (half the weights
    # round to 0), pow2-ternary's 0.25 lies above a at these fans (all zero)
    from qrnn.study.assemble import build_model, weight_stats

    torch.manual_seed(0)
    cfg = RunConfig(task="ptb-char", hidden=64, embed=32, init="glorot", **method)
    stats = weight_stats(build_model(cfg, 50))
    for name in ("rnn.weight_ih_l0", "rnn.weight_hh_l0"):
        assert stats[name]["zero"] == pytest.approx(zero, abs=0.03)
        assert stats[name]["quantized"] == (method["scheme"] != "float")
    assert stats["rnn.bias_ih_l0"]["zero"] == (0.0 if method["scheme"] in ("binary",
                                               "exponential") else 1.0)  # fmt: skip


def test_packed_model_is_kept_and_reproduces_the_test_metric(tmp_path):
    cfg = RunConfig(**SMALL, epochs=2, scheme="ternary", stochastic=True)
    data = pattern_data()
    rec = train(cfg, tmp_path, quiet=True, data=data)
    run = tmp_path / rec["run_id"]
    packed = rec["packed"]
    assert packed["file"] == "model.npz" and (run / "model.npz").exists()
    import hashlib

    assert hashlib.sha256((run / "model.npz").read_bytes()).hexdigest() == packed["sha256"]
    assert packed["bits"] == [2] and packed["test_metric"] == rec["test"]["metric"]
    (run / "model.pt").unlink()  # as committed: only the packed file
    model, _ = load_model(run)
    assert evaluate(model, data.test, cfg)["metric"] == pytest.approx(rec["test"]["metric"])


def test_truncated_checkpoint_is_set_aside_and_the_run_completes(tmp_path):
    cfg = RunConfig(**SMALL, epochs=3)
    data = pattern_data()
    whole = train(cfg, tmp_path / "whole", quiet=True, data=data)

    def kill(epoch, batch):
        if epoch == 2 and batch == 5:
            raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        train(cfg, tmp_path / "cut", quiet=True, data=data, callback=kill)
    run = tmp_path / "cut" / run_id(cfg)
    ck = run / "checkpoint.pt"
    ck.write_bytes(ck.read_bytes()[:100])  # a copy cut short
    with pytest.warns(UserWarning, match="set aside"):
        rec = train(cfg, tmp_path / "cut", quiet=True, data=data)
    assert [p.name.startswith("checkpoint.pt.corrupt-") for p in run.iterdir()].count(True) == 1
    assert rec["status"] == "completed" and rec["test"] == whole["test"]
    assert records.load_record(run)["status"] == "completed"


def test_init_table_matches_the_records_step_0(tmp_path):
    """``qrnn study init-table`` rebuilds each method's model as training does: its zero
    shares and norms equal those the run record stores at step 0."""
    from qrnn import study

    table = study.init_table("smoke", tmp_path)
    run = next(
        r for r in study.grid("smoke") if r.task == "ptb-char" and r.method == "ternary-stoch"
    )
    g = torch.Generator().manual_seed(0)
    stream = torch.randint(0, 50, (4000,), generator=g)
    data = RunData(stream, stream[:2000], stream[:2000], 50, {"synthetic": True})
    cfg = RunConfig(**{**vars(run.config), "epochs": 1})
    rec = train(cfg, tmp_path / "runs", quiet=True, data=data)
    mine = table[(table["experiment"] == "main") & (table["method"] == "ternary-stoch")
                 & (table["task"] == "ptb-char")].set_index("tensor")  # fmt: skip
    for name, st in rec["weights_init"].items():
        row = mine.loc[name.split(".")[-1]]
        assert row["zero"] == st["zero"] and row["rms"] == pytest.approx(st["rms"])
    assert (tmp_path / "smoke" / "init.csv").exists()


def _with_grads(*grads):
    model = torch.nn.Module()
    model.ps = torch.nn.ParameterList(torch.nn.Parameter(torch.zeros_like(g)) for g in grads)
    for p, g in zip(model.ps, grads, strict=True):
        p.grad = g.clone()
    return model


def test_clipping_matches_torch_while_the_norm_is_finite():
    g = torch.Generator().manual_seed(0)
    grads = [torch.randn(30, 7, generator=g) * 5, torch.randn(11, generator=g)]
    ours, ref = _with_grads(*grads), _with_grads(*grads)
    norm = clip_gradients_(ours, 1.0)
    want = torch.nn.utils.clip_grad_norm_(ref.parameters(), 1.0)
    assert norm == pytest.approx(float(want))
    for a, b in zip(ours.parameters(), ref.parameters(), strict=True):
        assert torch.equal(a.grad, b.grad)


def test_clipping_survives_a_float32_norm_overflow():
    # every element finite, the float32 sum of squares is not (binary LSTMs with H = 1 get
    # elements of 1e23): torch's clip would scale every gradient, the output layer's too, by 0
    big = torch.full((1000,), 1e20)
    small = torch.tensor([3.0, -4.0])
    model = _with_grads(big, small)
    assert not torch.isfinite(torch.nn.utils.get_total_norm([big, small]))
    norm = clip_gradients_(model, 1.0)
    assert norm == pytest.approx(math.sqrt(1000) * 1e20, rel=1e-6)
    clipped = [p.grad.double() for p in model.parameters()]
    total = math.sqrt(sum(float(c.pow(2).sum()) for c in clipped))
    assert total == pytest.approx(1.0, rel=1e-5)  # scaled to max_norm, not to zero
    assert (clipped[0] > 0).all() and clipped[1][0] > 0 > clipped[1][1]  # direction kept


def test_a_non_finite_gradient_diverges():
    model = _with_grads(torch.tensor([1.0, math.inf]))
    with pytest.raises(Diverged, match="non-finite gradient"):
        clip_gradients_(model, 1.0, batch=7)


def test_a_diverged_record_says_whether_its_loss_was_still_falling():
    from qrnn.study.tables import diverged_trend

    def rec(status, trail):
        return {"status": status, "diverged": {"recent_losses": trail} if trail else None}

    falling = [3.0 - 0.05 * i for i in range(30)] + ["inf"]  # a finite, falling loss, then inf
    assert diverged_trend(rec("diverged", falling)) == pytest.approx(-1.0)
    rising = [2.0 + 0.1 * i for i in range(12)]
    assert diverged_trend(rec("diverged", rising)) == pytest.approx(0.8)
    flat = [2.3] * 12
    assert diverged_trend(rec("diverged", flat)) == 0.0
    assert math.isnan(diverged_trend(rec("diverged", [2.3] * 5)))  # too short to say
    assert math.isnan(diverged_trend(rec("diverged", None)))  # written before trails
    assert math.isnan(diverged_trend(rec("completed", rising)))


def test_the_monitor_keeps_the_last_losses_for_the_record():
    m = LossMonitor(limit=100.0)
    for i in range(80):
        m.update(float(i), batch=i)
    trail = m.trail()
    assert trail["recent_losses"] == [float(i) for i in range(30, 80)]  # the last 50
    with pytest.raises(Diverged, match="non-finite training loss"):
        m.update(math.nan, batch=80)
    assert m.trail()["recent_losses"][-1] == "nan"  # kept, as text (JSON has no NaN)
