"""qrnn.analysis: step Jacobians, products, gate statistics, quantization-noise moments, the
model sources (init and trained checkpoints) and the jacobian notebook under papermill."""

import json
import math
from pathlib import Path

import pandas as pd
import pytest
import torch

import qrnn
from qrnn import QuantGRU, QuantLSTM, QuantRNN, analysis, quantizer
from qrnn.cells import gru_cell, lstm_cell
from qrnn.study import runs

ROOT = Path(__file__).resolve().parent.parent
NOTEBOOK = ROOT / "notebooks" / "jacobian.ipynb"
CELLS = {"rnn": QuantRNN, "gru": QuantGRU, "lstm": QuantLSTM}
STOCHASTIC = [
    "binary-stoch",
    "binary-glorot-stoch",
    "ternary-stoch",
    "pow2-stoch",
    "exponential-stoch",
]


@pytest.fixture(autouse=True)
def _one_thread():
    n = torch.get_num_threads()
    torch.set_num_threads(1)  # tiny matrices: threads only add overhead on a busy machine
    yield
    torch.set_num_threads(n)


def _layer(cell, method="float", inputs=5, hidden=6, seed=0, **kw):
    m = analysis.get_method(method)
    torch.manual_seed(seed)
    layer = CELLS[cell](
        inputs, hidden, scheme=m.scheme, quantizer_options=m.options, stochastic=m.stochastic, **kw
    )
    return layer.eval()


def _drive(layer, T=7, seed=1):
    x = torch.randn(T, layer.input_size, generator=torch.Generator().manual_seed(seed))
    return analysis.layer_trajectories(layer, x.double())


# ------------------------------------------------------------------------------ Jacobians
def test_rnn_jacobian_is_diag_fprime_times_w_hh():
    layer = _layer("rnn", "ternary-det", hidden=7)
    cw, x, states = _drive(layer)
    J = analysis.step_jacobians(cw, x, states)
    explicit = (1 - states[1:] ** 2).unsqueeze(-1) * cw.w_hh  # diag(1 - h_t^2) W_hh
    torch.testing.assert_close(J, explicit, rtol=1e-12, atol=1e-12)


@pytest.mark.parametrize("cell", ["rnn", "gru", "lstm"])
def test_jacobians_match_finite_differences(cell):
    cw, x, states = _drive(_layer(cell, "binary-glorot-det"), T=5)
    J = analysis.step_jacobians(cw, x, states, chunk=2)  # chunking must not change anything
    assert J.shape == (5, cw.state_size, cw.state_size)
    eps = 1e-6
    for t in range(5):
        eye = torch.eye(cw.state_size, dtype=torch.float64)
        cols = [
            (cw.step(x[t], states[t] + eps * e) - cw.step(x[t], states[t] - eps * e)) / (2 * eps)
            for e in eye
        ]
        torch.testing.assert_close(J[t], torch.stack(cols, dim=1), rtol=1e-6, atol=1e-8)


def test_trajectory_matches_the_fused_layer():
    layer = _layer("lstm", "ternary-det", hidden=8)
    x = torch.randn(9, 5)
    _, _, states = analysis.layer_trajectories(layer, x.double())
    with torch.no_grad():
        out, (_, c) = layer(x.unsqueeze(1))
    torch.testing.assert_close(states[1:, :8], out[:, 0].double(), rtol=1e-5, atol=1e-6)
    torch.testing.assert_close(states[-1, 8:], c[0, 0].double(), rtol=1e-5, atol=1e-6)


def test_second_layer_is_driven_by_the_first():
    layer = _layer("gru", "float", num_layers=2)
    x = torch.randn(6, 5)
    _, xi, states = analysis.layer_trajectories(layer, x.double(), index=1)
    with torch.no_grad():
        out, _ = layer(x.unsqueeze(1))
    torch.testing.assert_close(states[1:], out[:, 0].double(), rtol=1e-5, atol=1e-6)
    assert xi.shape == (6, 6)


