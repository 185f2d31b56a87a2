"""`make lab` starts JupyterLab offline on notebooks/, lists the notebooks (their text sources
open as notebooks) and offers this environment's python3 kernel."""

import contextlib
import json
import os
import re
import secrets
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
VENV = Path(sys.prefix)
_CLOSED = "http://127.0.0.1:9"  # the discard port: nothing listens


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _get(url: str, token: str, method: str = "GET", data: bytes | None = None):
    req = urllib.request.Request(
        url, data=data, method=method, headers={"Authorization": f"token {token}"}
    )
    with urllib.request.urlopen(req, timeout=30) as r:
        return r.status, r.read()


def _kernel_prefix(connection_file: Path) -> str:
    """``sys.prefix`` as the running kernel reports it (after ``import qrnn``)."""
    from jupyter_client import BlockingKernelClient

    kc = BlockingKernelClient(connection_file=str(connection_file))
    kc.load_connection_file()
    kc.start_channels()
    try:
        kc.wait_for_ready(timeout=120)
        out = []
        kc.execute_interactive(
            "import sys, qrnn; print(sys.prefix)",
            timeout=120,
            output_hook=lambda msg: out.append(msg["content"].get("text", "")),
        )
        return "".join(out).strip()
    finally:
        kc.stop_channels()


@pytest.fixture
def lab(tmp_path):
    """`make lab` on a free port of 127.0.0.1, with a token, no browser and no way out: the
    proxy variables point at a closed port, so any request to the internet fails."""
    if not (VENV / "bin" / "jupyter-lab").exists():
        pytest.skip("JupyterLab is not installed in this environment")
    port, token = _free_port(), secrets.token_hex(16)
    env = {
        **os.environ,
        "HOME": str(tmp_path),  # no user-level Jupyter settings or kernels
        "JUPYTER_CONFIG_DIR": str(tmp_path / "jupyter-config"),
        "JUPYTER_RUNTIME_DIR": str(tmp_path / "jupyter-runtime"),
        "JUPYTERLAB_SETTINGS_DIR": str(tmp_path / "lab-user-settings"),
        "JUPYTERLAB_WORKSPACES_DIR": str(tmp_path / "lab-workspaces"),
        **dict.fromkeys(("http_proxy", "https_proxy", "HTTP_PROXY", "HTTPS_PROXY"), _CLOSED),
        "no_proxy": "127.0.0.1,localhost",
        "NO_PROXY": "127.0.0.1,localhost",
    }  # fmt: skip
    args = (
        f"--no-browser --ServerApp.port={port} --ServerApp.port_retries=0 "
        f"--IdentityProvider.token={token}"
    )
    cmd = ["make", "--no-print-directory", f"VENV={VENV}", "-o", f"{VENV}/.qrnn-installed",
           "lab", f"LAB_ARGS={args}"]  # fmt: skip
    log = tmp_path / "lab.log"
    with log.open("w") as out:
        proc = subprocess.Popen(
            cmd, cwd=ROOT, env=env, stdout=out, stderr=subprocess.STDOUT, start_new_session=True
        )
    base = f"http://127.0.0.1:{port}"
    try:
        for _ in range(240):  # up to a minute on a busy machine
            if proc.poll() is not None:
                pytest.fail(f"make lab exited with {proc.returncode}:\n{log.read_text()}")
            try:
                _get(f"{base}/api/status", token)
                break
            except OSError:
                time.sleep(0.25)
        else:
            pytest.fail(f"the server did not answer:\n{log.read_text()}")
        yield base, token, log, tmp_path / "jupyter-runtime"
    finally:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGTERM)  # make and the server (their own session)
        try:
            proc.wait(timeout=20)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()


def test_make_lab_serves_the_notebooks_offline(lab):
    base, token, log, runtime = lab
    status, body = _get(f"{base}/api/contents/", token)
    listing = {e["name"]: e for e in json.loads(body)["content"]}
    for name in ("train", "jacobian", "results"):
        assert f"{name}.py" in listing, sorted(listing)  # the text source ...
        assert f"{name}.ipynb" not in listing  # ... and not the generated copy
    _, body = _get(f"{base}/api/contents/train.py?type=notebook&content=1", token)
    nb = json.loads(body)
    assert nb["type"] == "notebook"  # jupytext reads the text source as a notebook
    cells = nb["content"]["cells"]
    assert any("parameters" in c["metadata"].get("tags", []) for c in cells)

    _, body = _get(f"{base}/api/kernelspecs", token)
    assert json.loads(body)["default"] == "python3"
    # the python3 kernel runs this environment's interpreter, with qrnn importable
    _, body = _get(f"{base}/api/kernels", token, "POST", json.dumps({"name": "python3"}).encode())
    kernel = json.loads(body)["id"]
    try:
        assert _kernel_prefix(runtime / f"kernel-{kernel}.json") == sys.prefix
    finally:
        _get(f"{base}/api/kernels/{kernel}", token, "DELETE")

    status, page = _get(f"{base}/lab", token)
    assert status == 200
    # every script and style sheet comes from the server (MathJax is bundled in Lab 4; the
    # page config's legacy MathJax 2 address is never loaded)
    links = re.findall(rb'(?:src|href)="([^"]*)"', page)
    assert links and all(not re.match(rb"[a-z]+:", u) for u in links), links
    _, body = _get(f"{base}/lab/api/settings/@jupyterlab/docmanager-extension:plugin", token)
    schema = json.loads(body)["schema"]  # notebooks/.lab/overrides.json sets the defaults
    assert schema["properties"]["defaultViewers"]["default"] == {"python": "Jupytext Notebook"}
    assert "Traceback" not in log.read_text()
