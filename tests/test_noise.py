"""qrnn.study.noise: deviation of stochastic trajectories from the deterministic one (fixed draw,
fresh draw per step, feed-forward control), its closed form on a linear RNN, the per-draw
Jacobians, and the records driver."""

import json
import math

import pytest
import torch

from qrnn import QuantGRU, QuantLSTM, QuantRNN, analysis
from qrnn.study import noise

CELLS = {"rnn": QuantRNN, "gru": QuantGRU, "lstm": QuantLSTM}
DETERMINISTIC = ["float", "binary-det", "binary-glorot-det", "ternary-det", "pow2-ternary"]
DETERMINISTIC += ["exponential-det"]


@pytest.fixture(autouse=True)
def _one_thread():
    n = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(n)


def _layer(cell, method, inputs=4, hidden=5, seed=0):
    m = analysis.get_method(method)
    torch.manual_seed(seed)
    layer = CELLS[cell](
        inputs, hidden, scheme=m.scheme, quantizer_options=m.options, stochastic=m.stochastic
    )
    return layer.eval()


def _x(T, inputs, seed=1):
    return torch.randn(T, inputs, generator=torch.Generator().manual_seed(seed)).double()


# ------------------------------------------------------------------------------ layers
@pytest.mark.parametrize("cell", ["rnn", "gru", "lstm"])
@pytest.mark.parametrize("method", DETERMINISTIC)
def test_deviation_is_exactly_zero_for_deterministic_methods(cell, method):
    layer = _layer(cell, method)
    r = noise.noise_through_time(layer, _x(6, 4), draws=2, jacobian_modes=noise.MODES)
    assert not r.stochastic
    assert set(r.deviation["mode"]) == set(noise.MODES)
    assert len(r.deviation) == 3 * 2 * 6
    assert (r.deviation["deviation"] == 0).all()
    assert (r.deviation["deviation_mean"] == 0).all()
    jac = r.jacobians.set_index("mode")
    for mode in ("fixed", "resampled"):  # same weights at every step: the det Jacobians
        rows = jac.loc[[mode]]
        assert (rows["log10_product_norm_T"] == jac.loc["det", "log10_product_norm_T"]).all()


@pytest.mark.parametrize("method", ["binary-stoch", "ternary-stoch", "exponential-stoch"])
def test_stochastic_methods_deviate_and_repeat(method):
    layer = _layer("gru", method)
    x = _x(6, 4)
    r1 = noise.noise_through_time(layer, x, draws=3, seed=5)
    r2 = noise.noise_through_time(layer, x, draws=3, seed=5)
    assert r1.stochastic
    assert r1.deviation.equals(r2.deviation) and r1.jacobians.equals(r2.jacobians)
    for mode, d in r1.deviation.groupby("mode"):
        assert (d["deviation"] > 0).any(), mode
    # draw k does not depend on the number of draws
    r3 = noise.noise_through_time(layer, x, draws=1, seed=5, modes=("fixed",))
    first = r1.deviation[(r1.deviation["mode"] == "fixed") & (r1.deviation["draw"] == 0)]
    assert r3.deviation["deviation"].tolist() == first["deviation"].tolist()


def test_fixed_draw_is_the_layers_own_draw_and_its_jacobians():
    layer = _layer("lstm", "ternary-stoch", hidden=4)
    x = _x(5, 4)
    r = noise.noise_through_time(layer, x, draws=2, seed=3)
    cw = noise.drawn_weights(layer, noise.draw_generator(3, "fixed", 1))
    layer.generator = noise.draw_generator(3, "fixed", 1)
    q = layer.quantized_parameters(stochastic=True)
    assert torch.equal(cw.w_hh, q["weight_hh_l0"].double())
    assert torch.equal(cw.b_ih, q["bias_ih_l0"].double())
    # the trajectory of the drawn weights: the fused layer run on them (float32)
    states = analysis.trajectory(cw, x)
    plain = torch.nn.LSTM(4, 4)
    plain.load_state_dict({k: v.detach() for k, v in q.items()})
    with torch.no_grad():
        h, _ = plain(x.float().unsqueeze(1))
    torch.testing.assert_close(states[1:, :4], h[:, 0].double(), rtol=1e-5, atol=1e-6)
    # its row of the Jacobian table: analysis' Jacobians with the drawn weights
    J = analysis.step_jacobians(cw, x, states)
    want = float(analysis.product_log_norms(J.flip(0))[-1])
    got = r.jacobians.query("mode == 'fixed' and draw == 1")["log10_product_norm_T"].item()
    assert got == pytest.approx(want, rel=1e-12)
    dev = r.deviation.query("mode == 'fixed' and draw == 1")["deviation"].to_numpy()
    det = analysis.trajectory(analysis.cell_weights(layer), x)
    ref = (states[1:, :4] - det[1:, :4]).norm(dim=1).numpy()
    assert dev.tolist() == pytest.approx(ref.tolist(), rel=1e-12)


