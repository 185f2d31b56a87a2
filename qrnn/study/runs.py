"""Run folders: where runs live on disk, what state each is in, and loading or exporting them.

The one module that knows the layout of a results tree (Ott et al. 2016, *Recurrent Neural
Networks With Limited Numerical Precision*, https://arxiv.org/abs/1608.06902, is the study the
runs reproduce)::

    results/<run-id>/                       qrnn train --results results
    results/<profile>/runs/<run-id>/        qrnn study run --profile <profile>
        run.json    the record (schema in :mod:`qrnn.study.records`)
        model.pt    best-validation state_dict (shadow weights; not committed)
        model.npz   the same model packed (:mod:`qrnn.export`; committed)
        error.txt   the traceback of a failed run
        claim.json  the live claim of the runner training it (:mod:`qrnn.study.runlock`)

Here: :func:`find_run` (a folder from a path, id or prefix), :func:`record_status` and
:func:`finished_runs` (state), :func:`find_runs` (completed runs of one method),
:func:`load_model` / :func:`load_models` / :func:`init_model` (models), :func:`export_run`.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import Any

import torch
from torch import nn

from ..analysis.report import Method, get_method, task_fields
from ..quantizers import quantizer
from . import records

__all__ = [
    "FIND_DEFAULTS",
    "GRID_LABELS",
    "PackedMismatch",
    "export_run",
    "find_run",
    "find_runs",
    "finished_runs",
    "init_model",
    "kept_weights",
    "load_model",
    "load_models",
    "packed_file",
    "packed_summary",
    "read_grid",
    "record_status",
    "run_note",
    "run_roots",
    "runs_dir",
    "runs_folder",
    "summary",
    "trained",
    "verify_packed",
]

FINAL = ("completed", "diverged", "failed")  # a record that will not change any more


# ------------------------------------------------------------------------------ where
def runs_dir(results: str | Path, profile: str) -> Path:
    """The folder holding a study profile's run folders."""
    return Path(results) / profile / "runs"


GRID_LABELS = ("experiment", "task", "cell", "method", "seed")  # each grid.json entry's


def read_grid(results: str | Path, profile: str) -> dict[str, dict]:
    """``results/<profile>/grid.json``: run id -> labels (``GRID_LABELS``), as written by the
    study's runner; ``{}`` when the file does not exist. A file that is not a JSON object of
    objects raises ``ValueError`` naming it (entries without every label are returned as they
    are: :func:`qrnn.study.unlabelled` reports them)."""
    path = Path(results) / profile / "grid.json"
    fix = f"restore it (git checkout -- {path}) or delete it and run qrnn study run to rewrite it"
    try:
        grid = json.loads(path.read_text())
    except FileNotFoundError:
        return {}
    except (ValueError, UnicodeDecodeError) as e:
        raise ValueError(f"{path} is corrupt or truncated (not JSON: {e}); {fix}") from None
    if not isinstance(grid, dict) or not all(isinstance(v, dict) for v in grid.values()):
        kind = "an object of non-objects" if isinstance(grid, dict) else type(grid).__name__
        raise ValueError(f"{path} must be a JSON object run id -> labels, not {kind}; {fix}")
    return grid


def runs_folder(results: str | Path) -> Path:
    """A folder of run folders: ``results`` itself, ``results/runs``, or ``results/<profile>/runs``
    given a profile name."""
    p = Path(results)
    for cand in (p / "runs", p, Path("results") / p / "runs"):
        if cand.is_dir() and any(cand.glob("*/run.json")):
            return cand
    raise FileNotFoundError(f"no run records (*/run.json) in {p}, {p}/runs or results/{p}/runs")


def run_roots(results: str | Path | Iterable[str | Path] = ("runs", "results")) -> list[Path]:
    """The folders that hold run folders under ``results`` (one folder or several): each
    folder itself, its ``runs/``, and every study folder's ``<profile>/runs/`` in it."""
    given = [results] if isinstance(results, str | Path) else list(results)
    out: list[Path] = []
    for r in map(Path, given):
        for cand in (r, r / "runs", *sorted(r.glob("*/runs"))):
            if cand.is_dir() and cand not in out:
                out.append(cand)
    return out


