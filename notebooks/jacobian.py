# ---
# jupyter:
#   jupytext:
#     text_representation:
#       extension: .py
#       format_name: percent
#   kernelspec:
#     display_name: Python 3
#     language: python
#     name: python3
# ---

# %% [markdown]
# # Why binarization fails: Jacobians, saturation and quantization noise
#
# One recurrent layer per method is driven over one validation sequence with the reference cells
# (float64, deterministic quantized weights, evaluation semantics), and `qrnn.analysis` measures:
#
# * the step Jacobian $J_t = \partial s_t / \partial s_{t-1}$ ($s = h$; LSTM $s = [h; c]$) and
#   its singular values; for the vanilla RNN $J_t = \mathrm{diag}(f'(a_t))\, W_{hh}$;
# * how a gradient survives through time: $\lVert J_T J_{T-1} \cdots J_{T-k+1} \rVert_2 =
#   \lVert \partial s_T / \partial s_{T-k} \rVert_2$ for $k = 1..T$;
# * gate pre-activations: standard deviation and saturated fraction (a unit is saturated when
#   its nonlinearity's derivative is below `tol` of its maximum: tanh $|a| > 2.99$, sigmoid
#   $|a| > 5.99$ at 1 %);
# * quantization noise $e = (W_q - W)\,v$ measured over stochastic draws against
#   $\mathrm{Var}\, e_i = \sum_j \mathrm{Var}(W_{q,ij})\, v_j^2$ with the per-weight variance of
#   each method (binary $H^2 - w^2$, ternary $W_0|w| - w^2$, pow2 stochastic rounding
#   $(w - lo)(hi - w)$, exponential $(|w| - 2^k)(2^{k+1} - |w|)$); deterministic methods have no
#   variance but a bias;
# * histograms of the shadow and quantized weights.
#
# Binary with $H = 1$ (the authors' choice), binary with Glorot-scaled $H$ and ternary share the
# same shadow weights at initialization, so their comparison separates the *scale* of the
# binary weights from the *noise* of rounding near-zero weights to $\pm H$.
#
# Run it with papermill, for example on trained checkpoints of the `cpu` study profile:
#
# ```bash
# papermill notebooks/jacobian.ipynb out.ipynb --cwd . -p task ptb-char -p cell gru \
#     -p source results/cpu
# ```

# %% tags=["parameters"]
# Parameters (papermill: -p name value)
task = "ptb-char"  # ptb-char | fsdd | fsdd-speakers
cell = "lstm"  # rnn | gru | lstm
methods = [
    "float",
    "binary-stoch",
    "binary-glorot-stoch",
    "ternary-stoch",
    "pow2-stoch",
    "exponential-stoch",
]  # labels of qrnn.analysis.METHODS
source = "init"  # "init" (the init of `seed`) or a results folder / study profile (checkpoints)
seq_len = 100  # T: steps of the validation sequence
hidden = 128  # units of the analyzed models (checkpoints: filter)
seed = 0  # init seed (checkpoints: run seed); also picks the sequence and the noise draws
layer = 0  # which layer of the stack
n_draws = 200  # stochastic draws of W_q for the noise measurement
tol = 0.01  # saturated: f'(a) below tol of its maximum
config = {}  # more RunConfig fields (init) or run filters (checkpoints): {"input_norm": "batch"}
data_root = None  # data mirror folder (None: $QRNN_DATA)
threads = 0  # torch CPU threads (0: torch's default)
summary_csv = None  # where the summary table goes (None: results/analysis/jacobian_<...>.csv)

# %%
import math
from pathlib import Path

import matplotlib.pyplot as plt
import numpy as np
import seaborn as sns
import torch

from qrnn import analysis
from qrnn.study import ROOT, runs
from qrnn.viz import style

style()
if threads:
    torch.set_num_threads(threads)
seq = analysis.load_sequence(task, seq_len, seed, data_root)
models, origin = runs.load_models(
    task, cell, methods, source, size=seq.size, hidden=hidden, seed=seed, **config
)
missing = [m for m, o in origin.items() if o == "missing"]
if missing:
    print("no completed run with weights for:", ", ".join(missing))
analyses = {
    m: analysis.analyze(
        model,
        analysis.layer_input(model, seq.raw),
        m,
        origin=origin[m],
        index=layer,
        tol=tol,
        n_draws=n_draws,
        seed=seed,
    )
    for m, model in models.items()
}
print(f"{task} {seq.description}; {cell} hidden {hidden}; weights: {origin}")

# %% [markdown]
# ## Summary
#
# One row per method, computed above and written as CSV: median top singular value of $J_t$,
# $\log_{10}$ of the $k = T$ product norm, saturated fraction and std of the gate
# pre-activations, measured and predicted noise variance (mean over steps and units) and their
# ratio, RMS noise bias, fraction of zero weights, mean spectral norm of the $W_{hh}$ gate
# blocks.

# %%
summary = analysis.summary_table(analyses)
if summary_csv is None:
    tag = "init" if source == "init" else Path(source).name
    name = f"jacobian_{task}_{cell}_{tag}_h{hidden}_T{seq_len}_s{seed}.csv"
    summary_csv = ROOT / "results" / "analysis" / name
