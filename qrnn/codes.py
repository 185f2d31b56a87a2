"""Integer codes of quantized weights at their true bit width, and their bit packing: the
lowest layer of the ``qrnn.packed`` file format (:mod:`qrnn.export`). The levels are those of
Ott et al. 2016, *Recurrent Neural Networks With Limited Numerical Precision*,
https://arxiv.org/abs/1608.06902.

Bit packing: code ``i`` of a tensor (row-major order) occupies bits ``[i*b, (i+1)*b)`` of the
tensor's byte string, least significant bit first; stream bit ``j`` is bit ``j % 8`` of byte
``j // 8`` (numpy ``bitorder="little"``). Codes of ``b`` bits decode to float32 as follows:

================  ======  ==========================================================================
scheme            bits    code -> value
================  ======  ==========================================================================
binary            1       ``0 -> +s``, ``1 -> -s`` (the bit is the sign)
ternary           2       two's-complement ``n`` in {-1, 0, 1}: ``n * s`` (code ``0b10``: invalid)
pow2-ternary      m+f+1   two's-complement ``n``, ``|n| <= N``: ``n * 2^-f``; N = 2^(m+f) - 1 with
                  (+1)    ``clip="grid"``, 2^(m+f) and one more bit with ``clip="paper"``
exponential       1+E     top bit sign (1 = negative), low E bits ``u``: ``±2^(min_exp + u)``,
                          ``u <= max_exp - min_exp``; E = ceil(log2(max_exp - min_exp + 1))
================  ======  ==========================================================================
"""

from __future__ import annotations

import numpy as np

from . import quantizers as _quantizers  # noqa: F401 (registers the methods)
from .quantizer_base import REGISTRY, InvalidCodes, Quantizer

__all__ = ["PackedFormatError", "decode_codes", "encode_codes", "pack_bits", "unpack_bits"]


class PackedFormatError(ValueError):
    """The file is not a readable ``qrnn.packed`` file of a supported version."""


def pack_bits(codes: np.ndarray, bits: int) -> np.ndarray:
    """Pack non-negative integer ``codes`` (< 2^bits) into uint8, LSB first (see module doc)."""
    c = np.asarray(codes, dtype=np.uint64).ravel()
    if bits == 8:
        return c.astype(np.uint8)
    planes = ((c[:, None] >> np.arange(bits, dtype=np.uint64)) & np.uint64(1)).astype(np.uint8)
    return np.packbits(planes.ravel(), bitorder="little")


def unpack_bits(data: np.ndarray, bits: int, count: int) -> np.ndarray:
    """Inverse of :func:`pack_bits`: ``count`` codes of ``bits`` bits as int64."""
    if bits == 8:
        return data[:count].astype(np.int64)
    planes = np.unpackbits(data, count=count * bits, bitorder="little").reshape(count, bits)
    return planes.astype(np.int64) @ (np.int64(1) << np.arange(bits, dtype=np.int64))


def _method(scheme: str, options: dict) -> Quantizer:
    """The method of a stored tensor, built as stored (options unchecked: a file's own)."""
    if scheme not in REGISTRY:
        raise ValueError(f"scheme {scheme!r} has no integer codes")
    return REGISTRY[scheme](scheme, options)


def scheme_layout(scheme: str, options: dict) -> tuple[int, int]:
    """(bits, N): bits per code and, for the integer grids, the largest |n|."""
    return _method(scheme, options).code_layout()


def _bad_codes(msg: str) -> PackedFormatError:
    return PackedFormatError(f"invalid codes ({msg}); the file is corrupted")


def decode_codes(codes: np.ndarray, scheme: str, options: dict, scale: float) -> np.ndarray:
    """float32 values of integer ``codes`` (see the table in the module docstring; each method's
    :meth:`~qrnn.quantizers.Quantizer.decode`)."""
    q = _method(scheme, options)
    bits, _ = q.code_layout()
    codes = np.asarray(codes, dtype=np.int64)
    if codes.size and (codes.min() < 0 or codes.max() >= 2**bits):
        raise _bad_codes(f"outside 0..{2**bits - 1}")
    try:
        return q.decode(codes, scale)
    except InvalidCodes as e:
        raise _bad_codes(str(e)) from None


def encode_codes(w_q: np.ndarray, scheme: str, options: dict, scale: float) -> np.ndarray:
    """Integer codes of quantized float32 values ``w_q`` (each method's
    :meth:`~qrnn.quantizers.Quantizer.encode`); checks they decode to ``w_q``."""
    w = np.asarray(w_q, dtype=np.float32)
    codes = _method(scheme, options).encode(w, scale)
    try:
        back = decode_codes(codes, scheme, options, scale)
    except PackedFormatError:
        back = None
    if back is None or not np.array_equal(back, w):
        raise ValueError(
            f"values are not on the {scheme} grid (options {options}, scale {scale}); "
            "pass the quantizer's deterministic output"
        )
    return codes.reshape(w.shape)
