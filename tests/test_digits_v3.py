"""Study v3 on the spoken digits (issue 26, items 2, 5, 7): the ``fold0`` .. ``fold9`` splits
(exact partition, fold 0 = the standard test set, normalization from the fold's training
recordings), a run on a fold, the tables pooling folds like seeds, and the cpu-v3 digits grid
(sweep, dose-response, k-fold) with each method at its base method's chosen rate."""

from __future__ import annotations

import hashlib
import json
import sys
from collections import Counter

import pytest
import torch

import qrnn.data as qd
import qrnn.study.grid  # noqa: F401  (qrnn.study.grid is also a function's name)
from qrnn.study.config import RunConfig, run_id
from qrnn.study.tables import config_keys
from qrnn.study.train import RunData, train
from tests.test_data_speech import wav_bytes
from tests.test_recipe import _sweep_record

g = sys.modules["qrnn.study.grid"]
FOLDS = [f"fold{f}" for f in range(10)]
INDICES = (0, 3, 7, 10, 18, 20, 26, 34, 38, 44, 49)  # every fold holds one, fold 0 two
TINY = dict(task="fsdd", cell="gru", hidden=8, epochs=1, batch_size=16, threads=1)


def _fold_of(name: str) -> int:
    return int(name.removesuffix(".wav").split("_")[2]) * 10 // 50


# ------------------------------------------------------------------------------ the splits
@pytest.fixture
def spread_fsdd(tmp_path, monkeypatch):
    """A mirror of 2 speakers x 10 digits x :data:`INDICES`, its manifest and cache folder."""
    monkeypatch.delenv("QRNN_DATA", raising=False)
    rec = tmp_path / "mirror" / "fsdd" / "recordings"
    rec.mkdir(parents=True)
    lines = []
    for s, speaker in enumerate(("alice", "bob")):
        for d in range(10):
            for i in INDICES:
                name, data = f"{d}_{speaker}_{i}.wav", wav_bytes(d, s, i)
                (rec / name).write_bytes(data)
                lines.append(f"{hashlib.sha256(data).hexdigest()}  fsdd/recordings/{name}\n")
    kw = {"root": tmp_path / "mirror", "cache_dir": tmp_path / "cache", "progress": False}
    return {**kw, "manifest": "".join(lines)}


def test_other_splits_are_refused_in_one_line_naming_the_allowed(spread_fsdd):
    for bad in ("fold10", "fold", "fold-1", "kfold"):
        with pytest.raises(ValueError, match="choose one of standard, speakers, fold0,") as e:
            RunConfig(task="fsdd", split=bad)
        assert "\n" not in str(e.value) and "fold9" in str(e.value)
    with pytest.raises(qd.UnknownDatasetError, match="use standard, speakers, fold0, "):
        qd.load_fsdd("fold10", **spread_fsdd)


def test_the_folds_partition_the_recordings_and_fold0_tests_the_standard_test_set(spread_fsdd):
    tested = Counter()
    for f, split in enumerate(FOLDS):
        d = qd.load_fsdd(split, **spread_fsdd)
        parts = {k: set(getattr(d, k).names) for k in ("train", "valid", "test")}
        assert sum(map(len, parts.values())) == len(set().union(*parts.values())) == 220
        assert {_fold_of(n) for n in parts["test"]} == {f}
        assert {_fold_of(n) for n in parts["valid"]} == {(f + 1) % 10}
        tested.update(parts["test"])
        frames = torch.cat(d.train.features)  # normalized on this fold's training recordings
        assert frames.mean(0).abs().max() < 1e-3 and (frames.std(0) - 1).abs().max() < 1e-3
        assert d.stats()["split"] == split
    assert len(tested) == 220 and set(tested.values()) == {1}  # each recording tested once
    standard = qd.load_fsdd("standard", **spread_fsdd)
    assert qd.load_fsdd("fold0", **spread_fsdd).test.names == standard.test.names


