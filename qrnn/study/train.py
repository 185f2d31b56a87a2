"""Training and evaluation: one :class:`RunConfig` in, one run record out.

``train(config)`` trains a language model (``ptb-char``, ``ptb-word``, ``text8``) or a
spoken-digit classifier (``fsdd``), checkpoints every epoch (atomic writes), resumes a killed
run exactly, stops a diverging run cleanly, and writes ``results/<run-id>/run.json``
(schema in :mod:`qrnn.study.records`). The model tested is the best-validation one; evaluation
always uses deterministic quantization. Ott et al. 2016, *Recurrent Neural Networks With
Limited Numerical Precision*, https://arxiv.org/abs/1608.06902.

The configuration lives in :mod:`qrnn.study.config`, the data and model of a run in
:mod:`qrnn.study.assemble`, epochs and steps in :mod:`qrnn.study.loop`; their names stay
importable from here.
"""

from __future__ import annotations

import contextlib
import hashlib
import math
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch
from torch import nn

from ..layers import QuantIO, QuantRNNBase
from . import records
from .assemble import RunData as RunData
from .assemble import baseline_metric as baseline_metric
from .assemble import build_model as build_model
from .assemble import load_data as load_data
from .assemble import model_summary as model_summary
from .assemble import subset as subset
from .assemble import weight_stats as weight_stats
from .config import EXECUTION_FIELDS as EXECUTION_FIELDS
from .config import FIELD_HELP as FIELD_HELP
from .config import INITS as INITS
from .config import LATER_FIELDS as LATER_FIELDS
from .config import LM_TASKS as LM_TASKS
from .config import TASKS as TASKS
from .config import WEIGHT_NOISE as WEIGHT_NOISE
from .config import RunConfig as RunConfig
from .config import config_from_dict as config_from_dict
from .config import derive_seeds as derive_seeds
from .config import identity as identity
from .config import resolve_device as resolve_device
from .config import run_id as run_id
from .loop import DIVERGENCE_RULE as DIVERGENCE_RULE
from .loop import Diverged as Diverged
from .loop import LossMonitor as LossMonitor
from .loop import evaluate as evaluate
from .loop import lm_epoch, lm_metric, num_batches, speech_epoch
from .loop import uniform_loss as uniform_loss

__all__ = ["TASKS", "RunConfig", "build_model", "evaluate", "run_id", "train"]


# ---------------------------------------------------------------------------- the run
def _rng_state(gens: dict[str, torch.Generator]) -> dict:
    st = {"torch": torch.get_rng_state(), **{k: g.get_state() for k, g in gens.items()}}
    if torch.cuda.is_available():
        st["cuda"] = torch.cuda.get_rng_state_all()
    return st