def find_run(run: str, results: str | Path | Iterable[str | Path] = ("runs", "results")) -> Path:
    """A run folder from a path, a run id, or a unique prefix of one in :func:`run_roots` of
    ``results`` (default: ``runs/``, where ``qrnn train`` writes, and ``results/``)."""
    p = Path(run)
    if (p / "run.json").is_file() or p.name == "run.json":
        return p if p.is_dir() else p.parent
    if p.is_absolute() or p.exists():
        raise FileNotFoundError(f"no run record in {p}")
    roots = run_roots(results)
    hits = sorted({d for root in roots for d in root.glob(f"{run}*") if (d / "run.json").is_file()})
    exact = [h for h in hits if h.name == run]
    if len(hits) == 1 or len(exact) == 1:
        return (exact or hits)[0]
    where = ", ".join(f"{r}/" for r in roots) or "(none of them exists)"
    given = [results] if isinstance(results, str | Path) else list(results)
    if not hits:
        raise FileNotFoundError(
            f"no run {run!r}: not a run folder, and no run id starts with it in "
            f"{', '.join(map(str, given))} (searched {where}); pass --results FOLDER"
        )
    names = ", ".join(str(h) for h in hits[:5])
    raise ValueError(
        f"run {run!r} is ambiguous: {names}{' ...' if len(hits) > 5 else ''}; pass the run folder"
    )


# ------------------------------------------------------------------------------ state
def record_status(run_dir: Path, claims: bool = True) -> str:
    """pending | running | interrupted | completed | diverged | failed, from a run folder.

    ``running``: a live claim (:mod:`qrnn.study.runlock`) holds the run, in this process or
    elsewhere; ``interrupted``: the record says running but no runner holds it (running it
    again resumes from its checkpoint); ``failed`` also for an unreadable record.
    ``claims=False`` judges by the files alone."""
    from .runlock import holder

    rec = Path(run_dir) / "run.json"
    recorded = None
    if rec.exists():
        try:
            recorded = json.loads(rec.read_text())["status"]
        except (ValueError, KeyError, TypeError, OSError):  # corrupt or truncated record
            recorded = "failed"
    if recorded in ("completed", "diverged"):
        return recorded
    if claims and holder(run_dir) is not None:
        return "running"
    if recorded == "running":
        return "interrupted"
    if recorded is not None or (Path(run_dir) / "error.txt").exists():
        return "failed"
    return "pending"


def kept_weights(run_dir: Path) -> bool:
    """Whether the run kept its best weights (``model.pt`` or the packed ``model.npz``)."""
    return (Path(run_dir) / "model.pt").exists() or (Path(run_dir) / "model.npz").exists()


def trained(run_dir: Path) -> bool:
    """Whether the run completed and kept its best weights (a model to load)."""
    return record_status(run_dir) == "completed" and kept_weights(run_dir)


def finished_runs(root: str | Path = "results") -> Iterator[Path]:
    """Run folders under ``root`` (any depth) whose record is final: completed, diverged or
    failed (what can be committed while a study still runs)."""
    for rec in sorted(Path(root).glob("**/run.json")):
        try:
            status = json.loads(rec.read_text())["status"]
        except (OSError, ValueError, KeyError, TypeError):
            continue
        if status in FINAL:
            yield rec.parent


# fields a main-grid run has at these values; another experiment differs in one of them
FIND_DEFAULTS = {"weight_norm": False, "layer_norm": False, "weight_noise": "none"}


def find_runs(
    results: str | Path,
    task: str,
    cell: str,
    method: str | Method,
    seed: int = 0,
    hidden: int | None = None,
    **config: Any,
) -> list[Path]:
    """Completed study runs (folders with ``run.json`` and ``model.pt`` or the packed
    ``model.npz``) of one method.

    ``results``: a runs folder, a profile folder holding ``runs/``, or a profile name under
    ``results/``. Matches task (and split), cell, scheme, resolved quantizer options,
    stochastic, seed, ``hidden`` (if given) and ``config`` (defaults ``FIND_DEFAULTS``: no
    weight norm, no layer norm, no weight noise).
    """
    m = get_method(method)
    want = {
        **task_fields(task),
        "cell": cell,
        "scheme": m.scheme,
        "stochastic": m.stochastic,
        "seed": seed,
        **FIND_DEFAULTS,
        **config,
    }
    if hidden is not None:
        want["hidden"] = hidden
    want_opts = m.quantizer().options
    out = []
    for run in sorted(runs_folder(results).glob("*/run.json")):
        try:
            rec = json.loads(run.read_text())
        except (OSError, ValueError):
            continue
        if rec.get("status") != "completed" or not kept_weights(run.parent):
            continue
        cfg = {"split": "standard", **FIND_DEFAULTS, **rec.get("config", {})}
        if any(cfg.get(k) != v for k, v in want.items()):
            continue
        if quantizer(cfg["scheme"], **cfg["quantizer_options"]).options == want_opts:
            out.append(run.parent)
    return out


