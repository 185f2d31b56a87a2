"""Quantized ``torch.nn.RNN`` / ``GRU`` / ``LSTM`` layers that keep the fused kernels.

Each layer *is* its ``torch.nn`` counterpart (same constructor, parameter names, gate order,
shapes, inputs and outputs; ``state_dict`` loads both ways). The parameters are the
full-precision shadow weights. Once per forward the selected matrices are quantized
(stochastically in training when ``stochastic=True``, deterministically in evaluation), and the
stock fused op (``_VF.lstm`` etc.: cuDNN on GPU, the ATen kernel on CPU) runs on the quantized
copies. The straight-through estimator carries the gradient back to the shadow weights.

Part of ``qrnn``, the library and study after Ott et al. 2016, *Recurrent Neural Networks With
Limited Numerical Precision*, https://arxiv.org/abs/1608.06902.
"""

from __future__ import annotations

import contextlib
import math
import re
from collections.abc import Iterator
from typing import Any

import torch
from torch import Tensor, nn

from .cells import reference_forward
from .quantizers import Quantizer, quantizer

__all__ = [
    "QuantEmbedding",
    "QuantGRU",
    "QuantLSTM",
    "QuantLinear",
    "QuantRNN",
    "QuantRNNBase",
    "clip_shadow_",
    "glorot_init_",
    "quantized_layers",
]

_PARAM = re.compile(r"^(weight|bias)_(ih|hh)_l(\d+)(_reverse)?$")
# weight_noise -> the quantizer whose stochastic-rounding variance the noise matches
NOISE_MATCH = {"binary": quantizer("binary"), "ternary": quantizer("ternary")}


def noise_quantizer(spec: str) -> Quantizer:
    """The quantizer whose rounding variance ``weight_noise=spec`` matches: ``binary`` (H = 1),
    ``ternary`` (Glorot W0), or ``METHOD:SCALE`` with another scale (``binary:0.25``,
    ``binary:glorot``: the dose-response of claim 5)."""
    if spec in NOISE_MATCH:
        return NOISE_MATCH[spec]
    method, sep, scale = str(spec).partition(":")
    if sep and method in NOISE_MATCH and scale:
        with contextlib.suppress(ValueError):
            return quantizer(method, scale=float(scale))
        with contextlib.suppress(ValueError):
            return quantizer(method, scale=scale)
    raise ValueError(
        f"weight_noise={spec!r} is not allowed; choose none, binary, ternary, or METHOD:SCALE "
        "(METHOD binary or ternary; SCALE a positive number, glorot, glorot*K or unit)"
    )