def _set_rng_state(st: dict, gens: dict[str, torch.Generator]) -> None:
    torch.set_rng_state(st["torch"])
    for k, g in gens.items():
        g.set_state(st[k])
    if "cuda" in st and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(st["cuda"])


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
    A diverging run (:data:`DIVERGENCE_RULE`) stops cleanly with ``status="diverged"`` and
    still reports the test metric of its best checkpoint when it has one; any other exception
    is recorded as ``status="failed"`` and re-raised. ``data``: the splits to use instead of
    loading ``cfg.task`` (tests; see :func:`load_data`). ``callback(epoch, batch)`` runs after
    every training batch (progress hooks, tests). The best model is also kept packed at its
    true bit width (``model.npz``, :mod:`qrnn.export`), named in the record with its sha256.
    """
    rid = run_id(cfg)
    run_dir = Path(results_dir) / rid
    rec_path, ckpt_path, best_path = (
        run_dir / "run.json",
        run_dir / "checkpoint.pt",
        run_dir / "model.pt",
    )
    if rec_path.exists() and not force:
        with contextlib.suppress(ValueError, FileNotFoundError):
            old = records.load_record(rec_path)
            same = identity(old["config"]) == identity(cfg.resolved())
            if old["status"] in ("completed", "diverged") and same:
                return old
    if force:
        for p in (ckpt_path, best_path):
            p.unlink(missing_ok=True)

    device = resolve_device(cfg.device)
    if cfg.threads:
        torch.set_num_threads(cfg.threads)
    seeds = derive_seeds(cfg.seed)
    t_load = time.perf_counter()
    if data is None:
        data = load_data(cfg, data_root, progress=not quiet)
    load_s = time.perf_counter() - t_load

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
    if cfg.lr_schedule == "cosine":  # one scheduler step after every optimizer step
        user_callback = callback

        def callback(epoch: int, batch: int) -> None:
            sched.step()
            if user_callback is not None:
                user_callback(epoch, batch)

    gens = {"quant": quant_gen, "data": data_gen}
    uniform = uniform_loss(cfg, data.size)
    monitor = LossMonitor(limit=uniform * cfg.diverge_factor)

    rec = {
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
        "model": model_summary(model, data.size),
        "weights_init": weight_stats(model),
        "seeds": seeds,
        "environment": records.environment(device, torch.get_num_threads()),
        "data": data.stats,
        "invocation": invocation if invocation is not None else {"argv": sys.argv},
        "started": records.now(),
        "finished": None,
        "wall_time_s": 0.0,
        "data_load_s": load_s,
        "uniform_loss": uniform,
        "baseline": baseline_metric(cfg, data),
    }
    best_metric, stale, start_epoch = math.inf, 0, 1
    ck = _load_checkpoint(ckpt_path, device, quiet)
    if ck is not None:  # resume
        model.load_state_dict(ck["model"])
        opt.load_state_dict(ck["optimizer"])
        sched.load_state_dict(ck["scheduler"])
        _set_rng_state(ck["rng"], gens)
        rec["epochs"], rec["best_epoch"] = ck["epochs"], ck["best_epoch"]
        rec["started"], rec["wall_time_s"] = ck["started"], ck["wall_time_s"]
        best_metric, stale, start_epoch = ck["best_metric"], ck["stale"], ck["epoch"] + 1
        monitor.value = ck.get("monitor")
        rec["resumed_from_epoch"] = ck["epoch"]
    records.atomic_write_json(rec_path, rec)

    run_epoch = lm_epoch if cfg.task in LM_TASKS else speech_epoch
    extra = {} if cfg.task in LM_TASKS else {"generator": data_gen}
    try:
        from tqdm import tqdm  # not tqdm.auto: no widget warning inside notebooks

        for epoch in range(start_epoch, cfg.epochs + 1):
            if cfg.early_stop and stale >= cfg.early_stop:
                break
            t0 = time.perf_counter()
            n_batches = steps_per_epoch
            lr_start = opt.param_groups[0]["lr"]
            with tqdm(
                total=n_batches,
                desc=f"epoch {epoch}/{cfg.epochs}",
                disable=quiet,
                leave=False,
                unit="batch",
            ) as bar:
                tr_loss, tr_acc = run_epoch(
                    model, data.train, cfg, device, opt, bar, callback, epoch, monitor=monitor,
                    **extra,
                )  # fmt: skip
            valid = evaluate(model, data.valid, cfg, device)
            lr = opt.param_groups[0]["lr"]
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
                "steps": epoch * n_batches,
                "weights": weight_stats(model),
                "grad_norm": monitor.grad_summary(),  # before clipping (clip_grad)
            }
            if "accuracy" in valid:
                entry["valid_accuracy"] = valid["accuracy"]
            rec["epochs"].append(entry)
            rec["wall_time_s"] += wall
            if math.isfinite(valid["metric"]) and valid["metric"] < best_metric:
                best_metric, stale, rec["best_epoch"] = valid["metric"], 0, epoch
                records.atomic_torch_save(best_path, model.state_dict())
            else:
                stale += 1
            if cfg.lr_schedule == "plateau":
                sched.step(valid["metric"])
            records.atomic_torch_save(
                ckpt_path,
                {
                    "epoch": epoch,
                    "model": model.state_dict(),
                    "optimizer": opt.state_dict(),
                    "scheduler": sched.state_dict(),
                    "rng": _rng_state(gens),
                    "epochs": rec["epochs"],
                    "best_epoch": rec["best_epoch"],
                    "best_metric": best_metric,
                    "stale": stale,
                    "monitor": monitor.value,
                    "started": rec["started"],
                    "wall_time_s": rec["wall_time_s"],
                },
            )
            records.atomic_write_json(rec_path, rec)
            if not quiet:
                print(_epoch_line(cfg, entry), file=sys.stderr, flush=True)
        rec["status"] = "completed"
    except Diverged as d:
        epoch_no = len(rec["epochs"]) + (0 if d.batch is None else 1)
        rec["status"] = "diverged"
        rec["diverged"] = {
            "epoch": epoch_no,
            "batch": d.batch,
            "reason": d.reason,
            **monitor.trail(),
        }
    except Exception as e:
        rec["status"] = "failed"
        rec["error"] = f"{type(e).__name__}: {e}"
        rec["finished"] = records.now()
        records.atomic_write_json(rec_path, rec)
        raise
    if best_path.exists() and rec["best_epoch"] is not None:  # test the best checkpoint
        model.load_state_dict(torch.load(best_path, map_location=device, weights_only=True))
        rec["test"] = evaluate(model, data.test, cfg, device)
        rec["packed"] = _keep_packed(model, run_dir, rec, data, cfg)
    rec["convergence"] = convergence(rec)
    rec["learned"] = None if rec["test"] is None else learned(rec)
    rec["finished"] = records.now()
    records.atomic_write_json(rec_path, rec)
    ckpt_path.unlink(missing_ok=True)  # the record, the best weights and the packed file remain
    return rec


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


def _load_checkpoint(path: Path, device, quiet: bool) -> dict | None:
    """The checkpoint at ``path``, or None when there is none; an unreadable one is renamed
    (never deleted) and None returned, so the run starts again from scratch."""
    if not path.exists():
        return None
    try:
        ck = torch.load(path, map_location=device, weights_only=False)
        missing = {"epoch", "model", "optimizer", "scheduler", "rng"} - set(ck)
        if missing:
            raise ValueError(f"missing {sorted(missing)}")
        return ck
    except Exception as e:  # truncated, corrupt or foreign file
        aside = path.with_name(f"{path.name}.corrupt-{time.strftime('%Y%m%dT%H%M%S')}")
        path.rename(aside)
        import warnings

        warnings.warn(
            f"checkpoint {path} could not be read ({type(e).__name__}: {str(e)[:200]}); "
            f"set aside as {aside.name}, the run starts again from its first epoch",
            stacklevel=3,
        )
        return None


def _keep_packed(model: nn.Module, run_dir: Path, rec: dict, data: RunData, cfg) -> dict:
    """Pack the best model (``model.npz``), reload it and evaluate the reloaded copy: the
    record keeps the file's name, sha256, size and the reloaded test metric."""
    from ..export import load_packed, pack_model

    path = run_dir / "model.npz"
    source = {k: rec.get(k) for k in ("run_id", "config", "best_epoch", "status")}
    source["input_size"] = rec["model"]["input_size"]
    device = next(model.parameters()).device
    size = pack_model(model.cpu(), path, source)
    model.to(device)
    back = load_packed(path).to(device)
    test = evaluate(back, data.test, cfg, device)
    return {
        "file": path.name,
        "sha256": hashlib.sha256(path.read_bytes()).hexdigest(),
        "bytes": size["file_bytes"],
        "fp32_bytes": size["fp32_bytes"],
        "bits": size["bits"],
        "test_metric": test["metric"],
    }


