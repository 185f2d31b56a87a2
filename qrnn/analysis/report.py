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
functions turn a set of analyses into pandas tables for ``notebooks/jacobian.ipynb``. The layer
dynamics live in :mod:`qrnn.analysis.dynamics`, the rounding noise in
:mod:`qrnn.analysis.rounding`. The question is why binarization fails in Ott et al. 2016,
*Recurrent Neural Networks With Limited Numerical Precision*, https://arxiv.org/abs/1608.06902.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

import pandas as pd
import torch
from torch import Tensor, nn

from ..quantizers import Quantizer, quantizer
from .dynamics import (
    GATES,
    gate_preactivations,
    jacobian_chunks,
    layer_trajectories,
    product_log_norms,
    saturated,
)
from .rounding import preactivation_noise

__all__ = [
    "METHODS",
    "Analysis",
    "InputSequence",
    "Method",
    "analyze",
    "get_method",
    "layer_input",
    "load_sequence",
    "noise_frame",
    "product_frame",
    "recurrent_layer",
    "saturation_frame",
    "spectra_frame",
    "summary_table",
    "task_fields",
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


def task_fields(task: str) -> dict[str, Any]:
    """The run-configuration fields of an analysis task (``ptb-char``, ``fsdd`` on the standard
    split, ``fsdd-speakers`` on held-out speakers)."""
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
    from .. import data

    gen = torch.Generator().manual_seed(seed)
    fields = task_fields(task)
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
        for _, j in jacobian_chunks(cw, xi, states, chunk):
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
