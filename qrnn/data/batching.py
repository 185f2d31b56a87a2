"""Batching: truncated-BPTT windows over token streams, padded batches of utterances.

Part of ``qrnn``, the library and study after Ott et al. 2016, *Recurrent Neural Networks With
Limited Numerical Precision*, https://arxiv.org/abs/1608.06902.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence

import torch

__all__ = ["LMBatches", "lm_batches", "num_lm_batches", "padding_mask", "speech_batches"]


def _rows(n_tokens: int, batch_size: int) -> int:
    """Steps per row: rows of ``L + 1`` tokens overlapping by one, ``B * L + 1 <= n``."""
    if batch_size < 1:
        raise ValueError(f"batch_size must be >= 1, got {batch_size}")
    return max(0, (n_tokens - 1) // batch_size)


def num_lm_batches(n_tokens: int, batch_size: int, bptt: int) -> int:
    """Number of windows :func:`lm_batches` yields for a stream of ``n_tokens``."""
    if bptt < 1:
        raise ValueError(f"bptt must be >= 1, got {bptt}")
    return -(-_rows(n_tokens, batch_size) // bptt)


class LMBatches:
    """Iterable of ``(x, y)`` windows, both ``(T, B)`` long with ``T <= bptt``, ``y`` = next token.

    The stream is cut into ``batch_size`` contiguous rows; row ``b`` covers tokens
    ``b*L .. b*L + L`` (``L = (n - 1) // batch_size``), so consecutive rows share one token and
    every token ``1 .. B*L`` is a target exactly once per epoch (at most ``batch_size - 1``
    trailing tokens are dropped). Windows run in order; column ``b`` of one window continues
    column ``b`` of the previous one, so the caller carries the hidden state across windows.
    """

    def __init__(self, stream: torch.Tensor, batch_size: int, bptt: int):
        if stream.dim() != 1:
            raise ValueError(f"stream must be 1-D, got shape {tuple(stream.shape)}")
        self.batch_size, self.bptt = batch_size, bptt
        self.steps = _rows(stream.numel(), batch_size)
        self.n = num_lm_batches(stream.numel(), batch_size, bptt)
        s = stream.contiguous()
        # (L + 1, B) view: data[t, b] = stream[b * L + t]
        self.data = s.as_strided((self.steps + 1, batch_size), (1, self.steps)) if self.n else s

    def __len__(self) -> int:
        return self.n

    def __iter__(self) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
        for i in range(0, self.steps, self.bptt):
            t = min(self.bptt, self.steps - i)
            yield self.data[i : i + t].contiguous(), self.data[i + 1 : i + 1 + t].contiguous()


def lm_batches(stream: torch.Tensor, batch_size: int, bptt: int) -> LMBatches:
    """Time-major truncated-BPTT batches of a token stream; see :class:`LMBatches`."""
    return LMBatches(stream, batch_size, bptt)


def padding_mask(lengths: torch.Tensor, max_len: int | None = None) -> torch.Tensor:
    """``(B, T)`` bool mask, ``True`` at valid (non-padding) frames."""
    max_len = int(lengths.max()) if max_len is None else max_len
    return torch.arange(max_len, device=lengths.device)[None, :] < lengths[:, None]


def speech_batches(
    split,
    batch_size: int,
    shuffle: bool = True,
    generator: torch.Generator | None = None,
    drop_last: bool = False,
) -> Iterator[tuple[torch.Tensor, torch.Tensor, torch.Tensor]]:
    """Padded batches ``(x (B, T, F) float32, lengths (B,) long, y (B,) long)``.

    ``split`` has ``features`` (sequence of ``(T_i, F)`` tensors) and ``labels``. Shuffling
    uses ``generator`` (seed it for reproducible order; ``None`` uses torch's global RNG).
    Padding is zeros; use :func:`padding_mask` or ``pack_padded_sequence`` with ``lengths``.
    """
    feats: Sequence[torch.Tensor] = split.features
    labels = torch.as_tensor(split.labels, dtype=torch.long)
    n = len(feats)
    order = torch.randperm(n, generator=generator) if shuffle else torch.arange(n)
    stop = n - n % batch_size if drop_last else n
    for i in range(0, stop, batch_size):
        idx = order[i : i + batch_size].tolist()
        seqs = [feats[j] for j in idx]
        lengths = torch.tensor([s.shape[0] for s in seqs], dtype=torch.long)
        x = torch.nn.utils.rnn.pad_sequence(seqs, batch_first=True).float()
        yield x, lengths, labels[idx]
