"""The study's tables step: ``qrnn study summarize`` (:mod:`qrnn.tables` computes them), the
unigram baseline, and ``init.csv`` (the weights at step 0). After Ott et al. 2016,
*Recurrent Neural Networks With Limited Numerical Precision*, https://arxiv.org/abs/1608.06902.
"""

from __future__ import annotations

from pathlib import Path

from .. import tables as _tables
from .grid import grid


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


def summarize(profile: str, results: str | Path = "results", data_root: str | None = None):
    """Write the profile's tables (:func:`qrnn.tables.summarize`: runs, groups with intervals
    and verdicts, claims, causes, normalization); ``data_root`` is not needed any more (every
    record carries its own baseline) and kept for callers."""
    return _tables.summarize(profile, results)


def init_table(profile: str = "cpu", results: str | Path = "results", seed: int = 0):
    """``init.csv``: for every (experiment, task, cell, method) of the profile, the model of
    seed ``seed`` exactly as training builds it at step 0 (same init seed, same
    :func:`qrnn.train.build_model`), and per recurrent tensor its share of exact zeros after
    deterministic quantization, RMS and spectral norm (:func:`qrnn.train.weight_stats`): which
    methods start disconnected (issue 12). Input sizes: PTB-char 50 symbols, digits 40
    features (the loaders' defaults)."""
    import pandas as pd
    import torch

    from ..assemble import build_model, weight_stats
    from ..config import LM_TASKS, derive_seeds
    from ..records import atomic_write_bytes

    rows, seen = [], set()
    for run in grid(profile):
        key = (run.experiment, run.task, run.cell, run.method)
        if run.seed != seed or key in seen:
            continue
        seen.add(key)
        cfg = run.config
        size = 50 if cfg.task in LM_TASKS else 40
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(derive_seeds(cfg.seed)["init"])
            model = build_model(cfg, size)
        for name, st in weight_stats(model).items():
            rows.append({**dict(zip(("experiment", "task", "cell", "method"), key, strict=True)),
                         "tensor": name.split(".")[-1], "quantized": st["quantized"],
                         "zero": st["zero"], "rms": st["rms"],
                         "spectral": st.get("spectral")})  # fmt: skip
    table = pd.DataFrame(rows)
    folder = Path(results) / profile
    folder.mkdir(parents=True, exist_ok=True)
    atomic_write_bytes(folder / "init.csv", table.to_csv(index=False).encode())
    return table
