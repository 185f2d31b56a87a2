"""Run folders (qrnn.study.runs): finding a run, its status, the finished runs; one atomic
writer."""

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from qrnn.data import sources
from qrnn.study import records, runs

ROOT = Path(__file__).resolve().parent.parent


def _record(folder: Path, status: str) -> Path:
    folder.mkdir(parents=True)
    (folder / "run.json").write_text(json.dumps({"status": status}))
    return folder


def test_find_run_by_folder_id_and_prefix(tmp_path):
    a = _record(tmp_path / "ptb-char_rnn_float_aaaa", "completed")
    _record(tmp_path / "ptb-char_rnn_float_aabb", "completed")
    assert runs.find_run(str(a), tmp_path) == a
    assert runs.find_run(str(a / "run.json"), tmp_path) == a
    assert runs.find_run("ptb-char_rnn_float_aaa", tmp_path) == a
    with pytest.raises(ValueError, match="ambiguous"):
        runs.find_run("ptb-char_rnn_float_aa", tmp_path)
    with pytest.raises(FileNotFoundError, match="no run"):
        runs.find_run("gru", tmp_path)


def test_record_status_and_finished_runs_agree_with_the_script(tmp_path):
    states = {"completed": "completed", "diverged": "diverged", "failed": "failed",
              "running": "interrupted"}  # fmt: skip
    for recorded, status in states.items():
        d = _record(tmp_path / "p" / "runs" / recorded, recorded)
        assert runs.record_status(d) == status
    bad = tmp_path / "p" / "runs" / "corrupt"
    bad.mkdir()
    (bad / "run.json").write_text("{trunc")
    assert runs.record_status(bad) == "failed"
    assert runs.record_status(tmp_path / "p" / "runs" / "none") == "pending"
    found = [str(p) for p in runs.finished_runs(tmp_path)]
    assert sorted(Path(p).name for p in found) == ["completed", "diverged", "failed"]
    script = subprocess.run(
        [sys.executable, str(ROOT / "scripts" / "finished_runs.py"), str(tmp_path)],
        capture_output=True, text=True, check=True,
    )  # fmt: skip
    assert script.stdout.split() == found


def test_trained_needs_completion_and_weights(tmp_path):
    d = _record(tmp_path / "r", "completed")
    assert not runs.trained(d)
    (d / "model.npz").write_bytes(b"")
    assert runs.trained(d)


def test_one_atomic_writer():
    assert records.atomic_write_bytes is sources.atomic_write


def test_prune_stale_drops_only_what_the_grid_no_longer_has(tmp_path):
    """scripts/prune_stale.py: a record whose id left the grid (a changed setting) goes, with
    its grid.json label; the grid's own records and labels stay; --dry-run changes nothing."""
    from qrnn import study

    current = [r.run_id for r in study.grid("smoke")][:2]
    folder = tmp_path / "smoke"
    for run_id in [*current, "ptb-char_lstm_float_000000000000"]:
        _record(folder / "runs" / run_id, "completed")
    labels = {
        k: {"experiment": "x"}
        for k in [*current, "ptb-char_lstm_float_000000000000", "fsdd_gru_float_111111111111"]
    }
    (folder / "grid.json").write_text(json.dumps(labels))
    (folder / "hardware").mkdir()
    for run_id in (current[0], "fsdd_gru_float_111111111111"):
        (folder / "hardware" / f"{run_id}.json").write_text("{}")

    def prune(*extra):
        return subprocess.run(
            [sys.executable, str(ROOT / "scripts" / "prune_stale.py"), "smoke", "--results",
             str(tmp_path), *extra], capture_output=True, text=True, check=True,
            cwd=ROOT, env={**os.environ, "PYTHONPATH": str(ROOT)},
        ).stdout  # fmt: skip

    assert "2 stale of 4" in prune("--dry-run")
    assert (folder / "runs" / "ptb-char_lstm_float_000000000000").is_dir()
    assert "2 stale of 4" in prune()
    assert sorted(p.name for p in (folder / "runs").iterdir()) == sorted(current)
    assert sorted(json.loads((folder / "grid.json").read_text())) == sorted(current)
    assert [p.stem for p in (folder / "hardware").iterdir()] == [current[0]]


def test_environment_names_the_cpu_and_its_load():
    """A run's wall time is only comparable with the CPU model and the load beside it."""
    env = records.environment("cpu", 1)
    assert env["threads"] == 1 and env["cpus"] == os.cpu_count()
    assert isinstance(env["cpu_model"], str) and env["cpu_model"]
    if Path("/proc/cpuinfo").exists():  # Linux: the model name line, verbatim
        names = [ln.split(":", 1)[1].strip() for ln in Path("/proc/cpuinfo").read_text()
                 .splitlines() if ln.lower().startswith("model name")]  # fmt: skip
        assert env["cpu_model"] == names[0]
    assert env["load_avg_1min"] is None or env["load_avg_1min"] >= 0
