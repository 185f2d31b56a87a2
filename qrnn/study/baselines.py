"""Independent baselines computed by the project, written as records under ``results/``:
character n-grams for PTB-char (:mod:`qrnn.ngram`) and a time-pooled logistic regression for
the spoken digits (:mod:`qrnn.pooled`), on the same data the recurrent models see.

Record schema ``qrnn.baseline/1`` (one JSON file per task, ``<out>/<task>_<baseline>.json``):

=================  ==============================================================================
key                meaning
=================  ==============================================================================
schema             ``"qrnn.baseline/1"``
baseline           ``"kneser-ney"`` (ptb-char) or ``"pooled-logreg"`` (fsdd)
task               ``"ptb-char"`` or ``"fsdd"``
description        what was computed, in words (model, targets, selection)
metric             ``{"name": "bpc"|"error", "lower_is_better": true}``
config             the settings (orders, limits / poolings, C grid, folds) and what was fitted
                   from the data (n-gram discounts per level; chosen C)
results            ptb-char: ``orders``, per order ``valid_bpc, test_bpc`` (bits per symbol,
                   targets = every symbol of a split but its first, predicted from the symbols
                   before it in that split); fsdd: ``splits[<split>][<pooling>]`` (chosen C,
                   validation and test error, Wilson 95% interval, the C grid) and
                   ``folds[<pooling>]`` (per fold and over all 3,000 recordings)
data               the loader's statistics: sizes, vocabulary, file sha256s / recordings manifest
environment        :func:`qrnn.study.records.environment` (versions, CPU model, threads, git
                   commit and dirty flag)
invocation         ``{"argv": [...]}``: the command line
started, finished  UTC ISO times; ``wall_time_s`` seconds to compute the record
=================  ==============================================================================

Part of ``qrnn``, the library and study after Ott et al. 2016, *Recurrent Neural Networks With
Limited Numerical Precision*, https://arxiv.org/abs/1608.06902.
"""

from __future__ import annotations

import sys
import time
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import torch

from .. import pooled
from ..ngram import FALLBACK_DISCOUNTS, KneserNey
from .records import atomic_write_json, environment, now

__all__ = ["SCHEMA", "digits_baseline", "ngram_baseline", "summary", "write_record"]

SCHEMA = "qrnn.baseline/1"
POOLINGS = {0: "moments", 3: "moments+3segments"}  # segments -> name in the record


def _record(baseline: str, task: str, description: str, metric: str, invocation) -> dict:
    return {
        "schema": SCHEMA,
        "baseline": baseline,
        "task": task,
        "description": description,
        "metric": {"name": metric, "lower_is_better": True},
        "config": None,
        "results": None,
        "data": None,
        "environment": environment("cpu", torch.get_num_threads()),
        "invocation": invocation if invocation is not None else {"argv": sys.argv},
        "started": now(),
        "finished": None,
        "wall_time_s": None,
    }


def ngram_baseline(
    max_order: int = 9,
    data_root=None,
    train_limit: int = 0,
    eval_limit: int = 0,
    invocation: dict | None = None,
) -> dict:
    """Interpolated modified Kneser-Ney models of orders ``1..max_order`` fitted on PTB-char's
    training stream (the ids the language models read: :func:`qrnn.data.load_text`), scored
    on the validation and test streams; ``*_limit`` keep prefixes (0: everything)."""
    from ..data import load_text

    t0 = time.perf_counter()
    rec = _record(
        "kneser-ney",
        "ptb-char",
        "Interpolated modified Kneser-Ney character n-grams (Chen & Goodman 1998; three "
        "discounts per order from count-of-counts; continuation counts below the top order; "
        "interpolated down to the uniform distribution over the vocabulary), fitted on the "
        "training id stream of qrnn.data.load_text('ptb-char') (50 symbols: '\\n' ends a "
        "sentence, '_' separates words, <unk> is five symbols). Each split is one stream; "
        "every symbol but the first is a target, predicted from the symbols before it in the "
        "same split (the language models' targets, but for at most batch_size - 1 trailing "
        "symbols their batching drops).",
        "bpc",
        invocation,
    )
    corpus = load_text("ptb-char", root=data_root, progress=False)
    tr, va, te = (s.numpy() for s in (corpus.train, corpus.valid, corpus.test))
    if train_limit:
        tr = tr[:train_limit]
    if eval_limit:
        va, te = va[:eval_limit], te[:eval_limit]
    t_fit = time.perf_counter()
    model = KneserNey(tr, len(corpus.vocab), max_order)
    fit_s = time.perf_counter() - t_fit
    orders = []
    for n in range(1, max_order + 1):
        row = {"order": n}
        for split, stream in (("valid", va), ("test", te)):
            bits, count = model.bits(stream, n)
            row |= {f"{split}_bpc": bits / count, f"{split}_bits": bits, f"{split}_targets": count}
        orders.append(row)
    rec["config"] = {
        "max_order": max_order,
        "orders": list(range(1, max_order + 1)),
        "train_limit": train_limit,
        "eval_limit": eval_limit,
        "fallback_discounts": list(FALLBACK_DISCOUNTS),
        "model": model.describe(),
    }
    rec["results"] = {"orders": orders, "fit_s": round(fit_s, 2)}
    stats = corpus.stats()
    stats["used_sizes"] = {"train": int(tr.size), "valid": int(va.size), "test": int(te.size)}
    rec["data"] = stats
    return _finish(rec, t0)


