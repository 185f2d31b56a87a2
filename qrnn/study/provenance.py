"""Where each committed run record came from (study v3, issue 26 item 8): every record of a
study must be produced by a committed revision that is an ancestor of the checkout's HEAD,
with no local changes to tracked files. :func:`provenance` lists every record that is not,
with the reason. The study reproduces Ott et al. 2016, *Recurrent Neural Networks With
Limited Numerical Precision*, https://arxiv.org/abs/1608.06902.
"""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

from .grid import ROOT
from .runs import runs_dir

__all__ = ["provenance"]


def _is_ancestor(commit: str, root: Path) -> bool | None:
    """Is ``commit`` an ancestor of HEAD in the checkout at ``root``? None when git cannot
    tell (no git, or a shallow clone without that commit)."""
    try:
        r = subprocess.run(["git", "merge-base", "--is-ancestor", commit, "HEAD"], cwd=root,
                           capture_output=True, text=True, timeout=30)  # fmt: skip
    except (OSError, subprocess.TimeoutExpired):
        return None
    if r.returncode in (0, 1):
        return r.returncode == 0
    return None  # 128: unknown commit (e.g. a shallow clone)


def provenance(profile: str, results: str | Path = "results", root: Path | None = None):
    """``[(run_id, problem)]`` for every finished record of ``profile`` whose revision is
    unknown, had local changes, or is not an ancestor of HEAD (``root``: the checkout; default
    this qrnn's). Records still running are not judged."""
    root = root or ROOT
    out, seen = [], {}
    for path in sorted(runs_dir(results, profile).glob("*/run.json")):
        rec = json.loads(path.read_text())
        if rec.get("status") not in ("completed", "diverged"):
            continue
        git = (rec.get("environment") or {}).get("git") or {}
        commit, dirty = git.get("commit"), git.get("dirty")
        rid = path.parent.name
        if not commit:
            out.append((rid, "no commit recorded"))
        elif dirty is not False:
            out.append((rid, f"made with local changes at {commit[:10]}"))
        else:
            if commit not in seen:
                seen[commit] = _is_ancestor(commit, root)
            if seen[commit] is False:
                out.append((rid, f"{commit[:10]} is not an ancestor of HEAD"))
            elif seen[commit] is None:
                out.append((rid, f"{commit[:10]} cannot be checked here (not in this clone)"))
    return out
