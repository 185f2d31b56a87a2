"""Training and evaluation: one :class:`RunConfig` in, one run record out.

``train(config)`` trains a language model (``ptb-char``, ``ptb-word``, ``text8``) or a
spoken-digit classifier (``fsdd``), checkpoints every epoch (atomic writes), resumes a killed
run exactly, stops a diverging run cleanly, and writes ``results/<run-id>/run.json``
(schema in :mod:`qrnn.records`). The model tested is the best-validation one; evaluation
always uses deterministic quantization.
"""

from __future__ import annotations

import contextlib
import dataclasses
import hashlib
import json
import math
import sys
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from . import records
from .layers import QuantRNNBase, _QuantIO, clip_shadow_, glorot_init_, quantized_layers
from .models import CELLS, DigitClassifier, LanguageModel
from .quantizers import SCHEMES, quantizer

TASKS = ("ptb-char", "ptb-word", "text8", "fsdd")
LM_TASKS = ("ptb-char", "ptb-word", "text8")
# execution settings: they do not change what is computed, so they are not part of the run id
EXECUTION_FIELDS = ("device", "threads")
# fields added after the first records: left out of the run id while at these defaults, so
# the ids (and records) of earlier runs stay valid
LATER_FIELDS = {"weight_norm": False, "layer_norm": False, "init": "torch", "weight_noise": "none"}
INITS = ("torch", "glorot")
WEIGHT_NOISE = ("none", "binary", "ternary")
# what the records call the rule that stops a run (RunConfig.diverge_factor)
DIVERGENCE_RULE = (
    "non-finite training loss, or the running mean of the training loss (exponential, 50 "
    "batches) above diverge_factor x the uniform-guess loss; validation never stops a run"
)
EMA_BATCHES = 50

__all__ = ["TASKS", "RunConfig", "build_model", "evaluate", "run_id", "train"]


