"""Packed export (round trips, bit widths, sizes, bad files, CLI), post-training quantization,
the multiplication-free integer path and the operation counts."""

import io
import json
import math

import numpy as np
import pytest
import torch

from qrnn import quantizer
from qrnn.export import (
    ArchitectureMismatch,
    PackedFormatError,
    decode_codes,
    encode_codes,
    load_packed,
    pack_bits,
    pack_model,
    post_training_quantize,
    read_packed,
    unpack_bits,
)
from qrnn.hardware import (
    ENERGY_PJ,
    energy_pj,
    integer_forward,
    integer_model_forward,
    integer_preactivations,
    preactivation_bound,
    step_ops,
)
from qrnn.models import CELLS, DigitClassifier, LanguageModel
from qrnn.study.train import RunConfig, build_model

METHODS = {
    "binary": ("binary", {}),
    "binary-glorot": ("binary", {"scale": "glorot"}),
    "ternary": ("ternary", {}),
    "pow2": ("pow2-ternary", {}),
    "pow2-m1f2-paper": ("pow2-ternary", {"integer_bits": 1, "fractional_bits": 2, "clip": "paper"}),
    "exponential": ("exponential", {}),
    "exp-small": ("exponential", {"min_exp": -8, "max_exp": 2}),
    "float": ("float", {}),
}
BITS = {"binary": 1, "binary-glorot": 1, "ternary": 2, "pow2": 2, "pow2-m1f2-paper": 5,
        "exponential": 6, "exp-small": 5}  # fmt: skip


@pytest.fixture(autouse=True)
def _one_thread():
    """Tiny models: one intra-op thread (OpenMP spin-waits on a loaded machine cost ~1 s)."""
    n = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(n)


def _spread(model, seed=0, width=0.4):
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for p in model.parameters():
            p.copy_((torch.rand(p.shape, generator=g) * 2 - 1) * width)
    return model.eval()


def _lm(method, cell="lstm", hidden=24, **kw):
    scheme, opts = METHODS[method]
    cfg = RunConfig(task="ptb-char", cell=cell, hidden=hidden, scheme=scheme,
                    quantizer_options=opts, **kw)  # fmt: skip
    return _spread(build_model(cfg, 50))


# ---------------------------------------------------------------------------------- packing
@pytest.mark.parametrize("bits", range(1, 9))
def test_bit_packing_round_trip_and_length(bits):
    codes = np.random.default_rng(bits).integers(0, 2**bits, size=1001)
    packed = pack_bits(codes, bits)
    assert packed.dtype == np.uint8 and packed.size == math.ceil(1001 * bits / 8)
    assert np.array_equal(unpack_bits(packed, bits, 1001), codes)


@pytest.mark.parametrize("method", [m for m in METHODS if m != "float"])
def test_codes_reproduce_the_quantizer_bit_exactly(method):
    scheme, opts = METHODS[method]
    q = quantizer(scheme, **opts)
    w = torch.randn(64, 48) * 0.5
    w[0, :4] = torch.tensor([0.0, -0.0, 1e-30, -1e-30])
    s = float(np.float32(q.scale(w, 48, 64)))
    w_q = q(w, fan_in=48, fan_out=64).detach().numpy()
    codes = encode_codes(w_q, scheme, q.options, s)
    assert codes.max() < 2 ** BITS[method]
    back = decode_codes(codes, scheme, q.options, s)
    assert back.dtype == np.float32 and np.array_equal(back, w_q)
    nz = w_q != 0  # identical bit patterns except pow2's -0.0 (stored as +0.0)
    assert np.array_equal(back[nz].view(np.int32), w_q[nz].view(np.int32))
    # the quantizer is idempotent on its levels: the rebuilt model's W_q is the same
    assert torch.equal(q(torch.from_numpy(back), fan_in=48, fan_out=64), torch.from_numpy(back))