def test_product_log_norms_are_exact_and_do_not_overflow():
    gen = torch.Generator().manual_seed(0)
    Js = [torch.randn(4, 4, generator=gen, dtype=torch.float64) for _ in range(6)]
    direct, p = [], torch.eye(4, dtype=torch.float64)
    for j in Js:
        p = p @ j
        direct.append(math.log10(torch.linalg.matrix_norm(p, ord=2)))
    torch.testing.assert_close(analysis.product_log_norms(Js), torch.tensor(direct).double())
    q, _ = torch.linalg.qr(torch.randn(4, 4, generator=gen, dtype=torch.float64))
    big = analysis.product_log_norms([1e10 * q] * 400)  # 1e4000 would overflow float64
    torch.testing.assert_close(big, 10.0 * torch.arange(1, 401, dtype=torch.float64))
    dead = analysis.product_log_norms([q, torch.zeros(4, 4, dtype=torch.float64), q])
    assert dead[0] == pytest.approx(0.0, abs=1e-12) and dead[1:].isneginf().all()


# ------------------------------------------------------------------------------ gates
@pytest.mark.parametrize("cell", ["rnn", "gru", "lstm"])
def test_preactivations_reproduce_the_cell(cell):
    cw, x, states = _drive(_layer(cell, "exponential-det"))
    a = analysis.gate_preactivations(cw, x, states)
    assert set(a) == set(analysis.GATES[cw.mode])
    H = cw.hidden
    if cell == "rnn":
        torch.testing.assert_close(torch.tanh(a["a"]), states[1:])
    elif cell == "gru":
        z = torch.sigmoid(a["z"])
        torch.testing.assert_close((1 - z) * torch.tanh(a["n"]) + z * states[:-1], states[1:])
        torch.testing.assert_close(
            gru_cell(x, states[:-1], cw.w_ih, cw.w_hh, cw.b_ih, cw.b_hh), states[1:]
        )
    else:
        i, f, g, o = (
            torch.sigmoid(a["i"]),
            torch.sigmoid(a["f"]),
            torch.tanh(a["g"]),
            torch.sigmoid(a["o"]),
        )
        c = f * states[:-1, H:] + i * g
        torch.testing.assert_close(c, states[1:, H:])
        torch.testing.assert_close(o * torch.tanh(c), states[1:, :H])
        h, _ = lstm_cell(x, (states[:-1, :H], states[:-1, H:]), cw.w_ih, cw.w_hh, cw.b_ih, cw.b_hh)
        torch.testing.assert_close(h, states[1:, :H])


def test_saturation_thresholds():
    a = torch.tensor([0.0, 2.98, 3.0, -3.0, 5.98, 6.0, -6.0], dtype=torch.float64)
    assert analysis.saturated(a, "tanh").tolist() == [False, False, True, True, True, True, True]
    assert analysis.saturated(a, "sigmoid").tolist() == [False] * 5 + [True, True]
    assert analysis.saturated(a, "relu").tolist() == [True, False, False, True, False, False, True]


# ------------------------------------------------------------------------------ noise
@pytest.mark.parametrize(
    "name, opts",
    [
        ("binary", {"scale": 0.5}),
        ("ternary", {"scale": 0.4}),
        ("pow2-ternary", {}),
        ("pow2-ternary", {"integer_bits": 1, "fractional_bits": 2}),
        ("exponential", {}),
        ("exponential", {"min_exp": -3, "max_exp": 0}),
    ],
)
def test_rounding_moments_match_sampling(name, opts):
    q = quantizer(name, **opts)
    w = torch.linspace(-1.3, 1.3, 53, dtype=torch.float64)  # inside and beyond every range
    w = torch.cat([w, torch.tensor([0.0, 0.3, -0.15, 2.0**-5])])
    mean, var = analysis.rounding_moments(q, w, stochastic=True)
    gen = torch.Generator().manual_seed(0)
    n = 20000
    draws = q(w.expand(n, -1).contiguous(), True, gen).detach()
    se = (var / n).sqrt()  # standard error of the sample mean
    assert ((draws.mean(0) - mean).abs() <= 5 * se + 1e-12).all()
    torch.testing.assert_close(draws.var(0), var, rtol=0.06, atol=1e-12)
    lo = 2.0 ** q.options["min_exp"] if name == "exponential" else 0.0
    inside = (w.abs() <= q.clip_bound(w) * (1 - 1e-9)) & (w.abs() >= lo) & (w != 0)
    torch.testing.assert_close(mean[inside], w[inside])  # unbiased inside the range
    d_mean, d_var = analysis.rounding_moments(q, w, stochastic=False)
    assert torch.equal(d_mean, q(w)) and not d_var.any()


