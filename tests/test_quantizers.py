"""Properties of the paper's quantizers: level sets, thresholds, unbiasedness, STE, errors."""

import math

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra.numpy import arrays

import qrnn
from qrnn import quantizer

FLOATS = st.floats(-4.0, 4.0, allow_nan=False, width=32)
WEIGHTS = arrays("float32", st.integers(1, 64), elements=FLOATS).map(torch.from_numpy)
STOCHASTIC = [
    ("binary", {}),
    ("ternary", {"scale": 0.5}),
    ("pow2-ternary", {}),
    ("exponential", {}),
]


def test_schemes_public_tuple():
    assert qrnn.SCHEMES == ("float", "binary", "ternary", "pow2-ternary", "exponential")
    for name in qrnn.SCHEMES:
        q = quantizer(name)
        assert q.name == name
        assert q.stochastic_supported == (name != "float")


def test_bits():
    assert quantizer("float").bits == 32
    assert quantizer("binary").bits == 1
    assert quantizer("ternary").bits == 2
    assert quantizer("pow2-ternary").bits == 2  # {-0.5, 0, 0.5}
    assert quantizer("pow2-ternary", integer_bits=1, fractional_bits=1).bits == 3  # 7 levels
    assert quantizer("exponential").bits == 6  # sign + 5 bits for 32 exponents in [-22, 9]
    assert quantizer("exponential", min_exp=-3, max_exp=4).bits == 4


@settings(max_examples=60, deadline=None)
@given(w=WEIGHTS, stochastic=st.booleans(), seed=st.integers(0, 2**31))
def test_level_sets(w, stochastic, seed):
    g = torch.Generator().manual_seed(seed)
    assert torch.all(torch.isin(quantizer("binary")(w, stochastic, g), torch.tensor([-1.0, 1.0])))
    q = quantizer("binary", scale=0.25)(w, stochastic, g)
    assert torch.all(q.abs() == 0.25)
    q = quantizer("ternary", scale=0.3)(w, stochastic, g)
    assert torch.all(torch.isin(q, torch.tensor([-0.3, 0.0, 0.3])))
    q = quantizer("pow2-ternary")(w, stochastic, g)
    assert torch.all(torch.isin(q, torch.tensor([-0.5, 0.0, 0.5])))
    qz = quantizer("pow2-ternary", integer_bits=1, fractional_bits=1)
    assert torch.all(torch.isin(qz(w, stochastic, g), qz.levels.float()))
    qe = quantizer("exponential", min_exp=-6, max_exp=1)
    out = qe(w, stochastic, g)
    assert torch.all(torch.isin(out, qe.levels.float()))
    assert torch.all(torch.sign(out[w != 0]) == torch.sign(w[w != 0]))  # sign kept


def test_shape_dtype_device_preserved():
    for dtype in (torch.float32, torch.float64, torch.float16):
        w = torch.randn(3, 4, 5).to(dtype)
        for name in qrnn.SCHEMES:
            kw = {"fan_in": 4, "fan_out": 5} if name == "ternary" else {}
            out = quantizer(name)(w, **kw)
            assert out.shape == w.shape and out.dtype == w.dtype and out.device == w.device


def test_deterministic_thresholds():
    b = quantizer("binary")
    assert b(torch.tensor([-1e-9, 0.0, 1e-9, -3.0])).tolist() == [-1.0, 1.0, 1.0, -1.0]
    t = quantizer("ternary", scale=1.0)  # paper: threshold 0.5
    assert t(torch.tensor([-0.5, -0.49, 0.0, 0.49, 0.5, 2.0])).tolist() == [-1, 0, 0, 0, 1, 1]
    p = quantizer("pow2-ternary")  # |w| >= 0.25 -> 0.5
    x = torch.tensor([-0.25, -0.2499, 0.0, 0.2499, 0.25, 7.0])
    assert p(x).tolist() == [-0.5, 0.0, 0.0, 0.0, 0.5, 0.5]
    p2 = quantizer("pow2-ternary", clip="paper")  # paper clip +-2^m = 1 adds the level 1
    assert p2(torch.tensor([0.74, 0.75, 5.0])).tolist() == [0.5, 1.0, 1.0]
    e = quantizer("exponential")
    x = torch.tensor([1.0, 1.5, 1.51, 3.0, -0.3, 0.0, 1e9, 1e-12])
    # nearest power in linear distance; p = 0.5 exactly stays at k (p > 0.5 rule)
    assert e(x).tolist() == [1.0, 1.0, 2.0, 2.0, -0.25, -(2.0**-22), 512.0, 2.0**-22]


def test_glorot_scale_uses_fans_or_shape():
    w = torch.zeros(12, 5)
    t = quantizer("ternary")
    assert t.scale(w) == pytest.approx(math.sqrt(6 / 17))
    assert t.scale(w, fan_in=3, fan_out=3) == pytest.approx(1.0)
    with pytest.raises(ValueError, match="fan_in and fan_out"):
        t(torch.zeros(4))
    assert quantizer("binary", scale="glorot").scale(w, 50, 50) == pytest.approx(math.sqrt(0.06))