class QuantRNNBase(nn.RNNBase):
    """Shared logic; use :class:`QuantRNN`, :class:`QuantGRU` or :class:`QuantLSTM`.

    Extra keyword arguments (all after the ``torch.nn`` ones):

    * ``scheme``: one of :data:`qrnn.SCHEMES` (default ``"float"``).
    * ``stochastic``: sample the stochastic variant in training mode (default ``False``).
    * ``quantizer_options``: dict of method options passed to :func:`qrnn.quantizer`.
    * ``quantize_input``, ``quantize_recurrent``, ``quantize_bias``: which parameters are
      quantized (input-to-hidden matrices, hidden-to-hidden matrices, biases; all on).
    * ``generator``: optional ``torch.Generator`` for the stochastic draws (settable later
      through the ``generator`` attribute), so runs repeat.
    * ``weight_norm``: weight normalization of the (quantized) matrices, still on the fused
      kernel: row ``i`` of ``W_q`` is used as ``g_i W_q[i] / ||W_q[i]||`` with a learned gain
      ``g`` (parameters ``weight_ih_l0_gain`` ...; initialized to the initial row norms), which
      removes the scale of binary weights (Salimans & Kingma 2016; Hou et al. 2019). Adds
      parameters, so the ``state_dict`` then no longer matches ``torch.nn``.
    * ``layer_norm``: layer normalization of the pre-activations ``W_ih x`` and ``W_hh h``, each
      gate block over its H units, with learned gains (parameters ``ln_ih_l0``, ``ln_hh_l0`` ...,
      shape (gates, H), initialized to 1), before the biases (Ba et al. 2016; Hou et al. 2019).
      The fused kernels have no such step, so these layers run the reference cells in a Python
      time loop (``qrnn.cells.reference_forward``): same results contract, slower (see
      ``bench/``). Adds parameters.
    * ``weight_noise``: ``None``, ``"binary"`` or ``"ternary"``: a *float* layer (scheme
      ``"float"``) whose weights get, in training only, zero-mean Gaussian noise with the
      per-weight variance of that method's stochastic rounding
      (:meth:`qrnn.quantizers.Quantizer.rounding_variance`: binary ``H^2 - W^2`` with H = 1,
      ternary ``W0 |W| - W^2`` with the Glorot W0), drawn once per forward like the
      quantizers' draws. The control of issue "noise through time": variance without
      discreteness. ``"binary:0.25"`` (``METHOD:SCALE``) matches that method at another scale;
      ``quantize_input`` / ``quantize_recurrent`` / ``quantize_bias`` choose which tensors get
      the noise.
    """

    def __init__(
        self,
        *args: Any,
        scheme: str = "float",
        stochastic: bool = False,
        quantizer_options: dict[str, Any] | None = None,
        quantize_input: bool = True,
        quantize_recurrent: bool = True,
        quantize_bias: bool = True,
        generator: torch.Generator | None = None,
        weight_norm: bool = False,
        layer_norm: bool = False,
        weight_noise: str | None = None,
        **kwargs: Any,
    ) -> None:
        if kwargs.get("proj_size", 0):
            raise ValueError("quantized layers do not support proj_size; use proj_size=0")
        super().__init__(*args, **kwargs)
        self.quantizer: Quantizer = quantizer(scheme, **(quantizer_options or {}))
        if stochastic and not self.quantizer.stochastic_supported:
            raise ValueError(f"scheme {scheme!r} has no stochastic variant; use stochastic=False")
        self.stochastic = bool(stochastic)
        if weight_noise in (None, "none"):
            weight_noise = None
        elif noise_quantizer(weight_noise) and scheme != "float":
            raise ValueError("weight_noise needs scheme='float' (it replaces the rounding)")
        self.weight_noise = weight_noise
        self.quantize_input = bool(quantize_input)
        self.quantize_recurrent = bool(quantize_recurrent)
        self.quantize_bias = bool(quantize_bias)
        self.generator = generator
        self.weight_norm = bool(weight_norm)
        if self.weight_norm:  # one gain per output row, initialized to the initial row norms
            for name in self._flat_weights_names:
                if name.startswith("weight"):
                    w = getattr(self, name)
                    gain = nn.Parameter(w.detach().norm(dim=1).clone())
                    self.register_parameter(f"{name}_gain", gain)
        self.layer_norm = bool(layer_norm)
        if self.layer_norm:  # one gain per unit of every gate block, per matrix
            gates = {"LSTM": 4, "GRU": 3}.get(self.mode, 1)
            for name in self._flat_weights_names:
                m = _PARAM.match(name)
                if m.group(1) == "weight":
                    sfx = name[len("weight_ih") :]
                    gain = nn.Parameter(torch.ones(gates, self.hidden_size, **self._factory()))
                    self.register_parameter(f"ln_{m.group(2)}{sfx}", gain)

    def _factory(self) -> dict[str, Any]:
        w = self.weight_ih_l0
        return {"device": w.device, "dtype": w.dtype}

    def layer_norm_gains(self) -> dict[str, tuple[Tensor, Tensor]]:
        """``{suffix: (g_ih, g_hh)}`` for :func:`qrnn.cells.reference_forward`."""
        out = {}
        for name in self._flat_weights_names:
            if name.startswith("weight_ih"):
                sfx = name[len("weight_ih") :]
                out[sfx] = (getattr(self, f"ln_ih{sfx}"), getattr(self, f"ln_hh{sfx}"))
        return out

    @property
    def scheme(self) -> str:
        return self.quantizer.name

    # -- the constructor call that rebuilds this layer -----------------------------------------
    def torch_config(self) -> dict[str, Any]:
        """The ``torch.nn`` constructor arguments of this layer (``nonlinearity`` for the Elman
        RNN only)."""
        kw = dict(input_size=self.input_size, hidden_size=self.hidden_size,
                  num_layers=self.num_layers, bias=self.bias, batch_first=self.batch_first,
                  dropout=self.dropout, bidirectional=self.bidirectional)  # fmt: skip
        if self.mode.startswith("RNN"):
            kw["nonlinearity"] = self.nonlinearity
        return kw

    def quant_config(self) -> dict[str, Any]:
        """The quantization arguments as the layer stands now (a post-training quantized copy
        reports its new method; options resolved); ``weight_norm``, ``layer_norm`` and
        ``weight_noise`` only when on."""
        kw = {
            "scheme": self.scheme,
            "stochastic": self.stochastic,
            "quantizer_options": dict(self.quantizer.options),
            "quantize_input": self.quantize_input,
            "quantize_recurrent": self.quantize_recurrent,
            "quantize_bias": self.quantize_bias,
        }
        for flag in ("weight_norm", "layer_norm"):
            if getattr(self, flag, False):
                kw[flag] = True
        if getattr(self, "weight_noise", None) is not None:
            kw["weight_noise"] = self.weight_noise
        return kw

    @property
    def config(self) -> dict[str, Any]:
        """Everything that rebuilds this layer; ``type(layer).from_config(layer.config)`` has the
        same structure, method and parameter names (the weights are not part of it)."""
        return {**self.torch_config(), **self.quant_config()}

    @classmethod
    def from_config(cls, config: dict[str, Any]) -> QuantRNNBase:
        """The layer described by ``config`` (:attr:`config`), freshly initialized."""
        kw = dict(config)
        return cls(kw.pop("input_size"), kw.pop("hidden_size"), **kw)

    def extra_repr(self) -> str:
        s = super().extra_repr() + f", scheme={self.scheme!r}"
        if self.weight_norm:
            s += ", weight_norm=True"
        if self.layer_norm:
            s += ", layer_norm=True"
        if self.quantizer.options:
            s += f", quantizer_options={self.quantizer.options!r}"
        if self.stochastic:
            s += ", stochastic=True"
        for flag in ("quantize_input", "quantize_recurrent", "quantize_bias"):
            if not getattr(self, flag):
                s += f", {flag}=False"
        return s

    # -- which parameters are quantized, with which fans ----------------------------------------
    def param_fans(self, name: str) -> tuple[int, int]:
        """(fan_in, fan_out) of one gate block of parameter ``name``: input matrices and their
        bias use (input features of the layer, hidden); recurrent ones (hidden, hidden)."""
        m = _PARAM.match(name)
        if m is None:
            raise KeyError(name)
        layer = int(m.group(3))
        if m.group(2) == "hh":
            return self.hidden_size, self.hidden_size
        dirs = 2 if self.bidirectional else 1
        fan_in = self.input_size if layer == 0 else self.hidden_size * dirs
        return fan_in, self.hidden_size

    def is_quantized(self, name: str) -> bool:
        m = _PARAM.match(name)
        if m is None or self.scheme == "float":
            return False
        if m.group(1) == "bias":
            return self.quantize_bias
        return self.quantize_input if m.group(2) == "ih" else self.quantize_recurrent

    def quantized_parameters(self, stochastic: bool | None = None) -> dict[str, Tensor]:
        """``{name: W_q}`` for every flat weight (unquantized ones passed through).

        ``stochastic=None`` follows the module: stochastic only in training mode with
        ``self.stochastic``. Gradients flow to the shadow weights (straight-through).
        """
        if stochastic is None:
            stochastic = self.training and self.stochastic
        out = {}
        noisy = self.weight_noise is not None and self.training
        for name in self._flat_weights_names:
            w = getattr(self, name)
            if self.is_quantized(name):
                fan_in, fan_out = self.param_fans(name)
                w = self.quantizer(w, stochastic, self.generator, fan_in=fan_in, fan_out=fan_out)
            elif noisy and self._noisy(name):
                w = w + self.weight_noise_sample(name, w)
            if self.weight_norm and name.startswith("weight"):
                gain = getattr(self, f"{name}_gain")
                w = w * (gain / w.norm(dim=1).clamp_min(1e-12)).unsqueeze(1)  # (G*H, I)
            out[name] = w
        return out

    def _noisy(self, name: str) -> bool:
        """Does ``weight_noise`` reach parameter ``name``? The flags that choose quantized
        tensors choose the noisy ones (all True by default: every weight and bias)."""
        m = _PARAM.match(name)
        if m is None:
            return False
        if m.group(1) == "bias":
            return self.quantize_bias
        return self.quantize_input if m.group(2) == "ih" else self.quantize_recurrent

    def weight_noise_sample(self, name: str, w: Tensor) -> Tensor:
        """One draw of the matched noise for parameter ``name``: ``sqrt(Var(w)) * N(0, 1)``."""
        var = noise_quantizer(self.weight_noise).rounding_variance(w, *self.param_fans(name))
        eps = torch.randn(w.shape, generator=self.generator, dtype=w.dtype, device=w.device)
        return var.sqrt() * eps

    @contextlib.contextmanager
    def _quantized_flat_weights(self) -> Iterator[None]:
        q = self.quantized_parameters()
        saved = self._flat_weights
        self._flat_weights = [q[n] for n in self._flat_weights_names]
        try:
            yield
        finally:
            self._flat_weights = saved

    def forward(self, input, hx=None):
        """Same contract as ``torch.nn``; runs the fused op on the quantized weights (with
        ``layer_norm``: the reference cells in a time loop)."""
        if self.layer_norm:
            return reference_forward(self, input, hx, weights=self.quantized_parameters())
        noisy = self.weight_noise is not None and self.training
        if self.scheme == "float" and not self.weight_norm and not noisy:
            return super().forward(input, hx)
        # Refresh the cached flat list if the parameters were replaced, then swap in W_q;
        # super() is the torch.nn class (QuantLSTM's MRO: QuantRNNBase, nn.LSTM, nn.RNNBase).
        self._update_flat_weights()
        with self._quantized_flat_weights():
            return super().forward(input, hx)

    @torch.no_grad()
    def clip_shadow_(self) -> None:
        """Clip the quantized parameters' shadow weights to the method's range, in place
        (BinaryConnect: ``W <- clip(W, -H, H)`` after each optimizer step)."""
        for name in self._flat_weights_names:
            if not self.is_quantized(name):
                continue
            w = getattr(self, name)
            bound = self.quantizer.clip_bound(w, *self.param_fans(name))
            if bound is not None:
                w.clamp_(-bound, bound)

    def to_torch(self) -> nn.RNNBase:
        """A plain ``torch.nn`` layer holding the *quantized* weights (deterministic)."""
        if self.layer_norm:
            raise ValueError("a layer_norm layer has no torch.nn equivalent (torch.nn has no LN)")
        cls = {"LSTM": nn.LSTM, "GRU": nn.GRU}.get(self.mode, nn.RNN)
        kwargs = self.torch_config()
        ref = self.weight_ih_l0
        size = kwargs.pop("input_size"), kwargs.pop("hidden_size")
        plain = cls(*size, **kwargs).to(ref.device, ref.dtype)
        with torch.no_grad():
            plain.load_state_dict(
                {k: v.detach().clone() for k, v in self.quantized_parameters(False).items()}
            )
        return plain