def remeasure_packed(run_dir: str | Path, data_root: str | None = None) -> dict:
    """Evaluate a finished run's packed file again with this code and store the result as the
    record's ``packed.test_metric``, with ``packed.remeasured`` (the earlier value, the date
    and commit). For records whose reload was measured by an older quantizer (before
    ``scale="rms"`` was computed in float64, a reload could differ by ~1e-8)."""
    from ..export import load_packed
    from .config import config_from_dict

    run_dir = Path(run_dir)
    rec = records.load_record(run_dir)
    packed = rec.get("packed")
    if rec.get("status") not in ("completed", "diverged") or not packed:
        raise ValueError(f"{run_dir}: no finished run with a packed model to remeasure")
    if hashlib.sha256((run_dir / packed["file"]).read_bytes()).hexdigest() != packed["sha256"]:
        raise ValueError(f"{run_dir}: {packed['file']} does not match the sha256 in its record")
    cfg = config_from_dict(rec["config"])
    test = evaluate(load_packed(run_dir / packed["file"]), load_data(cfg, data_root,
                    progress=False).test, cfg)  # fmt: skip
    if test["metric"] != packed["test_metric"]:
        packed["remeasured"] = {"before": packed["test_metric"], "date": records.now(),
                                "commit": records.git_state().get("commit")}  # fmt: skip
        packed["test_metric"] = test["metric"]
        records.atomic_write_json(run_dir / "run.json", rec)
    return packed


# how much validation may still fall over the last 3 epochs for a run to count as flat
FLAT_MARGIN = {"bpc": 0.005, "perplexity": 0.5, "error": 0.005}


def convergence(rec: dict) -> dict:
    """Was validation still improving at the end? ``still_improving``: the best validation
    epoch is the last epoch run (more epochs would likely have helped). The written rule of
    study v3: ``converged`` when the learning rate was annealed to <= 1/4 of its peak
    (``annealed``) and the last epochs are flat (``flat``: the best epoch is before the last,
    or validation fell by less than :data:`FLAT_MARGIN` across the last 3 epochs)."""
    epochs, n, best = rec["epochs"], len(rec["epochs"]), rec["best_epoch"]
    peak = rec["config"]["lr"]
    annealed = bool(n and epochs[-1]["lr"] <= peak / 4)
    margin = FLAT_MARGIN.get(rec.get("metric", {}).get("name"), 0.005)
    fall = epochs[-3]["valid_metric"] - epochs[-1]["valid_metric"] if n >= 3 else None
    flat = bool(n and best is not None and (best < n or (fall is not None and fall < margin)))
    return {
        "epochs_run": n,
        "best_epoch": best,
        "still_improving": bool(n and best == n),
        "early_stopped": bool(n and best is not None and n < rec["config"]["epochs"]
                              and rec["status"] == "completed"),
        "lr_final": epochs[-1]["lr"] if n else None,
        "annealed": annealed,
        "valid_fall_last3": fall,
        "flat": flat,
        "converged": annealed and flat,
    }  # fmt: skip


def learned(rec: dict) -> bool:
    """Did the model learn anything? Its test metric beats the baseline (PTB: the unigram
    model of the training text; digits: chance)."""
    return bool(rec["test"]["metric"] < rec["baseline"]["metric"])


def _epoch_line(cfg, e: dict) -> str:
    name = cfg.metric_name
    return (
        f"epoch {e['epoch']:3d}  train {name} {e['train_metric']:.4f}  "
        f"valid {name} {e['valid_metric']:.4f}  lr {e['lr']:.2g}  {e['wall_s']:.1f}s"
    )
