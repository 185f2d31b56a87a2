"""Interpolated modified Kneser-Ney n-gram models over a symbol stream (a count-based reference
for the character language models).

Chen & Goodman 1998, *An Empirical Study of Smoothing Techniques for Language Modeling*
(TR-10-98), section 3 ("modified Kneser-Ney"), interpolated down to the uniform distribution.
For an order-``n`` model and a history ``h`` of ``k - 1`` symbols (``h'`` drops its first):

    p_k(w | h) = (max(a_k(h w) - D_k(a_k(h w)), 0) + γ_k(h) p_(k-1)(w | h')) / Σ_v a_k(h v)
    γ_k(h)     = D_k,1 N_1(h •) + D_k,2 N_2(h •) + D_k,3+ N_3+(h •)
    p_0(w)     = 1 / V

where ``N_j(h •)`` counts the symbols ``v`` with ``a_k(h v) = j`` (``N_3+``: ``>= 3``). The
counts ``a_k`` are the raw counts at the model's own order ``k = n`` and the continuation counts
``N_1+(• g) = |{u : c(u g) > 0}|`` (distinct left neighbours) at every lower order. A history
with ``Σ_v a_k(h v) = 0`` passes ``p_(k-1)`` through unchanged. The three discounts per order
come from that order's count-of-counts ``n_j`` (how many k-grams have ``a_k = j``):

    Y = n_1 / (n_1 + 2 n_2),  D_1 = 1 - 2 Y n_2 / n_1,  D_2 = 2 - 3 Y n_3 / n_2,
    D_3+ = 3 - 4 Y n_4 / n_3

and, where they are undefined or not in ``(0, j]`` (too little data), the fallback
``(0.5, 1.0, 1.5)`` (as KenLM's ``--discount_fallback``); each order records which it used.

The stream is one continuous sequence, as the language models read it: no sentence-start
padding; the first ``k - 1`` symbols of a stream have a history shorter than ``k - 1``, so they
are scored by the lower orders. N-grams are integer codes ``Σ_j s_j V^(k-1-j)`` (int64; V^n must
stay below 2^63, e.g. V = 50 up to n = 11). Part of ``qrnn``, the library and study after Ott
et al. 2016, *Recurrent Neural Networks With Limited Numerical Precision*,
https://arxiv.org/abs/1608.06902.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

__all__ = ["FALLBACK_DISCOUNTS", "KneserNey", "Level", "modified_kn_discounts", "ngram_codes"]

FALLBACK_DISCOUNTS = (0.5, 1.0, 1.5)


def ngram_codes(stream: np.ndarray, k: int, vocab_size: int) -> np.ndarray:
    """Integer codes of the ``len(stream) - k + 1`` k-grams of ``stream``, first symbol most
    significant: code of ``s[t:t+k]`` is ``Σ_j s[t+j] V^(k-1-j)``."""
    s = np.asarray(stream, dtype=np.int64)
    m = s.size - k + 1
    if m <= 0:
        return np.zeros(0, dtype=np.int64)
    code = np.zeros(m, dtype=np.int64)
    for j in range(k):
        code = code * vocab_size + s[j : j + m]
    return code


def modified_kn_discounts(counts: np.ndarray) -> tuple[tuple[float, float, float], str]:
    """``((D_1, D_2, D_3+), source)`` from the count-of-counts of ``counts`` (Chen & Goodman
    1998, eq. 26); ``source`` is ``"estimated"`` or ``"fallback"`` (see the module docstring)."""
    n1, n2, n3, n4 = (int(np.count_nonzero(counts == j)) for j in (1, 2, 3, 4))
    if min(n1, n2, n3) == 0:
        return FALLBACK_DISCOUNTS, "fallback"
    y = n1 / (n1 + 2 * n2)
    d = (1 - 2 * y * n2 / n1, 2 - 3 * y * n3 / n2, 3 - 4 * y * n4 / n3)
    if not all(0 < dj <= j + 1 for j, dj in enumerate(d)):
        return FALLBACK_DISCOUNTS, "fallback"
    return (float(d[0]), float(d[1]), float(d[2])), "estimated"


@dataclass
class Level:
    """One order ``k`` of a model: the k-grams seen (sorted codes) and their counts ``a_k``,
    and per history ``h`` (sorted codes ``h = code // V``) the total ``Σ_v a_k(h v)`` and the
    interpolation mass ``γ_k(h)``."""

    k: int
    kind: str  # "raw" (the model's own order) or "continuation" (lower orders)
    codes: np.ndarray  # (G,) int64, sorted
    counts: np.ndarray  # (G,) int64, >= 1
    hist_codes: np.ndarray  # (H,) int64, sorted
    hist_total: np.ndarray  # (H,) float64
    hist_gamma: np.ndarray  # (H,) float64: D_1 N_1(h•) + D_2 N_2(h•) + D_3+ N_3+(h•)
    discounts: tuple[float, float, float]
    discount_source: str

    @classmethod
    def from_counts(cls, k: int, kind: str, codes, counts, vocab_size: int) -> Level:
        codes, counts = np.asarray(codes, np.int64), np.asarray(counts, np.int64)
        d, source = modified_kn_discounts(counts)
        hist = codes // vocab_size  # sorted, since codes are
        hist_codes, start = np.unique(hist, return_index=True)
        total = np.add.reduceat(counts, start).astype(np.float64)
        n_j = [np.add.reduceat((counts == j).astype(np.int64), start) for j in (1, 2)]
        n_3p = np.add.reduceat((counts >= 3).astype(np.int64), start)
        gamma = d[0] * n_j[0] + d[1] * n_j[1] + d[2] * n_3p
        return cls(k, kind, codes, counts, hist_codes, total, gamma, d, source)

    def discount(self, a: np.ndarray) -> np.ndarray:
        """``D_k(a)``: 0 for a = 0, then D_1, D_2, D_3+."""
        d1, d2, d3 = self.discounts
        return np.select([a == 1, a == 2, a >= 3], [d1, d2, d3], 0.0)

    def describe(self) -> dict:
        return {
            "order": self.k,
            "counts": self.kind,
            "ngrams": int(self.codes.size),
            "histories": int(self.hist_codes.size),
            "discounts": list(self.discounts),
            "discount_source": self.discount_source,
        }


def _lookup(keys: np.ndarray, query: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """``(found, index)`` of ``query`` in the sorted ``keys`` (index clipped where not found)."""
    if keys.size == 0:
        return np.zeros(query.shape, bool), np.zeros(query.shape, np.int64)
    i = np.minimum(np.searchsorted(keys, query), keys.size - 1)
    return keys[i] == query, i


class KneserNey:
    """Interpolated modified Kneser-Ney models of every order ``1..max_order`` fitted on one
    stream of symbol ids in ``[0, vocab_size)`` (see the module docstring for the equations).

    ``prob(history, words, order)`` is vectorized over rows; ``bits(stream, order)`` scores
    every symbol of a stream but the first from the symbols before it in that stream.
    """

    def __init__(self, stream, vocab_size: int, max_order: int):
        s = np.asarray(stream, dtype=np.int64)
        if s.ndim != 1 or s.size < 2:
            raise ValueError("stream must be a 1-D sequence of at least two symbol ids")
        if s.min() < 0 or s.max() >= vocab_size:
            raise ValueError(f"symbol ids must lie in [0, {vocab_size})")
        if max_order < 1 or vocab_size**max_order >= 2**63:
            raise ValueError(f"max_order {max_order} out of range for vocab_size {vocab_size}")
        self.vocab_size, self.max_order = vocab_size, max_order
        self.raw: dict[int, Level] = {}  # order k's own counts, used by the order-k model
        self.continuation: dict[int, Level] = {}  # used below the model's order
        uniq = {}
        for k in range(1, max_order + 1):
            codes, counts = np.unique(ngram_codes(s, k, vocab_size), return_counts=True)
            uniq[k] = codes
            self.raw[k] = Level.from_counts(k, "raw", codes, counts, vocab_size)
        for k in range(1, max_order):
            # N_1+(• g): the distinct (k+1)-grams that end in g
            suffix = uniq[k + 1] % vocab_size**k
            codes, counts = np.unique(suffix, return_counts=True)
            self.continuation[k] = Level.from_counts(k, "continuation", codes, counts, vocab_size)

    def levels(self, order: int) -> list[Level]:
        """The levels the order-``order`` model interpolates, lowest first."""
        if not 1 <= order <= self.max_order:
            raise ValueError(f"order must be in 1..{self.max_order}, got {order}")
        return [self.continuation[k] for k in range(1, order)] + [self.raw[order]]

    def prob(self, history, words, order: int | None = None) -> np.ndarray:
        """``p(words[i] | history[i])`` under the order-``order`` model (default: the highest).

        ``history`` is ``(M, L)`` symbol ids, most recent last; ``-1`` marks a missing symbol
        (left padding: only the last ``L'`` columns without -1 are used). ``L >= order - 1``
        columns are needed for the full order; the extra leading ones are ignored.
        """
        order = self.max_order if order is None else order
        v = self.vocab_size
        w = np.asarray(words, dtype=np.int64)
        h = np.asarray(history, dtype=np.int64).reshape(w.size, -1)
        p = np.full(w.size, 1.0 / v)  # p_0 = 1/V
        hist_code = np.zeros(w.size, dtype=np.int64)  # code of the last k-1 symbols
        known = np.ones(w.size, dtype=bool)  # whether those k-1 symbols are all present
        for lv in self.levels(order):
            if lv.k > 1:
                col = h[:, -(lv.k - 1)] if h.shape[1] >= lv.k - 1 else np.full(w.size, -1)
                known &= col >= 0
                hist_code = np.where(known, col * v ** (lv.k - 2) + hist_code, 0)
            found_h, ih = _lookup(lv.hist_codes, hist_code)
            use = known & found_h  # histories seen at this level; the rest pass p through
            found_g, ig = _lookup(lv.codes, hist_code * v + w)
            a = np.where(found_g & use, lv.counts[ig], 0)
            total = np.where(use, lv.hist_total[ih], 1.0)
            mixed = (np.maximum(a - lv.discount(a), 0.0) + lv.hist_gamma[ih] * p) / total
            p = np.where(use, mixed, p)
        return p

    def distribution(self, history, order: int | None = None) -> np.ndarray:
        """``(M, V)`` probabilities of every symbol after each history row."""
        h = np.atleast_2d(np.asarray(history, dtype=np.int64))
        m, v = h.shape[0], self.vocab_size
        words = np.tile(np.arange(v), m)
        return self.prob(np.repeat(h, v, axis=0), words, order).reshape(m, v)

    def bits(self, stream, order: int | None = None) -> tuple[float, int]:
        """``(total -log2 p, targets)`` over symbols ``1..N-1`` of ``stream``, each predicted
        from the (up to ``order - 1``) symbols before it in the same stream."""
        order = self.max_order if order is None else order
        s = np.asarray(stream, dtype=np.int64)
        n, width = s.size, max(order - 1, 1)
        padded = np.concatenate([np.full(width, -1, np.int64), s])
        # history of target t (t = 1..n-1): padded[t : t + width] = s[t - width .. t - 1]
        idx = np.arange(1, n)[:, None] + np.arange(width)[None, :]  # (n-1, width)
        p = self.prob(padded[idx], s[1:], order)
        return float(-np.log2(p).sum()), n - 1

    def bpc(self, stream, order: int | None = None) -> float:
        """Bits per symbol: ``bits / targets``."""
        total, count = self.bits(stream, order)
        return total / count if count else math.nan

    def describe(self) -> dict:
        """Sizes and discounts of every level (JSON-able)."""
        return {
            "vocab_size": self.vocab_size,
            "max_order": self.max_order,
            "raw": [self.raw[k].describe() for k in sorted(self.raw)],
            "continuation": [self.continuation[k].describe() for k in sorted(self.continuation)],
        }
