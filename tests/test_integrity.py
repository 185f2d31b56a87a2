"""Integrity (issue 31): packed files, run folders, the data cache and grid.json verify
themselves, and every bad input ends in one line ``qrnn: error: ...`` (exit status 2) naming
the file or parameter and what is allowed, with no earlier file changed."""

import errno
import hashlib
import io
import json
import os
import shutil
import subprocess
import sys
import zipfile
from pathlib import Path

import numpy as np
import pytest
import torch

from qrnn.cli import main
from qrnn.export import PackedFormatError, read_packed
from qrnn.study import presets
from qrnn.study.train import RunConfig, RunData, run_id, train

ROOT = Path(__file__).resolve().parent.parent
TINY = RunConfig(task="ptb-char", cell="gru", scheme="ternary", hidden=8, epochs=1, bptt=10,
                 batch_size=4, threads=1)  # fmt: skip
FLOAT = RunConfig(task="ptb-char", cell="gru", hidden=8, epochs=1, bptt=10, batch_size=4,
                  threads=1)  # fmt: skip
RID, FID = run_id(TINY), run_id(FLOAT)
LABELS = {"experiment": "main", "task": "ptb-char", "cell": "gru", "method": "ternary-det",
          "seed": 0}  # fmt: skip
# a committed run of the study (packed format version 1, sha256 in its run.json)
COMMITTED = sorted((ROOT / "results" / "cpu" / "runs").glob("*/model.npz"))[0].parent


@pytest.fixture(scope="module")
def trained(tmp_path_factory) -> Path:
    """Two completed runs (ternary, float; synthetic text, seconds) as ``qrnn train`` leaves
    them, and the ternary one again in a study folder ``study/smoke/runs/`` with its grid.json."""
    g = torch.Generator().manual_seed(0)
    text = [torch.randint(0, 12, (n,), generator=g) for n in (3000, 800, 800)]
    results = tmp_path_factory.mktemp("trained")
    for cfg in (TINY, FLOAT):
        assert train(cfg, results, quiet=True, data=RunData(*text, 12, {}))["status"] == "completed"
    study = results / "study" / "smoke" / "runs"
    study.mkdir(parents=True)
    shutil.copytree(results / RID, study / RID)
    (results / "study" / "smoke" / "grid.json").write_text(json.dumps({RID: LABELS}))
    return results


# ------------------------------------------------------------------------------ editing tools
def _members(path: Path) -> tuple[bytes, dict[str, np.ndarray]]:
    with zipfile.ZipFile(path) as z:
        arrays = {n[:-4]: np.load(io.BytesIO(z.read(n))) for n in z.namelist()}
    return arrays.pop("meta").tobytes(), arrays


def _write(path: Path, meta_bytes: bytes, arrays: dict) -> None:
    buf = io.BytesIO()
    np.savez(buf, meta=np.frombuffer(meta_bytes, np.uint8), **arrays)
    path.write_bytes(buf.getvalue())


def _edit_header(path: Path, edit, redigest: bool = False) -> Path:
    """Rewrite ``path`` with ``edit(meta)`` applied, as numpy would (valid ZIP, valid CRCs);
    ``redigest``: also recompute the header's own digest (a tool that knows the format)."""
    raw, arrays = _members(path)
    meta = json.loads(raw)
    edit(meta)
    blob = json.dumps(meta).encode()
    if redigest and meta.get("meta_sha256"):
        old = meta["meta_sha256"].encode()
        blob = blob.replace(old, hashlib.sha256(blob.replace(old, b"0" * 64)).hexdigest().encode())
    _write(path, blob, arrays)
    return path


def _set_scheme(meta):
    meta["methods"][0]["scheme"] = "pow2-ternary"


def _swap_offsets(meta):
    a, b = (e for e in meta["tensors"] if e["name"] in ("rnn.bias_ih_l0", "rnn.bias_hh_l0"))
    a["offset"], b["offset"] = b["offset"], a["offset"]


def _set_metric(meta):
    meta["source"]["test"] = {"metric": 0.01}  # a better test result than measured


def _set_hidden(meta):
    meta["architecture"]["kwargs"]["hidden"] = 9


