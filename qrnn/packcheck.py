"""The checks a ``qrnn.packed`` file passes before its tensors are decoded (the format:
:mod:`qrnn.export`): the ZIP directory, each ``.npy`` member's header (declared sizes checked
before anything is allocated; never unpickled), the header's own digest (``meta_sha256``,
version 2), the header against its schema, and each member's size and sha256.

Part of ``qrnn``, the library and study after Ott et al. 2016, *Recurrent Neural Networks With
Limited Numerical Precision*, https://arxiv.org/abs/1608.06902.
"""

from __future__ import annotations

import hashlib
import json
import math
import zipfile
from pathlib import Path

import numpy as np

from .codes import PackedFormatError, scheme_layout
from .models import FAMILIES

__all__ = ["CHECKSUM", "FORMAT", "READABLE", "header_problems", "read_member", "read_verified"]

FORMAT = "qrnn.packed"
READABLE = (1, 2)  # the format versions read
CHECKSUM = "meta_sha256"  # the header key holding the header's own sha256 (version 2)
ZEROS = "0" * 64  # the digest's digits while it is computed
MAX_META_BYTES = 1 << 24  # a header larger than 16 MiB is refused unread


_DTYPES = {"uint8": np.dtype("uint8"), "float32": np.dtype("<f4"), "int64": np.dtype("<i8")}
_STORAGES = ("codes", "raw_float32", "raw_int64")


def read_member(zf: zipfile.ZipFile, info: zipfile.ZipInfo, limit: int) -> np.ndarray:
    """One ``.npy`` member as a flat array, its header checked before anything is allocated:
    a flat uint8/float32/int64 array whose declared size is the member's (at most ``limit``
    bytes). Never unpickles."""
    name = info.filename
    with zf.open(info) as f:
        try:
            version = np.lib.format.read_magic(f)
            if version == (1, 0):
                shape, fortran, dtype = np.lib.format.read_array_header_1_0(f)
            elif version == (2, 0):
                shape, fortran, dtype = np.lib.format.read_array_header_2_0(f)
            else:
                raise PackedFormatError(f"member {name!r}: .npy version {version} is not read")
        except ValueError as e:  # bad magic, unparsable header
            raise PackedFormatError(f"member {name!r} is not a .npy array ({e})") from None
        if dtype.hasobject or dtype.name not in _DTYPES or dtype != _DTYPES[dtype.name]:
            raise PackedFormatError(f"member {name!r} has dtype {dtype}; allowed: uint8, <f4, <i8")
        if fortran or len(shape) != 1:
            raise PackedFormatError(f"member {name!r} has shape {shape}; a flat array is expected")
        nbytes = shape[0] * dtype.itemsize
        have = info.file_size - f.tell()
        if nbytes != have or nbytes > limit:
            raise PackedFormatError(
                f"member {name!r} declares {nbytes} bytes but holds {have}"
                + (f" (at most {limit} allowed)" if nbytes > limit else "")
            )
        data = f.read(nbytes)
        if len(data) != nbytes or f.read(1):  # reading to the end checks the CRC-32
            raise PackedFormatError(f"member {name!r} is truncated")
    return np.frombuffer(data, dtype=dtype)


def header_problems(meta: dict) -> list[str]:
    """What is wrong with a header against the format's schema (empty: it is valid). Checks
    types, known families, schemes and bit widths, and that the tensors of each member tile it
    (inside it, no overlap, no gap); reads no tensor."""
    out: list[str] = []
    arch, blobs = meta.get("architecture"), meta.get("blobs")
    methods, tensors = meta.get("methods"), meta.get("tensors")
    if not isinstance(arch, dict) or not isinstance(arch.get("kwargs"), dict):
        out.append("architecture must be {family, kwargs}")
    elif arch.get("family") not in FAMILIES:
        out.append(f"unknown model family {arch.get('family')!r}; known: {', '.join(FAMILIES)}")
    if not (meta.get("source") is None or isinstance(meta.get("source"), dict)):
        out.append("source must be an object or null")
    elif isinstance((meta.get("source") or {}).get("test"), dict):
        metric = meta["source"]["test"].get("metric")
        if metric is not None and not isinstance(metric, int | float):
            out.append(f"source.test.metric {metric!r} is not a number")
    if not isinstance(blobs, dict) or not set(blobs) <= set(_STORAGES) or "codes" not in blobs:
        return [*out, f"blobs must name 'codes' and raw members among {', '.join(_STORAGES)}"]
    for k, b in blobs.items():
        ok = isinstance(b, dict) and _count(b.get("nbytes")) is not None
        if not ok or not (isinstance(b.get("sha256"), str) and len(b["sha256"]) == 64):
            out.append(f"blobs.{k} must be {{nbytes: integer >= 0, sha256: 64 hex digits}}")
    if not isinstance(methods, list) or not isinstance(tensors, list):
        return [*out, "methods and tensors must be lists"]
    bits = _method_bits(methods, out)
    if out:
        return out
    extents = _tensor_extents(tensors, blobs, bits, out)
    return out + _tiling_problems(extents, blobs)


