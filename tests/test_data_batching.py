"""Batching: LM windows cover every symbol once per epoch; speech padding and masks."""

from __future__ import annotations

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from qrnn.data import SpeechSplit, lm_batches, num_lm_batches, padding_mask, speech_batches


@settings(max_examples=60, deadline=None)
@given(n=st.integers(0, 300), batch=st.integers(1, 9), bptt=st.integers(1, 40))
def test_lm_batches_cover_stream_once(n, batch, bptt):
    stream = torch.arange(n)  # symbol ids equal positions, so coverage is easy to read off
    batches = lm_batches(stream, batch, bptt)
    pairs = list(batches)
    assert len(pairs) == len(batches) == num_lm_batches(n, batch, bptt)
    steps = max(0, (n - 1) // batch)
    xs = [x for x, _ in pairs]
    ys = [y for _, y in pairs]
    for x, y in pairs:
        assert x.shape == y.shape and x.shape[1] == batch and 1 <= x.shape[0] <= bptt
        assert torch.equal(y, x + 1)  # y is x shifted by one step
    inputs = torch.cat(xs).flatten().sort().values if pairs else torch.empty(0)
    targets = torch.cat(ys).flatten().sort().values if pairs else torch.empty(0)
    # Every symbol 1 .. B*L is a target exactly once, 0 .. B*L-1 an input exactly once;
    # fewer than `batch` trailing symbols are dropped.
    assert torch.equal(targets, torch.arange(1, batch * steps + 1))
    assert torch.equal(inputs, torch.arange(0, batch * steps))
    assert n - 1 - batch * steps < batch or n == 0


def test_lm_batches_are_contiguous_per_column():
    stream = torch.arange(1001)
    pairs = list(lm_batches(stream, 4, 7))
    x = torch.cat([x for x, _ in pairs])  # (L, B): column b continues across windows
    assert torch.equal(x[:, 2], torch.arange(500, 750))
    assert pairs[-1][0].shape == (250 % 7, 4)
    with pytest.raises(ValueError):
        lm_batches(stream.view(7, -1), 2, 3)


def make_split(lengths, n_feat=3):
    feats = [torch.full((t, n_feat), float(i + 1)) for i, t in enumerate(lengths)]
    return SpeechSplit(feats, torch.arange(len(lengths)) % 10, ["s"] * len(lengths), [])


def test_speech_batches_padding_and_mask():
    lengths = [5, 2, 7, 1, 3, 4, 6]
    split = make_split(lengths)
    seen = []
    for x, lens, y in speech_batches(
        split, 3, shuffle=True, generator=torch.Generator().manual_seed(0)
    ):
        assert x.dtype == torch.float32 and lens.dtype == torch.long and y.dtype == torch.long
        assert x.shape[0] == lens.shape[0] == y.shape[0] and x.shape[1] == int(lens.max())
        mask = padding_mask(lens, x.shape[1])
        ids = x[:, 0, 0].long() - 1  # each utterance is filled with its index + 1
        assert torch.equal(lens, torch.tensor(lengths)[ids])
        assert torch.equal(y, ids % 10)
        assert torch.equal(mask, x[:, :, 0] != 0)  # padding exactly where the mask is False
        assert torch.equal(mask.sum(1), lens)
        seen += ids.tolist()
    assert sorted(seen) == list(range(len(lengths)))


def test_speech_batches_seeded_and_ordered():
    split = make_split([3] * 20)

    def order(**kw):
        return [int(v) for x, _, _ in speech_batches(split, 4, **kw) for v in x[:, 0, 0]]

    a = order(generator=torch.Generator().manual_seed(1))
    assert a == order(generator=torch.Generator().manual_seed(1))
    assert a != order(generator=torch.Generator().manual_seed(2))
    assert order(shuffle=False) == list(range(1, 21))
    assert len(list(speech_batches(make_split([2] * 10), 4, drop_last=True))) == 2


def test_padding_mask_default_length():
    m = padding_mask(torch.tensor([2, 0, 3]))
    assert m.tolist() == [[True, True, False], [False, False, False], [True, True, True]]
