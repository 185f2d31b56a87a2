"""Quantized layers: fused kernel vs reference cells, torch.nn compatibility, training, errors."""

import itertools

import pytest
import torch
from torch import nn

import qrnn
from qrnn.cells import reference_forward

CELLS = {"RNN": qrnn.QuantRNN, "GRU": qrnn.QuantGRU, "LSTM": qrnn.QuantLSTM}
TORCH = {"RNN": nn.RNN, "GRU": nn.GRU, "LSTM": nn.LSTM}
METHODS = [
    ("float", {}),
    ("binary", {}),
    ("binary", {"scale": "glorot"}),
    ("ternary", {}),
    ("pow2-ternary", {}),
    ("exponential", {}),
]


def _make(cell, scheme="float", **kw):
    torch.manual_seed(0)
    return CELLS[cell](5, 8, scheme=scheme, **kw).double()


def _close(a, b):
    if isinstance(a, tuple):
        return all(_close(x, y) for x, y in zip(a, b, strict=True))
    return torch.allclose(a, b, atol=1e-10, rtol=1e-9)


@pytest.mark.parametrize("cell", CELLS)
@pytest.mark.parametrize(("scheme", "opts"), METHODS)
@pytest.mark.parametrize(
    ("layers", "bidirectional", "batch_first"),
    [(1, False, False), (2, False, True), (2, True, False)],
)
def test_fused_matches_reference(cell, scheme, opts, layers, bidirectional, batch_first):
    torch.manual_seed(1)
    m = CELLS[cell](
        5,
        8,
        num_layers=layers,
        bidirectional=bidirectional,
        batch_first=batch_first,
        scheme=scheme,
        quantizer_options=opts,
    ).double()
    with torch.no_grad():  # spread the weights so every level of every method occurs
        for p in m.parameters():
            p.uniform_(-0.6, 0.6)
    m.eval()
    x = torch.randn(4, 6, 5, dtype=torch.double)  # (B, T) or (T, B), both fine
    assert _close(m(x), reference_forward(m, x))


@pytest.mark.parametrize("cell", CELLS)
@pytest.mark.parametrize("scheme", ["binary", "ternary", "pow2-ternary", "exponential"])
def test_stochastic_forward_matches_reference_with_same_draws(cell, scheme):
    m = _make(cell, scheme, stochastic=True, num_layers=2)
    m.train()
    x = torch.randn(7, 3, 5, dtype=torch.double)
    m.generator = torch.Generator().manual_seed(3)
    fused = m(x)
    m.generator = torch.Generator().manual_seed(3)
    draws = m.quantized_parameters()  # same draws in the same order
    assert _close(fused, reference_forward(m, x, weights=draws))
    m.generator = torch.Generator().manual_seed(4)
    assert not _close(m(x), fused)
    m.eval()  # evaluation is deterministic
    assert _close(m(x), m(x))
    assert _close(m(x), reference_forward(m, x))


def test_unbatched_input_and_initial_state():
    m = _make("LSTM", "ternary")
    m.eval()
    x = torch.randn(6, 5, dtype=torch.double)
    h0 = (torch.randn(1, 8, dtype=torch.double), torch.randn(1, 8, dtype=torch.double))
    assert _close(m(x, h0), reference_forward(m, x, h0))


@pytest.mark.parametrize("cell", CELLS)
def test_float_scheme_equals_torch_nn_exactly(cell):
    kwargs = dict(num_layers=2, bidirectional=True, batch_first=True)
    torch.manual_seed(0)
    q = CELLS[cell](5, 8, **kwargs)
    ref = TORCH[cell](5, 8, **kwargs)
    ref.load_state_dict(q.state_dict())
    x = torch.randn(3, 9, 5)
    out_q, out_r = q(x), ref(x)
    flat = lambda o: [o[0], *(o[1] if isinstance(o[1], tuple) else (o[1],))]  # noqa: E731
    for a, b in zip(flat(out_q), flat(out_r), strict=True):
        assert torch.equal(a, b)
    # same gradients too
    out_q[0].sum().backward()
    out_r[0].sum().backward()
    for (n, p), (_, r) in zip(q.named_parameters(), ref.named_parameters(), strict=True):
        assert torch.equal(p.grad, r.grad), n


