"""Multiplication-free inference of the quantized recurrent layers, operation counts and energy.

**Integer path** (:func:`integer_forward`, :func:`integer_model_forward`).
The two matrix-vector products of every step, ``W_ih x_t`` and ``W_hh h_{t-1}``, are computed
in integers without multiplying by a weight:

* activations ``x_t``, ``h_{t-1}`` are rounded to fixed point **Q16.16** (int32 values,
  ``frac_bits=16``, saturating at ±2^15); sums accumulate in int64;
* binary / ternary: ``y = s * (sum of x_j with code +1 - sum of x_j with code -1)``, zeros
  skipped; the one multiply per output by the per-tensor scale s (H or W0) is kept and counted
  (none when s = 1), its result rounded to Q16.16;
* pow2-ternary (Qm.f): ``n_ij x_j`` by shift-and-add over the bits of ``|n_ij|`` (one add for
  the default {-0.5, 0, 0.5}), then one arithmetic right shift by f per output;
* exponential: ``sum_j sign_ij * (x_j << e_ij)`` (``>> -e_ij``, arithmetic, for e < 0);
* biases are added as Q16.16 constants; the pre-activations are then converted to float32, and
  the gate nonlinearities and the element-wise gate products (activation x activation, not
  weights) stay in float32, as in the float layer.

Error bound per pre-activation against exact arithmetic on the same float activations and
quantized weights: ``2^-17 * sum_j |w_ij|`` (activation rounding) ``+ 2^-16`` per right-shifted
term (exponential, e < 0) ``+ 2^-16`` per pow2 output shift ``+ 2^-17`` per scale rounding and
per bias (:func:`preactivation_bound`). Over a sequence the rounding errors pass through the
state; the tests check the outputs on real PTB-char and FSDD inputs to ``1e-3``.

**Operation counts and energy** (:func:`step_ops`, :func:`energy_pj`).
Per time step and sequence (batch 1) of a recurrent layer (all layers and directions), counted
from the layer's actual quantized weights (zeros skipped, signs counted). Matrix-vector part per
output row: one add per nonzero term after the first, one per bias, one to join the input and
recurrent sums. Float weights: one fp32 multiply per weight. Element-wise gate arithmetic
(fp32 in every method): GRU 3H multiplies + 2H adds, LSTM 3H multiplies + H adds; nonlinearities
(RNN H, GRU 3H, LSTM 5H) are counted but not costed. Input one-hot vectors are counted as dense.

Energies (:data:`ENERGY_PJ`) are from M. Horowitz, "Computing's energy problem (and what we can
do about it)", ISSCC 2014, 45 nm, 0.9 V: 32-bit float add 0.9 pJ, 32-bit float multiply 3.7 pJ,
32-bit int add 0.1 pJ, 32-bit int multiply 3.1 pJ, 64-bit SRAM read (8 KB array) 10 pJ, DRAM
1.3-2.6 nJ per 64-bit access (we use 1.3 nJ). Our assumptions, not Horowitz's numbers: a shift
and a sign flip cost one 32-bit int add; weights are read once per step (from an 8 KB-class
SRAM, or from DRAM), activation reads and fixed/float conversions are not counted.

Part of ``qrnn``, the library and study after Ott et al. 2016, *Recurrent Neural Networks With
Limited Numerical Precision*, https://arxiv.org/abs/1608.06902.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import torch
from torch import Tensor, nn

from .cells import reference_forward
from .layers import QuantRNNBase

__all__ = [
    "ENERGY_PJ",
    "ENERGY_SOURCE",
    "FRAC_BITS",
    "energy_pj",
    "integer_forward",
    "integer_model_forward",
    "integer_preactivations",
    "preactivation_bound",
    "step_ops",
]

FRAC_BITS = 16  # activations in Q16.16
ENERGY_SOURCE = (
    "M. Horowitz, 'Computing's energy problem (and what we can do about it)', "
    "IEEE ISSCC 2014, pp. 10-14 (45 nm, 0.9 V)"
)
ENERGY_PJ = {
    "fp32_add": 0.9,
    "fp32_mult": 3.7,
    "int32_add": 0.1,
    "int32_mult": 3.1,
    "sram_64bit_read_8kb": 10.0,
    "dram_64bit_read": 1300.0,  # 1.3-2.6 nJ; the low end
}
_GATES = {"RNN_TANH": 1, "RNN_RELU": 1, "GRU": 3, "LSTM": 4}


# ---------------------------------------------------------------------------------- matrices
@dataclass
class _IntMatrix:
    """A weight matrix as shift/add terms: value_ij = post(sign_ij * sum_k [plane_k] 2^shift)."""

    scheme: str
    neg: np.ndarray  # (out, in) bool
    planes: list  # [(mask (out, in) bool, shift: int or (out, in) int array)]
    scale: float  # binary/ternary per-tensor multiply (1.0: none)
    post_shift: int  # pow2: arithmetic right shift by f per output
    values: np.ndarray  # float64 (out, in): the quantized weights (for bounds and checks)


def _int_matrix(w_q: Tensor, q, scale: float) -> _IntMatrix:
    w = w_q.detach().cpu().double().numpy()
    planes, s, post_shift = q.shift_add(w, scale)  # each method's own shift-add form
    return _IntMatrix(q.name, w < 0, planes, s, post_shift, w)


def _shift(x: np.ndarray, s) -> np.ndarray:
    if np.isscalar(s) or np.ndim(s) == 0:
        return x << int(s) if s >= 0 else x >> int(-s)
    return np.where(s >= 0, x << np.maximum(s, 0), x >> np.maximum(-s, 0))


def _int_matvec(x: np.ndarray, m: _IntMatrix, chunk: int = 1 << 22) -> np.ndarray:
    """(B, in) int64 Q16.16 -> (B, out) int64 Q16.16, with selects, negations, shifts, adds."""
    b, out = x.shape[0], m.neg.shape[0]
    acc = np.zeros((b, out), dtype=np.int64)
    step = max(1, chunk // max(1, m.neg.size))
    for lo in range(0, b, step):
        xb = x[lo : lo + step, None, :]  # (b', 1, in)
        for mask, s in m.planes:
            t = _shift(xb, s)  # (b', out|1, in)
            t = np.where(m.neg, -t, t)  # sign flip
            acc[lo : lo + step] += np.where(mask, t, 0).sum(-1)  # skip zeros, add
    if m.post_shift:
        acc >>= m.post_shift
    if m.scale != 1.0:  # one multiply per output by the per-tensor scale
        acc = np.rint(acc * m.scale).astype(np.int64)
    return acc


def _to_fixed(x: Tensor, frac_bits: int) -> np.ndarray:
    lim = 2**31 - 1
    v = np.rint(x.detach().cpu().double().numpy() * 2.0**frac_bits)
    return np.clip(v, -lim - 1, lim).astype(np.int64)


class _IntLayer:
    """The integer form of every matrix and bias of a quantized recurrent layer."""

    def __init__(self, layer: QuantRNNBase, frac_bits: int = FRAC_BITS) -> None:
        if not isinstance(layer, QuantRNNBase) or layer.scheme == "float":
            raise ValueError(
                "the integer path needs a qrnn recurrent layer with a quantized scheme"
            )
        if not (layer.quantize_input and layer.quantize_recurrent):
            raise ValueError("the integer path needs quantized input and recurrent matrices")
        self.layer, self.frac = layer, frac_bits
        w_q = layer.quantized_parameters(False)
        self.mats, self.bias = {}, {}
        for name in layer._flat_weights_names:
            if name.startswith("weight"):
                s = layer.quantizer.scale(getattr(layer, name), *layer.param_fans(name))
                self.mats[name] = _int_matrix(w_q[name], layer.quantizer, s)
            else:
                self.bias[name] = _to_fixed(w_q[name], frac_bits)

    def pre(self, x: Tensor, kind: str, sfx: str) -> np.ndarray:
        """Integer pre-activation W x + b (Q16.16) of matrix ``weight_<kind><sfx>``."""
        acc = _int_matvec(_to_fixed(x, self.frac), self.mats[f"weight_{kind}{sfx}"])
        b = self.bias.get(f"bias_{kind}{sfx}")
        return acc if b is None else acc + b

    def to_float(self, a: np.ndarray, like: Tensor) -> Tensor:
        return torch.from_numpy(a * 2.0**-self.frac).to(like.dtype)


def integer_preactivations(layer: QuantRNNBase, x: Tensor, h: Tensor, sfx: str = "_l0"):
    """``(W_ih x + b_ih, W_hh h + b_hh)`` of one step by the integer path, as float64 arrays."""
    il = _IntLayer(layer)
    return tuple(il.pre(v, k, sfx) * 2.0**-il.frac for v, k in ((x, "ih"), (h, "hh")))


def preactivation_bound(layer: QuantRNNBase, sfx: str = "_l0", frac_bits: int = FRAC_BITS):
    """Per-row error bound of :func:`integer_preactivations` (ih, hh) against exact arithmetic
    (see the module docstring); float64 arrays of shape (gates * hidden,)."""
    il = _IntLayer(layer, frac_bits)
    lsb, out = 2.0**-frac_bits, []
    for kind in ("ih", "hh"):
        m = il.mats[f"weight_{kind}{sfx}"]
        bound = 0.5 * lsb * np.abs(m.values).sum(1)
        if m.scheme == "exponential":
            bound += lsb * ((m.planes[0][1] < 0) & m.planes[0][0]).sum(1)
        bound += lsb if m.post_shift else 0.0
        bound += 0.5 * lsb * (m.scale != 1.0) + 0.5 * lsb * (f"bias_{kind}{sfx}" in il.bias)
        out.append(bound)
    return tuple(out)


# ---------------------------------------------------------------------------------- forward
def integer_forward(layer: QuantRNNBase, input: Tensor, hx=None):
    """Run a quantized recurrent layer with the integer matrix-vector products (module doc).

    Same inputs and outputs as the layer; no dropout. The time loop and the gate equations
    are those of :func:`qrnn.cells.reference_forward`; only the matrix-vector products differ.
    """
    il = _IntLayer(layer)

    def pre(xt, h, sfx):  # the two products in integers; RNN and LSTM sum them there too
        if layer.mode == "GRU":
            return il.to_float(il.pre(xt, "ih", sfx), xt), il.to_float(il.pre(h, "hh", sfx), xt)
        return il.to_float(il.pre(xt, "ih", sfx) + il.pre(h, "hh", sfx), xt), None

    with torch.no_grad():  # the time loop and gate equations of the reference cells
        return reference_forward(layer, input, hx, pre=pre, dropout=False)


def integer_model_forward(model: nn.Module, *inputs):
    """A :class:`~qrnn.models.LanguageModel` or :class:`~qrnn.models.DigitClassifier` in
    evaluation, with its recurrent layer on the integer path (embedding lookup, BatchNorm and
    the output layer as in the model). LM: ``(x (T, B)) -> (logits, state)``; digits:
    ``(x (B, T, F), lengths) -> logits`` (one recording at a time, no padding)."""
    from .models import DigitClassifier, LanguageModel

    with torch.no_grad():
        if isinstance(model, LanguageModel):
            (x,) = inputs[:1]
            state = inputs[1] if len(inputs) > 1 else None
            if model.embed is None:
                e = nn.functional.one_hot(x, model.vocab_size).to(model.out.weight.dtype)
            else:
                e = model.embed(x)
            h, state = integer_forward(model.rnn, e, state)
            return model.out(h), state
        if isinstance(model, DigitClassifier):
            x, lengths = inputs
            logits = []
            for b in range(x.shape[0]):
                xb = x[b, : int(lengths[b])]  # (T_b, F)
                if model.norm is not None:
                    xb = model.norm(xb)
                out, h = integer_forward(model.rnn, xb[None])
                if model.pool == "last":
                    h = h[0] if isinstance(h, tuple) else h
                    dirs = 2 if model.rnn.bidirectional else 1
                    feat = torch.cat(list(h[-dirs:]), dim=-1)
                else:
                    feat = out.mean(1)
                logits.append(model.out(feat))
            return torch.cat(logits)
    raise TypeError(f"expected a LanguageModel or DigitClassifier, got {type(model).__name__}")


# ---------------------------------------------------------------------------------- counting
def step_ops(layer: QuantRNNBase) -> dict:
    """Operations and weight bits read per time step (batch 1) of a recurrent layer; see the
    module docstring for what is counted. Keys: ``fp32_mult``, ``fp32_add``, ``int32_mult``,
    ``int32_add``, ``shift``, ``sign_flip``, ``nonlinearity``, ``weight_bits``, plus the
    ``scheme``, ``cell`` and the fraction of zero quantized weights ``zero_fraction``."""
    q = layer.quantizer
    ops = dict.fromkeys(
        ("fp32_mult", "fp32_add", "int32_mult", "int32_add", "shift", "sign_flip"), 0
    )
    H, G = layer.hidden_size, _GATES[layer.mode]
    integer = layer.scheme != "float"
    add = "int32_add" if integer else "fp32_add"
    w_q = layer.quantized_parameters(False)
    bits, zeros, n_quant = 0, 0, 0
    for name in layer._flat_weights_names:
        w = w_q[name]
        quant = layer.is_quantized(name)
        bits += w.numel() * (q.bits if quant else 32)
        if quant:
            zeros += int((w == 0).sum())
            n_quant += w.numel()
        if name.startswith("bias"):
            ops[add] += w.numel()  # one add per bias element
            continue
        if not quant:  # a float matrix: multiply-accumulate
            ops["fp32_mult"] += w.numel()
            ops["fp32_add"] += w.shape[0] * (w.shape[1] - 1)
            continue
        m = _int_matrix(w, q, q.scale(getattr(layer, name), *layer.param_fans(name)))
        terms = sum(mask.sum(1) for mask, _ in m.planes)  # (out,) contributions per row
        ops["int32_add"] += int(np.maximum(terms - 1, 0).sum())
        ops["sign_flip"] += int(sum((mask & m.neg).sum() for mask, _ in m.planes))
        for mask, s in m.planes:
            ops["shift"] += int((mask & (np.asarray(s) != 0)).sum())
        ops["shift"] += w.shape[0] if m.post_shift else 0
        ops["int32_mult"] += w.shape[0] if m.scale != 1.0 else 0
    dirs = 2 if layer.bidirectional else 1
    units = layer.num_layers * dirs * H
    ops[add] += units * G  # join the input and recurrent sums of every gate
    mult, ew_add, nonlin = {"GRU": (3, 2, 3), "LSTM": (3, 1, 5)}.get(layer.mode, (0, 0, 1))
    ops["fp32_mult"] += units * mult
    ops["fp32_add"] += units * ew_add
    ops["nonlinearity"] = units * nonlin
    ops["weight_bits"] = bits
    ops["scheme"] = layer.scheme
    ops["cell"] = {"LSTM": "lstm", "GRU": "gru"}.get(layer.mode, "rnn")
    ops["zero_fraction"] = zeros / n_quant if n_quant else 0.0
    return ops


def energy_pj(ops: dict, memory: str = "sram") -> dict:
    """Energy per step in pJ from :func:`step_ops` counts and :data:`ENERGY_PJ`:
    ``{"arithmetic", "weights", "total"}``; ``memory``: ``"sram"`` or ``"dram"``."""
    e = ENERGY_PJ
    arith = (
        ops["fp32_mult"] * e["fp32_mult"]
        + ops["fp32_add"] * e["fp32_add"]
        + ops["int32_mult"] * e["int32_mult"]
        + (ops["int32_add"] + ops["shift"] + ops["sign_flip"]) * e["int32_add"]
    )
    per64 = {"sram": e["sram_64bit_read_8kb"], "dram": e["dram_64bit_read"]}[memory]
    weights = math.ceil(ops["weight_bits"] / 64) * per64
    return {"arithmetic": arith, "weights": weights, "total": arith + weights}
