"""The experiment layer: one run, many runs, and what they decide.

The study reproduces Ott et al. 2016, *Recurrent Neural Networks With Limited Numerical
Precision*, https://arxiv.org/abs/1608.06902, on the library below it (``qrnn``,
``qrnn.data``, ``qrnn.analysis``), which never imports this folder.

**One run.** ``config`` (:class:`RunConfig`, every field with its allowed values, and the run
id), ``assemble`` (its data and model), ``loop`` (epochs and steps), ``checkpoint`` (resume
exactly), ``outcome`` (convergence, what was learned, the packed model), ``train`` (the run as
a short story of those steps), ``records`` (``run.json`` and its environment), ``runs`` (run
folders: find, status, load, export), ``runlock`` (one worker per run), ``files`` (what the
command checks about folders), ``presets`` (named settings and a run-time estimate).

**Many runs.** An *experiment* is a base configuration crossed with axes (task x cell x method
x seed, and named variants). A *profile* sizes every experiment for a machine: ``smoke`` (CI,
minutes), ``cpu`` and ``cpu-v3`` (a 2-core machine; ``qrnn study status --cost`` gives measured
and estimated hours), ``paper`` (paper-scale settings for a GPU; every choice is ours, since
the paper's settings were not published). ``grid`` holds them as data; ``runner`` executes
each run's ``notebooks/train.ipynb`` through papermill into ``results/<profile>/runs/<run-id>/``
and skips finished runs, so an interrupted study resumes where it stopped (in parallel through
``concurrent.futures`` or Dask distributed); ``lrsweep`` chooses each method's learning rate
on validation; ``provenance`` lists records not made at a clean committed revision.

**What they decide.** ``tables`` (one row per run and per group, keyed on every setting that
differs), ``verdicts`` (intervals over seeds and the verdict rules), ``evidence`` and
``decisions`` (the paper's claims per task), ``causes`` and ``noise`` (claim 5: why
binarization fails), ``summaries`` (``qrnn study summarize``), ``ptq`` and ``costs``
(post-training quantization, packed sizes and operation counts), ``baselines`` (n-gram and
non-recurrent references), ``pages`` (what the book reads and how it says it).

Importable from here: :func:`grid`, :func:`experiments`, :func:`run_study`, :func:`status`,
:func:`cost`, :func:`summarize`, :func:`claims`, :func:`post_training`, :func:`hardware` and
the grid's constants.
"""

from .costs import HARDWARE_SCHEMA, hardware, summarize_hardware
from .grid import (
    CELLS,
    CPU_LM,
    CPU_LM_SMALL,
    CPU_OVERFIT,
    METHODS,
    NOISE_METHODS,
    NORMALIZATION_METHODS,
    PROFILES,
    ROOT,
    SCALE_METHODS,
    STOCHASTIC_METHODS,
    TASKS,
    TRAIN_NOTEBOOK,
    WINDOW_METHODS,
    Experiment,
    Run,
    experiments,
    grid,
    method_fields,
    parse_only,
)
from .ptq import PTQ_METHODS, PTQ_SCHEMA, post_training, summarize_ptq
from .runner import cost, execute_notebook, execute_run, run_study, status
from .runs import record_status, runs_dir
from .summaries import (
    NORMALIZATIONS,
    claims,
    collect,
    groups,
    init_table,
    normalization_table,
    summarize,
    unigram_baseline,
    unlabelled,
)

__all__ = [
    "CELLS",
    "CPU_LM",
    "CPU_LM_SMALL",
    "CPU_OVERFIT",
    "HARDWARE_SCHEMA",
    "METHODS",
    "NOISE_METHODS",
    "NORMALIZATIONS",
    "NORMALIZATION_METHODS",
    "PROFILES",
    "PTQ_METHODS",
    "PTQ_SCHEMA",
    "ROOT",
    "SCALE_METHODS",
    "STOCHASTIC_METHODS",
    "TASKS",
    "TRAIN_NOTEBOOK",
    "WINDOW_METHODS",
    "Experiment",
    "Run",
    "claims",
    "collect",
    "cost",
    "execute_notebook",
    "execute_run",
    "experiments",
    "grid",
    "groups",
    "hardware",
    "init_table",
    "method_fields",
    "normalization_table",
    "parse_only",
    "post_training",
    "record_status",
    "run_study",
    "runs_dir",
    "status",
    "summarize",
    "summarize_hardware",
    "summarize_ptq",
    "unigram_baseline",
    "unlabelled",
]
