"""Noise through time: how the error of one stochastic weight draw travels through a recurrent
layer, against a fresh draw per step and a feed-forward stack of the same depth.

Ott, Lin, Zhang, Liu, Bengio, *Recurrent Neural Networks With Limited Numerical Precision*
(arXiv 1608.06902, https://arxiv.org/abs/1608.06902), claim 5: rounding near-zero weights to
±1 adds much variance to the weighted sums, and this hurts recurrent networks more because the
same matrices are reused at every time step. In training one draw ``W~ ~ q_stoch(W)`` is held
over a whole BPTT segment, so the error ``E = W~ - W_det`` is reused at every step. We measure
it rather than assume it. For one layer-input sequence ``x_1..x_T`` and ``s_0 = 0`` (``s = h``;
LSTM ``s = [h; c]``), with ``f`` the reference cell of :mod:`qrnn.cells` in float64:

=============  ===========================================================================
mode           trajectory (reference: the same map with the deterministic weights W_det)
=============  ===========================================================================
det            ``s_t = f(x_t, s_{t-1}; W_det)``, ``W_det = q(W)`` (evaluation weights)
fixed          ``s_t = f(x_t, s_{t-1}; W~)``: one draw held over the whole sequence
resampled      ``s_t = f(x_t, s_{t-1}; W~_t)``: a fresh, independent draw at every step
feedforward    ``s_t = f(x_t, Q_t s_{t-1}; W~_t)`` against ``f(x_t, Q_t s_{t-1}; W_det)``
=============  ===========================================================================

**Feed-forward control.** ``Q_t`` is a fresh uniform random permutation of the H hidden units
(LSTM: the same one for h and c). Relabeling the units of a layer by a permutation P gives the
layer ``W^P`` (per gate block ``W_hh -> P W_hh P^T``, ``W_ih -> P W_ih``, ``b -> P b``) with
``f(x, s; W^P) = P f(x, P^T s; W)``. A stack of T layers ``W^{P_1} .. W^{P_T}`` with independent
uniform ``P_t``, each fed ``x_t``, has ``g_t = P_t^T h_t = f(x_t, Q_t g_{t-1}; W)`` with
``Q_t = P_t^T P_{t-1}`` (again iid uniform) and ``||g_t - g'_t|| = ||h_t - h'_t||``. So this mode
*is* a feed-forward stack of T distinct layers that keeps everything else of the recurrent
layer: the same weight values (so the same per-weight rounding variance), the spectrum of every
block, the input injected at every depth; each depth has its own draw, as a stochastically
rounded feed-forward net would. What it removes is that one matrix multiplies the state at
every step (products of the layers no longer align). The chain fixed -> resampled changes only
whether the *error* is reused; resampled -> feedforward only whether the *matrix* is reused.

**Deviation.** ``d_t = ||h_t - h_t^ref||_2`` with ``h^ref`` the reference trajectory of the
mode (above), and ``d_t / ||h_t^ref||``. The same against the trajectory of the *expected*
weights ``E[W~]`` (:func:`qrnn.analysis.rounding_moments`), which separates the variance from
the bias ``E[W~] - W_det`` of stochastic rounding. Deterministic methods (float, binary / ternary
det, pow2-ternary, exponential det) draw ``W~ = W_det``: every deviation is exactly 0.

**Linear check** [derived; the tests]: for ``s_t = W s_{t-1} + x_t`` with ``W = a I + E``,
``E_ij`` iid zero mean, variance ``σ²``, n rows, ``D_t = E||s_t - s_t^det||²`` is

* resampled (exact): ``D_t = (a² + nσ²) D_{t-1} + nσ² ||s_{t-1}^det||²``, ``D_1 = 0``;
* fixed (first order in σ²): ``D_t = nσ² ||u_t||²``, ``u_t = Σ_{m<t} a^{t-1-m} s_m^det``,

so the fixed draw adds its errors coherently (``||Σ_m c_m||²``) where fresh draws add
variances (``Σ_m ||c_m||²``).

**Jacobians** per draw: ``J_t = d s_t / d s_{t-1}`` with the drawn weights along the drawn
trajectory (:func:`qrnn.analysis.step_jacobians`; feedforward: ``J_t Q_t``), their singular
values over t and ``log10 ||J_T .. J_{T-k+1}||_2`` (:func:`qrnn.analysis.product_log_norms`).

Every draw comes from its own ``torch.Generator`` seeded from ``(seed, mode, draw)``, so results
repeat and draw k does not depend on how many draws are taken.
"""

