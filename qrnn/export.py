"""Packed export of quantized models: integer codes at their true bit width.

``pack_model(model, path)`` writes a file (:func:`qrnn.study.runs.export_run` packs a run's model);
``load_packed(path)`` rebuilds the model (evaluation mode) whose outputs equal those of the
trained model in evaluation mode. ``post_training_quantize(model, scheme, **options)``
quantizes a trained float model without retraining.

File format ``qrnn.packed``, version 2
======================================

An *uncompressed* numpy ``.npz`` (a ZIP archive of ``.npy`` members, stored, each member with
its CRC-32) with these members, each a flat (1-D) array:

=============  ==================================================================================
member         content
=============  ==================================================================================
``meta``       uint8: UTF-8 JSON, the header, described below
``codes``      uint8: the packed codes of every quantized tensor, one after another; each tensor
               starts on a byte boundary
``raw_<dt>``   one flat array per dtype (``raw_float32``, ``raw_int64``) holding every tensor
               stored as is (unquantized weights, biases, BatchNorm buffers), one after another
=============  ==================================================================================

``meta`` keys: ``format`` (``"qrnn.packed"``), ``version`` (``2``), ``meta_sha256`` (version 2:
the sha256 of ``meta``'s bytes as stored with these 64 hex digits replaced by 64 ``0``; since
``blobs`` holds the size and sha256 of every other member, this one digest covers the header
and the payload), ``qrnn`` (writer version),
``architecture`` (``{"family": "LanguageModel" | "DigitClassifier" | "QuantRNN" | "QuantGRU" |
"QuantLSTM", "kwargs": {...}}``, the constructor arguments), ``source`` (run id, config, test
result of the exported run, or null), ``blobs`` (``{member: {"nbytes", "sha256"}}``),
``methods`` (list of ``{"scheme", "options" (resolved quantizer options), "bits"}``) and
``tensors``: the ``state_dict`` in order, one entry each with ``name``, ``shape``, ``storage``
(``"codes"`` or ``"raw_<dtype>"``), ``offset`` (bytes into ``codes``, elements into ``raw_*``),
and for coded tensors ``method`` (index into ``methods``), ``nbytes`` and ``scale`` (H or W0
as the exact float32 value; 1.0 for pow2-ternary and exponential).

Bit packing and the codes of each scheme: :mod:`qrnn.codes`.

Every decoded value equals the quantizer's float32 output exactly (the writer checks it), and
the quantizers are idempotent on their own levels, so the rebuilt model (shadow weights = W_q)
computes the same outputs. pow2-ternary's ``-0.0`` is stored as ``+0.0`` (equal values).

Reading checks (:mod:`qrnn.packcheck`), in this order, and refuses with
:class:`PackedFormatError` naming the file and what failed: the ZIP directory (stored members,
each inside the file), each ``.npy`` header (a flat array of uint8, float32 or int64 whose
declared size is exactly the member's: nothing is allocated from a declared size, nothing is
ever unpickled), the CRC-32 of each member read, ``meta_sha256`` (version 2), the header
against its schema (known family, schemes and bit widths; every tensor's extent inside its
member, the extents in one member tiling it without overlap or gap), each member's size and
sha256, and the codes themselves. Version 1 files (earlier releases; the study's committed
``model.npz``) get every check but ``meta_sha256``: an edited version 1 header is caught where
the file's sha256 is known elsewhere (:func:`qrnn.study.runs.verify_packed` checks a run folder's
``model.npz`` against its ``run.json``).

Part of ``qrnn``, the library and study after Ott et al. 2016, *Recurrent Neural Networks With
Limited Numerical Precision*, https://arxiv.org/abs/1608.06902.
"""

from __future__ import annotations

import copy
import hashlib
import io
import json
import math
import zipfile
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from ._version import __version__
from .atomic import atomic_write_bytes
from .codes import PackedFormatError as PackedFormatError
from .codes import decode_codes as decode_codes
from .codes import encode_codes as encode_codes
from .codes import pack_bits as pack_bits
from .codes import scheme_layout
from .codes import unpack_bits as unpack_bits
from .layers import QuantIO, QuantRNNBase
from .models import FAMILIES, DigitClassifier, LanguageModel, io_quantized
from .packcheck import CHECKSUM, FORMAT, READABLE, ZEROS, read_verified
from .quantizers import Quantizer, quantizer

