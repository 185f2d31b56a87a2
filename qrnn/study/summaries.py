"""The study's tables step: ``qrnn study summarize`` (:mod:`qrnn.study.tables` computes them), the
unigram baseline, and ``init.csv`` (the weights at step 0). After Ott et al. 2016,
*Recurrent Neural Networks With Limited Numerical Precision*, https://arxiv.org/abs/1608.06902.
"""

from __future__ import annotations

import io
from pathlib import Path

from . import tables as _tables
from .grid import grid
from .runs import GRID_LABELS, read_grid, runs_dir


# ------------------------------------------------------------------------------ summaries
def unigram_baseline(task: str = "ptb-char", data_root: str | None = None) -> float:
    """Bits per symbol on validation of the training text's symbol frequencies (PTB-char:
    about 4.34 BPC; uniform guessing over 50 symbols gives log2(50) = 5.64)."""
    import torch

    from ..data import load_text

    corpus = load_text(task, root=data_root, progress=False)
    counts = torch.bincount(corpus.train, minlength=len(corpus.vocab)).double() + 1.0  # add-one
    logp = (counts / counts.sum()).log2()
    return float(-logp[corpus.valid].mean())


# the tables' functions, where the study's callers have always found them
collect, claims, groups = _tables.collect, _tables.claims, _tables.groups
normalization_table, NORMALIZATIONS = _tables.normalization_table, _tables.NORMALIZATIONS


def unlabelled(profile: str, results: str | Path = "results") -> list[tuple[str, str]]:
    """``[(run id, why)]``: the finished (completed or diverged) run records of the profile
    that ``grid.json`` gives no labels, or not all of ``GRID_LABELS``; the tables would leave
    them out. Unreadable records are left to the tables (one line naming the file)."""
    import json

    grid_map = read_grid(results, profile)
    gpath = Path(results) / profile / "grid.json"
    out = []
    for rec_path in sorted(runs_dir(results, profile).glob("*/run.json")):
        try:
            rec = json.loads(rec_path.read_text())
            rid, status = rec["run_id"], rec["status"]
        except (OSError, ValueError, KeyError, TypeError):
            continue
        if status not in ("completed", "diverged"):
            continue
        lab = grid_map.get(rid)
        if lab is None:
            out.append((rid, "no entry" if gpath.exists() else "grid.json is missing"))
        elif missing := [k for k in GRID_LABELS if k not in lab]:
            out.append((rid, f"its entry lacks {', '.join(missing)}"))
    return out


def summarize(
    profile: str,
    results: str | Path = "results",
    data_root: str | None = None,
    skip_unlabelled: bool = False,
):
    """Write the profile's tables (:func:`qrnn.study.tables.summarize`: runs, groups with intervals
    and verdicts, claims, causes, normalization). Finished runs without their labels in
    ``grid.json`` (:func:`unlabelled`) are refused by name, or left out with
    ``skip_unlabelled``. ``data_root`` is not needed any more (every record carries its own
    baseline) and kept for callers."""
    skipped = unlabelled(profile, results)
    if skipped and not skip_unlabelled:
        gpath = Path(results) / profile / "grid.json"
        names = ", ".join(f"{rid} ({why})" for rid, why in skipped[:6])
        more = f" and {len(skipped) - 6} more" if len(skipped) > 6 else ""
        raise ValueError(
            f"{len(skipped)} finished run(s) in {runs_dir(results, profile)} have no labels in "
            f"{gpath}: {names}{more}; restore grid.json (git checkout, or qrnn study run "
            "rewrites it), or pass --skip-unlabelled to summarize without them"
        )
    return _tables.summarize(profile, results)


def init_table(profile: str = "cpu", results: str | Path = "results", seed: int = 0):
    """``init.csv``: for every group of the profile (experiment, task, cell, hidden size,
    budget, setting, method: :data:`qrnn.study.verdicts.GROUP`), the model of
    seed ``seed`` exactly as training builds it at step 0 (same init seed, same
    :func:`qrnn.study.assemble.build_model`), and per recurrent tensor its share of exact
    zeros after deterministic quantization, RMS and spectral norm
    (:func:`qrnn.study.assemble.weight_stats`): which methods start disconnected (issue 12).
    Input sizes: PTB-char 50 symbols, digits 40 features (the loaders' defaults)."""
    import dataclasses

    import pandas as pd
    import torch

    from .assemble import build_model, weight_stats
    from .config import LM_TASKS, derive_seeds
    from .records import atomic_write_bytes

    rows, seen = [], set()
    for run in grid(profile):
        cfg = run.config
        keys = _tables.config_keys(dataclasses.asdict(cfg))
        key = (run.experiment, run.task, run.cell, run.method, keys["setting"])
        if run.seed != seed or key in seen:
            continue
        seen.add(key)
        size = 50 if cfg.task in LM_TASKS else 40
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(derive_seeds(cfg.seed)["init"])
            model = build_model(cfg, size)
        for name, st in weight_stats(model).items():
            rows.append({"experiment": run.experiment, "task": run.task, "cell": run.cell,
                         "hidden": keys["hidden"], "max_epochs": keys["max_epochs"],
                         "train_limit": keys["train_limit"], "setting": keys["setting"],
                         "method": run.method,
                         "tensor": name.split(".")[-1], "quantized": st["quantized"],
                         "zero": st["zero"], "rms": st["rms"],
                         "spectral": st.get("spectral")})  # fmt: skip
    table = pd.DataFrame(rows)
    folder = Path(results) / profile
    folder.mkdir(parents=True, exist_ok=True)
    if not _same_table(folder / "init.csv", table):  # last-digit noise does not rewrite it
        atomic_write_bytes(folder / "init.csv", table.to_csv(index=False).encode())
    return table


def _same_table(path: Path, table, rtol: float = 1e-6) -> bool:
    """Whether the CSV at ``path`` holds ``table``: same columns and labels, numbers equal to
    ``rtol`` (another machine's float rounding differs in the last digits)."""
    import numpy as np
    import pandas as pd

    try:
        old = pd.read_csv(path)
    except (OSError, ValueError):
        return False
    new = pd.read_csv(io.StringIO(table.to_csv(index=False)))  # as it would be written
    if list(old.columns) != list(new.columns) or len(old) != len(new):
        return False
    for c in new.columns:
        a, b = old[c], new[c]
        if pd.api.types.is_numeric_dtype(a) and pd.api.types.is_numeric_dtype(b):
            if not np.allclose(a, b, rtol=rtol, atol=1e-12, equal_nan=True):
                return False
        elif not a.astype(str).equals(b.astype(str)):
            return False
    return True
