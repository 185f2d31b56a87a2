"""Reference recurrent cells in plain PyTorch: one time step, one line per equation.

The cells of Ott et al. 2016, *Recurrent Neural Networks With Limited Numerical Precision*,
https://arxiv.org/abs/1608.06902, written as ``book/cells.md`` writes them: each equation sits
as a comment above the line that computes it (``W``, ``b``: the quantized copies ``W_q = q(W)``).

These are the test oracle for the fused layers and the functions differentiated by the Jacobian
analyses (``torch.func`` cannot differentiate twice through cuDNN or the fused CPU op). The
equations and gate order are those of ``torch.nn``; ``W_q`` are whatever matrices are passed in
(quantized or not). ``x``: (B, I); ``h``, ``c``: (B, H).

``gains=(g_ih, g_hh)`` (each (G, H), G gate blocks) turns on layer normalization of the two
pre-activations (Ba et al. 2016; Hou et al. 2019 for quantized LSTMs): each H-wide gate block of
``W_ih x`` and of ``W_hh h`` is normalized to zero mean and unit variance over its H units and
scaled by its gain, before the bias is added.
"""

from __future__ import annotations

import torch
from torch import Tensor, nn
from torch.nn.utils.rnn import PackedSequence, pack_padded_sequence, pad_packed_sequence

__all__ = [
    "block_layer_norm",
    "gru_cell",
    "gru_update",
    "lstm_cell",
    "lstm_update",
    "reference_forward",
    "rnn_cell",
    "rnn_update",
]

LN_EPS = 1e-5


def block_layer_norm(a: Tensor, gain: Tensor) -> Tensor:
    """Layer norm of each gate block: ``a`` (..., G*H), ``gain`` (G, H);
    ``LN(a)_k = g_k (a_k - mean) / sqrt(var + eps)`` with mean and var over the block's H units."""
    G, H = gain.shape
    blocks = a.unflatten(-1, (G, H))
    return (nn.functional.layer_norm(blocks, (H,), eps=LN_EPS) * gain).flatten(-2)


def _affine(x: Tensor, w: Tensor, b: Tensor | None, gain: Tensor | None = None) -> Tensor:
    a = x @ w.T
    if gain is not None:
        a = block_layer_norm(a, gain)
    return a if b is None else a + b


def preactivation_terms(x, h, w_ih, w_hh, b_ih, b_hh, gains):
    """The input and recurrent terms of a pre-activation, ``W_ih x + b_ih`` and ``W_hh h + b_hh``
    (each layer-normalized per gate block with its gain when ``gains`` is given)."""
    g_ih, g_hh = gains if gains is not None else (None, None)
    return _affine(x, w_ih, b_ih, g_ih), _affine(h, w_hh, b_hh, g_hh)


def rnn_update(a: Tensor, nonlinearity: str = "tanh") -> Tensor:
    """The Elman RNN's new state from its pre-activation ``a_t`` (B, H)."""
    # h_t = tanh(a_t)  (or relu(a_t))
    return torch.tanh(a) if nonlinearity == "tanh" else torch.relu(a)


def gru_update(xa: Tensor, ha: Tensor, h: Tensor) -> Tensor:
    """The GRU's new state from ``W_ih x_t + b_ih`` and ``W_hh h_(t-1) + b_hh`` (B, 3H each)."""
    xr, xz, xn = xa.chunk(3, dim=-1)  # (B, H) each
    hr, hz, hn = ha.chunk(3, dim=-1)
    # r_t = σ(W_ir x_t + b_ir + W_hr h_(t-1) + b_hr)  (reset gate)
    r = torch.sigmoid(xr + hr)
    # z_t = σ(W_iz x_t + b_iz + W_hz h_(t-1) + b_hz)  (update gate)
    z = torch.sigmoid(xz + hz)
    # n_t = tanh(W_in x_t + b_in + r_t ⊙ (W_hn h_(t-1) + b_hn))  (candidate state)
    n = torch.tanh(xn + r * hn)
    # h_t = (1 - z_t) ⊙ n_t + z_t ⊙ h_(t-1)
    return (1 - z) * n + z * h


def lstm_update(a: Tensor, c: Tensor) -> tuple[Tensor, Tensor]:
    """The LSTM's new (h, c) from its pre-activations ``a_t`` (B, 4H) and ``c_(t-1)``."""
    gi, gf, gg, go = a.chunk(4, dim=-1)  # (B, H) each
    # i_t = σ(W_ii x_t + b_ii + W_hi h_(t-1) + b_hi)  (input gate)
    i = torch.sigmoid(gi)
    # f_t = σ(W_if x_t + b_if + W_hf h_(t-1) + b_hf)  (forget gate)
    f = torch.sigmoid(gf)
    # g_t = tanh(W_ig x_t + b_ig + W_hg h_(t-1) + b_hg)  (cell candidate)
    g = torch.tanh(gg)
    # o_t = σ(W_io x_t + b_io + W_ho h_(t-1) + b_ho)  (output gate)
    o = torch.sigmoid(go)
    # c_t = f_t ⊙ c_(t-1) + i_t ⊙ g_t
    c = f * c + i * g
    # h_t = o_t ⊙ tanh(c_t)
    return o * torch.tanh(c), c