@pytest.mark.parametrize("cell", ["rnn", "gru", "lstm"])
@pytest.mark.parametrize("method", list(METHODS))
def test_round_trip_gives_identical_outputs(tmp_path, method, cell):
    io_ = method in ("ternary", "exponential", "binary")  # quantized embedding and output too
    model = _lm(method, cell, embed=8 if io_ else 0, quantize_io=io_, layers=2)
    rep = pack_model(model, tmp_path / "m.npz")
    back = load_packed(tmp_path / "m.npz")
    assert not back.training
    x = torch.randint(0, 50, (25, 3))
    with torch.no_grad():
        (a, sa), (b, sb) = model(x), back(x)
    assert torch.equal(a, b)
    for u, v in zip(sa if isinstance(sa, tuple) else (sa,), sb if isinstance(sb, tuple) else (sb,),
                    strict=True):  # fmt: skip
        assert torch.equal(u, v)
    if method != "float":
        assert rep["bits"] == [BITS[method]]
        assert rep["quantized_ratio"] == pytest.approx(32 / BITS[method], rel=0.01)


@pytest.mark.parametrize("method", ["ternary", "exponential"])
def test_round_trip_digit_classifier_and_bare_layer(tmp_path, method):
    scheme, opts = METHODS[method]
    clf = DigitClassifier(40, cell="gru", hidden=16, bidirectional=True, input_norm="batch",
                          pool="mean", scheme=scheme, quantizer_options=opts)  # fmt: skip
    clf.train()
    with torch.no_grad():  # move the BatchNorm statistics away from their initial values
        clf(torch.randn(6, 9, 40) * 3 + 1, torch.tensor([9, 5, 7, 9, 3, 8]))
    _spread(clf)
    clf.norm.running_var.fill_(2.5)
    pack_model(clf, tmp_path / "c.npz")
    back = load_packed(tmp_path / "c.npz")
    x, lens = torch.randn(4, 11, 40), torch.tensor([11, 4, 8, 6])
    with torch.no_grad():
        assert torch.equal(clf(x, lens), back(x, lens))
    assert back.norm.num_batches_tracked == clf.norm.num_batches_tracked

    layer = _spread(CELLS["rnn"](7, 12, num_layers=2, nonlinearity="relu", batch_first=True,
                                 scheme=scheme, quantizer_options=opts))  # fmt: skip
    pack_model(layer, tmp_path / "l.npz")
    back = load_packed(tmp_path / "l.npz")
    assert back.nonlinearity == "relu" and back.batch_first
    x = torch.randn(2, 6, 7)
    with torch.no_grad():
        assert torch.equal(layer(x)[0], back(x)[0])


def test_bit_widths_from_the_file_size(tmp_path):
    sizes = {}
    for method in ("binary", "ternary", "pow2-m1f2-paper", "exponential", "exp-small", "float"):
        model = _lm(method, hidden=64, quantize_io=True)
        pack_model(model, tmp_path / f"{method}.npz")
        sizes[method] = (tmp_path / f"{method}.npz").stat().st_size
        meta = read_packed(tmp_path / f"{method}.npz")["meta"]
        coded = [e for e in meta["tensors"] if e["storage"] == "codes"]
        if method != "float":
            # every quantized tensor, packed at its width, and nothing else in 'codes'
            want = sum(math.ceil(math.prod(e["shape"]) * BITS[method] / 8) for e in coded)
            assert meta["blobs"]["codes"]["nbytes"] == want
            assert {n for n in (e["name"] for e in coded)} >= {"rnn.weight_hh_l0", "out.weight"}
    n_q = 4 * 64 * (50 + 64) + 2 * 4 * 64 + 50 * 64  # quantized elements (LSTM + out.weight)
    # size differences between methods are the code widths alone (same container overhead)
    for a, b in (("binary", "ternary"), ("exp-small", "exponential")):
        assert sizes[b] - sizes[a] == pytest.approx(n_q / 8, abs=160)  # +meta text
    assert sizes["float"] - sizes["exponential"] == pytest.approx(n_q * 26 / 8, abs=2048)


