"""The weight quantizers of Ott et al. 2016, *Recurrent Neural Networks With Limited Numerical
Precision*, https://arxiv.org/abs/1608.06902 (Sec. 2), and the straight-through estimator.

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

Each method is one small class registered under its name (:func:`register`): it owns its
options and their defaults, its bits, levels, scale, clip range and rounding variance, and
its docstring gives ``q(w)`` and the pseudo-gradient. :func:`quantizer` builds one by name.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any, ClassVar

import numpy as np
import torch
from torch import Tensor

from .quantizer_base import REGISTRY as _REGISTRY
from .quantizer_base import (
    InvalidCodes,
    Quantizer,
    Scaled,
    grid_decode,
    grid_encode,
    register,
    uniform_like,
)
from .quantizer_base import straight_through as straight_through

__all__ = [
    "SCHEMES",
    "Binary",
    "Exponential",
    "Float",
    "Pow2Ternary",
    "Quantizer",
    "Ternary",
    "quantizer",
    "register",
    "straight_through",
]


@register
@dataclass(frozen=True, repr=False)
class Float(Quantizer):
    """``float``: the identity, ``q(w) = w`` (32 bits; no options, no stochastic variant)."""

    scheme: ClassVar[str] = "float"
    stochastic_supported: ClassVar[bool] = False

    @property
    def bits(self) -> int:
        return 32


@register
@dataclass(frozen=True, repr=False)
class Binary(Scaled):
    """``binary`` (BinaryConnect, Courbariaux et al. 2015), 1 bit, levels {-H, +H}.

    ``q(w) = +H if w >= 0 else -H``; stochastic: ``+H`` with probability
    ``p = clip((w/H + 1)/2, 0, 1)`` (hard sigmoid), so ``E[q(w)] = w`` inside ``[-H, H]``.
    Pseudo-gradient ``dq/dw := 1`` (straight-through); the shadow weights are clipped to
    ``[-H, H]``. ``scale``: ``"unit"`` (H = 1 for every matrix, the authors' code; default),
    ``"glorot"``, ``"rms"`` (H = the shadow tensor's RMS, recomputed at every call) or a number.
    """

    scheme: ClassVar[str] = "binary"
    clips_by_default: ClassVar[bool] = True
    defaults: ClassVar[dict[str, Any]] = {"scale": "unit"}
    options_help: ClassVar[str] = (
        "scale: 'unit' (H=1, authors' code; default) | 'glorot' | 'rms' | number"
    )

    @property
    def bits(self) -> int:
        return 1

    def stochastic_moments(self, w, fan_in=None, fan_out=None) -> tuple[Tensor, Tensor]:
        """mean ``clip(w, -H, H)``, var ``H^2 - mean^2`` (``H^2 - w^2``)."""
        h = self.scale(w, fan_in, fan_out)
        mean = w.clamp(-h, h)
        return mean, h**2 - mean**2

    def _quantize(self, w, stochastic, generator, fan_in, fan_out) -> Tensor:
        # deterministic: +H if w >= 0 else -H; stochastic: +H w.p. hard_sigmoid(w/H)
        h = self.scale(w, fan_in, fan_out)
        if stochastic:
            p = ((w / h + 1.0) / 2.0).clamp_(0.0, 1.0)
            positive = uniform_like(w, generator) < p
        else:
            positive = w >= 0
        return torch.where(positive, h, -h).to(w.dtype)

    def code_layout(self) -> tuple[int, int]:
        return 1, 1

    def encode(self, w: np.ndarray, scale: float) -> np.ndarray:
        return (w < 0).astype(np.int64)  # the bit is the sign: 0 -> +s, 1 -> -s

    def decode(self, codes: np.ndarray, scale: float) -> np.ndarray:
        s = np.float32(scale)
        return np.where(codes == 1, -s, s).astype(np.float32)


@register
@dataclass(frozen=True, repr=False)
class Ternary(Scaled):
    """``ternary`` (TernaryConnect, Lin et al. 2015), 2 bits, levels {-W0, 0, +W0}.

    ``q(w) = W0 sign(w)`` if ``|w| >= W0/2`` else 0; stochastic:
    ``W0 sign(w) Bernoulli(clip(|w|/W0, 0, 1))``, so ``E[q(w)] = w`` inside ``[-W0, W0]``.
    Pseudo-gradient ``dq/dw := 1`` (straight-through); the shadow weights are clipped to
    ``[-W0, W0]``. ``scale``: ``"glorot"`` (W0 = sqrt(6/(fan_in+fan_out)), the authors' code;
    default), ``"unit"`` (the paper's deterministic formula, threshold 0.5; the paper writes
    ``> 0.5`` for +1 and ``<= -0.5`` for -1, we use the symmetric ``>=``), or a number.
    """

    scheme: ClassVar[str] = "ternary"
    clips_by_default: ClassVar[bool] = True
    defaults: ClassVar[dict[str, Any]] = {"scale": "glorot"}
    options_help: ClassVar[str] = (
        "scale: 'glorot' (W0 per matrix; default) | 'glorot*K' (K W0) | 'unit' | 'rms' | number"
    )

    @property
    def bits(self) -> int:
        return 2

    def stochastic_moments(self, w, fan_in=None, fan_out=None) -> tuple[Tensor, Tensor]:
        """``p = clip(|w|/W0, 0, 1)``: mean ``W0 sign(w) p``, var ``W0^2 p(1-p)``
        (``W0|w| - w^2``)."""
        w0 = self.scale(w, fan_in, fan_out)
        p = (w.abs() / w0).clamp(0, 1)
        return w0 * torch.sign(w) * p, w0**2 * p * (1 - p)

    def _quantize(self, w, stochastic, generator, fan_in, fan_out) -> Tensor:
        # deterministic: W0 sign(w) [|w| >= W0/2]; stochastic: W0 sign(w) Bernoulli(|w|/W0)
        w0 = self.scale(w, fan_in, fan_out)
        if stochastic:
            keep = uniform_like(w, generator) < (w.abs() / w0).clamp_(0.0, 1.0)
        else:
            keep = w.abs() >= w0 / 2.0
        return torch.where(keep, torch.sign(w) * w0, torch.zeros_like(w))

    def code_layout(self) -> tuple[int, int]:
        return 2, 1

    def encode(self, w: np.ndarray, scale: float) -> np.ndarray:
        return grid_encode(w, 2, np.float32(scale))  # n in {-1, 0, 1}, two's complement

    def decode(self, codes: np.ndarray, scale: float) -> np.ndarray:
        return grid_decode(codes, 2, 1, np.float32(scale))


@register
@dataclass(frozen=True, repr=False)
class Pow2Ternary(Quantizer):
    """``pow2-ternary`` (Stromatias et al. 2015): Qm.f fixed point, ``m + f + 1`` bits.

    ``q(w) = round(2^f clip(w)) 2^-f``, halves rounded away from zero. ``clip="grid"`` clips to
    ``±(2^m - 2^-f)`` (the authors' code; gives {-0.5, 0, 0.5} by default), ``clip="paper"``
    to ``±2^m`` (one more level each side). The paper's method is deterministic;
    ``stochastic=True`` applies unbiased stochastic rounding on the same grid (our extension).
    Pseudo-gradient ``dq/dw := 1`` (straight-through); the shadow weights are clipped to the
    grid's range.
    """

    scheme: ClassVar[str] = "pow2-ternary"
    clips_by_default: ClassVar[bool] = True
    defaults: ClassVar[dict[str, Any]] = {"integer_bits": 0, "fractional_bits": 1, "clip": "grid"}
    options_help: ClassVar[str] = (
        "integer_bits (0), fractional_bits (1), clip: 'grid' (authors' code) | 'paper'"
    )

    @classmethod
    def check_options(cls, opts: dict[str, Any]) -> dict[str, Any]:
        name = cls.scheme
        for key in ("integer_bits", "fractional_bits"):
            v = opts[key]
            if isinstance(v, bool) or not isinstance(v, int) or v < 0:
                raise ValueError(f"{name}: {key} must be a non-negative integer, got {v!r}")
        if opts["integer_bits"] + opts["fractional_bits"] == 0:
            raise ValueError(f"{name}: integer_bits + fractional_bits must be at least 1")
        if opts["clip"] not in ("grid", "paper"):
            raise ValueError(f"{name}: clip must be 'grid' or 'paper', got {opts['clip']!r}")
        return opts

    @property
    def bits(self) -> int:
        # levels: 2 * (2^(m+f) - 1) + 1 on the grid clip, two more with the paper's clip
        o = self.options
        return o["integer_bits"] + o["fractional_bits"] + (1 if o["clip"] == "grid" else 2)

    @property
    def levels(self) -> Tensor:
        step = 2.0 ** -self.options["fractional_bits"]
        n = round(self._fixed_point_bound() / step)
        return torch.arange(-n, n + 1, dtype=torch.float64) * step

    def clip_bound(self, w: Tensor, fan_in: int | None = None, fan_out: int | None = None):
        return self._fixed_point_bound()

    def _fixed_point_bound(self) -> float:
        m, f = self.options["integer_bits"], self.options["fractional_bits"]
        if self.options["clip"] == "paper":
            return 2.0**m
        return 2.0**m - 2.0**-f

    def stochastic_moments(self, w, fan_in=None, fan_out=None) -> tuple[Tensor, Tensor]:
        """grid step s, x = clip(w), lo = s floor(x/s): mean ``x``, var ``(x - lo)(lo + s - x)``."""
        s = 2.0 ** -self.options["fractional_bits"]
        x = w.clamp(-self.clip_bound(w), self.clip_bound(w))
        lo = torch.floor(x / s) * s
        return x, (x - lo) * (lo + s - x)

    def _quantize(self, w, stochastic, generator, fan_in, fan_out) -> Tensor:
        # Qm.f: round(2^f clip(w)) 2^-f, rounding halves away from zero (|w| >= 0.25 -> 0.5)
        step = 2.0 ** -self.options["fractional_bits"]
        bound = self._fixed_point_bound()
        x = w.clamp(-bound, bound) / step
        if stochastic:  # our extension: unbiased stochastic rounding on the grid
            lo = torch.floor(x)
            n = lo + (uniform_like(w, generator) < (x - lo)).to(w.dtype)
        else:
            n = torch.sign(x) * torch.floor(x.abs() + 0.5)
        return (n * step).to(w.dtype)

    def shift_add(self, w: np.ndarray, scale: float) -> tuple[list, float, int]:
        """``|n| = |w| 2^f`` by shift-and-add over its bits, then a right shift by f."""
        f = self.options["fractional_bits"]
        n = np.rint(np.abs(w) * 2.0**f).astype(np.int64)
        planes = [((n >> k) & 1 == 1, k) for k in range(max(1, int(n.max()).bit_length()))]
        return planes, 1.0, f

    def code_layout(self) -> tuple[int, int]:
        m, f = self.options["integer_bits"], self.options["fractional_bits"]
        n = 2 ** (m + f) - (1 if self.options["clip"] == "grid" else 0)
        return max(1, math.ceil(math.log2(2 * n + 1))), n

    def encode(self, w: np.ndarray, scale: float) -> np.ndarray:
        bits, _ = self.code_layout()
        return grid_encode(w, bits, 2.0 ** -self.options["fractional_bits"])

    def decode(self, codes: np.ndarray, scale: float) -> np.ndarray:
        bits, n_max = self.code_layout()
        return grid_decode(codes, bits, n_max, np.float32(2.0 ** -self.options["fractional_bits"]))


@register
@dataclass(frozen=True, repr=False)
class Exponential(Quantizer):
    """``exponential`` (the paper's method): ``±2^k``, ``k in [min_exp, max_exp]``, stored as
    sign + exponent in ``1 + ceil(log2(max_exp - min_exp + 1))`` bits.

    Sign kept, ``k = floor(log2|w|)``, ``p = |w|/2^k - 1``; ``q(w) = sign(w) 2^(k+1)`` with
    probability ``p`` (stochastic, unbiased) or when ``p > 0.5`` (deterministic), else
    ``sign(w) 2^k``. Exponents are clipped to ``[min_exp, max_exp]``; an exact zero has no code
    in sign + exponent storage and maps to ``-2^min_exp``, as in the authors' code.
    Pseudo-gradient ``dq/dw := 1`` (straight-through); the shadow weights are clipped to
    ``[-2^max_exp, 2^max_exp]``.
    """

    scheme: ClassVar[str] = "exponential"
    defaults: ClassVar[dict[str, Any]] = {"min_exp": -22, "max_exp": 9}
    options_help: ClassVar[str] = "min_exp (-22), max_exp (9)"

    @classmethod
    def check_options(cls, opts: dict[str, Any]) -> dict[str, Any]:
        name = cls.scheme
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
        return opts

    @property
    def bits(self) -> int:
        n_exp = self.options["max_exp"] - self.options["min_exp"] + 1
        return 1 + max(1, math.ceil(math.log2(n_exp)))

    @property
    def levels(self) -> Tensor:
        o = self.options
        mags = 2.0 ** torch.arange(o["min_exp"], o["max_exp"] + 1, dtype=torch.float64)
        return torch.cat([-mags.flip(0), mags])

    def clip_bound(self, w: Tensor, fan_in: int | None = None, fan_out: int | None = None):
        return 2.0 ** self.options["max_exp"]

    def stochastic_moments(self, w, fan_in=None, fan_out=None) -> tuple[Tensor, Tensor]:
        """``a = |w|``, ``k = floor(log2 a)``, ``p = a/2^k - 1``, exponents k, k+1 clipped to
        [min_exp, max_exp] (e_lo, e_hi): mean ``sign(w)(2^e_lo (1-p) + 2^e_hi p)``, var
        ``(2^e_hi - 2^e_lo)^2 p(1-p)`` (``(|w| - 2^k)(2^(k+1) - |w|)``); w = 0 gives
        ``-2^min_exp`` exactly."""
        lo_e, hi_e = self.options["min_exp"], self.options["max_exp"]
        a = w.abs()
        zero = a == 0
        k = torch.floor(torch.log2(torch.where(zero, 1.0, a)))
        p = a / torch.exp2(k) - 1
        v_lo, v_hi = torch.exp2(k.clamp(lo_e, hi_e)), torch.exp2((k + 1).clamp(lo_e, hi_e))
        sign = torch.where(w > 0, 1.0, -1.0).to(w.dtype)
        mean = torch.where(zero, -(2.0**lo_e), sign * (v_lo * (1 - p) + v_hi * p))
        var = torch.where(zero, 0.0, (v_hi - v_lo) ** 2 * p * (1 - p))
        return mean, var

    def _quantize(self, w, stochastic, generator, fan_in, fan_out) -> Tensor:
        # k = floor(log2|w|), p = |w|/2^k - 1; exponent k+1 w.p. p (stochastic) or if p > 0.5.
        # Both paths are exact: frexp gives |w| = m 2^E with m in [0.5, 1), so k = E - 1 and
        # p = 2m - 1; for float32 the IEEE fields give k and p directly (3x faster on CPU).
        lo_e, hi_e = self.options["min_exp"], self.options["max_exp"]
        if w.dtype == torch.float32 and -126 <= lo_e and hi_e <= 127:
            return self._exponential_f32(w, stochastic, generator, lo_e, hi_e)
        m, E = torch.frexp(w.abs())
        if stochastic:  # uniforms in float64 (as in every version): p is exact there
            up = uniform_like(m.to(torch.float64), generator) < (2 * m - 1).to(torch.float64)
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
            mag = (mag >> 23).add_((uniform_like(p, generator) < p).to(torch.int32))
        else:  # p > 0.5 <=> M > 2^22: adding 2^22 - 1 carries exactly those into E
            mag = mag.add_(0x3FFFFF).bitwise_right_shift_(23)
        # clamping the biased exponent also sends zero and subnormals (E = 0) to min_exp
        mag = mag.clamp_(lo_e + 127, hi_e + 127).bitwise_left_shift_(23)
        out = torch.where(w > 0, mag, mag | -(2**31))  # zero -> -2^min_exp
        return out.view(torch.float32)

    def shift_add(self, w: np.ndarray, scale: float) -> tuple[list, float, int]:
        """One plane: ``x_j`` shifted by each weight's exponent (right for e < 0)."""
        _, ex = np.frexp(np.abs(w))
        return [(w != 0, ex.astype(np.int64) - 1)], 1.0, 0

    def code_layout(self) -> tuple[int, int]:
        n_exp = self.options["max_exp"] - self.options["min_exp"] + 1
        return 1 + max(1, math.ceil(math.log2(n_exp))), n_exp

    def encode(self, w: np.ndarray, scale: float) -> np.ndarray:
        # top bit the sign (1 = negative), low bits u = k - min_exp
        bits, _ = self.code_layout()
        _, ex = np.frexp(np.abs(w))  # |w| = 0.5 * 2^ex exactly for powers of two
        return ((w < 0).astype(np.int64) << (bits - 1)) | (
            ex.astype(np.int64) - 1 - self.options["min_exp"]
        ).clip(0, 2 ** (bits - 1) - 1)

    def decode(self, codes: np.ndarray, scale: float) -> np.ndarray:
        bits, n_max = self.code_layout()
        ebits = bits - 1
        u = codes & ((1 << ebits) - 1)
        if codes.size and u.max() >= n_max:
            raise InvalidCodes(f"exponent index {int(u.max())} beyond {n_max - 1}")
        mag = np.ldexp(np.float32(1.0), (u + self.options["min_exp"]).astype(np.int32))
        return np.where(codes >> ebits == 1, -mag, mag).astype(np.float32)


SCHEMES: tuple[str, ...] = tuple(_REGISTRY)  # float, binary, ternary, pow2-ternary, exponential
_DEFAULTS: dict[str, dict[str, Any]] = {n: dict(c.defaults) for n, c in _REGISTRY.items()}
OPTIONS_HELP: dict[str, str] = {n: c.options_help for n, c in _REGISTRY.items()}


def quantizer(name: str, **options: Any) -> Quantizer:
    """Build the quantizer ``name`` (one of :data:`SCHEMES`) with method options: :class:`Float`,
    :class:`Binary`, :class:`Ternary`, :class:`Pow2Ternary` or :class:`Exponential` (each
    docstring gives its ``q(w)``, pseudo-gradient and options).

    Raises ``ValueError`` for an unknown name or option, naming what is allowed.
    """
    if name not in _REGISTRY:
        raise ValueError(
            f"unknown quantization scheme {name!r}; choose one of {', '.join(SCHEMES)}"
        )
    cls = _REGISTRY[name]
    allowed = cls.defaults
    unknown = sorted(set(options) - set(allowed))
    if unknown:
        valid = ", ".join(allowed) or "none"
        raise ValueError(f"{name}: unknown option(s) {', '.join(unknown)}; valid options: {valid}")
    return cls(name, cls.check_options({**allowed, **options}))
