"""Refusals: every error a user can cause ends in one line (exit status 2, no traceback) that
names what was wrong, and nothing already computed is lost."""

import dataclasses
import hashlib
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from qrnn import study
from qrnn.cli import main
from qrnn.study import runlock
from qrnn.study.train import RunConfig, RunData, run_id, train

TINY = RunConfig(task="ptb-char", cell="gru", scheme="ternary", hidden=8, epochs=1, bptt=10,
                 batch_size=4, threads=1)  # fmt: skip


@pytest.fixture(scope="module")
def trained(tmp_path_factory) -> Path:
    """A results folder with one completed run (synthetic text, seconds)."""
    g = torch.Generator().manual_seed(0)
    text = [torch.randint(0, 12, (n,), generator=g) for n in (3000, 800, 800)]
    results = tmp_path_factory.mktemp("trained")
    rec = train(TINY, results, quiet=True, data=RunData(*text, 12, {}))
    assert rec["status"] == "completed" and (results / rec["run_id"] / "model.npz").is_file()
    return results


def _snapshot(folder: Path) -> dict[str, str]:
    return {
        str(p.relative_to(folder)): hashlib.sha256(p.read_bytes()).hexdigest()
        for p in sorted(folder.rglob("*"))
        if p.is_file()
    }


def _truncate(path: Path) -> None:
    path.write_bytes(path.read_bytes()[: path.stat().st_size // 2])


def _live_claim(run_dir: Path) -> None:
    p = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
    run_dir.mkdir(parents=True, exist_ok=True)
    (run_dir / runlock.CLAIM).write_text(
        json.dumps({**runlock.owner(), "pid": p.pid, "pid_start": None})
    )
    _live_claim.procs.append(p)


_live_claim.procs = []

RID = run_id(TINY)
FLAGS = [
    "--task",
    "ptb-char",
    "--cell",
    "gru",
    "--scheme",
    "ternary",
    "--hidden",
    "8",
    "--epochs",
    "1",
    "--bptt",
    "10",
    "--batch-size",
    "4",
    "--threads",
    "1",
    "--quiet",
]  # fmt: skip  (TINY)
NEW = [*FLAGS, "--seed", "1"]  # a run not trained yet: its data must be loaded


# id: (setup(work, results) -> argv, exit status, words the last stderr line must contain)
CASES = {
    "data folder missing": (
        lambda w, r: ["train", "--data", str(w / "nonexistent"), "--results", str(r)],
        2, ["--data", "nonexistent", "no such folder"],
    ),
    "QRNN_DATA folder missing": (
        lambda w, r: (os.environ.__setitem__("QRNN_DATA", str(w / "gone")),
                      ["train", *NEW, "--results", str(r)])[1],
        2, ["data mirror folder", "gone", "QRNN_DATA", "does not exist"],
    ),
    "data file corrupt": (
        lambda w, r: ((w / "d/ptb").mkdir(parents=True),
                      (w / "d/ptb/ptb.char.train.txt").write_text("garbage"),
                      ["train", *NEW, "--data", str(w / "d"), "--results", str(r)])[2],
        2, ["ptb.char.train.txt", "sha256", "replace it"],
    ),
    "results under a file": (
        lambda w, r: ((w / "file").write_text("x"),
                      ["train", *FLAGS, "--results", str(w / "file" / "res")])[1],
        2, ["results folder", "cannot be created", "--results"],
    ),
    "study results under a file": (
        lambda w, r: ((w / "file").write_text("x"),
                      ["study", "run", "--profile", "smoke", "--results", str(w / "file")])[1],
        2, ["not writable"],
    ),
    "run claimed elsewhere": (
        lambda w, r: (_live_claim(r / RID), ["train", *FLAGS, "--results", str(r)])[1],
        2, [RID, "being trained elsewhere", "pid", runlock.CLAIM],
    ),
    "corrupt run record": (
        lambda w, r: (_truncate(r / RID / "run.json"), ["show", RID, "--results", str(r)])[1],
        2, ["run.json", "corrupt or truncated", "restore it"],
    ),
    "record of another schema": (
        lambda w, r: ((r / RID / "run.json").write_text('{"schema": "x"}'),
                      ["show", str(r / RID)])[1],
        2, ["not a qrnn.run/1 record", "missing key"],
    ),
    "truncated model.pt": (
        lambda w, r: (_truncate(r / RID / "model.pt"),
                      ["export", RID, "--results", str(r), "--out", str(w / "m.npz")])[1],
        2, ["model.pt", "corrupt or truncated", "--force"],
    ),
    "truncated packed file": (
        lambda w, r: (_truncate(r / RID / "model.npz"), ["show", str(r / RID / "model.npz")])[1],
        2, ["model.npz", "qrnn.packed", "truncated"],
    ),
    "not a packed file": (
        lambda w, r: ((w / "x.npz").write_bytes(b"PK\x03\x04junk"), ["show", str(w / "x.npz")])[1],
        2, ["x.npz", "qrnn.packed"],
    ),
    "packed file missing": (
        lambda w, r: ["show", str(w / "none.npz")], 2, ["no packed file", "none.npz"],
    ),
    "unknown run id": (
        lambda w, r: ["show", "nosuchrun", "--results", str(r)], 2, ["no run 'nosuchrun'"],
    ),
    "unknown run to export": (
        lambda w, r: ["export", "nosuchrun", "--results", str(r), "--out", str(w / "m.npz")],
        2, ["no run 'nosuchrun'"],
    ),
    "bad choice": (
        lambda w, r: ["train", "--cell", "tcn"], 2, ["invalid choice: 'tcn'", "'gru'"],
    ),
    "bad RunConfig value": (
        lambda w, r: ["train", "--lr", "100"], 2, ["lr=100.0 is not allowed", "(0, 10)"],
    ),
    "bad RunConfig combination": (
        lambda w, r: ["train", "--stochastic"], 2, ["stochastic=True", "scheme='float'"],
    ),
    "unknown --only value": (
        lambda w, r: ["study", "status", "--profile", "smoke", "--results", str(r),
                      "--only", "cell=tcn"],
        2, ["--only cell", "unknown tcn", "gru"],
    ),
    "truncated packed model of a committed run (no model.pt)": (
        lambda w, r: ((r / RID / "model.pt").unlink(), _truncate(r / RID / "model.npz"),
                      ["export", RID, "--results", str(r), "--out", str(w / "m.npz")])[2],
        2, ["model.npz", "truncated", "restore"],
    ),
    "malformed --only": (
        lambda w, r: ["study", "run", "--profile", "smoke", "--results", str(r),
                      "--only", "colour"],
        2, ["malformed filter 'colour'", "KEY=V1"],
    ),
}  # fmt: skip


@pytest.mark.parametrize("case", list(CASES))
def test_refusal(case, trained, tmp_path, monkeypatch, capsys):
    monkeypatch.delenv("QRNN_DATA", raising=False)
    monkeypatch.delenv("QRNN_DEBUG", raising=False)
    monkeypatch.setattr(os, "environ", os.environ.copy())  # cases may set QRNN_DATA
    setup, code, words = CASES[case]
    results = tmp_path / "results"
    shutil.copytree(trained, results)
    argv = setup(tmp_path, results)
    before = _snapshot(results)  # after the case's own damage, which must also stay
    try:
        got = main(argv)
    except SystemExit as e:  # argparse's usage errors
        got = e.code
    finally:
        for p in _live_claim.procs:
            p.kill()
    err = capsys.readouterr().err
    assert got == code, err
    assert "Traceback" not in err
    last = err.strip().splitlines()[-1]
    assert last.startswith(("qrnn: error: ", "qrnn ")) and "error: " in last
    for w in words:
        assert w in last, (w, last)
    after = _snapshot(results)
    assert {k: v for k, v in after.items() if k in before} == before  # nothing lost or changed


def test_debug_shows_the_traceback_and_bugs_keep_theirs(tmp_path, monkeypatch):
    bad = tmp_path / "x.npz"
    bad.write_bytes(b"junk")
    from qrnn.export import PackedFormatError

    with pytest.raises(PackedFormatError):
        main(["show", str(bad), "--debug"])
    monkeypatch.setenv("QRNN_DEBUG", "1")
    with pytest.raises(PackedFormatError):
        main(["show", str(bad)])
    monkeypatch.delenv("QRNN_DEBUG")
    import qrnn.cli

    def bug(args):
        raise RuntimeError("a bug")

    monkeypatch.setattr(qrnn.cli, "_schemes", bug)
    with pytest.raises(RuntimeError, match="a bug"):
        main(["schemes"])


def test_a_bad_papermill_parameter_fails_the_run_with_one_line(tmp_path):
    """A value RunConfig refuses, passed as a papermill parameter: the notebook stops at its
    validation cell, the study records the failure as one line and goes on."""
    cfg = dataclasses.replace(TINY)
    object.__setattr__(cfg, "hidden", 0)  # bypasses validation, as a hand-typed -p would
    run = study.Run("main", "ptb-char", "gru", "ternary-det", 0, cfg)
    out = study.execute_run(run, str(tmp_path))
    assert out["status"] == "failed" and not out["skipped"]
    assert out["detail"] == "ValueError: hidden=0 is not allowed; it must be an integer >= 1"
    first = (tmp_path / run.run_id / "error.txt").read_text().splitlines()[0]
    assert first == out["detail"]
    assert study.record_status(tmp_path / run.run_id) == "failed"
    assert not (tmp_path / run.run_id / runlock.CLAIM).exists()


def test_export_of_a_committed_run_uses_its_packed_model(trained, tmp_path):
    """Committed runs keep only model.npz: ``qrnn export`` rewrites it, same weights."""
    from qrnn import load_packed

    results = tmp_path / "results"
    shutil.copytree(trained, results)
    (results / RID / "model.pt").unlink()
    assert main(["export", RID, "--results", str(results), "--out", str(tmp_path / "m.npz")]) == 0
    a = load_packed(results / RID / "model.npz").state_dict()
    b = load_packed(tmp_path / "m.npz").state_dict()
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)
