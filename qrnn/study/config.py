"""The run configuration: :class:`RunConfig` (every field with its allowed values), its
validation, and the run id that names a run's folder.

The runs reproduce Ott et al. 2016, *Recurrent Neural Networks With Limited Numerical
Precision*, https://arxiv.org/abs/1608.06902.

``run_id(cfg)`` hashes the resolved config without execution settings (device, threads) and
without fields added later while at their defaults (``LATER_FIELDS``), so the ids of
committed records never change.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import math
from dataclasses import asdict, dataclass, field

import numpy as np
import torch

from ..data.speech import FSDD_SPLITS
from ..models import CELLS
from ..quantizers import SCHEMES, quantizer

__all__ = [
    "CLIP_MODES",
    "LATER_FIELDS",
    "LM_TASKS",
    "LR_SCHEDULES",
    "TASKS",
    "RunConfig",
    "config_from_dict",
    "derive_seeds",
    "identity",
    "run_id",
]

TASKS = ("ptb-char", "ptb-word", "text8", "fsdd")
LM_TASKS = ("ptb-char", "ptb-word", "text8")
# execution settings: they do not change what is computed, so they are not part of the run id
EXECUTION_FIELDS = ("device", "threads")
# fields added after the first records: left out of the run id while at these defaults, so
# the ids (and records) of earlier runs stay valid
LATER_FIELDS = {
    "weight_norm": False,
    "layer_norm": False,
    "init": "torch",
    "weight_noise": "none",
    "lr_schedule": "plateau",
    "clip_mode": "global",
}
INITS = ("torch", "glorot")
WEIGHT_NOISE = ("none", "binary", "ternary")
LR_SCHEDULES = ("plateau", "cosine")
CLIP_MODES = ("global", "per-tensor")


@dataclass(frozen=True)
class RunConfig:
    """Everything that defines one run. Defaults: a small PTB-char LSTM that trains on CPU."""

    task: str = "ptb-char"  # ptb-char | ptb-word | text8 | fsdd
    split: str = "standard"  # fsdd: standard (index 0-4 test) | speakers (held out) | fold0..fold9
    cell: str = "lstm"  # rnn | gru | lstm
    layers: int = 1  # stacked recurrent layers
    hidden: int = 128  # units per layer (and direction)
    embed: int = 0  # LM input: embedding size (0 means one-hot input)
    init: str = "torch"  # torch (U(+-1/sqrt(H)), torch's default) | glorot (per gate block, bias 0)
    bidirectional: bool = False  # fsdd only
    input_norm: str = "none"  # fsdd: none | batch (authors' BatchNorm on the layer input)
    pool: str = "last"  # fsdd: last | mean (readout over time)
    dropout: float = 0.0  # between layers and before the output layer
    scheme: str = "float"  # float | binary | ternary | pow2-ternary | exponential
    stochastic: bool = False  # sample stochastic rounding in training (eval: deterministic)
    quantizer_options: dict = field(default_factory=dict)  # method options, e.g. scale=glorot
    quantize_input: bool = True  # input-to-hidden matrices
    quantize_recurrent: bool = True  # hidden-to-hidden matrices
    quantize_bias: bool = True  # biases (the authors quantize them too)
    quantize_io: bool = False  # also the embedding and output layers (authors: no)
    weight_norm: bool = False  # weight normalization of the quantized recurrent matrices
    weight_noise: str = "none"  # float only: none | binary | ternary | binary:H (rounding noise)
    layer_norm: bool = False  # layer norm of the gate pre-activations (Python time loop: slower)
    clip_shadow: str = "auto"  # auto (binary/ternary/pow2: yes) | on | off: BinaryConnect clip
    optimizer: str = "adam"  # adam | sgd
    lr: float = 2e-3  # initial (peak) learning rate
    lr_schedule: str = "plateau"  # plateau (x lr_decay on a plateau) | cosine (per step to min_lr)
    weight_decay: float = 0.0  # L2 on the shadow weights
    lr_decay: float = 0.5  # multiply the lr by this when validation stops improving
    lr_patience: int = 0  # epochs without improvement before decaying
    min_lr: float = 1e-5  # floor for the decayed lr (cosine: its end point)
    early_stop: int = 3  # stop after this many epochs without improvement (0: never)
    clip_grad: float = 1.0  # gradient-norm clipping (0: off)
    clip_mode: str = "global"  # global (one norm over all tensors) | per-tensor (each its own)
    epochs: int = 10  # maximum epochs
    bptt: int = 100  # LM: truncated-BPTT window
    batch_size: int = 64  # LM: parallel streams; fsdd: recordings per batch
    train_limit: int = 0  # use only the first N training symbols (LM) / recordings (fsdd); 0: all
    eval_limit: int = 0  # same for validation and test (for smoke runs); 0: all
    diverge_factor: float = 2.0  # diverged if the running training loss exceeds this x uniform
    seed: int = 0  # derives every generator: init, data order, stochastic rounding, dropout
    device: str = "auto"  # auto (cuda if present) | cpu | cuda | cuda:N
    threads: int = 0  # torch intra-op threads on CPU (0: torch's default)

    def __post_init__(self) -> None:
        self.validate()

    # ------------------------------------------------------------------ validation
    def validate(self) -> None:
        """Raise ``ValueError`` naming the bad field and what is allowed."""
        _check_choices(self)
        _check_numbers(self)
        _check_combinations(self)

    # ------------------------------------------------------------------ identity
    def resolved(self) -> dict:
        """Every field, quantizer options filled with their defaults (what the run id hashes)."""
        d = asdict(self)
        d["quantizer_options"] = dict(quantizer(self.scheme, **self.quantizer_options).options)
        return d

    @property
    def metric_name(self) -> str:
        return {"ptb-char": "bpc", "text8": "bpc", "ptb-word": "perplexity"}.get(self.task, "error")

    def clips_shadow(self) -> bool:
        if self.clip_shadow == "auto":  # binary, ternary, pow2-ternary
            return quantizer(self.scheme, **self.quantizer_options).clips_by_default
        return self.clip_shadow == "on"


def _choice(cfg: RunConfig, name: str, allowed) -> None:
    """Refuse a field whose value is not one of ``allowed``."""
    v = getattr(cfg, name)
    if v not in allowed:
        raise ValueError(f"{name}={v!r} is not allowed; choose one of {', '.join(allowed)}")


def _at_least(cfg: RunConfig, name: str, lo, integer: bool = True) -> None:
    """Refuse a field that is not an integer (``integer=False``: a finite number) >= ``lo``."""
    v = getattr(cfg, name)
    ok = isinstance(v, int) if integer else isinstance(v, int | float)
    if isinstance(v, bool) or not ok or v < lo or (not integer and not math.isfinite(v)):
        kind = "an integer" if integer else "a number"
        raise ValueError(f"{name}={v!r} is not allowed; it must be {kind} >= {lo}")


def _check_choices(cfg: RunConfig) -> None:
    """The fields with a fixed set of values, and weight noise only on float weights."""
    _choice(cfg, "task", TASKS)
    _choice(cfg, "split", FSDD_SPLITS)
    _choice(cfg, "cell", tuple(CELLS))
    _choice(cfg, "scheme", SCHEMES)
    _choice(cfg, "input_norm", ("none", "batch"))
    _choice(cfg, "pool", ("last", "mean"))
    _choice(cfg, "clip_shadow", ("auto", "on", "off"))
    _choice(cfg, "optimizer", ("adam", "sgd"))
    _choice(cfg, "init", INITS)
    if cfg.weight_noise not in WEIGHT_NOISE:
        from ..layers import noise_quantizer

        noise_quantizer(cfg.weight_noise)  # METHOD:SCALE, or one line naming what is allowed
    _choice(cfg, "lr_schedule", LR_SCHEDULES)
    _choice(cfg, "clip_mode", CLIP_MODES)
    if cfg.weight_noise != "none" and cfg.scheme != "float":
        raise ValueError(
            f"weight_noise={cfg.weight_noise!r} needs scheme='float' (got {cfg.scheme!r}): "
            "the noise replaces the rounding"
        )


def _check_numbers(cfg: RunConfig) -> None:
    """Sizes, counts, rates and factors, each in its range."""
    for name in ("layers", "hidden", "epochs", "bptt", "batch_size"):
        _at_least(cfg, name, 1)
    for name in ("embed", "lr_patience", "early_stop", "train_limit", "eval_limit", "seed"):
        _at_least(cfg, name, 0)
    _at_least(cfg, "threads", 0)
    for name in ("weight_decay", "min_lr", "clip_grad"):
        _at_least(cfg, name, 0, integer=False)
    _at_least(cfg, "diverge_factor", 1, integer=False)
    if not (isinstance(cfg.lr, int | float) and 0 < cfg.lr < 10):
        raise ValueError(f"lr={cfg.lr!r} is not allowed; it must be a number in (0, 10)")
    if not (isinstance(cfg.lr_decay, int | float) and 0 < cfg.lr_decay <= 1):
        raise ValueError(f"lr_decay={cfg.lr_decay!r} is not allowed; it must be in (0, 1]")
    if not (isinstance(cfg.dropout, int | float) and 0 <= cfg.dropout < 1):
        raise ValueError(f"dropout={cfg.dropout!r} is not allowed; it must be in [0, 1)")


def _check_combinations(cfg: RunConfig) -> None:
    """The quantizer's options, settings that only some tasks or schemes allow, the device and
    the true/false fields."""
    if not isinstance(cfg.quantizer_options, dict):
        raise ValueError(f"quantizer_options must be a dict, got {cfg.quantizer_options!r}")
    quantizer(cfg.scheme, **cfg.quantizer_options)  # raises on unknown options
    if cfg.stochastic and cfg.scheme == "float":
        raise ValueError("stochastic=True is not allowed with scheme='float'")
    if cfg.bidirectional and cfg.task != "fsdd":
        raise ValueError("bidirectional=True is only allowed for task 'fsdd'")
    if cfg.embed and cfg.task == "fsdd":  # the digits' input is features: no embedding
        raise ValueError(f"embed={cfg.embed!r} is not allowed for task 'fsdd'; it must be 0")
    dev = str(cfg.device)
    if not (dev in ("auto", "cpu", "cuda") or (dev[:5] == "cuda:" and dev[5:].isdigit())):
        raise ValueError(f"device={cfg.device!r} is not allowed; use auto, cpu, cuda, cuda:N")
    for name in (
        "bidirectional",
        "stochastic",
        "quantize_input",
        "quantize_recurrent",
        "quantize_bias",
        "quantize_io",
        "weight_norm",
        "layer_norm",
    ):
        if not isinstance(getattr(cfg, name), bool):
            raise ValueError(f"{name} must be true or false, got {getattr(cfg, name)!r}")


def config_from_dict(d: dict) -> RunConfig:
    """Build a config from a (possibly resolved) dict; unknown keys are an error."""
    names = {f.name for f in dataclasses.fields(RunConfig)}
    unknown = sorted(set(d) - names)
    if unknown:
        raise ValueError(f"unknown config field(s) {', '.join(unknown)}; known: {sorted(names)}")
    return RunConfig(**d)


def run_id(cfg: RunConfig) -> str:
    """Stable id: readable prefix + sha256 of the resolved config (seed included; device and
    thread count excluded, since they do not define the experiment)."""
    digest = hashlib.sha256(json.dumps(identity(cfg.resolved()), sort_keys=True).encode())
    digest = digest.hexdigest()[:12]
    mode = "-stoch" if cfg.stochastic else ""
    return f"{cfg.task}_{cfg.cell}_{cfg.scheme}{mode}_{digest}"


def identity(resolved: dict) -> dict:
    """What defines an experiment: the resolved config without execution settings and without
    later-added fields at their defaults (see ``LATER_FIELDS``)."""
    return {
        k: v
        for k, v in resolved.items()
        if k not in EXECUTION_FIELDS and not (k in LATER_FIELDS and v == LATER_FIELDS[k])
    }


def derive_seeds(seed: int) -> dict[str, int]:
    """Independent seeds for init (and dropout), data order and stochastic rounding."""
    init, data, quant = np.random.SeedSequence(seed).generate_state(3)
    return {"seed": seed, "init": int(init), "data": int(data), "quant": int(quant)}


def resolve_device(name: str) -> torch.device:
    """``auto`` (CUDA when available, else CPU), ``cpu`` or ``cuda[:i]``; refuses CUDA when
    none is available."""
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    dev = torch.device(name)
    if dev.type == "cuda" and not torch.cuda.is_available():
        raise ValueError(f"device={name!r} requested but CUDA is not available; use auto or cpu")
    return dev


def _field_help() -> dict[str, str]:
    """The inline comment of every RunConfig field (one source of truth for --help)."""
    import inspect
    import re

    out = {}
    for line in inspect.getsource(RunConfig).splitlines():
        m = re.match(r"\s+(\w+): [^=]+=.*?#\s*(.*)$", line)
        if m:
            out[m.group(1)] = m.group(2)
    return out


FIELD_HELP = _field_help()