summary_csv = Path(summary_csv)
summary_csv.parent.mkdir(parents=True, exist_ok=True)
summary.to_csv(summary_csv, index=False)
# the curves behind the figures below, for the book's interactive figure
stem = summary_csv.with_suffix("")
analysis.product_frame(analyses).to_csv(f"{stem}_products.csv", index=False)
analysis.spectra_frame(analyses).to_csv(f"{stem}_spectra.csv", index=False)
print("written:", summary_csv, "and its _products / _spectra curves")
summary.set_index("method").drop(columns=["cell", "hidden", "steps"]).round(4)

# %% [markdown]
# ## Scale or noise?
#
# At initialization these layers share their shadow weights. Binary with $H = 1$ and with
# Glorot-scaled $H$ have the same signs, so what separates them is the scale alone;
# Glorot-scaled binary and ternary share the bound $H$ but not the effective scale: ternary
# rounds most small weights to 0 where binary rounds them to $\pm H$, so its matrices have a
# far smaller RMS and spectral norm (the zero-fraction, noise and norm columns). On trained
# checkpoints the weights differ by training as well.

# %%
compare = [
    m
    for m in (
        "float",
        "binary-det",
        "binary-stoch",
        "binary-glorot-det",
        "binary-glorot-stoch",
        "ternary-det",
        "ternary-stoch",
    )
    if m in analyses
]
cols = [
    "recurrent_norm",
    "top_sv_median",
    "log10_product_norm_T",
    "preact_std",
    "saturation",
    "noise_var_predicted",
    "zero_fraction",
]
summary.set_index("method").loc[compare, cols].round(4)

# %% [markdown]
# ## Singular-value spectra of the step Jacobian

# %%
spec = analysis.spectra_frame(analyses)
palette = dict(zip(analyses, sns.color_palette(n_colors=len(analyses)), strict=True))
fig, ax = plt.subplots(figsize=(6.5, 3.8), dpi=80)
sns.lineplot(data=spec, x="rank", y="q50", hue="method", palette=palette, ax=ax)
for m, d in spec.groupby("method"):
    ax.fill_between(d["rank"], d["q10"], d["q90"], color=palette[m], alpha=0.2, lw=0)
ax.set(
    yscale="log",
    ylabel="singular value of $J_t$ (median, 10-90 % over t)",
    title="Step-Jacobian spectra",
)
sns.move_legend(ax, "upper left", bbox_to_anchor=(1.02, 1))
plt.show()

# %% [markdown]
# ## Gradient survival: norm of Jacobian products over k steps

# %%
prod = analysis.product_frame(analyses).replace(-math.inf, np.nan)
fig, ax = plt.subplots(figsize=(6.5, 3.8), dpi=80)
sns.lineplot(data=prod, x="k", y="log10_norm", hue="method", palette=palette, ax=ax)
ax.axhline(0, color="0.5", lw=0.8)
ax.set(
    ylabel=r"$\log_{10} \|\partial s_T / \partial s_{T-k}\|_2$",
    title="Gradient survival over k steps",
)
sns.move_legend(ax, "upper left", bbox_to_anchor=(1.02, 1))
plt.show()

# %% [markdown]
# ## Gate saturation and pre-activation scale

# %%
sat = analysis.saturation_frame(analyses)
fig, axes = plt.subplots(1, 2, figsize=(10, 3.6), dpi=80)
sns.barplot(data=sat, x="gate", y="saturation", hue="method", palette=palette, ax=axes[0])
sns.barplot(data=sat, x="gate", y="preact_std", hue="method", palette=palette, ax=axes[1])
axes[0].set(title=f"saturated fraction (f' < {tol:g} max f')")
axes[1].set(yscale="log", title="pre-activation std")
axes[1].get_legend().remove()
plt.show()

# %% [markdown]
# ## Quantization noise: measured against the formula
#
# Each point is one step (mean over gate units) of one method and source (input, recurrent,
# bias, total). The table gives the RMS bias of the noise: zero for unbiased stochastic rounding
# inside the method's range, nonzero for deterministic rounding.

# %%
noise = analysis.noise_frame(analyses)
noise = noise[noise["predicted_var"] > 0]
if len(noise):
    fig, ax = plt.subplots(figsize=(6.5, 4.2), dpi=80)
    sns.scatterplot(
        data=noise,
        x="predicted_var",
        y="measured_var",
        hue="method",
        style="matrix",
        palette=palette,
        s=14,
        linewidth=0,
        ax=ax,
    )
    lo, hi = noise["predicted_var"].min(), noise["predicted_var"].max()
    ax.plot([lo, hi], [lo, hi], color="0.3", lw=0.8, ls="--")
    ax.set(xscale="log", yscale="log", title="noise variance per step: measured vs formula")
    ax.legend(fontsize=7, bbox_to_anchor=(1.02, 1), loc="upper left")
    plt.show()
else:
    print("no stochastic method: no noise variance to compare")
bias = (
    analysis.noise_frame(analyses)
    .groupby(["method", "matrix"])[["measured_bias_sq", "predicted_bias_sq"]]
    .mean()
)
np.sqrt(bias).rename(columns=lambda c: c.replace("_sq", "_rms")).unstack("matrix").round(5)

# %% [markdown]
# ## Weight histograms: shadow and quantized

# %%
w = analysis.weights_frame(analyses)
g = sns.displot(
    data=w,
    x="value",
    hue="weights",
    row="method",
    col="matrix",
    bins=60,
    common_bins=False,
    common_norm=False,
    element="step",
    height=1.7,
    aspect=2.2,
    facet_kws={"sharex": False, "sharey": False},
)
g.set_titles("{row_name} | {col_name}")
plt.show()
