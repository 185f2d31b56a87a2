"""The base of the weight quantizers (:mod:`qrnn.quantizers`): the straight-through estimator,
the :class:`Quantizer` every method subclasses, and the registry that maps a method's name to
its class. After Ott et al. 2016, *Recurrent Neural Networks With Limited Numerical
Precision*, https://arxiv.org/abs/1608.06902 (Sec. 2).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any, ClassVar

import numpy as np
import torch
from torch import Tensor

__all__ = ["REGISTRY", "InvalidCodes", "Quantizer", "Scaled", "register", "straight_through"]


def straight_through(w: Tensor, w_q: Tensor) -> Tensor:
    """Return a tensor with the *values* of ``w_q`` and the gradient of ``w`` (identity STE).

    ``w - w.detach()`` is exactly zero, so the value is bit-identical to ``w_q`` (unlike
    ``w + (w_q - w).detach()``, which can round), and ``d out / d w = 1``.
    """
    return w_q.detach() + (w - w.detach())


def uniform_like(w: Tensor, generator: torch.Generator | None) -> Tensor:
    """Uniform draws on [0, 1) shaped like ``w``: the coin flips of stochastic rounding."""
    return torch.rand(w.shape, generator=generator, dtype=w.dtype, device=w.device)


def _check_number(name: str, method: str, value: Any, *, positive: bool = False) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise ValueError(f"{method}: option {name!r} must be a number, got {value!r}")
    if not math.isfinite(value) or (positive and value <= 0):
        raise ValueError(
            f"{method}: option {name!r} must be a finite positive number, got {value!r}"
        )
    return float(value)


REGISTRY: dict[str, type[Quantizer]] = {}


def register(cls: type[Quantizer]) -> type[Quantizer]:
    """Class decorator: make ``cls`` buildable by :func:`quantizer` under ``cls.scheme``."""
    REGISTRY[cls.scheme] = cls
    return cls


@dataclass(frozen=True)
class Quantizer:
    """A weight quantizer: ``q(w, stochastic=False, generator=None) -> W_q`` (same shape, dtype,
    device). Build one with :func:`quantizer`; the result carries the straight-through gradient
    (pseudo-gradient ``dW_q/dW := 1``, :func:`straight_through`). One subclass per method.
    """

    name: str
    options: dict[str, Any] = field(default_factory=dict)

    scheme: ClassVar[str] = ""  # the registered name
    defaults: ClassVar[dict[str, Any]] = {}  # every option with its default
    options_help: ClassVar[str] = "no options"  # for ``qrnn schemes``
    stochastic_supported: ClassVar[bool] = True
    clips_by_default: ClassVar[bool] = False  # clip_shadow="auto" clips the shadow weights

    # -- options -----------------------------------------------------------------------------
    @classmethod
    def check_options(cls, opts: dict[str, Any]) -> dict[str, Any]:
        """The options (defaults filled in) after checking them; ``ValueError`` names the bad
        one and what is allowed."""
        return opts

    # -- public properties -------------------------------------------------------------------
    @property
    def bits(self) -> int:
        """Bits needed to store one quantized weight (without the per-tensor scale)."""
        raise NotImplementedError

    @property
    def levels(self) -> Tensor | None:
        """The finite set of values for methods whose levels do not depend on the matrix."""
        return None

    # -- scales ------------------------------------------------------------------------------
    def scale(self, w: Tensor, fan_in: int | None = None, fan_out: int | None = None) -> float:
        """H (binary) or W0 (ternary) for this matrix; 1.0 for the other methods."""
        return 1.0

    def rounding_variance(
        self, w: Tensor, fan_in: int | None = None, fan_out: int | None = None
    ) -> Tensor:
        """Per-weight variance ``E[(q(w) - w)^2]`` of the *stochastic* rounding (binary and
        ternary; zero for the other methods here), for weights inside the clip range."""
        return torch.zeros_like(w)

    def clip_bound(self, w: Tensor, fan_in: int | None = None, fan_out: int | None = None):
        """Range the shadow weights are clipped to by BinaryConnect-style clipping, or None."""
        return None

    def stochastic_moments(
        self, w: Tensor, fan_in: int | None = None, fan_out: int | None = None
    ) -> tuple[Tensor, Tensor]:
        """Per-weight mean and variance of the *stochastic* ``q(w)`` (``w`` float64; see
        ``qrnn.analysis.rounding.rounding_moments``)."""
        raise NotImplementedError

    # -- integer codes: W_q in `bits` bits each, the packed format of :mod:`qrnn.codes` --------
    def code_layout(self) -> tuple[int, int]:
        """(bits per code, N): N the largest ``|n|`` of an integer grid, or the number of
        exponents (exponential)."""
        raise ValueError(f"scheme {self.name!r} has no integer codes")

    def encode(self, w: np.ndarray, scale: float) -> np.ndarray:
        """Integer codes (int64, each below ``2^bits``) of quantized float32 values ``w``."""
        raise ValueError(f"scheme {self.name!r} has no integer codes")

    def decode(self, codes: np.ndarray, scale: float) -> np.ndarray:
        """float32 values of int64 ``codes`` in ``0 .. 2^bits - 1``; ``InvalidCodes`` for
        a code that is no level."""
        raise ValueError(f"scheme {self.name!r} has no integer codes")

    def shift_add(self, w: np.ndarray, scale: float) -> tuple[list, float, int]:
        """The multiplication-free form of quantized float64 ``w`` (the integer path of
        ``qrnn.hardware``): ``(planes, scale, post_shift)`` with ``w = sign(w) * scale *
        sum_k [mask_k] 2^shift_k``, then an arithmetic right shift by ``post_shift``."""
        raise ValueError(f"no integer path for scheme {self.name!r}")

    # -- the quantizer -----------------------------------------------------------------------
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
        if not self.stochastic_supported:  # float: the identity
            return w
        if not w.is_floating_point():
            raise TypeError(f"quantizer {self.name!r} expects a floating tensor, got {w.dtype}")
        with torch.no_grad():
            w_q = self._quantize(w.detach(), stochastic, generator, fan_in, fan_out)
        return straight_through(w, w_q)

    def _quantize(self, w, stochastic, generator, fan_in, fan_out) -> Tensor:
        """``W_q`` of the detached ``w`` (no gradient)."""
        raise NotImplementedError

    def __repr__(self) -> str:
        opts = ", ".join(f"{k}={v!r}" for k, v in self.options.items())
        return f"quantizer({self.name!r}{', ' if opts else ''}{opts})"


class InvalidCodes(ValueError):
    """Integer codes that are no level of the method (a corrupted file)."""


def grid_encode(w: np.ndarray, bits: int, step) -> np.ndarray:
    """Codes of values ``n * step`` on an integer grid: ``n`` in two's complement."""
    n = np.rint(w.astype(np.float64) / float(step)).astype(np.int64)
    return n & (2**bits - 1)  # two's complement in `bits` bits


