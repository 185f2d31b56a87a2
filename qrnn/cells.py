"""Reference recurrent cells in plain PyTorch: one time step, one line per equation.

These are the test oracle for the fused layers and the functions differentiated by the Jacobian
analyses (``torch.func`` cannot differentiate twice through cuDNN or the fused CPU op). The
equations and gate order are those of ``torch.nn``; ``W_q`` are whatever matrices are passed in
(quantized or not). ``x``: (B, I); ``h``, ``c``: (B, H).
"""

from __future__ import annotations

import torch
from torch import Tensor, nn

__all__ = ["gru_cell", "lstm_cell", "reference_forward", "rnn_cell"]


def _affine(x: Tensor, w: Tensor, b: Tensor | None) -> Tensor:
    return x @ w.T if b is None else x @ w.T + b


def rnn_cell(x, h, w_ih, w_hh, b_ih=None, b_hh=None, nonlinearity="tanh") -> Tensor:
    """Elman RNN: h' = f(W_ih x + b_ih + W_hh h + b_hh), f = tanh or relu."""
    a = _affine(x, w_ih, b_ih) + _affine(h, w_hh, b_hh)  # pre-activation a_t
    return torch.tanh(a) if nonlinearity == "tanh" else torch.relu(a)


def gru_cell(x, h, w_ih, w_hh, b_ih=None, b_hh=None) -> Tensor:
    """GRU (torch.nn convention; Lasagne writes u = 1 - z)."""
    xr, xz, xn = _affine(x, w_ih, b_ih).chunk(3, dim=-1)
    hr, hz, hn = _affine(h, w_hh, b_hh).chunk(3, dim=-1)
    r = torch.sigmoid(xr + hr)  # reset gate
    z = torch.sigmoid(xz + hz)  # update gate
    n = torch.tanh(xn + r * hn)  # candidate state
    return (1 - z) * n + z * h  # h'


def lstm_cell(x, state, w_ih, w_hh, b_ih=None, b_hh=None) -> tuple[Tensor, Tensor]:
    """LSTM (gate order i, f, g, o): returns (h', c')."""
    h, c = state
    gi, gf, gg, go = (_affine(x, w_ih, b_ih) + _affine(h, w_hh, b_hh)).chunk(4, dim=-1)
    i = torch.sigmoid(gi)  # input gate
    f = torch.sigmoid(gf)  # forget gate
    g = torch.tanh(gg)  # cell candidate
    o = torch.sigmoid(go)  # output gate
    c = f * c + i * g  # c'
    return o * torch.tanh(c), c  # h', c'


def reference_forward(layer: nn.RNNBase, input: Tensor, hx=None, weights=None):
    """Run ``layer`` (a ``torch.nn`` or ``qrnn`` recurrent layer) with a Python time loop over
    the reference cells. Same inputs and outputs as the layer (no dropout, no packed input).

    ``weights``: ``{name: tensor}``; default: the layer's deterministic quantized weights
    (``layer.quantized_parameters(False)`` for qrnn layers, the parameters otherwise).
    """
    if weights is None:
        if hasattr(layer, "quantized_parameters"):
            weights = layer.quantized_parameters(False)
        else:
            weights = {n: getattr(layer, n) for n in layer._flat_weights_names}
    lstm = layer.mode == "LSTM"
    dirs = 2 if layer.bidirectional else 1
    x = input.transpose(0, 1) if layer.batch_first else input  # (T, B, I)
    unbatched = x.dim() == 2
    if unbatched:
        x = x.unsqueeze(1)
    T, B = x.shape[:2]
    zeros = x.new_zeros(layer.num_layers * dirs, B, layer.hidden_size)
    if hx is None:
        hx = (zeros, zeros.clone()) if lstm else zeros
    elif unbatched:
        hx = tuple(s.unsqueeze(1) for s in hx) if lstm else hx.unsqueeze(1)
    h0, c0 = hx if lstm else (hx, None)

    def step(xt, state, sfx):
        w = [weights.get(f"{k}{sfx}") for k in ("weight_ih", "weight_hh", "bias_ih", "bias_hh")]
        if lstm:
            return lstm_cell(xt, state, *w)
        if layer.mode == "GRU":
            return gru_cell(xt, state, *w)
        return rnn_cell(xt, state, *w, nonlinearity=layer.nonlinearity)

    h_n, c_n = [], []
    for k in range(layer.num_layers):
        outs = []
        for d in range(dirs):
            idx = k * dirs + d
            sfx = f"_l{k}" + ("_reverse" if d else "")
            state = (h0[idx], c0[idx]) if lstm else h0[idx]
            ys = [None] * T
            for t in range(T - 1, -1, -1) if d else range(T):
                state = step(x[t], state, sfx)
                ys[t] = state[0] if lstm else state
            outs.append(torch.stack(ys))
            h_n.append(state[0] if lstm else state)
            if lstm:
                c_n.append(state[1])
        x = torch.cat(outs, dim=-1)  # (T, B, dirs * H)
    out, h_n = x, torch.stack(h_n)
    c_n = torch.stack(c_n) if lstm else None
    if unbatched:
        out, h_n = out.squeeze(1), h_n.squeeze(1)
        c_n = c_n.squeeze(1) if lstm else None
    elif layer.batch_first:
        out = out.transpose(0, 1)
    return (out, (h_n, c_n)) if lstm else (out, h_n)
