"""A non-recurrent spoken-digit classifier: multinomial logistic regression on time-pooled
statistics of the log-mel features, and the 10-fold partition of FSDD's recordings.

The reference the recurrent digit classifiers must beat to show they use time order. For an
utterance with frames ``x_1..x_T`` (``F`` channels each) the pooled vector is, per channel,

    [mean_t x_t, std_t x_t, min_t x_t, max_t x_t]   ("moments", 4F values)

and with ``segments = S > 0`` also the means over ``S`` consecutive, near-equal parts of the
utterance (frames ``floor(j T / S) .. floor((j+1) T / S) - 1``, part ``j``), a coarse time
profile (``(4 + S) F`` values). Each pooled value is standardized with the training split's
mean and std, then ``p(y | x) = softmax(W x + b)`` is fitted by L2-penalized maximum likelihood
(scikit-learn's ``LogisticRegression``, lbfgs; ``C`` is the inverse penalty strength), one model
per ``C`` of a grid; the ``C`` with the lowest validation error (ties: lowest validation
log-loss, then smallest ``C``) is tested. The model is fitted on the training split only, as the
recurrent models are.

Folds (:func:`fsdd_fold`): FSDD names every recording ``{digit}_{speaker}_{index}.wav`` with
``index`` 0-49 and holds every (speaker, digit) pair 50 times. Fold ``f`` of ``k`` tests the
recordings with ``index * k // 50 == f`` (``k = 10``: indices ``5f .. 5f+4``, 300 recordings,
5 of every speaker and digit), validates on fold ``(f + 1) % k`` and trains on the rest, so
every recording is tested exactly once over the ``k`` folds; fold 0's test set is the upstream
standard test split (indices 0-4). Part of ``qrnn``, the library and study after Ott et
al. 2016, *Recurrent Neural Networks With Limited Numerical Precision*,
https://arxiv.org/abs/1608.06902.
"""

from __future__ import annotations

import math
import warnings
from collections.abc import Sequence

import numpy as np

__all__ = [
    "C_GRID",
    "evaluate_fold",
    "evaluate_splits",
    "fit_select",
    "fsdd_fold",
    "pool",
    "wilson",
]

C_GRID = tuple(float(10.0**e) for e in np.arange(-3.0, 2.01, 0.5))  # 1e-3 .. 1e2, 11 values
INDICES = 50  # recordings per (speaker, digit) in FSDD


