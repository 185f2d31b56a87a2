"""Run records: ``results/<run-id>/run.json``, written atomically.

Schema ``qrnn.run/1`` (every key always present; ``null`` where not applicable):

=================  ==============================================================================
key                meaning
=================  ==============================================================================
schema             ``"qrnn.run/1"``
run_id             ``<task>_<cell>_<scheme>[-stoch]_<12 hex>``: hash of the resolved config
status             ``"running"`` | ``"completed"`` | ``"diverged"`` | ``"failed"``
config             the resolved :class:`qrnn.study.train.RunConfig` (every field)
metric             ``{"name": "bpc"|"perplexity"|"error", "lower_is_better": true}``
epochs             per epoch: ``epoch, train_loss, train_metric, valid_loss, valid_metric,
                   [valid_accuracy,] lr, wall_s`` (losses in nats per symbol / example; ``lr``
                   at the epoch's end, ``lr_start`` at its start in later records);
                   later records add ``steps``, ``weights`` (per quantized tensor: zero share,
                   RMS, spectral norm) and ``grad_norm`` (the 2-norm before clipping: median,
                   max, float32_overflow = steps whose float32 norm would overflow)
best_epoch         epoch with the best validation metric (the model tested)
test               ``{"loss", "metric"[, "accuracy"]}`` of the best-validation model, or null
diverged           ``{"epoch", "batch", "reason", "running_loss", "recent_losses"}`` when status
                   is ``"diverged"`` (the last two: the rule's running mean and the last training
                   losses; absent in records written before they were kept)
error              message when status is ``"failed"``
model              parameter count, per-tensor ``{shape, scheme, bits, quantized}``, total
                   storage bits quantized vs fp32
seeds              the run seed and the seeds derived from it (init, data, quantization)
environment        python, torch, numpy, qrnn versions, platform, device, threads, CPU model,
                   logical CPUs, load average at the start, git commit and dirty flag
data               the loader's statistics and sha256s (sizes, vocabulary, split sizes)
invocation         command line or papermill parameters
started, finished  UTC ISO times; ``wall_time_s`` total seconds of training (over resumes)
=================  ==============================================================================

Part of ``qrnn``, the library and study after Ott et al. 2016, *Recurrent Neural Networks With
Limited Numerical Precision*, https://arxiv.org/abs/1608.06902.
"""

from __future__ import annotations

import contextlib
import datetime as _dt
import json
import os
import platform
import subprocess
import sys
from pathlib import Path

import torch

from .._version import __version__
from ..atomic import atomic_torch_save, atomic_write_bytes, atomic_write_json

SCHEMA = "qrnn.run/1"
REQUIRED_KEYS = (
    "schema",
    "run_id",
    "status",
    "config",
    "metric",
    "epochs",
    "best_epoch",
    "test",
    "diverged",
    "error",
    "model",
    "seeds",
    "environment",
    "data",
    "invocation",
    "started",
    "finished",
    "wall_time_s",
)
STATUSES = ("running", "completed", "diverged", "failed")
EPOCH_KEYS = ("epoch", "train_loss", "train_metric", "valid_loss", "valid_metric", "lr", "wall_s")

__all__ = [
    "SCHEMA",
    "RecordError",
    "atomic_torch_save",
    "atomic_write_bytes",
    "atomic_write_json",
    "environment",
    "load_record",
]


class RecordError(ValueError):
    """A run record that cannot be read: not JSON (corrupt, truncated) or not the schema."""


def now() -> str:
    """The current UTC time, ISO 8601 to the second (``2026-12-06T06:02:32Z``)."""
    return _dt.datetime.now(_dt.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def load_record(path: str | os.PathLike) -> dict:
    """Read a ``run.json`` (or the folder holding one) and check its schema."""
    p = Path(path)
    if p.is_dir():
        p = p / "run.json"
    if not p.is_file():
        raise FileNotFoundError(f"no run record at {p}")
    fix = "restore it, or delete the run folder's run.json to train the run again"
    try:
        rec = json.loads(p.read_text())
    except (json.JSONDecodeError, UnicodeDecodeError) as e:
        raise RecordError(f"run record {p} is corrupt or truncated (not JSON: {e}); {fix}") from e
    problems = validate(rec)
    if problems:
        raise RecordError(f"{p} is not a {SCHEMA} record: {'; '.join(problems)}; {fix}")
    return rec


def validate(rec: dict) -> list[str]:
    """Problems with a record's structure (empty when it follows the schema)."""
    if not isinstance(rec, dict):
        return ["not a JSON object"]
    out = [f"missing key {k!r}" for k in REQUIRED_KEYS if k not in rec]
    if rec.get("schema") != SCHEMA:
        out.append(f"schema is {rec.get('schema')!r}, expected {SCHEMA!r}")
    if rec.get("status") not in STATUSES:
        out.append(f"status {rec.get('status')!r} not in {STATUSES}")
    epochs = rec.get("epochs") or []
    if not isinstance(epochs, list):
        return [*out, "epochs is not a list"]
    for e in epochs:
        if not isinstance(e, dict):
            out.append("an epoch entry is not an object")
            break
        missing = [k for k in EPOCH_KEYS if k not in e]
        if missing:
            out.append(f"epoch entry lacks {missing}")
            break
    return out


def _git(*args: str) -> str | None:
    root = Path(__file__).resolve().parents[2]  # the checkout
    try:
        r = subprocess.run(["git", *args], cwd=root, capture_output=True, text=True, timeout=10)
    except (OSError, subprocess.TimeoutExpired):
        return None
    return r.stdout.strip() if r.returncode == 0 else None


def git_state() -> dict:
    """Commit of the qrnn checkout and whether tracked files differ from it."""
    commit = _git("rev-parse", "HEAD")
    dirty = None
    if commit is not None:
        status = _git("status", "--porcelain", "--untracked-files=no")
        dirty = bool(status) if status is not None else None
    return {"commit": commit, "dirty": dirty}


def cpu_model() -> str:
    """The CPU's model name (``/proc/cpuinfo`` on Linux, else what :mod:`platform` knows)."""
    with contextlib.suppress(OSError):
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.lower().startswith("model name"):
                return line.split(":", 1)[1].strip()
    return platform.processor() or platform.machine()


def environment(device: torch.device | str, threads: int) -> dict:
    """Where a run ran: Python, torch, numpy and qrnn versions, platform, CPU model, threads,
    device, and the git commit with its dirty flag."""
    import numpy

    dev = torch.device(device)
    info = {
        "python": sys.version.split()[0],
        "torch": torch.__version__,
        "numpy": numpy.__version__,
        "qrnn": __version__,
        "platform": platform.platform(),
        "processor": platform.processor() or platform.machine(),
        "device": str(dev),
        "device_name": torch.cuda.get_device_name(dev) if dev.type == "cuda" else "cpu",
        "threads": threads,
        # what a run's wall time depends on: the CPU model (it changes between sessions of
        # the study's machine), its logical CPUs and the load when the run started
        "cpu_model": cpu_model(),
        "cpus": os.cpu_count(),
        "load_avg_1min": round(os.getloadavg()[0], 2) if hasattr(os, "getloadavg") else None,
        "git": git_state(),
    }
    with contextlib.suppress(Exception):
        import librosa

        info["librosa"] = librosa.__version__
    return info
