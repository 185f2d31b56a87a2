"""The study's grid as data: methods, tasks, experiments, the profiles that size them for a
machine, and :func:`grid`, the runs of a profile. The grid follows Ott et al. 2016,
*Recurrent Neural Networks With Limited Numerical Precision*, https://arxiv.org/abs/1608.06902
(every choice the paper left open is ours).
"""

from __future__ import annotations

import itertools
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from .config import RunConfig, run_id

ROOT = Path(__file__).resolve().parent.parent.parent  # the checkout (notebooks/, results/)
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
METHOD_CONFIG: dict[str, dict[str, Any]] = {
    label: {"scheme": scheme, "stochastic": stoch} for label, scheme, stoch in METHODS
}
METHOD_CONFIG["pow2-stoch"] = {"scheme": "pow2-ternary", "stochastic": True}
for _scale in ("glorot", "rms"):
    for _mode, _stoch in (("det", False), ("stoch", True)):
        METHOD_CONFIG[f"binary-{_scale}-{_mode}"] = {
            "scheme": "binary", "stochastic": _stoch, "quantizer_options": {"scale": _scale}
        }  # fmt: skip
for _match in ("binary", "ternary"):
    METHOD_CONFIG[f"float-noise-{_match}"] = {"scheme": "float", "weight_noise": _match}
# study v3 (issue 26). What closes the ternary gap: shadow clipping off, twice the Glorot W0,
# a learned scale (weight normalization), float biases.
TERNARY_VARIANTS = {
    "noclip": {"clip_shadow": "off"},
    "2w0": {"quantizer_options": {"scale": "glorot*2"}},
    "wn": {"weight_norm": True},
    "fpbias": {"quantize_bias": False},
}
for _mode, _stoch in (("det", False), ("stoch", True)):
    for _v, _fields in TERNARY_VARIANTS.items():
        METHOD_CONFIG[f"ternary-{_mode}-{_v}"] = {
            "scheme": "ternary",
            "stochastic": _stoch,
            **_fields,
        }
# claim 5 as a dose-response: float + noise of binary-stoch's variance H^2 - w^2 at several H,
# and at H = 1 on the recurrent or the input matrices only (biases noise-free)
NOISE_DOSES = ("glorot", "0.25", "0.5")
for _h in NOISE_DOSES:
    METHOD_CONFIG[f"float-noise-binary-{_h}"] = {"scheme": "float", "weight_noise": f"binary:{_h}"}
_NOISE_ONLY = {"scheme": "float", "weight_noise": "binary", "quantize_bias": False}
METHOD_CONFIG["float-noise-binary-rec"] = {**_NOISE_ONLY, "quantize_input": False}
METHOD_CONFIG["float-noise-binary-in"] = {**_NOISE_ONLY, "quantize_recurrent": False}
# claim 3's references: float at a constant learning rate (its best epoch is tested), float
# with dropout before the output layer
METHOD_CONFIG["float-const"] = {"scheme": "float", "lr_schedule": "plateau", "lr_decay": 1.0}
for _p in (0.1, 0.3):
    METHOD_CONFIG[f"float-dropout-{_p:g}"] = {"scheme": "float", "dropout": _p}


def base_method(label: str) -> str:
    """The method whose learning rate a derived method uses (``ternary-det-2w0`` ->
    ``ternary-det``, ``float-noise-binary-rec`` -> ``float``, ``pow2-stoch`` -> pow2)."""
    if label.startswith("float"):
        return "float"
    if label == "pow2-stoch":
        return "pow2-ternary"
    for m, _, _ in METHODS:
        if label == m or label.startswith(m + "-"):
            return m
    raise ValueError(f"method {label!r} has no base method")


def method_fields(label: str) -> dict[str, Any]:
    """The RunConfig fields of a method label (``binary-det``, ``float-noise-binary`` ...)."""
    if label not in METHOD_CONFIG:
        raise ValueError(f"unknown method {label!r}; known: {', '.join(METHOD_CONFIG)}")
    return dict(METHOD_CONFIG[label])


