"""The baselines: modified Kneser-Ney n-grams (hand-computed values, a literal reference
implementation, normalization, fallback to lower orders) and the pooled digit classifier
(pooling, beating chance on separable data, the folds partitioning the recordings)."""

import json
import math
from collections import Counter
from fractions import Fraction as Fr

import numpy as np
import pytest

from qrnn import pooled
from qrnn.cli import main
from qrnn.ngram import FALLBACK_DISCOUNTS, KneserNey, modified_kn_discounts

# --------------------------------------------------------------------------- discounts


def test_discounts_follow_chen_goodman():
    counts = np.array([1] * 10 + [2] * 4 + [3] * 2 + [4] + [9])  # n1..n4 = 10, 4, 2, 1
    d, source = modified_kn_discounts(counts)
    y = Fr(10, 18)  # n1 / (n1 + 2 n2)
    want = (1 - 2 * y * Fr(4, 10), 2 - 3 * y * Fr(2, 4), 3 - 4 * y * Fr(1, 2))  # 5/9 7/6 17/9
    assert source == "estimated" and d == pytest.approx([float(w) for w in want], abs=1e-15)


@pytest.mark.parametrize("counts", [[5, 5, 5], [1, 1, 1], [1] * 10 + [2, 3]])
def test_discounts_fall_back_when_undefined_or_out_of_range(counts):
    # no count of 1, 2 or 3 / no 2s / D_2 = 2 - 3 (10/12) 1/1 < 0
    assert modified_kn_discounts(np.array(counts)) == (FALLBACK_DISCOUNTS, "fallback")


# --------------------------------------------------------------------------- values

ABABACA = [0, 1, 0, 1, 0, 2, 0]  # a b a b a c a, V = 3: every level uses the fallback D


def test_bigram_model_matches_hand_computation():
    m = KneserNey(ABABACA, 3, 2)
    # unigram continuation counts: a {b, c} = 2, b {a} = 1, c {a} = 1; total 4,
    # γ = 0.5 * 2 + 1.0 * 1 = 2;  p1(w) = (max(N(•w) - D, 0) + γ / 3) / 4
    p1 = {0: Fr(5, 12), 1: Fr(7, 24), 2: Fr(7, 24)}
    # history a: c(ab) = 2, c(ac) = 1, total 3, γ = D1 + D2 = 1.5
    pa = {0: Fr(3, 2) * p1[0] / 3, 1: (1 + Fr(3, 2) * p1[1]) / 3,
          2: (Fr(1, 2) + Fr(3, 2) * p1[2]) / 3}  # fmt: skip
    # history c: c(ca) = 1, total 1, γ = 0.5
    pc = {0: Fr(1, 2) + Fr(1, 2) * p1[0], 1: Fr(1, 2) * p1[1], 2: Fr(1, 2) * p1[2]}
    for hist, want in ((0, pa), (2, pc)):
        got = m.distribution([[hist]])[0]
        assert got == pytest.approx([float(want[w]) for w in range(3)], abs=1e-15)
    assert float(sum(pa.values())) == 1.0 and float(sum(pc.values())) == 1.0
    assert m.distribution([[-1]])[0] == pytest.approx([float(p1[w]) for w in range(3)])


def _reference(stream, v, n):
    """Modified KN as the equations read, with tuples and recursion (slow, for checking)."""
    grams = {k: Counter(tuple(stream[i : i + k]) for i in range(len(stream) - k + 1))
             for k in range(1, n + 1)}  # fmt: skip

    def counts(k):  # raw at the model's order, continuation counts below it
        return grams[k] if k == n else Counter(g[1:] for g in grams[k + 1])

    def p(h, w):  # level k = len(h) + 1
        lower = p(h[1:], w) if h else 1.0 / v
        a = counts(len(h) + 1)
        row = {u: a[(*h, u)] for u in range(v) if a[(*h, u)] > 0}
        if not row:
            return lower
        d, _ = modified_kn_discounts(np.array(list(a.values())))
        disc = [0.0, *d]  # D(0), D(1), D(2), D(3+)
        gamma = sum(disc[min(c, 3)] for c in row.values())
        c_w = row.get(w, 0)
        return (max(c_w - disc[min(c_w, 3)], 0) + gamma * lower) / sum(row.values())

    return lambda h, w: p(tuple(h), w)