@dataclass(frozen=True)
class RunConfig:
    """Everything that defines one run. Defaults: a small PTB-char LSTM that trains on CPU."""

    task: str = "ptb-char"  # ptb-char | ptb-word | text8 | fsdd
    split: str = "standard"  # fsdd: standard (recordings 0-4 test) | speakers (held-out speakers)
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
    weight_noise: str = "none"  # float only: none | binary | ternary (matched rounding noise)
    layer_norm: bool = False  # layer norm of the gate pre-activations (Python time loop: slower)
    clip_shadow: str = "auto"  # auto (binary/ternary/pow2: yes) | on | off: BinaryConnect clip
    optimizer: str = "adam"  # adam | sgd
    lr: float = 2e-3  # initial learning rate
    weight_decay: float = 0.0  # L2 on the shadow weights
    lr_decay: float = 0.5  # multiply the lr by this when validation stops improving
    lr_patience: int = 0  # epochs without improvement before decaying
    min_lr: float = 1e-5  # floor for the decayed lr
    early_stop: int = 3  # stop after this many epochs without improvement (0: never)
    clip_grad: float = 1.0  # gradient-norm clipping (0: off)
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

        def choice(name: str, allowed) -> None:
            v = getattr(self, name)
            if v not in allowed:
                raise ValueError(f"{name}={v!r} is not allowed; choose one of {', '.join(allowed)}")

        def at_least(name: str, lo, integer: bool = True) -> None:
            v = getattr(self, name)
            ok = isinstance(v, int) if integer else isinstance(v, int | float)
            if isinstance(v, bool) or not ok or v < lo or (not integer and not math.isfinite(v)):
                kind = "an integer" if integer else "a number"
                raise ValueError(f"{name}={v!r} is not allowed; it must be {kind} >= {lo}")

        choice("task", TASKS)
        choice("split", ("standard", "speakers"))
        choice("cell", tuple(CELLS))
        choice("scheme", SCHEMES)
        choice("input_norm", ("none", "batch"))
        choice("pool", ("last", "mean"))
        choice("clip_shadow", ("auto", "on", "off"))
        choice("optimizer", ("adam", "sgd"))
        choice("init", INITS)
        choice("weight_noise", WEIGHT_NOISE)
        if self.weight_noise != "none" and self.scheme != "float":
            raise ValueError(
                f"weight_noise={self.weight_noise!r} needs scheme='float' (got {self.scheme!r}): "
                "the noise replaces the rounding"
            )
        for name in ("layers", "hidden", "epochs", "bptt", "batch_size"):
            at_least(name, 1)
        for name in ("embed", "lr_patience", "early_stop", "train_limit", "eval_limit", "seed"):
            at_least(name, 0)
        at_least("threads", 0)
        for name in ("weight_decay", "min_lr", "clip_grad"):
            at_least(name, 0, integer=False)
        at_least("diverge_factor", 1, integer=False)
        if not (isinstance(self.lr, int | float) and 0 < self.lr < 10):
            raise ValueError(f"lr={self.lr!r} is not allowed; it must be a number in (0, 10)")
        if not (isinstance(self.lr_decay, int | float) and 0 < self.lr_decay <= 1):
            raise ValueError(f"lr_decay={self.lr_decay!r} is not allowed; it must be in (0, 1]")
        if not (isinstance(self.dropout, int | float) and 0 <= self.dropout < 1):
            raise ValueError(f"dropout={self.dropout!r} is not allowed; it must be in [0, 1)")
        if not isinstance(self.quantizer_options, dict):
            raise ValueError(f"quantizer_options must be a dict, got {self.quantizer_options!r}")
        quantizer(self.scheme, **self.quantizer_options)  # raises on unknown options
        if self.stochastic and self.scheme == "float":
            raise ValueError("stochastic=True is not allowed with scheme='float'")
        if self.bidirectional and self.task != "fsdd":
            raise ValueError("bidirectional=True is only allowed for task 'fsdd'")
        if not (self.device in ("auto", "cpu", "cuda") or str(self.device).startswith("cuda:")):
            raise ValueError(f"device={self.device!r} is not allowed; use auto, cpu, cuda, cuda:N")
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
            if not isinstance(getattr(self, name), bool):
                raise ValueError(f"{name} must be true or false, got {getattr(self, name)!r}")

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
        if self.clip_shadow == "auto":
            return self.scheme in ("binary", "ternary", "pow2-ternary")
        return self.clip_shadow == "on"


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
    later-added fields at their defaults (see :data:`LATER_FIELDS`)."""
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
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    dev = torch.device(name)
    if dev.type == "cuda" and not torch.cuda.is_available():
        raise ValueError(f"device={name!r} requested but CUDA is not available; use auto or cpu")
    return dev


# ---------------------------------------------------------------------------- data and model
@dataclass
class _Data:
    train: Any
    valid: Any
    test: Any
    size: int  # vocabulary size (LM) or feature count (fsdd)
    stats: dict


def load_data(cfg: RunConfig, data_root=None, progress: bool = True) -> _Data:
    from . import data as qdata

    if cfg.task in LM_TASKS:
        corpus = qdata.load_text(cfg.task, root=data_root, progress=progress)
        tr, va, te = corpus.train, corpus.valid, corpus.test
        if cfg.train_limit:
            tr = tr[: cfg.train_limit]
        if cfg.eval_limit:
            va, te = va[: cfg.eval_limit], te[: cfg.eval_limit]
        for name, s in (("train", tr), ("valid", va), ("test", te)):
            if qdata.num_lm_batches(len(s), cfg.batch_size, cfg.bptt) == 0:
                raise ValueError(
                    f"the {name} stream ({len(s)} symbols) is too short for batch_size="
                    f"{cfg.batch_size}; raise train_limit/eval_limit or lower batch_size"
                )
        stats = corpus.stats()
        stats["used_sizes"] = {"train": len(tr), "valid": len(va), "test": len(te)}
        return _Data(tr, va, te, len(corpus.vocab), stats)
    sd = qdata.load_fsdd(split=cfg.split, root=data_root, progress=progress)
    tr, va, te = sd.train, sd.valid, sd.test
    if cfg.train_limit:
        tr = _subset(tr, cfg.train_limit)
    if cfg.eval_limit:
        va, te = _subset(va, cfg.eval_limit), _subset(te, cfg.eval_limit)
    stats = sd.stats()
    stats["used_sizes"] = {"train": len(tr), "valid": len(va), "test": len(te)}
    return _Data(tr, va, te, sd.n_features, stats)


def _subset(split, n: int):
    return dataclasses.replace(
        split,
        features=split.features[:n],
        labels=split.labels[:n],
        speakers=split.speakers[:n],
        names=split.names[:n],
    )


def build_model(cfg: RunConfig, size: int) -> nn.Module:
    """The model of ``cfg`` for a vocabulary (LM) or feature count (fsdd) of ``size``."""
    quant = dict(
        scheme=cfg.scheme,
        stochastic=cfg.stochastic,
        quantizer_options=cfg.quantizer_options,
        quantize_input=cfg.quantize_input,
        quantize_recurrent=cfg.quantize_recurrent,
        quantize_bias=cfg.quantize_bias,
        weight_norm=cfg.weight_norm,
        layer_norm=cfg.layer_norm,
        weight_noise=cfg.weight_noise,
    )
    common = dict(cell=cfg.cell, hidden=cfg.hidden, layers=cfg.layers, dropout=cfg.dropout)
    if cfg.task in LM_TASKS:
        model = LanguageModel(size, embed=cfg.embed, quantize_io=cfg.quantize_io, **common, **quant)
    else:
        model = _digit_model(cfg, size, common, quant)
    if cfg.init == "glorot":
        for layer in quantized_layers(model):
            glorot_init_(layer)
    return model


def _digit_model(cfg: RunConfig, size: int, common: dict, quant: dict) -> nn.Module:
    return DigitClassifier(
        size,
        bidirectional=cfg.bidirectional,
        input_norm=cfg.input_norm,
        pool=cfg.pool,
        quantize_io=cfg.quantize_io,
        **common,
        **quant,
    )


def model_summary(model: nn.Module, size: int) -> dict:
    """Parameter count and the storage of every tensor (bits per weight after quantization)."""
    tensors, total_bits, fp32_bits = {}, 0, 0
    for mod_name, mod in model.named_modules():
        for p_name, p in mod.named_parameters(recurse=False):
            name = f"{mod_name}.{p_name}" if mod_name else p_name
            if isinstance(mod, QuantRNNBase):
                quantized = mod.is_quantized(p_name)
            else:
                quantized = (
                    isinstance(mod, _QuantIO)
                    and p_name == "weight"
                    and (mod.quantizer.name != "float")
                )
            bits = mod.quantizer.bits if quantized else 32
            tensors[name] = {
                "shape": list(p.shape),
                "scheme": mod.quantizer.name if quantized else "float",
                "bits": bits,
                "quantized": quantized,
            }
            total_bits += bits * p.numel()
            fp32_bits += 32 * p.numel()
    return {
        "input_size": size,
        "parameters": sum(p.numel() for p in model.parameters()),
        "tensors": tensors,
        "storage_bits": total_bits,
        "fp32_bits": fp32_bits,
    }


# ---------------------------------------------------------------------------- epochs
def _detach(state):
    if state is None:
        return None
    return tuple(s.detach() for s in state) if isinstance(state, tuple) else state.detach()


class Diverged(Exception):
    def __init__(self, reason: str, batch: int | None = None):
        super().__init__(reason)
        self.reason, self.batch = reason, batch


def _lm_epoch(
    model, stream, cfg, device, opt=None, progress=None, callback=None, epoch=0, monitor=None
):
    """Mean loss (nats per symbol) over one pass; trains when ``opt`` is given."""
    from .data import lm_batches

    training = opt is not None
    model.train(training)
    total, count, state = 0.0, 0, None
    batches = lm_batches(stream, cfg.batch_size, cfg.bptt)
    with torch.set_grad_enabled(training):
        for i, (x, y) in enumerate(batches):
            x, y = x.to(device), y.to(device)  # (T, B)
            logits, state = model(x, _detach(state))
            loss = nn.functional.cross_entropy(logits.reshape(-1, logits.shape[-1]), y.reshape(-1))
            if training:
                _step(model, loss, opt, cfg, i, progress, callback, epoch, monitor)
            total += loss.item() * y.numel()
            count += y.numel()
    return total / count, None


def _speech_epoch(
    model,
    split,
    cfg,
    device,
    opt=None,
    progress=None,
    callback=None,
    epoch=0,
    generator=None,
    monitor=None,
):
    """Mean loss (nats per recording) and accuracy over one pass."""
    from .data import speech_batches

    training = opt is not None
    model.train(training)
    total, correct, count = 0.0, 0, 0
    batches = speech_batches(split, cfg.batch_size, shuffle=training, generator=generator)
    with torch.set_grad_enabled(training):
        for i, (x, lengths, y) in enumerate(batches):
            x, y = x.to(device), y.to(device)  # (B, T, F), (B,)
            logits = model(x, lengths)  # (B, 10)
            loss = nn.functional.cross_entropy(logits, y)
            if training:
                _step(model, loss, opt, cfg, i, progress, callback, epoch, monitor)
            total += loss.item() * len(y)
            correct += int((logits.argmax(-1) == y).sum())
            count += len(y)
    return total / count, correct / count


def _step(model, loss, opt, cfg, i, progress=None, callback=None, epoch=0, monitor=None) -> None:
    """One optimizer step on the shadow weights (+ BinaryConnect clipping), then the hooks;
    ``monitor`` (:class:`_LossMonitor`) applies the divergence rule to the training loss."""
    if monitor is not None:
        monitor.update(loss.item(), i)
    elif not torch.isfinite(loss):
        raise Diverged(f"non-finite training loss ({loss.item()})", batch=i)
    opt.zero_grad(set_to_none=True)
    loss.backward()
    if cfg.clip_grad:
        nn.utils.clip_grad_norm_(model.parameters(), cfg.clip_grad)
    opt.step()
    if cfg.clips_shadow():
        clip_shadow_(model)
    if progress is not None:
        progress.update(1)
        progress.set_postfix(loss=f"{loss.item():.3f}", refresh=False)
    if callback is not None:
        callback(epoch, i)


def evaluate(model, split, cfg: RunConfig, device=None) -> dict:
    """``{"loss", "metric"[, "accuracy"]}`` of ``model`` on one split (deterministic weights)."""
    device = device or next(model.parameters()).device
    if cfg.task in LM_TASKS:
        loss, _ = _lm_epoch(model, split, cfg, device)
        return {"loss": loss, "metric": _lm_metric(cfg, loss)}
    loss, acc = _speech_epoch(model, split, cfg, device)
    return {"loss": loss, "metric": 1.0 - acc, "accuracy": acc}


def _lm_metric(cfg, loss: float) -> float:
    if cfg.task == "ptb-word":
        return math.exp(min(loss, 700.0))
    return loss / math.log(2)  # bits per character


def uniform_loss(cfg: RunConfig, size: int) -> float:
    """Cross-entropy of uniform guessing: log V (LM) or log 10 (digits)."""
    return math.log(size if cfg.task in LM_TASKS else 10)


# ---------------------------------------------------------------------------- the run
def _rng_state(gens: dict[str, torch.Generator]) -> dict:
    st = {"torch": torch.get_rng_state(), **{k: g.get_state() for k, g in gens.items()}}
    if torch.cuda.is_available():
        st["cuda"] = torch.cuda.get_rng_state_all()
    return st


def _set_rng_state(st: dict, gens: dict[str, torch.Generator]) -> None:
    torch.set_rng_state(st["torch"])
    for k, g in gens.items():
        g.set_state(st[k])
    if "cuda" in st and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(st["cuda"])


def train(
    cfg: RunConfig,
    results_dir: str | Path = "results",
    *,
    quiet: bool = False,
    invocation: Any = None,
    force: bool = False,
    data_root: str | None = None,
    data: _Data | None = None,
    callback: Callable[[int, int], None] | None = None,
) -> dict:
    """Train ``cfg`` and return its run record (also written to ``results_dir/<run-id>/``).

    A completed or diverged record with the same id is returned as is (``force=True`` redoes
    it). A run interrupted at any point resumes from its last epoch checkpoint and ends with
    the same metrics as an uninterrupted run (CPU); a checkpoint that cannot be read is set
    aside (renamed ``checkpoint.pt.corrupt-<time>``) and the run starts again with a warning.
    A diverging run (:data:`DIVERGENCE_RULE`) stops cleanly with ``status="diverged"`` and
    still reports the test metric of its best checkpoint when it has one; any other exception
    is recorded as ``status="failed"`` and re-raised. ``data``: the splits to use instead of
    loading ``cfg.task`` (tests; see :func:`load_data`). ``callback(epoch, batch)`` runs after
    every training batch (progress hooks, tests). The best model is also kept packed at its
    true bit width (``model.npz``, :mod:`qrnn.export`), named in the record with its sha256.
    """
    rid = run_id(cfg)
    run_dir = Path(results_dir) / rid
    rec_path, ckpt_path, best_path = (
        run_dir / "run.json",
        run_dir / "checkpoint.pt",
        run_dir / "model.pt",
    )
    if rec_path.exists() and not force:
        with contextlib.suppress(ValueError, FileNotFoundError):
            old = records.load_record(rec_path)
            same = identity(old["config"]) == identity(cfg.resolved())
            if old["status"] in ("completed", "diverged") and same:
                return old
    if force:
        for p in (ckpt_path, best_path):
            p.unlink(missing_ok=True)

    device = resolve_device(cfg.device)
    if cfg.threads:
        torch.set_num_threads(cfg.threads)
    seeds = derive_seeds(cfg.seed)
    t_load = time.perf_counter()
    if data is None:
        data = load_data(cfg, data_root, progress=not quiet)
    load_s = time.perf_counter() - t_load

    torch.manual_seed(seeds["init"])  # init and dropout
    model = build_model(cfg, data.size).to(device)
    quant_gen = torch.Generator(device=device).manual_seed(seeds["quant"])
    data_gen = torch.Generator().manual_seed(seeds["data"])
    for m in model.modules():
        if isinstance(m, QuantRNNBase | _QuantIO):
            m.generator = quant_gen
    if cfg.optimizer == "adam":
        opt = torch.optim.Adam(model.parameters(), lr=cfg.lr, weight_decay=cfg.weight_decay)
    else:
        opt = torch.optim.SGD(model.parameters(), lr=cfg.lr, weight_decay=cfg.weight_decay)
    sched = torch.optim.lr_scheduler.ReduceLROnPlateau(
        opt, mode="min", factor=cfg.lr_decay, patience=cfg.lr_patience, min_lr=cfg.min_lr
    )
    gens = {"quant": quant_gen, "data": data_gen}
    uniform = uniform_loss(cfg, data.size)
    monitor = _LossMonitor(limit=uniform * cfg.diverge_factor)

    rec = {
        "schema": records.SCHEMA,
        "run_id": rid,
        "status": "running",
        "config": cfg.resolved(),
        "metric": {"name": cfg.metric_name, "lower_is_better": True},
        "epochs": [],
        "best_epoch": None,
        "test": None,
        "diverged": None,
        "divergence_rule": DIVERGENCE_RULE,
        "error": None,
        "model": model_summary(model, data.size),
        "weights_init": weight_stats(model),
        "seeds": seeds,
        "environment": records.environment(device, torch.get_num_threads()),
        "data": data.stats,
        "invocation": invocation if invocation is not None else {"argv": sys.argv},
        "started": records.now(),
        "finished": None,
        "wall_time_s": 0.0,
        "data_load_s": load_s,
        "uniform_loss": uniform,
        "baseline": baseline_metric(cfg, data),
    }
    best_metric, stale, start_epoch = math.inf, 0, 1
    ck = _load_checkpoint(ckpt_path, device, quiet)
    if ck is not None:  # resume
        model.load_state_dict(ck["model"])
        opt.load_state_dict(ck["optimizer"])
        sched.load_state_dict(ck["scheduler"])
        _set_rng_state(ck["rng"], gens)
        rec["epochs"], rec["best_epoch"] = ck["epochs"], ck["best_epoch"]
        rec["started"], rec["wall_time_s"] = ck["started"], ck["wall_time_s"]
        best_metric, stale, start_epoch = ck["best_metric"], ck["stale"], ck["epoch"] + 1
        monitor.value = ck.get("monitor")
        rec["resumed_from_epoch"] = ck["epoch"]
    records.atomic_write_json(rec_path, rec)

    run_epoch = _lm_epoch if cfg.task in LM_TASKS else _speech_epoch
    extra = {} if cfg.task in LM_TASKS else {"generator": data_gen}
    try:
        from tqdm import tqdm  # not tqdm.auto: no widget warning inside notebooks

        for epoch in range(start_epoch, cfg.epochs + 1):
            if cfg.early_stop and stale >= cfg.early_stop:
                break
            t0 = time.perf_counter()
            n_batches = _num_batches(cfg, data.train)
            with tqdm(
                total=n_batches,
                desc=f"epoch {epoch}/{cfg.epochs}",
                disable=quiet,
                leave=False,
                unit="batch",
            ) as bar:
                tr_loss, tr_acc = run_epoch(
                    model, data.train, cfg, device, opt, bar, callback, epoch, monitor=monitor,
                    **extra,
                )  # fmt: skip
            valid = evaluate(model, data.valid, cfg, device)
            lr = opt.param_groups[0]["lr"]
            wall = time.perf_counter() - t0
            entry = {
                "epoch": epoch,
                "train_loss": tr_loss,
                "train_metric": _lm_metric(cfg, tr_loss) if tr_acc is None else 1.0 - tr_acc,
                "valid_loss": valid["loss"],
                "valid_metric": valid["metric"],
                "lr": lr,
                "wall_s": wall,
                "steps": epoch * n_batches,
                "weights": weight_stats(model),
            }
            if "accuracy" in valid:
                entry["valid_accuracy"] = valid["accuracy"]
            rec["epochs"].append(entry)
            rec["wall_time_s"] += wall
            if math.isfinite(valid["metric"]) and valid["metric"] < best_metric:
                best_metric, stale, rec["best_epoch"] = valid["metric"], 0, epoch
                records.atomic_torch_save(best_path, model.state_dict())
            else:
                stale += 1
            sched.step(valid["metric"])
            records.atomic_torch_save(
                ckpt_path,
                {
                    "epoch": epoch,
                    "model": model.state_dict(),
                    "optimizer": opt.state_dict(),
                    "scheduler": sched.state_dict(),
                    "rng": _rng_state(gens),
                    "epochs": rec["epochs"],
                    "best_epoch": rec["best_epoch"],
                    "best_metric": best_metric,
                    "stale": stale,
                    "monitor": monitor.value,
                    "started": rec["started"],
                    "wall_time_s": rec["wall_time_s"],
                },
            )
            records.atomic_write_json(rec_path, rec)
            if not quiet:
                print(_epoch_line(cfg, entry), file=sys.stderr, flush=True)
        rec["status"] = "completed"
    except Diverged as d:
        epoch_no = len(rec["epochs"]) + (0 if d.batch is None else 1)
        rec["status"] = "diverged"
        rec["diverged"] = {"epoch": epoch_no, "batch": d.batch, "reason": d.reason}
    except Exception as e:
        rec["status"] = "failed"
        rec["error"] = f"{type(e).__name__}: {e}"
        rec["finished"] = records.now()
        records.atomic_write_json(rec_path, rec)
        raise
    if best_path.exists() and rec["best_epoch"] is not None:  # test the best checkpoint
        model.load_state_dict(torch.load(best_path, map_location=device, weights_only=True))
        rec["test"] = evaluate(model, data.test, cfg, device)
        rec["packed"] = _keep_packed(model, run_dir, rec, data, cfg)
    rec["convergence"] = convergence(rec)
    rec["learned"] = None if rec["test"] is None else learned(rec)
    rec["finished"] = records.now()
    records.atomic_write_json(rec_path, rec)
    ckpt_path.unlink(missing_ok=True)  # the record, the best weights and the packed file remain
    return rec


class _LossMonitor:
    """Running mean of the training loss, ``m <- m + (loss - m) / EMA_BATCHES``; raises
    :class:`Diverged` on a non-finite loss or when ``m`` exceeds ``limit``."""

    def __init__(self, limit: float) -> None:
        self.limit, self.value = limit, None

    def update(self, loss: float, batch: int) -> None:
        if not math.isfinite(loss):
            raise Diverged(f"non-finite training loss ({loss})", batch=batch)
        self.value = loss if self.value is None else self.value + (loss - self.value) / EMA_BATCHES
        if self.value > self.limit:
            raise Diverged(
                f"running training loss {self.value:.4g} above the limit {self.limit:.4g} "
                "(diverge_factor x uniform-guess loss)",
                batch=batch,
            )


def _load_checkpoint(path: Path, device, quiet: bool) -> dict | None:
    """The checkpoint at ``path``, or None when there is none; an unreadable one is renamed
    (never deleted) and None returned, so the run starts again from scratch."""
    if not path.exists():
        return None
    try:
        ck = torch.load(path, map_location=device, weights_only=False)
        missing = {"epoch", "model", "optimizer", "scheduler", "rng"} - set(ck)
        if missing:
            raise ValueError(f"missing {sorted(missing)}")
        return ck
    except Exception as e:  # truncated, corrupt or foreign file
        aside = path.with_name(f"{path.name}.corrupt-{time.strftime('%Y%m%dT%H%M%S')}")
        path.rename(aside)
        import warnings

        warnings.warn(
            f"checkpoint {path} could not be read ({type(e).__name__}: {str(e)[:200]}); "
            f"set aside as {aside.name}, the run starts again from its first epoch",
            stacklevel=3,
        )
        return None


def _keep_packed(model: nn.Module, run_dir: Path, rec: dict, data: _Data, cfg) -> dict:
    """Pack the best model (``model.npz``), reload it and evaluate the reloaded copy: the
    record keeps the file's name, sha256, size and the reloaded test metric."""
    from .export import load_packed, pack_model

    path = run_dir / "model.npz"
    source = {k: rec.get(k) for k in ("run_id", "config", "best_epoch", "status")}
    source["input_size"] = rec["model"]["input_size"]
    device = next(model.parameters()).device
    size = pack_model(model.cpu(), path, source)
    model.to(device)
    back = load_packed(path).to(device)
    test = evaluate(back, data.test, cfg, device)
    return {
        "file": path.name,
        "sha256": hashlib.sha256(path.read_bytes()).hexdigest(),
        "bytes": size["file_bytes"],
        "fp32_bytes": size["fp32_bytes"],
        "bits": size["bits"],
        "test_metric": test["metric"],
    }


