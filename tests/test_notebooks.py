"""The parameterized notebooks run under papermill with tiny parameters (one per task family)."""

import json
from pathlib import Path

import papermill as pm
import pytest

from qrnn.study import execute_notebook

ROOT = Path(__file__).resolve().parent.parent
TRAIN = ROOT / "notebooks" / "train.ipynb"


def test_train_notebook_has_a_parameters_cell_with_every_field():
    import dataclasses

    from qrnn.train import RunConfig

    cells = json.loads(TRAIN.read_text())["cells"]
    params = [c for c in cells if "parameters" in c["metadata"].get("tags", [])]
    assert len(params) == 1
    src = "".join(params[0]["source"])
    for f in dataclasses.fields(RunConfig):
        assert f"\n{f.name} = " in src, f.name


@pytest.mark.parametrize(
    "params",
    [
        dict(task="ptb-char", hidden=16, epochs=2, bptt=20, batch_size=8, train_limit=3000,
             eval_limit=1500, scheme="exponential", stochastic=True),
        dict(task="fsdd", cell="gru", hidden=8, epochs=2, batch_size=16, train_limit=64,
             eval_limit=32, scheme="binary", input_norm="batch"),
    ],
    ids=["ptb-char", "fsdd"],
)  # fmt: skip
def test_train_notebook_runs_and_writes_the_record(mirror, session_cache, monkeypatch, tmp_path,
                                                   params):  # fmt: skip
    monkeypatch.setenv("QRNN_CACHE", str(session_cache))
    out = tmp_path / "out.ipynb"
    execute_notebook(
        str(TRAIN), str(out), cwd=str(ROOT), kernel_name="python3", progress_bar=False,
        parameters={**params, "threads": 1, "results_dir": str(tmp_path / "results")},
    )  # fmt: skip
    (run,) = list((tmp_path / "results").iterdir())
    rec = json.loads((run / "run.json").read_text())
    assert rec["status"] == "completed" and rec["config"]["task"] == params["task"]
    assert rec["invocation"]["papermill"]["scheme"] == params["scheme"]
    executed = json.loads(out.read_text())["cells"]
    images = [o for c in executed for o in c.get("outputs", []) if "image/png" in o.get("data", {})]
    assert len(images) >= 2  # learning curves and weight histograms


def test_train_notebook_rejects_a_bad_parameter(tmp_path):
    with pytest.raises(pm.PapermillExecutionError, match="cell='tcn' is not allowed"):
        execute_notebook(
            str(TRAIN), str(tmp_path / "out.ipynb"), cwd=str(ROOT), kernel_name="python3",
            progress_bar=False, parameters={"cell": "tcn"},
        )  # fmt: skip
