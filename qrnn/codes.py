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

import math

import numpy as np

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


def _code_layout(scheme: str, options: dict) -> tuple[int, int]:
    """(bits, N): bits per code and, for the integer grids, the largest |n|."""
    if scheme == "binary":
        return 1, 1
    if scheme == "ternary":
        return 2, 1
    if scheme == "pow2-ternary":
        m, f = options["integer_bits"], options["fractional_bits"]
        n = 2 ** (m + f) - (1 if options["clip"] == "grid" else 0)
        return max(1, math.ceil(math.log2(2 * n + 1))), n
    if scheme == "exponential":
        n_exp = options["max_exp"] - options["min_exp"] + 1
        return 1 + max(1, math.ceil(math.log2(n_exp))), n_exp
    raise ValueError(f"scheme {scheme!r} has no integer codes")


def _bad_codes(msg: str) -> PackedFormatError:
    return PackedFormatError(f"invalid codes ({msg}); the file is corrupted")


def decode_codes(codes: np.ndarray, scheme: str, options: dict, scale: float) -> np.ndarray:
    """float32 values of integer ``codes`` (see the table in the module docstring)."""
    bits, n_max = _code_layout(scheme, options)
    codes = np.asarray(codes, dtype=np.int64)
    if codes.size and (codes.min() < 0 or codes.max() >= 2**bits):
        raise _bad_codes(f"outside 0..{2**bits - 1}")
    s = np.float32(scale)
    if scheme == "binary":
        return np.where(codes == 1, -s, s).astype(np.float32)
    if scheme == "exponential":
        ebits = bits - 1
        u = codes & ((1 << ebits) - 1)
        if codes.size and u.max() >= n_max:
            raise _bad_codes(f"exponent index {int(u.max())} beyond {n_max - 1}")
        mag = np.ldexp(np.float32(1.0), (u + options["min_exp"]).astype(np.int32))
        return np.where(codes >> ebits == 1, -mag, mag).astype(np.float32)
    n = np.where(codes >= 2 ** (bits - 1), codes - 2**bits, codes)  # two's complement
    if n.size and np.abs(n).max() > n_max:
        raise _bad_codes(f"|n| = {int(np.abs(n).max())} beyond {n_max}")
    step = s if scheme == "ternary" else np.float32(2.0 ** -options["fractional_bits"])
    return (n.astype(np.float32) * step).astype(np.float32)


def encode_codes(w_q: np.ndarray, scheme: str, options: dict, scale: float) -> np.ndarray:
    """Integer codes of quantized float32 values ``w_q``; checks they decode to ``w_q``."""
    w = np.asarray(w_q, dtype=np.float32)
    bits, _ = _code_layout(scheme, options)
    if scheme == "binary":
        codes = (w < 0).astype(np.int64)
    elif scheme == "exponential":
        _, ex = np.frexp(np.abs(w))  # |w| = 0.5 * 2^ex exactly for powers of two
        codes = ((w < 0).astype(np.int64) << (bits - 1)) | (
            ex.astype(np.int64) - 1 - options["min_exp"]
        ).clip(0, 2 ** (bits - 1) - 1)
    else:
        step = np.float32(scale) if scheme == "ternary" else 2.0 ** -options["fractional_bits"]
        n = np.rint(w.astype(np.float64) / float(step)).astype(np.int64)
        codes = n & (2**bits - 1)  # two's complement in `bits` bits
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