class QuantRNN(QuantRNNBase, nn.RNN):
    """Quantized ``torch.nn.RNN`` (Elman, tanh or relu): ``h' = f(W_ih x + b_ih + W_hh h + b_hh)``
    with ``W``, ``b`` replaced by their quantized copies. See :class:`QuantRNNBase`."""


class QuantGRU(QuantRNNBase, nn.GRU):
    """Quantized ``torch.nn.GRU`` (gate order r, z, n). See :class:`QuantRNNBase`."""


class QuantLSTM(QuantRNNBase, nn.LSTM):
    """Quantized ``torch.nn.LSTM`` (gate order i, f, g, o). See :class:`QuantRNNBase`."""


@torch.no_grad()
def glorot_init_(layer: QuantRNNBase) -> QuantRNNBase:
    """Glorot-uniform init per gate block: every matrix block ~ U(-a, a) with
    ``a = sqrt(6 / (fan_in + fan_out))`` (the fans of :meth:`QuantRNNBase.param_fans`, the
    same fans the ternary W0 uses), biases 0; weight-norm gains reset to the new row norms."""
    for name in layer._flat_weights_names:
        w = getattr(layer, name)
        if name.startswith("bias"):
            w.zero_()
            continue
        fan_in, fan_out = layer.param_fans(name)
        w.uniform_(-1.0, 1.0).mul_(math.sqrt(6.0 / (fan_in + fan_out)))
        if layer.weight_norm:
            getattr(layer, f"{name}_gain").copy_(w.norm(dim=1))
    return layer