def convergence(rec: dict) -> dict:
    """Was validation still improving at the end? ``still_improving``: the best validation
    epoch is the last epoch run (more epochs would likely have helped)."""
    n, best = len(rec["epochs"]), rec["best_epoch"]
    return {
        "epochs_run": n,
        "best_epoch": best,
        "still_improving": bool(n and best == n),
        "early_stopped": bool(n and best is not None and n < rec["config"]["epochs"]
                              and rec["status"] == "completed"),
    }  # fmt: skip


def learned(rec: dict) -> bool:
    """Did the model learn anything? Its test metric beats the baseline (PTB: the unigram
    model of the training text; digits: chance)."""
    return bool(rec["test"]["metric"] < rec["baseline"]["metric"])


def baseline_metric(cfg: RunConfig, data: _Data) -> dict:
    """The no-learning reference on the test split: LM tasks, the unigram model of the
    training symbols (add-one smoothed); digits, chance (0.9 error)."""
    if cfg.task not in LM_TASKS:
        return {"name": "chance", "metric": 0.9}
    counts = torch.bincount(data.train, minlength=data.size).double() + 1.0
    logp = (counts / counts.sum()).log()
    loss = float(-logp[data.test].mean())
    return {"name": "unigram", "metric": _lm_metric(cfg, loss)}


