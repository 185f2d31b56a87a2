"""Training and evaluation: one :class:`RunConfig` in, one run record out.

``train(config)`` trains a language model (``ptb-char``, ``ptb-word``, ``text8``) or a
spoken-digit classifier (``fsdd``), checkpoints every epoch (atomic writes), resumes a killed
run exactly, stops a diverging run cleanly, and writes ``results/<run-id>/run.json``
(schema in :mod:`qrnn.study.records`). The model tested is the best-validation one; evaluation
always uses deterministic quantization. Ott et al. 2016, *Recurrent Neural Networks With
Limited Numerical Precision*, https://arxiv.org/abs/1608.06902.

:func:`train` reads as the steps of a run, each a function below it: resolve the run id and
its files, return a finished record as is, load the data, build the model and its optimizer,
open the record, resume from the last checkpoint, loop over the epochs (train, validate,
record, checkpoint), test the best model, pack it and close the record.

The configuration lives in :mod:`qrnn.study.config`, the data and model of a run in
:mod:`qrnn.study.assemble`, epochs and steps in :mod:`qrnn.study.loop`, what the end of a run
says of it in :mod:`qrnn.study.outcome`; the names their callers use stay importable from here.
"""

from __future__ import annotations

import contextlib
import math
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, NamedTuple

import torch
from torch import nn

from ..layers import QuantIO, QuantRNNBase
from . import records
from .assemble import RunData as RunData
from .assemble import baseline_metric, model_summary, weight_stats
from .assemble import build_model as build_model
from .assemble import load_data as load_data
from .checkpoint import load_checkpoint, rng_state, set_rng_state
from .config import FIELD_HELP as FIELD_HELP
from .config import INITS as INITS
from .config import LM_TASKS as LM_TASKS
from .config import RunConfig as RunConfig
from .config import config_from_dict as config_from_dict
from .config import derive_seeds, identity
from .config import resolve_device as resolve_device
from .config import run_id as run_id
from .loop import (
    DIVERGENCE_RULE,
    Diverged,
    LossMonitor,
    lm_epoch,
    lm_metric,
    num_batches,
    speech_epoch,
    uniform_loss,
)
from .loop import evaluate as evaluate
from .outcome import convergence as convergence
from .outcome import keep_packed, learned
from .outcome import remeasure_packed as remeasure_packed

__all__ = ["RunConfig", "build_model", "evaluate", "load_data", "run_id", "train"]


# ---------------------------------------------------------------------------- the run
def train(
    cfg: RunConfig,
    results_dir: str | Path = "results",
    *,
    quiet: bool = False,
    invocation: Any = None,
    force: bool = False,
    data_root: str | None = None,
    data: RunData | None = None,
    callback: Callable[[int, int], None] | None = None,
) -> dict:
    """Train ``cfg`` and return its run record (also written to ``results_dir/<run-id>/``).

    A completed or diverged record with the same id is returned as is (``force=True`` redoes
    it). A run interrupted at any point resumes from its last epoch checkpoint and ends with
    the same metrics as an uninterrupted run (CPU); a checkpoint that cannot be read is set
    aside (renamed ``checkpoint.pt.corrupt-<time>``) and the run starts again with a warning.
    A diverging run (:data:`~qrnn.study.loop.DIVERGENCE_RULE`) stops cleanly with
    ``status="diverged"`` and still reports the test metric of its best checkpoint when it has
    one; any other exception is recorded as ``status="failed"`` and re-raised. ``data``: the
    splits to use instead of loading ``cfg.task`` (tests; see :func:`load_data`).
    ``callback(epoch, batch)`` runs after every training batch (progress hooks, tests). The
    best model is also kept packed at its true bit width (``model.npz``, :mod:`qrnn.export`),
    named in the record with its sha256.
    """
    files = _resolve(cfg, results_dir)
    finished = _finished_record(cfg, files, force)
    if finished is not None:
        return finished
    device, seeds = _settle(cfg)
    data, load_s = _load(cfg, data, data_root, quiet)
    run = _build(cfg, data, device, seeds, callback)
    rec = _open_record(run, files.run_id, data, load_s, invocation)
    _resume(run, rec, files.checkpoint)
    records.atomic_write_json(files.record, rec)
    _run_epochs(run, rec, files, data, quiet)
    _test_best(run, rec, files, data)
    return _close_record(rec, files)


class _Files(NamedTuple):
    """A run's id and the files of its folder: the record, the epoch checkpoint (removed once
    the run ends) and the best weights."""

    run_id: str
    dir: Path
    record: Path
    checkpoint: Path
    best: Path


