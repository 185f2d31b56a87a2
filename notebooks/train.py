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
# # One training run
#
# Trains one configuration through `qrnn.study.train.train`, writes its run record and shows its
# learning curve and weight histograms. Change a parameter below and run all cells: with the
# `class` preset a run takes about a minute on a 2-core laptop. From a terminal, with
# papermill (later `-p` win):
#
# ```bash
# papermill notebooks/train.ipynb runs/out.ipynb --cwd . -p scheme ternary -p stochastic True
# papermill notebooks/train.ipynb runs/out.ipynb --cwd . -p preset study -p cell gru
# ```
#
# A run whose record already exists is read back, not redone (change `seed` to redo it).

# %% tags=["parameters"]
# Parameters (papermill: -p name value). Every field of qrnn.study.train.RunConfig is one; None
# takes the preset's value, else RunConfig's default (qrnn train --help lists them).
preset = "class"  # class (a lesson: ~1 min on 2 cores) | study (the cpu study's) | none
# what is compared: the method, the cell, the seed
scheme = "binary"  # float | binary | ternary | pow2-ternary | exponential
stochastic = False  # sample stochastic rounding in training (eval: deterministic)
quantizer_options = {}  # e.g. {"scale": "glorot"} (binary: H is the Glorot bound, not 1)
cell = "lstm"  # rnn | gru | lstm
seed = 0  # derives every generator: init, data order, stochastic rounding, dropout
# what the preset sizes (None: the preset's value; shown: the class preset's)
task = None  # ptb-char | ptb-word | text8 | fsdd; class: ptb-char
hidden = None  # units per layer (and direction); class: 128
epochs = None  # maximum epochs; class: 8
train_limit = None  # first N training characters / recordings (0: all); class: 200000
eval_limit = None  # the same for validation and test; class: 20000
early_stop = None  # stop after this many epochs without improvement (0: never); class: 0
bptt = None  # LM: truncated-BPTT window; class: 100
batch_size = None  # LM: parallel streams; fsdd: recordings per batch; class: 64
# the study preset: qrnn.study.experiments("cpu"), printed below when it fills a field
# the other RunConfig fields (None: RunConfig's default)
split = None  # fsdd: standard (recordings 0-4 test) | speakers (held-out speakers)
layers = None  # stacked recurrent layers
embed = None  # LM input: embedding size (0 means one-hot input)
init = None  # torch (U(+-1/sqrt(H)), torch's default) | glorot (per gate block, bias 0)
bidirectional = None  # fsdd only
input_norm = None  # fsdd: none | batch (authors' BatchNorm on the layer input)
pool = None  # fsdd: last | mean (readout over time)
dropout = None  # between layers and before the output layer
quantize_input = None  # input-to-hidden matrices (default True)
quantize_recurrent = None  # hidden-to-hidden matrices (default True)
quantize_bias = None  # biases (default True: the authors quantize them too)
quantize_io = None  # also the embedding and output layers (default False, as the authors)
weight_norm = None  # weight normalization of the quantized recurrent matrices
weight_noise = None  # float only: none | binary | ternary | binary:H (matched rounding noise)
layer_norm = None  # layer norm of the gate pre-activations (Python time loop: slower)
clip_shadow = None  # auto (binary/ternary/pow2: yes) | on | off: BinaryConnect clip
optimizer = None  # adam | sgd
lr = None  # initial (peak) learning rate (default 2e-3)
lr_schedule = None  # plateau (x lr_decay on a plateau; default) | cosine (per step to min_lr)
weight_decay = None  # L2 on the shadow weights
lr_decay = None  # multiply the lr by this when validation stops improving
lr_patience = None  # epochs without improvement before decaying
min_lr = None  # floor for the decayed lr (cosine: its end point)
clip_grad = None  # gradient-norm clipping (0: off)
clip_mode = None  # global (one norm over all tensors; default) | per-tensor (each its own)
diverge_factor = None  # diverged if the running training loss exceeds this x uniform
device = None  # auto (cuda if present) | cpu | cuda | cuda:N
threads = None  # torch intra-op threads on CPU (0: torch's default); class: 1

# Where the run record goes, and notebook-only settings.
results_dir = "runs/notebooks"  # records: <results_dir>/<run-id>/ (relative: to the repository)
data_root = None  # data mirror folder (None: $QRNN_DATA)
quiet = False  # True: no progress bars
histograms = True  # weight histograms and earlier runs of these settings (the study: False)
_names = set(globals())  # the parameters above: any other name papermill -p passes is refused

