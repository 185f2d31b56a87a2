"""The notebooks: one text source each (notebooks/*.py, jupytext) with its generated .ipynb in
sync, the train notebook's parameters and presets, and papermill runs with small settings."""

import dataclasses
import json
import os
import re
import shlex
import subprocess
import sys
from pathlib import Path

import jupytext
import papermill as pm
import pytest

from qrnn.study import execute_notebook, presets
from qrnn.study.train import RunConfig

ROOT = Path(__file__).resolve().parent.parent
TRAIN = ROOT / "notebooks" / "train.ipynb"
sys.path.insert(0, str(ROOT / "scripts"))
import notebook_util  # noqa: E402

# small settings appended to a documented command (later -p win)
TINY = dict(hidden=16, epochs=2, bptt=20, batch_size=8, train_limit=3000, eval_limit=1500,
            threads=1, quiet=True)  # fmt: skip


def _parameters(cells) -> str:
    params = [c for c in cells if "parameters" in c["metadata"].get("tags", [])]
    assert len(params) == 1
    src = params[0]["source"]
    return src if isinstance(src, str) else "".join(src)


def test_every_notebook_has_a_text_source_and_its_ipynb_is_in_sync():
    sources = {p.stem for p in notebook_util.sources()}
    assert sources == {p.stem for p in (ROOT / "notebooks").glob("*.ipynb")}
    assert {"train", "jacobian", "results"} <= sources
    assert notebook_util.stale() == [], "run `make notebooks` after editing notebooks/*.py"


def test_generated_notebooks_are_portable_and_carry_no_pairing():
    for src in notebook_util.sources():
        nb = json.loads(src.with_suffix(".ipynb").read_text())
        assert nb["metadata"]["kernelspec"]["name"] == "python3"
        assert "jupytext" not in nb["metadata"]  # executed copies stay unpaired
        assert len({c["id"] for c in nb["cells"]}) == len(nb["cells"])


@pytest.mark.parametrize("kind", ["source", "ipynb"])
def test_train_parameters_cell_lists_every_runconfig_field(kind):
    nb = jupytext.read(ROOT / "notebooks" / "train.py") if kind == "source" else None
    cells = nb.cells if nb else json.loads(TRAIN.read_text())["cells"]
    src = "\n" + _parameters(cells)
    missing = [f.name for f in dataclasses.fields(RunConfig) if f"\n{f.name} = " not in src]
    assert not missing, f"add to the parameters cell of notebooks/train.py: {missing}"
    for name in ("preset", "results_dir", "data_root", "quiet", "histograms"):
        assert f"\n{name} = " in src


def test_papermill_reads_every_parameter_with_its_help(caplog):
    """`papermill --help-notebook` parses the cell: every field, each with a comment, no line
    it cannot parse."""
    params = pm.inspect_notebook(str(TRAIN))
    assert {f.name for f in dataclasses.fields(RunConfig)} <= set(params)
    assert all(p["help"] for p in params.values()), [n for n, p in params.items() if not p["help"]]
    assert "Unable to parse" not in caplog.text


def test_a_preset_fills_only_what_is_not_given():
    cfg, filled = presets.config_from({"scheme": "ternary", "hidden": 32}, "class")
    assert cfg.scheme == "ternary" and cfg.hidden == 32
    assert cfg.train_limit == presets.CLASS["train_limit"] and "hidden" not in filled
    assert presets.config_from({}, "none")[0] == RunConfig()
    study = presets.config_from({}, "study")[0]
    assert study != presets.config_from({}, "class")[0]


def test_a_preset_never_changes_a_run_given_every_field():
    """The study passes every RunConfig field: the notebook's preset must not touch it."""
    run = RunConfig(task="fsdd", cell="gru", hidden=64, epochs=15, scheme="binary")
    for name in presets.PRESETS:
        cfg, filled = presets.config_from(dataclasses.asdict(run), name)
        assert cfg == run and filled == []


def test_bad_preset_and_unknown_field_are_named():
    with pytest.raises(ValueError, match="preset='lesson' is not allowed"):
        presets.config_from({}, "lesson")
    with pytest.raises(ValueError, match="not RunConfig fields: hiden"):
        presets.config_from({"hiden": 3}, "class")


def test_method_labels_follow_the_study():
    cfg = RunConfig(scheme="binary", quantizer_options={"scale": "glorot"}).resolved()
    assert presets.method_label(cfg) == "binary-glorot-det"
    assert presets.method_label(RunConfig(scheme="ternary", stochastic=True).resolved()) == (
        "ternary-stoch"
    )
    assert presets.method_label(RunConfig().resolved()) == "float"