@dataclass
class _Run:
    """What a run trains and carries from epoch to epoch: the model, its optimizer and
    learning-rate schedule, the random generators, the divergence monitor and the early-stop
    bookkeeping (best validation metric, epochs since it, the epoch to start from)."""

    cfg: RunConfig
    device: torch.device
    seeds: dict[str, int]
    model: nn.Module
    opt: torch.optim.Optimizer
    sched: Any
    gens: dict[str, torch.Generator]
    steps_per_epoch: int
    uniform: float
    monitor: LossMonitor
    callback: Callable[[int, int], None] | None
    best_metric: float = math.inf
    stale: int = 0
    start_epoch: int = 1


# ------------------------------------------------------------------- before the first epoch
def _resolve(cfg: RunConfig, results_dir: str | Path) -> _Files:
    """The run id of ``cfg`` and the paths of its folder under ``results_dir``."""
    rid = run_id(cfg)
    run_dir = Path(results_dir) / rid
    return _Files(
        rid, run_dir, run_dir / "run.json", run_dir / "checkpoint.pt", run_dir / "model.pt"
    )


def _finished_record(cfg: RunConfig, files: _Files, force: bool) -> dict | None:
    """The completed or diverged record of the same configuration, to return as is; None
    when the run is to be done (``force`` also removes its old checkpoint and best weights)."""
    if files.record.exists() and not force:
        with contextlib.suppress(ValueError, FileNotFoundError):
            old = records.load_record(files.record)
            same = identity(old["config"]) == identity(cfg.resolved())
            if old["status"] in ("completed", "diverged") and same:
                return old
    if force:
        for p in (files.checkpoint, files.best):
            p.unlink(missing_ok=True)
    return None


def _settle(cfg: RunConfig) -> tuple[torch.device, dict[str, int]]:
    """The device the run uses and its seeds; sets torch's thread count when ``cfg`` has one."""
    device = resolve_device(cfg.device)
    if cfg.threads:
        torch.set_num_threads(cfg.threads)
    return device, derive_seeds(cfg.seed)


def _load(
    cfg: RunConfig, data: RunData | None, data_root: str | None, quiet: bool
) -> tuple[RunData, float]:
    """The run's splits (``data`` when given, else loaded) and the seconds loading took."""
    t_load = time.perf_counter()
    if data is None:
        data = load_data(cfg, data_root, progress=not quiet)
    return data, time.perf_counter() - t_load


def _build(cfg: RunConfig, data: RunData, device, seeds: dict, callback) -> _Run:
    """The model (initialized from the ``init`` seed), its generators for stochastic
    quantization and data order, the optimizer, the learning-rate schedule and the monitor."""
    torch.manual_seed(seeds["init"])  # init and dropout
    model = build_model(cfg, data.size).to(device)
    quant_gen = torch.Generator(device=device).manual_seed(seeds["quant"])
    data_gen = torch.Generator().manual_seed(seeds["data"])
    for m in model.modules():
        if isinstance(m, QuantRNNBase | QuantIO):
            m.generator = quant_gen
    if cfg.optimizer == "adam":
        opt = torch.optim.Adam(model.parameters(), lr=cfg.lr, weight_decay=cfg.weight_decay)
    else:
        opt = torch.optim.SGD(model.parameters(), lr=cfg.lr, weight_decay=cfg.weight_decay)
    steps_per_epoch = num_batches(cfg, data.train)
    sched = _scheduler(cfg, opt, cfg.epochs * steps_per_epoch)
    uniform = uniform_loss(cfg, data.size)
    return _Run(cfg=cfg, device=device, seeds=seeds, model=model, opt=opt, sched=sched,
                gens={"quant": quant_gen, "data": data_gen}, steps_per_epoch=steps_per_epoch,
                uniform=uniform, monitor=LossMonitor(limit=uniform * cfg.diverge_factor),
                callback=_stepping_callback(cfg, sched, callback))  # fmt: skip


def _scheduler(cfg: RunConfig, opt, total_steps: int):
    """``plateau``: multiply the lr by ``lr_decay`` after ``lr_patience`` epochs without a new
    best validation metric (stepped once an epoch). ``cosine``: stepped after every optimizer
    step, lr(t) = min_lr + (lr - min_lr) (1 + cos(pi t / T)) / 2 over the T steps of
    ``epochs`` epochs (Loshchilov & Hutter 2017, without restarts)."""
    if cfg.lr_schedule == "plateau":
        return torch.optim.lr_scheduler.ReduceLROnPlateau(
            opt, mode="min", factor=cfg.lr_decay, patience=cfg.lr_patience, min_lr=cfg.min_lr
        )
    floor = min(cfg.min_lr / cfg.lr, 1.0)

    def factor(t: int) -> float:
        return floor + (1.0 - floor) * 0.5 * (
            1.0 + math.cos(math.pi * min(t, total_steps) / total_steps)
        )

    return torch.optim.lr_scheduler.LambdaLR(opt, factor)