# task label -> RunConfig fields
TASKS: dict[str, dict[str, Any]] = {
    "ptb-char": {"task": "ptb-char"},
    "fsdd": {"task": "fsdd", "split": "standard"},
    "fsdd-speakers": {"task": "fsdd", "split": "speakers"},
}
PROFILES = ("smoke", "cpu", "cpu-v3", "paper", "paper-dry")
# the GPU window of the paper profile (issue 18): float and one of each method family
WINDOW_METHODS = ("float", "binary-det", "ternary-det", "ternary-stoch", "exponential-det")
METHOD_LABELS = tuple(m[0] for m in METHODS)
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
    # named settings crossed with the rest (e.g. the learning rates of a sweep): a run of
    # variant ``v`` belongs to experiment ``name@v``, so tables never pool two variants
    variants: tuple[tuple[str, dict[str, Any]], ...] = (("", {}),)
    # per-method settings (e.g. each method's own learning rate, chosen on validation)
    per_method: dict[str, dict[str, Any]] = field(default_factory=dict)

    def label(self, variant: str) -> str:
        return f"{self.name}@{variant}" if variant else self.name


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

    ``cpu`` sizing: see :data:`CPU_LM` (the PTB headline: full training text, LSTM 256, 5
    epochs), :data:`CPU_LM_SMALL` (the other PTB cells), :data:`CPU_OVERFIT` (claim 3's
    regime) and :func:`_cpu_experiments` (digits: GRU / LSTM / RNN 64, 15 epochs, 5 seeds).
    The normalization and layernorm experiments repeat the PTB-char and standard-split digit
    settings with weight normalization / layer-normalized pre-activations (the latter runs the
    reference cells in a Python time loop, hence LSTM only, and on PTB at the ptb-cells
    budget, whose LSTM is its unnormalized twin). ``qrnn study status --cost``
    gives the measured hours.
    """
    if profile not in PROFILES:
        raise ValueError(f"unknown profile {profile!r}; choose one of {', '.join(PROFILES)}")
    fsdd_common = {"batch_size": 32, "lr": 3e-3, "input_norm": "batch", "early_stop": 4}
    if profile == "smoke":
        return _smoke_experiments(fsdd_common)
    if profile == "cpu":
        return _cpu_experiments(fsdd_common)
    if profile == "cpu-v3":
        return _cpu_v3_experiments()
    if profile == "paper-dry":  # the GPU window's grid at toy sizes, for a CPU check
        tiny = _lm(hidden=16, embed=8, init="glorot", bptt=20, batch_size=8, epochs=1,
                   train_limit=8000, eval_limit=4000)  # fmt: skip
        return [Experiment("window", {"ptb-char": tiny}, cells=("lstm",),
                           methods=WINDOW_METHODS, seeds=(0,))]  # fmt: skip
    return _paper_experiments(fsdd_common)


def _smoke_experiments(fsdd_common: dict) -> list[Experiment]:
    """The smoke profile: the whole pipeline on tiny settings, one seed."""
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


def _paper_experiments(fsdd_common: dict) -> list[Experiment]:
    """The paper profile: the GPU window, the main grid at the paper's sizes and claim 3's
    overfitting experiment."""
    # paper: PTB-char 1 layer x 1000 units, BPTT 100, batch 64 (our choices), on study v3's
    # recipe (cosine to 1e-5 over the budget, per-tensor clipping, no early stop); the PTB
    # runs take each method's rate chosen by the cpu-v3 sweep once it is decided (else 2e-3)
    recipe = {"lr_schedule": "cosine", "min_lr": 1e-5, "clip_mode": "per-tensor", "early_stop": 0}
    lm = _lm(hidden=1000, bptt=100, batch_size=64, epochs=30, lr=2e-3, **recipe)
    sp = {**fsdd_common, "hidden": 256, "epochs": 40, "early_stop": 8}
    window = _lm(hidden=1000, embed=64, init="glorot", bptt=100, batch_size=64, epochs=8,
                 **recipe)  # fmt: skip
    lrs = _lrs("ptb-char", "lstm", (*WINDOW_METHODS, *METHOD_LABELS, *STOCHASTIC_METHODS)) or {}
    return [
        Experiment(
            "window",
            {"ptb-char": window},
            cells=("lstm",),
            methods=WINDOW_METHODS,
            seeds=(0,),
            per_method=lrs,
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
            # stopped 4 epochs after the best validation epoch, as in the cpu profile: a
            # method is finished when it stops, so claim 3 can be decided
            {"ptb-char": _lm(hidden=1000, epochs=40, train_limit=1_000_000, **recipe)},
            cells=("lstm",),
            methods=STOCHASTIC_METHODS,
            per_method=lrs,
        ),
    ]


# cpu profile: PTB-char headline (issue 12). Full training text (5.0M characters), a 32-wide
# embedding, Glorot-uniform init per gate block with zero biases (the same for every method;
# `init` is recorded, torch's default stays available), LSTM 256, BPTT 100 x batch 64
# (784 optimizer steps per epoch), Adam 2e-3 halved when validation stops improving, at most
# 5 epochs. About 190 s per epoch with two 1-thread runs at once.
CPU_LM = _lm(hidden=256, embed=32, init="glorot", bptt=100, batch_size=64, epochs=5,
             early_stop=2)  # fmt: skip
# the three PTB cells side by side at a smaller budget (labelled as such in the book): 128
# units, 2 epochs; also the layernorm experiment's PTB budget (its LSTM is ~1.7x slower a step)
CPU_LM_SMALL = {**CPU_LM, "hidden": 128, "epochs": 2}
# overfitting regime (claim 3): the same LSTM on the first 250k training characters, batch
# 32, up to 60 epochs, stopped 4 epochs after the best validation epoch. Float overfits by
# epoch ~30; with 30 epochs and no stop the stochastic methods were still improving, so
# claim 3 could not be decided (results/cpu, first overfit run).
CPU_OVERFIT = {**CPU_LM, "train_limit": 250_000, "batch_size": 32, "epochs": 60,
               "early_stop": 4}  # fmt: skip


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
        Experiment("ptb-cells", {"ptb-char": CPU_LM_SMALL}, cells=("rnn", "gru", "lstm"),
                   description="PTB-char vanilla RNN, GRU and LSTM at a smaller budget"),
        Experiment("normalization",
                   {"ptb-char": {**CPU_LM, "weight_norm": True}, "fsdd": {**fsdd,
                    "weight_norm": True}},
                   cells=("lstm",), methods=NORMALIZATION_METHODS,
                   description="weight normalization of the quantized matrices: does it "
                   "rescue binary weights?"),
        Experiment("layernorm",
                   {"ptb-char": {**CPU_LM_SMALL, "layer_norm": True}, "fsdd": {**fsdd,
                    "layer_norm": True}},
                   cells=("lstm",), methods=NORMALIZATION_METHODS,
                   description="layer normalization of the gate pre-activations (Hou et al. "
                   "2019; reference cells in a time loop, LSTM only)"),
    ]  # fmt: skip


# ------------------------------------------------------------------ cpu-v3 (study v3, issue 26)
# The recipe every method shares: the PTB headline's model (LSTM 256, 32-wide embedding,
# Glorot init, BPTT 100 x batch 64, full training text) trained with a cosine learning-rate
# schedule from the method's own peak to 1e-5 over a fixed budget (no early stop: the
# best-validation epoch is tested), and per-tensor gradient clipping at 1.0, so an exploding
# recurrent gradient no longer freezes the float embedding and output layer (study v2's
# global clipping did, for binary-stoch). ``clip-global`` measures that choice.
V3_LM = _lm(hidden=256, embed=32, init="glorot", bptt=100, batch_size=64, epochs=12,
            early_stop=0, lr_schedule="cosine", min_lr=1e-5, clip_mode="per-tensor")  # fmt: skip
# the learning-rate sweep's short budget: the first 1.28M training characters (200 steps an
# epoch), 3 epochs on the same cosine schedule, validation on the whole validation text
V3_SWEEP = {**V3_LM, "train_limit": 1_280_000, "epochs": 3}
# 256x from study v2's 2e-3 up: 3.2e-2 was added when float's best validation improved with
# every rate to 4e-3, 6.4e-2 when it still did at 3.2e-2, 1.28e-1 when binary-stoch and
# pow2-ternary chose 6.4e-2, 2.56e-1 when binary-det and binary-stoch chose 1.28e-1 (the
# rule: a choice at the range's edge widens the range; this short budget favours large rates)
V3_SWEEP_LRS = (1e-3, 2e-3, 4e-3, 8e-3, 1.6e-2, 3.2e-2, 6.4e-2, 1.28e-1, 2.56e-1)
# binary-det (2.450 BPC at 2.56e-1 vs 2.497 at 1.28e-1) and binary-stoch (2.981 vs 3.449) chose
# the top rate again: their range alone goes on to 5.12e-1 and 1.024 (the float parts share it)
V3_SWEEP_WIDER = {"binary-det": (5.12e-1, 1.024), "binary-stoch": (5.12e-1, 1.024)}


def _lr_label(lr: float) -> str:
    return f"lr={lr:g}"


# The headline's budget: 12 epochs of the full text. The ablations run shorter, labelled
# budgets, each with its own float twin, so that every gap compares equal budgets.
V3_ABLATION = {**V3_LM, "epochs": 4}
V3_DOSE = {**V3_LM, "epochs": 2}
# claim 3's overfitting regime at two training sizes (batch 32), cosine over a fixed budget
V3_OVERFIT = {
    "250k": {**V3_LM, "train_limit": 250_000, "batch_size": 32, "epochs": 30},
    "1m": {**V3_LM, "train_limit": 1_000_000, "batch_size": 32, "epochs": 10},
}
# Each method's peak learning rate, chosen on validation by ``qrnn study choose-lr --profile
# cpu-v3`` from the lr-sweep runs (results/cpu-v3/lr_choice.csv; a test checks this table
# against that file). A choice at the edge of its range is not final (the range widens and
# the group waits), and an experiment whose methods are not all decided waits (is left out).
V3_LR: dict[tuple[str, str, str], float] = {
    ("ptb-char", "lstm", "exponential-det"): 0.016,
    ("ptb-char", "lstm", "float"): 0.032,
    ("ptb-char", "lstm", "ternary-det"): 0.032,
    ("ptb-char", "lstm", "ternary-stoch"): 0.032,
    ("ptb-char", "lstm", "exponential-stoch"): 0.032,
    ("ptb-char", "lstm", "pow2-ternary"): 0.064,
    ("ptb-char", "lstm", "binary-det"): 0.256,
    ("ptb-char", "lstm", "binary-stoch"): 0.256,
    ("fsdd", "rnn", "float"): 0.003,
    ("fsdd", "rnn", "ternary-det"): 0.003,
    ("fsdd", "rnn", "pow2-ternary"): 0.003,
    ("fsdd", "rnn", "exponential-det"): 0.003,
    ("fsdd", "rnn", "exponential-stoch"): 0.003,
    ("fsdd", "gru", "float"): 0.003,
    ("fsdd", "gru", "exponential-det"): 0.003,
    ("fsdd", "lstm", "float"): 0.003,
    ("fsdd", "rnn", "binary-det"): 0.01,
    ("fsdd", "rnn", "ternary-stoch"): 0.01,
    ("fsdd", "gru", "binary-det"): 0.01,
    ("fsdd", "gru", "ternary-det"): 0.01,
    ("fsdd", "gru", "ternary-stoch"): 0.01,
    ("fsdd", "gru", "pow2-ternary"): 0.01,
    ("fsdd", "gru", "exponential-stoch"): 0.01,
    ("fsdd", "lstm", "binary-det"): 0.01,
    ("fsdd", "lstm", "pow2-ternary"): 0.01,
    ("fsdd", "lstm", "exponential-det"): 0.01,
    ("fsdd", "lstm", "exponential-stoch"): 0.01,
    ("fsdd", "rnn", "binary-stoch"): 0.03,
    ("fsdd", "lstm", "ternary-det"): 0.03,
    ("fsdd", "lstm", "ternary-stoch"): 0.03,
    ("fsdd", "gru", "binary-stoch"): 0.1,
    ("fsdd", "lstm", "binary-stoch"): 0.1,
}  # fmt: skip


def _lrs(task: str, cell: str, methods: tuple[str, ...]) -> dict[str, dict] | None:
    """``per_method`` learning rates of ``methods`` (each from its base method), or None
    while one is not decided."""
    out = {}
    for m in methods:
        lr = V3_LR.get((task, cell, base_method(m)))
        if lr is None:
            return None
        out[m] = {"lr": lr}
    return out


def _cpu_v3_experiments() -> list[Experiment]:
    """Study v3's experiments, in the order the runner takes them (issue 26)."""
    all_methods = tuple(m[0] for m in METHODS)
    variants = (f"ternary-{mode}-{v}" for mode in ("det", "stoch") for v in TERNARY_VARIANTS)
    ternary = ("float", "ternary-det", "ternary-stoch", *variants)
    dose = ("float", "binary-stoch", "float-noise-binary",
            *(f"float-noise-binary-{h}" for h in NOISE_DOSES),
            "float-noise-binary-rec", "float-noise-binary-in")  # fmt: skip
    overfit = ("float", "float-const", "float-dropout-0.1", "float-dropout-0.3",
               "binary-stoch", "ternary-stoch", "pow2-stoch", "exponential-stoch")  # fmt: skip
    decided = [
        ("main", {"ptb-char": V3_LM}, all_methods, (0, 1, 2),
         "PTB-char LSTM 256, each method at its own learning rate, 12 epochs (the headline)"),
        ("ternary-gap", {"ptb-char": V3_ABLATION}, ternary, (0, 1, 2),
         "what closes the ternary gap: shadow clipping off, 2 W0, a learned scale, float "
         "biases (4 epochs, with its own float and ternary twins)"),
        ("noise-dose", {"ptb-char": V3_DOSE}, dose, (0, 1, 2),
         "claim 5: float + binary-stoch rounding noise at H = Glorot, 0.25, 0.5, 1, and on "
         "the recurrent or input matrices only (2 epochs)"),
        *((f"overfit-{size}", {"ptb-char": cfg}, overfit, (0, 1, 2),
           f"claim 3: the first {cfg['train_limit']:,} training characters, "
           f"{cfg['epochs']} epochs") for size, cfg in V3_OVERFIT.items()),
    ]  # fmt: skip
    later = []
    for name, tasks, methods, seeds, text in decided:
        per = _lrs("ptb-char", "lstm", methods)
        if per is not None:
            later.append(Experiment(name, tasks, cells=("lstm",), methods=methods, seeds=seeds,
                                    per_method=per, description=text))  # fmt: skip
    return [
        Experiment("lr-sweep", {"ptb-char": V3_SWEEP}, cells=("lstm",), methods=all_methods,
                   seeds=(0,), variants=tuple((_lr_label(lr), {"lr": lr}) for lr in V3_SWEEP_LRS),
                   description="each method's peak learning rate, chosen on validation "
                   "(PTB-char LSTM 256, 1.28M characters x 3 epochs, seed 0)"),
        *(Experiment("lr-sweep", {"ptb-char": V3_SWEEP}, cells=("lstm",), methods=(m,),
                     seeds=(0,), variants=tuple((_lr_label(lr), {"lr": lr}) for lr in lrs),
                     description=f"{m}'s rates above the shared range")
          for m, lrs in V3_SWEEP_WIDER.items()),
        Experiment("clip-global", {"ptb-char": {**V3_SWEEP, "lr": 2e-3, "clip_mode": "global"}},
                   cells=("lstm",), methods=("float", "binary-stoch", "ternary-det"), seeds=(0,),
                   description="global instead of per-tensor gradient clipping, at the sweep's "
                   "budget and lr 2e-3 (its twins: lr-sweep@lr=0.002)"),
        *_cpu_v3_digits(),
        *later,
    ]  # fmt: skip


