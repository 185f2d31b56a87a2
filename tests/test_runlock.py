"""Run claims (one worker per run), the study's use of them, and a quiet kernel shutdown."""

import json
import os
import socket
import subprocess
import sys
import textwrap
import threading
import time
from pathlib import Path

import pytest

from qrnn import study
from qrnn.cli import main
from qrnn.study import runlock


def _write_claim(run_dir: Path, age_s: float = 0.0, **owner) -> Path:
    run_dir.mkdir(parents=True, exist_ok=True)
    path = run_dir / runlock.CLAIM
    content = {"host": socket.gethostname(), "pid": os.getpid(), "user": "someone",
               "started": "2020-01-01T00:00:00Z", "token": "old", **owner}  # fmt: skip
    path.write_text(json.dumps(content))
    if age_s:
        t = time.time() - age_s
        os.utime(path, (t, t))
    return path


def _dead_pid() -> int:
    p = subprocess.Popen([sys.executable, "-c", "pass"])
    p.wait()
    return p.pid


def test_a_claim_is_exclusive_names_its_owner_and_is_released(tmp_path):
    run = tmp_path / "run"
    claim = runlock.acquire(run)
    assert claim is not None and (run / runlock.CLAIM).is_file()
    info = runlock.holder(run)
    assert info["host"] == socket.gethostname() and info["pid"] == os.getpid()
    assert {"user", "started", "token"} <= set(info) and info["age_s"] < 60
    assert runlock.acquire(run) is None  # a live owner keeps it, even in the same process
    assert "pid" in runlock.describe(info) and socket.gethostname() in runlock.describe(info)
    claim.release()
    assert not run.exists()  # the claim made the folder; releasing left nothing behind
    again = runlock.acquire(run)
    assert again is not None
    (run / "run.json").write_text("{}")
    again.release()
    assert (run / "run.json").is_file() and not (run / runlock.CLAIM).exists()


def test_a_claim_of_a_dead_pid_on_this_host_is_taken_over(tmp_path):
    pid = _dead_pid()
    _write_claim(tmp_path, pid=pid)
    assert "not running" in runlock.stale_reason(runlock.read(tmp_path))
    claim = runlock.acquire(tmp_path)
    assert claim is not None
    new = runlock.read(tmp_path)
    assert new["pid"] == os.getpid() and new["took_over"]["pid"] == pid
    assert "not running" in new["took_over"]["reason"]


def test_a_reused_pid_is_not_the_owner(tmp_path):
    _write_claim(tmp_path, pid=os.getpid(), pid_start="1")  # our pid, another start time
    assert "another process" in runlock.stale_reason(runlock.read(tmp_path))
    assert runlock.acquire(tmp_path) is not None


def test_an_owner_on_another_host_is_stale_only_after_the_timeout(tmp_path, monkeypatch):
    _write_claim(tmp_path, host="elsewhere.invalid", pid=1, age_s=30)
    assert runlock.acquire(tmp_path, timeout=60) is None
    assert runlock.acquire(tmp_path, timeout=10) is not None  # 30 s without a heartbeat
    monkeypatch.setenv("QRNN_CLAIM_TIMEOUT", "nope")
    with pytest.raises(ValueError, match="QRNN_CLAIM_TIMEOUT"):
        runlock.timeout_s()


def test_an_unreadable_claim_is_judged_by_its_age(tmp_path):
    (tmp_path / runlock.CLAIM).write_text("{trunc")
    assert runlock.acquire(tmp_path, timeout=60) is None
    t = time.time() - 120
    os.utime(tmp_path / runlock.CLAIM, (t, t))
    assert runlock.acquire(tmp_path, timeout=60) is not None


def test_the_heartbeat_keeps_a_claim_fresh_and_stops_when_taken_over(tmp_path):
    claim = runlock.acquire(tmp_path)
    t = time.time() - 1000
    os.utime(claim.path, (t, t))
    claim.start_heartbeat(every=0.05)
    time.sleep(0.5)
    assert runlock.read(tmp_path)["age_s"] < 5
    claim.path.write_text(json.dumps({**claim.content, "token": "thief"}))  # taken over
    assert not claim.refresh()
    claim.release()
    assert runlock.read(tmp_path)["token"] == "thief"  # not ours: left alone


