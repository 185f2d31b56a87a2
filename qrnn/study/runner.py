"""The study's runner: each run executes ``notebooks/train.ipynb`` through papermill into its
run folder, claimed by :mod:`qrnn.study.runlock` so that concurrent runners train each run once;
finished runs are skipped, so an interrupted study resumes. Local processes or Dask. The study
reproduces Ott et al. 2016, *Recurrent Neural Networks With Limited Numerical Precision*,
https://arxiv.org/abs/1608.06902.
"""

from __future__ import annotations

import dataclasses
import json
import logging
import os
import time
import traceback
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any

from .grid import ROOT, TRAIN_NOTEBOOK, Run, experiments, grid
from .runs import read_grid, record_status, runs_dir


# ------------------------------------------------------------------------------ running
def _portable(path: Path) -> str:
    """``path`` relative to the working folder when below it (papermill records the input
    path in the executed notebook; keep machine paths out of committed artifacts)."""
    p = path.resolve()
    return str(p.relative_to(Path.cwd())) if p.is_relative_to(Path.cwd()) else str(p)


def execute_notebook(src: str, dst: str, **kwargs: Any) -> None:
    """``papermill.execute_notebook`` with the kernel's ZMQ traffic CurveZMQ-encrypted when pyzmq
    supports it (ipykernel >= 7.3 warns on every start over plain TCP), and a quiet shutdown:
    jupyter_client sends the kernel SIGINT before every shutdown request, which a kernel busy
    with a message logs as ``[IPKernelApp] ERROR | KeyboardInterrupt caught in kernel.``; the
    notebook has finished by then, so the kernel manager here skips that interrupt (the
    shutdown request, then SIGTERM and SIGKILL after ``shutdown_wait_time``, still stop it;
    interrupts on a cell timeout are kept)."""
    import papermill as pm
    import zmq
    from jupyter_client import AsyncKernelManager

    class QuietShutdownKernelManager(AsyncKernelManager):
        async def _async_interrupt_kernel(self) -> None:
            if not self.shutting_down:
                await super()._async_interrupt_kernel()

    kwargs.setdefault("kernel_manager_class", QuietShutdownKernelManager)
    if zmq.has("curve"):
        from traitlets.config import Config

        kwargs.setdefault("config", Config({"KernelManager": {"transport_encryption": "required"}}))
    pm.execute_notebook(src, dst, **kwargs)


def _error_text(e: BaseException) -> str:
    """``error.txt``: one line naming the error (a notebook's ``ename: evalue``), then details."""
    import re

    detail = "".join(traceback.format_exception_only(type(e), e)).strip()
    ename, evalue = getattr(e, "ename", None), getattr(e, "evalue", None)
    first = f"{ename}: {evalue}" if ename else detail.splitlines()[-1] if detail else repr(e)
    ansi = re.compile(r"\x1b\[[0-9;]*m")
    first = " ".join(ansi.sub("", first).split())
    return first + "\n\n" + ansi.sub("", detail)[-4000:] + "\n"


def execute_run(run: Run, results: str, data_root: str | None = None) -> dict:
    """Execute one run through papermill (in this process or a Dask worker). Never raises.

    The run is claimed first (:func:`qrnn.study.runlock.acquire`); a run another runner holds is
    skipped with status ``"running elsewhere"`` and the holder in ``detail``."""
    from . import runlock

    out_dir = Path(results)
    run_dir = out_dir / run.run_id
    status = record_status(run_dir)
    if status in ("completed", "diverged"):
        return {"run_id": run.run_id, "status": status, "skipped": True, "seconds": 0.0}
    try:
        claim = runlock.acquire(run_dir)
    except OSError as e:  # e.g. the shared folder is not reachable from this worker
        return {"run_id": run.run_id, "status": "failed", "skipped": False, "seconds": 0.0,
                "detail": f"cannot claim the run in {run_dir}: {e}"}  # fmt: skip
    if claim is None:
        info = runlock.read(run_dir)
        return {"run_id": run.run_id, "status": "running elsewhere", "skipped": True,
                "seconds": 0.0, "detail": runlock.describe(info) if info else None}  # fmt: skip
    with claim:
        status = record_status(run_dir)  # another runner may have finished it meanwhile
        if status in ("completed", "diverged"):
            return {"run_id": run.run_id, "status": status, "skipped": True, "seconds": 0.0}
        return _execute_claimed(run, out_dir, run_dir, data_root)


