"""The noise-through-time study (``qrnn noise``): :func:`noise_study` runs
:func:`qrnn.analysis.noisetime.noise_through_time` on the models of every method and writes
its tables under ``results/analysis``. The measurement itself, with its modes and equations,
is :mod:`qrnn.analysis.noisetime`. Claim 5 of Ott et al. 2016,
*Recurrent Neural Networks With Limited Numerical Precision*, https://arxiv.org/abs/1608.06902.
"""

from __future__ import annotations

import json
import time
from collections.abc import Iterable
from pathlib import Path
from typing import Any

import pandas as pd
import torch

from ..analysis import noisetime
from ..analysis import report as analysis
from ..analysis.noisetime import MODES as MODES
from ..analysis.noisetime import Dynamics as Dynamics
from ..analysis.noisetime import NoiseResult as NoiseResult
from ..analysis.noisetime import deviation_summary as deviation_summary
from ..analysis.noisetime import draw_generator as draw_generator
from ..analysis.noisetime import draw_path as draw_path
from ..analysis.noisetime import draw_quantiles as draw_quantiles
from ..analysis.noisetime import drawn_weights as drawn_weights
from ..analysis.noisetime import layer_dynamics as layer_dynamics
from ..analysis.noisetime import mean_weights as mean_weights
from ..analysis.noisetime import noise_through_time as noise_through_time

__all__ = sorted([*noisetime.__all__, "noise_study"])


# ------------------------------------------------------------------------------ driver
def _tag(source: str | Path) -> str:
    return "init" if str(source) == "init" else Path(source).name


def _drop_packed_only(models: dict, origin: dict, source: str | Path) -> None:
    """Drop (in place) the stochastic methods whose run keeps only its packed model: a draw
    needs the shadow weights ``W`` of ``model.pt`` (a draw of ``W_q`` equals ``W_q``)."""
    from . import runs

    runs_folder = runs.runs_folder(source)
    for label in list(models):
        stochastic = analysis.get_method(label).stochastic
        if stochastic and not (runs_folder / origin[label] / "model.pt").exists():
            print(
                f"noise_study: {label} skipped, run {origin[label]} keeps only its packed "
                "model (quantized weights, no shadow weights: every draw would equal the "
                "deterministic weights)"
            )
            del models[label]
            origin[label] = "packed-only"


def _load_models(task, cell, methods, source, seq, hidden, seed, config) -> tuple[dict, dict]:
    """``({method: model}, {method: origin})`` from :func:`qrnn.study.runs.load_models` for
    ``seq``'s vocabulary; no models (with a message) when ``source`` has no usable run."""
    from . import runs

    try:
        models, origin = runs.load_models(
            task, cell, methods, str(source), size=seq.size, hidden=hidden, seed=seed, **config
        )
    except FileNotFoundError as e:
        print(f"noise_study: skipped, {e}")
        return {}, {}
    if str(source) != "init":  # a stochastic draw needs the shadow weights of model.pt
        _drop_packed_only(models, origin, source)
    if not models:
        print(f"noise_study: skipped, no trained run in {source} for {', '.join(methods)}")
    return models, origin


def _measure(models, origin, seq, draws, seed, modes, jacobian_modes) -> tuple[dict, dict]:
    """:func:`noise_through_time` on layer 0 of each model over ``seq``: its frames
    (``dev``, ``jac``, ``spec``, ``prod``: lists, one frame per method, tagged with method and
    origin) and the wall time per method (s)."""
    frames: dict[str, list[pd.DataFrame]] = {k: [] for k in ("dev", "jac", "spec", "prod")}
    timing = {}
    for label, model in models.items():
        t0 = time.time()
        x = analysis.layer_input(model, seq.raw)
        r = noise_through_time(
            analysis.recurrent_layer(model),
            x,
            draws,
            seed,
            modes=modes,
            jacobian_modes=jacobian_modes,
        )
        tags = {"method": label, "origin": origin[label]}
        frames["dev"].append(r.deviation.assign(**tags))
        frames["jac"].append(r.jacobians.assign(**tags))
        frames["spec"].append(r.spectra.assign(**tags))
        frames["prod"].append(r.products.assign(**tags))
        timing[label] = round(time.time() - t0, 2)
        print(f"noise_study: {label} ({origin[label]}) {timing[label]} s", flush=True)
    return frames, timing


def _tables(frames: dict) -> dict[str, pd.DataFrame]:
    """The written tables of :func:`noise_study` from :func:`_measure`'s frames: ``summary``
    (:func:`deviation_summary`), ``jacobians`` (method and origin first), ``spectra`` and
    ``products`` (:func:`draw_quantiles`; empty without Jacobians)."""
    by = ["method", "origin"]
    dev = pd.concat(frames["dev"], ignore_index=True)
    jac = pd.concat(frames["jac"], ignore_index=True)
    summary = deviation_summary(dev, by)
    spectra = products = pd.DataFrame()
    if not jac.empty:
        spec = pd.concat(frames["spec"], ignore_index=True)
        prod = pd.concat(frames["prod"], ignore_index=True)
        spectra = draw_quantiles(spec, [*by, "mode", "rank"], "q50")
        products = draw_quantiles(prod, [*by, "mode", "k"], "log10_norm")
        jac = jac[[*by, *(c for c in jac.columns if c not in by)]]
    return {"summary": summary, "jacobians": jac, "spectra": spectra, "products": products}