VERSION = 2  # written; versions 1 and 2 are read (READABLE)

__all__ = [
    "FORMAT",
    "READABLE",
    "VERSION",
    "ArchitectureMismatch",
    "PackedFormatError",
    "architecture",
    "decode_codes",
    "encode_codes",
    "load_packed",
    "pack_bits",
    "pack_model",
    "post_training_quantize",
    "quantized_tensors",
    "read_packed",
    "size_report",
    "unpack_bits",
]


class ArchitectureMismatch(PackedFormatError):
    """The file's tensors do not fit the model they are loaded into."""


# ---------------------------------------------------------------------------------- the model
def architecture(model: nn.Module) -> dict:
    """``{"family", "kwargs"}``: the constructor call that rebuilds ``model``'s structure, the
    model's own :attr:`config` (:mod:`qrnn.models`, :mod:`qrnn.layers`) without
    ``weight_noise`` (training only; version 1 files do not hold it)."""
    if isinstance(model, LanguageModel | DigitClassifier):
        if io_quantized(model) and model.out.quantizer != model.rnn.quantizer:
            raise ValueError("the output layer and the recurrent layer use different methods")
    elif not isinstance(model, QuantRNNBase):
        raise TypeError(
            f"cannot export a {type(model).__name__}; expected LanguageModel, DigitClassifier or "
            "a QuantRNN/QuantGRU/QuantLSTM layer"
        )
    kw = {k: v for k, v in model.config.items() if k != "weight_noise"}
    if "nonlinearity" in kw:  # written last, as version 1 files have it
        kw["nonlinearity"] = kw.pop("nonlinearity")
    return {"family": type(model).__name__, "kwargs": kw}


def _build(arch: dict) -> nn.Module:
    fam, kw = arch.get("family"), dict(arch.get("kwargs") or {})
    if fam not in FAMILIES:
        raise PackedFormatError(f"unknown model family {fam!r} in the file")
    try:
        return FAMILIES[fam].from_config(kw)
    except (TypeError, ValueError, KeyError) as e:
        raise PackedFormatError(f"cannot build the stored architecture {fam!r}: {e}") from e


def quantized_tensors(model: nn.Module) -> dict[str, tuple[Quantizer, torch.Tensor, float]]:
    """``{state_dict name: (quantizer, deterministic W_q, scale)}`` of every quantized tensor."""
    out = {}
    for mod_name, mod in model.named_modules():
        prefix = f"{mod_name}." if mod_name else ""
        if isinstance(mod, QuantRNNBase):
            for name in mod._flat_weights_names:
                if mod.is_quantized(name):  # the codes (before any weight normalization)
                    w, fans = getattr(mod, name), mod.param_fans(name)
                    w_q = mod.quantizer(w, False, fan_in=fans[0], fan_out=fans[1])
                    out[prefix + name] = (
                        mod.quantizer,
                        w_q.detach(),
                        mod.quantizer.scale(w, *fans),
                    )
        elif isinstance(mod, QuantIO) and mod.quantizer.name != "float":
            w = mod.weight
            s = mod.quantizer.scale(w, w.shape[1], w.shape[0])
            out[prefix + "weight"] = (mod.quantizer, mod.quantized_weight(False).detach(), s)
    return out