def _huge_member(path: Path) -> Path:
    """``codes.npy`` declaring 10^11 elements (its header padded to the same length), in a
    valid ZIP (CRCs recomputed)."""
    with zipfile.ZipFile(path) as z:
        members = {n: bytearray(z.read(n)) for n in z.namelist()}
    data = members["codes.npy"]
    n = read_packed(path)["meta"]["blobs"]["codes"]["nbytes"]
    old, new = f"'shape': ({n},), }}".encode(), b"'shape': (99999999999,), }"
    at, pad = data.index(old), len(new) - len(old)
    assert data[at + len(old) : at + len(old) + pad] == b" " * pad  # eats header padding
    data[at : at + len(new)] = new
    with zipfile.ZipFile(path, "w", zipfile.ZIP_STORED) as z:
        for name, body in members.items():
            z.writestr(name, bytes(body))
    return path


def _committed_copy(r: Path) -> Path:
    """A committed run (version 1 packed file) copied to ``r/committed/<id>``."""
    dest = r / "committed" / COMMITTED.name
    dest.mkdir(parents=True)
    for name in ("run.json", "model.npz"):
        shutil.copy(COMMITTED / name, dest / name)
    return dest


def _grid(r: Path, value) -> None:
    path = r / "study" / "smoke" / "grid.json"
    if value is None:
        path.unlink()
    else:
        path.write_text(value if isinstance(value, str) else json.dumps(value))


def _full_disk(mp) -> None:
    """Every atomic write fails as on a full disk (ENOSPC from the write, no file name)."""
    import qrnn.atomic

    real = os.fdopen

    class Full(io.RawIOBase):
        def __init__(self, fd):
            self.f = real(fd, "wb")

        def write(self, b):
            raise OSError(errno.ENOSPC, "No space left on device")

        def close(self):
            self.f.close()

    mp.setattr(qrnn.atomic.os, "fdopen", lambda fd, mode="r", *a, **k: Full(fd))


def _out(w: Path) -> str:
    return str(w / "out.npz")


