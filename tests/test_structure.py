"""The package's structure, read from the source with ``ast``: the import graph has no circle,
and the library layer (quantizers, cells, layers, models, packing, the integer path, analysis
math, data, verdicts, plotting) never imports the experiment layer (run configuration, records,
run folders, training, the study, the command line); imports inside functions count as well.
argparse lives in the command-line module only, modules stay near 400 lines, each module's
docstring names the paper, and the cells carry their equations."""

import ast
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parent.parent / "qrnn"

# the experiment layer: modules that know about runs, folders, studies and the command line;
# every other module of the package is the library layer
EXPERIMENT = {
    "qrnn.__main__",
    "qrnn.assemble",
    "qrnn.baselines",
    "qrnn.causes",
    "qrnn.claims",
    "qrnn.cli",
    "qrnn.config",
    "qrnn.evidence",
    "qrnn.files",
    "qrnn.loop",
    "qrnn.noise",
    "qrnn.presets",
    "qrnn.records",
    "qrnn.runlock",
    "qrnn.runs",
    "qrnn.study",  # and its modules
    "qrnn.tables",
    "qrnn.train",
}
MAX_LINES = 440  # "about 400": a module whose docstring holds a spec may go a little over
# the command line: one parser and handler per subcommand; the grid: data, one block per
# profile and study version
LIMITS = {"qrnn.cli": 480, "qrnn.study.grid": 600}


def experiment(name: str) -> bool:
    return name in EXPERIMENT or name.startswith("qrnn.study.")


def _modules() -> dict[str, Path]:
    out = {}
    for p in sorted(PACKAGE.rglob("*.py")):
        parts = p.relative_to(PACKAGE.parent).with_suffix("").parts
        name = ".".join(parts[:-1] if parts[-1] == "__init__" else parts)
        out[name] = p
    return out


def _targets(name: str, path: Path, node: ast.AST, modules: dict[str, Path]) -> list[str]:
    """The package modules an import statement loads (``from . import x`` loads ``pkg.x``)."""
    if isinstance(node, ast.Import):
        found = [a.name for a in node.names]
    else:
        if node.level:
            pkg = name.split(".") if path.name == "__init__.py" else name.split(".")[:-1]
            base = ".".join(pkg[: len(pkg) - node.level + 1])
            mod = f"{base}.{node.module}" if node.module else base
        else:
            mod = node.module or ""
        found = [f"{mod}.{a.name}" if f"{mod}.{a.name}" in modules else mod for a in node.names]
    out = []
    for t in found:
        while t not in modules and "." in t:
            t = t.rsplit(".", 1)[0]
        if t in modules and t != name:
            out.append(t)
    return out


def import_graph() -> dict[str, set[str]]:
    modules = _modules()
    graph = {}
    for name, path in modules.items():
        tree = ast.parse(path.read_text(), filename=str(path))
        graph[name] = {
            t
            for node in ast.walk(tree)
            if isinstance(node, (ast.Import, ast.ImportFrom))
            for t in _targets(name, path, node, modules)
        }
    return graph


def _cycle(graph: dict[str, set[str]]) -> list[str] | None:
    state: dict[str, int] = {}  # 1 on the stack, 2 done

    def visit(n: str, stack: list[str]) -> list[str] | None:
        state[n] = 1
        for m in sorted(graph[n]):
            if state.get(m) == 1:
                return [*stack[stack.index(m) :], m]
            if m not in state and (c := visit(m, [*stack, m])):
                return c
        state[n] = 2
        return None

    for n in sorted(graph):
        if n not in state and (c := visit(n, [n])):
            return c
    return None


def test_the_graph_is_read():
    g = import_graph()
    assert "qrnn.quantizers" in g["qrnn.layers"] and "qrnn.runs" in g["qrnn.cli"]
    assert EXPERIMENT <= set(g)


def test_no_import_circle():
    assert _cycle(import_graph()) is None, " -> ".join(_cycle(import_graph()))


def test_a_circle_is_found():
    assert _cycle({"a": {"b"}, "b": {"c"}, "c": {"a"}}) == ["a", "b", "c", "a"]


def test_the_library_does_not_import_the_experiment_layer():
    g = import_graph()
    upward = {f"{n} -> {m}" for n, deps in g.items() if not experiment(n)
              for m in deps if experiment(m)}  # fmt: skip
    assert not upward, sorted(upward)


def test_argparse_only_in_the_command_line_module():
    users = {n for n, p in _modules().items() if "argparse" in p.read_text()}
    assert users == {"qrnn.cli"}, users


@pytest.mark.parametrize("name", sorted(_modules()))
def test_modules_stay_small(name):
    lines = len(_modules()[name].read_text().splitlines())
    limit = LIMITS.get(name, MAX_LINES)
    assert lines <= limit, f"{name} has {lines} lines (at most {limit}); split it by concern"


@pytest.mark.parametrize("name", sorted(_modules()))
def test_each_module_says_what_it_is_and_the_paper(name):
    doc = " ".join((ast.get_docstring(ast.parse(_modules()[name].read_text())) or "").split())
    assert doc, f"{name} has no module docstring"
    assert "Recurrent Neural Networks With Limited Numerical Precision" in doc, name
    assert "https://arxiv.org/abs/1608.06902" in doc, name


def test_cell_equations_sit_above_their_lines():
    src = (PACKAGE / "cells.py").read_text()
    for eq in ("# r_t = σ(", "# z_t = σ(", "# n_t = tanh(", "# h_t = (1 - z_t) ⊙ n_t",
               "# i_t = σ(", "# f_t = σ(", "# g_t = tanh(", "# o_t = σ(", "# c_t = f_t ⊙ c_(t-1)",
               "# h_t = o_t ⊙ tanh(c_t)", "# h_t = tanh(a_t)"):  # fmt: skip
        assert eq in src, eq


def test_the_integer_path_reuses_the_cells():
    src = (PACKAGE / "hardware.py").read_text()
    assert "reference_forward(" in src  # the cells' time loop
    assert "torch.sigmoid" not in src and "torch.tanh" not in src  # and their gate equations