def _stepping_callback(cfg: RunConfig, sched, callback):
    """The hook run after every training batch: ``callback`` itself, or under the cosine
    schedule one scheduler step after every optimizer step, then ``callback``."""
    if cfg.lr_schedule != "cosine":
        return callback

    def step_then_callback(epoch: int, batch: int) -> None:
        sched.step()
        if callback is not None:
            callback(epoch, batch)

    return step_then_callback


def _open_record(run: _Run, rid: str, data: RunData, load_s: float, invocation) -> dict:
    """The record of a run that starts: its configuration, model, seeds, environment, data
    and baseline, no epoch yet (``status="running"``)."""
    cfg = run.cfg
    return {
        "schema": records.SCHEMA,
        "run_id": rid,
        "status": "running",
        "config": cfg.resolved(),
        "metric": {"name": cfg.metric_name, "lower_is_better": True},
        "epochs": [],
        "best_epoch": None,
        "test": None,
        "diverged": None,
        "divergence_rule": DIVERGENCE_RULE,
        "error": None,
        "model": model_summary(run.model, data.size),
        "weights_init": weight_stats(run.model),
        "seeds": run.seeds,
        "environment": records.environment(run.device, torch.get_num_threads()),
        "data": data.stats,
        "invocation": invocation if invocation is not None else {"argv": sys.argv},
        "started": records.now(),
        "finished": None,
        "wall_time_s": 0.0,
        "data_load_s": load_s,
        "uniform_loss": run.uniform,
        "baseline": baseline_metric(cfg, data),
    }


def _resume(run: _Run, rec: dict, path: Path) -> None:
    """Continue from the checkpoint at ``path`` when there is a readable one: the weights,
    optimizer, schedule and random states, the epochs so far and the early-stop bookkeeping."""
    ck = load_checkpoint(path, run.device, stacklevel=3)  # warns at the caller of train()
    if ck is None:
        return
    run.model.load_state_dict(ck["model"])
    run.opt.load_state_dict(ck["optimizer"])
    run.sched.load_state_dict(ck["scheduler"])
    set_rng_state(ck["rng"], run.gens)
    rec["epochs"], rec["best_epoch"] = ck["epochs"], ck["best_epoch"]
    rec["started"], rec["wall_time_s"] = ck["started"], ck["wall_time_s"]
    run.best_metric, run.stale, run.start_epoch = ck["best_metric"], ck["stale"], ck["epoch"] + 1
    run.monitor.value = ck.get("monitor")
    rec["resumed_from_epoch"] = ck["epoch"]


# ---------------------------------------------------------------------------- the epochs
def _run_epochs(run: _Run, rec: dict, files: _Files, data: RunData, quiet: bool) -> None:
    """Train the remaining epochs and set how the run ended: ``completed``; ``diverged`` (the
    epoch, batch, reason and last losses); or ``failed``, recorded, and the error re-raised."""
    try:
        _epochs(run, rec, files, data, quiet)
        rec["status"] = "completed"
    except Diverged as d:
        epoch_no = len(rec["epochs"]) + (0 if d.batch is None else 1)
        rec["status"] = "diverged"
        rec["diverged"] = {
            "epoch": epoch_no,
            "batch": d.batch,
            "reason": d.reason,
            **run.monitor.trail(),
        }
    except Exception as e:
        rec["status"] = "failed"
        rec["error"] = f"{type(e).__name__}: {e}"
        rec["finished"] = records.now()
        records.atomic_write_json(files.record, rec)
        raise


def _epochs(run: _Run, rec: dict, files: _Files, data: RunData, quiet: bool) -> None:
    """From the start epoch to the last, unless early stopping ends it sooner: train and
    validate, keep the best weights, step the plateau schedule, checkpoint, write the record."""
    cfg = run.cfg
    for epoch in range(run.start_epoch, cfg.epochs + 1):
        if cfg.early_stop and run.stale >= cfg.early_stop:
            break
        entry, valid = _epoch(run, data, epoch, quiet)
        rec["epochs"].append(entry)
        rec["wall_time_s"] += entry["wall_s"]
        _keep_best(run, rec, files.best, epoch, valid["metric"])
        if cfg.lr_schedule == "plateau":
            run.sched.step(valid["metric"])
        records.atomic_torch_save(files.checkpoint, _checkpoint(run, rec, epoch))
        records.atomic_write_json(files.record, rec)
        if not quiet:
            print(_epoch_line(cfg, entry), file=sys.stderr, flush=True)