def grid_decode(codes: np.ndarray, bits: int, n_max: int, step) -> np.ndarray:
    """Values ``n * step`` of two's-complement codes, ``|n| <= n_max``."""
    n = np.where(codes >= 2 ** (bits - 1), codes - 2**bits, codes)  # two's complement
    if n.size and np.abs(n).max() > n_max:
        raise InvalidCodes(f"|n| = {int(np.abs(n).max())} beyond {n_max}")
    return (n.astype(np.float32) * step).astype(np.float32)


def _glorot_gain(s: Any) -> float | None:
    """K of a scale written ``"glorot*K"`` (K times the Glorot bound), else None."""
    if not (isinstance(s, str) and s.startswith("glorot*")):
        return None
    try:
        k = float(s.removeprefix("glorot*"))
    except ValueError:
        return None
    return k if math.isfinite(k) and k > 0 else None


@dataclass(frozen=True, repr=False)
class Scaled(Quantizer):
    """Binary and ternary: levels scaled by one number per matrix (H or W0)."""

    @classmethod
    def check_options(cls, opts: dict[str, Any]) -> dict[str, Any]:
        s = opts["scale"]
        numeric = isinstance(s, int | float) and not isinstance(s, bool)
        if not (s in ("unit", "glorot", "rms") or numeric or _glorot_gain(s)):
            raise ValueError(
                f"{cls.scheme}: scale must be 'unit', 'glorot', 'glorot*K' (K > 0 times the "
                f"Glorot bound), 'rms' or a positive number, got {s!r}"
            )
        if not isinstance(s, str):
            opts["scale"] = _check_number("scale", cls.scheme, s, positive=True)
        return opts

    def scale(self, w: Tensor, fan_in: int | None = None, fan_out: int | None = None) -> float:
        s = self.options["scale"]
        if s == "unit":
            return 1.0
        if s == "rms":  # the shadow tensor's own RMS, sqrt(mean(W^2)), recomputed every call;
            # in float64, so that quantizing +-H again gives +-H exactly (a float32 mean of H^2
            # can be 1 ulp off, and a reloaded packed model then differs from the trained one)
            return max(float(w.detach().double().pow(2).mean().sqrt()), 1e-12)
        gain = _glorot_gain(s) or (1.0 if s == "glorot" else None)
        if gain is not None:
            if fan_in is None or fan_out is None:
                if w.dim() != 2:
                    raise ValueError(
                        f"{self.name}: scale='glorot' needs fan_in and fan_out for a "
                        f"{w.dim()}-D tensor (only 2-D tensors infer them from their shape)"
                    )
                fan_out, fan_in = w.shape
            return gain * math.sqrt(6.0 / (fan_in + fan_out))
        return float(s)

    def rounding_variance(
        self, w: Tensor, fan_in: int | None = None, fan_out: int | None = None
    ) -> Tensor:
        """binary: ``P(+H) = (w/H + 1)/2`` gives ``E[q] = w`` and ``E[q^2] = H^2``, so
        ``Var = H^2 - w^2``; ternary: ``P(q = W0 sign w) = |w|/W0`` gives ``E[q] = w`` and
        ``E[q^2] = W0 |w|``, so ``Var = W0 |w| - w^2``. Weights are clipped to ``[-s, s]``
        first."""
        s = self.scale(w, fan_in, fan_out)
        a = w.detach().abs().clamp(max=s)
        var = s * s - a * a if self.name == "binary" else s * a - a * a
        return var.clamp_(min=0.0)

    def shift_add(self, w: np.ndarray, scale: float) -> tuple[list, float, int]:
        """One plane (every nonzero weight adds or subtracts ``x_j``), the scale kept."""
        return [(w != 0, 0)], float(np.float32(scale)), 0

    def clip_bound(self, w: Tensor, fan_in: int | None = None, fan_out: int | None = None):
        """[-H, H] (binary), [-W0, W0] (ternary); none with ``scale="rms"``."""
        if self.options["scale"] == "rms":  # clipping to its own RMS would shrink it
            return None
        return self.scale(w, fan_in, fan_out)