def rnn_cell(x, h, w_ih, w_hh, b_ih=None, b_hh=None, nonlinearity="tanh", gains=None) -> Tensor:
    """Elman RNN: h' = f(W_ih x + b_ih + W_hh h + b_hh), f = tanh or relu."""
    # W_ih x_t + b_ih,  W_hh h_(t-1) + b_hh  (each (B, H); layer-normalized first with gains)
    xa, ha = preactivation_terms(x, h, w_ih, w_hh, b_ih, b_hh, gains)
    # a_t = W_ih x_t + b_ih + W_hh h_(t-1) + b_hh
    return rnn_update(xa + ha, nonlinearity)


def gru_cell(x, h, w_ih, w_hh, b_ih=None, b_hh=None, gains=None) -> Tensor:
    """GRU (torch.nn convention, gate order r, z, n; Lasagne writes u = 1 - z)."""
    # W_ih x_t + b_ih,  W_hh h_(t-1) + b_hh  (each (B, 3H); layer-normalized first with gains)
    xa, ha = preactivation_terms(x, h, w_ih, w_hh, b_ih, b_hh, gains)
    return gru_update(xa, ha, h)


def lstm_cell(x, state, w_ih, w_hh, b_ih=None, b_hh=None, gains=None) -> tuple[Tensor, Tensor]:
    """LSTM (gate order i, f, g, o): returns (h', c')."""
    h, c = state
    # W_ih x_t + b_ih,  W_hh h_(t-1) + b_hh  (each (B, 4H); layer-normalized first with gains)
    xa, ha = preactivation_terms(x, h, w_ih, w_hh, b_ih, b_hh, gains)
    # a_t = W_ih x_t + b_ih + W_hh h_(t-1) + b_hh
    return lstm_update(xa + ha, c)


def _reference_weights(layer: nn.RNNBase, weights, pre) -> dict:
    """The matrices the cells use: none with ``pre``; else ``weights``, by default the layer's
    deterministic quantized weights ``W_q = q(W)`` (its parameters for a ``torch.nn`` layer)."""
    if pre is not None:
        return {}
    if weights is not None:
        return weights
    if hasattr(layer, "quantized_parameters"):
        return layer.quantized_parameters(False)
    return {n: getattr(layer, n) for n in layer._flat_weights_names}


def _cell_step(layer: nn.RNNBase, weights: dict, gains, pre):
    """``step(x_t, state, suffix) -> state'``: one time step of the layer's cell for the
    weights of ``suffix`` (``_l0``, ``_l0_reverse``, ...), or the cell's update from the
    caller's pre-activations ``pre``."""
    lstm = layer.mode == "LSTM"

    def step(xt, state, sfx):
        if pre is not None:  # the caller's pre-activations, the cells' updates
            xa, ha = pre(xt, state[0] if lstm else state, sfx)
            if layer.mode == "GRU":
                return gru_update(xa, ha, state)
            a = xa if ha is None else xa + ha
            return lstm_update(a, state[1]) if lstm else rnn_update(a, layer.nonlinearity)
        w = [weights.get(f"{k}{sfx}") for k in ("weight_ih", "weight_hh", "bias_ih", "bias_hh")]
        g = None if gains is None else gains[sfx]
        if lstm:
            return lstm_cell(xt, state, *w, gains=g)
        if layer.mode == "GRU":
            return gru_cell(xt, state, *w, gains=g)
        return rnn_cell(xt, state, *w, nonlinearity=layer.nonlinearity, gains=g)

    return step


def _time_major(layer: nn.RNNBase, input):
    """The input as ``x`` (T, B, I) with its packing and lengths (``None`` unless packed) and
    whether it came unbatched ((T, I), given a batch of one)."""
    packed = input if isinstance(input, PackedSequence) else None
    lengths = None
    if packed is not None:  # (T, B, I) in the caller's batch order, plus the lengths
        x, lengths = pad_packed_sequence(packed)
    else:
        x = input.transpose(0, 1) if layer.batch_first else input  # (T, B, I)
    unbatched = x.dim() == 2
    if unbatched:
        x = x.unsqueeze(1)
    return x, packed, lengths, unbatched


def _initial_state(layer: nn.RNNBase, x: Tensor, hx, unbatched: bool):
    """``(h_0, c_0)``, each (layers * directions, B, H): ``hx`` or zeros (``c_0`` None
    unless LSTM)."""
    lstm = layer.mode == "LSTM"
    dirs = 2 if layer.bidirectional else 1
    zeros = x.new_zeros(layer.num_layers * dirs, x.shape[1], layer.hidden_size)
    if hx is None:
        hx = (zeros, zeros.clone()) if lstm else zeros
    elif unbatched:
        hx = tuple(s.unsqueeze(1) for s in hx) if lstm else hx.unsqueeze(1)
    return hx if lstm else (hx, None)


