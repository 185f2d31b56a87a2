"""Project hygiene: lint, formatting, pins, and environment.yml agreeing with the lock."""

import subprocess
import sys
import tomllib
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "scripts"))
import environment_yml  # noqa: E402


def _ruff(*args):
    return subprocess.run(
        [sys.executable, "-m", "ruff", *args], cwd=ROOT, capture_output=True, text=True
    )


def test_ruff_lint_clean():
    r = _ruff("check", ".")
    assert r.returncode == 0, r.stdout + r.stderr


def test_ruff_format_clean():
    r = _ruff("format", "--check", ".")
    assert r.returncode == 0, r.stdout + r.stderr


def test_environment_yml_matches_lock():
    committed = (ROOT / "environment.yml").read_text()
    assert committed == environment_yml.render(), "run `make env-yml` after changing the lock"


def test_lock_pins_everything_exactly():
    pins = environment_yml.pins()
    assert pins, "empty lock file"
    for line in pins:
        assert "==" in line and not line.startswith("-e"), f"not an exact pin: {line}"
    by_name = {p.split("==")[0].lower(): p.split("==")[1] for p in pins}
    assert by_name["torch"] == "2.13.0"
    assert by_name["jupyter-book"].startswith("1.")
    for needed in ("seaborn", "numpy", "papermill", "pytest", "ruff", "hypothesis"):
        assert needed in by_name, f"{needed} missing from requirements.lock"


def test_pyproject_pins():
    meta = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    deps = meta["dependencies"]
    assert "torch==2.13.0" in deps
    assert any(
        d.replace(" ", "").startswith("jupyter-book>=1.0.4,<2")
        for d in meta["optional-dependencies"]["book"]
    )
    lock = {p.split("==")[0].lower() for p in environment_yml.pins()}
    for dep in deps:
        name = dep.split(">")[0].split("=")[0].split("<")[0].split("[")[0].strip().lower()
        assert name in lock, f"{name} is a dependency but not in requirements.lock"


@pytest.mark.parametrize("nb", sorted((ROOT / "notebooks").glob("*.ipynb")), ids=lambda p: p.name)
def test_source_notebooks_have_no_outputs(nb):
    import json

    cells = json.loads(nb.read_text())["cells"]
    for c in cells:
        if c["cell_type"] == "code":
            assert not c.get("outputs") and not c.get("execution_count"), nb.name


def test_readme_python_examples_run():
    import re

    blocks = re.findall(r"```python\n(.*?)```", (ROOT / "README.md").read_text(), re.S)
    assert blocks, "README has no python example"
    for code in blocks:
        exec(compile(code, "README.md", "exec"), {})
