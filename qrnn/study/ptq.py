"""The study's post-training step: the trained float runs quantized without retraining
(``qrnn study ptq``, ``ptq/*.json``, ``ptq.csv``), against the quantization-aware runs of
Ott et al. 2016, *Recurrent Neural Networks With Limited Numerical Precision*,
https://arxiv.org/abs/1608.06902.
"""

from __future__ import annotations

import json
import math
import time
from collections.abc import Iterable
from pathlib import Path

from .config import RunConfig
from .grid import METHOD_CONFIG, Run, grid
from .runs import runs_dir, trained
from .tables import MAIN_GRID, config_keys
from .verdicts import GROUP


# ------------------------------------------------------------------------------ post-training
def trained_dir(run: Run, results, profile: str) -> Path | None:
    """The run's folder if it completed and kept its best weights (``model.pt`` or the packed
    ``model.npz``), else None."""
    run_dir = runs_dir(results, profile) / run.run_id
    return run_dir if trained(run_dir) else None


def cached_data(cache: dict, cfg: RunConfig, data_root):
    """The data of ``cfg``'s task and split, loaded once per ``cache``."""
    from .assemble import load_data

    key = (cfg.task, cfg.split)
    if key not in cache:
        cache[key] = load_data(cfg, data_root, progress=False)
    return cache[key]


PTQ_METHODS = ("binary-det", "ternary-det", "pow2-ternary", "exponential-det")
PTQ_SCHEMA = "qrnn.ptq/1"


def post_training(
    profile: str = "cpu",
    results: str | Path = "results",
    *,
    data_root: str | None = None,
    only: Iterable[str] | None = None,
) -> list[dict]:
    """Post-training quantization: every finished float run of the main grid (``MAIN_GRID``)
    that has its best weights (``model.pt``) is quantized with each deterministic method, without
    retraining, and evaluated on its test split. One record per (float run, method) is written
    to ``results/<profile>/ptq/<float-run-id>/<method>.json`` (schema ``qrnn.ptq/1``);
    existing records are kept. Returns the records."""
    import torch

    from ..export import post_training_quantize
    from .loop import evaluate
    from .runs import load_model

    out_dir = Path(results) / profile / "ptq"
    floats = [r for r in grid(profile, only) if r.experiment in MAIN_GRID and r.method == "float"]
    made, cache = [], {}
    for run in floats:
        run_dir = trained_dir(run, results, profile)
        if run_dir is None:
            continue
        model, rec = load_model(run_dir)
        cfg = run.config
        data = cached_data(cache, cfg, data_root)
        for method in PTQ_METHODS:
            path = out_dir / run.run_id / f"{method}.json"
            if path.exists():
                made.append(json.loads(path.read_text()))
                continue
            scheme = METHOD_CONFIG[method]["scheme"]
            t0 = time.perf_counter()
            with torch.no_grad():
                test = evaluate(post_training_quantize(model, scheme), data.test, cfg)
            trained = _trained_counterpart(profile, run, method)
            ptq = {
                "schema": PTQ_SCHEMA,
                **run.labels(),
                "method": method,
                "scheme": scheme,
                "float_run_id": run.run_id,
                "trained_run_id": trained.run_id if trained else None,
                "metric": rec["metric"]["name"],
                "float_test": rec["test"]["metric"],
                "test": test["metric"],
                "test_loss": test["loss"],
            }
            made.append(write_timed_record(path, ptq, t0))
    return made


def _trained_counterpart(profile: str, run: Run, method: str) -> Run | None:
    """The run of ``profile`` trained with ``method`` in the float run ``run``'s place (same
    experiment, task, cell and seed), or None when the profile has none."""
    return next(
        (
            r
            for r in grid(profile)
            if r.experiment == run.experiment
            and r.task == run.task
            and r.cell == run.cell
            and r.seed == run.seed
            and r.method == method
        ),
        None,
    )


def write_timed_record(path: Path, rec: dict, t0: float) -> dict:
    """Add the seconds since ``t0``, the environment and the time, and write ``rec`` atomically."""
    import torch

    from . import records

    rec.update(
        seconds=time.perf_counter() - t0,
        environment=records.environment("cpu", torch.get_num_threads()),
        created=records.now(),
    )
    records.atomic_write_json(path, rec)
    return rec