@pytest.mark.parametrize("norm", ["layer_norm", "weight_norm"])
def test_normalized_layers(norm):
    """Layer norm: the gains go with every draw; weight norm: no expected weights (NaN)."""
    m = analysis.get_method("ternary-stoch")
    torch.manual_seed(0)
    kw = dict(scheme=m.scheme, stochastic=True, **{norm: True})
    layer = QuantLSTM(4, 5, **kw).eval()
    r = noise.noise_through_time(layer, _x(5, 4), draws=2, jacobian_modes=())
    assert (r.deviation["deviation"] > 0).any()
    assert r.deviation["deviation_mean"].isna().all() == (norm == "weight_norm")
    det = QuantLSTM(4, 5, scheme="ternary", **{norm: True}).eval()
    r = noise.noise_through_time(det, _x(5, 4), draws=2, jacobian_modes=())
    assert (r.deviation["deviation"] == 0).all()


@pytest.mark.parametrize("mode", ["resampled", "feedforward"])
def test_per_step_jacobian_products_match_the_whole_map(mode):
    """||J_T .. J_1|| (per-step draws, feedforward with Q_t) = ||d s_T / d s_0|| at s_0 = 0."""
    layer = _layer("gru", "binary-glorot-stoch", hidden=4)
    x = _x(4, 4)
    dyn = noise.layer_dynamics(layer)
    r = noise.noise_through_time(dyn, x, draws=1, seed=2, modes=(mode,), jacobian_modes=(mode,))
    p = noise.draw_path(dyn, x, mode, 0, 2, {})

    def whole(s0):
        s = s0
        for t in range(len(x)):
            s = p.weights[t].step(x[t], s if p.perms is None else s[p.perms[t]])
        return s

    J = torch.autograd.functional.jacobian(whole, torch.zeros(4, dtype=torch.float64))
    want = math.log10(float(torch.linalg.matrix_norm(J, ord=2)))
    got = r.jacobians.query(f"mode == '{mode}'")["log10_product_norm_T"].item()
    assert got == pytest.approx(want, rel=1e-10)


# ------------------------------------------------------------------------------ closed form
def _linear(n, a, sigma):
    """s_t = (a I + E) s_{t-1} + x_t with E_ij iid N(0, sigma^2)."""
    det = a * torch.eye(n, dtype=torch.float64)

    def draw(g):
        return det + sigma * torch.randn(n, n, generator=g, dtype=torch.float64)

    return noise.Dynamics(
        step=lambda w, x, s: w @ s + x,
        det=det,
        draw=draw,
        hidden=n,
        state_size=n,
        stochastic=True,
        mean=det,
    )


def _msd(r, mode):
    d = r.deviation[r.deviation["mode"] == mode]
    return d.groupby("t")["deviation"].apply(lambda v: (v**2).mean()).to_numpy()


N, A, T, K = 4, 0.8, 6, 1000
X = torch.ones(T, N, dtype=torch.float64)  # constant input: every s_t^det points the same way


def _det_states():
    s, out = torch.zeros(N, dtype=torch.float64), []
    for xt in X:
        s = A * s + xt
        out.append(s)
    return out  # s_1..s_T


def _resampled_exact(sigma, det_sq):
    """D_t = (a^2 + n s^2) D_{t-1} + n s^2 ||s_{t-1}^det||^2, D_1 = 0 (det_sq[t-1] = ||s_t||^2)."""
    D = [0.0]
    for t in range(2, T + 1):
        D.append((A**2 + N * sigma**2) * D[-1] + N * sigma**2 * det_sq[t - 2])
    return D


def _fixed_first_order(sigma):
    """D_t = n s^2 ||sum_{m<t} a^(t-1-m) s_m^det||^2."""
    s = _det_states()
    D = []
    for t in range(1, T + 1):
        u = sum((A ** (t - 1 - m) * s[m - 1] for m in range(1, t)), torch.zeros(N))
        D.append(N * sigma**2 * float(u @ u))
    return D


@pytest.fixture(scope="module")
def linear_runs():
    return {
        sigma: noise.noise_through_time(_linear(N, A, sigma), X, K, seed=0, jacobian_modes=())
        for sigma in (0.01, 0.02)
    }


def test_linear_rnn_resampled_matches_exact_recursion(linear_runs):
    for sigma, r in linear_runs.items():
        det_sq = [float(s @ s) for s in _det_states()]
        want = _resampled_exact(sigma, det_sq)
        got = _msd(r, "resampled")
        assert got[0] == 0
        assert got[1:] == pytest.approx(want[1:], rel=0.1)


def test_linear_rnn_feedforward_matches_recursion_with_its_reference(linear_runs):
    for sigma, r in linear_runs.items():
        d = r.deviation[r.deviation["mode"] == "feedforward"]
        det_sq = (d.groupby("t")["det_norm"].apply(lambda v: (v**2).mean())).tolist()
        got = _msd(r, "feedforward")
        assert got[1:] == pytest.approx(_resampled_exact(sigma, det_sq)[1:], rel=0.1)


