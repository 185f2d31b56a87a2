"""What a finished run's record says of it: the best model kept packed at its true bit width
(:func:`keep_packed`, and :func:`remeasure_packed` to evaluate the packed file again later),
whether validation had stopped improving (:func:`convergence`) and whether the model learned
anything (:func:`learned`). The runs reproduce Ott et al. 2016, *Recurrent Neural Networks With
Limited Numerical Precision*, https://arxiv.org/abs/1608.06902.
"""

from __future__ import annotations

import hashlib
from pathlib import Path

from torch import nn

from . import records
from .assemble import RunData, load_data
from .config import config_from_dict
from .loop import evaluate

__all__ = ["FLAT_MARGIN", "convergence", "keep_packed", "learned", "remeasure_packed"]


def keep_packed(model: nn.Module, run_dir: Path, rec: dict, data: RunData, cfg) -> dict:
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