def run_keys(results, profile: str, run_id: str | None) -> dict:
    """The group columns of a run (:func:`qrnn.study.tables.config_keys`: hidden size, budget,
    setting) from its ``run.json``; unknown (NaN, empty setting) without a record."""
    path = runs_dir(results, profile) / str(run_id) / "run.json"
    cfg = json.loads(path.read_text()).get("config") if run_id and path.exists() else None
    keys = config_keys(cfg)
    keys.pop("twin")
    return keys


def _paired_gains(ptq):
    """Per group (:data:`qrnn.study.verdicts.GROUP`): the paired gain ``ptq - trained`` over seeds,
    its interval and the verdict of quantizing during training against afterwards (see
    :func:`summarize_ptq`)."""
    import pandas as pd

    from .verdicts import MARGINS, group_verdict, interval

    rows = []
    for key, g in ptq.groupby(GROUP, sort=False, dropna=False):
        gain = interval(g["test"] - g["trained_test"])
        margin = MARGINS.get(g["metric"].iloc[0], 0.0)
        verdict = group_verdict(-gain["hi"], -gain["lo"], margin, n=gain["n"])
        rows.append({**dict(zip(GROUP, key, strict=True)), "gain": gain["mean"],
                     "gain_lo": gain["lo"], "gain_hi": gain["hi"], "n_paired": gain["n"],
                     "verdict": verdict})  # fmt: skip
    return pd.DataFrame(rows)


def summarize_ptq(profile: str = "cpu", results: str | Path = "results"):
    """``ptq.csv``: post-training vs training-time quantization per group (the float run's
    experiment, task, cell, hidden size, budget and setting, and the method; means over
    seeds). ``gain`` is ``ptq - trained`` in the metric's units (lower is better
    for both metrics, so positive: quantizing during training beats quantizing afterwards),
    paired per seed (a post-training record against the run trained with its seed) and
    averaged over the ``n_paired`` seeds that have both; ``gain_lo`` / ``gain_hi`` are its
    Student-t 95% interval over those seeds (:func:`qrnn.study.verdicts.interval`; NaN with fewer
    than two). ``verdict`` decides the comparison on that interval, from the side of quantizing
    during training (:func:`qrnn.study.verdicts.group_verdict` on ``trained - ptq`` with the
    metric's margin): ``better`` (the interval of the gain lies above 0), ``worse`` (below 0),
    ``similar`` (inside +-margin) or ``inconclusive`` (otherwise, or ``n_paired < 2``).
    ``recovered`` is the share of the post-training loss that training wins back,
    ``gain / (ptq - float)``; it is only defined where post-training quantization loses
    accuracy (``ptq > float``): elsewhere there is nothing to recover and it is NaN, so its sign
    always means the same (1: all of the loss, above 1: better than float, below 0: worse than
    quantizing afterwards)."""
    import pandas as pd

    from .records import atomic_write_bytes

    rows = [json.loads(p.read_text()) for p in sorted(
        (Path(results) / profile / "ptq").glob("*/*.json"))]  # fmt: skip
    if not rows:
        raise ValueError(f"no post-training records under {Path(results) / profile / 'ptq'}")
    ptq = pd.DataFrame(rows)
    trained = {}
    for r in rows:
        if r["trained_run_id"] is None:
            continue
        rec = runs_dir(results, profile) / r["trained_run_id"] / "run.json"
        if rec.exists():
            d = json.loads(rec.read_text())
            trained[r["trained_run_id"]] = d["test"]["metric"] if d["test"] else math.nan
    ptq["trained_test"] = ptq["trained_run_id"].map(trained)
    keys = [run_keys(results, profile, r) for r in ptq["float_run_id"]]
    for col in ("hidden", "max_epochs", "train_limit", "setting"):
        ptq[col] = [k[col] for k in keys]
    table = (
        ptq.groupby(GROUP, sort=False, dropna=False)
        .agg(
            metric=("metric", "first"),
            float_test=("float_test", "mean"),
            ptq_test=("test", "mean"),
            trained_test=("trained_test", "mean"),
            n=("test", "count"),
        )
        .reset_index()
    )
    gains = _paired_gains(ptq)
    table = table.merge(gains, on=GROUP, how="left")
    loss = table["ptq_test"] - table["float_test"]
    table["recovered"] = (table["gain"] / loss).where(loss > 0)
    atomic_write_bytes(Path(results) / profile / "ptq.csv", table.to_csv(index=False).encode())
    return table