# id: (setup(work, results, monkeypatch) -> argv, words the one stderr line must contain)
CASES = {
    # silent wrong results, before
    "packed header edited (scheme ternary -> pow2-ternary)": (
        lambda w, r, mp: ["show", str(_edit_header(r / RID / "model.npz", _set_scheme))],
        ["model.npz", "fails its checksum", "meta_sha256"],
    ),
    "packed header: two tensor offsets swapped": (
        lambda w, r, mp: ["show", str(_edit_header(r / RID / "model.npz", _swap_offsets))],
        ["model.npz", "fails its checksum"],
    ),
    "packed header: test metric edited": (
        lambda w, r, mp: ["show", str(_edit_header(r / RID / "model.npz", _set_metric))],
        ["model.npz", "fails its checksum"],
    ),
    "version 1 file: test metric edited in its run folder": (
        lambda w, r, mp: ["show", str(_edit_header(_committed_copy(r) / "model.npz",
                                                   _set_metric))],
        ["model.npz", "does not match the sha256", "run.json"],
    ),
    "version 1 file: scheme edited": (
        lambda w, r, mp: ["show", str(_edit_header(_committed_copy(r) / "model.npz",
                                                   _set_scheme))],
        ["model.npz", "malformed header", "methods[0] ('pow2-ternary'", "not a known method"],
    ),
    "another run's model.npz in a run folder: export": (
        lambda w, r, mp: ((r / RID / "model.pt").unlink(),
                          shutil.copy(COMMITTED / "model.npz", r / RID / "model.npz"),
                          ["export", RID, "--results", str(r), "--out", _out(w)])[2],
        [f"{RID}/model.npz", "does not match the sha256", "run.json", "restore"],
    ),
    "another run's model.npz in a run folder: show": (
        lambda w, r, mp: (shutil.copy(COMMITTED / "model.npz", r / RID / "model.npz"),
                          ["show", str(r / RID)])[1],
        ["model.npz", "does not match the sha256"],
    ),
    "grid.json missing an entry: summarize": (
        lambda w, r, mp: (_grid(r, {}), ["study", "summarize", "--profile", "smoke",
                                         "--results", str(r / "study")])[1],
        [RID, "no entry", "grid.json", "--skip-unlabelled"],
    ),
    # tracebacks, before
    "--device cuda:abc": (
        lambda w, r, mp: ["train", "--device", "cuda:abc"],
        ["device='cuda:abc'", "auto, cpu, cuda, cuda:N"],
    ),
    "grid.json is []: summarize": (
        lambda w, r, mp: (_grid(r, []), ["study", "summarize", "--profile", "smoke",
                                         "--results", str(r / "study")])[1],
        ["smoke/grid.json", "run id -> labels", "not list"],
    ),
    "grid.json is []: study run": (
        lambda w, r, mp: (_grid(r, []), ["study", "run", "--profile", "smoke", "--results",
                                         str(r / "study"), "--quiet"])[1],
        ["smoke/grid.json", "run id -> labels", "not list"],
    ),
    "grid.json entry without its labels": (
        lambda w, r, mp: (_grid(r, {RID: {"task": "ptb-char"}}),
                          ["study", "summarize", "--profile", "smoke", "--results",
                           str(r / "study")])[1],
        [RID, "lacks experiment, cell, method, seed"],
    ),
    # unclear, before
    "packed file with a wrong magic": (
        lambda w, r, mp: ((w / "x.npz").write_bytes(b"XX" + (r / RID / "model.npz")
                                                    .read_bytes()[2:]),
                          ["show", str(w / "x.npz")])[1],
        ["x.npz", "qrnn.packed", "Bad magic"],
    ),
    "packed member declaring 10^11 elements": (
        lambda w, r, mp: ["show", str(_huge_member(r / RID / "model.npz"))],
        ["model.npz", "declares 99999999999 bytes but holds"],
    ),
    "packed architecture edited (digest recomputed)": (
        lambda w, r, mp: ["show", str(_edit_header(r / RID / "model.npz", _set_hidden,
                                                   redigest=True))],
        ["model.npz", "does not fit the architecture", "shape"],
    ),
    "--cost 0": (
        lambda w, r, mp: ["study", "status", "--profile", "smoke", "--results", str(r),
                          "--cost", "0"],
        ["--cost", "0 is not allowed", ">= 1"],
    ),
    "--cost -1": (
        lambda w, r, mp: ["study", "status", "--profile", "smoke", "--results", str(r),
                          "--cost", "-1"],
        ["--cost", "-1 is not allowed"],
    ),
    "RunConfig(task=fsdd, embed=32)": (
        lambda w, r, mp: ["train", "--task", "fsdd", "--embed", "32"],
        ["embed=32", "fsdd", "must be 0"],
    ),
    "grid.json truncated": (
        lambda w, r, mp: (_grid(r, '{"' + RID), ["study", "summarize", "--profile", "smoke",
                                                 "--results", str(r / "study")])[1],
        ["smoke/grid.json", "corrupt or truncated"],
    ),
    "grid.json deleted": (
        lambda w, r, mp: (_grid(r, None), ["study", "summarize", "--profile", "smoke",
                                           "--results", str(r / "study")])[1],
        [RID, "grid.json is missing"],
    ),
    "a full disk while exporting": (
        lambda w, r, mp: (_full_disk(mp), ["export", RID, "--results", str(r), "--out",
                                           _out(w)])[1],
        ["No space left on device", "out.npz"],
    ),
    # newcomer frictions, before
    "validation error (was after 26 lines of usage)": (
        lambda w, r, mp: ["train", "--lr", "100"], ["lr=100.0 is not allowed", "(0, 10)"],
    ),
    "a run id not found in the folder given": (
        lambda w, r, mp: ["export", "nosuchrun", "--results", str(r), "--out", _out(w)],
        ["no run 'nosuchrun'", "--results FOLDER"],
    ),
}  # fmt: skip


def _snapshot(folder: Path) -> dict[str, str]:
    return {
        str(p.relative_to(folder)): hashlib.sha256(p.read_bytes()).hexdigest()
        for p in sorted(folder.rglob("*"))
        if p.is_file()
    }