def _run_direction(step, x: Tensor, state, sfx: str, valid, lstm: bool, reverse: bool):
    """One direction of one layer through time, ``state_t = step(x_t, state_(t-1))`` (from
    ``t = T`` down with ``reverse``): the outputs ``h_t`` stacked (T, B, H) and the last state.
    ``valid[t]`` (B, 1) False on padding: there the state is kept and the output is zero."""
    T = len(x)
    ys = [None] * T
    for t in range(T - 1, -1, -1) if reverse else range(T):
        new = step(x[t], state, sfx)
        if valid is not None:  # padded steps keep the state (and output zeros)
            m = valid[t].to(x.device)
            new = (
                tuple(torch.where(m, a, b) for a, b in zip(new, state, strict=True))
                if lstm
                else torch.where(m, new, state)
            )
        state = new
        y = state[0] if lstm else state
        ys[t] = y if valid is None else y * valid[t].to(x.device)
    return torch.stack(ys), state


def _caller_layout(
    layer: nn.RNNBase, out: Tensor, h_n: list, c_n: list, packed, lengths, unbatched
):
    """The outputs (T, B, dirs * H) and final states back in the caller's layout: unbatched,
    packed as the input was (same batch_sizes and indices) or batch first; ``torch.nn``'s
    ``(out, h_n)`` or, for the LSTM, ``(out, (h_n, c_n))``."""
    lstm = layer.mode == "LSTM"
    h_n = torch.stack(h_n)
    c_n = torch.stack(c_n) if lstm else None
    if unbatched:
        out, h_n = out.squeeze(1), h_n.squeeze(1)
        c_n = c_n.squeeze(1) if lstm else None
    elif packed is not None:  # back to the caller's packing (same batch_sizes and indices)
        order = packed.sorted_indices
        sorted_out = out if order is None else out[:, order.to(out.device)]
        sorted_len = lengths if order is None else lengths[order.cpu()]
        data = pack_padded_sequence(sorted_out, sorted_len, enforce_sorted=True).data
        out = PackedSequence(
            data, packed.batch_sizes, packed.sorted_indices, packed.unsorted_indices
        )
    elif layer.batch_first:
        out = out.transpose(0, 1)
    return (out, (h_n, c_n)) if lstm else (out, h_n)


def reference_forward(
    layer: nn.RNNBase, input, hx=None, weights=None, gains=None, *, pre=None, dropout=True
):
    """Run ``layer`` (a ``torch.nn`` or ``qrnn`` recurrent layer) with a Python time loop over
    the reference cells. Same inputs and outputs as the layer, packed sequences included;
    dropout between stacked layers in training mode as in ``torch.nn`` (``dropout=False``: none).

    ``weights``: ``{name: tensor}``; default: the layer's deterministic quantized weights
    (``layer.quantized_parameters(False)`` for qrnn layers, the parameters otherwise).
    ``gains``: ``{suffix: (g_ih, g_hh)}`` (suffix ``_l0``, ``_l0_reverse``, ...) to layer-normalize
    the pre-activations; default: the layer's own (``layer.layer_norm_gains()``) if it has them.
    ``pre(x_t, h, suffix) -> (xa, ha)``: computes the pre-activations ``W_ih x_t + b_ih`` and
    ``W_hh h + b_hh`` instead of the cells' affine maps (the integer path of
    ``qrnn.hardware``); ``ha`` None means ``xa`` is already their sum (RNN, LSTM).
    """
    weights = _reference_weights(layer, weights, pre)
    if gains is None and getattr(layer, "layer_norm", False):
        gains = layer.layer_norm_gains()
    step = _cell_step(layer, weights, gains, pre)
    lstm = layer.mode == "LSTM"
    dirs = 2 if layer.bidirectional else 1
    x, packed, lengths, unbatched = _time_major(layer, input)
    T = x.shape[0]
    # valid[t]: (B, 1) True while t < length (always True without packing)
    valid = None if packed is None else (torch.arange(T).unsqueeze(1) < lengths).unsqueeze(-1)
    h0, c0 = _initial_state(layer, x, hx, unbatched)
    h_n, c_n = [], []
    for k in range(layer.num_layers):
        if k and dropout and layer.dropout and layer.training:
            x = nn.functional.dropout(x, layer.dropout, training=True)
        outs = []
        for d in range(dirs):
            idx = k * dirs + d
            sfx = f"_l{k}" + ("_reverse" if d else "")
            state = (h0[idx], c0[idx]) if lstm else h0[idx]
            ys, state = _run_direction(step, x, state, sfx, valid, lstm, reverse=bool(d))
            outs.append(ys)
            h_n.append(state[0] if lstm else state)
            if lstm:
                c_n.append(state[1])
        x = torch.cat(outs, dim=-1)  # (T, B, dirs * H)
    return _caller_layout(layer, x, h_n, c_n, packed, lengths, unbatched)