# ---------------------------------------------------------------------------------- writing
def _encode_model(model: nn.Module, source: dict | None) -> tuple[dict, dict[str, np.ndarray]]:
    arch = architecture(model)
    qt = quantized_tensors(model)
    code_parts: list[np.ndarray] = []
    raw_parts: dict[str, list[np.ndarray]] = {}
    raw_len: dict[str, int] = {}
    entries, methods, code_off = [], [], 0
    with torch.no_grad():
        for name, t in model.state_dict().items():
            entry: dict[str, Any] = {"name": name, "shape": list(t.shape)}
            if name in qt:
                q, w_q, s = qt[name]
                if w_q.dtype != torch.float32:
                    raise TypeError(f"{name}: only float32 models can be packed, got {w_q.dtype}")
                s32 = float(np.float32(s))
                bits, _ = scheme_layout(q.name, q.options)
                codes = encode_codes(w_q.cpu().numpy(), q.name, q.options, s32)
                packed = pack_bits(codes, bits)
                method = {"scheme": q.name, "options": dict(q.options), "bits": bits}
                if method not in methods:
                    methods.append(method)
                entry.update(storage="codes", offset=code_off, nbytes=int(packed.size),
                             method=methods.index(method), scale=s32)  # fmt: skip
                code_parts.append(packed)
                code_off += packed.size
            else:
                a = t.detach().cpu().contiguous().numpy()
                key = f"raw_{a.dtype.name}"
                if a.dtype not in (np.float32, np.int64):
                    raise TypeError(f"{name}: cannot store dtype {a.dtype}")
                entry.update(storage=key, offset=raw_len.get(key, 0))
                raw_parts.setdefault(key, []).append(a.ravel())
                raw_len[key] = raw_len.get(key, 0) + a.size
            entries.append(entry)
    arrays = {"codes": np.concatenate(code_parts) if code_parts else np.zeros(0, np.uint8)}
    for key, parts in raw_parts.items():
        arrays[key] = np.concatenate(parts)
    meta = {
        "format": FORMAT,
        "version": VERSION,
        CHECKSUM: ZEROS,  # filled in by pack_model
        "qrnn": __version__,
        "architecture": arch,
        "source": source,
        "blobs": {
            k: {"nbytes": int(v.nbytes), "sha256": hashlib.sha256(v.tobytes()).hexdigest()}
            for k, v in arrays.items()
        },
        "methods": methods,
        "tensors": entries,
    }
    return meta, arrays


def pack_model(model: nn.Module, path: str | Path, source: dict | None = None) -> dict:
    """Write ``model``'s deterministic quantized weights to ``path`` (atomic); return
    :func:`size_report`. ``source``: provenance stored as is (e.g. the run id and config)."""
    meta, arrays = _encode_model(model, source)
    blob = json.dumps(meta, separators=(",", ":"), allow_nan=False).encode()
    field = f'"{CHECKSUM}":"{ZEROS}"'.encode()
    digest = hashlib.sha256(blob).hexdigest()  # over the header with the digest zeroed
    blob = blob.replace(field, field.replace(ZEROS.encode(), digest.encode()))
    buf = io.BytesIO()
    np.savez(buf, meta=np.frombuffer(blob, dtype=np.uint8), **arrays)
    atomic_write_bytes(path, buf.getvalue())
    return size_report(model, path)


def size_report(model: nn.Module, path: str | Path) -> dict:
    """File size against the fp32 ``state_dict`` (4 bytes per element), whole and over the
    quantized tensors (their fp32 bytes / their packed code bytes, without container bytes)."""
    sd = model.state_dict()
    fp32 = 4 * sum(t.numel() for t in sd.values())
    meta = read_packed(path)["meta"]
    q_fp32 = sum(4 * math.prod(e["shape"]) for e in meta["tensors"] if e["storage"] == "codes")
    q_bytes = sum(e["nbytes"] for e in meta["tensors"] if e["storage"] == "codes")
    file_bytes = Path(path).stat().st_size
    return {
        "file_bytes": file_bytes,
        "fp32_bytes": fp32,
        "ratio": fp32 / file_bytes,
        "quantized_fp32_bytes": q_fp32,
        "quantized_code_bytes": q_bytes,
        "quantized_ratio": q_fp32 / q_bytes if q_bytes else None,
        "quantized_fraction": q_fp32 / fp32,
        "bits": sorted({m["bits"] for m in meta["methods"]}),
    }