def _method_bits(methods: list, out: list[str]) -> list[int | None]:
    """The code width of each entry of ``methods`` (``None``: not a known method); what is
    wrong with an entry is appended to ``out``."""
    bits = []
    for i, m in enumerate(methods):
        try:
            b, _ = scheme_layout(m["scheme"], m["options"])
        except (KeyError, TypeError, ValueError) as e:
            what = (
                f"{m.get('scheme')!r} with options {m.get('options')}" if isinstance(m, dict) else m
            )
            out.append(f"methods[{i}] ({what}) is not a known method ({type(e).__name__}: {e})")
            b = None
        else:
            if m.get("bits") != b:
                out.append(f"methods[{i}]: {m['scheme']} codes have {b} bits, not {m.get('bits')}")
        bits.append(b)
    return bits


def _tensor_extents(tensors: list, blobs: dict, bits: list[int], out: list[str]) -> dict:
    """``{member: [(start byte, end byte, tensor name)]}`` of the well-formed ``tensors``
    entries (``bits``: the code width of each method); what is wrong is appended to ``out``."""
    extents: dict[str, list[tuple[int, int, str]]] = {k: [] for k in blobs}
    names = set()
    for i, e in enumerate(tensors):
        name = e.get("name") if isinstance(e, dict) else None
        if not isinstance(name, str) or name in names:
            out.append(f"tensors[{i}] has no name or a repeated one ({name!r})")
            continue
        names.add(name)
        shape, store, off = e.get("shape"), e.get("storage"), _count(e.get("offset"))
        if not isinstance(shape, list) or any(_count(d) is None for d in shape):
            out.append(f"{name}: shape {shape!r} is not a list of integers >= 0")
            continue
        if store not in blobs or off is None:
            out.append(f"{name}: storage {store!r} / offset {e.get('offset')!r} not in the file")
            continue
        count = math.prod(shape)
        if store == "codes":
            m, scale = e.get("method"), e.get("scale")
            if not (isinstance(m, int) and 0 <= m < len(bits)):
                out.append(f"{name}: method {m!r} is not an index into methods")
                continue
            if not (isinstance(scale, int | float) and math.isfinite(scale) and scale >= 0):
                out.append(f"{name}: scale {scale!r} is not a finite number >= 0")
            size = math.ceil(count * bits[m] / 8)
            if e.get("nbytes") != size:
                out.append(f"{name}: {count} codes of {bits[m]} bits take {size} bytes, not "
                           f"{e.get('nbytes')!r}")  # fmt: skip
            unit = 1
        else:
            size, unit = count, _DTYPES[store[4:]].itemsize
        extents[store].append((off * unit, (off + size) * unit, name))
    return extents


def _tiling_problems(extents: dict, blobs: dict) -> list[str]:
    """Overlaps and gaps between the tensors of each member, and a member whose tensors do not
    fill exactly its declared ``nbytes``."""
    out = []
    for store, ext in extents.items():
        end, total = 0, blobs[store]["nbytes"]
        for lo, hi, name in sorted(ext):
            if lo != end:
                what = "overlaps the tensor before it" if lo < end else "leaves a gap before it"
                out.append(f"{name} in {store!r} {what} (offset {lo} bytes, expected {end})")
            end = max(end, hi)
        if end != total:
            out.append(f"the tensors in {store!r} take {end} bytes, the member has {total}")
    return out


def _count(v) -> int | None:
    return v if isinstance(v, int) and not isinstance(v, bool) and v >= 0 else None


def read_verified(path: Path) -> tuple[dict, dict[str, np.ndarray], str]:
    """``(meta, {member: flat array}, checked)`` of a packed file that passed every check
    above (``checked``: ``"meta_sha256"`` or, version 1, ``"structure"``); raises
    :class:`~qrnn.codes.PackedFormatError` (without the path) or the ZIP / OS errors."""
    size = path.stat().st_size
    try:
        zf = zipfile.ZipFile(path)
    except zipfile.BadZipFile as e:
        raise PackedFormatError(
            f"not a {FORMAT} file: no .npz (ZIP) directory (truncated, or not an export?): {e}"
        ) from None
    with zf:
        infos = _directory(zf, size)
        meta, checked = _read_header(zf, infos)
        problems = header_problems(meta)
        if problems:
            more = f" (and {len(problems) - 1} more)" if len(problems) > 1 else ""
            raise PackedFormatError(f"malformed header: {problems[0]}{more}")
        members = _read_members(zf, infos, meta["blobs"])
    return meta, members, checked