from __future__ import annotations

import hashlib
import math
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any

import pandas as pd
import torch
from torch import Tensor, nn

from .dynamics import CellWeights, cell_weights, product_log_norms, step_jacobians
from .rounding import rounding_moments

__all__ = [
    "MODES",
    "Dynamics",
    "NoiseResult",
    "deviation_summary",
    "draw_generator",
    "draw_quantiles",
    "drawn_weights",
    "layer_dynamics",
    "mean_weights",
    "noise_through_time",
]

MODES: tuple[str, ...] = ("fixed", "resampled", "feedforward")


def draw_generator(seed: int, mode: str, draw: int) -> torch.Generator:
    """A CPU generator seeded from ``(seed, mode, draw)`` (sha256, 63 bits)."""
    digest = hashlib.sha256(f"qrnn.noise/{seed}/{mode}/{draw}".encode()).digest()
    return torch.Generator().manual_seed(int.from_bytes(digest[:8], "little") >> 1)


# ------------------------------------------------------------------------------ dynamics
@dataclass(frozen=True)
class Dynamics:
    """A recurrent map ``s' = step(w, x_t, s)`` with its deterministic weights ``det``, a
    sampler ``draw(generator) -> w`` and the expected weights ``mean`` (None: not defined).
    ``hidden``: units; the state has ``state_size = m * hidden`` entries, ``h = s[:hidden]``."""

    step: Callable[[Any, Tensor, Tensor], Tensor]
    det: Any
    draw: Callable[[torch.Generator], Any]
    hidden: int
    state_size: int
    stochastic: bool
    mean: Any = None


def _as_cell_weights(layer: nn.RNNBase, q: dict[str, Tensor], index: int) -> CellWeights:
    """CellWeights of layer ``index`` from ``{name: tensor}`` (float64, detached)."""
    gains = None
    if getattr(layer, "layer_norm", False):
        gains = tuple(g.detach().to(torch.float64) for g in layer.layer_norm_gains()[f"_l{index}"])
    w = [q.get(f"{k}_l{index}") for k in ("weight_ih", "weight_hh", "bias_ih", "bias_hh")]
    w = [None if t is None else t.detach().to(torch.float64) for t in w]
    return CellWeights(layer.mode, layer.hidden_size, *w, gains=gains)


@torch.no_grad()
def drawn_weights(
    layer: nn.RNNBase, generator: torch.Generator | None, index: int = 0
) -> CellWeights:
    """One draw of layer ``index``'s quantized weights (training semantics): stochastic when the
    layer samples in training (``layer.stochastic``), else the deterministic ``q(W)``; a plain
    ``torch.nn`` layer gives its parameters. Uses the layer's own ``quantized_parameters``."""
    if not getattr(layer, "stochastic", False):
        return cell_weights(layer, index)
    saved = layer.generator
    layer.generator = generator
    try:
        q = layer.quantized_parameters(stochastic=True)
    finally:
        layer.generator = saved
    return _as_cell_weights(layer, q, index)


@torch.no_grad()
def mean_weights(layer: nn.RNNBase, index: int = 0) -> CellWeights | None:
    """Expected weights ``E[W~]`` of a draw (:func:`qrnn.analysis.rounding_moments`; equal to
    ``q(W)`` for deterministic methods). None for weight-normalized layers (the mean of a
    normalized draw is not the normalized mean)."""
    if getattr(layer, "weight_norm", False):
        return None
    if not getattr(layer, "stochastic", False):
        return cell_weights(layer, index)
    q = {}
    for name in layer._flat_weights_names:
        w = getattr(layer, name)
        if layer.is_quantized(name):
            w = rounding_moments(layer.quantizer, w, True, *layer.param_fans(name))[0]
        q[name] = w
    return _as_cell_weights(layer, q, index)