# ------------------------------------------------------------------------------ models
def load_model(run: str | Path, device: str = "cpu") -> tuple[nn.Module, dict]:
    """The best-validation model of a run folder and its record, in eval mode: the full
    checkpoint ``model.pt`` when present (shadow weights), else the packed ``model.npz``
    (quantized weights only, as committed)."""
    from .assemble import build_model
    from .config import config_from_dict

    run = Path(run)
    rec = records.load_record(run)
    cfg = config_from_dict(rec["config"])
    model = build_model(cfg, rec["model"]["input_size"])
    weights = run / "model.pt"
    if not weights.exists():
        packed = packed_file(run, rec)
        if packed.exists():  # committed runs keep the packed file only
            from ..export import load_packed

            verify_packed(run, rec)
            return load_packed(packed).to(device).eval(), rec
        raise FileNotFoundError(
            f"{run} has neither model.pt nor model.npz (status {rec['status']!r}): the run "
            "kept no trained weights"
        )
    model.load_state_dict(torch.load(weights, map_location=device, weights_only=True))
    return model.to(device).eval(), rec


class PackedMismatch(ValueError):
    """A run folder's packed model is not the file its record names (sha256 differs)."""


def packed_file(run_dir: str | Path, rec: dict | None = None) -> Path:
    """The packed model file of a run folder (``model.npz`` unless its record names another)."""
    rec = rec if rec is not None else records.load_record(run_dir)
    return Path(run_dir) / ((rec.get("packed") or {}).get("file") or "model.npz")


def verify_packed(run_dir: str | Path, rec: dict | None = None) -> str:
    """Check a run folder's packed model against the sha256 in its ``run.json``: ``"sha256"``
    (it matches) or ``"no sha256 in the record"``; :class:`PackedMismatch` names both digests
    (another run's file, or a changed one), ``FileNotFoundError`` a missing file."""
    import hashlib

    rec = rec if rec is not None else records.load_record(run_dir)
    path = packed_file(run_dir, rec)
    want = (rec.get("packed") or {}).get("sha256")
    if not path.is_file():
        raise FileNotFoundError(f"{path} is missing; restore it from the repository")
    if not want:
        return "no sha256 in the record"
    h = hashlib.sha256()
    with open(path, "rb") as f:
        while chunk := f.read(1 << 20):
            h.update(chunk)
    if h.hexdigest() != want:
        raise PackedMismatch(
            f"{path} does not match the sha256 in {Path(run_dir) / 'run.json'} (record "
            f"{want[:12]}..., file {h.hexdigest()[:12]}...): another run's model or a changed "
            f"file; restore it (git checkout -- {path}) or train the run again"
        )
    return "sha256"


def init_model(
    task: str,
    cell: str,
    method: str | Method,
    size: int,
    hidden: int = 128,
    seed: int = 0,
    **config: Any,
) -> nn.Module:
    """The model a study run of ``seed`` starts from (same init as :func:`qrnn.study.train.train`),
    in eval mode. ``size``: vocabulary size or feature count; ``config``: more RunConfig
    fields. Equal seeds give equal shadow weights for every method."""
    from .assemble import build_model
    from .config import RunConfig, derive_seeds

    m = get_method(method)
    cfg = RunConfig(
        **task_fields(task),
        cell=cell,
        hidden=hidden,
        scheme=m.scheme,
        stochastic=m.stochastic,
        quantizer_options=m.options,
        seed=seed,
        **config,
    )
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(derive_seeds(seed)["init"])
        model = build_model(cfg, size)
    return model.eval()