# Study v3 on the spoken digits (issue 26, items 2, 5, 7): v2's digit model (hidden 64, Glorot
# init, BatchNorm on the input, batch 32, 15 epochs) on the v3 recipe (cosine to 1e-5 over the
# 15 epochs, per-tensor clipping, no early stop: the best-validation epoch is tested). Cost,
# from v2's records (2-core AMD EPYC, one thread per run): an epoch takes ~2.9 s (GRU), ~2.6 s
# (LSTM), ~0.9 s (RNN), so a 15-epoch run ~44 / 38 / 13 s plus ~10 s notebook start; one run
# of each cell ~125 s. The three experiments: ~4.5 CPU h.
V3_DIGITS = {**TASKS["fsdd"], "hidden": 64, "init": "glorot", "input_norm": "batch",
             "batch_size": 32, "epochs": 15, "lr": 3e-3, "early_stop": 0,
             "lr_schedule": "cosine", "min_lr": 1e-5, "clip_mode": "per-tensor"}  # fmt: skip
V3_DIGITS_LRS = (1e-3, 3e-3, 1e-2, 3e-2)  # 30x around v2's 3e-3, one seed
# (cell, method) whose choice was the top rate, 3e-2: their range alone goes on
V3_DIGITS_WIDER = {("rnn", "binary-stoch"): (1e-1, 3e-1), ("gru", "binary-stoch"): (1e-1, 3e-1),
                   ("lstm", "binary-stoch"): (1e-1, 3e-1), ("lstm", "ternary-det"): (1e-1,),
                   ("lstm", "ternary-stoch"): (1e-1,)}  # fmt: skip
