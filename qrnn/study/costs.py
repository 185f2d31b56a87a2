"""The study's hardware step (``qrnn study hardware``): every trained run packed at its bit
width, its operations and energy counted, and its integer inference path checked against the
float model (``hardware/*.json``, ``hardware.csv``). The claims checked are those of
Ott et al. 2016, *Recurrent Neural Networks With Limited Numerical Precision*,
https://arxiv.org/abs/1608.06902.
"""

from __future__ import annotations

import json
import time
from collections.abc import Iterable
from pathlib import Path

from .grid import Run, grid
from .ptq import cached_data, run_keys, trained_dir, write_timed_record
from .runs import runs_dir
from .tables import MAIN_GRID
from .verdicts import GROUP

# ------------------------------------------------------------------------------ hardware
HARDWARE_SCHEMA = "qrnn.hardware/1"


def hardware(
    profile: str = "cpu",
    results: str | Path = "results",
    *,
    data_root: str | None = None,
    only: Iterable[str] | None = None,
    seq_len: int = 100,
    recordings: int = 8,
) -> list[dict]:
    """What the hardware gains, measured on the trained models: every finished run of the
    main grid (``MAIN_GRID``) with its weights (``model.pt`` or ``model.npz``) is packed
    (:func:`qrnn.export.pack_model`) and unpacked (outputs must be identical), its recurrent
    layer's operations and energy per step are counted (:mod:`qrnn.hardware`), and the
    multiplication-free integer path is run on real test inputs (PTB: the first ``seq_len``
    test characters; digits: the first ``recordings`` test recordings) against the float
    evaluation of the same quantized model. One record per run:
    ``results/<profile>/hardware/<run-id>.json`` (schema ``qrnn.hardware/1``); existing
    records are kept. Returns the records."""
    from .runs import load_model

    out_dir = Path(results) / profile / "hardware"
    made, cache = [], {}
    for run in grid(profile, only):
        run_dir = runs_dir(results, profile) / run.run_id
        path = out_dir / f"{run.run_id}.json"
        if run.experiment not in MAIN_GRID:
            continue
        if path.exists():
            made.append(json.loads(path.read_text()))
            continue
        if trained_dir(run, results, profile) is None:
            continue
        t0 = time.perf_counter()
        model, _ = load_model(run_dir)
        data = cached_data(cache, run.config, data_root)
        rec_hw = _hardware_record(run, model, data, seq_len, recordings)
        made.append(write_timed_record(path, rec_hw, t0))
    return made


def _hardware_record(run: Run, model, data, seq_len: int, recordings: int) -> dict:
    """The hardware record of one trained run (``model``; ``data``: its task's data), less
    the time and environment (:func:`qrnn.study.ptq.write_timed_record` adds those)."""
    from ..hardware import energy_pj, step_ops
    from .config import LM_TASKS

    cfg = run.config
    lm = cfg.task in LM_TASKS
    inputs = _test_inputs(data, lm, seq_len, recordings)
    size, identical, integer_diff, integer_agree = _packed_and_integer(model, inputs, run)
    ops = step_ops(model.rnn)
    return {
        "schema": HARDWARE_SCHEMA,
        **run.labels(),
        "run_id": run.run_id,
        "scheme": cfg.scheme,
        "size": size,
        "unpacked_identical": identical,
        "ops_per_step": ops,
        "energy_pj_per_step": {"sram": energy_pj(ops, "sram"), "dram": energy_pj(ops, "dram")},
        "integer_max_abs_diff": integer_diff,
        "integer_same_prediction": integer_agree,
        "integer_inputs": f"first {seq_len} test characters"
        if lm
        else f"first {recordings} test recordings",
    }


def _test_inputs(data, lm: bool, seq_len: int, recordings: int) -> tuple:
    """The model's inputs for the hardware checks: the first ``seq_len`` test characters as
    one ``(T, 1)`` sequence (language models), else the first ``recordings`` test recordings
    and their lengths."""
    from ..data import speech_batches

    if lm:
        return (data.test[:seq_len].unsqueeze(1),)  # (T, 1)
    x, lens, _ = next(iter(speech_batches(data.test, recordings, shuffle=False)))
    return (x, lens)


