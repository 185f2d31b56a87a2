"""Quantization noise: the per-weight moments of (stochastic) rounding and the noise it adds to
the gate pre-activations, ``e = (W_q - W) v``, measured over draws against its predicted mean
and variance. The rounding schemes are those of Ott et al. 2016, *Recurrent Neural Networks
With Limited Numerical Precision*, https://arxiv.org/abs/1608.06902.
"""

from __future__ import annotations

import pandas as pd
import torch
from torch import Tensor, nn

from ..quantizers import Quantizer, quantizer


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

    Stochastic (clip(·) is the method's range; bias = mean - w, zero inside the range;
    each method's :meth:`~qrnn.quantizers.Quantizer.stochastic_moments`):

    * binary: mean ``clip(w, -H, H)``, var ``H^2 - mean^2`` (``H^2 - w^2``);
    * ternary: ``p = clip(|w|/W0, 0, 1)``: mean ``W0 sign(w) p``, var ``W0^2 p(1-p)``
      (``W0|w| - w^2``);
    * pow2-ternary, grid step s: x = clip(w); lo = s floor(x/s): mean ``x``,
      var ``(x - lo)(lo + s - x)``;
    * exponential: ``a = |w|``, ``k = floor(log2 a)``, ``p = a/2^k - 1``, exponents k, k+1
      clipped to [min_exp, max_exp] (e_lo, e_hi): mean ``sign(w)(2^e_lo (1-p) + 2^e_hi p)``, var
      ``(2^e_hi - 2^e_lo)^2 p(1-p)`` (``(|w| - 2^k)(2^(k+1) - |w|)``); w = 0 gives
      ``-2^min_exp`` exactly.
    """
    w = w.detach().to(torch.float64)
    if not (stochastic and q.stochastic_supported):
        return q(w, False, fan_in=fan_in, fan_out=fan_out).detach(), torch.zeros_like(w)
    return q.stochastic_moments(w, fan_in, fan_out)  # each method's own moments


NOISE_COLUMNS = [
    "t",
    "matrix",
    "measured_var",
    "predicted_var",
    "measured_bias_sq",
    "predicted_bias_sq",
]


def _noise_params(layer: nn.RNNBase, index: int) -> dict:
    """``{name: (source, W, (fan_in, fan_out), quantized)}`` of layer ``index``'s matrices and
    biases (``W`` float64; source ``ih``, ``hh`` or ``bias``)."""
    params = {}
    for name in (f"{k}_l{index}" for k in ("weight_ih", "weight_hh", "bias_ih", "bias_hh")):
        if not hasattr(layer, name):
            continue
        src = "bias" if name.startswith("bias") else name.split("_")[1]
        quantized = getattr(layer, "is_quantized", lambda n: False)(name)
        fans = layer.param_fans(name) if quantized else (None, None)
        params[name] = (src, getattr(layer, name).detach().to(torch.float64), fans, quantized)
    return params


def _times_v(d: Tensor, v: Tensor) -> Tensor:
    """A (G, J) matrix times the inputs ``v`` (J, T): ``d v`` (G, T); a (G,) bias repeated
    over the T steps."""
    return d.unsqueeze(1).expand(-1, v.shape[1]) if d.dim() == 1 else d @ v


def _predicted_noise(q: Quantizer, params: dict, stochastic: bool, vs: dict) -> tuple[dict, dict]:
    """The formula per source, each (G, T) summed over the source's matrices: variance
    ``Σ_j Var(W_q,ij) v_j^2`` and bias ``Σ_j (E[W_q,ij] - W_ij) v_j`` (:func:`rounding_moments`)."""
    pred_var, pred_bias = {}, {}
    for src, w, fans, quantized in params.values():
        mean, var = rounding_moments(q if quantized else quantizer("float"), w, stochastic, *fans)
        sq = vs[src] if src == "bias" else vs[src] ** 2  # v_j^2 (ones for the bias)
        pred_var[src] = pred_var.get(src, 0) + _times_v(var, sq)
        pred_bias[src] = pred_bias.get(src, 0) + _times_v(mean - w, vs[src])
    return pred_var, pred_bias


def _measured_noise(
    q: Quantizer, params: dict, stochastic: bool, vs: dict, draws: int, gen: torch.Generator
) -> tuple[dict, dict]:
    """Sums over ``draws`` draws of ``W_q`` (from ``gen``, matrices in ``params`` order) of
    ``e = (W_q - W) v`` and of ``e^2``, per source and for their ``total``, each (G, T)."""
    s1: dict[str, Tensor] = {}
    s2: dict[str, Tensor] = {}
    for _ in range(draws):
        e: dict[str, Tensor] = {}
        for src, w, fans, quantized in params.values():
            wq = q(w, stochastic, gen, fan_in=fans[0], fan_out=fans[1]) if quantized else w
            e[src] = e.get(src, 0) + _times_v(wq.detach() - w, vs[src])
        e["total"] = sum(e.values())
        for k, v in e.items():
            s1[k], s2[k] = s1.get(k, 0) + v, s2.get(k, 0) + v**2
    return s1, s2


def _noise_rows(s1: dict, s2: dict, pred_var: dict, pred_bias: dict, draws: int, T: int) -> list:
    """One row per step (T) and source, averaged over the G units: the measured variance
    (unbiased over the draws; 0 for one draw), the predicted one, the squared measured and
    predicted means."""
    rows = []
    for src in NOISE_SOURCES:
        if src not in s1:
            continue
        m1 = s1[src] / draws
        mv = (s2[src] - draws * m1**2) / (draws - 1) if draws > 1 else torch.zeros_like(m1)
        cols = [mv.mean(0), pred_var[src].mean(0), (m1**2).mean(0), (pred_bias[src] ** 2).mean(0)]
        for t in range(T):
            rows.append((t + 1, src, *(float(c[t]) for c in cols)))
    return rows


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
        rows = [(t, m, nan, nan, nan, nan) for t in range(1, T + 1) for m in NOISE_SOURCES]
        return pd.DataFrame(rows, columns=NOISE_COLUMNS)
    q = getattr(layer, "quantizer", quantizer("float"))
    stochastic = stochastic and q.name != "float"
    h_prev = states[:-1, : layer.hidden_size]
    vs = {"ih": x.T, "hh": h_prev.T, "bias": x.new_ones(1, T)}  # v (J, T) per source
    params = _noise_params(layer, index)
    pred_var, pred_bias = _predicted_noise(q, params, stochastic, vs)
    gen = torch.Generator().manual_seed(seed)
    draws = n_draws if stochastic else 1
    s1, s2 = _measured_noise(q, params, stochastic, vs, draws, gen)
    pred_var["total"] = sum(pred_var.values())
    pred_bias["total"] = sum(pred_bias.values())
    return pd.DataFrame(_noise_rows(s1, s2, pred_var, pred_bias, draws, T), columns=NOISE_COLUMNS)


NOISE_SOURCES = ("ih", "hh", "bias", "total")