DIGIT_FOLDS = 10  # RunConfig.split fold0..fold9 (qrnn.pooled.fsdd_fold); seed f <-> fold f


def _cpu_v3_digits() -> list[Experiment]:
    """The digits part of study v3: the learning-rate sweep, claim 5's dose-response on the GRU,
    and every cell x method on the 10 folds (each one ``Experiment`` per cell and fold under one
    name, so tables pool the folds as seeds). The last two wait for their rates (``V3_LR``)."""
    all_methods = tuple(m[0] for m in METHODS)
    dose = ("float", "binary-stoch", "float-noise-binary",
            *(f"float-noise-binary-{h}" for h in NOISE_DOSES),
            "float-noise-binary-rec", "float-noise-binary-in")  # fmt: skip
    out = [
        Experiment("lr-sweep-digits", {"fsdd": V3_DIGITS}, methods=all_methods, seeds=(0,),
                   variants=tuple((_lr_label(lr), {"lr": lr}) for lr in V3_DIGITS_LRS),
                   description="each digit model's peak learning rate, chosen on validation "
                   "(standard split, 15 epochs, seed 0; 96 runs, ~1.1 CPU h)"),
        *(Experiment("lr-sweep-digits", {"fsdd": V3_DIGITS}, cells=(cell,), methods=(m,),
                     seeds=(0,), variants=tuple((_lr_label(lr), {"lr": lr}) for lr in lrs),
                     description=f"{cell} {m}'s rates above the shared range")
          for (cell, m), lrs in V3_DIGITS_WIDER.items()),
    ]  # fmt: skip
    per = _lrs("fsdd", "gru", dose)
    if per is not None:
        out.append(Experiment(
            "noise-dose-digits", {"fsdd": V3_DIGITS}, cells=("gru",), methods=dose,
            seeds=(0, 1, 2, 3, 4), per_method=per,
            description="claim 5 on digits: float + binary-stoch rounding noise at H = Glorot, "
            "0.25, 0.5, 1, and on the recurrent or input matrices only (GRU, standard split; "
            "40 runs, ~0.6 CPU h)"))  # fmt: skip
    for fold in range(DIGIT_FOLDS):  # folds outside, so a partial study covers every group
        for cell in CELLS:
            per = _lrs("fsdd", cell, all_methods)
            if per is not None:
                out.append(Experiment(
                    "digits-kfold", {"fsdd": {**V3_DIGITS, "split": f"fold{fold}"}},
                    cells=(cell,), methods=all_methods, seeds=(fold,), per_method=per,
                    description="every cell and method on the 10 folds of the recordings "
                    "(seed f trains on fold f: each group tested on all 3,000; 240 runs, "
                    "~2.8 CPU h)"))  # fmt: skip
    return out


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
        "experiment": {e.name for e in exps} | {e.label(v) for e in exps for v, _ in e.variants},
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
        for (variant, extra), task, cell, method, seed in itertools.product(
            e.variants, e.tasks, e.cells, e.methods, e.seeds
        ):
            name = e.label(variant)
            labels = {"experiment": name, "task": task, "cell": cell, "method": method,
                      "seed": str(seed)}  # fmt: skip
            if any(labels[k] not in v and not (k == "experiment" and e.name in v)
                   for k, v in filters.items()):  # fmt: skip
                continue
            cfg = RunConfig(
                **{**e.tasks[task], **extra, **e.per_method.get(method, {}), "cell": cell,
                   **method_fields(method), "seed": seed, "threads": threads}
            )  # fmt: skip
            runs.append(Run(name, task, cell, method, seed, cfg))
    return runs