@pytest.mark.parametrize("cell", CELLS)
def test_state_dict_round_trips_with_torch_nn(cell):
    q = CELLS[cell](5, 8, num_layers=2, scheme="ternary")
    ref = TORCH[cell](5, 8, num_layers=2)
    assert list(q.state_dict()) == list(ref.state_dict())
    q.load_state_dict(ref.state_dict())
    for k, v in ref.state_dict().items():
        assert torch.equal(q.state_dict()[k], v)
    q2 = CELLS[cell](5, 8, num_layers=2, scheme="binary")
    with torch.no_grad():
        q2.weight_hh_l1.add_(1.0)
    ref.load_state_dict(q2.state_dict())
    assert torch.equal(ref.weight_hh_l1, q2.weight_hh_l1)


@pytest.mark.parametrize("cell", CELLS)
def test_to_torch_runs_quantized_weights_in_plain_layer(cell):
    m = _make(cell, "exponential", num_layers=2)
    m.eval()
    x = torch.randn(4, 2, 5, dtype=torch.double)
    plain = m.to_torch()
    assert type(plain) is TORCH[cell]
    assert _close(m(x), plain(x))


@pytest.mark.parametrize("cell", CELLS)
def test_shadow_gradient_equals_gradient_wrt_quantized_weights(cell):
    # straight-through: dL/dW (shadow, via the fused kernel) == dL/dW_q (reference cells)
    m = _make(cell, "ternary", stochastic=True, num_layers=2)
    m.train()
    x = torch.randn(5, 2, 5, dtype=torch.double)
    m.generator = torch.Generator().manual_seed(0)
    m(x)[0].square().sum().backward()
    m.generator = torch.Generator().manual_seed(0)
    draws = {k: v.detach().requires_grad_() for k, v in m.quantized_parameters().items()}
    reference_forward(m, x, weights=draws)[0].square().sum().backward()
    for name, p in m.named_parameters():
        assert p.grad.abs().sum() > 0
        assert torch.allclose(p.grad, draws[name].grad, atol=1e-10), name


def test_switches_select_quantized_parameters():
    m = _make("GRU", "binary", quantize_input=False, quantize_bias=False)
    q = m.quantized_parameters(False)
    assert torch.equal(q["weight_ih_l0"], m.weight_ih_l0)
    assert torch.equal(q["bias_hh_l0"], m.bias_hh_l0)
    assert set(q["weight_hh_l0"].unique().tolist()) <= {-1.0, 1.0}
    m2 = _make("GRU", "binary", quantize_recurrent=False)
    q2 = m2.quantized_parameters(False)
    assert torch.equal(q2["weight_hh_l0"], m2.weight_hh_l0)
    assert set(q2["bias_ih_l0"].unique().tolist()) <= {-1.0, 1.0}


def test_ternary_glorot_scale_per_gate_block():
    m = qrnn.QuantLSTM(20, 30, num_layers=2, bidirectional=True, scheme="ternary")
    assert m.param_fans("weight_ih_l0") == (20, 30)
    assert m.param_fans("weight_ih_l1_reverse") == (60, 30)
    assert m.param_fans("weight_hh_l1") == (30, 30)
    q = m.quantized_parameters(False)
    w0 = (6 / 60) ** 0.5
    levels = q["weight_hh_l0"].abs().unique()
    assert torch.allclose(levels, torch.tensor([0.0, w0]))


def test_clip_shadow():
    m = qrnn.QuantGRU(4, 6, scheme="binary")
    with torch.no_grad():
        m.weight_hh_l0.mul_(10).add_(3)
    plain = qrnn.QuantGRU(4, 6)
    plain.load_state_dict(m.state_dict())
    container = nn.Sequential(m, plain)
    qrnn.clip_shadow_(container)
    assert m.weight_hh_l0.abs().max() <= 1.0
    assert plain.weight_hh_l0.abs().max() > 1.0  # float scheme: untouched