def _packed_and_integer(model, inputs: tuple, run: Run) -> tuple:
    """``(size, identical, integer_diff, integer_agree)`` on ``inputs``: the packed file's size
    report, whether the model packed and loaded back gives outputs identical to the float
    evaluation's, and the integer path's largest deviation from those outputs and its share of
    equal predictions (both None for a float run)."""
    import tempfile

    import torch

    from ..export import load_packed, pack_model, size_report
    from ..hardware import integer_model_forward

    with torch.no_grad():
        ref = model(*inputs)
        ref = ref[0] if isinstance(ref, tuple) else ref
        with tempfile.TemporaryDirectory() as tmp:
            f = Path(tmp) / "model.npz"
            pack_model(model, f, {"run_id": run.run_id})
            size = size_report(model, f)
            back = load_packed(f)(*inputs)
        back = back[0] if isinstance(back, tuple) else back
        integer_diff = integer_agree = None
        if run.config.scheme != "float":
            out = integer_model_forward(model, *inputs)
            out = out[0] if isinstance(out, tuple) else out
            integer_diff = float((out - ref).abs().max())
            integer_agree = float((out.argmax(-1) == ref.argmax(-1)).double().mean())
    return size, bool(torch.equal(back, ref)), integer_diff, integer_agree


def summarize_hardware(profile: str = "cpu", results: str | Path = "results"):
    """``hardware.csv``: per group (experiment, task, cell, hidden size, budget, setting and
    method: :data:`qrnn.study.verdicts.GROUP`; means over the seeds' records) the packed
    file size against fp32, operations and energy per step, and the integer path's largest
    deviation from the float evaluation (and the smallest share of equal predictions)."""
    import pandas as pd

    from .records import atomic_write_bytes

    paths = sorted((Path(results) / profile / "hardware").glob("*.json"))
    if not paths:
        raise ValueError(f"no hardware records under {Path(results) / profile / 'hardware'}")
    rows = []
    for p in paths:
        r = json.loads(p.read_text())
        ops = r["ops_per_step"]
        rows.append({
            "experiment": r.get("experiment", ""), "task": r["task"], "cell": r["cell"],
            **run_keys(results, profile, r.get("run_id")), "method": r["method"],
            "seed": r["seed"],
            "file_bytes": r["size"]["file_bytes"], "fp32_bytes": r["size"]["fp32_bytes"],
            "ratio": r["size"]["ratio"], "quantized_ratio": r["size"]["quantized_ratio"],
            "unpacked_identical": r["unpacked_identical"],
            "weight_bits": ops["weight_bits"], "fp32_mult": ops["fp32_mult"],
            "fp32_add": ops["fp32_add"], "int32_mult": ops["int32_mult"],
            "int32_add": ops["int32_add"], "shift": ops["shift"], "sign_flip": ops["sign_flip"],
            "zero_fraction": ops["zero_fraction"],
            "energy_sram_pj": r["energy_pj_per_step"]["sram"]["total"],
            "energy_dram_pj": r["energy_pj_per_step"]["dram"]["total"],
            "arith_pj": r["energy_pj_per_step"]["sram"]["arithmetic"],
            "integer_max_abs_diff": r["integer_max_abs_diff"],
            "integer_same_prediction": r.get("integer_same_prediction"),
        })  # fmt: skip
    df = pd.DataFrame(rows)
    num = [c for c in df.columns if c not in (*GROUP, "seed")]
    agg = {c: "mean" for c in num}
    agg.update(unpacked_identical="all", integer_max_abs_diff="max", integer_same_prediction="min")
    by = df.groupby(GROUP, sort=False, dropna=False)
    table = by.agg(agg).reset_index()
    table.insert(len(GROUP), "n", by.size().values)
    atomic_write_bytes(Path(results) / profile / "hardware.csv", table.to_csv(index=False).encode())
    return table
