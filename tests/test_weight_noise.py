"""The matched-noise control of issue 14: a float layer whose weights get zero-mean Gaussian
noise with, per weight, the variance of binary (or ternary) stochastic rounding, drawn once
per forward (one BPTT segment), as the quantizers draw theirs."""

from __future__ import annotations

import pytest
import torch

from qrnn import QuantGRU, QuantLSTM, quantizer

DRAWS = 4000


def _draws(layer, n=DRAWS):
    layer.train()
    return {name: torch.stack([layer.quantized_parameters()[name] for _ in range(n)])
            for name in layer._flat_weights_names}  # fmt: skip


@pytest.mark.parametrize("match", ["binary", "ternary"])
@pytest.mark.parametrize("cls", [QuantLSTM, QuantGRU])
def test_noise_has_the_rounding_variance_of_its_quantizer(match, cls):
    torch.manual_seed(0)
    noisy = cls(4, 5, scheme="float", weight_noise=match)
    rounded = cls(4, 5, scheme=match, stochastic=True)
    rounded.load_state_dict(noisy.state_dict())  # the same shadow weights
    q = quantizer(match)
    got, ref = _draws(noisy), _draws(rounded)
    for name, w in noisy.named_parameters():
        fan_in, fan_out = noisy.param_fans(name)
        want = q.rounding_variance(w.detach(), fan_in, fan_out)
        var = got[name].var(dim=0)
        # measured over draws: the formula, and the stochastic quantizer's own spread
        assert var.sum().item() == pytest.approx(want.sum().item(), rel=0.05)
        assert var.sum().item() == pytest.approx(ref[name].var(dim=0).sum().item(), rel=0.07)
        assert torch.allclose(var, want, rtol=0.2, atol=1e-4)
        # zero mean: the noise is centred on the shadow weight (no bias)
        se = (want / DRAWS).sqrt().max().item()
        assert (got[name].mean(dim=0) - w.detach()).abs().max().item() < 6 * se + 1e-6


def test_noise_only_in_training_and_one_draw_per_forward():
    torch.manual_seed(1)
    layer = QuantLSTM(3, 4, scheme="float", weight_noise="binary")
    layer.eval()
    x = torch.randn(7, 2, 3)
    assert torch.equal(layer(x)[0], torch.nn.LSTM.forward(layer, x)[0])  # eval: plain float
    layer.train()
    a, b = layer.quantized_parameters(), layer.quantized_parameters()
    assert not torch.equal(a["weight_hh_l0"], b["weight_hh_l0"])  # a fresh draw per call


def test_noise_needs_a_float_layer_and_a_known_match():
    with pytest.raises(ValueError, match="weight_noise"):
        QuantLSTM(3, 4, scheme="binary", weight_noise="binary")
    with pytest.raises(ValueError, match="weight_noise"):
        QuantLSTM(3, 4, scheme="float", weight_noise="pow2")