def test_vectorized_model_equals_the_reference():
    rng = np.random.default_rng(0)
    stream = rng.choice(4, size=400, p=np.array([16, 9, 4, 1]) / 30).tolist()
    m, ref = KneserNey(stream, 4, 3), _reference(stream, 4, 3)
    assert {lv.discount_source for lv in (m.raw[3], m.continuation[2])} == {"estimated"}
    hists = [[a, b] for a in range(4) for b in range(4)]
    got = m.distribution(hists)
    want = [[ref(h, w) for w in range(4)] for h in hists]
    assert got == pytest.approx(np.array(want), abs=1e-13)


# --------------------------------------------------------------------------- properties


@pytest.fixture(scope="module")
def model5():
    rng = np.random.default_rng(1)
    return KneserNey(rng.integers(0, 7, size=3000) * (rng.random(3000) < 0.8), 7, 5)


def test_distributions_sum_to_one_for_every_order(model5):
    rng = np.random.default_rng(2)
    hist = rng.integers(-1, 7, size=(200, 4))
    hist[:50, :2] = -1  # short histories (stream start)
    for order in range(1, 6):
        d = model5.distribution(hist, order)
        assert (d > 0).all() and np.abs(d.sum(1) - 1).max() < 1e-12


def test_unseen_history_falls_back_to_the_lower_order(model5):
    # a history missing its first symbol, or never seen in training, scores as its last three
    rng = np.random.default_rng(3)
    hist = rng.integers(0, 7, size=(300, 4))
    full, shorter = model5.distribution(hist), model5.distribution(hist[:, 1:])
    padded = hist.copy()
    padded[:, 0] = -1
    assert model5.distribution(padded) == pytest.approx(shorter, abs=0)
    level = model5.raw[5]
    codes = ((hist[:, 0] * 7 + hist[:, 1]) * 7 + hist[:, 2]) * 7 + hist[:, 3]
    unseen = ~np.isin(codes, level.hist_codes)
    assert 0 < unseen.sum() < len(hist)
    assert full[unseen] == pytest.approx(shorter[unseen], abs=0)
    assert not np.allclose(full[~unseen], shorter[~unseen])


def test_a_deterministic_cycle_is_learned():
    cycle = [0, 1, 2, 3] * 250
    m = KneserNey(cycle, 4, 3)
    assert m.bpc(cycle, 1) == pytest.approx(2.0, abs=1e-12)  # equal counts: uniform
    assert m.bpc(cycle, 2) < 0.01 and m.bpc(cycle, 3) < m.bpc(cycle, 2)
    assert m.bits(cycle, 2)[1] == len(cycle) - 1  # the first symbol is not a target


def test_bad_input_is_refused():
    with pytest.raises(ValueError, match="symbol ids"):
        KneserNey([0, 1, 5], 3, 2)
    with pytest.raises(ValueError, match="max_order"):
        KneserNey([0, 1, 2], 50, 12)


# --------------------------------------------------------------------------- digits


def test_pool_gives_moments_and_segment_means():
    x = np.arange(12.0).reshape(6, 2)  # (T=6, F=2)
    got = pooled.pool([x], segments=3)[0]
    mean, std = x.mean(0), x.std(0)
    seg = [x[0:2].mean(0), x[2:4].mean(0), x[4:6].mean(0)]
    assert got == pytest.approx(np.concatenate([mean, std, x[0], x[5], *seg]))
    assert pooled.pool([x[:2]], segments=3).shape == (1, 14)  # fewer frames than segments


def _names(speakers=2, digits=10, indices=50):
    return [f"{d}_s{s}_{i}.wav" for s in range(speakers) for d in range(digits)
            for i in range(indices)]  # fmt: skip