def test_racing_takeovers_of_a_stale_claim_have_one_winner(tmp_path):
    _write_claim(tmp_path, pid=_dead_pid())
    barrier = threading.Barrier(8)
    won = []

    def race():
        barrier.wait()
        c = runlock.acquire(tmp_path)
        if c is not None:
            won.append(c)

    threads = [threading.Thread(target=race) for _ in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert len(won) == 1
    assert runlock.read(tmp_path)["token"] == won[0].content["token"]
    assert not (tmp_path / (runlock.CLAIM + ".takeover")).exists()


RUNNER = """
import json, os, sys, time
from pathlib import Path
from qrnn import study

def fake_notebook(src, dst, parameters, **kw):  # "trains": logs, waits, writes the record
    run_dir = Path(dst).parent
    with open(sys.argv[2], "a") as log:
        log.write(f"{run_dir.name} {os.getpid()}\\n")
    time.sleep(0.4)
    (run_dir / "run.json").write_text(json.dumps({"status": "completed"}))

study.runner.execute_notebook = fake_notebook  # the runner module calls it
while not Path(sys.argv[3]).exists():  # start together
    time.sleep(0.01)
out = study.run_study("smoke", sys.argv[1], only=["experiment=main"], jobs=2, quiet=True)
print(json.dumps(out))
"""


def test_two_concurrent_runners_train_each_run_exactly_once(tmp_path):
    script, log, go = tmp_path / "runner.py", tmp_path / "trained.log", tmp_path / "go"
    script.write_text(textwrap.dedent(RUNNER))
    results = tmp_path / "shared"
    procs = [
        subprocess.Popen(
            [sys.executable, str(script), str(results), str(log), str(go)],
            stdout=subprocess.PIPE,
            text=True,
        )
        for _ in range(2)
    ]
    time.sleep(0.5)
    go.touch()
    outs = [json.loads(p.communicate(timeout=300)[0].strip().splitlines()[-1]) for p in procs]
    assert all(p.returncode == 0 for p in procs)
    ids = [r.run_id for r in study.grid("smoke", ["experiment=main"])]
    trained = [line.split()[0] for line in log.read_text().splitlines()]
    assert sorted(trained) == sorted(ids)  # every run trained, none twice
    assert len({line.split()[1] for line in log.read_text().splitlines()}) == 2  # both worked
    for rid in ids:
        mine = [o for out in outs for o in out if o["run_id"] == rid]
        assert [o["skipped"] for o in mine].count(False) == 1
        assert {o["status"] for o in mine} <= {"completed", "running elsewhere"}
    assert not list(results.glob("smoke/runs/*/" + runlock.CLAIM))  # every claim released
    assert study.status("smoke", results, ["experiment=main"])["completed"] == ids


def test_status_shows_runs_running_elsewhere_and_interrupted_runs(tmp_path, capsys):
    runs = study.grid("smoke", ["experiment=main"])
    folder = study.runs_dir(tmp_path, "smoke")
    claim = runlock.acquire(folder / runs[0].run_id)
    (folder / runs[1].run_id).mkdir(parents=True)
    (folder / runs[1].run_id / "run.json").write_text(json.dumps({"status": "running"}))
    by = study.status("smoke", tmp_path, ["experiment=main"])
    assert by["running"] == [runs[0].run_id] and by["interrupted"] == [runs[1].run_id]
    args = ["study", "status", "--profile", "smoke", "--results", str(tmp_path), "-v"]
    assert main([*args, "--only", "experiment=main"]) == 0
    out = capsys.readouterr().out
    line = next(x for x in out.splitlines() if runs[0].run_id in x)
    assert f"pid {os.getpid()}" in line and socket.gethostname() in line
    # a runner skips the claimed run and says so
    res = study.execute_run(runs[0], str(folder))
    assert res["status"] == "running elsewhere" and f"pid {os.getpid()}" in res["detail"]
    claim.release()


QUIET = [
    {"id": "params", "cell_type": "code", "metadata": {"tags": ["parameters"]},
     "source": "flag = ''", "outputs": [], "execution_count": None},
    {"id": "hook", "cell_type": "code", "metadata": {}, "outputs": [], "execution_count": None,
     "source": "import signal\nk = get_ipython().kernel\n"
     "k.pre_handler_hook = k.post_handler_hook = lambda: None\n"
     "signal.signal(signal.SIGINT, lambda *a: open(flag, 'w').write('SIGINT'))\n"},
]  # fmt: skip


def test_a_finished_notebook_is_shut_down_without_sigint(tmp_path):
    """jupyter_client interrupts every kernel before shutting it down; a kernel busy with a
    message then logs 'KeyboardInterrupt caught in kernel.' The cell keeps a SIGINT handler
    installed after it ends, so any interrupt at shutdown would write the flag file."""
    nb = {"cells": QUIET, "nbformat": 4, "nbformat_minor": 5,
          "metadata": {"kernelspec": {"name": "python3", "language": "python",
                                      "display_name": "Python 3"}}}  # fmt: skip
    (tmp_path / "q.ipynb").write_text(json.dumps(nb))
    flag = tmp_path / "flag"
    study.execute_notebook(str(tmp_path / "q.ipynb"), str(tmp_path / "out.ipynb"),
                           parameters={"flag": str(flag)}, kernel_name="python3",
                           progress_bar=False)  # fmt: skip
    assert (tmp_path / "out.ipynb").is_file() and not flag.exists()
