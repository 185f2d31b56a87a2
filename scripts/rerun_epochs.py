"""Rerun the first epochs of committed runs at the current code and compare them with their
records: does the code at HEAD reproduce what an earlier revision recorded?

    QRNN_DATA=../shared/data OMP_NUM_THREADS=1 python scripts/rerun_epochs.py \
        results/cpu/runs/ptb-char_lstm_float_0a1b2c3d4e5f [...] --epochs 1

Each run's config is read from its ``run.json`` (threads as recorded), trained for ``--epochs``
epochs into a temporary folder, and its per-epoch training loss and validation metric are
printed beside the recorded ones with their difference. Exact equality is expected only on the
CPU kind and thread count that wrote the record; elsewhere the float reductions may differ in
the last bits and chaotic runs drift. Part of the study after Ott et al. 2016, *Recurrent Neural
Networks With Limited Numerical Precision*, https://arxiv.org/abs/1608.06902.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from qrnn.study.config import RunConfig, config_from_dict  # noqa: E402
from qrnn.study.train import train  # noqa: E402


def rerun(run_dir: Path, epochs: int) -> list[dict]:
    """Train the recorded config of ``run_dir`` for ``epochs`` epochs; one row per epoch."""
    rec = json.loads((run_dir / "run.json").read_text())
    names = {f.name for f in dataclasses.fields(RunConfig)}
    cfg = config_from_dict({k: v for k, v in rec["config"].items() if k in names})
    cfg = dataclasses.replace(cfg, epochs=epochs)
    with tempfile.TemporaryDirectory() as tmp:
        new = train(cfg, tmp, quiet=True)
    rows = []
    for old, now in zip(rec["epochs"][:epochs], new["epochs"], strict=False):
        rows.append({"run": run_dir.name, "epoch": old["epoch"],
                     "train_loss": (old["train_loss"], now["train_loss"]),
                     "valid_metric": (old["valid_metric"], now["valid_metric"])})  # fmt: skip
    return rows


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("runs", nargs="+", type=Path, help="run folders holding a run.json")
    p.add_argument("--epochs", type=int, default=1)
    a = p.parse_args()
    for run in a.runs:
        for r in rerun(run, a.epochs):
            (lo, ln), (vo, vn) = r["train_loss"], r["valid_metric"]
            print(f"{r['run']} epoch {r['epoch']}: train loss {lo:.6f} -> {ln:.6f} "
                  f"(diff {ln - lo:+.2e}), valid {vo:.6f} -> {vn:.6f} "
                  f"(diff {vn - vo:+.2e})")  # fmt: skip
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
