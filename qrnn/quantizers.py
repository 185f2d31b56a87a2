"""The weight quantizers of Ott et al. (arXiv 1608.06902, Sec. 2) and the straight-through
estimator.

Every method keeps a full-precision *shadow* weight ``W`` that the optimizer updates; the forward
and backward passes use ``W_q = q(W)``, and the gradient with respect to ``W_q`` is applied to
``W`` unchanged (straight-through estimator, pseudo-gradient ``dW_q/dW := 1``). Training samples
the stochastic variant; evaluation uses the deterministic variant of the same method.

=============  ================================================  ==========================
method         levels                                            bits per stored weight
=============  ================================================  ==========================
float          identity                                          32
binary         {-H, +H}                                          1
ternary        {-W0, 0, +W0}                                     2
pow2-ternary   Qm.f grid, default {-0.5, 0, +0.5}                m + f + 1
exponential    ±2^k, k in [min_exp, max_exp]                     1 + ceil(log2(#exponents))
=============  ================================================  ==========================

Scales that depend on the matrix (``"glorot"``) use ``sqrt(6 / (fan_in + fan_out))`` of one gate
block; :class:`~qrnn.layers.QuantRNNBase` passes the fans (recurrent: ``fan_in = fan_out =
hidden``, as in the authors' code). Called without fans, a 2-D tensor uses its own shape.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import torch
from torch import Tensor

SCHEMES: tuple[str, ...] = ("float", "binary", "ternary", "pow2-ternary", "exponential")

__all__ = ["SCHEMES", "Quantizer", "quantizer", "straight_through"]


def straight_through(w: Tensor, w_q: Tensor) -> Tensor:
    """Return a tensor with the *values* of ``w_q`` and the gradient of ``w`` (identity STE).

    ``w - w.detach()`` is exactly zero, so the value is bit-identical to ``w_q`` (unlike
    ``w + (w_q - w).detach()``, which can round), and ``d out / d w = 1``.
    """
    return w_q.detach() + (w - w.detach())


def _uniform(w: Tensor, generator: torch.Generator | None) -> Tensor:
    return torch.rand(w.shape, generator=generator, dtype=w.dtype, device=w.device)


def _check_number(name: str, method: str, value: Any, *, positive: bool = False) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise ValueError(f"{method}: option {name!r} must be a number, got {value!r}")
    if not math.isfinite(value) or (positive and value <= 0):
        raise ValueError(
            f"{method}: option {name!r} must be a finite positive number, got {value!r}"
        )
    return float(value)


@dataclass(frozen=True)
class Quantizer:
    """A weight quantizer: ``q(w, stochastic=False, generator=None) -> W_q`` (same shape, dtype,
    device). Build one with :func:`quantizer`; the result carries the straight-through gradient.
    """

    name: str
    options: dict[str, Any] = field(default_factory=dict)

    # -- public properties -------------------------------------------------------------------
    @property
    def bits(self) -> int:
        """Bits needed to store one quantized weight (without the per-tensor scale)."""
        o = self.options
        if self.name == "float":
            return 32
        if self.name == "binary":
            return 1
        if self.name == "ternary":
            return 2
        if self.name == "pow2-ternary":
            # levels: 2 * (2^(m+f) - 1) + 1 on the grid clip, two more with the paper's clip
            return o["integer_bits"] + o["fractional_bits"] + (1 if o["clip"] == "grid" else 2)
        n_exp = o["max_exp"] - o["min_exp"] + 1
        return 1 + max(1, math.ceil(math.log2(n_exp)))

    @property
    def stochastic_supported(self) -> bool:
        return self.name != "float"

    @property
    def levels(self) -> Tensor | None:
        """The finite set of values for methods whose levels do not depend on the matrix."""
        o = self.options
        if self.name == "pow2-ternary":
            step = 2.0 ** -o["fractional_bits"]
            n = round(self._fixed_point_bound() / step)
            return torch.arange(-n, n + 1, dtype=torch.float64) * step
        if self.name == "exponential":
            mags = 2.0 ** torch.arange(o["min_exp"], o["max_exp"] + 1, dtype=torch.float64)
            return torch.cat([-mags.flip(0), mags])
        return None

    # -- scales ------------------------------------------------------------------------------
    def scale(self, w: Tensor, fan_in: int | None = None, fan_out: int | None = None) -> float:
        """H (binary) or W0 (ternary) for this matrix; 1.0 for the other methods."""
        if self.name not in ("binary", "ternary"):
            return 1.0
        s = self.options["scale"]
        if s == "unit":
            return 1.0
        if s == "rms":  # the shadow tensor's own RMS, sqrt(mean(W^2)), recomputed every call
            return max(float(w.detach().pow(2).mean().sqrt()), 1e-12)
        if s == "glorot":
            if fan_in is None or fan_out is None:
                if w.dim() != 2:
                    raise ValueError(
                        f"{self.name}: scale='glorot' needs fan_in and fan_out for a "
                        f"{w.dim()}-D tensor (only 2-D tensors infer them from their shape)"
                    )
                fan_out, fan_in = w.shape
            return math.sqrt(6.0 / (fan_in + fan_out))
        return float(s)

    def rounding_variance(
        self, w: Tensor, fan_in: int | None = None, fan_out: int | None = None
    ) -> Tensor:
        """Per-weight variance ``E[(q(w) - w)^2]`` of the *stochastic* rounding (binary and
        ternary; zero for the other methods here), for weights inside the clip range.

        binary: ``P(+H) = (w/H + 1)/2`` gives ``E[q] = w`` and ``E[q^2] = H^2``, so
        ``Var = H^2 - w^2``; ternary: ``P(q = W0 sign w) = |w|/W0`` gives ``E[q] = w`` and
        ``E[q^2] = W0 |w|``, so ``Var = W0 |w| - w^2``. Weights are clipped to ``[-s, s]`` first.
        """
        if self.name not in ("binary", "ternary"):
            return torch.zeros_like(w)
        s = self.scale(w, fan_in, fan_out)
        a = w.detach().abs().clamp(max=s)
        var = s * s - a * a if self.name == "binary" else s * a - a * a
        return var.clamp_(min=0.0)

    def clip_bound(self, w: Tensor, fan_in: int | None = None, fan_out: int | None = None):
        """Range the shadow weights are clipped to by BinaryConnect-style clipping, or None.

        binary: [-H, H]; ternary: [-W0, W0]; pow2-ternary: the grid's range; exponential:
        [-2^max_exp, 2^max_exp]; float: no clipping.
        """
        if self.name == "float":
            return None
        if self.name in ("binary", "ternary"):
            if self.options["scale"] == "rms":  # clipping to its own RMS would shrink it
                return None
            return self.scale(w, fan_in, fan_out)
        if self.name == "pow2-ternary":
            return self._fixed_point_bound()
        return 2.0 ** self.options["max_exp"]

    def _fixed_point_bound(self) -> float:
        m, f = self.options["integer_bits"], self.options["fractional_bits"]
        if self.options["clip"] == "paper":
            return 2.0**m
        return 2.0**m - 2.0**-f

    # -- the quantizers ----------------------------------------------------------------------
    def __call__(
        self,
        w: Tensor,
        stochastic: bool = False,
        generator: torch.Generator | None = None,
        *,
        fan_in: int | None = None,
        fan_out: int | None = None,
    ) -> Tensor:
        if not isinstance(w, Tensor):
            raise TypeError(
                f"quantizer {self.name!r} expects a torch.Tensor, got {type(w).__name__}"
            )
        if self.name == "float":
            return w
        if not w.is_floating_point():
            raise TypeError(f"quantizer {self.name!r} expects a floating tensor, got {w.dtype}")
        with torch.no_grad():
            fn: Callable[..., Tensor] = getattr(self, "_" + self.name.replace("-", "_"))
            w_q = fn(w.detach(), stochastic, generator, fan_in, fan_out)
        return straight_through(w, w_q)

    def _binary(self, w, stochastic, generator, fan_in, fan_out) -> Tensor:
        # deterministic: +H if w >= 0 else -H; stochastic: +H w.p. hard_sigmoid(w/H)
        h = self.scale(w, fan_in, fan_out)
        if stochastic:
            p = ((w / h + 1.0) / 2.0).clamp_(0.0, 1.0)
            positive = _uniform(w, generator) < p
        else:
            positive = w >= 0
        return torch.where(positive, h, -h).to(w.dtype)

    def _ternary(self, w, stochastic, generator, fan_in, fan_out) -> Tensor:
        # deterministic: W0 sign(w) [|w| >= W0/2]; stochastic: W0 sign(w) Bernoulli(|w|/W0)
        w0 = self.scale(w, fan_in, fan_out)
        if stochastic:
            keep = _uniform(w, generator) < (w.abs() / w0).clamp_(0.0, 1.0)
        else:
            keep = w.abs() >= w0 / 2.0
        return torch.where(keep, torch.sign(w) * w0, torch.zeros_like(w))

    def _pow2_ternary(self, w, stochastic, generator, fan_in, fan_out) -> Tensor:
        # Qm.f: round(2^f clip(w)) 2^-f, rounding halves away from zero (|w| >= 0.25 -> 0.5)
        step = 2.0 ** -self.options["fractional_bits"]
        bound = self._fixed_point_bound()
        x = w.clamp(-bound, bound) / step
        if stochastic:  # our extension: unbiased stochastic rounding on the grid
            lo = torch.floor(x)
            n = lo + (_uniform(w, generator) < (x - lo)).to(w.dtype)
        else:
            n = torch.sign(x) * torch.floor(x.abs() + 0.5)
        return (n * step).to(w.dtype)

    def _exponential(self, w, stochastic, generator, fan_in, fan_out) -> Tensor:
        # k = floor(log2|w|), p = |w|/2^k - 1; exponent k+1 w.p. p (stochastic) or if p > 0.5.
        # Both paths are exact: frexp gives |w| = m 2^E with m in [0.5, 1), so k = E - 1 and
        # p = 2m - 1; for float32 the IEEE fields give k and p directly (3x faster on CPU).
        lo_e, hi_e = self.options["min_exp"], self.options["max_exp"]
        if w.dtype == torch.float32 and -126 <= lo_e and hi_e <= 127:
            return self._exponential_f32(w, stochastic, generator, lo_e, hi_e)
        m, E = torch.frexp(w.abs())
        if stochastic:  # uniforms in float64 (as in every version): p is exact there
            up = _uniform(m.to(torch.float64), generator) < (2 * m - 1).to(torch.float64)
        else:
            up = m > 0.75
        e = (E - 1 + up.to(E.dtype)).clamp_(lo_e, hi_e)
        e = torch.where(m == 0, lo_e, e)  # zero -> exponent min_exp
        mag = torch.ldexp(torch.ones_like(w), e)  # 2^e, exact for the allowed exponents
        return torch.where(w > 0, mag, -mag)  # zero -> -2^min_exp

    @staticmethod
    def _exponential_f32(w, stochastic, generator, lo_e, hi_e) -> Tensor:
        # float32 bits: sign (1) | biased exponent E (8) | mantissa M (23); |w| = (1 + M/2^23)
        # 2^(E-127) for normal numbers, so k = E - 127 and p = M / 2^23. Zero and subnormals
        # (E = 0) lie below 2^-126 <= 2^min_exp and clamp to min_exp whatever p says.
        b = w.view(torch.int32)
        mag = b & 0x7FFFFFFF  # |w| as bits
        if stochastic:
            p = (b & 0x7FFFFF).to(torch.float64) * 2.0**-23
            mag = (mag >> 23).add_((_uniform(p, generator) < p).to(torch.int32))
        else:  # p > 0.5 <=> M > 2^22: adding 2^22 - 1 carries exactly those into E
            mag = mag.add_(0x3FFFFF).bitwise_right_shift_(23)
        # clamping the biased exponent also sends zero and subnormals (E = 0) to min_exp
        mag = mag.clamp_(lo_e + 127, hi_e + 127).bitwise_left_shift_(23)
        out = torch.where(w > 0, mag, mag | -(2**31))  # zero -> -2^min_exp
        return out.view(torch.float32)

    def __repr__(self) -> str:
        opts = ", ".join(f"{k}={v!r}" for k, v in self.options.items())
        return f"quantizer({self.name!r}{', ' if opts else ''}{opts})"


_DEFAULTS: dict[str, dict[str, Any]] = {
    "float": {},
    "binary": {"scale": "unit"},
    "ternary": {"scale": "glorot"},
    "pow2-ternary": {"integer_bits": 0, "fractional_bits": 1, "clip": "grid"},
    "exponential": {"min_exp": -22, "max_exp": 9},
}

OPTIONS_HELP: dict[str, str] = {
    "float": "no options",
    "binary": "scale: 'unit' (H=1, authors' code; default) | 'glorot' | 'rms' | number",
    "ternary": "scale: 'glorot' (W0 per matrix; default) | 'unit' | 'rms' | number",
    "pow2-ternary": "integer_bits (0), fractional_bits (1), clip: 'grid' (authors' code) | 'paper'",
    "exponential": "min_exp (-22), max_exp (9)",
}


def quantizer(name: str, **options: Any) -> Quantizer:
    """Build the quantizer ``name`` (one of :data:`SCHEMES`) with method options.

    * ``binary`` (BinaryConnect, Courbariaux et al. 2015): ``+H if w >= 0 else -H``;
      stochastic ``+H`` with probability ``clip((w/H + 1)/2, 0, 1)``. ``scale``: ``"unit"``
      (H = 1 for every matrix, the authors' code), ``"glorot"``, ``"rms"`` (H = the shadow
      tensor's RMS, recomputed at every call) or a number.
    * ``ternary`` (TernaryConnect, Lin et al. 2015): ``W0 sign(w)`` if ``|w| >= W0/2`` else 0;
      stochastic ``W0 sign(w) Bernoulli(clip(|w|/W0, 0, 1))``. ``scale``: ``"glorot"`` (W0 =
      sqrt(6/(fan_in+fan_out)), the authors' code; default), ``"unit"`` (the paper's
      deterministic formula, threshold 0.5; the paper writes ``> 0.5`` for +1 and ``<= -0.5``
      for -1, we use the symmetric ``>=``), or a number.
    * ``pow2-ternary`` (Stromatias et al. 2015): ``round(2^f clip(w)) 2^-f`` in Qm.f fixed
      point, halves rounded away from zero. ``clip="grid"`` clips to ``±(2^m - 2^-f)`` (the
      authors' code; gives {-0.5, 0, 0.5} by default), ``clip="paper"`` to ``±2^m`` (one more
      level each side). The paper's method is deterministic; ``stochastic=True`` applies unbiased
      stochastic rounding on the same grid (our extension).
    * ``exponential`` (the paper's method): sign kept, ``k = floor(log2|w|)``,
      ``p = |w|/2^k - 1``; exponent ``k+1`` with probability ``p`` (stochastic, unbiased) or when
      ``p > 0.5`` (deterministic). Exponents are clipped to ``[min_exp, max_exp]``; an exact zero
      has no code in sign + exponent storage and maps to ``-2^min_exp``, as in the authors' code.
    * ``float``: identity.

    Raises ``ValueError`` for an unknown name or option, naming what is allowed.
    """
    if name not in _DEFAULTS:
        raise ValueError(
            f"unknown quantization scheme {name!r}; choose one of {', '.join(SCHEMES)}"
        )
    allowed = _DEFAULTS[name]
    unknown = sorted(set(options) - set(allowed))
    if unknown:
        valid = ", ".join(allowed) or "none"
        raise ValueError(f"{name}: unknown option(s) {', '.join(unknown)}; valid options: {valid}")
    opts = {**allowed, **options}
    if name in ("binary", "ternary"):
        s = opts["scale"]
        numeric = isinstance(s, int | float) and not isinstance(s, bool)
        if not (s in ("unit", "glorot", "rms") or numeric):
            raise ValueError(
                f"{name}: scale must be 'unit', 'glorot', 'rms' or a positive number, got {s!r}"
            )
        if not isinstance(s, str):
            opts["scale"] = _check_number("scale", name, s, positive=True)
    elif name == "pow2-ternary":
        for key in ("integer_bits", "fractional_bits"):
            v = opts[key]
            if isinstance(v, bool) or not isinstance(v, int) or v < 0:
                raise ValueError(f"{name}: {key} must be a non-negative integer, got {v!r}")
        if opts["integer_bits"] + opts["fractional_bits"] == 0:
            raise ValueError(f"{name}: integer_bits + fractional_bits must be at least 1")
        if opts["clip"] not in ("grid", "paper"):
            raise ValueError(f"{name}: clip must be 'grid' or 'paper', got {opts['clip']!r}")
    elif name == "exponential":
        for key in ("min_exp", "max_exp"):
            v = opts[key]
            if isinstance(v, bool) or not isinstance(v, int):
                raise ValueError(f"{name}: {key} must be an integer, got {v!r}")
            if not -126 <= v <= 127:
                raise ValueError(f"{name}: {key} must lie in [-126, 127] (float32), got {v}")
        if opts["min_exp"] > opts["max_exp"]:
            raise ValueError(
                f"{name}: min_exp ({opts['min_exp']}) must not exceed max_exp ({opts['max_exp']})"
            )
    return Quantizer(name, opts)
