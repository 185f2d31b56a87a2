"""One small class per quantization method, registered by name: what each owns (options,
bits, levels, scale, clip range, rounding moments) and its documented q(w) and pseudo-gradient.
The values themselves are tested, unchanged, in tests/test_quantizers.py."""

import pytest
import torch

import qrnn
from qrnn import quantizers
from qrnn.analysis.rounding import rounding_moments
from qrnn.quantizer_base import REGISTRY, Quantizer

CLASSES = {"float": quantizers.Float, "binary": quantizers.Binary,
           "ternary": quantizers.Ternary, "pow2-ternary": quantizers.Pow2Ternary,
           "exponential": quantizers.Exponential}  # fmt: skip


def test_the_registry_is_the_schemes_in_order():
    assert tuple(REGISTRY) == qrnn.SCHEMES and REGISTRY == CLASSES


@pytest.mark.parametrize("name", qrnn.SCHEMES)
def test_quantizer_builds_the_registered_class(name):
    q = qrnn.quantizer(name)
    assert type(q) is CLASSES[name] and isinstance(q, Quantizer) and q.scheme == name
    assert q.options == CLASSES[name].defaults and quantizers.OPTIONS_HELP[name]
    assert q == qrnn.quantizer(name, **q.options) and repr(q).startswith(f"quantizer({name!r}")


@pytest.mark.parametrize("name", qrnn.SCHEMES)
def test_each_method_documents_its_map_and_pseudo_gradient(name):
    doc = CLASSES[name].__doc__
    assert "q(w)" in doc
    if name != "float":
        assert "Pseudo-gradient ``dq/dw := 1``" in doc


@pytest.mark.parametrize("name", [s for s in qrnn.SCHEMES if s != "float"])
def test_moments_match_sampled_rounding(name):
    q = qrnn.quantizer(name)
    w = torch.linspace(-0.9, 0.9, 37, dtype=torch.float64).reshape(1, 37)
    mean, var = rounding_moments(q, w, True, fan_in=37, fan_out=1)
    g = torch.Generator().manual_seed(0)
    draws = torch.stack([q(w, True, g, fan_in=37, fan_out=1) for _ in range(4000)])
    torch.testing.assert_close(draws.mean(0), mean, atol=0.05, rtol=0)
    torch.testing.assert_close(draws.var(0), var, atol=0.05, rtol=0.1)


def test_clip_shadow_auto_follows_the_method():
    auto = {n for n, c in CLASSES.items() if c.clips_by_default}
    assert auto == {"binary", "ternary", "pow2-ternary"}


@pytest.mark.parametrize("name", [s for s in qrnn.SCHEMES if s != "float"])
def test_each_method_owns_its_integer_codes(name):
    q = qrnn.quantizer(name)
    w = torch.randn(6, 11, generator=torch.Generator().manual_seed(3)) * 0.4
    w_q = q(w, False, fan_in=11, fan_out=6).numpy()
    scale = float(q.scale(w, 11, 6))
    bits, _ = q.code_layout()
    codes = q.encode(w_q, scale)
    assert bits == q.bits and codes.min() >= 0 and codes.max() < 2**bits
    assert (q.decode(codes, scale) == w_q).all()


def test_float_has_no_codes():
    with pytest.raises(ValueError, match="no integer codes"):
        qrnn.quantizer("float").code_layout()


@pytest.mark.parametrize("shape", [(1024, 256), (768, 32), (192, 64), (7, 3)])
@pytest.mark.parametrize("scale", ["rms", "glorot", "unit"])
def test_binary_quantization_is_idempotent(shape, scale):
    # a packed model stores +-H and is quantized again when reloaded: that must give +-H back
    # bit for bit (a float32 mean of H^2 can be 1 ulp off: committed PTB runs showed it)
    q = qrnn.quantizer("binary", scale=scale)
    w = torch.randn(shape, generator=torch.Generator().manual_seed(sum(shape))) * 0.07
    once = q(w, False, fan_in=shape[1], fan_out=shape[0])
    assert torch.equal(q(once, False, fan_in=shape[1], fan_out=shape[0]), once)