@pytest.mark.parametrize(("name", "opts"), STOCHASTIC)
def test_stochastic_unbiased_inside_range(name, opts):
    q = quantizer(name, **opts)
    bound = {"binary": 1.0, "ternary": 0.5, "pow2-ternary": 0.5, "exponential": 4.0}[name]
    w = torch.linspace(-bound, bound, 41, dtype=torch.float64)
    if name == "exponential":
        w = w[w.abs() > 1e-3]
    n = 20000
    g = torch.Generator().manual_seed(0)
    samples = q(w.expand(n, -1).contiguous(), stochastic=True, generator=g)
    mean = samples.mean(0)
    # 5 standard errors of a two-level variable with spread <= the level gap
    gap = {"binary": 2.0, "ternary": 0.5, "pow2-ternary": 0.5}.get(name)
    tol = 5 * (gap if gap else w.abs()) / (2 * math.sqrt(n))
    assert torch.all((mean - w).abs() <= tol), (mean - w).abs().max()


@pytest.mark.parametrize(("name", "opts"), STOCHASTIC)
def test_stochastic_repeats_with_generator(name, opts):
    q = quantizer(name, **opts)
    w = torch.randn(50, 40) * 0.4
    a = q(w, True, torch.Generator().manual_seed(7))
    b = q(w, True, torch.Generator().manual_seed(7))
    c = q(w, True, torch.Generator().manual_seed(8))
    assert torch.equal(a, b)
    assert not torch.equal(a, c)


@pytest.mark.parametrize(
    ("name", "stochastic"),
    [(n, s) for n in qrnn.SCHEMES for s in (False, True) if n != "float" or not s],
)
def test_straight_through_gradient_is_identity(name, stochastic):
    w = torch.randn(6, 7, requires_grad=True)
    upstream = torch.randn(6, 7)
    q = quantizer(name)(w, stochastic, torch.Generator().manual_seed(0))
    (q * upstream).sum().backward()
    assert torch.equal(w.grad, upstream)


def test_unknown_scheme_and_options_are_clear_errors():
    with pytest.raises(ValueError, match=r"unknown quantization scheme 'quaternary'.*ternary"):
        quantizer("quaternary")
    with pytest.raises(ValueError, match=r"unknown option\(s\) bits; valid options: scale"):
        quantizer("binary", bits=2)
    with pytest.raises(ValueError, match="valid options: none"):
        quantizer("float", scale=1)
    with pytest.raises(ValueError, match="non-negative integer"):
        quantizer("pow2-ternary", fractional_bits=-1)
    with pytest.raises(ValueError, match="at least 1"):
        quantizer("pow2-ternary", fractional_bits=0)
    with pytest.raises(ValueError, match=r"min_exp \(3\) must not exceed max_exp \(1\)"):
        quantizer("exponential", min_exp=3, max_exp=1)
    with pytest.raises(ValueError, match="positive"):
        quantizer("ternary", scale=-1.0)
    with pytest.raises(
        ValueError,
        match=r"'glorot\*K' \(K > 0 times the Glorot bound\), 'rms' or a positive number",
    ):
        quantizer("binary", scale="he")
    with pytest.raises(TypeError, match="floating"):
        quantizer("binary")(torch.arange(3))


def test_clip_bounds():
    w = torch.zeros(8, 8)
    assert quantizer("binary").clip_bound(w) == 1.0
    assert quantizer("ternary").clip_bound(w, 8, 8) == pytest.approx(math.sqrt(6 / 16))
    assert quantizer("pow2-ternary").clip_bound(w) == 0.5
    assert quantizer("exponential").clip_bound(w) == 512.0
    assert quantizer("float").clip_bound(w) is None


@pytest.mark.parametrize("stochastic", [False, True])
@pytest.mark.parametrize(("lo", "hi"), [(-22, 9), (-3, 2), (-126, 127)])
def test_exponential_float32_bit_path_equals_the_float64_path(stochastic, lo, hi):
    # float32 reads k and p from the IEEE fields; float64 goes through frexp: same levels,
    # same draws (float64 uniforms in both), subnormals and signed zeros included
    w = torch.cat([torch.randn(20000) * s for s in (1e-30, 1e-6, 0.1, 3.0, 1e3)])
    w = torch.cat([w, torch.tensor([0.0, -0.0, 1e-45, -1e-45, 1.5, -1.5, 0.75, 3e38])])
    q = quantizer("exponential", min_exp=lo, max_exp=hi)
    g32, g64 = torch.Generator().manual_seed(5), torch.Generator().manual_seed(5)
    a = q(w, stochastic, g32)
    b = q(w.double(), stochastic, g64)
    assert a.dtype == torch.float32 and torch.equal(a.double(), b)
    levels = set(a.abs().unique().log2().tolist())
    assert levels <= set(range(lo, hi + 1))
