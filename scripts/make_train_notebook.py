"""Write notebooks/train.ipynb (source, no outputs). Its parameters cell lists every RunConfig
field with its default; rerun after changing RunConfig: python scripts/make_train_notebook.py"""

import dataclasses
from pathlib import Path

import nbformat as nbf
from notebook_util import write_notebook

from qrnn.train import FIELD_HELP, RunConfig

ROOT = Path(__file__).resolve().parent.parent


def main() -> None:
    params = ["# Parameters (papermill: -p name value). Every field of qrnn.train.RunConfig."]
    for f in dataclasses.fields(RunConfig):
        default = f.default if f.default is not dataclasses.MISSING else f.default_factory()
        params.append(f"{f.name} = {default!r}  # {FIELD_HELP[f.name]}")
    params += [
        "",
        "# Where the run record goes, and notebook-only settings.",
        'results_dir = "results"  # run records: <results_dir>/<run-id>/run.json',
        "data_root = None  # data mirror folder (None: $QRNN_DATA)",
        "quiet = True  # no progress bars",
        "histograms = True  # plot weight histograms of the best model",
    ]
    cells = [
        nbf.v4.new_markdown_cell(
            "# One training run\n\n"
            "Trains one configuration through `qrnn.train.train` and writes its run record. "
            "Run it with papermill, for example:\n\n"
            "```bash\n"
            "papermill notebooks/train.ipynb out.ipynb --cwd . -p task fsdd -p cell gru \\\n"
            "    -p scheme ternary -p stochastic True -p epochs 15\n"
            "```\n\n"
            "A run whose record already exists is read back, not redone."
        ),
        nbf.v4.new_code_cell("\n".join(params), metadata={"tags": ["parameters"]}),
        nbf.v4.new_code_cell(
            "import dataclasses\n\n"
            "import matplotlib.pyplot as plt\n"
            "import pandas as pd\n"
            "import seaborn as sns\n\n"
            "from qrnn.train import RunConfig, load_model, run_id, train\n\n"
            "# Validate the parameters: a bad value fails here with a message naming it.\n"
            "_names = [f.name for f in dataclasses.fields(RunConfig)]\n"
            "config = RunConfig(**{k: globals()[k] for k in _names})\n"
            "print(run_id(config))"
        ),
        nbf.v4.new_code_cell(
            "record = train(\n"
            "    config, results_dir, quiet=quiet, data_root=data_root,\n"
            "    invocation={'papermill': {k: globals()[k] for k in _names}},\n"
            ")\n"
            "print(record['status'], record['test'])"
        ),
        nbf.v4.new_markdown_cell("## Learning curves"),
        nbf.v4.new_code_cell(
            "sns.set_theme(style='whitegrid')\n"
            "metric = record['metric']['name']\n"
            "epochs = pd.DataFrame(record['epochs'])\n"
            "if len(epochs):\n"
            "    long = epochs.melt('epoch', ['train_metric', 'valid_metric'], 'split', metric)\n"
            "    long['split'] = long['split'].str.replace('_metric', '')\n"
            "    fig, ax = plt.subplots(figsize=(5, 3.2), dpi=80)\n"
            "    sns.lineplot(data=long, x='epoch', y=metric, hue='split', marker='o', ax=ax)\n"
            "    ax.set_title(record['run_id'])\n"
            "    plt.show()\n"
            "else:\n"
            "    print('no completed epoch:', record['diverged'] or record['error'])"
        ),
        nbf.v4.new_markdown_cell(
            "## Weight histograms\n\nShadow (full-precision) and quantized weights of every "
            "recurrent matrix of the best-validation model."
        ),
        nbf.v4.new_code_cell(
            "from pathlib import Path\n\n"
            "import torch\n\n"
            "run_dir = Path(results_dir) / record['run_id']\n"
            "if histograms and (run_dir / 'model.pt').exists():\n"
            "    model, _ = load_model(run_dir)\n"
            "    q = model.rnn.quantized_parameters(False)\n"
            "    rows = []\n"
            "    for name, w in model.rnn.named_parameters():\n"
            "        if name.startswith('weight'):\n"
            "            gen = torch.Generator().manual_seed(0)\n"
            "            pick = torch.randperm(w.numel(), generator=gen)\n"
            "            for kind, t in (('shadow', w), ('quantized', q[name])):\n"
            "                values = t.detach().flatten()[pick[:20000]].tolist()  # a sample\n"
            "                rows += [(name, kind, v) for v in values]\n"
            "    df = pd.DataFrame(rows, columns=['matrix', 'weights', 'value'])\n"
            "    g = sns.displot(df, x='value', col='matrix', row='weights', bins=60,\n"
            "                    facet_kws={'sharex': False, 'sharey': False}, height=2.4)\n"
            "    plt.show()"
        ),
    ]
    write_notebook(cells, "train.ipynb")


if __name__ == "__main__":
    main()
