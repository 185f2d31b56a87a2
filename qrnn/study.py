"""The study: the paper's grid as data, profiles, a resumable parallel runner, and summaries.

An *experiment* is a base configuration crossed with axes (task x cell x method x seed).
A *profile* sizes every experiment for a machine: ``smoke`` (CI, minutes), ``cpu`` (the
default; the main grid and the overfitting experiment with 3 seeds in about 3 hours on 2
cores, the normalization and layernorm experiments about 1.5 hours more), ``paper`` (paper-scale
settings for a GPU; every choice is ours, since the paper's settings were not published).

Each run executes ``notebooks/train.ipynb`` through papermill; the executed notebook is kept
next to the run record in ``results/<profile>/runs/<run-id>/``. Runs whose record is complete
(or diverged) are skipped, so an interrupted study resumes where it stopped. Runs execute in
parallel through ``concurrent.futures`` (local) or Dask distributed (``executor="dask"``).
"""

from __future__ import annotations

import dataclasses
import itertools
import json
import logging
import math
import os
import time
import traceback
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from . import tables as _tables
from .runs import record_status, runs_dir, trained
from .train import RunConfig, run_id

ROOT = Path(__file__).resolve().parent.parent
TRAIN_NOTEBOOK = ROOT / "notebooks" / "train.ipynb"

# (label, scheme, stochastic). pow2-ternary is deterministic in the paper.
METHODS: tuple[tuple[str, str, bool], ...] = (
    ("float", "float", False),
    ("binary-det", "binary", False),
    ("binary-stoch", "binary", True),
    ("ternary-det", "ternary", False),
    ("ternary-stoch", "ternary", True),
    ("pow2-ternary", "pow2-ternary", False),
    ("exponential-det", "exponential", False),
    ("exponential-stoch", "exponential", True),
)
# the stochastic methods of the overfitting experiment (claim 3); pow2 stochastic is our extension
STOCHASTIC_METHODS = ("float", "binary-stoch", "ternary-stoch", "pow2-stoch", "exponential-stoch")
# the normalization-rescue experiment (issue: Hou et al. 2019, Ardakani et al. 2019)
NORMALIZATION_METHODS = ("float", "binary-det", "binary-stoch", "ternary-det", "ternary-stoch")
# issue 14: which of scale, zeros and noise makes binary weights fail. Binary with a scale
# that depends on the matrix (Glorot bound; the shadow tensor's RMS), and float weights with
# zero-mean noise of the per-weight variance of binary-stoch / ternary-stoch rounding.
SCALE_METHODS = ("binary-glorot-det", "binary-glorot-stoch", "binary-rms-det", "binary-rms-stoch")
NOISE_METHODS = ("float-noise-binary", "float-noise-ternary")
# label -> the RunConfig fields that define the method
_METHOD: dict[str, dict[str, Any]] = {
    label: {"scheme": scheme, "stochastic": stoch} for label, scheme, stoch in METHODS
}
_METHOD["pow2-stoch"] = {"scheme": "pow2-ternary", "stochastic": True}
for _scale in ("glorot", "rms"):
    for _mode, _stoch in (("det", False), ("stoch", True)):
        _METHOD[f"binary-{_scale}-{_mode}"] = {
            "scheme": "binary", "stochastic": _stoch, "quantizer_options": {"scale": _scale}
        }  # fmt: skip
for _match in ("binary", "ternary"):
    _METHOD[f"float-noise-{_match}"] = {"scheme": "float", "weight_noise": _match}


def method_fields(label: str) -> dict[str, Any]:
    """The RunConfig fields of a method label (``binary-det``, ``float-noise-binary`` ...)."""
    if label not in _METHOD:
        raise ValueError(f"unknown method {label!r}; known: {', '.join(_METHOD)}")
    return dict(_METHOD[label])


# task label -> RunConfig fields
TASKS: dict[str, dict[str, Any]] = {
    "ptb-char": {"task": "ptb-char"},
    "fsdd": {"task": "fsdd", "split": "standard"},
    "fsdd-speakers": {"task": "fsdd", "split": "speakers"},
}
PROFILES = ("smoke", "cpu", "paper", "paper-dry")
# the GPU window of the paper profile (issue 18): float and one of each method family
WINDOW_METHODS = ("float", "binary-det", "ternary-det", "ternary-stoch", "exponential-det")
CELLS = ("rnn", "gru", "lstm")


