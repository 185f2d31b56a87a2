"""The training loop's inner parts: one epoch of a language model or the digit classifier,
one optimizer step on the shadow weights (BinaryConnect: the forward pass uses the quantized
weights, the update goes to the float shadow weights, then they are clipped), evaluation with
deterministic weights, and the divergence rule. After Ott et al. 2016, *Recurrent Neural
Networks With Limited Numerical Precision*, https://arxiv.org/abs/1608.06902.
"""

from __future__ import annotations

import math
from collections import deque

import numpy as np
import torch
from torch import nn

from ..layers import clip_shadow_
from .config import LM_TASKS, RunConfig

__all__ = ["Diverged", "clip_gradients_", "evaluate", "uniform_loss"]

# what the records call the rule that stops a run (RunConfig.diverge_factor)
DIVERGENCE_RULE = (
    "non-finite training loss or gradient, or the running mean of the training loss "
    "(exponential, 50 batches) above diverge_factor x the uniform-guess loss; validation never "
    "stops a run"
)
EMA_BATCHES = 50


def _detach(state):
    if state is None:
        return None
    return tuple(s.detach() for s in state) if isinstance(state, tuple) else state.detach()


class Diverged(Exception):
    """Training stopped by the divergence rule: the reason, and the batch where it fired."""

    def __init__(self, reason: str, batch: int | None = None):
        super().__init__(reason)
        self.reason, self.batch = reason, batch


def lm_epoch(
    model, stream, cfg, device, opt=None, progress=None, callback=None, epoch=0, monitor=None
):
    """Mean loss (nats per symbol) over one pass; trains when ``opt`` is given."""
    from ..data import lm_batches

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


def speech_epoch(
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
    from ..data import speech_batches

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


def clip_gradients_(
    model: nn.Module, max_norm: float, batch: int = 0, mode: str = "global"
) -> float:
    """Clip the gradients; return their total 2-norm before clipping.

    ``global``: scale every gradient by ``min(1, max_norm / ||g||)`` with ``||g||`` the norm
    over all tensors (``nn.utils.clip_grad_norm_``). ``per-tensor``: each tensor ``p`` by
    ``min(1, max_norm / ||g_p||)`` of its own norm, so a tensor whose gradient explodes (binary
    weights with H = 1 reach elements of 1e23) does not shrink the others' steps to nothing:
    under global clipping the float embedding and output layer then get ~1e-25, below Adam's
    eps, and stop learning. Norms are taken in float64 when the float32 sum of squares
    overflows although every element is finite (torch would otherwise scale by 0 and skip the
    step silently); a gradient with a non-finite element raises :class:`Diverged`."""
    params = [p for p in model.parameters() if p.grad is not None]
    grads = [p.grad for p in params]
    if mode == "global":  # torch's total norm, recomputed in float64 only on overflow
        norm = nn.utils.get_total_norm(grads)
        if not torch.isfinite(norm):
            norm = torch.stack([g.double().pow(2).sum() for g in grads]).sum().sqrt()
            if not torch.isfinite(norm):
                raise Diverged("non-finite gradient", batch=batch)
        nn.utils.clip_grads_with_norm_(params, max_norm, norm)
        return float(norm)
    # one host sync for the finiteness check, none per tensor (the step is the hot path)
    norms = torch.stack(torch._foreach_norm(grads)).double()
    if not torch.isfinite(norms).all():
        norms = torch.stack([g.double().pow(2).sum().sqrt() for g in grads])
        if not torch.isfinite(norms).all():
            raise Diverged("non-finite gradient", batch=batch)
    scale = (max_norm / norms).clamp(max=1.0).float()  # 1 (exact) below the limit
    for g, c in zip(grads, scale.unbind(), strict=True):
        g.mul_(c)
    return float(norms.pow(2).sum().sqrt())


def _step(model, loss, opt, cfg, i, progress=None, callback=None, epoch=0, monitor=None) -> None:
    """One optimizer step on the shadow weights (+ BinaryConnect clipping), then the hooks;
    ``monitor`` (:class:`LossMonitor`) applies the divergence rule to the training loss."""
    if monitor is not None:
        monitor.update(loss.item(), i)
    elif not torch.isfinite(loss):
        raise Diverged(f"non-finite training loss ({loss.item()})", batch=i)
    opt.zero_grad(set_to_none=True)
    loss.backward()
    if cfg.clip_grad:
        norm = clip_gradients_(model, cfg.clip_grad, batch=i, mode=cfg.clip_mode)
        if monitor is not None:
            monitor.grad_norms.append(norm)
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
        loss, _ = lm_epoch(model, split, cfg, device)
        return {"loss": loss, "metric": lm_metric(cfg, loss)}
    loss, acc = speech_epoch(model, split, cfg, device)
    return {"loss": loss, "metric": 1.0 - acc, "accuracy": acc}


def lm_metric(cfg, loss: float) -> float:
    """The reported metric of a mean loss in nats: perplexity ``e^loss`` (ptb-word) or bits
    per character ``loss / ln 2``."""
    if cfg.task == "ptb-word":
        return math.exp(min(loss, 700.0))
    return loss / math.log(2)  # bits per character


def uniform_loss(cfg: RunConfig, size: int) -> float:
    """Cross-entropy of uniform guessing: log V (LM) or log 10 (digits)."""
    return math.log(size if cfg.task in LM_TASKS else 10)


class LossMonitor:
    """Running mean of the training loss, ``m <- m + (loss - m) / EMA_BATCHES``; raises
    :class:`Diverged` on a non-finite loss or when ``m`` exceeds ``limit``."""

    def __init__(self, limit: float) -> None:
        self.limit, self.value = limit, None
        self.grad_norms: list[float] = []  # this epoch's gradient norms before clipping
        # the last training losses: a diverged run's record keeps them, so that anyone can
        # check that it was not stopped while its loss was finite and improving
        self.recent: deque[float] = deque(maxlen=EMA_BATCHES)

    def trail(self) -> dict:
        """The running loss and the last training losses (rounded), for a diverged record."""
        return {"running_loss": self.value,
                "recent_losses": [round(v, 5) if math.isfinite(v) else str(v)
                                  for v in self.recent]}  # fmt: skip

    def grad_summary(self) -> dict[str, float | int]:
        """The epoch's gradient 2-norms before clipping (median, max, steps whose float32 norm
        overflowed), then reset for the next epoch."""
        g, self.grad_norms = self.grad_norms, []
        if not g:
            return {}
        big = float(torch.finfo(torch.float32).max)
        return {"median": float(np.median(g)), "max": max(g),
                "float32_overflow": sum(v * v > big for v in g)}  # fmt: skip

    def update(self, loss: float, batch: int) -> None:
        self.recent.append(loss)
        if not math.isfinite(loss):
            raise Diverged(f"non-finite training loss ({loss})", batch=batch)
        self.value = loss if self.value is None else self.value + (loss - self.value) / EMA_BATCHES
        if self.value > self.limit:
            raise Diverged(
                f"running training loss {self.value:.4g} above the limit {self.limit:.4g} "
                "(diverge_factor x uniform-guess loss)",
                batch=batch,
            )


def num_batches(cfg, split) -> int:
    """Batches in one pass over ``split``: BPTT windows (LM) or padded utterance batches."""
    from ..data import num_lm_batches

    if cfg.task in LM_TASKS:
        return num_lm_batches(len(split), cfg.batch_size, cfg.bptt)
    return math.ceil(len(split) / cfg.batch_size)