def layer_dynamics(layer: nn.RNNBase, index: int = 0) -> Dynamics:
    """:class:`Dynamics` of layer ``index`` of a (quantized) recurrent layer stack, with
    :class:`qrnn.analysis.CellWeights` as weights."""
    det = cell_weights(layer, index)
    stochastic = bool(getattr(layer, "stochastic", False))
    return Dynamics(
        step=lambda cw, x, s: cw.step(x, s),
        det=det,
        draw=(lambda g: drawn_weights(layer, g, index)) if stochastic else (lambda g: det),
        hidden=det.hidden,
        state_size=det.state_size,
        stochastic=stochastic,
        mean=mean_weights(layer, index),
    )


# ------------------------------------------------------------------------------ trajectories
def _unit_permutation(dyn: Dynamics, generator: torch.Generator) -> Tensor:
    """State indices of one random permutation of the hidden units (all state blocks)."""
    p = torch.randperm(dyn.hidden, generator=generator)
    blocks = dyn.state_size // dyn.hidden
    return torch.cat([p + k * dyn.hidden for k in range(blocks)])


@torch.no_grad()
def _run(dyn: Dynamics, x: Tensor, weights: Sequence[Any], perms: Sequence[Tensor] | None):
    """States (T+1, S) of ``s_t = step(w_t, x_t, s_{t-1}[perm_t])`` from ``s_0 = 0``."""
    s = x.new_zeros(dyn.state_size, dtype=torch.float64)
    out = [s]
    for t, xt in enumerate(x):
        s_in = s if perms is None else s[perms[t]]
        s = dyn.step(weights[t], xt, s_in)
        out.append(s)
    return torch.stack(out)


@dataclass
class DrawPath:
    """One (mode, draw): per-step weights, permutations and the three trajectories."""

    mode: str
    draw: int
    weights: list[Any]
    perms: list[Tensor] | None
    states: Tensor
    ref: Tensor  # the same map with W_det
    mean: Tensor | None  # the same map with E[W~]


def draw_path(dyn: Dynamics, x: Tensor, mode: str, draw: int, seed: int, cache: dict) -> DrawPath:
    """Trajectories of one draw; ``cache`` keeps the unpermuted det / mean ones."""
    T = len(x)
    gen = draw_generator(seed, mode, draw)
    if mode == "fixed":
        weights = [dyn.draw(gen)] * T
    elif mode in ("resampled", "feedforward"):
        weights = [dyn.draw(gen) for _ in range(T)]
    else:
        raise ValueError(f"unknown mode {mode!r}; choose one of {', '.join(MODES)}")
    perms = [_unit_permutation(dyn, gen) for _ in range(T)] if mode == "feedforward" else None
    states = _run(dyn, x, weights, perms)

    def reference(w, key):
        if w is None:
            return None
        if perms is not None:
            return _run(dyn, x, [w] * T, perms)
        if key not in cache:
            cache[key] = _run(dyn, x, [w] * T, None)
        return cache[key]

    ref, mean = reference(dyn.det, "det"), reference(dyn.mean, "mean")
    return DrawPath(mode, draw, weights, perms, states, ref, mean)


def _norms(a: Tensor, b: Tensor, hidden: int) -> tuple[Tensor, Tensor]:
    return (a[1:, :hidden] - b[1:, :hidden]).norm(dim=1), b[1:, :hidden].norm(dim=1)


def _deviation_rows(p: DrawPath, hidden: int) -> pd.DataFrame:
    dev, ref = _norms(p.states, p.ref, hidden)
    if p.mean is None:
        dev_m = rel_m = torch.full_like(dev, math.nan)
    else:
        dev_m, mnorm = _norms(p.states, p.mean, hidden)
        rel_m = torch.where(mnorm > 0, dev_m / mnorm, math.nan)
    return pd.DataFrame(
        {
            "mode": p.mode,
            "draw": p.draw,
            "t": range(1, len(dev) + 1),
            "deviation": dev.numpy(),
            "det_norm": ref.numpy(),
            "relative": torch.where(ref > 0, dev / ref, math.nan).numpy(),
            "deviation_mean": dev_m.numpy(),
            "relative_mean": rel_m.numpy(),
        }
    )


