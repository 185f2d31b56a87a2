"""Named settings for ``notebooks/train.ipynb`` and a run-time estimate made before training.

A notebook parameter left at ``None`` takes the preset's value, else RunConfig's default:

* ``class``: a PTB-char run sized for a lesson (about a minute on a 2-core CPU);
* ``study``: the ``cpu`` study profile's setting for the same task (its first experiment
  with that task: the main one);
* ``none``: RunConfig's defaults.

The study passes every field explicitly, so the preset never changes its runs.

Part of ``qrnn``, the library and study after Ott et al. 2016, *Recurrent Neural Networks With
Limited Numerical Precision*, https://arxiv.org/abs/1608.06902.
"""

from __future__ import annotations

import dataclasses
import math
import time
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import pandas as pd
import torch

from .train import LM_TASKS, RunConfig, build_model, load_data, resolve_device

PRESETS = ("class", "study", "none")
# the train notebook's parameters besides RunConfig's fields
NOTEBOOK_SETTINGS = ("preset", "results_dir", "data_root", "quiet", "histograms")

# first 200k training characters (of 5.0M), 20k for validation and test; an LSTM with 128
# units learns visibly in 8 epochs of 32 batches. One thread: on a busy 2-core machine 2
# threads ran 3x slower than 1 (0.36-0.48 s against 0.15 s a batch), idle about 1.3x faster.
CLASS = {
    "task": "ptb-char",
    "hidden": 128,
    "bptt": 100,
    "batch_size": 64,
    "epochs": 8,
    "train_limit": 200_000,
    "eval_limit": 20_000,
    "early_stop": 0,
    "threads": 1,
}


def preset(name: str, task: str = "ptb-char", split: str = "standard") -> dict[str, Any]:
    """The RunConfig fields preset ``name`` sets (``study``: its setting for ``task``)."""
    if name not in PRESETS:
        raise ValueError(f"preset={name!r} is not allowed; choose one of {', '.join(PRESETS)}")
    if name == "class":
        return dict(CLASS)
    if name == "none":
        return {}
    from . import TASKS, experiments

    label = "fsdd-speakers" if task == "fsdd" and split == "speakers" else task
    exps = experiments("cpu")
    first = next((e for e in exps if label in e.tasks), None)  # its main setting
    if first is None:
        known = sorted({t for e in exps for t in e.tasks})
        raise ValueError(f"the cpu study has no {label} setting; it has {', '.join(known)}")
    return {**TASKS[label], **first.tasks[label]}


def refuse_unknown(names) -> None:
    """Refuse notebook parameter names the train notebook does not have (papermill only warns
    and the run would train with the default), naming the allowed ones."""
    import difflib

    allowed = [*NOTEBOOK_SETTINGS, *(f.name for f in dataclasses.fields(RunConfig))]
    unknown = sorted(n for n in names if not n.startswith("_") and n not in allowed)
    if unknown:
        guess = {n: difflib.get_close_matches(n, allowed, n=1) for n in unknown}
        named = ", ".join(n + (f" (did you mean {guess[n][0]}?)" if guess[n] else "")
                          for n in unknown)  # fmt: skip
        raise ValueError(f"unknown parameter {named}; the parameters are {', '.join(allowed)}")


def _dict_field(name: str, value: Any) -> Any:
    """A dict parameter given as a JSON string (papermill ``-p name '{...}'``) as a dict."""
    if not isinstance(value, str):
        return value
    import json

    try:
        out = json.loads(value)
    except ValueError:
        out = None
    if not isinstance(out, dict):
        example = """'{"scale": "glorot"}'"""
        raise ValueError(
            f"{name}={value!r} is not a JSON object; pass e.g. -p {name} {example} or "
            f"-y '{name}: {{scale: glorot}}'"
        )
    return out


def config_from(values: Mapping[str, Any], name: str = "none") -> tuple[RunConfig, list[str]]:
    """A RunConfig from notebook parameters: ``None`` values take preset ``name``'s value, or
    RunConfig's default; a dict field may be given as a JSON string. Also returns the fields
    the preset filled."""
    fields = {f.name: f for f in dataclasses.fields(RunConfig)}
    unknown = set(values) - set(fields)
    if unknown:
        raise ValueError(f"not RunConfig fields: {', '.join(sorted(unknown))}")
    given = {k: v for k, v in values.items() if v is not None}
    for k in given:
        if fields[k].type in ("dict", dict):
            given[k] = _dict_field(k, given[k])
    where = {k: given[k] for k in ("task", "split") if k in given}
    fill = {k: v for k, v in preset(name, **where).items() if k not in given}
    return RunConfig(**{**fill, **given}), sorted(fill)