def _with_interval(r: dict) -> dict:
    lo, hi = pooled.wilson(r["test_errors"], r["test_count"])
    return {**r, "test_error_interval": [lo, hi]}


def digits_baseline(
    splits: Sequence[str] = ("standard", "speakers"),
    segments: Sequence[int] = (0, 3),
    folds: int = 10,
    data_root=None,
    invocation: dict | None = None,
) -> dict:
    """The pooled logistic regression (:mod:`qrnn.pooled`) on every split of ``splits`` as
    :func:`qrnn.data.load_fsdd` makes it, for each pooling (``segments``), and (``folds`` > 0)
    on the ``folds``-fold partition of all recordings (:func:`qrnn.pooled.fsdd_fold`)."""
    from ..data import load_fsdd

    t0 = time.perf_counter()
    rec = _record(
        "pooled-logreg",
        "fsdd",
        "Multinomial logistic regression (L2, scikit-learn lbfgs) on per-channel mean, std, "
        "min and max of the log-mel frames (pooling 'moments'; 'moments+3segments' adds the "
        "means over three consecutive thirds of the utterance), standardized on the training "
        "split; C chosen by validation error on the split's validation set, the model fitted "
        "on the training split only and tested once. Features and splits: "
        "qrnn.data.load_fsdd (the recurrent models' loader). Folds: qrnn.pooled.fsdd_fold.",
        "error",
        invocation,
    )
    names = {s: POOLINGS.get(s, f"moments+{s}segments") for s in segments}
    results: dict = {"splits": {}, "folds": {}}
    data: dict = {}
    for split in splits:
        d = load_fsdd(split, root=data_root, progress=False)
        data[split] = d.stats()
        results["splits"][split] = {
            names[s]: _with_interval(pooled.evaluate_splits(d.train, d.valid, d.test, s))
            for s in segments
        }
        if split == "standard" and folds:
            results["folds"].update(_fold_results(d, segments, names, folds))
    rec["config"] = {
        "splits": list(splits),
        "poolings": {v: k for k, v in names.items()},
        "C_grid": list(pooled.C_GRID),
        "folds": folds,
        "fold_rule": "test: index * k // 50 == fold; valid: fold + 1 (mod k); "
        "train: the rest (qrnn.pooled.fsdd_fold)",
    }
    rec["results"], rec["data"] = results, data
    return _finish(rec, t0)


def _fold_results(d, segments: Sequence[int], names: dict[int, str], folds: int) -> dict:
    """``{pooling: result}``: the pooled regression on each fold of the ``folds``-fold partition
    of all of ``d``'s recordings, per pooling, with the errors pooled over the folds."""
    parts = (d.train, d.valid, d.test)
    feats = [f for p in parts for f in p.features]
    labels = np.concatenate([np.asarray(p.labels) for p in parts])
    rec_names = [n for p in parts for n in p.names]
    out = {}
    for s in segments:
        rows = [pooled.evaluate_fold(feats, labels, rec_names, f, folds, s) for f in range(folds)]
        wrong = sum(r["test_errors"] for r in rows)
        count = sum(r["test_count"] for r in rows)
        errs = [r["test_error"] for r in rows]
        out[names[s]] = {
            "k": folds,
            "test_errors": wrong,
            "test_count": count,
            "test_error": wrong / count,
            "test_error_interval": list(pooled.wilson(wrong, count)),
            "fold_test_error_mean": float(np.mean(errs)),
            "fold_test_error_sd": float(np.std(errs, ddof=1)),
            "per_fold": [{k: v for k, v in r.items() if k != "grid"} for r in rows],
        }
    return out


def _finish(rec: dict, t0: float) -> dict:
    rec["finished"] = now()
    rec["wall_time_s"] = round(time.perf_counter() - t0, 2)
    return rec


def summary(rec: dict) -> list[str]:
    """One line per order (ptb-char) or per split and pooling (fsdd)."""
    res = rec["results"]
    if rec["task"] == "ptb-char":
        return [
            f"  {r['order']}-gram  valid {r['valid_bpc']:.4f}  test {r['test_bpc']:.4f} bpc"
            for r in res["orders"]
        ]
    lines = [
        f"  {split:9s} {pool:18s} C={r['C']:<7.3g} valid {r['valid_error']:.4f}  "
        f"test {r['test_error']:.4f} error"
        for split, by in res["splits"].items()
        for pool, r in by.items()
    ]
    lines += [
        f"  {r['k']}-fold    {pool:18s} test {r['test_error']:.4f} error "
        f"({r['test_errors']}/{r['test_count']})"
        for pool, r in res["folds"].items()
    ]
    return lines


def write_record(rec: dict, out: str | Path) -> Path:
    """Write ``rec`` to ``<out>/<task>_<baseline>.json`` (atomically); return the path."""
    path = Path(out) / f"{rec['task']}_{rec['baseline']}.json"
    path.parent.mkdir(parents=True, exist_ok=True)
    atomic_write_json(path, rec)
    return path