@pytest.mark.parametrize(
    "params",
    [
        dict(task="ptb-char", hidden=16, epochs=2, bptt=20, batch_size=8, train_limit=3000,
             eval_limit=1500, scheme="exponential", stochastic=True),
        dict(task="fsdd", cell="gru", hidden=8, epochs=2, batch_size=16, train_limit=64,
             eval_limit=32, scheme="binary", input_norm="batch", preset="none"),
    ],
    ids=["ptb-char", "fsdd"],
)  # fmt: skip
def test_train_notebook_runs_and_writes_the_record(mirror, session_cache, monkeypatch, tmp_path,
                                                   params):  # fmt: skip
    monkeypatch.setenv("QRNN_CACHE", str(session_cache))
    out = tmp_path / "out.ipynb"
    execute_notebook(
        str(TRAIN), str(out), cwd=str(ROOT), kernel_name="python3", progress_bar=False,
        parameters={**params, "threads": 1, "quiet": True, "results_dir": str(tmp_path / "r")},
    )  # fmt: skip
    (run,) = list((tmp_path / "r").iterdir())
    rec = json.loads((run / "run.json").read_text())
    assert rec["status"] == "completed" and rec["config"]["task"] == params["task"]
    assert rec["invocation"]["papermill"]["scheme"] == params["scheme"]
    executed = json.loads(out.read_text())["cells"]
    images = [o for c in executed for o in c.get("outputs", []) if "image/png" in o.get("data", {})]
    assert len(images) >= 3  # learning curve, weight histograms, the methods so far
    streams = [o.get("text", "") for c in executed for o in c.get("outputs", [])]
    text = "".join(t if isinstance(t, str) else "".join(t) for t in streams)
    assert re.search(r"estimated training time: about \d+ s", text)


@pytest.mark.slow
def test_train_notebook_defaults_fit_a_class(mirror, session_cache, monkeypatch, tmp_path):
    """With its defaults (the class preset) the notebook runs and writes its record."""
    monkeypatch.setenv("QRNN_CACHE", str(session_cache))
    execute_notebook(
        str(TRAIN), str(tmp_path / "out.ipynb"), cwd=str(ROOT), kernel_name="python3",
        progress_bar=False, parameters={"results_dir": str(tmp_path / "r"), "quiet": True},
    )  # fmt: skip
    (run,) = list((tmp_path / "r").iterdir())
    rec = json.loads((run / "run.json").read_text())
    assert rec["status"] == "completed"
    assert rec["invocation"]["preset"] == "class"
    assert {k: rec["config"][k] for k in presets.CLASS} == presets.CLASS
    assert len(rec["epochs"]) == presets.CLASS["epochs"]  # early_stop 0: a full curve


def guided_commands() -> list[str]:
    """The papermill commands of the book's guided experiments."""
    text = (ROOT / "book" / "notebooks.md").read_text()
    return re.findall(r"^(papermill notebooks/train\.ipynb .+)$", text, re.M)


def test_the_book_documents_three_guided_experiments():
    cmds = guided_commands()
    assert len(cmds) >= 5
    text = (ROOT / "book" / "notebooks.md").read_text()
    assert len(re.findall(r"^### Experiment \d", text, re.M)) == 3


def _parameters_of(argv: list[str]) -> dict:
    """The parameters of a papermill command line, typed as papermill types them."""
    import yaml
    from papermill.cli import _resolve_type

    out, i = {}, 0
    while i < len(argv):
        if argv[i] in ("-p", "--parameters"):
            out[argv[i + 1]] = _resolve_type(argv[i + 2])
            i += 3
        elif argv[i] in ("-y", "--parameters_yaml"):
            out.update(yaml.safe_load(argv[i + 1]))
            i += 2
        else:
            i += 1
    return out


@pytest.mark.slow
def test_guided_experiment_commands_run_with_small_settings(mirror, session_cache, monkeypatch,
                                                            tmp_path):  # fmt: skip
    """Every documented command trains with small settings; the one with a YAML parameter runs
    through papermill's command line itself (one kernel start per command is slow on CI)."""
    from qrnn.study.train import train

    monkeypatch.setenv("QRNN_CACHE", str(session_cache))
    results = tmp_path / "r"
    cmds = [shlex.split(c) for c in guided_commands()]
    via_cli = next(a for a in cmds if "-y" in a)
    fields = {f.name for f in dataclasses.fields(RunConfig)}
    small = {k: v for k, v in TINY.items() if k in fields}
    for argv in cmds:
        if argv is via_cli:
            continue
        params = {**_parameters_of(argv), **small}
        cfg, _ = presets.config_from({k: params.get(k) for k in fields}, "class")
        assert train(cfg, results, quiet=True)["status"] == "completed", argv

    tiny = [a for k, v in {**TINY, "results_dir": str(results)}.items() for a in ("-p", k, str(v))]
    argv = [str(Path(sys.prefix) / "bin" / "papermill"), *via_cli[1:], *tiny]
    argv[2] = str(tmp_path / "out.ipynb")
    env = {**os.environ, "QRNN_CACHE": str(session_cache)}
    r = subprocess.run(argv, cwd=ROOT, env=env, capture_output=True, text=True)
    assert r.returncode == 0, r.stderr[-3000:]

    cfg, _ = presets.config_from({**small, "scheme": "binary", "cell": "lstm"}, "class")
    methods = set(presets.method_curves(results, cfg)["method"])
    assert methods == {"binary-det", "ternary-det", "binary-stoch", "ternary-stoch",
                       "binary-glorot-det"}  # fmt: skip


def test_train_notebook_rejects_a_bad_parameter(tmp_path):
    with pytest.raises(pm.PapermillExecutionError, match="cell='tcn' is not allowed"):
        execute_notebook(
            str(TRAIN), str(tmp_path / "out.ipynb"), cwd=str(ROOT), kernel_name="python3",
            progress_bar=False, parameters={"cell": "tcn", "results_dir": str(tmp_path)},
        )  # fmt: skip