def _epoch(run: _Run, data: RunData, epoch: int, quiet: bool) -> tuple[dict, dict]:
    """One epoch of training (a progress bar over its batches unless quiet), then validation:
    the epoch's entry in the record, and the validation result."""
    from tqdm import tqdm  # not tqdm.auto: no widget warning inside notebooks

    cfg = run.cfg
    t0 = time.perf_counter()
    lr_start = run.opt.param_groups[0]["lr"]
    with tqdm(total=run.steps_per_epoch, desc=f"epoch {epoch}/{cfg.epochs}", disable=quiet,
              leave=False, unit="batch") as bar:  # fmt: skip
        tr_loss, tr_acc = _train_epoch(run, data, epoch, bar)
    valid = evaluate(run.model, data.valid, cfg, run.device)
    lr = run.opt.param_groups[0]["lr"]
    wall = time.perf_counter() - t0
    entry = {
        "epoch": epoch,
        "train_loss": tr_loss,
        "train_metric": lm_metric(cfg, tr_loss) if tr_acc is None else 1.0 - tr_acc,
        "valid_loss": valid["loss"],
        "valid_metric": valid["metric"],
        "lr": lr,  # at the end of the epoch
        "lr_start": lr_start,
        "wall_s": wall,
        "steps": epoch * run.steps_per_epoch,
        "weights": weight_stats(run.model),
        "grad_norm": run.monitor.grad_summary(),  # before clipping (clip_grad)
    }
    if "accuracy" in valid:
        entry["valid_accuracy"] = valid["accuracy"]
    return entry, valid


def _train_epoch(run: _Run, data: RunData, epoch: int, bar) -> tuple[float, float | None]:
    """One pass over the training split, one optimizer step a batch: the mean loss and, for
    the digits, the accuracy (None for a language model)."""
    args = (run.model, data.train, run.cfg, run.device, run.opt, bar, run.callback, epoch)
    if run.cfg.task in LM_TASKS:
        return lm_epoch(*args, monitor=run.monitor)
    return speech_epoch(*args, monitor=run.monitor, generator=run.gens["data"])


def _keep_best(run: _Run, rec: dict, best_path: Path, epoch: int, metric: float) -> None:
    """Save the weights when ``metric`` is a new best validation metric; else count the epoch
    as one more without improvement (early stopping)."""
    if math.isfinite(metric) and metric < run.best_metric:
        run.best_metric, run.stale, rec["best_epoch"] = metric, 0, epoch
        records.atomic_torch_save(best_path, run.model.state_dict())
    else:
        run.stale += 1


def _checkpoint(run: _Run, rec: dict, epoch: int) -> dict:
    """Everything a resumed run needs to go on exactly as if never stopped after ``epoch``."""
    return {
        "epoch": epoch,
        "model": run.model.state_dict(),
        "optimizer": run.opt.state_dict(),
        "scheduler": run.sched.state_dict(),
        "rng": rng_state(run.gens),
        "epochs": rec["epochs"],
        "best_epoch": rec["best_epoch"],
        "best_metric": run.best_metric,
        "stale": run.stale,
        "monitor": run.monitor.value,
        "started": rec["started"],
        "wall_time_s": rec["wall_time_s"],
    }


def _epoch_line(cfg, e: dict) -> str:
    """The line printed after each epoch (unless quiet)."""
    name = cfg.metric_name
    return (
        f"epoch {e['epoch']:3d}  train {name} {e['train_metric']:.4f}  "
        f"valid {name} {e['valid_metric']:.4f}  lr {e['lr']:.2g}  {e['wall_s']:.1f}s"
    )


# ---------------------------------------------------------------------------- the end
def _test_best(run: _Run, rec: dict, files: _Files, data: RunData) -> None:
    """Test the best-validation weights, when the run saved any, and keep them packed."""
    if files.best.exists() and rec["best_epoch"] is not None:
        state = torch.load(files.best, map_location=run.device, weights_only=True)
        run.model.load_state_dict(state)
        rec["test"] = evaluate(run.model, data.test, run.cfg, run.device)
        rec["packed"] = keep_packed(run.model, files.dir, rec, data, run.cfg)


def _close_record(rec: dict, files: _Files) -> dict:
    """Judge the run (:func:`convergence`, :func:`learned`), write its final record and remove
    the checkpoint: the record, the best weights and the packed file remain."""
    rec["convergence"] = convergence(rec)
    rec["learned"] = None if rec["test"] is None else learned(rec)
    rec["finished"] = records.now()
    records.atomic_write_json(files.record, rec)
    files.checkpoint.unlink(missing_ok=True)
    return rec