def test_rounding_moment_formulas_of_the_paper():
    w = torch.linspace(-0.09, 0.09, 11, dtype=torch.float64)
    _, v = analysis.rounding_moments(quantizer("binary"), w, True)
    torch.testing.assert_close(v, 1 - w**2)  # H^2 - w^2, H = 1
    _, v = analysis.rounding_moments(quantizer("ternary", scale=0.1), w, True)
    torch.testing.assert_close(v, 0.1 * w.abs() - w**2)  # W0 |w| - w^2
    a = torch.tensor([0.3, 0.6, 0.75], dtype=torch.float64)
    _, v = analysis.rounding_moments(quantizer("exponential"), a, True)
    k = torch.floor(torch.log2(a))
    torch.testing.assert_close(v, (a - 2**k) * (2 ** (k + 1) - a))


@pytest.mark.parametrize("method", STOCHASTIC)
def test_preactivation_noise_matches_the_formula(method):
    layer = _layer("lstm", method, inputs=6, hidden=10)
    _, x, states = _drive(layer, T=6)
    noise = analysis.preactivation_noise(layer, x, states, n_draws=1500, seed=3)
    for src, d in noise.groupby("matrix"):
        ratio = d["measured_var"].sum() / d["predicted_var"].sum()
        assert ratio == pytest.approx(1, abs=0.06), (src, ratio)
    tot = noise[noise["matrix"] == "total"]
    rows = noise[noise["matrix"] != "total"].groupby("t")["predicted_var"].sum()
    assert tot["predicted_var"].to_numpy() == pytest.approx(rows.to_numpy())


def test_deterministic_noise_is_a_bias_without_variance():
    layer = _layer("gru", "binary-det")
    _, x, states = _drive(layer)
    noise = analysis.preactivation_noise(layer, x, states, stochastic=False)
    assert (noise["measured_var"] == 0).all() and (noise["predicted_var"] == 0).all()
    assert noise["measured_bias_sq"].to_numpy() == pytest.approx(noise["predicted_bias_sq"])
    h0 = (noise["matrix"] == "hh") & (noise["t"] == 1)  # h_0 = 0: no recurrent noise
    assert (noise.loc[h0, "predicted_bias_sq"] == 0).all()
    assert (noise.loc[~h0, "predicted_bias_sq"] > 0).all()


# ------------------------------------------------------------------------------ models, tables
def test_init_models_share_shadow_weights_and_differ_in_scale():
    methods = ["float", "binary-det", "binary-glorot-det", "ternary-det"]
    models, origin = runs.load_models("ptb-char", "rnn", methods, size=11, hidden=32, seed=2)
    assert set(origin.values()) == {"init"}
    ref = models["float"].state_dict()
    for m in models.values():
        assert all(torch.equal(v, ref[k]) for k, v in m.state_dict().items())
    w_unit = analysis.cell_weights(models["binary-det"].rnn).w_hh
    w_glorot = analysis.cell_weights(models["binary-glorot-det"].rnn).w_hh
    assert set(w_unit.abs().unique().tolist()) == {1.0}
    torch.testing.assert_close(w_glorot.abs().unique(), torch.tensor([math.sqrt(6 / 64)]).double())
    raw = torch.randint(0, 11, (8,), generator=torch.Generator().manual_seed(0))
    x = analysis.layer_input(models["float"], raw)
    assert x.shape == (8, 11) and x.dtype == torch.float64 and (x.sum(1) == 1).all()


