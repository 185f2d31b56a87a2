"""Write notebooks/results.ipynb (source, no outputs): python scripts/make_results_notebook.py"""

from pathlib import Path

import nbformat as nbf
from notebook_util import write_notebook

ROOT = Path(__file__).resolve().parent.parent

FIGURE_ALT = (
    "Test metric per method and cell, mean and standard deviation over seeds, one panel per "
    "task and one figure per experiment and metric; the dotted line is the task's baseline"
)

CELLS = [
    (
        "md",
        "# Study results\n\nTables and figures of one profile, read from the run records "
        "under `results/<profile>/` (no training here). Rebuild the tables with "
        "`qrnn study summarize --profile PROFILE`.",
    ),
    (
        "params",
        "# Parameters (papermill: -p name value)\n"
        'profile = "cpu"  # smoke | cpu | paper\n'
        "results_dir = None  # folder holding <profile>/runs/<run-id>/run.json (None: results/)\n"
        "refresh = False  # True: rebuild runs.csv / summary.csv / claims.csv from the records\n"
        "data_root = None  # data mirror (None: $QRNN_DATA), for the unigram baseline",
    ),
    (
        "code",
        "from pathlib import Path\n\n"
        "import matplotlib.pyplot as plt\n"
        "import pandas as pd\n"
        "import seaborn as sns\n\n"
        "from qrnn import study\n\n"
        "sns.set_theme(style='whitegrid')\n"
        "results_dir = Path(results_dir) if results_dir else study.ROOT / 'results'\n"
        "folder = results_dir / profile\n"
        "if refresh or not (folder / 'summary.csv').exists():\n"
        "    runs, summary = study.summarize(profile, results_dir, data_root)\n"
        "else:  # the tables qrnn study summarize wrote\n"
        "    runs = pd.read_csv(folder / 'runs.csv')\n"
        "    summary = pd.read_csv(folder / 'summary.csv')\n"
        "print(len(runs), 'run records;', runs['status'].value_counts().to_dict())",
    ),
    ("md", "## Test metric per task, cell and method (mean ± std over seeds)"),
    (
        "code",
        "table = summary.assign(\n"
        "    test=lambda d: d['test_mean'].map('{:.3f}'.format) + ' ± '\n"
        "    + d['test_std'].fillna(0).map('{:.3f}'.format)\n"
        ")\n"
        "cols = ['experiment', 'task', 'cell', 'method', 'metric', 'test', 'n', 'diverged',\n"
        "        'beats_baseline', 'gap_mean']\n"
        "table[cols]",
    ),
    (
        "figure",
        "for (experiment, metric), part in runs.groupby(['experiment', 'metric']):\n"
        "    g = sns.catplot(\n"
        "        data=part, x='method', y='test', hue='cell', col='task', kind='point',\n"
        "        dodge=0.3 if part['cell'].nunique() > 1 else False, linestyle='none',\n"
        "        errorbar='sd', height=3.2, aspect=1.4,\n"
        "        sharey=False,\n"
        "    )\n"
        "    for ax in g.axes.flat:\n"
        "        ax.tick_params(axis='x', rotation=60)\n"
        "        base = part['baseline'].iloc[0]\n"
        "        ax.axhline(base, color='grey', ls=':', lw=1)\n"
        "    g.figure.suptitle(f'{experiment}: test {metric} (dotted: baseline)', y=1.03)\n"
        "    plt.show()",
    ),
    ("md", "## The paper's claims against our runs"),
    ("code", "pd.DataFrame(study.claims(runs, summary))"),
]


def main() -> None:
    cells = []
    for kind, src in CELLS:
        if kind == "md":
            cells.append(nbf.v4.new_markdown_cell(src))
        elif kind == "params":
            cells.append(nbf.v4.new_code_cell(src, metadata={"tags": ["parameters"]}))
        elif kind == "figure":  # alt text for the book (myst-nb image options)
            cells.append(
                nbf.v4.new_code_cell(src, metadata={"mystnb": {"image": {"alt": FIGURE_ALT}}})
            )
        else:
            cells.append(nbf.v4.new_code_cell(src))
    write_notebook(cells, "results.ipynb")


if __name__ == "__main__":
    main()