@pytest.mark.parametrize("k", [10, 7])
def test_folds_partition_the_recordings(k):
    names = _names()
    tested = []
    for f in range(k):
        parts = pooled.fsdd_fold(names, f, k)
        all_ = np.concatenate(list(parts.values()))
        assert sorted(all_) == list(range(len(names)))  # train / valid / test partition
        assert set(parts["valid"]) == set(pooled.fsdd_fold(names, (f + 1) % k, k)["test"])
        tested.extend(parts["test"])
    assert sorted(tested) == list(range(len(names)))  # every recording tested once


def test_ten_folds_are_balanced_and_fold_zero_is_the_standard_test_split():
    from qrnn.data.speech import fsdd_manifest

    names = [line.split()[1] for line in fsdd_manifest().splitlines() if line.strip()]
    test0 = {names[i].rsplit("/", 1)[-1] for i in pooled.fsdd_fold(names, 0)["test"]}
    assert test0 == {n.rsplit("/", 1)[-1] for n in names if int(n[:-4].split("_")[2]) <= 4}
    for f in range(10):
        test = [tuple(names[i].rsplit("/", 1)[-1].split("_")[:2])
                for i in pooled.fsdd_fold(names, f)["test"]]  # fmt: skip
        assert len(test) == 300 and set(Counter(test).values()) == {5}  # per digit and speaker


def _synthetic(names, rng, noise=1.0):
    labels = np.array([int(n.split("_")[0]) for n in names])
    centres = rng.normal(size=(10, 6))
    feats = [centres[y] + noise * rng.normal(size=(int(rng.integers(5, 15)), 6)) for y in labels]
    return feats, labels


def test_pooled_classifier_beats_chance_on_separable_features():
    rng = np.random.default_rng(0)
    names = _names(speakers=1)
    feats, labels = _synthetic(names, rng)
    r = pooled.evaluate_fold(feats, labels, names, fold=0, k=5, cs=(0.01, 1.0))
    assert r["test_count"] == 100 and r["train_count"] == 300 and r["valid_count"] == 100
    assert r["test_error"] < 0.2 and r["C"] in (0.01, 1.0) and len(r["grid"]) == 2
    noise = [rng.normal(size=f.shape) for f in feats]  # no signal: about chance
    assert pooled.evaluate_fold(noise, labels, names, 0, 5, cs=(1.0,))["test_error"] > 0.5


def test_wilson_interval():
    lo, hi = pooled.wilson(0, 300)
    assert lo == pytest.approx(0.0, abs=1e-12) and hi == pytest.approx(0.01264, abs=1e-4)
    lo, hi = pooled.wilson(150, 300)
    assert lo < 0.5 < hi and 0.5 - lo == pytest.approx(hi - 0.5)
    assert all(math.isnan(v) for v in pooled.wilson(0, 0))


# --------------------------------------------------------------------------- real data


def test_ptb_char_command_writes_a_record(mirror, tmp_path, capsys):
    args = ["baselines", "--task", "ptb-char", "--max-order", "3", "--train-limit", "300000",
            "--eval-limit", "30000", "--out", str(tmp_path), "--data", str(mirror)]  # fmt: skip
    assert main(args) == 0
    assert "3-gram" in capsys.readouterr().out
    rec = json.loads((tmp_path / "ptb-char_kneser-ney.json").read_text())
    assert rec["schema"] == "qrnn.baseline/1" and rec["config"]["model"]["vocab_size"] == 50
    bpc = [r["test_bpc"] for r in rec["results"]["orders"]]
    assert 4.2 < bpc[0] < 4.5 and bpc[0] > bpc[1] > bpc[2] > 2.5
    assert rec["results"]["orders"][0]["test_targets"] == 30000 - 1
    assert rec["data"]["used_sizes"] == {"train": 300000, "valid": 30000, "test": 30000}
    files = rec["data"]["files"]
    assert files["ptb.char.test.txt"]["sha256"].startswith("1ef5607a")
    assert rec["environment"]["git"]["commit"] and rec["environment"]["cpu_model"]