def test_analyze_summary_and_frames():
    methods = ["float", "binary-stoch", "binary-glorot-stoch", "ternary-stoch", "pow2-ternary"]
    models, origin = runs.load_models("fsdd", "gru", methods, size=5, hidden=12, input_norm="batch")
    raw = torch.randn(10, 5, generator=torch.Generator().manual_seed(0))
    res = {
        m: analysis.analyze(mod, analysis.layer_input(mod, raw), m, n_draws=50, origin=origin[m])
        for m, mod in models.items()
    }
    table = analysis.summary_table(res)
    assert list(table["method"]) == methods and (table["steps"] == 10).all()
    cols = [
        "top_sv_median",
        "log10_product_norm_T",
        "saturation",
        "preact_std",
        "noise_var_measured",
        "noise_var_predicted",
        "zero_fraction",
        "recurrent_norm",
    ]
    assert table[cols].notna().all().all()
    t = table.set_index("method")
    assert math.isnan(t.loc["float", "noise_ratio"]) and t.loc["float", "noise_var_predicted"] == 0
    # same signs, H = 1 vs H = sqrt(6 / (2 * 12)): the spectral norms differ by that factor
    ratio = t.loc["binary-stoch", "recurrent_norm"] / t.loc["binary-glorot-stoch", "recurrent_norm"]
    assert ratio == pytest.approx(1 / math.sqrt(6 / 24))
    a = res["ternary-stoch"]
    assert a.singular_values.shape == (10, 12) and (a.singular_values.diff(dim=1) <= 0).all()
    assert a.log10_product_norms[0] == pytest.approx(math.log10(a.singular_values[-1, 0]))
    assert len(analysis.spectra_frame(res)) == 12 * len(methods)
    assert set(analysis.product_frame(res).columns) == {"k", "log10_norm", "method"}
    sat = analysis.saturation_frame(res)
    assert len(sat) == 3 * len(methods) and sat["saturation"].between(0, 1).all()
    assert set(analysis.noise_frame(res)["matrix"]) == {"ih", "hh", "bias", "total"}
    w = analysis.weights_frame(res)
    assert set(w["weights"]) == {"shadow", "quantized"} and set(w["method"]) == set(methods)


def test_unknown_method_and_task_are_errors():
    with pytest.raises(ValueError, match="unknown method 'binary-3'"):
        analysis.get_method("binary-3")
    with pytest.raises(ValueError, match="unknown task 'timit'"):
        runs.init_model("timit", "gru", "float", size=3)


def test_trained_checkpoints_are_found_and_loaded(mirror, tmp_path):
    from qrnn.study.train import RunConfig, train

    cfg = RunConfig(
        task="ptb-char",
        cell="gru",
        hidden=6,
        scheme="ternary",
        stochastic=True,
        epochs=1,
        bptt=10,
        batch_size=4,
        train_limit=800,
        eval_limit=400,
        threads=1,
    )
    train(cfg, tmp_path / "runs", quiet=True)
    run = runs.find_runs(tmp_path, "ptb-char", "gru", "ternary-stoch", hidden=6)
    assert len(run) == 1 and not runs.find_runs(tmp_path, "ptb-char", "gru", "ternary-det")
    assert not runs.find_runs(tmp_path, "ptb-char", "lstm", "ternary-stoch")
    seq = analysis.load_sequence("ptb-char", 12, seed=0)
    models, origin = runs.load_models(
        "ptb-char", "gru", ["ternary-stoch", "float"], str(tmp_path), size=seq.size, hidden=6
    )
    assert origin == {"ternary-stoch": run[0].name, "float": "missing"}
    res = analysis.analyze(
        models["ternary-stoch"],
        analysis.layer_input(models["ternary-stoch"], seq.raw),
        "ternary-stoch",
        origin=origin["ternary-stoch"],
        n_draws=20,
    )
    assert analysis.summary_table([res])["origin"].item() == run[0].name


def test_notebook_runs_under_papermill(mirror, tmp_path):
    from qrnn.study import execute_notebook

    csv = tmp_path / "summary.csv"
    out = tmp_path / "out.ipynb"
    execute_notebook(
        str(NOTEBOOK),
        str(out),
        cwd=str(ROOT),
        kernel_name="python3",
        progress_bar=False,
        parameters=dict(
            cell="gru",
            hidden=6,
            seq_len=8,
            n_draws=20,
            threads=1,
            methods=["float", "binary-stoch", "binary-glorot-stoch", "ternary-stoch"],
            summary_csv=str(csv),
        ),
    )
    table = pd.read_csv(csv)
    assert list(table["method"]) == [
        "float",
        "binary-stoch",
        "binary-glorot-stoch",
        "ternary-stoch",
    ]
    assert (table["hidden"] == 6).all() and (table["steps"] == 8).all()
    cells = json.loads(out.read_text())["cells"]
    images = [o for c in cells for o in c.get("outputs", []) if "image/png" in o.get("data", {})]
    assert len(images) >= 5  # spectra, products, saturation, noise, histograms