def _execute_claimed(run: Run, out_dir: Path, run_dir: Path, data_root: str | None) -> dict:
    (run_dir / "error.txt").unlink(missing_ok=True)
    where = out_dir.resolve()  # relative to the notebook's cwd when inside the repository
    where = where.relative_to(ROOT) if where.is_relative_to(ROOT) else where
    params = {**dataclasses.asdict(run.config), "results_dir": str(where),
              "data_root": data_root, "quiet": True, "histograms": False}  # fmt: skip
    t0 = time.perf_counter()
    try:
        execute_notebook(
            _portable(TRAIN_NOTEBOOK), _portable(run_dir / "train.ipynb"), parameters=params,
            cwd=str(ROOT), kernel_name="python3", progress_bar=False,
        )  # fmt: skip
    except Exception as e:  # recorded; the study goes on
        from .records import atomic_write_bytes

        atomic_write_bytes(run_dir / "error.txt", _error_text(e).encode())
    status = record_status(run_dir, claims=False)  # our claim is still held
    out = {"run_id": run.run_id, "status": status, "skipped": False,
           "seconds": time.perf_counter() - t0}  # fmt: skip
    if status == "failed" and (run_dir / "error.txt").is_file():
        out["detail"] = (run_dir / "error.txt").read_text(errors="replace").partition("\n")[0]
    return out


def run_study(
    profile: str = "cpu",
    results: str | Path = "results",
    *,
    only: Iterable[str] | None = None,
    jobs: int | None = None,
    threads: int | None = None,
    executor: str = "local",
    scheduler: str | None = None,
    data_root: str | None = None,
    quiet: bool = False,
    on_result: Callable[[Run, dict], None] | None = None,
) -> list[dict]:
    """Run (or resume) a profile's grid; returns one outcome per run, in grid order.

    ``executor="local"``: ``jobs`` runs at a time (default: one per core; each run gets
    ``cores // jobs`` threads unless ``threads`` is given: two 1-thread runs beat one 2-thread
    run on this CPU). Two runners side by side should each pass ``threads``: more busy threads
    than cores makes the oneDNN LSTM kernels spin (PTB epochs of 800-1600 s, not ~100 s).
    ``executor="dask"``: submit to the Dask scheduler at ``scheduler`` (``None`` starts a
    ``LocalCluster``).
    """
    jobs, threads = _workers(executor, jobs, threads)
    runs = grid(profile, only, threads=threads)
    order = _run_order(profile, runs)
    out = runs_dir(results, profile)
    _writable(out)
    _write_manifest(out.parent, profile, runs)
    outcomes: dict[int, dict] = {}
    from tqdm.auto import tqdm

    bar = tqdm(total=len(runs), desc=f"study {profile}", unit="run", disable=quiet)

    def done(i: int, res: dict) -> None:
        outcomes[i] = res
        bar.update(1)
        bar.set_postfix_str(f"{res['status']}: {runs[i].run_id}", refresh=False)
        if on_result is not None:
            on_result(runs[i], res)

    try:
        if executor == "local":
            _run_local(runs, order, jobs, str(out), data_root, done)
        else:
            _run_dask(runs, order, jobs, scheduler, str(out), data_root, done)
    finally:
        bar.close()
    return [outcomes[i] for i in sorted(outcomes)]


