"""The committed study keeps its trained models: every finished run record under
``results/cpu/`` names a packed file whose sha256 matches, and a committed model reloaded from
that file alone reproduces the recorded test metric on the real test split (issue 16)."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
RUNS = ROOT / "results" / "cpu" / "runs"


def _finished() -> list[Path]:
    out = []
    for p in sorted(RUNS.glob("*/run.json")):
        rec = json.loads(p.read_text())
        if rec["status"] in ("completed", "diverged") and rec.get("test"):
            out.append(p.parent)
    return out


def test_every_finished_run_keeps_its_packed_model():
    runs = _finished()
    if not runs:
        pytest.skip("no finished run of the corrected study is committed yet")
    for run in runs:
        rec = json.loads((run / "run.json").read_text())
        packed = rec["packed"]
        f = run / packed["file"]
        assert f.is_file(), f"{run.name}: record names {packed['file']}, not committed"
        assert hashlib.sha256(f.read_bytes()).hexdigest() == packed["sha256"]
        assert f.stat().st_size <= 2 * 1024 * 1024  # the repository's file-size rule
        assert packed["test_metric"] == rec["test"]["metric"]


def test_a_committed_model_reproduces_its_test_metric(mirror, monkeypatch, tmp_path):
    from qrnn.train import config_from_dict, evaluate, load_data

    runs = _finished()
    if not runs:
        pytest.skip("no finished run of the corrected study is committed yet")
    # the smallest committed model of each task (evaluation cost stays small)
    by_task: dict[str, Path] = {}
    for run in runs:
        task = json.loads((run / "run.json").read_text())["config"]["task"]
        size = (run / "model.npz").stat().st_size
        if task not in by_task or size < (by_task[task] / "model.npz").stat().st_size:
            by_task[task] = run
    monkeypatch.setenv("QRNN_CACHE", str(tmp_path))
    for run in by_task.values():
        model, rec = _packed(run)  # the packed file alone, never a local model.pt
        cfg = config_from_dict(rec["config"])
        test = evaluate(model, load_data(cfg, str(mirror), progress=False).test, cfg)
        assert test["metric"] == pytest.approx(rec["test"]["metric"], rel=1e-6, abs=1e-6)


def _packed(run: Path):
    from qrnn import load_packed
    from qrnn.records import load_record

    return load_packed(run / "model.npz"), load_record(run)