def test_a_run_trains_on_a_fold(spread_fsdd, tmp_path):
    d = qd.load_fsdd("fold2", **spread_fsdd)
    data = RunData(d.train, d.valid, d.test, d.n_features, d.stats())
    rec = train(RunConfig(**TINY, split="fold2"), tmp_path / "runs", quiet=True, data=data)
    assert rec["status"] == "completed" and rec["config"]["split"] == "fold2"
    assert rec["data"]["splits"]["test"]["count"] == 20 and rec["data"]["split"] == "fold2"


def test_the_real_folds(mirror, session_cache, monkeypatch, tmp_path):
    """The 3,000 recordings: 2,400 / 300 / 300 per fold, each tested once, fold 0 = standard;
    a one-epoch run on a fold through the loader the study uses."""
    monkeypatch.setenv("QRNN_CACHE", str(session_cache))  # features computed once per session
    tested = Counter()
    for split in FOLDS:
        d = qd.load_fsdd(split, root=mirror, progress=False)
        assert (len(d.train), len(d.valid), len(d.test)) == (2400, 300, 300)
        assert d.stats()["splits"]["test"]["class_counts"] == [30] * 10
        tested.update(d.test.names)
    assert len(tested) == 3000 and set(tested.values()) == {1}
    standard = qd.load_fsdd("standard", root=mirror, progress=False)
    assert qd.load_fsdd("fold0", root=mirror, progress=False).test.names == standard.test.names
    cfg = RunConfig(**TINY, split="fold7", train_limit=64, eval_limit=32)
    rec = train(cfg, tmp_path, quiet=True, data_root=str(mirror))
    assert rec["status"] == "completed" and rec["data"]["split"] == "fold7"
    json.dumps(rec["data"])


def test_tables_pool_the_folds_like_seeds():
    cfgs = [RunConfig(task="fsdd", split=s, seed=f) for f, s in enumerate(FOLDS)]
    assert len({config_keys(c.resolved())["setting"] for c in cfgs}) == 1
    assert len({run_id(c) for c in cfgs}) == 10
    standard = config_keys(RunConfig(task="fsdd").resolved())["setting"]
    assert config_keys(cfgs[0].resolved())["setting"] != standard


# ------------------------------------------------------------------------------ the grid
METHODS = tuple(m[0] for m in g.METHODS)


@pytest.fixture
def digit_rates(monkeypatch):
    """Every digit group decided, each at a rate of its own (to see which one a run takes)."""
    rates = {("fsdd", c, m): 1e-3 * (1 + i + 10 * j) for j, c in enumerate(g.CELLS)
             for i, m in enumerate(METHODS)}  # fmt: skip
    monkeypatch.setattr(g, "V3_LR", {**g.V3_LR, **rates})
    return rates


def _runs(name: str):
    return [r for r in g.grid("cpu-v3") if r.experiment.split("@")[0] == name]


def test_the_digit_experiments_wait_for_their_rates(monkeypatch):
    monkeypatch.setattr(g, "V3_LR", {})
    names = {r.experiment.split("@")[0] for r in g.grid("cpu-v3")}
    assert "lr-sweep-digits" in names and not {"digits-kfold", "noise-dose-digits"} & names


def test_the_digits_sweep(digit_rates):
    runs = _runs("lr-sweep-digits")
    lrs = sorted(g.V3_DIGITS_LRS)
    assert len(lrs) >= 4 and lrs[-1] / lrs[0] >= 4 and lrs[0] < 3e-3 < lrs[-1]
    for cell in g.CELLS:  # the shared range for every group, wider where a choice hit its top
        for m in METHODS:
            own = sorted(r.config.lr for r in runs if (r.cell, r.method) == (cell, m))
            assert own == sorted({*lrs, *g.V3_DIGITS_WIDER.get((cell, m), ())})
    assert len({r.run_id for r in runs}) == len(runs)
    assert {(r.cell, r.method) for r in runs} == {(c, m) for c in g.CELLS for m in METHODS}
    for r in runs:
        c = r.config
        assert r.experiment == f"lr-sweep-digits@lr={c.lr:g}"
        assert (r.task, c.split, r.seed) == ("fsdd", "standard", 0)
        assert (c.lr_schedule, c.min_lr, c.clip_mode, c.early_stop) == (
            "cosine", 1e-5, "per-tensor", 0)  # fmt: skip
        assert (c.hidden, c.epochs, c.batch_size, c.input_norm, c.init) == (
            64, 15, 32, "batch", "glorot")  # fmt: skip


