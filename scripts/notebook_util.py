"""The notebooks' one source is ``notebooks/<name>.py`` (jupytext percent format, linted by
ruff); the ``.ipynb`` beside each is generated from it, without outputs, for papermill, the
study and the book. Regenerate after editing a source (``make notebooks``):

    python scripts/notebook_util.py           # write notebooks/*.ipynb
    python scripts/notebook_util.py --check   # exit 1 when one is out of date
"""

import sys
from pathlib import Path

import jupytext
import nbformat

ROOT = Path(__file__).resolve().parent.parent
NOTEBOOKS = ROOT / "notebooks"
KERNELSPEC = {"name": "python3", "display_name": "Python 3", "language": "python"}


def sources() -> list[Path]:
    return sorted(NOTEBOOKS.glob("*.py"))


def render(src: Path) -> str:
    """The ``.ipynb`` text of a source: the portable ``python3`` kernel name (a custom
    kernelspec breaks papermill on a fresh machine), stable cell ids, no jupytext metadata
    (executed copies must not pair themselves with a text file)."""
    nb = jupytext.read(src, fmt="py:percent")
    nb.metadata = {"kernelspec": dict(KERNELSPEC), "language_info": {"name": "python"}}
    for i, cell in enumerate(nb.cells):
        cell["id"] = f"{src.stem}-{i}"
        cell.metadata.pop("lines_to_next_cell", None)
        if cell.cell_type == "code":
            cell.outputs, cell.execution_count = [], None
    nbformat.validate(nb)
    return nbformat.writes(nb) + "\n"


def stale() -> list[str]:
    """Sources whose ``.ipynb`` is missing or differs from what :func:`render` writes."""
    out = []
    for src in sources():
        nb = src.with_suffix(".ipynb")
        if not nb.exists() or nb.read_text() != render(src):
            out.append(src.name)
    return out


def main(argv: list[str]) -> int:
    if "--check" in argv:
        bad = stale()
        for name in bad:
            print(f"notebooks/{name}: its .ipynb is out of date; run make notebooks")
        return 1 if bad else 0
    for src in sources():
        src.with_suffix(".ipynb").write_text(render(src))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