@torch.no_grad()
def weight_stats(model: nn.Module) -> dict:
    """Per parameter of every recurrent layer, of the deterministic (evaluation) weights:
    ``zero`` share of exact zeros, ``rms``, and for matrices ``spectral`` (largest singular
    value) and ``block_spectral`` (per gate block, H rows each)."""
    out = {}
    for lname, layer in model.named_modules():
        if not isinstance(layer, QuantRNNBase):
            continue
        was = layer.training
        layer.eval()
        q = layer.quantized_parameters(False)
        layer.train(was)
        for name, w in q.items():
            w = w.detach().double()
            s = {"quantized": layer.is_quantized(name), "zero": float((w == 0).double().mean()),
                 "rms": float(w.pow(2).mean().sqrt())}  # fmt: skip
            if w.dim() == 2:
                s["spectral"] = float(torch.linalg.matrix_norm(w, ord=2))
                blocks = w.split(layer.hidden_size, dim=0)
                s["block_spectral"] = [float(torch.linalg.matrix_norm(b, ord=2)) for b in blocks]
            out[f"{lname}.{name}" if lname else name] = s
    return out


def _num_batches(cfg, split) -> int:
    from .data import num_lm_batches

    if cfg.task in LM_TASKS:
        return num_lm_batches(len(split), cfg.batch_size, cfg.bptt)
    return math.ceil(len(split) / cfg.batch_size)


def _epoch_line(cfg, e: dict) -> str:
    name = cfg.metric_name
    return (
        f"epoch {e['epoch']:3d}  train {name} {e['train_metric']:.4f}  "
        f"valid {name} {e['valid_metric']:.4f}  lr {e['lr']:.2g}  {e['wall_s']:.1f}s"
    )


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
