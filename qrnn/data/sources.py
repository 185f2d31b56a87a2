"""Where data files come from: mirror folder, user cache, or a verified download.

Resolution order for one file: ``<root>/<relpath>`` (the mirror named by ``QRNN_DATA`` or the
``root`` argument), then ``<cache>/<relpath>``, then a download from the file's URL. Every file
is checked against its known hash before use; successful checks are remembered in
``<cache>/verified.json`` (keyed by path, inode, size, mtime and ctime: a file changed in place,
even with its size and mtime restored, is hashed again) so repeat loads do not rehash. Files a
loader reads whole (the text corpora) are also checked on the bytes actually read
(:func:`read_checked`), so a record's sha256 is always that of the data used.
:func:`verify_files` (``qrnn data verify``) hashes every file again on demand. The mirror is
only ever read.

Part of ``qrnn``, the library and study after Ott et al. 2016, *Recurrent Neural Networks With
Limited Numerical Precision*, https://arxiv.org/abs/1608.06902.
"""

from __future__ import annotations

import contextlib
import hashlib
import http.client
import json
import os
import sys
import tempfile
import urllib.error
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

from tqdm import tqdm  # not tqdm.auto: no widget warning inside notebooks

from ..atomic import atomic_write_bytes

__all__ = [
    "ChecksumError",
    "DataNotFoundError",
    "DownloadError",
    "FileSpec",
    "Resolved",
    "UnknownDatasetError",
    "atomic_write",
    "cache_dir",
    "data_root",
    "download",
    "file_digests",
    "read_checked",
    "resolve",
    "verify",
    "verify_files",
]

CHUNK = 1 << 20
TIMEOUT_S = 30.0


class UnknownDatasetError(ValueError):
    """A data set or split name that is not known."""


class DataNotFoundError(FileNotFoundError):
    """A data file (or the mirror folder) is not available locally and cannot be downloaded."""


class ChecksumError(ValueError):
    """A file's content does not match its known hash (corrupt, truncated or wrong file)."""


class DownloadError(OSError):
    """A download failed (HTTP error, connection dropped, short body)."""

    offline = False


@dataclass(frozen=True)
class FileSpec:
    """A known data file: where it lives below a data root, its hash, and where to download it.

    ``algo`` is any :mod:`hashlib` name (``sha256``, ``md5``, ``sha1``); ``url`` may be ``None``
    for files that are only obtained from a mirror or derived locally.
    """

    relpath: str
    digest: str
    algo: str = "sha256"
    url: str | None = None
    size: int | None = None


@dataclass(frozen=True)
class Resolved:
    """A verified local file and where it came from (``mirror``, ``cache``, ``download``)."""

    path: Path
    origin: str
    sha256: str
    size: int


HINT = (
    "Provide it by setting QRNN_DATA (or passing root=) to a folder laid out like shared/data, "
    "by placing the file in the cache, or by allowing a download (download=True, network access)."
)


# --------------------------------------------------------------------------- settings


def data_root(root: str | os.PathLike | None = None) -> Path | None:
    """The mirror folder: ``root`` if given, else ``$QRNN_DATA``, else ``None``.

    A folder that is named but missing is an error (a typo must not trigger a silent download).
    """
    value = os.fspath(root) if root is not None else os.environ.get("QRNN_DATA") or None
    if value is None:
        return None
    path = Path(value).expanduser()
    if not path.is_dir():
        src = "root argument" if root is not None else "QRNN_DATA"
        raise DataNotFoundError(f"data mirror folder {path} (from {src}) does not exist")
    return path


def cache_dir(cache: str | os.PathLike | None = None) -> Path:
    """The user cache: ``cache`` if given, else ``$QRNN_CACHE``, else the platform cache + qrnn."""
    if cache is not None:
        return Path(cache).expanduser()
    if os.environ.get("QRNN_CACHE"):
        return Path(os.environ["QRNN_CACHE"]).expanduser()
    if sys.platform == "win32" and os.environ.get("LOCALAPPDATA"):
        return Path(os.environ["LOCALAPPDATA"]) / "qrnn" / "Cache"
    if sys.platform == "darwin":
        return Path.home() / "Library" / "Caches" / "qrnn"
    base = os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache"
    return Path(base) / "qrnn"


# --------------------------------------------------------------------------- hashing


def file_digests(path: Path, algos: tuple[str, ...] = ("sha256",)) -> dict[str, str]:
    """Hex digests of ``path`` for each algorithm, in one pass."""
    hs = {a: hashlib.new(a) for a in dict.fromkeys(algos)}
    with open(path, "rb") as f:
        while chunk := f.read(CHUNK):
            for h in hs.values():
                h.update(chunk)
    return {a: h.hexdigest() for a, h in hs.items()}


