"""The book's notebook pages: executed copies of the three notebooks, with a line saying which
command produced each and when.

The book does not execute ``notebooks/*.ipynb`` (one trains, one writes ``results/analysis``, and
they take minutes); it shows the copies under ``book/executed/`` that this script writes::

    .venv/bin/python book/_ext/executed.py            # all three
    .venv/bin/python book/_ext/executed.py results    # one
    .venv/bin/python book/_ext/executed.py --copy-only  # the copies from the last outputs
    .venv/bin/python book/_ext/executed.py --install-cell  # after setting the repository URL

Each copy is the papermill output of the commands in :data:`COMMANDS` (run from the repository
root, outputs under ``runs/book/``, which git ignores), with one Markdown cell after the title
naming the command, its date, the commit and the time it took. ``tests/test_book.py`` checks that
the copies' code is the code of ``notebooks/<name>.ipynb``: rerun this script when a notebook
changes.
"""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from datetime import UTC, datetime
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
DEST = ROOT / "book" / "executed"
sys.path.insert(0, str(ROOT))
from qrnn.study.pages import PROFILE, STUDY  # noqa: E402  (the study the book shows)

# name -> the papermill commands, in order; the last one's output is the copy
COMMANDS: dict[str, list[list[str]]] = {
    "train": [
        # a first run with another method, so "Earlier runs with these settings" has a comparison
        ["papermill", "notebooks/train.ipynb", "runs/book/train-float.ipynb", "--cwd", ".",
         "-p", "scheme", "float", "-p", "results_dir", "runs/book", "-p", "quiet", "True"],
        ["papermill", "notebooks/train.ipynb", "runs/book/train.ipynb", "--cwd", ".",
         "-p", "results_dir", "runs/book", "-p", "quiet", "True"],
    ],
    "jacobian": [
        ["papermill", "notebooks/jacobian.ipynb", "runs/book/jacobian.ipynb", "--cwd", ".",
         "-p", "summary_csv", "runs/book/jacobian_ptb-char_lstm_init_h128_T100_s0.csv"],
    ],
    "results": [
        # on a copy of the records: refresh rewrites the profile's tables in results_dir
        ["cp", "-r", STUDY, "runs/book/results/"],
        ["papermill", "notebooks/results.ipynb", "runs/book/results.ipynb", "--cwd", ".",
         "-p", "profile", PROFILE, "-p", "results_dir", "runs/book/results", "-p", "refresh",
         "True"],
    ],
}  # fmt: skip

WHAT = {
    "train": "one run of the class preset's defaults (binary LSTM, PTB characters), after the "
    "same command with `-p scheme float`",
    "jacobian": "the defaults: the PTB-char LSTM at initialization",
    "results": f"a copy of the records of the study the book shows (`{STUDY}`), its tables "
    "rebuilt from the records by the current code",
}


# alt text of the figures of each section (myst-nb's mystnb.image.alt), where the notebook's
# cell gives none
ALT: dict[tuple[str, str], str] = {
    ("train", "Learning curve"): "Training and validation BPC per epoch of the run, with the "
    "unigram baseline dotted",
    ("train", "Weight histograms"): "Histograms of the shadow and quantized weights of each "
    "matrix of the first recurrent layer",
    ("train", "Earlier runs with these settings"): "Validation BPC per epoch of every recorded "
    "run with these settings, one line per method",
    ("jacobian", "Scale or noise?"): "Scale against noise: the Jacobian and noise measures of "
    "binary, Glorot-scaled binary and ternary weights",
    ("jacobian", "Singular-value spectra of the step Jacobian"): "Singular values of the step "
    "Jacobian per method over the time steps",
    ("jacobian", "Gradient survival: norm of Jacobian products over k steps"): "log10 norm of "
    "the Jacobian product against the number of steps k, one line per method",
    ("jacobian", "Gate saturation and pre-activation scale"): "Saturated fraction and standard "
    "deviation of the gate pre-activations per method",
    ("jacobian", "Quantization noise: measured against the formula"): "Measured against "
    "predicted variance of the quantization noise per method",
    ("jacobian", "Weight histograms: shadow and quantized"): "Histograms of the shadow and "
    "quantized recurrent weights per method",
}

LAUNCH = ("train",)  # the notebooks with launch buttons (qrnn_launch_pages in _config.yml)


def repository_url() -> str:
    """The repository setting of the book: QRNN_REPOSITORY_URL, else ``qrnn_repository_url``."""
    import os

    import yaml

    config = yaml.safe_load((ROOT / "_config.yml").read_text())
    url = os.environ.get("QRNN_REPOSITORY_URL") or config["sphinx"]["config"].get(
        "qrnn_repository_url"
    )
    return (url or "").strip()


def install_cell(url: str) -> dict:
    """A first code cell for Colab and Binder: installs qrnn from the repository when missing."""
    src = (
        "# Colab or Binder: install qrnn from its repository (this project's .venv has it)\n"
        "import importlib.util\nimport subprocess\nimport sys\n\n"
        'if importlib.util.find_spec("qrnn") is None:\n'
        f'    pkg = "qrnn @ git+{url}"\n'
        '    subprocess.run([sys.executable, "-m", "pip", "install", "-q", pkg], check=True)\n'
    )
    return {"cell_type": "code", "execution_count": None, "metadata": {"tags": ["install"]},
            "outputs": [], "source": src}  # fmt: skip


def _git(*args: str) -> str:
    r = subprocess.run(["git", *args], cwd=ROOT, capture_output=True, text=True)
    return r.stdout.strip()


