"""The package's structure, read from the source with ``ast``: the folders are the layers.

``qrnn/`` (the library: quantizers, cells, layers, models, the packed format, the integer path),
``qrnn/data/`` and ``qrnn/analysis/`` never import the experiment layer, ``qrnn/study/`` (run
configuration, training, records, the grid, tables, verdicts), nor the command line
(``qrnn/cli.py``); imports inside functions count as well. The import graph has no circle, an
underscored name is used only inside its own module, every name another module imports carries
a docstring, functions stay short, argparse lives in the command-line module only, modules stay
near 400 lines, each module's docstring names the paper, and the cells carry their equations."""

import ast
import importlib
import inspect
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parent.parent / "qrnn"

# the experiment layer, by folder: the study and the command line above it
EXPERIMENT = ("qrnn.study", "qrnn.cli", "qrnn.__main__")
# the library's folders: each may import the top level, never the experiment layer
LIBRARY_FOLDERS = ("qrnn.data", "qrnn.analysis")
MAX_LINES = 440  # "about 400": a module whose docstring holds a spec may go a little over
# the command line: one parser and handler per subcommand; the grid: data, one block per
# profile and study version
LIMITS = {"qrnn.cli": 520, "qrnn.study.grid": 600}
MAX_FUNCTION_LINES = 60


def experiment(name: str) -> bool:
    return any(name == e or name.startswith(e + ".") for e in EXPERIMENT)


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
    assert "qrnn.quantizers" in g["qrnn.layers"] and "qrnn.study.runs" in g["qrnn.cli"]
    assert "qrnn.analysis.dynamics" in g["qrnn.analysis.report"]
    assert {"qrnn.study", "qrnn.cli", "qrnn.data", "qrnn.analysis"} <= set(g)


def test_no_import_circle():
    assert _cycle(import_graph()) is None, " -> ".join(_cycle(import_graph()))


def test_a_circle_is_found():
    assert _cycle({"a": {"b"}, "b": {"c"}, "c": {"a"}}) == ["a", "b", "c", "a"]


def test_the_library_does_not_import_the_experiment_layer():
    g = import_graph()
    upward = {f"{n} -> {m}" for n, deps in g.items() if not experiment(n)
              for m in deps if experiment(m)}  # fmt: skip
    assert not upward, sorted(upward)


def test_layers_by_folder():
    """The folders' import graph: data imports only the top level; analysis the top level and
    data; the study the library; the command line all of them; the top level none of them."""
    g = import_graph()

    def folder(n: str) -> str:
        for f in (*LIBRARY_FOLDERS, *EXPERIMENT):
            if n == f or n.startswith(f + "."):
                return f
        return "qrnn"

    edges = {(folder(n), folder(m)) for n, deps in g.items() for m in deps} - {
        (f, f) for f in ("qrnn", *LIBRARY_FOLDERS, *EXPERIMENT)}  # fmt: skip
    library = ("qrnn", *LIBRARY_FOLDERS)
    allowed = {
        ("qrnn.data", "qrnn"),
        ("qrnn.analysis", "qrnn"),
        ("qrnn.analysis", "qrnn.data"),
        *(("qrnn.study", f) for f in library),  # the study sits on the library
        *(("qrnn.cli", f) for f in (*library, "qrnn.study")),
        ("qrnn.__main__", "qrnn.cli"),
    }
    assert edges <= allowed, sorted(edges - allowed)


def _private_uses() -> list[str]:
    """Every use of another package module's underscored name: imported, or read as an
    attribute of an imported package module."""
    modules, out = _modules(), []
    for name, path in modules.items():
        tree = ast.parse(path.read_text())
        aliases = {}
        for node in ast.walk(tree):
            if isinstance(node, ast.ImportFrom):
                for t, a in zip(_targets(name, path, node, modules), node.names, strict=False):
                    if a.name.startswith("_") and not a.name.startswith("__"):
                        out.append(f"{name}:{node.lineno} imports {t}.{a.name}")
                for a in node.names:
                    full = f"{node.module or ''}.{a.name}".lstrip(".")
                    if any(m.endswith(full) for m in modules):
                        aliases[a.asname or a.name] = full
        for node in ast.walk(tree):
            if (isinstance(node, ast.Attribute) and isinstance(node.value, ast.Name)
                    and node.value.id in aliases and node.attr.startswith("_")
                    and not node.attr.startswith("__")):  # fmt: skip
                out.append(f"{name}:{node.lineno} reads {aliases[node.value.id]}.{node.attr}")
    return out


def test_underscored_names_stay_in_their_module():
    assert not _private_uses(), _private_uses()


def test_a_private_use_is_found(tmp_path, monkeypatch):
    pkg = tmp_path / "qrnn"
    pkg.mkdir()
    (pkg / "__init__.py").write_text("")
    (pkg / "a.py").write_text("def _hidden():\n    pass\n")
    (pkg / "b.py").write_text("from .a import _hidden\nfrom . import a\na._hidden()\n")
    monkeypatch.setattr(__import__(__name__), "PACKAGE", pkg)
    assert len(_private_uses()) == 2


def _imported_names() -> set[tuple[str, str]]:
    """(module, name) of every function or class one package module imports from another."""
    modules, out = _modules(), set()
    for name, path in modules.items():
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.ImportFrom):
                for t, a in zip(_targets(name, path, node, modules), node.names, strict=False):
                    if t in modules and f"{t}.{a.name}" not in modules and t != "qrnn.__main__":
                        out.add((t, a.name))
    return out


def test_every_imported_function_and_class_has_a_docstring():
    missing = []
    for mod, attr in sorted(_imported_names()):
        obj = getattr(importlib.import_module(mod), attr, None)
        if (inspect.isfunction(obj) or inspect.isclass(obj)) and obj.__module__ == mod:
            if not (obj.__doc__ or "").strip() or (inspect.isclass(obj) and obj.__doc__
                                                    .startswith(obj.__name__ + "(")):  # fmt: skip
                missing.append(f"{mod}.{attr}")
    assert not missing, missing


def _long_functions(limit: int) -> list[tuple[int, str]]:
    out = []
    for name, path in _modules().items():
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef):
                n = node.end_lineno - node.lineno + 1
                if n > limit:
                    out.append((n, f"{name}.{node.name} (line {node.lineno})"))
    return sorted(out, reverse=True)


def test_functions_stay_short():
    """No function in the package over ~60 lines (a docstring included): a long one is a story
    of named steps (issue 27)."""
    assert not _long_functions(MAX_FUNCTION_LINES), _long_functions(MAX_FUNCTION_LINES)


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
