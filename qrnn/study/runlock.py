"""Run claims: one worker per run, also on a results folder shared between machines.

Before training, a runner *claims* the run by creating ``<run-dir>/claim.json`` atomically:
the content is written to a temporary file that is hard-linked into place, which fails when a
claim exists (atomic on local file systems and NFS; ``O_EXCL`` where hard links are not
supported). The claim names its owner (``host``, ``pid``, ``user``, ``started``, a random
``token``); its modification time is the heartbeat, refreshed every :data:`HEARTBEAT_S`
seconds while the run trains.

A claim is *stale*, and is taken over, when its owner is gone: its pid is dead on this host
(or was reused by another process), or its heartbeat is older than the timeout
(:data:`STALE_AFTER_S`, or ``$QRNN_CLAIM_TIMEOUT`` seconds; the only test for owners on other
hosts). A takeover happens under a short-lived guard file, so two runners that find the same
stale claim cannot both win.

Part of ``qrnn``, the library and study after Ott et al. 2016, *Recurrent Neural Networks With
Limited Numerical Precision*, https://arxiv.org/abs/1608.06902.
"""

from __future__ import annotations

import contextlib
import datetime as _dt
import getpass
import json
import os
import socket
import threading
import time
import uuid
from pathlib import Path

CLAIM = "claim.json"
HEARTBEAT_S = 30.0
STALE_AFTER_S = 600.0
GUARD_STALE_S = 60.0  # a takeover guard older than this was left by a crashed runner

__all__ = ["CLAIM", "Claim", "acquire", "describe", "holder", "read", "stale_reason"]


def timeout_s() -> float:
    """Seconds without a heartbeat after which a claim is stale (``$QRNN_CLAIM_TIMEOUT``)."""
    value = os.environ.get("QRNN_CLAIM_TIMEOUT")
    if not value:
        return STALE_AFTER_S
    try:
        t = float(value)
    except ValueError:
        raise ValueError(f"QRNN_CLAIM_TIMEOUT={value!r} is not a number of seconds") from None
    if not t > 0:
        raise ValueError(f"QRNN_CLAIM_TIMEOUT={value!r} must be a positive number of seconds")
    return t


def _proc_start(pid: int) -> str | None:
    """The start time of ``pid`` in clock ticks since boot (Linux), to detect pid reuse."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    return stat.rsplit(")", 1)[-1].split()[19]  # field 22 of proc(5)


def _user() -> str:
    try:
        return getpass.getuser()
    except (KeyError, OSError):
        return str(os.getuid()) if hasattr(os, "getuid") else "?"


def owner() -> dict:
    """This process as a claim owner."""
    return {
        "host": socket.gethostname(),
        "pid": os.getpid(),
        "pid_start": _proc_start(os.getpid()),
        "user": _user(),
        "started": _dt.datetime.now(_dt.UTC).strftime("%Y-%m-%dT%H:%M:%SZ"),
        "token": uuid.uuid4().hex,
    }


def _create(path: Path, content: dict) -> bool:
    """Create ``path`` holding ``content`` if it does not exist; False when it does."""
    data = (json.dumps(content, indent=1) + "\n").encode()
    tmp = path.with_name(f".{path.name}.{content['token']}.tmp")
    try:
        tmp.write_bytes(data)
    except OSError as e:  # a full disk: no empty temporary file left, the claim file named
        tmp.unlink(missing_ok=True)
        e.filename = e.filename or str(path)
        raise
    try:
        os.link(tmp, path)
        return True
    except FileExistsError:
        return False
    except OSError:  # no hard links on this file system: exclusive create
        try:
            fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o644)
        except FileExistsError:
            return False
        try:
            with os.fdopen(fd, "wb") as f:
                f.write(data)
        except OSError as e:
            path.unlink(missing_ok=True)
            e.filename = e.filename or str(path)
            raise
        return True
    finally:
        tmp.unlink(missing_ok=True)


def read(run_dir: str | os.PathLike, name: str = CLAIM) -> dict | None:
    """The claim of a run folder with ``age_s`` (seconds since its heartbeat), or None."""
    path = Path(run_dir) / name
    try:
        st = path.stat()
        text = path.read_text()
    except (FileNotFoundError, NotADirectoryError):
        return None
    try:
        info = json.loads(text)
        if not isinstance(info, dict):
            raise ValueError
    except ValueError:  # being written (O_EXCL path) or damaged: judged by its age only
        info = {"unreadable": True}
    info["age_s"] = max(0.0, time.time() - st.st_mtime)
    return info


def stale_reason(info: dict, timeout: float | None = None) -> str | None:
    """Why a claim's owner is gone (dead pid on this host, no heartbeat), or None if alive."""
    timeout = timeout_s() if timeout is None else timeout
    if info.get("host") == socket.gethostname() and isinstance(info.get("pid"), int):
        pid = info["pid"]
        try:
            os.kill(pid, 0)
        except ProcessLookupError:
            return f"pid {pid} is not running on {info['host']}"
        except PermissionError:
            pass  # alive, owned by another user
        start = info.get("pid_start")
        if start is not None and _proc_start(pid) not in (None, start):
            return f"pid {pid} on {info['host']} is another process now"
    if info["age_s"] > timeout:
        return f"no heartbeat for {info['age_s']:.0f} s (timeout {timeout:.0f} s)"
    return None