def test_linear_rnn_fixed_matches_first_order(linear_runs):
    for sigma, r in linear_runs.items():
        got = _msd(r, "fixed")
        assert got[0] == 0
        assert got[1:] == pytest.approx(_fixed_first_order(sigma)[1:], rel=0.1)


def test_linear_rnn_deviation_grows_with_the_noise_variance(linear_runs):
    """D is proportional to s^2 (to first order): doubling s multiplies D by 4."""
    for mode in noise.MODES:
        small, large = _msd(linear_runs[0.01], mode), _msd(linear_runs[0.02], mode)
        assert (large[1:] > small[1:]).all()
        assert large[1:] / small[1:] == pytest.approx([4.0] * (T - 1), rel=0.1)


def test_linear_rnn_fixed_draw_adds_coherently(linear_runs):
    """Fixed: n s^2 ||sum_m c_m||^2; resampled: n s^2 sum_m ||c_m||^2 (first order),
    c_m = a^(t-1-m) s_m^det all parallel here, so the ratio is (sum |c|)^2 / sum |c|^2."""
    s = _det_states()
    r = linear_runs[0.01]
    ratio = _msd(r, "fixed")[1:] / _msd(r, "resampled")[1:]
    want = []
    for t in range(2, T + 1):
        c = [A ** (t - 1 - m) * float(s[m - 1].norm()) for m in range(1, t)]
        want.append(sum(c) ** 2 / sum(v * v for v in c))
    assert ratio.tolist() == pytest.approx(want, rel=0.1)
    assert (ratio[1:] > 1.5).all()


# ------------------------------------------------------------------------------ driver
def test_noise_study_writes_records(mirror, tmp_path):
    out = noise.noise_study(
        "ptb-char",
        "gru",
        hidden=6,
        draws=2,
        seq_len=5,
        methods=["float", "ternary-stoch"],
        out=tmp_path,
        data_root=str(mirror),
    )
    stem = "noise_ptb-char_gru_init_h6_T5_K2_s0"
    assert out["paths"]["summary"] == tmp_path / f"{stem}.csv"
    for p in out["paths"].values():
        assert p.is_file()
    meta = json.loads((tmp_path / f"{stem}.json").read_text())
    assert meta["config"]["draws"] == 2 and meta["origin"] == {
        "float": "init",
        "ternary-stoch": "init",
    }
    assert {"environment", "git", "wall_time_s"} <= set(meta)
    s = out["frames"]["summary"]
    assert len(s) == 2 * 3 * 5
    assert (s[s["method"] == "float"]["dev_rms"] == 0).all()
    assert (s[s["method"] == "ternary-stoch"]["dev_rms"] > 0).any()
    assert set(out["frames"]["jacobians"]["mode"]) == {"det", "fixed"}


def test_noise_study_skips_a_folder_without_runs(mirror, tmp_path, capsys):
    got = noise.noise_study(
        "ptb-char", "gru", hidden=6, draws=2, seq_len=5, methods=["float"],
        source=tmp_path, out=tmp_path, data_root=str(mirror),
    )  # fmt: skip
    assert got is None
    assert "skipped" in capsys.readouterr().out
    assert not list(tmp_path.glob("noise_*"))


def test_trained_draws_need_the_shadow_weights(mirror, tmp_path, capsys):
    """A committed run keeps only its packed (already quantized) weights: every stochastic
    draw of them equals the deterministic weights, so noise_study must skip it rather than
    report a deviation of exactly zero."""
    from qrnn.study.train import RunConfig, RunData, train

    vocab = 50  # PTB-char's vocabulary: the validation sequence feeds the trained model
    text = torch.arange(1200) % vocab
    data = RunData(text, text[:600].clone(), text[:600].clone(), vocab, {"synthetic": True})
    cfg = RunConfig(task="ptb-char", cell="gru", hidden=6, embed=4, scheme="ternary",
                    stochastic=True, epochs=1, bptt=10, batch_size=4, threads=1)  # fmt: skip
    train(cfg, tmp_path / "runs", quiet=True, data=data)
    kw = dict(hidden=6, draws=3, seq_len=8, methods=["ternary-stoch"], source=tmp_path,
              out=tmp_path / "out", data_root=str(mirror), config={"embed": 4})  # fmt: skip
    got = noise.noise_study("ptb-char", "gru", **kw)
    assert (got["frames"]["summary"]["dev_rms"] > 0).any()  # shadow weights: real draws
    for p in (tmp_path / "runs").glob("*/model.pt"):
        p.unlink()
    capsys.readouterr()
    assert noise.noise_study("ptb-char", "gru", **kw) is None
    assert "packed model" in capsys.readouterr().out