@pytest.mark.parametrize(
    ("method", "target"), [("binary", 30), ("ternary", 15), ("exponential", 4.5)]
)
def test_whole_file_size_targets(tmp_path, method, target):
    # hidden 256 LSTM LM with quantized embedding/output: the quantized tensors dominate
    model = _lm(method, hidden=256, embed=16, quantize_io=True)
    rep = pack_model(model, tmp_path / "m.npz")
    assert rep["ratio"] >= target
    assert rep["file_bytes"] == (tmp_path / "m.npz").stat().st_size


# ---------------------------------------------------------------------------------- bad files
def _rewrite(path, out, edit_meta=None, edit_members=None, fix_hash=True):
    import hashlib

    with np.load(path) as z:
        members = {k: z[k].copy() for k in z.files}
    meta = json.loads(members.pop("meta").tobytes())
    if edit_members:
        edit_members(members)
    if fix_hash:
        for k, v in members.items():
            meta["blobs"][k] = {
                "nbytes": v.nbytes,
                "sha256": hashlib.sha256(v.tobytes()).hexdigest(),
            }
    if edit_meta:
        edit_meta(meta)
    blob = json.dumps(meta).encode()
    if fix_hash and meta.get("meta_sha256"):  # a consistent rewrite: the header's own digest too
        old = meta["meta_sha256"].encode()
        digest = hashlib.sha256(blob.replace(old, b"0" * 64)).hexdigest().encode()
        blob = blob.replace(old, digest)
    buf = io.BytesIO()
    np.savez(buf, meta=np.frombuffer(blob, np.uint8), **members)
    out.write_bytes(buf.getvalue())
    return out


@pytest.fixture
def packed(tmp_path):
    model = _lm("ternary", hidden=16)
    pack_model(model, tmp_path / "m.npz")
    return model, tmp_path / "m.npz"