def _timed(fn, repeats: int) -> float:
    """The fastest of ``repeats`` calls, after one untimed warm-up call."""
    fn()
    best = math.inf
    for _ in range(repeats):
        t0 = time.perf_counter()
        fn()
        best = min(best, time.perf_counter() - t0)
    return best


def estimate(cfg: RunConfig, data=None, data_root=None, batches: int = 3) -> dict[str, Any]:
    """Time ``batches`` training and evaluation batches of a throwaway model and scale them to
    the whole run (every epoch: train + validation; then the test split). An upper bound when
    early stopping ends the run sooner. ``data``: splits from :func:`qrnn.study.train.load_data`."""
    from .assemble import subset
    from .loop import lm_epoch, num_batches, speech_epoch

    if data is None:
        data = load_data(cfg, data_root, progress=False)
    if cfg.threads:
        torch.set_num_threads(cfg.threads)
    rng = torch.get_rng_state()
    device = resolve_device(cfg.device)
    model = build_model(cfg, data.size).to(device)
    opt = torch.optim.Adam(model.parameters(), lr=cfg.lr)
    if cfg.task in LM_TASKS:
        part = data.train[: batches * cfg.bptt * cfg.batch_size + 1]
        epoch = lm_epoch
    else:
        part = subset(data.train, batches * cfg.batch_size)
        epoch = speech_epoch
    step = _timed(lambda: epoch(model, part, cfg, device, opt), 2) / batches
    ev = _timed(lambda: epoch(model, part, cfg, device), 2) / batches
    torch.set_rng_state(rng)
    n = {s: num_batches(cfg, getattr(data, s)) for s in ("train", "valid", "test")}
    per_epoch = n["train"] * step + n["valid"] * ev
    return {
        "seconds": cfg.epochs * per_epoch + n["test"] * ev,
        "epoch_seconds": per_epoch,
        "train_batch_s": step,
        "eval_batch_s": ev,
        "batches": n,
        "epochs": cfg.epochs,
        "threads": torch.get_num_threads(),
    }


def describe(est: Mapping[str, Any]) -> str:
    """One line for the notebook: the estimate and where it comes from."""
    n = est["batches"]
    return (
        f"estimated training time: about {est['seconds']:.0f} s ({est['epochs']} epochs x "
        f"{n['train']} training + {n['valid']} validation batches, {est['train_batch_s'] * 1e3:.0f}"
        f" ms per training batch on {est['threads']} thread{'s' * (est['threads'] != 1)}; early"
        " stopping can end it sooner)"
    )


def results_path(results_dir: str | Path) -> Path:
    """``results_dir`` with a relative path taken from the repository root (a notebook's
    kernel runs in ``notebooks/`` under JupyterLab, in the root under papermill ``--cwd .``)."""
    from . import ROOT

    p = Path(results_dir)
    return p if p.is_absolute() else ROOT / p


METHOD_FIELDS = ("scheme", "stochastic", "quantizer_options", "weight_noise")


def method_label(config: Mapping[str, Any]) -> str:
    """The study's method labels: ``float``, ``binary-det``, ``ternary-stoch``, with options
    off their defaults inserted (``binary-glorot-det``), ``float-noise-binary``."""
    from ..quantizers import quantizer

    scheme, noise = config["scheme"], config.get("weight_noise", "none")
    if scheme == "float":
        return "float" if noise == "none" else f"float-noise-{noise}"
    default = quantizer(scheme).options
    opts = config.get("quantizer_options") or {}
    parts = [scheme, *(str(v) for k, v in sorted(opts.items()) if default.get(k) != v)]
    return "-".join([*parts, "stoch" if config["stochastic"] else "det"])


def method_curves(results_dir: str | Path, cfg: RunConfig) -> pd.DataFrame:
    """Validation curves (method, run_id, epoch, valid_metric) of the completed or diverged
    records under ``results_dir`` whose configuration equals ``cfg`` but for the method."""
    from .config import EXECUTION_FIELDS, LATER_FIELDS
    from .records import load_record

    skip = {*METHOD_FIELDS, *EXECUTION_FIELDS}  # and the run's id, not a field
    want = {k: v for k, v in cfg.resolved().items() if k not in skip}
    rows = []
    for path in sorted(Path(results_dir).glob("*/run.json")):
        try:
            rec = load_record(path)
        except (ValueError, OSError):
            continue
        conf = rec["config"]
        same = all(conf.get(k, LATER_FIELDS.get(k)) == v for k, v in want.items())
        if not same or rec["status"] not in ("completed", "diverged"):
            continue
        rows += [
            (method_label(conf), rec["run_id"], e["epoch"], e["valid_metric"])
            for e in rec["epochs"]
        ]
    return pd.DataFrame(rows, columns=["method", "run_id", "epoch", "valid_metric"])