# ---------------------------------------------------------------------------------- reading
def read_packed(path: str | Path) -> dict:
    """``{"meta": dict, "tensors": {name: torch.Tensor}, "checked": str}`` from a packed file,
    fully checked (module docstring): ``checked`` is ``"meta_sha256"`` (version 2: header and
    payload covered by the file's own digest) or ``"structure"`` (version 1: every check but
    that one). Raises :class:`PackedFormatError` naming the file and what failed."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"no packed file at {path}")
    try:
        meta, members, checked = read_verified(path)
        return {"meta": meta, "tensors": _decode_members(meta, members), "checked": checked}
    except PackedFormatError as e:
        raise PackedFormatError(f"{path}: {e}") from None
    except (zipfile.BadZipFile, zipfile.LargeZipFile, OSError, EOFError, ValueError) as e:
        raise PackedFormatError(
            f"{path} is not a readable {FORMAT} file (corrupt or truncated; restore the "
            f"original export): {e}"
        ) from None


def _decode_members(meta: dict, members: dict[str, np.ndarray]) -> dict[str, torch.Tensor]:
    """The tensors of a header already checked (:func:`qrnn.packcheck.header_problems`)."""
    out = {}
    for e in meta["tensors"]:
        shape, count = tuple(e["shape"]), math.prod(e["shape"])
        store, lo = members[e["storage"]], e["offset"]
        if e["storage"] == "codes":
            m = meta["methods"][e["method"]]
            codes = unpack_bits(store[lo : lo + e["nbytes"]], m["bits"], count)
            try:
                values = decode_codes(codes, m["scheme"], m["options"], e["scale"])
            except PackedFormatError as err:
                raise PackedFormatError(f"{e['name']}: {err}") from None
        else:
            values = store[lo : lo + count]
        out[e["name"]] = torch.from_numpy(values.reshape(shape).copy())
    return out


def _diff_arch(a: dict, b: dict) -> list[str]:
    ignore = {"dropout", "stochastic"}  # do not change evaluation
    out = []
    if a["family"] != b["family"]:
        out.append(f"family: file {a['family']}, model {b['family']}")
    ka, kb = a["kwargs"], b["kwargs"]
    for k in sorted((set(ka) | set(kb)) - ignore):
        if ka.get(k) != kb.get(k):
            out.append(f"{k}: file {ka.get(k)!r}, model {kb.get(k)!r}")
    return out


def load_packed(path: str | Path, model: nn.Module | None = None) -> nn.Module:
    """The model stored in a packed file, in evaluation mode (on the CPU).

    Without ``model`` it is rebuilt from the stored architecture. With ``model``, the weights
    are loaded into it (in place) after checking that its architecture and method match, else
    :class:`ArchitectureMismatch` names the differences.
    """
    packed = read_packed(path)
    arch = packed["meta"]["architecture"]  # checked by read_packed
    if model is None:
        try:
            model = _build(arch)
        except PackedFormatError as e:
            raise PackedFormatError(f"{path}: {e}") from None
    else:
        diffs = _diff_arch(arch, architecture(model))
        if diffs:
            raise ArchitectureMismatch(f"{path} holds a different architecture: {'; '.join(diffs)}")
    sd = model.state_dict()
    tensors = packed["tensors"]
    problems = [f"missing {k}" for k in sd if k not in tensors]
    problems += [f"unexpected {k}" for k in tensors if k not in sd]
    problems += [
        f"{k}: shape {tuple(tensors[k].shape)} in the file, {tuple(v.shape)} in the model"
        for k, v in sd.items()
        if k in tensors and tensors[k].shape != v.shape
    ]
    if problems:
        raise ArchitectureMismatch(f"{path} does not fit the architecture: {'; '.join(problems)}")
    device = next(iter(sd.values())).device if sd else torch.device("cpu")
    model.load_state_dict({k: v.to(device) for k, v in tensors.items()})
    return model.eval()


# ---------------------------------------------------------------------------------- PTQ
def post_training_quantize(
    model: nn.Module, scheme: str, *, quantize_io: bool = False, **options: Any
) -> nn.Module:
    """A copy of a trained model whose quantized layers use ``scheme`` (no retraining).

    Every recurrent layer gets ``quantizer(scheme, **options)`` (deterministic; its
    ``quantize_input/recurrent/bias`` flags are kept); the embedding / output layers too when
    ``quantize_io``. The shadow weights are the trained ones, so the copy's evaluation uses
    ``W_q = q(W_trained)``. The training/eval mode of ``model`` is kept; ``model`` is unchanged.
    """
    q = quantizer(scheme, **options)
    gens = {id(m.generator): None for m in model.modules() if getattr(m, "generator", None)}
    new = copy.deepcopy(model, memo=dict(gens))  # generators are not copied (set to None)
    found = False
    for m in new.modules():
        if isinstance(m, QuantRNNBase) or (quantize_io and isinstance(m, QuantIO)):
            m.quantizer, m.stochastic = q, False
            found = found or isinstance(m, QuantRNNBase)
    if not found:
        raise TypeError(f"{type(model).__name__} has no qrnn recurrent layer to quantize")
    return new
