"""A run's epoch checkpoint read back: :func:`load_checkpoint` sets an unreadable one aside
(never deletes it) so the run starts again, and :func:`rng_state` / :func:`set_rng_state` save
and restore the random states that make a resumed run end exactly like an uninterrupted one.
The runs reproduce Ott et al. 2016, *Recurrent Neural Networks With Limited Numerical
Precision*, https://arxiv.org/abs/1608.06902.
"""

from __future__ import annotations

import time
import warnings
from pathlib import Path

import torch

__all__ = ["load_checkpoint", "rng_state", "set_rng_state"]

# what a checkpoint must hold to be resumed from
REQUIRED = {"epoch", "model", "optimizer", "scheduler", "rng"}


def load_checkpoint(path: Path, device, stacklevel: int = 1) -> dict | None:
    """The checkpoint at ``path``, or None when there is none; an unreadable one is renamed
    (never deleted), a warning names it (``stacklevel`` as for :func:`warnings.warn`, counted
    from the caller) and None returned, so the run starts again from scratch."""
    if not path.exists():
        return None
    try:
        ck = torch.load(path, map_location=device, weights_only=False)
        missing = REQUIRED - set(ck)
        if missing:
            raise ValueError(f"missing {sorted(missing)}")
        return ck
    except Exception as e:  # truncated, corrupt or foreign file
        aside = path.with_name(f"{path.name}.corrupt-{time.strftime('%Y%m%dT%H%M%S')}")
        path.rename(aside)
        warnings.warn(
            f"checkpoint {path} could not be read ({type(e).__name__}: {str(e)[:200]}); "
            f"set aside as {aside.name}, the run starts again from its first epoch",
            stacklevel=stacklevel + 1,
        )
        return None


def rng_state(gens: dict[str, torch.Generator]) -> dict:
    """torch's global random state (and CUDA's) and that of each generator in ``gens``."""
    st = {"torch": torch.get_rng_state(), **{k: g.get_state() for k, g in gens.items()}}
    if torch.cuda.is_available():
        st["cuda"] = torch.cuda.get_rng_state_all()
    return st


def set_rng_state(st: dict, gens: dict[str, torch.Generator]) -> None:
    """Restore the random states that :func:`rng_state` saved."""
    torch.set_rng_state(st["torch"])
    for k, g in gens.items():
        g.set_state(st[k])
    if "cuda" in st and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(st["cuda"])