def test_bad_arguments_are_clear_errors():
    with pytest.raises(ValueError, match="unknown quantization scheme"):
        qrnn.QuantLSTM(3, 4, scheme="int4")
    with pytest.raises(ValueError, match="no stochastic variant"):
        qrnn.QuantLSTM(3, 4, scheme="float", stochastic=True)
    with pytest.raises(ValueError, match="proj_size"):
        qrnn.QuantLSTM(3, 4, proj_size=2, scheme="binary")
    with pytest.raises(ValueError, match="unknown option"):
        qrnn.QuantGRU(3, 4, scheme="exponential", quantizer_options={"bits": 3})
    m = qrnn.QuantLSTM(3, 4, scheme="ternary")
    with pytest.raises(RuntimeError, match=r"input.size\(-1\) must be equal to input_size"):
        m(torch.randn(5, 2, 7))
    with pytest.raises(ValueError, match="2D or 3D"):
        m(torch.randn(5, 2, 3, 1))


def test_quantized_training_step_reduces_loss():
    # a tiny real optimisation: a ternary GRU learns to output the running sign of its input
    torch.manual_seed(0)
    m = qrnn.QuantGRU(1, 16, scheme="ternary", stochastic=True)
    head = nn.Linear(16, 1)
    opt = torch.optim.Adam(itertools.chain(m.parameters(), head.parameters()), lr=1e-2)
    x = torch.randn(20, 32, 1)
    y = torch.sign(x.cumsum(0))
    losses = []
    for _ in range(60):
        opt.zero_grad()
        loss = nn.functional.mse_loss(head(m(x)[0]), y)
        loss.backward()
        opt.step()
        qrnn.clip_shadow_(m)
        losses.append(loss.item())
    assert sum(losses[-5:]) / 5 < 0.7 * sum(losses[:5]) / 5


@pytest.mark.parametrize("cell", CELLS)
def test_weight_norm_rescales_quantized_rows_and_keeps_the_fused_kernel(cell):
    m = _make(cell, "binary", weight_norm=True, num_layers=2)
    m.eval()
    names = [n for n in m._flat_weights_names if n.startswith("weight")]
    assert {f"{n}_gain" for n in names} <= set(dict(m.named_parameters()))
    q = m.quantized_parameters(False)
    for n in names:
        gain = getattr(m, f"{n}_gain")
        # every row of W_q (all +-1) is rescaled to its gain: |w| = g / sqrt(fan_in)
        assert torch.allclose(q[n].norm(dim=1), gain)
        assert torch.allclose(
            q[n].abs(), (gain / q[n].shape[1] ** 0.5).unsqueeze(1).expand_as(q[n])
        )
    x = torch.randn(6, 3, 5, dtype=torch.double)
    assert _close(m(x), reference_forward(m, x))
    m.train()
    m(x)[0].sum().backward()
    assert all(getattr(m, f"{n}_gain").grad.abs().sum() > 0 for n in names)
    plain = _make(cell, "float", weight_norm=True)  # float + weight norm: same function at init
    ref = _make(cell, "float")
    x1 = torch.randn(4, 2, 5, dtype=torch.double)
    # gains were computed in float32 at construction, hence the float32 tolerance
    assert torch.allclose(plain(x1)[0], ref(x1)[0], atol=1e-6)


@pytest.mark.parametrize("cell", CELLS)
def test_reference_forward_on_packed_sequences_matches_the_fused_kernel(cell):
    from torch.nn.utils.rnn import pack_padded_sequence

    m = CELLS[cell](5, 8, num_layers=2, bidirectional=True, batch_first=True, scheme="ternary")
    m = m.double().eval()
    x = torch.randn(4, 7, 5, dtype=torch.double)
    packed = pack_padded_sequence(x, torch.tensor([7, 2, 5, 1]), batch_first=True,
                                  enforce_sorted=False)  # fmt: skip
    (a, ha), (b, hb) = m(packed), reference_forward(m, packed)
    assert torch.equal(a.batch_sizes, b.batch_sizes)
    assert torch.equal(a.sorted_indices, b.sorted_indices)
    assert _close(a.data, b.data) and _close(ha, hb)


