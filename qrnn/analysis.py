"""Why binarization fails: step Jacobians, gate saturation and quantization noise.

One recurrent layer of a model (at initialization or a trained checkpoint) is driven over one
input sequence with the pure reference cells of :mod:`qrnn.cells`, in float64, with the
*deterministic* quantized weights (evaluation semantics). From the trajectory ``s_0 = 0, s_1,
..., s_T`` (``s = h``; LSTM: ``s = [h; c]``) we measure:

* the step Jacobian ``J_t = d s_t / d s_{t-1}`` (``torch.func``; H x H, LSTM 2H x 2H) and its
  singular values; for the vanilla RNN ``J_t = diag(f'(a_t)) W_hh``;
* gradient survival: ``||J_T J_{T-1} ... J_{T-k+1}||_2 = ||d s_T / d s_{T-k}||_2``, k = 1..T;
* gate pre-activations ``a``: their standard deviation and the saturated fraction. A unit is
  *saturated* when its nonlinearity's derivative is below ``tol`` (default 1 %) of its maximum:
  tanh ``1 - tanh(a)^2 < tol`` (|a| > 2.99), sigmoid ``4 σ(a)(1 - σ(a)) < tol`` (|a| > 5.99),
  relu ``a <= 0``;
* quantization noise ``e = (W_q - W) v`` with ``v = x_t`` (input matrices), ``h_{t-1}``
  (recurrent matrices) or 1 (biases): measured over stochastic draws of ``W_q`` against
  ``Var e_i = Σ_j Var(W_q,ij) v_j^2`` and ``E e_i = Σ_j (E W_q,ij - W_ij) v_j`` with the
  per-weight moments of :func:`rounding_moments`;
* weight histograms (shadow and quantized) per matrix.

:func:`analyze` does all of it for one model; :func:`summary_table` and the ``*_frame``
functions turn a set of analyses into pandas tables for ``notebooks/jacobian.ipynb``.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from typing import Any

import pandas as pd
import torch
from torch import Tensor, nn

from .cells import gru_cell, lstm_cell, rnn_cell
from .quantizers import Quantizer, quantizer

__all__ = [
    "GATES",
    "METHODS",
    "Analysis",
    "CellWeights",
    "InputSequence",
    "Method",
    "analyze",
    "cell_weights",
    "gate_preactivations",
    "get_method",
    "layer_input",
    "load_sequence",
    "noise_frame",
    "preactivation_noise",
    "product_frame",
    "product_log_norms",
    "recurrent_layer",
    "rounding_moments",
    "saturated",
    "saturation_frame",
    "spectra_frame",
    "step_jacobians",
    "summary_table",
    "trajectory",
    "weight_frame",
    "weights_frame",
]


# ------------------------------------------------------------------------------ methods
@dataclass(frozen=True)
class Method:
    """A quantization method: scheme, quantizer options and whether training samples it."""

    label: str
    scheme: str
    options: dict[str, Any] = field(default_factory=dict)
    stochastic: bool = False

    def quantizer(self) -> Quantizer:
        return quantizer(self.scheme, **self.options)


# label -> (scheme, options, stochastic); labels follow qrnn.study, plus Glorot-scaled binary
METHODS: dict[str, tuple[str, dict[str, Any], bool]] = {
    "float": ("float", {}, False),
    "binary-det": ("binary", {"scale": "unit"}, False),
    "binary-stoch": ("binary", {"scale": "unit"}, True),
    "binary-glorot-det": ("binary", {"scale": "glorot"}, False),
    "binary-glorot-stoch": ("binary", {"scale": "glorot"}, True),
    "ternary-det": ("ternary", {}, False),
    "ternary-stoch": ("ternary", {}, True),
    "pow2-ternary": ("pow2-ternary", {}, False),
    "pow2-stoch": ("pow2-ternary", {}, True),
    "exponential-det": ("exponential", {}, False),
    "exponential-stoch": ("exponential", {}, True),
}


def get_method(label: str | Method) -> Method:
    """The :class:`Method` of a label of :data:`METHODS` (a Method passes through)."""
    if isinstance(label, Method):
        return label
    if label not in METHODS:
        raise ValueError(f"unknown method {label!r}; choose one of {', '.join(METHODS)}")
    scheme, options, stochastic = METHODS[label]
    return Method(label, scheme, dict(options), stochastic)


# ------------------------------------------------------------------------------ models, inputs
_TASKS = {
    "ptb-char": {"task": "ptb-char"},
    "fsdd": {"task": "fsdd", "split": "standard"},
    "fsdd-speakers": {"task": "fsdd", "split": "speakers"},
}


def _task_fields(task: str) -> dict[str, Any]:
    if task not in _TASKS:
        raise ValueError(f"unknown task {task!r}; choose one of {', '.join(_TASKS)}")
    return dict(_TASKS[task])


@dataclass(frozen=True)
class InputSequence:
    """One input sequence: token ids (T,) or features (T, F), and the model input size."""

    task: str
    raw: Tensor
    size: int
    description: str


def load_sequence(
    task: str, length: int = 100, seed: int = 0, data_root: str | None = None
) -> InputSequence:
    """A validation sequence: PTB-char, ``length`` characters from an offset drawn with
    ``seed``; FSDD, the first ``length`` frames of a recording drawn with ``seed`` among
    those at least that long (else the longest; then T is shorter)."""
    from . import data

    gen = torch.Generator().manual_seed(seed)
    fields = _task_fields(task)
    if fields["task"] == "ptb-char":
        corpus = data.load_text("ptb-char", root=data_root, progress=False)
        stream = corpus.valid
        start = int(torch.randint(0, len(stream) - length + 1, (1,), generator=gen))
        raw = stream[start : start + length]
        return InputSequence(task, raw, len(corpus.vocab), f"valid[{start}:{start + length}]")
    sd = data.load_fsdd(split=fields.get("split", "standard"), root=data_root, progress=False)
    feats = sd.valid.features
    long = [i for i, f in enumerate(feats) if len(f) >= length]
    if long:
        i = long[int(torch.randint(0, len(long), (1,), generator=gen))]
    else:
        i = max(range(len(feats)), key=lambda j: len(feats[j]))
    raw = feats[i][:length]
    return InputSequence(task, raw, sd.n_features, f"{sd.valid.names[i]} frames 0:{len(raw)}")


def recurrent_layer(model: nn.Module) -> nn.RNNBase:
    """The recurrent layer stack of a study model (``model.rnn``) or the layer itself."""
    return model if isinstance(model, nn.RNNBase) else model.rnn


@torch.no_grad()
def layer_input(model: nn.Module, raw: Tensor) -> Tensor:
    """What the recurrent layer sees, (T, I) float64: one-hot or embedded characters for a
    language model, (batch-normalized, eval mode) features for the digit classifier."""
    if isinstance(model, nn.RNNBase):
        x = raw
    elif hasattr(model, "vocab_size"):
        emb = getattr(model, "embed", None)
        x = nn.functional.one_hot(raw, model.vocab_size) if emb is None else emb(raw)
    else:
        norm = getattr(model, "norm", None)
        x = raw if norm is None else norm(raw.to(next(model.parameters()).dtype))
    return x.detach().to(torch.float64)


# ------------------------------------------------------------------------------ cells
GATES: dict[str, dict[str, str]] = {
    "RNN_TANH": {"a": "tanh"},
    "RNN_RELU": {"a": "relu"},
    "GRU": {"r": "sigmoid", "z": "sigmoid", "n": "tanh"},
    "LSTM": {"i": "sigmoid", "f": "sigmoid", "g": "tanh", "o": "sigmoid"},
}


@dataclass(frozen=True)
class CellWeights:
    """One layer's (quantized) weights in float64 and its step function ``s' = step(x, s)``."""

    mode: str  # RNN_TANH | RNN_RELU | GRU | LSTM
    hidden: int
    w_ih: Tensor
    w_hh: Tensor
    b_ih: Tensor | None
    b_hh: Tensor | None
    gains: tuple[Tensor, Tensor] | None = None  # layer norm (g_ih, g_hh), if the layer has it

    @property
    def state_size(self) -> int:
        return 2 * self.hidden if self.mode == "LSTM" else self.hidden

    def step(self, x: Tensor, s: Tensor) -> Tensor:
        """One reference-cell step on a flat state (LSTM: ``s = [h; c]``)."""
        w = (self.w_ih, self.w_hh, self.b_ih, self.b_hh)
        if self.mode == "LSTM":
            h, c = lstm_cell(x, s.split(self.hidden, dim=-1), *w, gains=self.gains)
            return torch.cat([h, c], dim=-1)
        if self.mode == "GRU":
            return gru_cell(x, s, *w, gains=self.gains)
        nonlinearity = "relu" if self.mode == "RNN_RELU" else "tanh"
        return rnn_cell(x, s, *w, nonlinearity=nonlinearity, gains=self.gains)

    def h(self, s: Tensor) -> Tensor:
        return s[..., : self.hidden]


def cell_weights(layer: nn.RNNBase, index: int = 0) -> CellWeights:
    """Deterministic quantized weights (``quantized_parameters(False)``; a plain ``torch.nn``
    layer: its parameters) of layer ``index``, float64, detached."""
    if layer.bidirectional:
        raise ValueError("the Jacobian analysis supports unidirectional layers only")
    if hasattr(layer, "quantized_parameters"):
        with torch.no_grad():
            q = layer.quantized_parameters(False)
    else:
        q = {n: getattr(layer, n) for n in layer._flat_weights_names}
    w = [q.get(f"{k}_l{index}") for k in ("weight_ih", "weight_hh", "bias_ih", "bias_hh")]
    w = [None if t is None else t.detach().to(torch.float64) for t in w]
    gains = None
    if getattr(layer, "layer_norm", False):
        g = layer.layer_norm_gains()[f"_l{index}"]
        gains = tuple(t.detach().to(torch.float64) for t in g)
    return CellWeights(layer.mode, layer.hidden_size, *w, gains=gains)


@torch.no_grad()
def trajectory(cw: CellWeights, x: Tensor) -> Tensor:
    """States ``s_0 = 0, s_1, ..., s_T`` (T+1, S) for inputs ``x`` (T, I)."""
    s = x.new_zeros(cw.state_size, dtype=torch.float64)
    out = [s]
    for xt in x.to(torch.float64):
        s = cw.step(xt, s)
        out.append(s)
    return torch.stack(out)


def layer_trajectories(layer: nn.RNNBase, x: Tensor, index: int = 0):
    """``(cell weights, input (T, I), states (T+1, S))`` of layer ``index`` of a stack driven
    by ``x`` (the input of layer 0)."""
    for k in range(index + 1):
        cw = cell_weights(layer, k)
        states = trajectory(cw, x)
        if k < index:
            x = cw.h(states[1:])
    return cw, x.to(torch.float64), states


# ------------------------------------------------------------------------------ Jacobians
def _jacobian_chunks(
    cw: CellWeights, x: Tensor, states: Tensor, chunk: int | None = None
) -> Iterator[tuple[int, Tensor]]:
    """``(t0, J[t0:t1])`` from the last chunk to the first (J_t for steps t0+1..t1).

    All rows of every J_t from one reverse-mode pass (``torch.func.vjp``): the step is applied
    to S copies of the states (steps and copies are independent), and copy i gets the
    cotangent e_i, so its gradient is row i, ``e_i^T J_t``. ``chunk``: steps per pass
    (default: about 2^26 intermediate values)."""
    T, S = len(x), cw.state_size
    if chunk is None:
        chunk = max(1, min(T, 2**26 // (S * cw.w_hh.shape[0])))
    for t1 in range(T, 0, -chunk):
        t0 = max(0, t1 - chunk)
        n = t1 - t0
        xs = x[t0:t1].expand(S, n, x.shape[1])
        prev = states[t0:t1].expand(S, n, S)
        _, vjp = torch.func.vjp(lambda s, xs=xs: cw.step(xs, s), prev)
        basis = torch.eye(S, dtype=prev.dtype).unsqueeze(1).expand(S, n, S)
        (rows,) = vjp(basis)  # rows[i, t] = e_i^T J_t
        yield t0, rows.permute(1, 0, 2).detach()


def step_jacobians(cw: CellWeights, x: Tensor, states: Tensor, chunk: int | None = None) -> Tensor:
    """``J_t = d s_t / d s_{t-1}`` for t = 1..T as (T, S, S), by ``torch.func`` (reverse
    mode through the reference cell, weights held constant)."""
    parts = dict(_jacobian_chunks(cw, x, states, chunk))
    return torch.cat([parts[t0] for t0 in sorted(parts)])


def product_log_norms(jacobians: Iterable[Tensor]) -> Tensor:
    """``log10 ||J_T J_{T-1} ... J_{T-k+1}||_2`` for k = 1..K, given the Jacobians in
    reverse time order (J_T first). Renormalized every step: no overflow; -inf once zero."""
    out: list[float] = []
    p, log = None, 0.0
    for j in jacobians:
        p = j if p is None else p @ j
        n = float(torch.linalg.matrix_norm(p, ord=2)) if math.isfinite(log) else 0.0
        log = log + math.log10(n) if n > 0 else -math.inf
        out.append(log)
        if n > 0:
            p = p / n
    return torch.tensor(out, dtype=torch.float64)


# ------------------------------------------------------------------------------ gates
def gate_preactivations(cw: CellWeights, x: Tensor, states: Tensor) -> dict[str, Tensor]:
    """Pre-activations (T, H) of every gate, in the equations of :mod:`qrnn.cells`: RNN ``a``;
    GRU ``r, z`` and ``n = x_n + r * h_n``; LSTM ``i, f, g, o``."""

    from .cells import _pre  # the cells' own affine maps, layer-norm gains included

    h = cw.h(states[:-1])
    gx, gh = _pre(x, h, cw.w_ih, cw.w_hh, cw.b_ih, cw.b_hh, cw.gains)
    names = list(GATES[cw.mode])
    if cw.mode == "GRU":
        (xr, xz, xn), (hr, hz, hn) = gx.chunk(3, -1), gh.chunk(3, -1)
        return {"r": xr + hr, "z": xz + hz, "n": xn + torch.sigmoid(xr + hr) * hn}
    return dict(zip(names, (gx + gh).chunk(len(names), -1), strict=True))


def saturated(a: Tensor, kind: str, tol: float = 0.01) -> Tensor:
    """Whether ``f'(a) / max f' < tol``: tanh ``1 - tanh^2``, sigmoid ``4 σ (1 - σ)``,
    relu ``a <= 0``."""
    if kind == "tanh":
        return 1 - torch.tanh(a) ** 2 < tol
    if kind == "sigmoid":
        s = torch.sigmoid(a)
        return 4 * s * (1 - s) < tol
    if kind == "relu":
        return a <= 0
    raise ValueError(f"unknown nonlinearity {kind!r}")


# ------------------------------------------------------------------------------ noise
@torch.no_grad()
def rounding_moments(
    q: Quantizer,
    w: Tensor,
    stochastic: bool,
    fan_in: int | None = None,
    fan_out: int | None = None,
) -> tuple[Tensor, Tensor]:
    """Per-weight mean and variance of ``W_q`` (float64). Deterministic: ``(q(w), 0)``.

    Stochastic (clip(·) is the method's range; bias = mean - w, zero inside the range):

    * binary: mean ``clip(w, -H, H)``, var ``H^2 - mean^2`` (``H^2 - w^2``);
    * ternary: p = clip(|w|/W0, 0, 1): mean ``W0 sign(w) p``, var ``W0^2 p(1-p)``
      (``W0|w| - w^2``);
    * pow2-ternary, grid step s: x = clip(w); lo = s floor(x/s): mean ``x``,
      var ``(x - lo)(lo + s - x)``;
    * exponential: a = |w|, k = floor(log2 a), p = a/2^k - 1, exponents k, k+1 clipped to
      [min_exp, max_exp] (e_lo, e_hi): mean ``sign(w)(2^e_lo (1-p) + 2^e_hi p)``, var
      ``(2^e_hi - 2^e_lo)^2 p(1-p)`` (``(|w| - 2^k)(2^(k+1) - |w|)``); w = 0 gives
      ``-2^min_exp`` exactly.
    """
    w = w.detach().to(torch.float64)
    if q.name == "float" or not stochastic:
        return q(w, False, fan_in=fan_in, fan_out=fan_out).detach(), torch.zeros_like(w)
    if q.name == "binary":
        h = q.scale(w, fan_in, fan_out)
        mean = w.clamp(-h, h)
        return mean, h**2 - mean**2
    if q.name == "ternary":
        w0 = q.scale(w, fan_in, fan_out)
        p = (w.abs() / w0).clamp(0, 1)
        return w0 * torch.sign(w) * p, w0**2 * p * (1 - p)
    if q.name == "pow2-ternary":
        s = 2.0 ** -q.options["fractional_bits"]
        x = w.clamp(-q.clip_bound(w), q.clip_bound(w))
        lo = torch.floor(x / s) * s
        return x, (x - lo) * (lo + s - x)
    lo_e, hi_e = q.options["min_exp"], q.options["max_exp"]
    a = w.abs()
    zero = a == 0
    k = torch.floor(torch.log2(torch.where(zero, 1.0, a)))
    p = a / torch.exp2(k) - 1
    v_lo, v_hi = torch.exp2(k.clamp(lo_e, hi_e)), torch.exp2((k + 1).clamp(lo_e, hi_e))
    sign = torch.where(w > 0, 1.0, -1.0).to(w.dtype)
    mean = torch.where(zero, -(2.0**lo_e), sign * (v_lo * (1 - p) + v_hi * p))
    var = torch.where(zero, 0.0, (v_hi - v_lo) ** 2 * p * (1 - p))
    return mean, var


_NOISE_COLUMNS = [
    "t",
    "matrix",
    "measured_var",
    "predicted_var",
    "measured_bias_sq",
    "predicted_bias_sq",
]


@torch.no_grad()
def preactivation_noise(
    layer: nn.RNNBase,
    x: Tensor,
    states: Tensor,
    index: int = 0,
    stochastic: bool = True,
    n_draws: int = 200,
    seed: int = 0,
) -> pd.DataFrame:
    """Noise ``e = (W_q - W) v`` in the pre-activations at every step, per source (``ih``:
    ``v = x_t``; ``hh``: ``v = h_{t-1}``; ``bias``: both biases; ``total``: their sum),
    averaged over the G gate units: measured over ``n_draws`` draws of ``W_q`` (variance,
    squared mean) against the formula (``Σ_j Var(W_q,ij) v_j^2``, ``(Σ_j bias_ij v_j)^2``).

    Deterministic methods draw once: variance 0, bias exact. Weight-normalized layers: NaN.
    """
    T = len(x)
    if getattr(layer, "weight_norm", False):
        nan = float("nan")
        rows = [(t, m, nan, nan, nan, nan) for t in range(1, T + 1) for m in _SOURCES]
        return pd.DataFrame(rows, columns=_NOISE_COLUMNS)
    q = getattr(layer, "quantizer", quantizer("float"))
    stochastic = stochastic and q.name != "float"
    h_prev = states[:-1, : layer.hidden_size]
    vs = {"ih": x.T, "hh": h_prev.T, "bias": x.new_ones(1, T)}
    params = {}  # name -> (source, shadow, fans)
    for name in (f"{k}_l{index}" for k in ("weight_ih", "weight_hh", "bias_ih", "bias_hh")):
        if not hasattr(layer, name):
            continue
        src = "bias" if name.startswith("bias") else name.split("_")[1]
        quantized = getattr(layer, "is_quantized", lambda n: False)(name)
        fans = layer.param_fans(name) if quantized else (None, None)
        params[name] = (src, getattr(layer, name).detach().to(torch.float64), fans, quantized)

    def apply(src, d):  # (G,) or (G, J) deviation -> (G, T)
        return d.unsqueeze(1).expand(-1, T) if d.dim() == 1 else d @ vs[src]

    pred_var, pred_bias = {}, {}
    for src, w, fans, quantized in params.values():
        mean, var = rounding_moments(q if quantized else quantizer("float"), w, stochastic, *fans)
        sq = {"ih": x.T**2, "hh": h_prev.T**2, "bias": vs["bias"]}[src]
        pv = var.unsqueeze(1).expand(-1, T) if var.dim() == 1 else var @ sq
        pred_var[src] = pred_var.get(src, 0) + pv
        pred_bias[src] = pred_bias.get(src, 0) + apply(src, mean - w)
    gen = torch.Generator().manual_seed(seed)
    draws = n_draws if stochastic else 1
    s1: dict[str, Tensor] = {}
    s2: dict[str, Tensor] = {}
    for _ in range(draws):
        e: dict[str, Tensor] = {}
        for src, w, fans, quantized in params.values():
            wq = q(w, stochastic, gen, fan_in=fans[0], fan_out=fans[1]) if quantized else w
            e[src] = e.get(src, 0) + apply(src, wq.detach() - w)
        e["total"] = sum(e.values())
        for k, v in e.items():
            s1[k], s2[k] = s1.get(k, 0) + v, s2.get(k, 0) + v**2
    pred_var["total"] = sum(pred_var.values())
    pred_bias["total"] = sum(pred_bias.values())
    rows = []
    for src in _SOURCES:
        if src not in s1:
            continue
        m1 = s1[src] / draws
        mv = (s2[src] - draws * m1**2) / (draws - 1) if draws > 1 else torch.zeros_like(m1)
        cols = [mv.mean(0), pred_var[src].mean(0), (m1**2).mean(0), (pred_bias[src] ** 2).mean(0)]
        for t in range(T):
            rows.append((t + 1, src, *(float(c[t]) for c in cols)))
    return pd.DataFrame(rows, columns=_NOISE_COLUMNS)


_SOURCES = ("ih", "hh", "bias", "total")


# ------------------------------------------------------------------------------ weights
@torch.no_grad()
def weight_frame(layer: nn.RNNBase, index: int = 0, max_values: int = 20000, seed: int = 0):
    """Long table (matrix, weights: shadow | quantized, value) of layer ``index``'s matrices,
    at most ``max_values`` sampled entries per matrix (the same entries for both kinds)."""
    q = layer.quantized_parameters(False) if hasattr(layer, "quantized_parameters") else {}
    gen = torch.Generator().manual_seed(seed)
    frames = []
    for name in (f"weight_ih_l{index}", f"weight_hh_l{index}"):
        w = getattr(layer, name).detach().flatten()
        pick = torch.randperm(w.numel(), generator=gen)[:max_values]
        for kind, t in (("shadow", w), ("quantized", q.get(name, w).detach().flatten())):
            v = t[pick].to(torch.float64).numpy()
            frames.append(pd.DataFrame({"matrix": name, "weights": kind, "value": v}))
    return pd.concat(frames, ignore_index=True)


# ------------------------------------------------------------------------------ analysis
@dataclass
class Analysis:
    """Everything measured for one model over one sequence (see the module docstring)."""

    method: str
    origin: str  # "init" or a run id
    mode: str
    hidden: int
    states: Tensor  # (T+1, S)
    singular_values: Tensor  # (T, S), descending
    log10_product_norms: Tensor  # (T,): k = 1..T
    preactivations: dict[str, Tensor]  # gate -> (T, H)
    saturation: dict[str, float]  # gate -> saturated fraction
    noise: pd.DataFrame
    weights: pd.DataFrame
    zero_fraction: float  # quantized matrix entries that are exactly 0
    recurrent_norm: float  # mean spectral norm of the gate blocks of W_hh (quantized)

    @property
    def steps(self) -> int:
        return len(self.log10_product_norms)


def analyze(
    model: nn.Module,
    x: Tensor,
    method: str | Method | None = None,
    *,
    origin: str = "init",
    index: int = 0,
    tol: float = 0.01,
    n_draws: int = 200,
    seed: int = 0,
    chunk: int | None = None,
    max_values: int = 20000,
) -> Analysis:
    """Analyze layer ``index`` of ``model`` over the layer-0 input ``x`` (T, I) (see
    :func:`layer_input`). ``method`` decides stochastic noise draws (default: the layer's
    ``stochastic`` flag)."""
    layer = recurrent_layer(model)
    label = method.label if isinstance(method, Method) else method
    stochastic = get_method(method).stochastic if method else getattr(layer, "stochastic", False)
    cw, xi, states = layer_trajectories(layer, x, index)
    svals: list[Tensor] = []

    def backwards():  # J_T, J_{T-1}, ..., J_1, one chunk in memory at a time
        for _, j in _jacobian_chunks(cw, xi, states, chunk):
            svals.insert(0, torch.linalg.svdvals(j))
            yield from j.flip(0)

    norms = product_log_norms(backwards())
    pre = gate_preactivations(cw, xi, states)
    sat = {g: float(saturated(a, GATES[cw.mode][g], tol).double().mean()) for g, a in pre.items()}
    noise = preactivation_noise(layer, xi, states, index, stochastic, n_draws, seed)
    mats = (cw.w_ih, cw.w_hh)
    zeros = sum(int((m == 0).sum()) for m in mats) / sum(m.numel() for m in mats)
    blocks = cw.w_hh.split(cw.hidden, dim=0)
    rnorm = float(torch.stack([torch.linalg.matrix_norm(b, ord=2) for b in blocks]).mean())
    return Analysis(
        method=label or getattr(layer, "scheme", "float"),
        origin=origin,
        mode=cw.mode,
        hidden=cw.hidden,
        states=states,
        singular_values=torch.cat(svals),
        log10_product_norms=norms,
        preactivations=pre,
        saturation=sat,
        noise=noise,
        weights=weight_frame(layer, index, max_values, seed),
        zero_fraction=zeros,
        recurrent_norm=rnorm,
    )


# ------------------------------------------------------------------------------ tables
def _each(analyses: Iterable[Analysis] | Mapping[str, Analysis]) -> list[Analysis]:
    return list(analyses.values()) if isinstance(analyses, Mapping) else list(analyses)


def summary_table(analyses: Iterable[Analysis] | Mapping[str, Analysis]) -> pd.DataFrame:
    """One row per method: median top singular value of J_t, log10 of the k = T product
    norm, saturated fraction and std of all gate pre-activations, mean measured and
    predicted total pre-activation noise variance (and their ratio), root-mean-square noise
    bias, fraction of zero weights, mean spectral norm of the W_hh gate blocks."""
    rows = []
    for a in _each(analyses):
        pre = torch.cat([p.flatten() for p in a.preactivations.values()])
        tot = a.noise[a.noise["matrix"] == "total"]
        meas, pred = tot["measured_var"].mean(), tot["predicted_var"].mean()
        rows.append(
            {
                "method": a.method,
                "origin": a.origin,
                "cell": a.mode,
                "hidden": a.hidden,
                "steps": a.steps,
                "top_sv_median": float(a.singular_values[:, 0].median()),
                "log10_product_norm_T": float(a.log10_product_norms[-1]),
                "saturation": sum(a.saturation.values()) / len(a.saturation),
                "preact_std": float(pre.std()),
                "noise_var_measured": meas,
                "noise_var_predicted": pred,
                "noise_ratio": meas / pred if pred > 0 else float("nan"),
                "noise_bias_rms": math.sqrt(tot["measured_bias_sq"].mean()),
                "zero_fraction": a.zero_fraction,
                "recurrent_norm": a.recurrent_norm,
            }
        )
    return pd.DataFrame(rows)


def _frame(analyses, make: Callable[[Analysis], pd.DataFrame]) -> pd.DataFrame:
    frames = [make(a).assign(method=a.method) for a in _each(analyses)]
    return pd.concat(frames, ignore_index=True)


def spectra_frame(analyses, quantiles=(0.1, 0.5, 0.9)) -> pd.DataFrame:
    """Singular-value spectrum per method: rank i (1 = largest) and quantiles over steps."""

    def make(a):
        qs = torch.quantile(a.singular_values, torch.tensor(quantiles, dtype=torch.float64), 0)
        d = {"rank": range(1, a.singular_values.shape[1] + 1)}
        d.update({f"q{round(100 * p)}": qs[i].numpy() for i, p in enumerate(quantiles)})
        return pd.DataFrame(d)

    return _frame(analyses, make)


def product_frame(analyses) -> pd.DataFrame:
    """log10 ||d s_T / d s_{T-k}||_2 per method and k."""
    return _frame(
        analyses,
        lambda a: pd.DataFrame(
            {"k": range(1, a.steps + 1), "log10_norm": a.log10_product_norms.numpy()}
        ),
    )


def saturation_frame(analyses) -> pd.DataFrame:
    """Saturated fraction and pre-activation std per method and gate."""
    return _frame(
        analyses,
        lambda a: pd.DataFrame(
            [
                {"gate": g, "saturation": a.saturation[g], "preact_std": float(p.std())}
                for g, p in a.preactivations.items()
            ]
        ),
    )


def noise_frame(analyses) -> pd.DataFrame:
    """The per-step noise tables of :func:`preactivation_noise`, stacked."""
    return _frame(analyses, lambda a: a.noise)


def weights_frame(analyses) -> pd.DataFrame:
    """The weight samples of :func:`weight_frame`, stacked."""
    return _frame(analyses, lambda a: a.weights)