def describe(info: dict) -> str:
    """``user@host pid N since T, heartbeat S s ago``."""
    if info.get("unreadable"):
        return f"an unreadable claim, written {info['age_s']:.0f} s ago"
    return (
        f"{info.get('user', '?')}@{info.get('host', '?')} pid {info.get('pid', '?')} since "
        f"{info.get('started', '?')}, heartbeat {info['age_s']:.0f} s ago"
    )


def holder(run_dir: str | os.PathLike, timeout: float | None = None) -> dict | None:
    """The owner of a live claim on the run folder, or None when unclaimed or stale."""
    info = read(run_dir)
    return info if info is not None and stale_reason(info, timeout) is None else None


class Claim:
    """A held claim: refresh its heartbeat while working, release it when done.

    As a context manager it runs a heartbeat thread and releases on exit.
    """

    def __init__(self, path: Path, content: dict):
        self.path, self.content = path, content
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    @property
    def ours(self) -> bool:
        info = read(self.path.parent, self.path.name)
        return info is not None and info.get("token") == self.content["token"]

    def refresh(self) -> bool:
        """Renew the heartbeat; False if the claim was taken over (or removed)."""
        if not self.ours:
            return False
        with contextlib.suppress(FileNotFoundError):
            os.utime(self.path)
            return True
        return False

    def release(self) -> None:
        """Stop the heartbeat and remove the claim if it is still ours."""
        self._stop.set()
        if self._thread is not None and self._thread is not threading.current_thread():
            self._thread.join()
        if self.ours:
            self.path.unlink(missing_ok=True)
            with contextlib.suppress(OSError):  # a folder made only for the claim
                self.path.parent.rmdir()

    def _beat(self, every: float) -> None:
        while not self._stop.wait(every):
            if not self.refresh():
                return

    def start_heartbeat(self, every: float = HEARTBEAT_S) -> Claim:
        self._thread = threading.Thread(target=self._beat, args=(every,), daemon=True)
        self._thread.start()
        return self

    def __enter__(self) -> Claim:
        return self.start_heartbeat() if self._thread is None else self

    def __exit__(self, *exc) -> None:
        self.release()


def acquire(run_dir: str | os.PathLike, timeout: float | None = None) -> Claim | None:
    """Claim the run folder (created if needed); None if a live owner holds it.

    A stale claim is taken over; the new claim keeps the old owner under ``took_over``.
    """
    run_dir = Path(run_dir)
    run_dir.mkdir(parents=True, exist_ok=True)
    path = run_dir / CLAIM
    for _ in range(5):
        me = owner()
        if _create(path, me):
            return Claim(path, me)
        info = read(run_dir)
        if info is None:  # released in between: try again
            continue
        why = stale_reason(info, timeout)
        if why is None:
            return None
        guard = run_dir / (CLAIM + ".takeover")
        if not _create(guard, me):
            g = read(run_dir, guard.name)
            if g is not None and g["age_s"] > GUARD_STALE_S:
                guard.unlink(missing_ok=True)
                continue
            return None  # another runner is taking it over
        try:
            again = read(run_dir)
            if again is not None:
                if again.get("token") != info.get("token") or stale_reason(again, timeout) is None:
                    return None  # someone else took it meanwhile
                path.unlink(missing_ok=True)
            old = {k: info.get(k) for k in ("host", "pid", "user", "started")}
            me["took_over"] = {**old, "reason": why}
            return Claim(path, me) if _create(path, me) else None
        finally:
            guard.unlink(missing_ok=True)
    return None