def _workers(executor: str, jobs: int | None, threads: int | None) -> tuple[int, int]:
    """``(jobs, threads)`` of :func:`run_study`, checked, with their defaults filled in."""
    if executor not in ("local", "dask"):
        raise ValueError(f"unknown executor {executor!r}; choose local or dask")
    cores = os.cpu_count() or 1
    if jobs is None:
        jobs = cores if executor == "local" else 1
    if jobs < 1:
        raise ValueError(f"jobs must be at least 1, got {jobs}")
    if threads is not None and threads < 1:
        raise ValueError(f"threads must be at least 1, got {threads}")
    return jobs, threads or max(1, cores // jobs)


def _run_order(profile: str, runs: list[Run]) -> list[int]:
    """Indices of ``runs`` in the order they are started: experiment by experiment (in the
    profile's order), seed-major inside each, so that a complete headline grid for seed 0
    arrives first if the study is cut short."""
    rank = {e.name: k for k, e in enumerate(experiments(profile))}  # variants keep their order
    return sorted(
        range(len(runs)),
        key=lambda i: (rank[runs[i].experiment.partition("@")[0]], runs[i].seed, i),
    )


def _writable(out: Path) -> None:
    """Create the runs folder ``out``; a ValueError naming it if it cannot be written to."""
    try:
        out.mkdir(parents=True, exist_ok=True)
        probe = out / ".write-test"
        probe.write_text("ok")
        probe.unlink()
    except OSError as e:
        raise ValueError(f"results folder {out} is not writable: {e}") from e


def _run_local(runs: list[Run], order: list[int], jobs: int, results: str,
               data_root: str | None, done: Callable[[int, dict], None]) -> None:  # fmt: skip
    """Execute ``runs`` in ``order``, ``jobs`` at a time in this process; ``done(i, outcome)``
    as each finishes. An error (e.g. Ctrl-C) cancels the runs not started yet."""
    from concurrent.futures import ThreadPoolExecutor, as_completed

    # threads suffice: each run is its own papermill kernel process
    with ThreadPoolExecutor(max_workers=jobs) as pool:
        futs = {pool.submit(execute_run, runs[i], results, data_root): i for i in order}
        try:
            for f in as_completed(futs):
                done(futs[f], f.result())
        except BaseException:
            for f in futs:
                f.cancel()
            raise


def _run_dask(runs: list[Run], order: list[int], jobs: int, scheduler: str | None,
              results: str, data_root: str | None,
              done: Callable[[int, dict], None]) -> None:  # fmt: skip
    """Execute ``runs`` in ``order`` on the Dask scheduler at ``scheduler`` (else on a
    ``LocalCluster`` of ``jobs`` one-thread workers); ``done(i, outcome)`` as each finishes."""
    from dask.distributed import Client, LocalCluster, as_completed

    # silence_logs=ERROR: a worker whose papermill kernel is still exiting at shutdown
    # is killed with a WARNING that reads like a failure of a study that succeeded
    cluster = (
        LocalCluster(n_workers=jobs, threads_per_worker=1, silence_logs=logging.ERROR)
        if not scheduler
        else None
    )
    with Client(scheduler or cluster) as client:
        futs = client.map(execute_run, [runs[i] for i in order], results=results,
                          data_root=data_root, pure=False)  # fmt: skip
        index = {f.key: i for f, i in zip(futs, order, strict=True)}
        for f in as_completed(futs):
            done(index[f.key], f.result())
    if cluster is not None:
        cluster.close()


def _write_manifest(folder: Path, profile: str, runs: list[Run]) -> None:
    """``results/<profile>/grid.json``: run id -> labels (experiment, task, cell, ...)."""
    from .records import atomic_write_json

    path = folder / "grid.json"
    grid_map = read_grid(folder.parent, folder.name)  # not a map: one line naming the file
    for r in runs:
        grid_map[r.run_id] = r.labels()
    atomic_write_json(path, dict(sorted(grid_map.items())))


def status(profile: str, results: str | Path = "results", only=None) -> dict[str, list[str]]:
    """Run ids by status (:func:`record_status`): pending, running (claimed by a live runner,
    here or elsewhere), interrupted, completed, diverged, failed."""
    out = runs_dir(results, profile)
    by: dict[str, list[str]] = {s: [] for s in ("pending", "running", "interrupted", "completed",
                                                "diverged", "failed")}  # fmt: skip
    for r in grid(profile, only):
        by[record_status(out / r.run_id)].append(r.run_id)
    return by


def cost(profile: str, results: str | Path = "results", jobs: int = 2, only=None):
    """The profile's cost in CPU hours, per experiment: ``measured_h`` sums the wall time of
    the finished runs (from their records, kernel start-up excluded); ``remaining_h``
    estimates each unfinished run by the mean of the finished runs of its (experiment, task,
    cell), else of the finished runs of any experiment with the same model and budget (task,
    cell, hidden size, layer norm, epochs, batch, BPTT, training limit), else, for a language
    model, by the seconds per training character of finished runs of the same model (task,
    cell, hidden size, layer norm, BPTT; any budget or batch) times the characters it will
    train on, else NaN (nothing to estimate from); ``wall_h`` is the total on ``jobs``
    one-thread workers. The measured times are those of their machine and load."""
    import pandas as pd

    df = pd.DataFrame([_cost_row(r, runs_dir(results, profile)) for r in grid(profile, only)])
    known = df[df["finished"] & df["wall_s"].notna()]
    by_cell = known.groupby(["experiment", "task", "cell"])["wall_s"].mean()
    by_budget = known.groupby("budget")["wall_s"].mean()
    per_char = _seconds_per_character(known)
    sizes = known.dropna(subset=["train_size"]).groupby("task")["train_size"].max()
    guess = []
    for r in df.itertuples():
        g = by_cell.get((r.experiment, r.task, r.cell), by_budget.get(r.budget, float("nan")))
        if pd.isna(g) and r.model in per_char and r.task in sizes:
            limit = min(r.train_limit or sizes[r.task], sizes[r.task])
            g = per_char[r.model] * r.epochs * limit
        guess.append(g)
    df["remaining_s"] = [0.0 if f else g for f, g in zip(df["finished"], guess, strict=True)]
    table = df.groupby("experiment", sort=False).agg(
        runs=("finished", "size"), finished=("finished", "sum"),
        measured_h=("wall_s", lambda s: s.sum() / 3600),
        remaining_h=("remaining_s", lambda s: s.sum(min_count=len(s)) / 3600),
    ).reset_index()  # fmt: skip
    n = len(table)
    table.loc[n] = ["total", table["runs"].sum(), table["finished"].sum(),
                    table["measured_h"].sum(), table["remaining_h"].sum(min_count=n)]  # fmt: skip
    table["wall_h"] = (table["measured_h"] + table["remaining_h"]) / jobs
    return table


def _cost_row(r, out: Path) -> dict:
    """One grid run for :func:`cost`: its keys, and for a finished run its wall time, the
    characters it trained on (language models: steps x batch x BPTT) and the training text's
    full size from its record."""
    done = record_status(out / r.run_id) in ("completed", "diverged", "failed")
    try:
        rec = json.loads((out / r.run_id / "run.json").read_text()) if done else {}
    except (OSError, ValueError):  # a failed run may have no readable record
        rec = {}
    rec = rec if isinstance(rec, dict) else {}
    c = r.config
    epochs = rec.get("epochs") or []
    steps = epochs[-1].get("steps") if epochs and isinstance(epochs[-1], dict) else None
    lm = r.task != "fsdd"
    return {"experiment": r.experiment, "task": r.task, "cell": r.cell, "finished": done,
            "budget": (r.task, r.cell, c.hidden, c.layer_norm, c.epochs, c.batch_size, c.bptt,
                       c.train_limit),
            "model": (r.task, r.cell, c.hidden, c.layer_norm, c.bptt) if lm else None,
            "wall_s": rec.get("wall_time_s"), "epochs": c.epochs, "train_limit": c.train_limit,
            "trained": steps * c.batch_size * c.bptt if lm and steps else None,
            "train_size": ((rec.get("data") or {}).get("sizes") or {}).get("train") if lm
            else None}  # fmt: skip


def _seconds_per_character(known) -> dict:
    """Wall seconds per training character of the finished language-model runs, per model."""
    lm = known.dropna(subset=["trained"])
    lm = lm[lm["trained"] > 0]
    return {m: g["wall_s"].sum() / g["trained"].sum() for m, g in lm.groupby("model")}