@dataclass(frozen=True)
class Experiment:
    """A base configuration per task crossed with cells, methods and seeds."""

    name: str
    tasks: dict[str, dict[str, Any]]  # task label -> RunConfig fields for that task
    cells: tuple[str, ...] = CELLS
    methods: tuple[str, ...] = tuple(m[0] for m in METHODS)
    seeds: tuple[int, ...] = (0, 1, 2)
    description: str = ""


@dataclass(frozen=True)
class Run:
    """One cell of the grid."""

    experiment: str
    task: str  # task label (ptb-char, fsdd, fsdd-speakers)
    cell: str
    method: str
    seed: int
    config: RunConfig = field(compare=False)

    @property
    def run_id(self) -> str:
        return run_id(self.config)

    def labels(self) -> dict[str, Any]:
        return {
            "experiment": self.experiment,
            "task": self.task,
            "cell": self.cell,
            "method": self.method,
            "seed": self.seed,
        }


# ------------------------------------------------------------------------------ profiles
def _lm(**kw) -> dict:
    return {"task": "ptb-char", **kw}


def experiments(profile: str) -> list[Experiment]:
    """The experiments of a profile. Sizes are ours and documented here.

    ``cpu`` sizing (measured on the 2-core machine, one thread per run, two runs at a time):
    PTB-char uses the first 1M training characters (of 5.0M), hidden 128, BPTT 100, batch 64,
    4 epochs, validated and tested on the full splits; spoken digits use hidden 64, 15 epochs.
    The overfitting experiment trains an LSTM with 256 units for 20 epochs on the first 100k
    characters so that float overfits (claim 3 needs that regime). The normalization
    experiment repeats the PTB-char and standard-split digit settings with weight
    normalization for float, binary and ternary weights; the layernorm experiment does the
    same with layer-normalized pre-activations for the LSTM (it runs the reference cells in a
    Python time loop, about 2-3x slower, hence LSTM only).
    """
    if profile not in PROFILES:
        raise ValueError(f"unknown profile {profile!r}; choose one of {', '.join(PROFILES)}")
    fsdd_common = {"batch_size": 32, "lr": 3e-3, "input_norm": "batch", "early_stop": 4}
    if profile == "smoke":
        lm = _lm(hidden=16, epochs=2, bptt=20, batch_size=8, train_limit=4000, eval_limit=2000)
        sp = {**fsdd_common, "hidden": 8, "epochs": 2, "batch_size": 16, "train_limit": 64,
              "eval_limit": 32}  # fmt: skip
        return [
            Experiment(
                "main",
                {"ptb-char": lm, "fsdd": {**TASKS["fsdd"], **sp}},
                cells=("gru",),
                methods=("float", "binary-det", "ternary-stoch"),
                seeds=(0,),
                description="the whole pipeline on tiny settings",
            ),
            Experiment(
                "overfit",
                {"ptb-char": {**lm, "epochs": 3, "early_stop": 0}},
                cells=("lstm",),
                methods=("float", "ternary-stoch"),
                seeds=(0,),
            ),
        ]
    if profile == "cpu":
        return _cpu_experiments(fsdd_common)
    if profile == "paper-dry":  # the GPU window's grid at toy sizes, for a CPU check
        tiny = _lm(hidden=16, embed=8, init="glorot", bptt=20, batch_size=8, epochs=1,
                   train_limit=8000, eval_limit=4000)  # fmt: skip
        return [Experiment("window", {"ptb-char": tiny}, cells=("lstm",),
                           methods=WINDOW_METHODS, seeds=(0,))]  # fmt: skip
    # paper: PTB-char 1 layer x 1000 units, BPTT 100, batch 64, Adam 2e-3 (our choices)
    lm = _lm(hidden=1000, bptt=100, batch_size=64, epochs=30, lr=2e-3, early_stop=4)
    sp = {**fsdd_common, "hidden": 256, "epochs": 40, "early_stop": 8}
    window = _lm(hidden=1000, embed=64, init="glorot", bptt=100, batch_size=64, epochs=8,
                 early_stop=0)  # fmt: skip
    return [
        Experiment(
            "window",
            {"ptb-char": window},
            cells=("lstm",),
            methods=WINDOW_METHODS,
            seeds=(0,),
            description="what fits a 10-minute window on one large GPU (scripts/paper_window.py)",
        ),
        Experiment(
            "main",
            {
                "ptb-char": lm,
                "fsdd": {**TASKS["fsdd"], **sp},
                "fsdd-speakers": {**TASKS["fsdd-speakers"], **sp},
            },
        ),
        Experiment(
            "overfit",
            {"ptb-char": _lm(hidden=1000, epochs=40, train_limit=1_000_000, early_stop=0)},
            cells=("lstm",),
            methods=STOCHASTIC_METHODS,
        ),
    ]