@pytest.mark.parametrize("case", list(CASES))
def test_one_line(case, trained, tmp_path, monkeypatch, capsys):
    monkeypatch.delenv("QRNN_DEBUG", raising=False)
    setup, words = CASES[case]
    results = tmp_path / "results"
    shutil.copytree(trained, results)
    argv = setup(tmp_path, results, monkeypatch)
    before = _snapshot(tmp_path)  # after the case's own damage, which must also stay
    try:
        got = main(argv)
    except SystemExit as e:  # argparse's errors
        got = e.code
    err = capsys.readouterr().err
    lines = err.strip().splitlines()
    assert got == 2, err
    assert len(lines) == 1 and lines[0].startswith("qrnn: error: "), err
    assert "Traceback" not in err and "allow_pickle" not in err
    for w in words:
        assert w in lines[0], (w, lines[0])
    after = _snapshot(tmp_path)
    assert {k: v for k, v in after.items() if k in before} == before  # nothing changed
    assert not [k for k in after if k not in before and k.endswith(".tmp")]  # no partial file


# ------------------------------------------------------------------------------ what still works
def test_committed_version_1_files_load_and_verify():
    """The study's committed packed files (version 1) load with the structural checks and
    match the sha256 in their run.json."""
    from qrnn.study.runs import load_model, verify_packed

    packed = read_packed(COMMITTED / "model.npz")
    assert packed["meta"]["version"] == 1 and packed["checked"] == "structure"
    assert verify_packed(COMMITTED) == "sha256"
    model, rec = load_model(COMMITTED)
    assert rec["run_id"] == COMMITTED.name and not model.training


def test_ptq_hardware_and_the_book_load_only_the_recorded_model(trained, tmp_path):
    """They load a run's packed model through load_model / verify_packed: another run's file
    is refused there."""
    from qrnn.study.runs import PackedMismatch, load_model

    run = tmp_path / RID
    shutil.copytree(trained / RID, run)
    (run / "model.pt").unlink()
    assert load_model(run)[1]["run_id"] == RID
    shutil.copy(COMMITTED / "model.npz", run / "model.npz")
    with pytest.raises(PackedMismatch, match="does not match the sha256"):
        load_model(run)


def test_new_files_carry_their_digest_and_show_says_what_was_checked(trained, capsys):
    packed = read_packed(trained / RID / "model.npz")
    assert packed["meta"]["version"] == 2 and packed["checked"] == "meta_sha256"
    assert main(["show", str(trained / RID / "model.npz")]) == 0
    out = capsys.readouterr().out
    assert "checked  meta_sha256 (header and payload); sha256 in" in out
    assert main(["show", str(COMMITTED / "model.npz")]) == 0
    assert "structure only" in capsys.readouterr().out


def test_show_and_export_find_a_run_through_a_study_folder(trained, tmp_path, capsys):
    assert main(["show", RID[:20], "--results", str(trained / "study")]) == 0
    assert RID in capsys.readouterr().out
    assert main(["export", FID, "--results", str(trained), "--out", _out(tmp_path)]) == 0
    out = capsys.readouterr().out
    assert "the size of the fp32 state_dict" in out and "smaller" not in out  # a float model


def test_summarize_skips_unlabelled_runs_only_when_told(trained, tmp_path):
    from qrnn import study

    results = tmp_path / "results"
    shutil.copytree(trained, results)
    (results / "study" / "smoke" / "grid.json").write_text("{}")
    assert study.unlabelled("smoke", results / "study") == [(RID, "no entry")]
    with pytest.raises(ValueError, match="--skip-unlabelled"):
        study.summarize("smoke", results / "study")
    with pytest.raises(ValueError, match="no run records"):  # nothing left to summarize
        study.summarize("smoke", results / "study", skip_unlabelled=True)


def test_init_table_keeps_a_file_equal_but_for_the_last_digits(tmp_path):
    import pandas as pd

    from qrnn.study.summaries import _same_table

    table = pd.DataFrame({"method": ["a", "b"], "rms": [0.1234567891, 2.0]})
    path = tmp_path / "init.csv"
    path.write_text("method,rms\na,0.1234567892\nb,2.0\n")
    assert _same_table(path, table)
    path.write_text("method,rms\na,0.13\nb,2.0\n")
    assert not _same_table(path, table)


def test_corrupt_record_says_why_in_status(trained, tmp_path):
    from qrnn.study.runs import record_status, run_note

    run = tmp_path / RID
    shutil.copytree(trained / RID, run)
    (run / "run.json").write_text('{"status": "compl')
    assert record_status(run) == "failed"
    assert "corrupt or truncated" in run_note("failed", run)


