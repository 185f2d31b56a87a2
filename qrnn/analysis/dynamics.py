"""The dynamics of one recurrent layer: its weights as the reference cells see them
(:class:`CellWeights`), the state trajectory, the step Jacobians ``J_t = d s_t / d s_(t-1)`` and
their products (gradient survival), gate pre-activations and saturation. Used to ask why
binarization fails in Ott et al. 2016, *Recurrent Neural Networks With Limited Numerical Precision*,
https://arxiv.org/abs/1608.06902.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Iterator
from dataclasses import dataclass

import torch
from torch import Tensor, nn

from ..cells import gru_cell, lstm_cell, rnn_cell

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
def jacobian_chunks(
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
    parts = dict(jacobian_chunks(cw, x, states, chunk))
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

    from ..cells import preactivation_terms  # the cells' own affine maps, layer-norm gains included

    h = cw.h(states[:-1])
    gx, gh = preactivation_terms(x, h, cw.w_ih, cw.w_hh, cw.b_ih, cw.b_hh, cw.gains)
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
