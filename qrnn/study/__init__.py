"""The study: the paper's grid as data, profiles, a resumable parallel runner, and summaries.

The study reproduces Ott et al. 2016, *Recurrent Neural Networks With Limited Numerical
Precision*, https://arxiv.org/abs/1608.06902.

An *experiment* is a base configuration crossed with axes (task x cell x method x seed).
A *profile* sizes every experiment for a machine: ``smoke`` (CI, minutes), ``cpu`` (the
default, sized for a 2-core machine; ``qrnn study status --cost`` gives its measured and
estimated hours), ``paper`` (paper-scale settings for a GPU; every choice is ours, since the
paper's settings were not published).

Each run executes ``notebooks/train.ipynb`` through papermill; the executed notebook is kept
next to the run record in ``results/<profile>/runs/<run-id>/``. Runs whose record is complete
(or diverged) are skipped, so an interrupted study resumes where it stopped. Runs execute in
parallel through ``concurrent.futures`` (local) or Dask distributed (``executor="dask"``).

One module per concern, their names importable from here:

* ``qrnn.study.grid``: methods, tasks, experiments, profiles, :func:`grid`;
* ``qrnn.study.runner``: :func:`execute_run`, :func:`run_study`, :func:`status`, :func:`cost`;
* ``qrnn.study.summaries``: :func:`summarize` (tables and claims: ``qrnn.study.tables``; it refuses
  finished runs without labels in ``grid.json``, :func:`unlabelled`), :func:`init_table`,
  :func:`unigram_baseline`;
* ``qrnn.study.ptq``: :func:`post_training`, :func:`summarize_ptq`;
* ``qrnn.study.costs``: :func:`hardware`, :func:`summarize_hardware`.
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