# ------------------------------------------------------------------------------ data
def test_a_byte_changed_in_place_is_caught_and_verify_names_it(tmp_path, monkeypatch, capsys,
                                                               mirror):  # fmt: skip
    """One byte of ptb.char.train.txt changed in place with size and mtime restored: the
    loader refuses it (the bytes it read), and ``qrnn data verify`` names it."""
    from qrnn.data import ChecksumError, load_text

    (tmp_path / "ptb").mkdir()
    for f in (mirror / "ptb").glob("ptb.char.*.txt"):
        shutil.copy2(f, tmp_path / "ptb" / f.name)
    monkeypatch.setenv("QRNN_CACHE", str(tmp_path / "cache"))
    corpus = load_text("ptb-char", root=tmp_path, download=False, progress=False)
    good = corpus.files["ptb.char.train.txt"]["sha256"]
    target = tmp_path / "ptb" / "ptb.char.train.txt"
    st = target.stat()
    with open(target, "r+b") as f:
        f.seek(1000)
        byte = f.read(1)
        f.seek(1000)
        f.write(b"#" if byte != b"#" else b"$")
    os.utime(target, ns=(st.st_atime_ns, st.st_mtime_ns))
    assert target.stat().st_size == st.st_size and target.stat().st_mtime_ns == st.st_mtime_ns
    with pytest.raises(ChecksumError, match=r"ptb\.char\.train\.txt"):
        load_text("ptb-char", root=tmp_path, download=False, progress=False)
    assert good == hashlib.sha256((mirror / "ptb" / "ptb.char.train.txt").read_bytes()).hexdigest()
    assert main(["data", "verify", "--data", str(tmp_path), "--quiet"]) == 2
    captured = capsys.readouterr()
    assert "bad      mirror file" in captured.out and str(target) in captured.out
    line = captured.err.strip().splitlines()
    assert len(line) == 1 and "1 data file(s) fail their checks" in line[0], captured.err


# ------------------------------------------------------------------------------ notebook
def test_notebook_parameters_unknown_names_and_json_dicts():
    with pytest.raises(ValueError, match=r"unknown parameter hiden \(did you mean hidden\?\)"):
        presets.refuse_unknown({"hiden", "_ignored"})
    presets.refuse_unknown({"hidden", "preset", "results_dir"})
    cfg, _ = presets.config_from({"scheme": "binary", "quantizer_options": '{"scale": "glorot"}'})
    assert cfg.quantizer_options == {"scale": "glorot"}
    with pytest.raises(ValueError, match="quantizer_options='scale=glorot' is not a JSON object"):
        presets.config_from({"scheme": "binary", "quantizer_options": "scale=glorot"})


def test_the_notebook_refuses_a_misspelled_parameter(tmp_path):
    import papermill as pm

    from qrnn.study import execute_notebook

    with pytest.raises(pm.PapermillExecutionError, match="unknown parameter hiden"):
        execute_notebook(
            str(ROOT / "notebooks" / "train.ipynb"), str(tmp_path / "out.ipynb"), cwd=str(ROOT),
            kernel_name="python3", progress_bar=False,
            parameters={"hiden": 64, "results_dir": str(tmp_path)},
        )  # fmt: skip
    assert not any(tmp_path.glob("*/run.json"))


# ------------------------------------------------------------------------------ the command
def test_python_m_qrnn_and_version():
    r = subprocess.run([sys.executable, "-m", "qrnn", "--version"], capture_output=True,
                       text=True, cwd=ROOT)  # fmt: skip
    assert r.returncode == 0 and r.stdout.startswith("qrnn "), r.stderr


def test_read_packed_never_suggests_pickle(tmp_path):
    np.save(tmp_path / "x.npy", np.array([{"a": 1}], dtype=object), allow_pickle=True)
    with pytest.raises(PackedFormatError) as e:
        read_packed(tmp_path / "x.npy")
    assert "allow_pickle" not in str(e.value)
    buf = io.BytesIO()
    np.savez(buf, meta=np.array([{"a": 1}], dtype=object))
    (tmp_path / "o.npz").write_bytes(buf.getvalue())
    with pytest.raises(PackedFormatError, match="dtype object") as e:
        read_packed(tmp_path / "o.npz")
    assert "allow_pickle" not in str(e.value)