def load_models(
    task: str,
    cell: str,
    methods: Iterable[str],
    source: str = "init",
    *,
    size: int,
    hidden: int = 128,
    seed: int = 0,
    **config: Any,
) -> tuple[dict[str, nn.Module], dict[str, str]]:
    """``({label: model}, {label: origin})`` for ``source="init"`` (fresh models, shared
    shadow weights) or a results folder / profile (first matching trained run; methods
    without one are left out, origin ``"missing"``)."""
    models, origin = {}, {}
    for label in methods:
        if source == "init":
            models[label] = init_model(task, cell, label, size, hidden, seed, **config)
            origin[label] = "init"
            continue
        runs = find_runs(source, task, cell, label, seed, hidden, **config)
        if not runs:
            origin[label] = "missing"
            continue
        models[label], rec = load_model(runs[0])
        origin[label] = rec["run_id"]
    return models, origin


# ------------------------------------------------------------------------------ text
def summary(rec: dict) -> str:
    """Human-readable summary of a run record."""
    from .config import RunConfig

    name = rec["metric"]["name"]
    defaults = RunConfig().resolved()
    changed = {k: v for k, v in rec["config"].items() if defaults.get(k) != v}
    lines = [
        f"run      {rec['run_id']}",
        f"status   {rec['status']}"
        + (f" ({rec['diverged']['reason']})" if rec["diverged"] else "")
        + (f" ({rec['error']})" if rec["error"] else ""),
        f"config   {json.dumps(changed)} (others default)",
        f"model    {rec['model']['parameters']:,} parameters, "
        f"{rec['model']['storage_bits'] / 8 / 1024:.1f} KiB quantized vs "
        f"{rec['model']['fp32_bits'] / 8 / 1024:.1f} KiB fp32",
        f"env      torch {rec['environment']['torch']} on {rec['environment']['device']}, "
        f"{rec['environment']['threads']} threads, commit "
        f"{(rec['environment']['git']['commit'] or '?')[:10]}"
        + (" (dirty)" if rec["environment"]["git"]["dirty"] else ""),
        f"epoch  train {name:>10}  valid {name:>10}  {'wall s':>8}",
    ]
    for e in rec["epochs"]:
        star = "*" if e["epoch"] == rec["best_epoch"] else " "
        tr, va = e["train_metric"], e["valid_metric"]
        lines.append(f"{e['epoch']:4d}{star} {tr:16.4f} {va:16.4f} {e['wall_s']:9.1f}")
    if rec["test"]:
        lines.append(
            f"test {name} {rec['test']['metric']:.4f} (best epoch {rec['best_epoch']}), "
            f"{rec['wall_time_s']:.0f} s training"
        )
    return "\n".join(lines)


def packed_summary(meta: dict) -> str:
    """Human-readable summary of a packed file's metadata."""
    src = meta.get("source") or {}
    arch = meta["architecture"]
    methods = ", ".join(f"{m['scheme']} ({m['bits']} bits)" for m in meta["methods"]) or "none"
    test = src.get("test") or {}
    return "\n".join([
        f"packed   {meta['format']} version {meta['version']} (written by qrnn {meta['qrnn']})",
        f"run      {src.get('run_id', '?')}",
        f"model    {arch['family']} {json.dumps(arch['kwargs'])}",
        f"methods  {methods}",
        f"tensors  {len(meta['tensors'])}"
        + (f"; test {test['metric']:.4f}" if "metric" in test else ""),
    ])  # fmt: skip


def run_note(status: str, run_dir: Path) -> str:
    """Who trains a running run; the first line of a failed run's error."""
    from . import runlock

    if status == "running":
        info = runlock.read(run_dir)
        return f"  ({runlock.describe(info)})" if info else ""
    if status == "failed" and (run_dir / "error.txt").is_file():
        return "  " + (run_dir / "error.txt").read_text(errors="replace").partition("\n")[0]
    if status == "failed" and (run_dir / "run.json").is_file():
        try:
            records.load_record(run_dir)
        except (ValueError, OSError) as e:  # a corrupt or truncated record: say so
            return "  " + " ".join(str(e).split())
    return ""


# ------------------------------------------------------------------------------ export
def export_run(run: str | Path, path: str | Path) -> dict:
    """Pack the best-validation model of a run folder; returns the size report of
    ``qrnn.export.pack_model``."""
    from ..export import pack_model

    model, rec = load_model(run)
    source = {k: rec.get(k) for k in ("run_id", "config", "best_epoch", "test", "status")}
    source["input_size"] = rec["model"]["input_size"]
    return pack_model(model, path, source)