# cpu profile: PTB-char headline (issue 12). Full training text (5.0M characters), a 32-wide
# embedding, Glorot-uniform init per gate block with zero biases (the same for every method;
# `init` is recorded, torch's default stays available), LSTM 256, BPTT 100 x batch 64
# (784 optimizer steps per epoch), Adam 2e-3 halved when validation stops improving, at most
# 5 epochs. About 190 s per epoch with two 1-thread runs at once.
CPU_LM = _lm(hidden=256, embed=32, init="glorot", bptt=100, batch_size=64, epochs=5,
             early_stop=2)  # fmt: skip
# the other PTB cells at a smaller budget (labelled as such in the book): 128 units, 2 epochs
CPU_LM_SMALL = {**CPU_LM, "hidden": 128, "epochs": 2}
# overfitting regime (claim 3): the same LSTM on the first 250k training characters, batch
# 32, 30 epochs, no early stop; float's best validation epoch then comes before its last
CPU_OVERFIT = {**CPU_LM, "train_limit": 250_000, "batch_size": 32, "epochs": 30,
               "early_stop": 0}  # fmt: skip


def _cpu_experiments(fsdd_common: dict) -> list[Experiment]:
    """The cpu profile (sizes measured on the 2-core machine, one thread per run, two runs at
    a time). Experiments in the order the runner takes them."""
    sp = {**fsdd_common, "hidden": 64, "epochs": 15, "init": "glorot"}
    fsdd, speakers = {**TASKS["fsdd"], **sp}, {**TASKS["fsdd-speakers"], **sp}
    return [
        Experiment("main", {"ptb-char": CPU_LM}, cells=("lstm",),
                   description="PTB-char LSTM 256: every method, 3 seeds (the headline)"),
        Experiment("scale", {"ptb-char": CPU_LM}, cells=("lstm",), methods=SCALE_METHODS,
                   description="binary with a matrix-dependent scale (issue 14: scale)"),
        Experiment("noise", {"ptb-char": CPU_LM}, cells=("lstm",), methods=NOISE_METHODS,
                   description="float + noise matched to binary/ternary rounding (issue 14)"),
        Experiment("digits", {"fsdd": fsdd, "fsdd-speakers": speakers}, seeds=(0, 1, 2, 3, 4),
                   description="spoken digits: split x cell x method x 5 seeds"),
        Experiment("digits-cause", {"fsdd": fsdd}, cells=("gru",),
                   methods=SCALE_METHODS + NOISE_METHODS, seeds=(0, 1, 2, 3, 4),
                   description="the scale and noise controls on digits (GRU, issue 14)"),
        Experiment("overfit", {"ptb-char": CPU_OVERFIT}, cells=("lstm",),
                   methods=STOCHASTIC_METHODS,
                   description="small training text, many epochs: float overfits (claim 3)"),
        Experiment("ptb-cells", {"ptb-char": CPU_LM_SMALL}, cells=("rnn", "gru"),
                   description="PTB-char vanilla RNN and GRU at a smaller budget"),
        Experiment("normalization",
                   {"ptb-char": {**CPU_LM, "weight_norm": True}, "fsdd": {**fsdd,
                    "weight_norm": True}},
                   cells=("lstm",), methods=NORMALIZATION_METHODS,
                   description="weight normalization of the quantized matrices: does it "
                   "rescue binary weights?"),
        Experiment("layernorm",
                   {"ptb-char": {**CPU_LM, "layer_norm": True}, "fsdd": {**fsdd,
                    "layer_norm": True}},
                   cells=("lstm",), methods=NORMALIZATION_METHODS,
                   description="layer normalization of the gate pre-activations (Hou et al. "
                   "2019; reference cells in a time loop, LSTM only)"),
    ]  # fmt: skip


