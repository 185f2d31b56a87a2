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
# # Study results
#
# Tables and figures of one profile, read from the run records under `results/<profile>/` (no
# training here). Rebuild the tables with `qrnn study summarize --profile PROFILE`.

# %% tags=["parameters"]
# Parameters (papermill: -p name value)
profile = "cpu"  # smoke | cpu | paper
results_dir = None  # folder holding <profile>/runs/<run-id>/run.json (None: results/)
refresh = False  # True: rebuild runs.csv / summary.csv / claims.csv from the records
data_root = None  # data mirror (None: $QRNN_DATA), for the unigram baseline

# %%
from pathlib import Path

import matplotlib.pyplot as plt
import pandas as pd
import seaborn as sns

from qrnn import study, viz

viz.style()
results_dir = Path(results_dir) if results_dir else study.ROOT / "results"
folder = results_dir / profile
if refresh or not (folder / "summary.csv").exists():
    runs, summary = study.summarize(profile, results_dir, data_root)
else:  # the tables qrnn study summarize wrote
    runs = pd.read_csv(folder / "runs.csv")
    summary = pd.read_csv(folder / "summary.csv")
print(len(runs), "run records;", runs["status"].value_counts().to_dict())

# %% [markdown]
# ## Test metric per task, cell and method (mean ± std over seeds)

# %%
table = summary.assign(
    test=lambda d: (
        d["test_mean"].map("{:.3f}".format) + " ± " + d["test_std"].fillna(0).map("{:.3f}".format)
    )
)
cols = [
    "experiment",
    "task",
    "cell",
    "hidden",
    "max_epochs",
    "method",
    "metric",
    "test",
    "n",
    "diverged",
    "beats_baseline",
    "gap_mean",
]
table[cols]

# %% mystnb={"image": {"alt": "Test metric per method and cell; dotted: baseline"}, "figure": {"caption": "Test metric per method and configuration (cell and hidden size; mean and standard deviation over seeds), one panel per task; dotted: the unigram or chance baseline."}}
# one series per configuration: the cell with its hidden size, and the setting digest where
# one experiment holds several settings of the same cell (e.g. a learning-rate sweep)
runs["config"] = runs["cell"] + " " + runs["hidden"].astype(str)
if "setting" in runs:
    many = runs.groupby(["experiment", "task", "config"])["setting"].transform("nunique") > 1
    runs.loc[many, "config"] += " " + runs.loc[many, "setting"].astype(str)
for (experiment, metric), part in runs.groupby(["experiment", "metric"]):
    g = sns.catplot(
        data=part,
        x="method",
        y="test",
        hue="config",
        col="task",
        kind="point",
        dodge=0.3 if part["config"].nunique() > 1 else False,
        linestyle="none",
        errorbar="sd",
        height=3.2,
        aspect=1.4,
        sharey=False,
        hue_order=sorted(part["config"].unique()),
    )
    for ax in g.axes.flat:
        ax.tick_params(axis="x", rotation=60)
        base = part["baseline"].iloc[0]
        ax.axhline(base, color="grey", ls=":", lw=1)
        ax.set(ylabel=viz.METRIC_LABELS.get(metric, f"test {metric}"))
    g.figure.suptitle(f"{experiment}: test {metric} (dotted: baseline)", y=1.03)
    plt.show()

# %% [markdown]
# ## The paper's claims against our runs

# %%
pd.DataFrame(study.claims(runs, summary))