def pool(features: Sequence, segments: int = 0) -> np.ndarray:
    """``(N, (4 + segments) F)`` pooled vectors of ``N`` utterances of ``(T_i, F)`` frames."""
    rows = []
    for f in features:
        x = np.asarray(f, dtype=np.float64)  # (T, F)
        t = x.shape[0]
        parts = [x.mean(0), x.std(0), x.min(0), x.max(0)]
        for j in range(segments):
            lo = min(j * t // segments, t - 1)
            hi = max((j + 1) * t // segments, lo + 1)  # at least one frame when T < S
            parts.append(x[lo:hi].mean(0))
        rows.append(np.concatenate(parts))
    return np.stack(rows)


def _model(c: float):
    from sklearn.linear_model import LogisticRegression
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    return make_pipeline(StandardScaler(), LogisticRegression(C=c, max_iter=5000))


def fit_select(xtr, ytr, xva, yva, cs: Sequence[float] = C_GRID) -> tuple[float, list, object]:
    """Fit one model per ``C`` on the training rows; return ``(C, grid, model)`` with the
    validation choice (lowest error, then log-loss, then smallest ``C``), the per-``C`` rows
    ``{C, valid_error, valid_log_loss, iterations}`` and the chosen fitted model."""
    from sklearn.exceptions import ConvergenceWarning
    from sklearn.metrics import log_loss

    grid, models = [], []
    for c in cs:
        m = _model(c)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", ConvergenceWarning)  # recorded as iterations
            m.fit(xtr, ytr)
        proba = m.predict_proba(xva)
        err = float(np.mean(m.classes_[proba.argmax(1)] != yva))
        loss = float(log_loss(yva, proba, labels=m.classes_))
        iters = int(np.max(m[-1].n_iter_))
        grid.append({"C": c, "valid_error": err, "valid_log_loss": loss, "iterations": iters})
        models.append(m)
    best = min(
        range(len(grid)),
        key=lambda i: (grid[i]["valid_error"], grid[i]["valid_log_loss"], grid[i]["C"]),
    )
    return grid[best]["C"], grid, models[best]


def _split_xy(split, segments: int) -> tuple[np.ndarray, np.ndarray]:
    return pool(split.features, segments), np.asarray(split.labels)


def evaluate_splits(train, valid, test, segments: int = 0, cs: Sequence[float] = C_GRID) -> dict:
    """Choose ``C`` on ``valid``, test the chosen model: ``{C, valid_error, test_error,
    test_errors (count), test_count, grid}``. Splits have ``features`` and ``labels``."""
    xtr, ytr = _split_xy(train, segments)
    xva, yva = _split_xy(valid, segments)
    xte, yte = _split_xy(test, segments)
    c, grid, model = fit_select(xtr, ytr, xva, yva, cs)
    wrong = int(np.sum(model.predict(xte) != yte))
    chosen = next(g for g in grid if g["C"] == c)
    return {
        "C": c,
        "valid_error": chosen["valid_error"],
        "test_error": wrong / len(yte),
        "test_errors": wrong,
        "test_count": len(yte),
        "train_count": len(ytr),
        "valid_count": len(yva),
        "grid": grid,
    }


def fsdd_fold(names: Sequence[str], fold: int, k: int = 10) -> dict[str, np.ndarray]:
    """Positions in ``names`` (``{digit}_{speaker}_{index}.wav``) of fold ``fold``'s
    ``train`` / ``valid`` / ``test`` recordings (module docstring: test ``index * k // 50 ==
    fold``, valid the next fold, train the rest)."""
    if not 2 <= k <= INDICES:
        raise ValueError(f"k must be in 2..{INDICES}, got {k}")
    if not 0 <= fold < k:
        raise ValueError(f"fold must be in 0..{k - 1}, got {fold}")
    index = np.array([int(n.rsplit("/", 1)[-1].removesuffix(".wav").split("_")[2]) for n in names])
    if index.size and (index.min() < 0 or index.max() >= INDICES):
        raise ValueError(f"recording indices must lie in 0..{INDICES - 1}")
    block = index * k // INDICES
    pos = np.arange(len(names))
    return {
        "train": pos[(block != fold) & (block != (fold + 1) % k)],
        "valid": pos[block == (fold + 1) % k],
        "test": pos[block == fold],
    }


def evaluate_fold(
    features: Sequence,
    labels,
    names: Sequence[str],
    fold: int,
    k: int = 10,
    segments: int = 0,
    cs: Sequence[float] = C_GRID,
) -> dict:
    """:func:`evaluate_splits` on fold ``fold`` of ``k`` (:func:`fsdd_fold`) of all recordings
    (``features[i]`` ``(T_i, F)``, ``labels[i]``, ``names[i]``); adds ``fold`` and ``k``."""
    from types import SimpleNamespace

    labels = np.asarray(labels)
    idx = fsdd_fold(names, fold, k)
    parts = {
        s: SimpleNamespace(features=[features[i] for i in ix], labels=labels[ix])
        for s, ix in idx.items()
    }
    out = evaluate_splits(parts["train"], parts["valid"], parts["test"], segments, cs)
    return {"fold": fold, "k": k, **out}


def wilson(errors: int, count: int, z: float = 1.959964) -> tuple[float, float]:
    """Wilson score 95% interval of an error rate ``errors / count``."""
    if count == 0:
        return math.nan, math.nan
    p = errors / count
    centre = (p + z * z / (2 * count)) / (1 + z * z / count)
    half = z * math.sqrt(p * (1 - p) / count + z * z / (4 * count * count)) / (1 + z * z / count)
    return max(0.0, centre - half), min(1.0, centre + half)