def test_the_kfold_experiment_uses_every_fold_once_per_group(digit_rates):
    runs = _runs("digits-kfold")
    assert len(runs) == 3 * 8 * 10 == len({r.run_id for r in runs})
    per_group = Counter((r.cell, r.method, r.config.split) for r in runs)
    assert set(per_group.values()) == {1} and len(per_group) == 240
    for r in runs:
        assert r.config.split == f"fold{r.seed}" and r.task == "fsdd"
        assert r.config.lr == digit_rates[("fsdd", r.cell, r.method)]
        assert (r.config.lr_schedule, r.config.hidden, r.config.epochs) == ("cosine", 64, 15)
    # one group per cell and method in the tables, over the 10 folds
    keys = {(r.experiment, r.task, r.cell, r.method, config_keys(r.config.resolved())["setting"])
            for r in runs}  # fmt: skip
    assert len(keys) == 24


def test_the_digits_dose_response_takes_its_base_methods_rate(digit_rates):
    runs = _runs("noise-dose-digits")
    doses = {"float-noise-binary-glorot", "float-noise-binary-0.25", "float-noise-binary-0.5"}
    methods = {"float", "binary-stoch", "float-noise-binary", "float-noise-binary-rec",
               "float-noise-binary-in", *doses}  # fmt: skip
    assert {r.method for r in runs} == methods and len(runs) == 8 * 5
    assert {r.seed for r in runs} == set(range(5)) and {r.cell for r in runs} == {"gru"}
    for r in runs:
        assert r.config.split == "standard"
        assert r.config.lr == digit_rates[("fsdd", "gru", g.base_method(r.method))]
    noise = {r.method: r.config.weight_noise for r in runs}
    assert noise["float-noise-binary-0.25"] == "binary:0.25" and noise["binary-stoch"] == "none"


def test_the_digits_run_after_clip_global_and_before_the_long_ptb_experiments(digit_rates):
    ptb = {("ptb-char", "lstm", m): 2e-3 for m in METHODS}
    g.V3_LR.update(ptb)  # the fixture's monkeypatch restores the table
    order = list(dict.fromkeys(r.experiment.split("@")[0] for r in g.grid("cpu-v3")))
    at = order.index("clip-global")
    assert order[at + 1 : at + 4] == ["lr-sweep-digits", "noise-dose-digits", "digits-kfold"]
    assert order[at + 4] == "main"


def test_choose_lr_decides_the_digits_from_their_own_sweep(tmp_path):
    from qrnn.study.lrsweep import choose_lr, sweep_table

    runs = [r for r in _runs("lr-sweep-digits") if r.config.lr in g.V3_DIGITS_LRS]
    lrs = sorted(g.V3_DIGITS_LRS)
    folder = tmp_path / "cpu-v3" / "runs"
    for r in runs:
        k = lrs.index(r.config.lr)
        if r.cell == "rnn" and r.method == "float" and k == 0:
            continue  # not run yet: no choice for this group
        best = 0.1 + 0.01 * abs(k - 2) + (0.05 if r.method == "binary-det" else 0)
        _sweep_record(folder / r.run_id, "completed", [0.5, best])
    chosen, path = choose_lr("cpu-v3", tmp_path)
    assert chosen[("fsdd", "gru", "ternary-det")] == lrs[2]
    assert ("fsdd", "rnn", "float") not in chosen
    # PTB and the widened groups (their wider rates not run here) are not decided
    assert len(chosen) == 3 * 8 - 1 - len(g.V3_DIGITS_WIDER)
    assert all(k[0] == "fsdd" and k[1:] not in g.V3_DIGITS_WIDER for k in chosen)
    table = sweep_table("cpu-v3", tmp_path)
    assert set(table["sweep"]) == {"lr-sweep", "lr-sweep-digits"}
    assert path.read_text().startswith("task,cell,method,hidden")