def _stamp(st: os.stat_result) -> dict[str, int]:
    """What changes when a file is replaced or written in place (ctime: even when the size and
    the mtime are set back)."""
    return {"ino": st.st_ino, "size": st.st_size, "mtime_ns": st.st_mtime_ns,
            "ctime_ns": st.st_ctime_ns}  # fmt: skip


class _VerifiedLog:
    """``verified.json`` in the cache: ``abs path -> {ino, size, mtime_ns, ctime_ns, <algo>:
    digest}``; an entry counts only while all four stamps are unchanged."""

    def __init__(self, cache: Path):
        self.path = cache / "verified.json"
        try:
            self.entries: dict[str, dict] = json.loads(self.path.read_text())
        except (OSError, ValueError):
            self.entries = {}
        self.dirty = False

    def lookup(self, path: Path, st: os.stat_result) -> dict | None:
        e = self.entries.get(str(path.resolve()))
        if e and all(e.get(k) == v for k, v in _stamp(st).items()):
            return e
        return None

    def record(self, path: Path, st: os.stat_result, digests: dict[str, str]) -> None:
        self.entries[str(path.resolve())] = {**_stamp(st), **digests}
        self.dirty = True

    def forget(self, path: Path) -> None:
        if self.entries.pop(str(path.resolve()), None) is not None:
            self.dirty = True

    def save(self) -> None:
        if not self.dirty:
            return
        with contextlib.suppress(OSError):  # an unwritable cache only costs a rehash next time
            atomic_write(self.path, json.dumps(self.entries, sort_keys=True).encode())
        self.dirty = False


@contextlib.contextmanager
def verified_log(cache: Path) -> Iterator[_VerifiedLog]:
    """Open the verification log for a batch of checks; saved once at the end."""
    log = _VerifiedLog(cache)
    try:
        yield log
    finally:
        log.save()


def verify(
    path: Path, spec: FileSpec, log: _VerifiedLog | None = None, origin: str = "file"
) -> Resolved:
    """Check ``path`` against ``spec`` (using/remembering ``log``); raise :class:`ChecksumError`."""
    st = path.stat()
    entry = log.lookup(path, st) if log is not None else None
    if entry is not None and entry.get(spec.algo) == spec.digest and "sha256" in entry:
        return Resolved(path, origin, entry["sha256"], st.st_size)
    digests = file_digests(path, (spec.algo, "sha256"))
    if digests[spec.algo] != spec.digest:
        if log is not None:
            log.forget(path)
        raise _mismatch(path, spec, origin, st.st_size, digests[spec.algo])
    if log is not None:
        log.record(path, st, digests)
    return Resolved(path, origin, digests["sha256"], st.st_size)


def _mismatch(path: Path, spec: FileSpec, origin: str, size: int, found: str) -> ChecksumError:
    return ChecksumError(
        f"{origin} file {path} ({size} bytes) fails its {spec.algo} check: "
        f"expected {spec.digest}, found {found}. The file is corrupt, truncated "
        f"or a different version; replace it"
        + (" (delete it to download it again)." if origin == "cache" else ".")
    )


def read_checked(
    r: Resolved, spec: FileSpec, log: _VerifiedLog | None = None
) -> tuple[bytes, Resolved]:
    """The bytes of a resolved file, checked against ``spec`` as read (the file may have
    changed since it was verified), and ``r`` with the sha256 of those bytes."""
    data = r.path.read_bytes()
    found = {a: hashlib.new(a, data).hexdigest() for a in dict.fromkeys((spec.algo, "sha256"))}
    if found[spec.algo] != spec.digest:
        if log is not None:
            log.forget(r.path)
        raise _mismatch(r.path, spec, r.origin, len(data), found[spec.algo])
    return data, Resolved(r.path, r.origin, found["sha256"], len(data))


def verify_files(
    specs: list[FileSpec], root: Path | None, cache: Path, progress: bool = True
) -> dict[str, list]:
    """Hash every local copy (mirror and cache) of ``specs`` again, whatever the log says, with
    a progress bar over the bytes. Returns ``{"ok": [path], "bad": [(path, message)],
    "missing": [relpath]}`` (missing: no local copy at all); the log is updated."""
    found = [(o, p, s) for s in specs for o, p in local_candidates(s, root, cache) if p.is_file()]
    have = {s.relpath for _, _, s in found}
    missing = [s.relpath for s in specs if s.relpath not in have]
    out: dict[str, list] = {"ok": [], "bad": [], "missing": missing}
    total = sum(p.stat().st_size for _, p, _ in found)
    with (
        verified_log(cache) as log,
        tqdm(total=total, unit="B", unit_scale=True, desc="verify", disable=not progress) as bar,
    ):
        for origin, path, spec in found:
            try:
                st = path.stat()
                digests = file_digests(path, (spec.algo, "sha256"))
            except OSError as e:
                out["bad"].append((path, f"{origin} file {path} cannot be read: {e.strerror}"))
                continue
            if digests[spec.algo] == spec.digest:
                log.record(path, st, digests)
                out["ok"].append(path)
            else:
                log.forget(path)
                bad = _mismatch(path, spec, origin, st.st_size, digests[spec.algo])
                out["bad"].append((path, str(bad)))
            bar.update(st.st_size)
    return out


