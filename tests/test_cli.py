"""The qrnn command: every subcommand, and bad arguments (argparse errors, exit code 2)."""

import json

import pytest

from qrnn.cli import main


def test_schemes_lists_methods_and_bits(capsys):
    assert main(["schemes"]) == 0
    out = capsys.readouterr().out
    for name, bits in [("float", 32), ("binary", 1), ("ternary", 2), ("exponential", 6)]:
        assert any(line.split()[:2] == [name, str(bits)] for line in out.splitlines()), name


def test_train_help_describes_every_config_field(capsys):
    import dataclasses

    from qrnn.study.train import RunConfig

    with pytest.raises(SystemExit) as e:
        main(["train", "--help"])
    assert e.value.code == 0
    out = capsys.readouterr().out
    for f in dataclasses.fields(RunConfig):
        assert "--" + f.name.replace("_", "-") in out, f.name
    assert "truncated-BPTT window" in out


def test_train_then_show(mirror, session_cache, monkeypatch, tmp_path, capsys):
    monkeypatch.setenv("QRNN_CACHE", str(session_cache))
    args = ["train", "--task", "fsdd", "--cell", "rnn", "--hidden", "8", "--epochs", "1",
            "--train-limit", "64", "--eval-limit", "32", "--batch-size", "16", "--scheme",
            "ternary", "--stochastic", "--quantizer-options", '{"scale": 0.2}', "--quiet",
            "--threads", "1", "--results", str(tmp_path)]  # fmt: skip
    assert main(args) == 0
    out = capsys.readouterr().out
    assert "status   completed" in out and "test error" in out
    (run,) = list(tmp_path.iterdir())
    rec = json.loads((run / "run.json").read_text())
    assert rec["config"]["quantizer_options"] == {"scale": 0.2}
    assert rec["invocation"]["argv"][0] == "qrnn"
    assert main(["show", run.name[:12], "--results", str(tmp_path)]) == 0
    assert run.name in capsys.readouterr().out
    assert main(["show", str(run), "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["run_id"] == run.name
    assert main(["show", str(run / "model.npz")]) == 0  # the run's packed model
    out = capsys.readouterr().out
    assert "qrnn.packed version 2" in out and run.name in out and "ternary (2 bits)" in out


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        ([], "required: COMMAND"),
        (["fly"], "invalid choice: 'fly'"),
        (["train", "--cell", "tcn"], "invalid choice: 'tcn' (choose from 'rnn', 'gru', 'lstm')"),
        (["train", "--hidden", "many"], "invalid int value: 'many'"),
        (["train", "--hidden", "0"], "hidden=0 is not allowed; it must be an integer >= 1"),
        (["train", "--quantizer-options", "{bad"], "not valid JSON"),
        (["train", "--scheme", "binary", "--quantizer-options", '{"bits": 1}'], "valid options"),
        (["show", "no-such-run", "--results", "."], "no run 'no-such-run'"),
        (["noise", "--set", "embed"], "--set 'embed': use FIELD=VALUE"),
        (["noise", "--modes", "sideways"], "invalid choice: 'sideways'"),
    ],
)
def test_bad_arguments_exit_2_with_a_message(argv, message, capsys):
    with pytest.raises(SystemExit) as e:
        main(argv)
    assert e.value.code == 2
    assert message in capsys.readouterr().err


def test_export_subcommand_rejects_a_missing_run(tmp_path, capsys):
    with pytest.raises(SystemExit) as e:
        main(["export", str(tmp_path / "nope"), "--out", str(tmp_path / "m.npz")])
    assert e.value.code == 2
    assert "nope" in capsys.readouterr().err


def test_show_an_absolute_path_without_a_record(tmp_path, capsys):
    with pytest.raises(SystemExit) as e:
        main(["show", str(tmp_path)])
    assert e.value.code == 2
    assert "no run record" in capsys.readouterr().err


def test_noise_measures_a_draw_through_time(mirror, tmp_path, capsys):
    """``qrnn noise`` on an initialized model: its tables and record, one row per step."""
    import pandas as pd

    argv = ["noise", "--hidden", "8", "--draws", "2", "--seq-len", "5", "--methods",
            "binary-stoch", "--jacobian-modes", "--out", str(tmp_path)]  # fmt: skip
    assert main(argv) == 0
    meta = json.loads(next(tmp_path.glob("noise_*.json")).read_text())
    table = pd.read_csv(next(tmp_path.glob("noise_*.csv")))
    assert meta["schema"] == "qrnn.noise/1" and meta["config"]["hidden"] == 8
    assert set(table["method"]) == {"binary-stoch"} and table["t"].max() == 5