def test_block_layer_norm_normalizes_each_gate_block():
    from qrnn.cells import block_layer_norm

    a = torch.randn(6, 4 * 8, dtype=torch.double) * 5 + 3
    gain = torch.rand(4, 8, dtype=torch.double) + 0.5
    y = block_layer_norm(a, gain).view(6, 4, 8) / gain
    assert torch.allclose(y.mean(-1), torch.zeros_like(y[..., 0]), atol=1e-12)
    assert torch.allclose(y.var(-1, unbiased=False), torch.ones_like(y[..., 0]), atol=1e-4)


@pytest.mark.parametrize("cell", CELLS)
def test_layer_norm_layer_matches_its_equations_and_removes_the_binary_scale(cell):
    m = _make(cell, "binary", layer_norm=True)
    gains = {n for n, _ in m.named_parameters() if n.startswith("ln_")}
    assert gains == {"ln_ih_l0", "ln_hh_l0"}
    assert m.ln_hh_l0.shape == ({"RNN": 1, "GRU": 3, "LSTM": 4}[cell], 8)
    x = torch.randn(6, 3, 5, dtype=torch.double)
    h0 = torch.randn(1, 3, 8, dtype=torch.double)
    hx = (h0, torch.randn_like(h0)) if cell == "LSTM" else h0
    out = m(x, hx)
    # by hand, one step at a time: pre-activation = LN(W_ih x) + b_ih + LN(W_hh h) + b_hh
    w = m.quantized_parameters(False)
    h, c = (hx[0][0], hx[1][0]) if cell == "LSTM" else (hx[0], None)
    G = m.ln_hh_l0.shape[0]

    def ln(v, g):
        v = v.view(3, G, 8)
        return ((v - v.mean(-1, keepdim=True)) / (v.var(-1, unbiased=False, keepdim=True)
                + 1e-5).sqrt() * g).view(3, G * 8)  # fmt: skip

    for t in range(6):
        xa = ln(x[t] @ w["weight_ih_l0"].T, m.ln_ih_l0) + w["bias_ih_l0"]
        ha = ln(h @ w["weight_hh_l0"].T, m.ln_hh_l0) + w["bias_hh_l0"]
        if cell == "RNN":
            h = torch.tanh(xa + ha)
        elif cell == "GRU":
            (xr, xz, xn), (hr, hz, hn) = xa.chunk(3, -1), ha.chunk(3, -1)
            r, z = torch.sigmoid(xr + hr), torch.sigmoid(xz + hz)
            h = (1 - z) * torch.tanh(xn + r * hn) + z * h
        else:
            i, f, g, o = (xa + ha).chunk(4, -1)
            c = torch.sigmoid(f) * c + torch.sigmoid(i) * torch.tanh(g)
            h = torch.sigmoid(o) * torch.tanh(c)
        assert torch.allclose(out[0][t], h, atol=1e-10)
    # LN removes the weight scale: binary with H = 1 and with H = 0.5 compute (up to eps)
    # the same function; without LN they differ
    for ln_on, same in ((True, True), (False, False)):
        one = _make(cell, "binary", layer_norm=ln_on, quantize_bias=False)
        half = _make(cell, "binary", layer_norm=ln_on, quantize_bias=False,
                      quantizer_options={"scale": 0.5})  # fmt: skip
        assert torch.allclose(one(x)[0], half(x)[0], atol=1e-3) is same


@pytest.mark.parametrize("cell", CELLS)
def test_layer_norm_trains_gains_and_round_trips(cell):
    # binary: every weight is +-1 (ternary would zero most of these small initial weights)
    m = _make(cell, "binary", layer_norm=True, num_layers=2, bidirectional=True)
    x = torch.randn(5, 2, 5, dtype=torch.double)
    m(x)[0].square().sum().backward()
    for n, p in m.named_parameters():
        assert p.grad is not None and p.grad.abs().sum() > 0, n
    twin = _make(cell, "binary", layer_norm=True, num_layers=2, bidirectional=True)
    with torch.no_grad():
        m.ln_hh_l1_reverse.mul_(2)
    twin.load_state_dict(m.state_dict())
    assert _close(twin(x), m(x))
    with pytest.raises(ValueError, match="layer_norm"):
        m.to_torch()
