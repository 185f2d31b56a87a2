"""The two model families of the study: a language model and a spoken-digit classifier.

By default only the recurrent layers are quantized (``quantize_io=False``), as in the authors'
released code (a quantized GRU layer between float embedding/output layers); ``quantize_io=True``
quantizes the embedding table and the output matrix with the same method.

Part of ``qrnn``, the library and study after Ott et al. 2016, *Recurrent Neural Networks With
Limited Numerical Precision*, https://arxiv.org/abs/1608.06902.
"""

from __future__ import annotations

from typing import Any

import torch
from torch import Tensor, nn
from torch.nn.utils.rnn import PackedSequence, pack_padded_sequence, pad_packed_sequence

from .layers import QuantEmbedding, QuantGRU, QuantIO, QuantLinear, QuantLSTM, QuantRNN

CELLS = {"rnn": QuantRNN, "gru": QuantGRU, "lstm": QuantLSTM}

__all__ = ["CELLS", "FAMILIES", "DigitClassifier", "LanguageModel", "io_quantized"]


def _rnn(cell: str, input_size: int, hidden: int, layers: int, **kw: Any) -> nn.RNNBase:
    if cell not in CELLS:
        raise ValueError(f"unknown cell {cell!r}; choose one of {', '.join(CELLS)}")
    return CELLS[cell](input_size, hidden, num_layers=layers, **kw)


def io_quantized(model: nn.Module) -> bool:
    """Whether the embedding / output layers of ``model`` are quantized (``quantize_io``)."""
    return any(isinstance(m, QuantIO) and m.quantizer.name != "float" for m in model.modules())


class _Configurable(nn.Module):
    """A model that keeps its configuration: :attr:`config` rebuilds it via :meth:`from_config`."""

    @property
    def config(self) -> dict[str, Any]:
        """The constructor arguments that rebuild this model (:meth:`from_config`), with the
        method as its layers stand now (a post-training quantized copy reports its new one)."""
        return {**self._structure, "quantize_io": io_quantized(self), **self.rnn.quant_config()}

    @classmethod
    def from_config(cls, config: dict[str, Any]):
        """The model described by ``config`` (:attr:`config`), freshly initialized."""
        return cls(**config)


class LanguageModel(_Configurable):
    """Embedding (or one-hot when ``embed=0``) -> quantized RNN/GRU/LSTM stack -> linear.

    ``forward(x (T, B) long, state) -> (logits (T, B, V), state)``; carry ``state`` across
    truncated-BPTT windows (detach it between windows).
    """

    def __init__(
        self,
        vocab_size: int,
        cell: str = "lstm",
        hidden: int = 128,
        layers: int = 1,
        embed: int = 0,
        dropout: float = 0.0,
        quantize_io: bool = False,
        **quant: Any,
    ) -> None:
        super().__init__()
        # the structure; the method is read from the layers (:attr:`config`)
        self._structure = dict(vocab_size=vocab_size, cell=cell, hidden=hidden, layers=layers,
                               embed=embed, dropout=dropout)  # fmt: skip
        self.vocab_size, self.embed_dim = vocab_size, embed
        io = {k: quant[k] for k in ("scheme", "stochastic", "quantizer_options") if k in quant}
        if not quantize_io:
            io = {}
        self.embed = QuantEmbedding(vocab_size, embed, **io) if embed else None
        self.drop = nn.Dropout(dropout)
        inner = dropout if layers > 1 else 0.0  # torch.nn applies it between layers only
        self.rnn = _rnn(cell, embed or vocab_size, hidden, layers, dropout=inner, **quant)
        self.out = QuantLinear(hidden, vocab_size, **io)

    def forward(self, x: Tensor, state=None):
        if self.embed is None:
            e = nn.functional.one_hot(x, self.vocab_size).to(self.out.weight.dtype)  # (T, B, V)
        else:
            e = self.drop(self.embed(x))  # (T, B, E)
        h, state = self.rnn(e, state)  # (T, B, H)
        return self.out(self.drop(h)), state  # (T, B, V)


class DigitClassifier(_Configurable):
    """Optional input normalization -> quantized RNN/GRU/LSTM -> pooled state -> 10 digits.

    ``input_norm="batch"`` is the authors' choice (BatchNorm on the layer input ``x_t`` only,
    computed over the valid frames). ``pool``: ``"last"`` (final state of each direction) or
    ``"mean"`` (mean of the outputs over valid frames).
    ``forward(x (B, T, F), lengths (B,)) -> logits (B, 10)``.
    """

    def __init__(
        self,
        n_features: int,
        n_classes: int = 10,
        cell: str = "gru",
        hidden: int = 64,
        layers: int = 1,
        bidirectional: bool = False,
        dropout: float = 0.0,
        input_norm: str = "none",
        pool: str = "last",
        quantize_io: bool = False,
        **quant: Any,
    ) -> None:
        super().__init__()
        if input_norm not in ("none", "batch"):
            raise ValueError(f"input_norm must be 'none' or 'batch', got {input_norm!r}")
        if pool not in ("last", "mean"):
            raise ValueError(f"pool must be 'last' or 'mean', got {pool!r}")
        dropout = dropout if layers > 1 else 0.0  # torch.nn applies it between layers only
        self._structure = dict(n_features=n_features, n_classes=n_classes, cell=cell,
                               hidden=hidden, layers=layers, bidirectional=bidirectional,
                               dropout=dropout, input_norm=input_norm, pool=pool)  # fmt: skip
        self.pool = pool
        self.norm = nn.BatchNorm1d(n_features) if input_norm == "batch" else None
        self.rnn = _rnn(
            cell,
            n_features,
            hidden,
            layers,
            dropout=dropout,
            bidirectional=bidirectional,
            batch_first=True,
            **quant,
        )
        io = {k: quant[k] for k in ("scheme", "stochastic", "quantizer_options") if k in quant}
        dirs = 2 if bidirectional else 1
        self.out = QuantLinear(hidden * dirs, n_classes, **(io if quantize_io else {}))

    def forward(self, x: Tensor, lengths: Tensor) -> Tensor:
        packed = pack_padded_sequence(x, lengths.cpu(), batch_first=True, enforce_sorted=False)
        if self.norm is not None:  # normalize the valid frames only
            packed = PackedSequence(
                self.norm(packed.data),
                packed.batch_sizes,
                packed.sorted_indices,
                packed.unsorted_indices,
            )
        out, h = self.rnn(packed)
        if self.pool == "last":
            h = h[0] if isinstance(h, tuple) else h  # LSTM: (h, c)
            dirs = 2 if self.rnn.bidirectional else 1
            feat = torch.cat(list(h[-dirs:]), dim=-1)  # last layer, every direction: (B, dirs*H)
        else:
            y, lens = pad_packed_sequence(out, batch_first=True)  # (B, T, dirs*H)
            feat = y.sum(1) / lens.to(y.device, y.dtype).unsqueeze(1)
        return self.out(feat)


# model family name (as the packed files write it) -> class
FAMILIES: dict[str, type[nn.Module]] = {
    "LanguageModel": LanguageModel,
    "DigitClassifier": DigitClassifier,
    **{c.__name__: c for c in CELLS.values()},
}
