"""Mirror / cache / download resolution, verification and its cache, error messages."""

from __future__ import annotations

import hashlib
import socket
from pathlib import Path

import pytest

from qrnn.data import ChecksumError, DataNotFoundError, DownloadError, FileSpec, sources

BODY = b"hello quantized world\n" * 100


def spec_for(url: str | None, body: bytes = BODY, algo: str = "sha256") -> FileSpec:
    return FileSpec("demo/file.txt", hashlib.new(algo, body).hexdigest(), algo=algo, url=url)


def leftovers(folder: Path) -> list[str]:
    """Files in the cache other than the verification log."""
    if not folder.exists():
        return []
    return sorted(str(p.relative_to(folder)) for p in folder.rglob("*") if p.is_file())


def closed_port_url() -> str:
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()
    return f"http://127.0.0.1:{port}/file.txt"


def test_download_success_then_cache(http_server, tmp_path):
    http_server.routes["/f"] = (200, BODY, None)
    spec = spec_for(http_server.url + "/f")
    with sources.verified_log(tmp_path) as log:
        r = sources.resolve(spec, None, tmp_path, True, log, progress=False)
    assert r.origin == "download" and r.path.read_bytes() == BODY
    assert r.sha256 == hashlib.sha256(BODY).hexdigest()
    assert leftovers(tmp_path) == ["demo/file.txt", "verified.json"]
    http_server.routes.clear()  # a second resolve must not need the server
    with sources.verified_log(tmp_path) as log:
        assert sources.resolve(spec, None, tmp_path, True, log).origin == "cache"


@pytest.mark.parametrize("algo", ["md5", "sha1"])
def test_download_other_hash_kinds(http_server, tmp_path, algo):
    http_server.routes["/f"] = (200, BODY, None)
    r = sources.resolve(spec_for(http_server.url + "/f", algo=algo), None, tmp_path, True)
    assert r.origin == "download"


def test_download_checksum_mismatch(http_server, tmp_path):
    http_server.routes["/f"] = (200, BODY + b"x", None)
    spec = spec_for(http_server.url + "/f")
    with pytest.raises(ChecksumError) as e:
        sources.resolve(spec, None, tmp_path, True, progress=False)
    msg = str(e.value)
    assert "file.txt" in msg and spec.digest in msg
    assert hashlib.sha256(BODY + b"x").hexdigest() in msg
    assert leftovers(tmp_path) == []


def test_download_truncated(http_server, tmp_path):
    http_server.routes["/f"] = (200, BODY[:100], len(BODY))  # promises more than it sends
    with pytest.raises(DownloadError, match="truncated"):
        sources.resolve(spec_for(http_server.url + "/f"), None, tmp_path, True, progress=False)
    assert leftovers(tmp_path) == []


def test_truncated_file_served_whole_fails_checksum(http_server, tmp_path):
    http_server.routes["/f"] = (200, BODY[:100], None)
    with pytest.raises(ChecksumError):
        sources.resolve(spec_for(http_server.url + "/f"), None, tmp_path, True, progress=False)
    assert leftovers(tmp_path) == []


def test_download_server_error(http_server, tmp_path):
    http_server.routes["/f"] = (500, b"boom", None)
    with pytest.raises(DownloadError, match="HTTP 500") as e:
        sources.resolve(spec_for(http_server.url + "/f"), None, tmp_path, True, progress=False)
    assert "demo/file.txt" in str(e.value) and "QRNN_DATA" in str(e.value)
    assert leftovers(tmp_path) == []


def test_offline_names_file_places_and_remedy(tmp_path):
    spec = spec_for(closed_port_url())
    with pytest.raises(DataNotFoundError) as e:
        sources.resolve(spec, tmp_path / "mirror", tmp_path / "cache", True, progress=False)
    msg = str(e.value)
    assert "demo/file.txt" in msg and str(tmp_path / "mirror") in msg
    assert str(tmp_path / "cache") in msg and "QRNN_DATA" in msg and "cannot reach" in msg
    assert leftovers(tmp_path) == []


def test_download_disabled(tmp_path):
    with pytest.raises(DataNotFoundError, match="Downloading is disabled"):
        sources.resolve(spec_for("http://127.0.0.1:9/x"), None, tmp_path, False)


def test_mirror_preferred_and_never_written(tmp_path):
    mirror = tmp_path / "mirror"
    (mirror / "demo").mkdir(parents=True)
    (mirror / "demo/file.txt").write_bytes(BODY)
    (mirror / "demo").chmod(0o555)
    try:
        r = sources.resolve(spec_for(None), mirror, tmp_path / "cache", True)
    finally:
        (mirror / "demo").chmod(0o755)
    assert r.origin == "mirror"
    assert sorted(p.name for p in mirror.rglob("*")) == ["demo", "file.txt"]


@pytest.mark.parametrize("content", [BODY[:-1], b"", BODY.replace(b"q", b"Q")])
def test_corrupt_mirror_file_refused(tmp_path, content):
    mirror = tmp_path / "mirror"
    (mirror / "demo").mkdir(parents=True)
    (mirror / "demo/file.txt").write_bytes(content)
    with pytest.raises(ChecksumError, match=r"mirror file .*file\.txt") as e:
        sources.resolve(spec_for("http://127.0.0.1:9/x"), mirror, tmp_path / "cache", True)
    assert spec_for(None).digest in str(e.value)


def test_verification_is_cached_and_invalidated(tmp_path, monkeypatch):
    path = tmp_path / "demo/file.txt"
    path.parent.mkdir()
    path.write_bytes(BODY)
    calls = []
    real = sources.file_digests
    monkeypatch.setattr(sources, "file_digests", lambda *a: calls.append(1) or real(*a))
    for _ in range(3):
        with sources.verified_log(tmp_path) as log:
            sources.verify(path, spec_for(None), log)
    assert len(calls) == 1
    path.write_bytes(BODY[:-1])  # size changes -> rehash -> refused
    with sources.verified_log(tmp_path) as log, pytest.raises(ChecksumError):
        sources.verify(path, spec_for(None), log)


def test_missing_mirror_folder(tmp_path, monkeypatch):
    with pytest.raises(DataNotFoundError, match="root argument"):
        sources.data_root(tmp_path / "nope")
    monkeypatch.setenv("QRNN_DATA", str(tmp_path / "nope"))
    with pytest.raises(DataNotFoundError, match="QRNN_DATA"):
        sources.data_root()
    monkeypatch.delenv("QRNN_DATA")
    assert sources.data_root() is None
    assert sources.data_root(tmp_path) == tmp_path


def test_cache_dir_settings(tmp_path, monkeypatch):
    assert sources.cache_dir(tmp_path) == tmp_path
    monkeypatch.setenv("QRNN_CACHE", str(tmp_path / "c"))
    assert sources.cache_dir() == tmp_path / "c"
    monkeypatch.delenv("QRNN_CACHE")
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg"))
    if sources.sys.platform.startswith("linux"):
        assert sources.cache_dir() == tmp_path / "xdg" / "qrnn"
