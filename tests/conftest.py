"""Data fixtures: isolated cache, the real mirror (skipped without QRNN_DATA), a local server."""

from __future__ import annotations

import http.server
import os
import threading
from pathlib import Path
from typing import ClassVar

import pytest


@pytest.fixture(autouse=True)
def _isolated_cache(tmp_path_factory, monkeypatch):
    """Never touch the user's ~/.cache/qrnn: every test gets its own default cache."""
    monkeypatch.setenv("QRNN_CACHE", str(tmp_path_factory.mktemp("qrnn-cache")))


@pytest.fixture(scope="session")
def mirror() -> Path:
    """The real data mirror named by QRNN_DATA; tests using it skip when it is unset."""
    value = os.environ.get("QRNN_DATA")
    if not value:
        pytest.skip("QRNN_DATA is not set (real-data checks need the mirror)")
    return Path(value)


@pytest.fixture(scope="session")
def session_cache(tmp_path_factory) -> Path:
    """A cache shared by the slow real-data loads (FSDD features are computed once)."""
    return tmp_path_factory.mktemp("qrnn-session-cache")


class _Handler(http.server.BaseHTTPRequestHandler):
    routes: ClassVar[dict] = {}

    def do_GET(self):
        status, body, length = self.routes.get(self.path, (404, b"not found", None))
        self.send_response(status)
        self.send_header("Content-Length", str(len(body) if length is None else length))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args):  # keep test output quiet
        pass


@pytest.fixture
def http_server():
    """Serve ``routes[path] = (status, body, declared_length_or_None)`` on 127.0.0.1."""
    handler = type("Handler", (_Handler,), {"routes": {}})
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, args=(0.05,), daemon=True)
    thread.start()
    server.routes = handler.routes
    server.url = f"http://127.0.0.1:{server.server_address[1]}"
    yield server
    server.shutdown()
    server.server_close()


def pytest_collection_modifyitems(items):
    """Tests that use the real mirror carry the ``data`` marker (``-m "not data"`` skips them)."""
    for item in items:
        if "mirror" in getattr(item, "fixturenames", ()):
            item.add_marker(pytest.mark.data)