# --------------------------------------------------------------------------- writing


atomic_write = atomic_write_bytes  # the one atomic writer of qrnn (with fsync)


def download(
    url: str, dest: Path, spec: FileSpec | None = None, progress: bool = True
) -> dict[str, str]:
    """Stream ``url`` to a temporary file next to ``dest``, check it, move it into place.

    Returns the hex digests (``sha256`` and the spec's algorithm). On any failure the temporary
    file is removed and :class:`DownloadError` (network, HTTP, short body; ``offline`` set when
    the server cannot be reached at all) or :class:`ChecksumError` is raised.
    """
    dest.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=dest.parent, prefix=f".{dest.name}.", suffix=".part")
    algos = ("sha256",) if spec is None else (spec.algo, "sha256")
    hs = {a: hashlib.new(a) for a in dict.fromkeys(algos)}
    n = 0
    try:
        with os.fdopen(fd, "wb") as out:
            try:
                resp = urllib.request.urlopen(url, timeout=TIMEOUT_S)
            except urllib.error.HTTPError as e:
                raise DownloadError(f"download of {url} failed: HTTP {e.code} {e.reason}") from e
            except OSError as e:  # URLError, refused connection, DNS failure, timeout
                err = DownloadError(f"cannot reach {url}: {getattr(e, 'reason', e)}")
                err.offline = True
                raise err from e
            with (
                resp,
                tqdm(
                    total=int(resp.headers.get("Content-Length") or 0) or None,
                    unit="B",
                    unit_scale=True,
                    desc=dest.name,
                    disable=not progress,
                    leave=False,
                ) as bar,
            ):
                try:
                    while chunk := resp.read(CHUNK):
                        out.write(chunk)
                        for h in hs.values():
                            h.update(chunk)
                        n += len(chunk)
                        bar.update(len(chunk))
                except (OSError, http.client.HTTPException) as e:  # e.g. IncompleteRead
                    raise DownloadError(
                        f"download of {url} broke off after {n} bytes: {e!r}"
                    ) from e
                if bar.total is not None and n != bar.total:
                    raise DownloadError(f"download of {url} is truncated: {n} of {bar.total} bytes")
        found = {a: h.hexdigest() for a, h in hs.items()}
        if spec is not None and found[spec.algo] != spec.digest:
            raise ChecksumError(
                f"downloaded {dest.name} from {url} fails its {spec.algo} check: expected "
                f"{spec.digest}, found {found[spec.algo]} ({n} bytes); nothing was kept"
            )
        os.replace(tmp, dest)
        return found
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        raise


# --------------------------------------------------------------------------- resolution


def local_candidates(spec: FileSpec, root: Path | None, cache: Path) -> list[tuple[str, Path]]:
    """``(origin, path)`` pairs in lookup order."""
    out = []
    if root is not None:
        out.append(("mirror", root / spec.relpath))
    out.append(("cache", cache / spec.relpath))
    return out


def find_local(
    spec: FileSpec, root: Path | None, cache: Path, log: _VerifiedLog | None
) -> Resolved | None:
    """The first local copy of ``spec``, verified; ``None`` if there is none."""
    for origin, path in local_candidates(spec, root, cache):
        if path.is_file():
            return verify(path, spec, log, origin)
    return None


def missing_message(spec: FileSpec, root: Path | None, cache: Path, extra: str = "") -> str:
    where = ", ".join(f"{o} {p}" for o, p in local_candidates(spec, root, cache))
    if root is None:
        where += " (no mirror: QRNN_DATA is not set)"
    return f"data file {spec.relpath} not found; looked in {where}. {extra}{HINT}"


def resolve(
    spec: FileSpec,
    root: Path | None,
    cache: Path,
    download_ok: bool = True,
    log: _VerifiedLog | None = None,
    progress: bool = True,
) -> Resolved:
    """A verified local copy of ``spec``: mirror, cache, or downloaded into the cache."""
    found = find_local(spec, root, cache, log)
    if found is not None:
        return found
    if not download_ok or spec.url is None:
        why = "Downloading is disabled. " if spec.url is not None else "It has no download URL. "
        raise DataNotFoundError(missing_message(spec, root, cache, why))
    dest = cache / spec.relpath
    try:
        digests = download(spec.url, dest, spec, progress=progress)
    except DownloadError as e:
        msg = missing_message(spec, root, cache, f"Download failed: {e}. ")
        raise (DataNotFoundError if e.offline else DownloadError)(msg) from e
    st = dest.stat()
    if log is not None:
        log.record(dest, st, digests)
    return Resolved(dest, "download", digests["sha256"], st.st_size)
