"""The benchmark scripts run and write what the book reads (timings are never asserted)."""

import json
import subprocess
import sys
from pathlib import Path

import qrnn

ROOT = Path(__file__).resolve().parent.parent


def test_layer_bench_writes_a_record_with_every_method(tmp_path):
    out = tmp_path / "layers.json"
    script = ROOT / "bench" / "bench_layers.py"
    cmd = [sys.executable, str(script), "--quick", "--no-brevitas", "--cells", "rnn", "lstm",
           "--hidden", "8", "--threads", "1", "--out", str(out)]  # fmt: skip
    r = subprocess.run(cmd, capture_output=True, text=True, timeout=300)
    assert r.returncode == 0, r.stderr[-3000:]
    rec = json.loads(out.read_text())
    assert "commit" in rec["meta"]["git"] and rec["meta"]["started"].endswith("Z")
    rows = rec["rows"]
    for cell in ("rnn", "lstm"):
        mine = {row["variant"]: row for row in rows if row["cell"] == cell}
        assert mine["float torch.nn"]["ratio"] == 1.0
        for method in qrnn.SCHEMES[1:]:
            for mode, target in (("det", "<= 1.10x"), ("stoch", "<= 1.25x")):
                row = mine[f"{method} {mode}"]
                assert row["median_ms"] > 0 and row["target"] == target
                assert row["status"] in ("PASS", "FAIL")
                assert row["rounds"] == len(row["times_ms"]) == 3
                assert 0 < row["quant_ms"] < row["median_ms"]  # a part of the step
    assert "targets:" in r.stdout


def test_paper_window_dry_mode(mirror, tmp_path):
    """The prepared GPU command (scripts/paper_window.py) in its CPU dry mode: every run of
    the window trains and is recorded, and the benchmark rows come back (issues 12 and 18)."""
    from qrnn import study

    cmd = [sys.executable, str(ROOT / "scripts" / "paper_window.py"), "--dry", "--out",
           str(tmp_path), "--data", str(mirror)]  # fmt: skip
    r = subprocess.run(cmd, capture_output=True, text=True, timeout=600)
    assert r.returncode == 0, r.stderr[-3000:]
    summary = json.loads((tmp_path / "window.json").read_text())
    assert summary["profile"] == "paper-dry"
    assert {o["status"] for o in summary["runs"]} == {"completed"}
    want = {run.run_id for run in study.grid("paper-dry")}
    assert {o["run_id"] for o in summary["runs"]} == want
    for rid in want:
        rec = json.loads(
            (tmp_path / "results" / "paper-dry" / "runs" / rid / "run.json").read_text()
        )
        assert rec["environment"]["device"] == "cpu" and rec["packed"]["file"] == "model.npz"
    variants = {row["variant"] for row in summary["bench"]["rows"]}
    assert variants == {"torch.nn", *study.WINDOW_METHODS}
    # the real window is the paper profile's LSTM 1000 on the full text
    real = study.grid("paper", ["experiment=window"])
    assert {(r.config.hidden, r.config.train_limit) for r in real} == {(1000, 0)}