def quantized_layers(module: nn.Module) -> Iterator[QuantRNNBase]:
    """Every quantized recurrent layer inside ``module`` (itself included)."""
    return (m for m in module.modules() if isinstance(m, QuantRNNBase))


def clip_shadow_(module: nn.Module) -> nn.Module:
    """BinaryConnect shadow-weight clipping for every quantized layer in ``module``; call it
    after ``optimizer.step()``. Returns ``module``."""
    for m in module.modules():
        if isinstance(m, QuantRNNBase | QuantIO):
            m.clip_shadow_()
    return module


class QuantIO:
    """Quantized weight for the embedding / output layers (``quantize_io``): same method, the
    Glorot fans of the matrix itself, stochastic in training when ``stochastic``."""

    def _setup_quant(self, scheme, stochastic, quantizer_options, generator) -> None:
        self.quantizer = quantizer(scheme, **(quantizer_options or {}))
        self.stochastic = bool(stochastic) and self.quantizer.stochastic_supported
        self.generator = generator

    def quantized_weight(self, stochastic: bool | None = None) -> Tensor:
        if stochastic is None:
            stochastic = self.training and self.stochastic
        w = self.weight
        return self.quantizer(w, stochastic, self.generator, fan_in=w.shape[1], fan_out=w.shape[0])

    @torch.no_grad()
    def clip_shadow_(self) -> None:
        bound = self.quantizer.clip_bound(self.weight, self.weight.shape[1], self.weight.shape[0])
        if bound is not None:
            self.weight.clamp_(-bound, bound)


class QuantLinear(QuantIO, nn.Linear):
    """``nn.Linear`` whose weight (not bias) is quantized once per forward."""

    def __init__(
        self,
        in_features,
        out_features,
        bias=True,
        *,
        scheme="float",
        stochastic=False,
        quantizer_options=None,
        generator=None,
    ):
        super().__init__(in_features, out_features, bias)
        self._setup_quant(scheme, stochastic, quantizer_options, generator)

    def forward(self, x: Tensor) -> Tensor:
        return nn.functional.linear(x, self.quantized_weight(), self.bias)


class QuantEmbedding(QuantIO, nn.Embedding):
    """``nn.Embedding`` whose table is quantized once per forward."""

    def __init__(
        self,
        num_embeddings,
        embedding_dim,
        *,
        scheme="float",
        stochastic=False,
        quantizer_options=None,
        generator=None,
    ):
        super().__init__(num_embeddings, embedding_dim)
        self._setup_quant(scheme, stochastic, quantizer_options, generator)

    def forward(self, x: Tensor) -> Tensor:
        return nn.functional.embedding(x, self.quantized_weight())
