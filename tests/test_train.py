"""Training engine (tiny settings): determinism, resume, divergence and failure on injected
synthetic data (``train(cfg, data=...)``, no mirror needed); the record's contents on the real
data."""

import json
import math

import pytest
import torch

from qrnn.data import SpeechSplit
from qrnn.study import records
from qrnn.study.loop import EMA_BATCHES
from qrnn.study.runs import load_model
from qrnn.study.train import RunConfig, RunData, run_id, train

TINY_LM = dict(
    task="ptb-char", hidden=16, epochs=3, bptt=20, batch_size=8, train_limit=6000,
    eval_limit=2000, threads=1,
)  # fmt: skip
TINY_FSDD = dict(
    task="fsdd", cell="gru", hidden=16, epochs=3, batch_size=16, train_limit=120, eval_limit=40,
    threads=1,
)  # fmt: skip


@pytest.fixture
def data_env(mirror, session_cache, monkeypatch):
    monkeypatch.setenv("QRNN_CACHE", str(session_cache))  # features computed once per session


def lm_data(n: int = 6000, vocab: int = 50, seed: int = 0) -> RunData:
    """A text over ``vocab`` symbols where each symbol mostly follows from the one before."""
    g = torch.Generator().manual_seed(seed)
    noise = torch.randint(0, vocab, (n,), generator=g)
    keep = torch.rand(n, generator=g) < 0.7
    x = torch.empty(n, dtype=torch.long)
    x[0] = 0
    for i in range(1, n):
        x[i] = (x[i - 1] * 7 + 3) % vocab if keep[i] else noise[i]
    return RunData(
        x, x[: n // 3].clone(), x[n // 3 : 2 * n // 3].clone(), vocab, {"synthetic": True}
    )


def digit_data(sizes=(120, 40, 40), n_features: int = 13, seed: int = 0) -> RunData:
    """Recordings of 6-14 frames whose mean depends on the digit."""
    g = torch.Generator().manual_seed(seed)

    def split(n):
        labels = torch.arange(n) % 10
        lengths = torch.randint(6, 15, (n,), generator=g)
        feats = [torch.randn(int(t), n_features, generator=g) + 0.3 * int(y)
                 for t, y in zip(lengths, labels, strict=True)]  # fmt: skip
        return SpeechSplit(feats, labels, ["s"] * n, [f"{i}.wav" for i in range(n)])

    return RunData(*(split(n) for n in sizes), n_features, {"synthetic": True})


def data_for(cfg: RunConfig) -> RunData:
    return digit_data() if cfg.task == "fsdd" else lm_data()


def _metrics(rec):
    return [{k: v for k, v in e.items() if k != "wall_s"} for e in rec["epochs"]], rec["test"]


@pytest.mark.parametrize(
    "kw",
    [
        {**TINY_LM, "scheme": "ternary", "stochastic": True},
        {**TINY_FSDD, "scheme": "exponential", "stochastic": True, "input_norm": "batch"},
    ],
    ids=["ptb-char", "fsdd"],
)
def test_same_seed_gives_identical_metrics(tmp_path, kw):
    cfg = RunConfig(**kw)
    a = train(cfg, tmp_path / "a", quiet=True, data=data_for(cfg))
    b = train(cfg, tmp_path / "b", quiet=True, data=data_for(cfg))
    assert a["status"] == "completed"
    assert _metrics(a) == _metrics(b)
    c = train(RunConfig(**{**kw, "seed": 1}), tmp_path / "c", quiet=True, data=data_for(cfg))
    assert _metrics(c) != _metrics(a)


@pytest.mark.parametrize(
    ("kw", "at"),
    [
        ({**TINY_LM, "scheme": "binary", "stochastic": True, "dropout": 0.1}, (2, 5)),
        ({**TINY_FSDD, "scheme": "ternary", "stochastic": True}, (3, 2)),
    ],
    ids=["ptb-char", "fsdd"],
)
def test_killed_run_resumes_to_the_same_metrics(tmp_path, kw, at):
    cfg = RunConfig(**kw)
    whole = train(cfg, tmp_path / "whole", quiet=True, data=data_for(cfg))

    def kill(epoch, batch):
        if (epoch, batch) == at:
            raise KeyboardInterrupt  # like Ctrl-C or a killed process: nothing is recorded

    with pytest.raises(KeyboardInterrupt):
        train(cfg, tmp_path / "resumed", quiet=True, callback=kill, data=data_for(cfg))
    run_dir = tmp_path / "resumed" / run_id(cfg)
    assert (run_dir / "checkpoint.pt").exists()
    partial = json.loads((run_dir / "run.json").read_text())
    assert partial["status"] == "running" and len(partial["epochs"]) == at[0] - 1
    resumed = train(cfg, tmp_path / "resumed", quiet=True, data=data_for(cfg))
    assert resumed["resumed_from_epoch"] == at[0] - 1
    assert _metrics(resumed) == _metrics(whole)
    assert not (run_dir / "checkpoint.pt").exists()  # finished: only record + best weights


def test_divergence_is_recorded_not_raised(tmp_path):
    # binary weights with H = 1000 on the output layer blow the logits up: a real failure
    cfg = RunConfig(**TINY_LM, scheme="binary", quantizer_options={"scale": 1000.0},
                    quantize_io=True)  # fmt: skip
    rec = train(cfg, tmp_path, quiet=True, data=lm_data())
    assert rec["status"] == "diverged"
    assert rec["diverged"]["epoch"] == 1 and "uniform" in rec["diverged"]["reason"]
    assert rec["test"] is None
    # the record keeps the training losses that led there: every one finite here, and their
    # running mean (the rule's statistic) above the limit
    trail, limit = rec["diverged"]["recent_losses"], rec["uniform_loss"] * cfg.diverge_factor
    assert 1 <= len(trail) <= EMA_BATCHES and all(math.isfinite(v) for v in trail)
    assert rec["diverged"]["running_loss"] > limit
    assert len(trail) == rec["diverged"]["batch"] + 1  # stopped in the first epoch
    assert records.load_record(tmp_path / rec["run_id"])["status"] == "diverged"
    # a recorded result is not redone
    calls = []
    again = train(cfg, tmp_path, quiet=True, callback=lambda e, b: calls.append(b), data=lm_data())
    assert again == rec and calls == []


def test_failure_is_recorded_then_raised(tmp_path):
    cfg = RunConfig(**TINY_LM)

    def boom(epoch, batch):
        raise RuntimeError("disk on fire")

    with pytest.raises(RuntimeError, match="disk on fire"):
        train(cfg, tmp_path, quiet=True, callback=boom, data=lm_data())
    rec = records.load_record(tmp_path / run_id(cfg))
    assert rec["status"] == "failed" and "disk on fire" in rec["error"]


def test_record_schema_and_contents(data_env, tmp_path):
    cfg = RunConfig(**TINY_LM, scheme="pow2-ternary")
    rec = train(cfg, tmp_path, quiet=True, invocation={"argv": ["test"]})
    assert records.validate(rec) == []
    on_disk = records.load_record(tmp_path / rec["run_id"])
    assert on_disk == json.loads(json.dumps(rec))
    assert rec["config"] == cfg.resolved()
    assert rec["config"]["quantizer_options"] == {
        "integer_bits": 0, "fractional_bits": 1, "clip": "grid"
    }  # fmt: skip
    assert rec["metric"]["name"] == "bpc"
    assert len(rec["epochs"]) == 3 and rec["best_epoch"] in (1, 2, 3)
    best = rec["epochs"][rec["best_epoch"] - 1]["valid_metric"]
    assert best == min(e["valid_metric"] for e in rec["epochs"])
    assert rec["test"]["metric"] == pytest.approx(rec["test"]["loss"] / 0.6931471805599453)
    t = rec["model"]["tensors"]
    assert t["rnn.weight_hh_l0"] == {"shape": [64, 16], "scheme": "pow2-ternary", "bits": 2,
                                     "quantized": True}  # fmt: skip
    assert t["out.weight"]["bits"] == 32  # output layer stays float by default
    assert rec["data"]["vocab_size"] == 50 and rec["data"]["used_sizes"]["train"] == 6000
    assert set(rec["seeds"]) == {"seed", "init", "data", "quant"}
    env = rec["environment"]
    assert env["torch"].startswith("2.13.0") and env["threads"] == 1
    assert set(env["git"]) == {"commit", "dirty"}
    assert rec["invocation"] == {"argv": ["test"]}
    assert rec["wall_time_s"] > 0
    # the saved best model reproduces the recorded test metric
    from qrnn.study.train import evaluate, load_data

    model, _ = load_model(tmp_path / rec["run_id"])
    assert evaluate(model, load_data(cfg).test, cfg) == pytest.approx(rec["test"])


def test_run_id_is_stable():
    assert run_id(RunConfig()) == run_id(RunConfig(device="cpu", threads=2))  # execution only
    assert run_id(RunConfig(scheme="ternary")) == run_id(
        RunConfig(scheme="ternary", quantizer_options={"scale": "glorot"})
    )  # defaults resolved
    assert run_id(RunConfig(seed=1)) != run_id(RunConfig(seed=2))
    assert run_id(RunConfig(scheme="binary", stochastic=True)).startswith(
        "ptb-char_lstm_binary-stoch_"
    )
    # pinned: changing how ids are computed must be deliberate (old records would be redone)
    assert run_id(RunConfig()) == PINNED_DEFAULT_ID


PINNED_DEFAULT_ID = "ptb-char_lstm_float_049fde16d166"


@pytest.mark.parametrize(
    ("kw", "message"),
    [
        ({"task": "imagenet"}, "task='imagenet' is not allowed; choose one of ptb-char"),
        ({"cell": "tcn"}, "choose one of rnn, gru, lstm"),
        ({"hidden": 0}, "hidden=0 is not allowed; it must be an integer >= 1"),
        ({"lr": -1.0}, "lr=-1.0 is not allowed"),
        ({"scheme": "float", "stochastic": True}, "stochastic=True is not allowed"),
        ({"scheme": "binary", "quantizer_options": {"bits": 1}}, "unknown option"),
        ({"bidirectional": True}, "only allowed for task 'fsdd'"),
        ({"device": "tpu"}, "device='tpu' is not allowed"),
        ({"dropout": 1.5}, "dropout=1.5 is not allowed"),
    ],
)
def test_bad_config_is_a_clear_error(kw, message):
    with pytest.raises(ValueError, match=message.replace("(", r"\(").replace(")", r"\)")):
        RunConfig(**kw)


def test_remeasure_packed_restores_an_exact_reload_and_keeps_the_old_value(data_env, tmp_path):
    from qrnn.study.train import remeasure_packed

    cfg = RunConfig(**TINY_LM, scheme="binary", quantizer_options={"scale": "rms"})
    rec = train(cfg, tmp_path, quiet=True)
    run = tmp_path / rec["run_id"]
    assert rec["packed"]["test_metric"] == rec["test"]["metric"]  # rms reload is exact now
    stale = json.loads((run / "run.json").read_text())
    stale["packed"]["test_metric"] += 1e-8  # a reload measured by an older quantizer
    records.atomic_write_json(run / "run.json", stale)
    packed = remeasure_packed(run)
    after = records.load_record(run)
    assert after["packed"]["test_metric"] == rec["test"]["metric"] == packed["test_metric"]
    assert after["packed"]["remeasured"]["before"] == rec["test"]["metric"] + 1e-8
    (run / "model.npz").write_bytes(b"not the committed file")
    with pytest.raises(ValueError, match="does not match the sha256"):
        remeasure_packed(run)