def _settings(
    task, cell, hidden, draws, seq_len, methods, seed, source, modes, jacobian_modes, config
) -> dict[str, Any]:
    """The configuration as the record writes it (``source``: ``init`` or the folder's name)."""
    return {
        "task": task,
        "cell": cell,
        "hidden": hidden,
        "draws": draws,
        "seq_len": seq_len,
        "methods": methods,
        "seed": seed,
        "source": "init" if str(source) == "init" else _tag(source),
        "modes": list(modes),
        "jacobian_modes": list(jacobian_modes),
        "layer": 0,
        "config": config,
    }


def _stem(s: dict[str, Any]) -> str:
    """``noise_<task>_<cell>_<tag>_h<hidden>_T<seq_len>_K<draws>_s<seed>`` plus
    ``_<field><value>`` per ``config`` entry in name order, from :func:`_settings`."""
    stem = f"noise_{s['task']}_{s['cell']}_{s['source']}_h{s['hidden']}_T{s['seq_len']}"
    stem += f"_K{s['draws']}_s{s['seed']}"
    return stem + "".join(f"_{k}{v}" for k, v in sorted(s["config"].items()))  # _embed32_...


def _write_tables(folder: Path, stem: str, tables: dict[str, pd.DataFrame]) -> dict[str, Path]:
    """Write the tables as ``<stem>.csv`` and ``<stem>_<table>.csv`` (no Jacobian files when
    there are no Jacobians) in ``folder``; their paths and the record's (``meta``)."""
    folder.mkdir(parents=True, exist_ok=True)
    paths = {
        "summary": folder / f"{stem}.csv",
        "jacobians": folder / f"{stem}_jacobians.csv",
        "spectra": folder / f"{stem}_spectra.csv",
        "products": folder / f"{stem}_products.csv",
        "meta": folder / f"{stem}.json",
    }
    if tables["jacobians"].empty:  # no Jacobians asked for: no Jacobian files
        paths = {k: v for k, v in paths.items() if k in ("summary", "meta")}
    for key, path in paths.items():
        if key != "meta":
            tables[key].to_csv(path, index=False, float_format="%.6g")
    return paths


def _meta(settings: dict, seq, origin: dict, paths: dict, started: float, timing: dict) -> dict:
    """The JSON record (schema ``qrnn.noise/1``): configuration, sequence, origins, seeds,
    files, environment, git state and wall times."""
    from . import records

    threads = torch.get_num_threads()
    return {
        "schema": "qrnn.noise/1",
        "what": "noise through time (qrnn.study.noise.noise_study)",
        "config": settings,
        "sequence": {"task": seq.task, "description": seq.description, "steps": len(seq.raw)},
        "origin": origin,
        "seeds": {"seed": settings["seed"], "draws": "sha256('qrnn.noise/<seed>/<mode>/<draw>')"},
        "files": {k: p.name for k, p in paths.items() if k != "meta"},
        "environment": records.environment("cpu", threads),
        "git": records.git_state(),
        "started": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(started)),
        "wall_time_s": round(time.time() - started, 2),
        "method_wall_s": timing,
    }


def noise_study(
    task: str = "ptb-char",
    cell: str = "lstm",
    hidden: int = 128,
    draws: int = 32,
    seq_len: int = 100,
    methods: Iterable[str] | None = None,
    seed: int = 0,
    source: str | Path = "init",
    *,
    modes: Iterable[str] = MODES,
    jacobian_modes: Iterable[str] = ("fixed",),
    out: str | Path | None = None,
    data_root: str | None = None,
    config: dict[str, Any] | None = None,
) -> dict[str, Any] | None:
    """Run :func:`noise_through_time` on layer 0 of every method's model (``source="init"``:
    :func:`qrnn.study.runs.init_model`; a results folder / profile: the first matching trained
    run, methods without one skipped) over one validation sequence
    (:func:`qrnn.analysis.load_sequence`), and write the records to ``out`` (default
    ``results/analysis``) as ``noise_<task>_<cell>_<tag>_h<hidden>_T<seq_len>_K<draws>_s<seed>``
    plus ``_<field><value>`` per ``config`` entry in name order:

    * ``.csv``: :func:`deviation_summary` per (method, origin, mode, t);
    * ``_jacobians.csv``: the per-draw Jacobian rows, with method and origin;
    * ``_spectra.csv``: per (method, origin, mode, rank): :func:`draw_quantiles` of the per-draw
      median singular value (q50 over t);
    * ``_products.csv``: per (method, origin, mode, k): :func:`draw_quantiles` of log10_norm;
    * ``.json``: configuration, sequence, origins, seeds, environment, git state, wall time.

    Returns ``{"paths": {...}, "frames": {...}}``, or None (with a message) when ``source`` has
    no run records or none of the methods has a trained run.
    """
    from . import ROOT, records

    started = time.time()
    methods = list(analysis.METHODS if methods is None else methods)
    config = dict(config or {})
    seq = analysis.load_sequence(task, seq_len, seed, data_root)
    models, origin = _load_models(task, cell, methods, source, seq, hidden, seed, config)
    if not models:
        return None
    frames, timing = _measure(models, origin, seq, draws, seed, modes, jacobian_modes)
    tables = _tables(frames)
    settings = _settings(
        task, cell, hidden, draws, seq_len, methods, seed, source, modes, jacobian_modes, config
    )
    folder = Path(out) if out is not None else ROOT / "results" / "analysis"
    paths = _write_tables(folder, _stem(settings), tables)
    meta = _meta(settings, seq, origin, paths, started, timing)
    records.atomic_write_json(paths["meta"], json.loads(json.dumps(meta, default=str)))
    print("written:", ", ".join(p.name for p in paths.values()))
    return {"paths": paths, "frames": tables}