def parse_only(only: Iterable[str] | None) -> dict[str, set[str]]:
    """``--only key=v1,v2`` filters (keys: experiment, task, cell, method, seed)."""
    keys = ("experiment", "task", "cell", "method", "seed")
    out: dict[str, set[str]] = {}
    for item in only or ():
        key, sep, values = item.partition("=")
        if not sep or key not in keys or not values:
            raise ValueError(
                f"malformed filter {item!r}; use KEY=V1[,V2...] with KEY one of {', '.join(keys)}"
            )
        out.setdefault(key, set()).update(v for v in values.split(",") if v)
    return out


def grid(profile: str, only: Iterable[str] | None = None, threads: int = 1) -> list[Run]:
    """Every run of ``profile`` (optionally filtered), in a fixed order."""
    filters = parse_only(only)
    exps = experiments(profile)
    known = {
        "experiment": {e.name for e in exps},
        "task": {t for e in exps for t in e.tasks},
        "cell": {c for e in exps for c in e.cells},
        "method": {m for e in exps for m in e.methods},
        "seed": {str(s) for e in exps for s in e.seeds},
    }
    for key, values in filters.items():
        bad = sorted(values - known[key])
        if bad:
            raise ValueError(
                f"--only {key}: unknown {', '.join(bad)}; the {profile} profile has "
                f"{', '.join(sorted(known[key]))}"
            )
    runs = []
    for e in exps:
        for task, cell, method, seed in itertools.product(e.tasks, e.cells, e.methods, e.seeds):
            labels = {"experiment": e.name, "task": task, "cell": cell, "method": method,
                      "seed": str(seed)}  # fmt: skip
            if any(labels[k] not in v for k, v in filters.items()):
                continue
            cfg = RunConfig(
                **{**e.tasks[task], "cell": cell, **method_fields(method), "seed": seed,
                   "threads": threads}
            )  # fmt: skip
            runs.append(Run(e.name, task, cell, method, seed, cfg))
    return runs


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

    The run is claimed first (:func:`qrnn.runlock.acquire`); a run another runner holds is
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
    executor: str = "local",
    scheduler: str | None = None,
    data_root: str | None = None,
    quiet: bool = False,
    on_result: Callable[[Run, dict], None] | None = None,
) -> list[dict]:
    """Run (or resume) a profile's grid; returns one outcome per run, in grid order.

    ``executor="local"``: ``jobs`` runs at a time (default: one per core; each run gets
    ``cores // jobs`` threads: two 1-thread runs beat one 2-thread run on this CPU).
    ``executor="dask"``: submit to the Dask scheduler at ``scheduler`` (``None`` starts a
    ``LocalCluster``).
    """
    if executor not in ("local", "dask"):
        raise ValueError(f"unknown executor {executor!r}; choose local or dask")
    cores = os.cpu_count() or 1
    if jobs is None:
        jobs = cores if executor == "local" else 1
    if jobs < 1:
        raise ValueError(f"jobs must be at least 1, got {jobs}")
    threads = max(1, cores // jobs)
    runs = grid(profile, only, threads=threads)
    # experiment by experiment (in the profile's order), seed-major inside each: a complete
    # headline grid for seed 0 arrives first if the study is cut short
    rank = {e.name: k for k, e in enumerate(experiments(profile))}
    order = sorted(range(len(runs)), key=lambda i: (rank[runs[i].experiment], runs[i].seed, i))
    out = runs_dir(results, profile)
    try:
        out.mkdir(parents=True, exist_ok=True)
        probe = out / ".write-test"
        probe.write_text("ok")
        probe.unlink()
    except OSError as e:
        raise ValueError(f"results folder {out} is not writable: {e}") from e
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

    args = (str(out), data_root)
    try:
        if executor == "local":
            from concurrent.futures import ThreadPoolExecutor, as_completed

            # threads suffice: each run is its own papermill kernel process
            with ThreadPoolExecutor(max_workers=jobs) as pool:
                futs = {pool.submit(execute_run, runs[i], *args): i for i in order}
                try:
                    for f in as_completed(futs):
                        done(futs[f], f.result())
                except BaseException:
                    for f in futs:
                        f.cancel()
                    raise
        else:
            from dask.distributed import Client, LocalCluster, as_completed

            # silence_logs=ERROR: a worker whose papermill kernel is still exiting at shutdown
            # is killed with a WARNING that reads like a failure of a study that succeeded
            cluster = (
                LocalCluster(n_workers=jobs, threads_per_worker=1, silence_logs=logging.ERROR)
                if not scheduler
                else None
            )
            with Client(scheduler or cluster) as client:
                futs = client.map(execute_run, [runs[i] for i in order], results=args[0],
                                  data_root=data_root, pure=False)  # fmt: skip
                index = {f.key: i for f, i in zip(futs, order, strict=True)}
                for f in as_completed(futs):
                    done(index[f.key], f.result())
            if cluster is not None:
                cluster.close()
    finally:
        bar.close()
    return [outcomes[i] for i in sorted(outcomes)]


def _write_manifest(folder: Path, profile: str, runs: list[Run]) -> None:
    """``results/<profile>/grid.json``: run id -> labels (experiment, task, cell, ...)."""
    from .records import atomic_write_json

    path = folder / "grid.json"
    grid_map = json.loads(path.read_text()) if path.exists() else {}
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


# ------------------------------------------------------------------------------ summaries
def unigram_baseline(task: str = "ptb-char", data_root: str | None = None) -> float:
    """Bits per symbol on validation of the training text's symbol frequencies (PTB-char:
    about 4.34 BPC; uniform guessing over 50 symbols gives log2(50) = 5.64)."""
    import torch

    from .data import load_text

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

    from .records import atomic_write_bytes
    from .train import LM_TASKS, build_model, derive_seeds, weight_stats

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


# ------------------------------------------------------------------------------ post-training
def _trained_dir(run: Run, results, profile: str) -> Path | None:
    """The run's folder if it completed and kept its best weights (``model.pt`` or the packed
    ``model.npz``), else None."""
    run_dir = runs_dir(results, profile) / run.run_id
    return run_dir if trained(run_dir) else None


def _cached_data(cache: dict, cfg: RunConfig, data_root):
    """The data of ``cfg``'s task and split, loaded once per ``cache``."""
    from .train import load_data

    key = (cfg.task, cfg.split)
    if key not in cache:
        cache[key] = load_data(cfg, data_root, progress=False)
    return cache[key]


PTQ_METHODS = ("binary-det", "ternary-det", "pow2-ternary", "exponential-det")
PTQ_SCHEMA = "qrnn.ptq/1"


def post_training(
    profile: str = "cpu",
    results: str | Path = "results",
    *,
    data_root: str | None = None,
    only: Iterable[str] | None = None,
) -> list[dict]:
    """Post-training quantization: every finished float run of the ``main`` experiment that has
    its best weights (``model.pt``) is quantized with each deterministic method, without
    retraining, and evaluated on its test split. One record per (float run, method) is written
    to ``results/<profile>/ptq/<float-run-id>/<method>.json`` (schema ``qrnn.ptq/1``);
    existing records are kept. Returns the records."""
    import torch

    from .export import post_training_quantize
    from .runs import load_model
    from .train import evaluate

    out_dir = Path(results) / profile / "ptq"
    floats = [r for r in grid(profile, only) if r.experiment == "main" and r.method == "float"]
    made, cache = [], {}
    for run in floats:
        run_dir = _trained_dir(run, results, profile)
        if run_dir is None:
            continue
        model, rec = load_model(run_dir)
        cfg = run.config
        data = _cached_data(cache, cfg, data_root)
        for method in PTQ_METHODS:
            path = out_dir / run.run_id / f"{method}.json"
            if path.exists():
                made.append(json.loads(path.read_text()))
                continue
            scheme = _METHOD[method]["scheme"]
            t0 = time.perf_counter()
            with torch.no_grad():
                test = evaluate(post_training_quantize(model, scheme), data.test, cfg)
            trained = next(
                (
                    r
                    for r in grid(profile)
                    if r.experiment == "main"
                    and r.task == run.task
                    and r.cell == run.cell
                    and r.seed == run.seed
                    and r.method == method
                ),
                None,
            )  # fmt: skip  (the training-time counterpart, when the profile has one)
            ptq = {
                "schema": PTQ_SCHEMA,
                **run.labels(),
                "method": method,
                "scheme": scheme,
                "float_run_id": run.run_id,
                "trained_run_id": trained.run_id if trained else None,
                "metric": rec["metric"]["name"],
                "float_test": rec["test"]["metric"],
                "test": test["metric"],
                "test_loss": test["loss"],
            }
            made.append(_write_timed_record(path, ptq, t0))
    return made


def _write_timed_record(path: Path, rec: dict, t0: float) -> dict:
    """Add the seconds since ``t0``, the environment and the time, and write ``rec`` atomically."""
    import torch

    from . import records

    rec.update(
        seconds=time.perf_counter() - t0,
        environment=records.environment("cpu", torch.get_num_threads()),
        created=records.now(),
    )
    records.atomic_write_json(path, rec)
    return rec


def summarize_ptq(profile: str = "cpu", results: str | Path = "results"):
    """``ptq.csv``: post-training vs training-time quantization per task, cell and method
    (means over seeds). ``gain`` is ``ptq - trained`` in the metric's units (lower is better
    for both metrics, so positive: quantizing during training beats quantizing afterwards).
    ``recovered`` is the share of the post-training loss that training wins back,
    ``gain / (ptq - float)``; it is only defined where post-training quantization loses
    accuracy (``ptq > float``): elsewhere there is nothing to recover and it is NaN, so its sign
    always means the same (1: all of the loss, above 1: better than float, below 0: worse than
    quantizing afterwards)."""
    import pandas as pd

    from .records import atomic_write_bytes

    rows = [json.loads(p.read_text()) for p in sorted(
        (Path(results) / profile / "ptq").glob("*/*.json"))]  # fmt: skip
    if not rows:
        raise ValueError(f"no post-training records under {Path(results) / profile / 'ptq'}")
    ptq = pd.DataFrame(rows)
    trained = {}
    for r in rows:
        if r["trained_run_id"] is None:
            continue
        rec = runs_dir(results, profile) / r["trained_run_id"] / "run.json"
        if rec.exists():
            d = json.loads(rec.read_text())
            trained[r["trained_run_id"]] = d["test"]["metric"] if d["test"] else math.nan
    ptq["trained_test"] = ptq["trained_run_id"].map(trained)
    table = (
        ptq.groupby(["task", "cell", "method"], sort=False)
        .agg(
            metric=("metric", "first"),
            float_test=("float_test", "mean"),
            ptq_test=("test", "mean"),
            trained_test=("trained_test", "mean"),
            n=("test", "count"),
        )
        .reset_index()
    )
    table["gain"] = table["ptq_test"] - table["trained_test"]
    loss = table["ptq_test"] - table["float_test"]
    table["recovered"] = (table["gain"] / loss).where(loss > 0)
    atomic_write_bytes(Path(results) / profile / "ptq.csv", table.to_csv(index=False).encode())
    return table


# ------------------------------------------------------------------------------ hardware
HARDWARE_SCHEMA = "qrnn.hardware/1"


def hardware(
    profile: str = "cpu",
    results: str | Path = "results",
    *,
    data_root: str | None = None,
    only: Iterable[str] | None = None,
    seq_len: int = 100,
    recordings: int = 8,
) -> list[dict]:
    """What the hardware gains, measured on the trained models: every finished run of the
    ``main`` experiment with its weights (``model.pt``) is packed (:func:`qrnn.export.pack_model`)
    and unpacked (outputs must be identical), its recurrent layer's operations and energy per
    step are counted (:mod:`qrnn.hardware`), and the multiplication-free integer path is run on
    real test inputs (PTB: the first ``seq_len`` test characters; digits: the first
    ``recordings`` test recordings) against the float evaluation of the same quantized model.
    One record per run: ``results/<profile>/hardware/<run-id>.json`` (schema
    ``qrnn.hardware/1``); existing records are kept. Returns the records."""
    import tempfile

    import torch

    from .data import speech_batches
    from .export import load_packed, pack_model, size_report
    from .hardware import energy_pj, integer_model_forward, step_ops
    from .runs import load_model
    from .train import LM_TASKS

    out_dir = Path(results) / profile / "hardware"
    made, cache = [], {}
    for run in grid(profile, only):
        run_dir = runs_dir(results, profile) / run.run_id
        path = out_dir / f"{run.run_id}.json"
        if run.experiment != "main":
            continue
        if path.exists():
            made.append(json.loads(path.read_text()))
            continue
        if _trained_dir(run, results, profile) is None:
            continue
        t0 = time.perf_counter()
        model, _ = load_model(run_dir)
        cfg = run.config
        data = _cached_data(cache, cfg, data_root)
        lm = cfg.task in LM_TASKS
        if lm:
            inputs = (data.test[:seq_len].unsqueeze(1),)  # (T, 1)
        else:
            x, lens, _ = next(iter(speech_batches(data.test, recordings, shuffle=False)))
            inputs = (x, lens)
        with torch.no_grad():
            ref = model(*inputs)
            ref = ref[0] if isinstance(ref, tuple) else ref
            with tempfile.TemporaryDirectory() as tmp:
                f = Path(tmp) / "model.npz"
                pack_model(model, f, {"run_id": run.run_id})
                size = size_report(model, f)
                back = load_packed(f)(*inputs)
            back = back[0] if isinstance(back, tuple) else back
            integer_diff = integer_agree = None
            if cfg.scheme != "float":
                out = integer_model_forward(model, *inputs)
                out = out[0] if isinstance(out, tuple) else out
                integer_diff = float((out - ref).abs().max())
                integer_agree = float((out.argmax(-1) == ref.argmax(-1)).double().mean())
        ops = step_ops(model.rnn)
        rec_hw = {
            "schema": HARDWARE_SCHEMA,
            **run.labels(),
            "run_id": run.run_id,
            "scheme": cfg.scheme,
            "size": size,
            "unpacked_identical": bool(torch.equal(back, ref)),
            "ops_per_step": ops,
            "energy_pj_per_step": {"sram": energy_pj(ops, "sram"), "dram": energy_pj(ops, "dram")},
            "integer_max_abs_diff": integer_diff,
            "integer_same_prediction": integer_agree,
            "integer_inputs": f"first {seq_len} test characters"
            if lm
            else f"first {recordings} test recordings",
        }
        made.append(_write_timed_record(path, rec_hw, t0))
    return made


def summarize_hardware(profile: str = "cpu", results: str | Path = "results"):
    """``hardware.csv``: per task, cell and method (means over the seeds' records) the packed
    file size against fp32, operations and energy per step, and the integer path's largest
    deviation from the float evaluation (and the smallest share of equal predictions)."""
    import pandas as pd

    from .records import atomic_write_bytes

    paths = sorted((Path(results) / profile / "hardware").glob("*.json"))
    if not paths:
        raise ValueError(f"no hardware records under {Path(results) / profile / 'hardware'}")
    rows = []
    for p in paths:
        r = json.loads(p.read_text())
        ops = r["ops_per_step"]
        rows.append({
            "task": r["task"], "cell": r["cell"], "method": r["method"], "seed": r["seed"],
            "file_bytes": r["size"]["file_bytes"], "fp32_bytes": r["size"]["fp32_bytes"],
            "ratio": r["size"]["ratio"], "quantized_ratio": r["size"]["quantized_ratio"],
            "unpacked_identical": r["unpacked_identical"],
            "weight_bits": ops["weight_bits"], "fp32_mult": ops["fp32_mult"],
            "fp32_add": ops["fp32_add"], "int32_mult": ops["int32_mult"],
            "int32_add": ops["int32_add"], "shift": ops["shift"], "sign_flip": ops["sign_flip"],
            "zero_fraction": ops["zero_fraction"],
            "energy_sram_pj": r["energy_pj_per_step"]["sram"]["total"],
            "energy_dram_pj": r["energy_pj_per_step"]["dram"]["total"],
            "arith_pj": r["energy_pj_per_step"]["sram"]["arithmetic"],
            "integer_max_abs_diff": r["integer_max_abs_diff"],
            "integer_same_prediction": r.get("integer_same_prediction"),
        })  # fmt: skip
    df = pd.DataFrame(rows)
    num = [c for c in df.columns if c not in ("task", "cell", "method", "seed")]
    agg = {c: "mean" for c in num}
    agg.update(unpacked_identical="all", integer_max_abs_diff="max", integer_same_prediction="min")
    table = df.groupby(["task", "cell", "method"], sort=False).agg(agg).reset_index()
    table.insert(3, "n", df.groupby(["task", "cell", "method"], sort=False).size().values)
    atomic_write_bytes(Path(results) / profile / "hardware.csv", table.to_csv(index=False).encode())
    return table