# ------------------------------------------------------------------------------ Jacobians
def _jacobians(x: Tensor, states: Tensor, weights: Sequence[CellWeights], perms) -> Tensor:
    """``J_t = d s_t / d s_{t-1}`` (T, S, S) along ``states`` with per-step weights."""
    if perms is None and all(w is weights[0] for w in weights):
        return step_jacobians(weights[0], x, states)
    out = []
    for t in range(len(x)):
        s_in = states[t : t + 1] if perms is None else states[t : t + 1, perms[t]]
        j = step_jacobians(weights[t], x[t : t + 1], s_in, chunk=1)[0]
        out.append(j if perms is None else j[:, torch.argsort(perms[t])])  # J Q_t
    return torch.stack(out)


@dataclass
class _Spectrum:
    svals: Tensor  # (T, S)
    log_norms: Tensor  # (T,): k = 1..T


def _spectrum(x, states, weights, perms) -> _Spectrum:
    J = _jacobians(x, states, weights, perms)
    return _Spectrum(torch.linalg.svdvals(J), product_log_norms(J.flip(0)))


def _same(a: Sequence[CellWeights], b: CellWeights) -> bool:
    def eq(u, v):
        return (u is None and v is None) or (u is not None and v is not None and torch.equal(u, v))

    return all(
        eq(w.w_ih, b.w_ih) and eq(w.w_hh, b.w_hh) and eq(w.b_ih, b.b_ih) and eq(w.b_hh, b.b_hh)
        for w in a
    )


_QUANTILES = (0.1, 0.5, 0.9)


def _jacobian_rows(mode: str, draw: int, sp: _Spectrum):
    top = sp.svals[:, 0]
    q10, q50, q90 = torch.quantile(top, torch.tensor(_QUANTILES, dtype=top.dtype)).tolist()
    row = {
        "mode": mode,
        "draw": draw,
        "top_sv_q10": q10,
        "top_sv_median": q50,
        "top_sv_q90": q90,
        "top_sv_max": float(top.max()),
        "log10_product_norm_T": float(sp.log_norms[-1]),
    }
    qs = torch.quantile(sp.svals, torch.tensor(_QUANTILES, dtype=sp.svals.dtype), 0)
    spectra = pd.DataFrame(
        {"mode": mode, "draw": draw, "rank": range(1, sp.svals.shape[1] + 1)}
        | {f"q{round(100 * p)}": qs[i].numpy() for i, p in enumerate(_QUANTILES)}
    )
    products = pd.DataFrame(
        {"mode": mode, "draw": draw, "k": range(1, len(sp.log_norms) + 1)}
        | {"log10_norm": sp.log_norms.numpy()}
    )
    return row, spectra, products


# ------------------------------------------------------------------------------ the analysis
@dataclass
class NoiseResult:
    """Tidy frames of :func:`noise_through_time` (see the module docstring).

    * ``deviation``: one row per (mode, draw, t), t = 1..T: ``deviation`` ``||h_t - h_t^det||``,
      ``det_norm`` ``||h_t^det||``, ``relative`` their ratio, ``deviation_mean`` and
      ``relative_mean`` against the trajectory of the expected weights.
    * ``jacobians``: one row per (mode, draw) (mode ``det``: draw 0, the deterministic weights):
      quantiles over t of the top singular value of ``J_t`` (``top_sv_q10``, ``_median``,
      ``_q90``, ``_max``) and ``log10_product_norm_T`` = ``log10 ||J_T .. J_1||_2``.
    * ``spectra``: per (mode, draw, rank): quantiles over t (q10, q50, q90) of singular value
      ``rank`` (1 = largest).
    * ``products``: per (mode, draw, k): ``log10_norm`` = ``log10 ||J_T .. J_{T-k+1}||_2``.
    """

    deviation: pd.DataFrame
    jacobians: pd.DataFrame
    spectra: pd.DataFrame
    products: pd.DataFrame
    stochastic: bool
    info: dict[str, Any] = field(default_factory=dict)