def test_truncated_or_corrupted_files_are_rejected(packed, tmp_path):
    _, path = packed
    raw = path.read_bytes()
    bad = tmp_path / "bad.npz"
    for data in (raw[: len(raw) // 2], raw[:-1], b"not a file at all", b""):
        bad.write_bytes(data)
        with pytest.raises(PackedFormatError, match="truncated"):
            load_packed(bad)
    start = raw.index(b"codes.npy")  # flip one byte inside the codes member
    flipped = bytearray(raw)
    flipped[start + 200] ^= 0x55
    bad.write_bytes(bytes(flipped))
    with pytest.raises(PackedFormatError, match=r"CRC|corrupt"):
        load_packed(bad)

    def tamper(m):  # a changed member whose sha256 was not updated
        m["codes"][0] ^= 1

    with pytest.raises(PackedFormatError, match="sha256"):
        load_packed(_rewrite(path, bad, edit_members=tamper, fix_hash=False))

    def invalid_code(m):  # ternary code 0b10 is not a level
        m["codes"][:] = 0b10101010

    with pytest.raises(PackedFormatError, match="invalid codes"):
        load_packed(_rewrite(path, bad, edit_members=invalid_code))


def test_wrong_version_format_and_metadata(packed, tmp_path):
    _, path = packed
    bad = tmp_path / "bad.npz"
    with pytest.raises(PackedFormatError, match="version 3; this qrnn reads versions 1, 2"):
        load_packed(_rewrite(path, bad, edit_meta=lambda m: m.update(version=3)))
    with pytest.raises(PackedFormatError, match=r"not a qrnn\.packed file"):
        load_packed(_rewrite(path, bad, edit_meta=lambda m: m.update(format="other")))
    with pytest.raises(PackedFormatError, match="malformed"):
        load_packed(_rewrite(path, bad, edit_meta=lambda m: m.pop("tensors")))
    np.savez(bad, x=np.zeros(3))
    with pytest.raises(PackedFormatError, match="no 'meta'"):
        load_packed(bad)
    with pytest.raises(FileNotFoundError):
        load_packed(tmp_path / "missing.npz")


def test_mismatched_architecture_is_named(packed, tmp_path):
    model, path = packed
    other = _lm("ternary", hidden=32)
    with pytest.raises(ArchitectureMismatch, match="hidden: file 16, model 32"):
        load_packed(path, model=other)
    with pytest.raises(ArchitectureMismatch, match="scheme: file 'ternary', model 'binary'"):
        load_packed(path, model=_lm("binary", hidden=16))

    def bigger(m):
        m["architecture"]["kwargs"]["hidden"] = 20

    with pytest.raises(ArchitectureMismatch, match=r"shape \(64, 50\) in the file, \(80, 50\)"):
        load_packed(_rewrite(path, tmp_path / "bad.npz", edit_meta=bigger))
    target = _spread(_lm("ternary", hidden=16), 5)
    loaded = load_packed(path, model=target)  # loads in place into a matching model
    assert loaded is target
    x = torch.randint(0, 50, (5, 2))
    with torch.no_grad():
        assert torch.equal(target(x)[0], model(x)[0])


# ---------------------------------------------------------------------------------- PTQ
def test_post_training_quantize_copies_and_quantizes(tmp_path):
    from qrnn.cells import reference_forward

    fp = _lm("float", cell="gru", hidden=16, embed=6)
    before = {k: v.clone() for k, v in fp.state_dict().items()}
    ptq = post_training_quantize(fp, "exponential", min_exp=-10, max_exp=3)
    assert fp.rnn.scheme == "float" and ptq.rnn.scheme == "exponential"
    assert ptq.out.quantizer.name == "float" and ptq.embed.quantizer.name == "float"
    assert all(torch.equal(before[k], v) for k, v in fp.state_dict().items())
    x = torch.randint(0, 50, (7, 2))
    q = quantizer("exponential", min_exp=-10, max_exp=3)
    with torch.no_grad():
        e = ptq.embed(x)
        w_q = {n: q(getattr(fp.rnn, n)) for n in fp.rnn._flat_weights_names}
        ref, _ = reference_forward(ptq.rnn, e, weights=w_q)
        got, _ = ptq.rnn(e)
    torch.testing.assert_close(got, ref, rtol=1e-5, atol=1e-6)
    io_ = post_training_quantize(fp, "ternary", quantize_io=True)
    assert io_.out.quantizer.name == "ternary" and io_.embed.quantizer.name == "ternary"
    pack_model(io_, tmp_path / "p.npz")
    with torch.no_grad():
        assert torch.equal(load_packed(tmp_path / "p.npz")(x)[0], io_(x)[0])
    with pytest.raises(ValueError, match="unknown option"):
        post_training_quantize(fp, "ternary", bogus=1)
    with pytest.raises(TypeError, match="no qrnn recurrent layer"):
        post_training_quantize(torch.nn.Linear(2, 2), "ternary")


# ---------------------------------------------------------------------------------- integer path
@pytest.mark.parametrize("cell", ["rnn", "gru", "lstm"])
@pytest.mark.parametrize("method", ["binary", "binary-glorot", "ternary", "pow2",
                                    "pow2-m1f2-paper", "exponential"])  # fmt: skip
def test_integer_step_within_the_stated_bound(method, cell):
    scheme, opts = METHODS[method]
    layer = _spread(CELLS[cell](20, 32, scheme=scheme, quantizer_options=opts))
    g = torch.Generator().manual_seed(1)
    x, h = torch.randn(4, 20, generator=g) * 2, torch.rand(4, 32, generator=g) * 2 - 1
    gi, gh = integer_preactivations(layer, x, h)
    w = {k: v.detach().double() for k, v in layer.quantized_parameters(False).items()}
    exact_i = (x.double() @ w["weight_ih_l0"].T + w["bias_ih_l0"]).numpy()
    exact_h = (h.double() @ w["weight_hh_l0"].T + w["bias_hh_l0"]).numpy()
    bi, bh = preactivation_bound(layer)
    assert (np.abs(gi - exact_i) <= bi).all() and (np.abs(gh - exact_h) <= bh).all()
    assert bi.max() < 1e-3 and bh.max() < 1e-3


def test_integer_path_multi_layer_bidirectional():
    layer = _spread(CELLS["lstm"](6, 10, num_layers=2, bidirectional=True, batch_first=True,
                                  scheme="ternary"), width=0.6)  # fmt: skip
    x = torch.randn(3, 12, 6)
    with torch.no_grad():
        (a, (ha, ca)), (b, (hb, cb)) = layer(x), integer_forward(layer, x)
    for u, v in ((a, b), (ha, hb), (ca, cb)):
        assert u.shape == v.shape
        torch.testing.assert_close(u, v, rtol=0, atol=1e-3)
    with pytest.raises(ValueError, match="quantized scheme"):
        integer_forward(CELLS["gru"](3, 4), torch.randn(2, 1, 3))


# ---------------------------------------------------------------------------------- op counts
def test_operation_counts_and_energy():
    n_in, H = 10, 8
    fp = _spread(CELLS["lstm"](n_in, H))
    ops = step_ops(fp)
    assert ops["fp32_mult"] == 4 * H * (n_in + H) + 3 * H  # weights + element-wise gate products
    assert ops["fp32_add"] == 4 * H * (n_in - 1 + H - 1) + 2 * 4 * H + 4 * H + H
    assert ops["int32_add"] == ops["shift"] == ops["int32_mult"] == 0
    assert ops["weight_bits"] == 32 * (4 * H * (n_in + H) + 8 * H) and ops["nonlinearity"] == 5 * H

    t = post_training_quantize(fp, "ternary")
    w = t.quantized_parameters(False)
    nz = {k: (v != 0).sum(1) for k, v in w.items() if k.startswith("weight")}
    tops = step_ops(t)
    adds = sum(int(torch.clamp(v - 1, min=0).sum()) for v in nz.values()) + 8 * H + 4 * H
    assert tops["int32_add"] == adds
    assert tops["fp32_mult"] == 3 * H and tops["int32_mult"] == 2 * 4 * H  # W0 per output
    assert tops["sign_flip"] == sum(int((v < 0).sum()) for k, v in w.items() if "weight" in k)
    assert tops["weight_bits"] == 2 * (4 * H * (n_in + H) + 8 * H)
    assert 0 < tops["zero_fraction"] < 1

    e = post_training_quantize(fp, "exponential")
    eops = step_ops(e)
    assert eops["int32_mult"] == 0 and eops["fp32_mult"] == 3 * H
    assert eops["shift"] == sum(
        int(((v != 1) & (v != -1)).sum()) for k, v in e.quantized_parameters(False).items()
        if k.startswith("weight")
    )  # fmt: skip
    ef, et = energy_pj(ops), energy_pj(tops)
    assert ef["arithmetic"] == pytest.approx(ops["fp32_mult"] * 3.7 + ops["fp32_add"] * 0.9)
    assert ef["weights"] == math.ceil(ops["weight_bits"] / 64) * ENERGY_PJ["sram_64bit_read_8kb"]
    assert et["total"] < ef["total"]
    assert energy_pj(tops, "dram")["weights"] == 130 * et["weights"]


# ---------------------------------------------------------------------------------- real data
@pytest.fixture
def data_env(mirror, session_cache, monkeypatch):
    monkeypatch.setenv("QRNN_CACHE", str(session_cache))


def _cli(argv):
    from qrnn.cli import main

    return main(argv)


def test_cli_errors_exit_2(tmp_path, capsys):
    with pytest.raises(SystemExit) as e:
        _cli(["export", str(tmp_path / "nope"), "--out", str(tmp_path / "x.npz")])
    assert e.value.code == 2 and "no run" in capsys.readouterr().err
    with pytest.raises(SystemExit) as e:
        _cli(["export", str(tmp_path)])
    assert e.value.code == 2


def test_trained_ptb_run_exports_and_runs_multiplication_free(data_env, tmp_path, capsys):
    from qrnn.data import lm_batches, load_text
    from qrnn.study.runs import load_model
    from qrnn.study.train import run_id, train

    cfg = RunConfig(task="ptb-char", hidden=16, epochs=1, bptt=20, batch_size=8,
                    train_limit=3000, eval_limit=1500, threads=1, scheme="ternary",
                    stochastic=True)  # fmt: skip
    train(cfg, tmp_path, quiet=True)
    run = tmp_path / run_id(cfg)
    assert _cli(["export", str(run), "--out", str(tmp_path / "m.npz")]) == 0
    assert "smaller than the fp32 state_dict" in capsys.readouterr().out
    model, rec = load_model(run)
    back = load_packed(tmp_path / "m.npz")
    src = read_packed(tmp_path / "m.npz")["meta"]["source"]
    assert src["run_id"] == rec["run_id"] and src["config"] == rec["config"]
    x, _ = next(iter(lm_batches(load_text("ptb-char").test[:2000], 8, 60)))
    with torch.no_grad():
        assert torch.equal(model(x)[0], back(x)[0])
        # the integer path on real text, for the trained method and post-training variants
        for scheme, opts in (("ternary", None), ("pow2-ternary", {}), ("exponential", {})):
            m = back if opts is None else post_training_quantize(model, scheme, **opts)
            (ref, _), (got, _) = m(x), integer_model_forward(m, x)
            torch.testing.assert_close(got, ref, rtol=0, atol=1e-3)


def test_integer_path_on_spoken_digits(data_env):
    from qrnn.data import load_fsdd, speech_batches
    from qrnn.data.speech import fsdd_manifest

    subset = "\n".join(fsdd_manifest().splitlines()[::60]) + "\n"  # 50 real recordings
    sd = load_fsdd(manifest=subset, download=False, progress=False)
    torch.manual_seed(0)
    clf = DigitClassifier(sd.n_features, cell="gru", hidden=24, input_norm="batch")
    opt = torch.optim.Adam(clf.parameters(), lr=1e-2)
    for _ in range(3):  # a few steps so the weights and BatchNorm statistics are not the init
        for x, lens, y in speech_batches(sd.train, 16, shuffle=False):
            opt.zero_grad()
            torch.nn.functional.cross_entropy(clf(x, lens), y).backward()
            opt.step()
    clf.eval()
    x, lens, _ = next(iter(speech_batches(sd.test, 8, shuffle=False)))
    for scheme in ("ternary", "pow2-ternary", "exponential"):
        m = post_training_quantize(clf, scheme)
        with torch.no_grad():
            ref = m(x, lens)
        torch.testing.assert_close(integer_model_forward(m, x, lens), ref, rtol=0, atol=1e-3)


@pytest.mark.parametrize("norm", [{"weight_norm": True}, {"layer_norm": True}])
def test_round_trip_normalized_layers(tmp_path, norm):
    torch.manual_seed(0)
    model = LanguageModel(20, cell="gru", hidden=16, scheme="ternary", **norm).eval()
    with torch.no_grad():  # move the gains away from their initial values
        for name, p in model.named_parameters():
            if name.endswith("_gain") or ".ln_" in name:
                p.mul_(torch.rand_like(p) + 0.5)
    pack_model(model, tmp_path / "m.npz")
    back = load_packed(tmp_path / "m.npz")
    assert all(getattr(back.rnn, k) for k in norm)
    x = torch.randint(0, 20, (9, 2))
    with torch.no_grad():
        assert torch.equal(model(x)[0], back(x)[0])
