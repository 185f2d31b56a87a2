"""What a run is made of, from its :class:`~qrnn.study.config.RunConfig`: the data splits
(``load_data``), the model (:func:`build_model`), and the summaries its record keeps of
them (``model_summary``, ``weight_stats``, ``baseline_metric``). After Ott et
al. 2016, *Recurrent Neural Networks With Limited Numerical Precision*,
https://arxiv.org/abs/1608.06902.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Any

import torch
from torch import nn

from ..layers import QuantIO, QuantRNNBase, glorot_init_, quantized_layers
from ..models import DigitClassifier, LanguageModel
from .config import LM_TASKS, RunConfig
from .loop import lm_metric

__all__ = ["build_model", "model_config"]


@dataclass
class RunData:
    """A run's three splits and their size: token streams (LM) or utterance splits (digits),
    the vocabulary size or feature count, and the loader's statistics for the record."""

    train: Any
    valid: Any
    test: Any
    size: int  # vocabulary size (LM) or feature count (fsdd)
    stats: dict


def load_data(cfg: RunConfig, data_root=None, progress: bool = True) -> RunData:
    """The splits ``cfg`` trains on: its task's data, cut to ``train_limit`` / ``eval_limit``
    (LM) or its ``split`` of the recordings (digits)."""
    from .. import data as qdata

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
        return RunData(tr, va, te, len(corpus.vocab), stats)
    sd = qdata.load_fsdd(split=cfg.split, root=data_root, progress=progress)
    tr, va, te = sd.train, sd.valid, sd.test
    if cfg.train_limit:
        tr = subset(tr, cfg.train_limit)
    if cfg.eval_limit:
        va, te = subset(va, cfg.eval_limit), subset(te, cfg.eval_limit)
    stats = sd.stats()
    stats["used_sizes"] = {"train": len(tr), "valid": len(va), "test": len(te)}
    return RunData(tr, va, te, sd.n_features, stats)


def subset(split, n: int):
    """The first ``n`` utterances of a digits split (features, labels, speakers, names)."""
    return dataclasses.replace(
        split,
        features=split.features[:n],
        labels=split.labels[:n],
        speakers=split.speakers[:n],
        names=split.names[:n],
    )


def model_config(cfg: RunConfig, size: int) -> dict[str, Any]:
    """The constructor arguments of ``cfg``'s model (``LanguageModel`` for the LM tasks, else
    ``DigitClassifier``) for a vocabulary (LM) or feature count (fsdd) of ``size``."""
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
        return dict(vocab_size=size, embed=cfg.embed, quantize_io=cfg.quantize_io, **common,
                    **quant)  # fmt: skip
    return dict(n_features=size, bidirectional=cfg.bidirectional, input_norm=cfg.input_norm,
                pool=cfg.pool, quantize_io=cfg.quantize_io, **common, **quant)  # fmt: skip


def build_model(cfg: RunConfig, size: int) -> nn.Module:
    """The model of ``cfg`` (``model_config``), initialized as ``cfg.init`` says."""
    family = LanguageModel if cfg.task in LM_TASKS else DigitClassifier
    model = family.from_config(model_config(cfg, size))
    if cfg.init == "glorot":
        for layer in quantized_layers(model):
            glorot_init_(layer)
    return model


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
                    isinstance(mod, QuantIO)
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


def baseline_metric(cfg: RunConfig, data: RunData) -> dict:
    """The no-learning reference on the test split: LM tasks, the unigram model of the
    training symbols (add-one smoothed); digits, chance (0.9 error)."""
    if cfg.task not in LM_TASKS:
        return {"name": "chance", "metric": 0.9}
    counts = torch.bincount(data.train, minlength=data.size).double() + 1.0
    logp = (counts / counts.sum()).log()
    loss = float(-logp[data.test].mean())
    return {"name": "unigram", "metric": lm_metric(cfg, loss)}


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