def noise_through_time(
    layer: nn.RNNBase | Dynamics,
    x: Tensor,
    draws: int = 32,
    seed: int = 0,
    *,
    index: int = 0,
    modes: Iterable[str] = MODES,
    jacobian_modes: Iterable[str] = ("fixed",),
) -> NoiseResult:
    """Deviations of ``draws`` stochastic trajectories per mode from the deterministic one, and
    (``jacobian_modes``, a subset of ``modes``; layers only) the step-Jacobian spectra and
    product norms per draw, plus those of the deterministic weights (mode ``det``).

    ``layer``: a recurrent layer stack (layer ``index`` is analyzed; ``x`` (T, I) is *its*
    input, see :func:`qrnn.analysis.layer_input` and ``layer_trajectories``) or a
    :class:`Dynamics`. Draws that equal the deterministic weights reuse their Jacobians.
    """
    dyn = layer if isinstance(layer, Dynamics) else layer_dynamics(layer, index)
    x = x.detach().to(torch.float64)
    modes = tuple(modes)
    jacobian_modes = tuple(jacobian_modes)
    if unknown := sorted(set(modes) - set(MODES)):
        raise ValueError(f"unknown modes {unknown}; choose from {', '.join(MODES)}")
    if not set(jacobian_modes) <= set(modes):
        raise ValueError(f"jacobian_modes {jacobian_modes} must be among modes {modes}")
    if jacobian_modes and not isinstance(dyn.det, CellWeights):
        raise ValueError("Jacobians need CellWeights dynamics (a recurrent layer); pass ()")
    dev, jac, spec, prod = [], [], [], []
    det_sp, cache = None, {}
    if jacobian_modes:
        cache["det"] = _run(dyn, x, [dyn.det] * len(x), None)
        det_sp = _spectrum(x, cache["det"], [dyn.det] * len(x), None)
        r, s, p = _jacobian_rows("det", 0, det_sp)
        jac.append(r), spec.append(s), prod.append(p)
    for mode in modes:
        for k in range(draws):
            p = draw_path(dyn, x, mode, k, seed, cache)
            dev.append(_deviation_rows(p, dyn.hidden))
            if mode not in jacobian_modes:
                continue
            if p.perms is None and _same(p.weights, dyn.det):
                sp = det_sp
            else:
                sp = _spectrum(x, p.states, p.weights, p.perms)
            r, s, pr = _jacobian_rows(mode, k, sp)
            jac.append(r), spec.append(s), prod.append(pr)

    def cat(frames):
        return pd.concat(frames, ignore_index=True) if frames else pd.DataFrame()

    return NoiseResult(
        deviation=cat(dev),
        jacobians=pd.DataFrame(jac),
        spectra=cat(spec),
        products=cat(prod),
        stochastic=dyn.stochastic,
        info={"draws": draws, "seed": seed, "steps": len(x), "modes": list(modes)},
    )


# ------------------------------------------------------------------------------ summaries
def draw_quantiles(
    frame: pd.DataFrame,
    by: Sequence[str],
    column: str,
    quantiles: Sequence[float] = _QUANTILES,
) -> pd.DataFrame:
    """Per group of ``by``: ``n``, ``mean``, ``rms`` and the quantiles (``q10`` ...) over the
    draws of ``column``."""
    g = frame.groupby(list(by), sort=False)[column]
    out = g.agg(n="count", mean="mean", rms=lambda v: math.sqrt((v**2).mean()))
    for q in quantiles:
        out[f"q{round(100 * q)}"] = g.quantile(q)
    return out.reset_index()


def deviation_summary(deviation: pd.DataFrame, by: Sequence[str] = ()) -> pd.DataFrame:
    """Per (``by``, mode, t) over draws: ``n_draws``; mean, rms and q10 / q50 / q90 of
    ``deviation``; mean and median of ``relative``; mean of ``det_norm``; rms and median of
    ``deviation_mean``."""
    keys = [*by, "mode", "t"]
    d = draw_quantiles(deviation, keys, "deviation")
    d = d.rename(columns={c: f"dev_{c}" for c in ("mean", "rms", "q10", "q50", "q90")})
    d = d.rename(columns={"n": "n_draws"})
    g = deviation.groupby(keys, sort=False)
    extra = pd.DataFrame(
        {
            "rel_mean": g["relative"].mean(),
            "rel_q50": g["relative"].median(),
            "det_norm_mean": g["det_norm"].mean(),
            "dev_from_mean_rms": g["deviation_mean"].agg(lambda v: math.sqrt((v**2).mean())),
            "dev_from_mean_q50": g["deviation_mean"].median(),
        }
    ).reset_index()
    return d.merge(extra, on=keys)