def code_sources(nb: dict) -> list[str]:
    """The code of a notebook's cells, papermill's injected parameters left out."""
    return [
        "".join(c["source"]) if isinstance(c["source"], list) else c["source"]
        for c in nb["cells"]
        if c["cell_type"] == "code"
        and not {"injected-parameters", "install"} & set(c["metadata"].get("tags", []))
    ]


def shown(cmd: list[str]) -> str:
    return " ".join(cmd)


def _duration(seconds: float) -> str:
    return f"{seconds:.0f} s" if seconds < 120 else f"{seconds / 60:.0f} min"


def run(name: str) -> None:
    """Run the notebook's commands; the commit they ran at goes next to their outputs."""
    bin_ = Path(sys.executable).parent
    (ROOT / "runs" / "book").mkdir(parents=True, exist_ok=True)
    commit = _git("rev-parse", "--short=10", "HEAD")
    if _git("status", "--porcelain", "--untracked-files=no", "--", "notebooks", "qrnn"):
        commit += " with local changes"
    (ROOT / "runs" / "book" / f"{name}.commit").write_text(commit)
    for cmd in COMMANDS[name]:
        if cmd[0] == "cp":
            shutil.rmtree(ROOT / cmd[-1], ignore_errors=True)
            (ROOT / cmd[-1]).mkdir(parents=True)
            shutil.copytree(ROOT / cmd[-2], ROOT / cmd[-1] / Path(cmd[-2]).name)
        else:
            subprocess.run([str(bin_ / cmd[0]), *cmd[1:]], cwd=ROOT, check=True)


def make(name: str) -> Path:
    """The executed copy of ``notebooks/<name>.ipynb`` from the outputs of :func:`run`."""
    outputs = [json.loads((ROOT / c[2]).read_text()) for c in COMMANDS[name] if c[0] != "cp"]
    nb = outputs[-1]
    meta = [o["metadata"]["papermill"] for o in outputs]
    started = datetime.fromisoformat(meta[0]["start_time"]).astimezone(UTC)
    took = sum(m["duration"] for m in meta)
    stamp = ROOT / "runs" / "book" / f"{name}.commit"
    commit = (
        stamp.read_text().strip() if stamp.exists() else _git("rev-parse", "--short=10", "HEAD")
    )
    when = started.strftime("%Y-%m-%d %H:%M UTC")
    cmds = "\n".join(shown(c) for c in COMMANDS[name])
    note = (
        "````{admonition} Executed copy\n:class: note\n"
        f"This page is `notebooks/{name}.ipynb` with its outputs, as papermill ran it on {when} "
        f"from the repository root (commit `{commit}`, {_duration(took)} in all), on "
        f"{WHAT[name]}:\n\n```bash\n{cmds}\n```\n\n"
        "Rerun it, or change its parameters: [Work in the notebooks](../notebooks.md). The "
        "download button above gives this executed notebook; the one to run is "
        f"`notebooks/{name}.ipynb` in the repository.\n````"
    )
    cell = {"cell_type": "markdown", "metadata": {}, "source": note}
    first_md = next(i for i, c in enumerate(nb["cells"]) if c["cell_type"] == "markdown")
    nb["cells"].insert(first_md + 1, cell)
    url = repository_url()
    if url and name in LAUNCH:  # opened in Colab or Binder from the repository
        nb["cells"].insert(first_md + 2, install_cell(url))
    nb["metadata"]["mystnb"] = {"execution_mode": "off"}
    section = ""
    for c in nb["cells"]:
        src = "".join(c["source"]) if isinstance(c["source"], list) else c["source"]
        if c["cell_type"] == "markdown" and src.startswith("## "):
            section = src.splitlines()[0][3:].strip()
        images = any("image/png" in o.get("data", {}) for o in c.get("outputs", []))
        meta = c["metadata"].setdefault("mystnb", {}).setdefault("image", {})
        if images and "alt" not in meta:
            meta["alt"] = ALT.get((name, section), f"Figure of the section {section!r}")
        if not meta:
            del c["metadata"]["mystnb"]["image"]
        if not c["metadata"]["mystnb"]:
            del c["metadata"]["mystnb"]
    for c in nb["cells"]:
        c.pop("id", None)
        for key in ("papermill", "execution"):  # timings per cell: noise in the diff
            c["metadata"].pop(key, None)
    nb["nbformat_minor"] = min(nb.get("nbformat_minor", 4), 4)
    DEST.mkdir(exist_ok=True)
    out = DEST / f"{name}.ipynb"
    out.write_text(json.dumps(nb, indent=1, ensure_ascii=False) + "\n")
    return out


def set_install_cell() -> None:
    """Put the install cell of the current repository setting into the committed copies of the
    launch pages (none when no URL is set), without rerunning anything."""
    for name in LAUNCH:
        path = DEST / f"{name}.ipynb"
        nb = json.loads(path.read_text())
        cells = [c for c in nb["cells"] if "install" not in c["metadata"].get("tags", [])]
        if repository_url():
            note = next(i for i, c in enumerate(cells) if "Executed copy" in "".join(c["source"]))
            cells.insert(note + 1, install_cell(repository_url()))
        nb["cells"] = cells
        path.write_text(json.dumps(nb, indent=1, ensure_ascii=False) + "\n")


if __name__ == "__main__":
    args = sys.argv[1:]
    if args == ["--install-cell"]:  # after setting or changing the repository URL
        set_install_cell()
        sys.exit()
    copy_only = "--copy-only" in args  # the copies again from the last outputs, not rerun
    for n in [a for a in args if a != "--copy-only"] or list(COMMANDS):
        if not copy_only:
            run(n)
        print("written:", make(n).relative_to(ROOT))