# %%
_unknown = set(globals()) - globals().pop("_names", set(globals())) - {"_names"}
import dataclasses

import matplotlib.pyplot as plt
import pandas as pd
import seaborn as sns

from qrnn import viz
from qrnn.analysis import weight_frame
from qrnn.study import presets
from qrnn.study.runs import load_model
from qrnn.study.train import RunConfig, load_data, run_id, train
from qrnn.viz import style

# Validate the parameters: an unknown name or a bad value fails here with a message naming it
# (a dict, e.g. quantizer_options, may come as a JSON string: -p quantizer_options '{...}').
presets.refuse_unknown(_unknown)
values = {f.name: globals().get(f.name) for f in dataclasses.fields(RunConfig)}
config, filled = presets.config_from(values, preset)
results = presets.results_path(results_dir)
print(run_id(config), "->", results_dir)
print(f"from preset {preset!r}:", ", ".join(f"{k}={getattr(config, k)!r}" for k in filled))

# %%
data = load_data(config, data_root, progress=not quiet)
print(presets.describe(presets.estimate(config, data)))

# %%
record = train(
    config,
    results,
    quiet=quiet,
    data=data,
    invocation={"papermill": values, "preset": preset, "from_preset": filled},
)
print(record["status"], record["test"])

# %% [markdown]
# ## Learning curve

# %% mystnb={"figure": {"caption": "Learning curve of this run: training and validation metric per epoch; dotted: the unigram (PTB) or chance (digits) baseline."}, "image": {"alt": "Training and validation metric per epoch of this run"}}
style()
metric = record["metric"]["name"]
UNITS = {"bpc": "BPC (bits per character)", "error": "error rate", "perplexity": "perplexity"}
epochs = pd.DataFrame(record["epochs"])
if len(epochs):
    long = epochs.melt("epoch", ["train_metric", "valid_metric"], "split", metric)
    long["split"] = long["split"].str.replace("_metric", "")
    fig, ax = plt.subplots(figsize=(5, 3.2), dpi=80)
    sns.lineplot(data=long, x="epoch", y=metric, hue="split", marker="o", ax=ax)
    ax.axhline(record["baseline"]["metric"], color="grey", ls=":", lw=1)
    ax.set(ylabel=f"{UNITS.get(metric, metric)}, lower is better", title=record["run_id"])
    sns.move_legend(ax, "upper left", bbox_to_anchor=(1.02, 1), title="split")
    plt.show()
else:
    print("no completed epoch:", record["diverged"] or record["error"])

# %% [markdown]
# ## Weight histograms
#
# Shadow (full-precision) and quantized weights of the first recurrent layer of the
# best-validation model: the quantized ones take only the method's few values.

# %% mystnb={"figure": {"caption": "Shadow (full-precision) and quantized weights of the first recurrent layer, per matrix."}, "image": {"alt": "Histograms of the shadow and quantized recurrent weights"}}
run_dir = results / record["run_id"]
if histograms and (run_dir / "model.pt").exists():
    model, _ = load_model(run_dir)
    g = sns.displot(
        weight_frame(model.rnn),
        x="value",
        col="matrix",
        row="weights",
        bins=60,
        facet_kws={"sharex": False, "sharey": False},
        height=2.4,
    )
    g.set_titles("{row_name}: {col_name}")
    g.figure.subplots_adjust(hspace=0.45)
    plt.show()

# %% [markdown]
# ## Earlier runs with these settings
#
# Every record in `results_dir` that differs from this run only in the method (`scheme`,
# `stochastic`, `quantizer_options`): run the notebook again with another method to compare.

# %% mystnb={"figure": {"caption": "Validation curves of the runs in results_dir that differ from this one only in the method; dotted: the baseline."}, "image": {"alt": "Validation metric per epoch for each method run with these settings"}}
if histograms:
    curves = presets.method_curves(results, config)
    fig, ax = plt.subplots(figsize=(6, 3.4), dpi=80)
    known = set(curves["method"]) <= set(viz.METHOD_COLORS)  # one colour per method
    sns.lineplot(
        data=curves,
        x="epoch",
        y="valid_metric",
        hue="method",
        marker="o",
        ax=ax,
        palette=viz.palette(sorted(set(curves["method"]))) if known else None,
    )
    ax.axhline(record["baseline"]["metric"], color="grey", ls=":", lw=1)
    ax.set(
        ylabel=f"validation {UNITS.get(metric, metric)}",
        title=f"{config.task} {config.cell}: methods",
    )
    sns.move_legend(ax, "upper left", bbox_to_anchor=(1.02, 1))
    plt.show()