@pytest.mark.parametrize("cell", [qrnn.QuantRNN, qrnn.QuantGRU, qrnn.QuantLSTM])
def test_layer_normalized_trajectories_and_jacobians(cell):
    torch.manual_seed(0)
    layer = cell(5, 6, scheme="binary", layer_norm=True).eval()
    with torch.no_grad():
        layer.ln_hh_l0.mul_(torch.rand_like(layer.ln_hh_l0) + 0.5)
    x = torch.randn(6, 5)
    cw, xd, states = analysis.layer_trajectories(layer, x.double())
    assert cw.gains is not None
    with torch.no_grad():
        out = layer(x.unsqueeze(1))[0][:, 0]
    torch.testing.assert_close(states[1:, :6], out.double(), rtol=1e-5, atol=1e-6)
    J = analysis.step_jacobians(cw, xd, states)
    eps, t = 1e-6, 3
    eye = torch.eye(cw.state_size, dtype=torch.float64)
    cols = [(cw.step(xd[t], states[t] + eps * e) - cw.step(xd[t], states[t] - eps * e)) / (2 * eps)
            for e in eye]  # fmt: skip
    torch.testing.assert_close(J[t], torch.stack(cols, dim=1), rtol=1e-5, atol=1e-7)


@pytest.mark.parametrize("cell", ["rnn", "lstm"])
def test_preactivations_use_the_layer_norm_gains(cell):
    # issue 13: the gates were computed without the layer-norm gains the trajectories use
    layer = _layer(cell, "ternary-det", layer_norm=True)
    with torch.no_grad():
        for g in layer.layer_norm_gains()["_l0"]:
            g.uniform_(0.5, 2.0)  # gains that are not 1, so leaving them out shows
    cw, x, states = _drive(layer)
    a = analysis.gate_preactivations(cw, x, states)
    if cell == "rnn":
        torch.testing.assert_close(torch.tanh(a["a"]), states[1:])
    else:
        H = cw.hidden
        i, f, g, o = (torch.sigmoid(a["i"]), torch.sigmoid(a["f"]), torch.tanh(a["g"]),
                      torch.sigmoid(a["o"]))  # fmt: skip
        c = f * states[:-1, H:] + i * g
        torch.testing.assert_close(c, states[1:, H:])
        torch.testing.assert_close(o * torch.tanh(c), states[1:, :H])


def test_find_runs_skips_runs_of_other_experiments(tmp_path):
    # issue 13: a layer-norm (or matched-noise) run differs from a main-grid run in one flag
    # only; find_runs must not hand it out where the main-grid run is meant
    from qrnn.study.train import RunConfig, train
    from tests.test_rules import pattern_data

    base = dict(task="ptb-char", cell="lstm", hidden=6, embed=4, epochs=1, bptt=10,
                batch_size=4, threads=1)  # fmt: skip
    for extra in ({"layer_norm": True}, {"weight_norm": True}):
        train(RunConfig(**base, scheme="ternary", **extra), tmp_path / "runs", quiet=True,
              data=pattern_data(800))  # fmt: skip
    train(RunConfig(**base, weight_noise="binary"), tmp_path / "runs", quiet=True,
          data=pattern_data(800))  # fmt: skip
    for p in (tmp_path / "runs").glob("*/model.pt"):
        p.unlink()  # committed runs keep only the packed model
    assert runs.find_runs(tmp_path, "ptb-char", "lstm", "ternary-det", hidden=6) == []
    assert runs.find_runs(tmp_path, "ptb-char", "lstm", "float", hidden=6) == []
    found = runs.find_runs(tmp_path, "ptb-char", "lstm", "ternary-det", hidden=6,
                               layer_norm=True)  # fmt: skip
    assert len(found) == 1
    _, origin = runs.load_models("ptb-char", "lstm", ["ternary-det"], str(tmp_path),
                                          size=8, hidden=6, layer_norm=True)  # fmt: skip
    assert origin["ternary-det"] == found[0].name