def _directory(zf: zipfile.ZipFile, size: int) -> dict[str, zipfile.ZipInfo]:
    """``{name: info}`` of the archive's members: each named once, stored uncompressed and
    inside the file's ``size`` bytes, ``meta.npy`` among them."""
    infos = {i.filename: i for i in zf.infolist()}
    if len(infos) != len(zf.infolist()):
        raise PackedFormatError("the archive names a member twice")
    for i in infos.values():
        if i.compress_type != zipfile.ZIP_STORED or i.file_size != i.compress_size:
            raise PackedFormatError(f"member {i.filename!r} is compressed; {FORMAT} stores")
        if i.header_offset + i.file_size > size:
            raise PackedFormatError(
                f"member {i.filename!r} declares {i.file_size} bytes beyond the file's "
                f"{size} (truncated?)"
            )
    if "meta.npy" not in infos:
        raise PackedFormatError(f"no 'meta' member; not a {FORMAT} file")
    return infos


def _read_header(zf: zipfile.ZipFile, infos: dict) -> tuple[dict, str]:
    """``(meta, checked)``: the header as JSON, of this format and a readable version, its
    digest checked (version 2: ``checked`` is ``"meta_sha256"``, else ``"structure"``)."""
    raw_meta = read_member(zf, infos["meta.npy"], MAX_META_BYTES).tobytes()
    try:
        meta = json.loads(raw_meta.decode())
    except (UnicodeDecodeError, json.JSONDecodeError) as e:
        raise PackedFormatError(f"the header (meta) is not valid JSON: {e}") from None
    if not isinstance(meta, dict) or meta.get("format") != FORMAT:
        raise PackedFormatError(f"not a {FORMAT} file (its header names no such format)")
    version = meta.get("version")
    if isinstance(version, bool) or version not in READABLE:
        raise PackedFormatError(
            f"{FORMAT} format version {version!r}; this qrnn reads versions "
            f"{', '.join(map(str, READABLE))}"
        )
    checked = "structure"
    if version >= 2:
        _check_digest(raw_meta, meta)
        checked = CHECKSUM
    return meta, checked


def _read_members(zf: zipfile.ZipFile, infos: dict, blobs: dict) -> dict[str, np.ndarray]:
    """``{member: flat array}`` of the members the header names in ``blobs`` (exactly those
    and ``meta.npy`` in the archive), each of its declared size and sha256."""
    expected = {"meta.npy", *(f"{k}.npy" for k in blobs)}
    if set(infos) != expected:
        raise PackedFormatError(
            f"members {sorted(infos)} differ from those the header names {sorted(expected)}"
        )
    members = {}
    for k, info in blobs.items():
        if infos[f"{k}.npy"].file_size < info["nbytes"]:
            raise PackedFormatError(
                f"member {k!r} holds {infos[f'{k}.npy'].file_size} bytes, the header "
                f"declares {info['nbytes']}"
            )
        a = read_member(zf, infos[f"{k}.npy"], info["nbytes"])
        if a.nbytes != info["nbytes"]:
            raise PackedFormatError(f"member {k!r} has {a.nbytes} bytes, expected {info['nbytes']}")
        if hashlib.sha256(a.tobytes()).hexdigest() != info["sha256"]:
            raise PackedFormatError(f"member {k!r} fails its sha256 check; the file is corrupt")
        members[k] = a
    return members


def _check_digest(raw: bytes, meta: dict) -> None:
    """A version 2 header's own sha256 (``meta_sha256``: over its bytes, digest zeroed)."""
    digest = meta.get(CHECKSUM)
    ok = isinstance(digest, str) and len(digest) == 64 and set(digest) <= set("0123456789abcdef")
    field = f'"{digest}"'.encode() if ok else b""
    if not ok or raw.count(field) != 1:
        raise PackedFormatError(f"version {meta['version']} header without its {CHECKSUM}")
    zeroed = raw.replace(field, f'"{ZEROS}"'.encode())
    if hashlib.sha256(zeroed).hexdigest() != digest:
        raise PackedFormatError(
            f"the header fails its checksum ({CHECKSUM}): the file was edited or corrupted; "
            "use the original export"
        )
