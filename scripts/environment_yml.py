"""Print environment.yml (conda) from requirements.lock: python 3.11 plus the same pins via pip.

Usage: python scripts/environment_yml.py > environment.yml   (``make env-yml``)
"""

from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def pins(lock: Path = ROOT / "requirements.lock") -> list[str]:
    lines = (ln.strip() for ln in lock.read_text().splitlines())
    return [ln for ln in lines if ln and not ln.startswith("#")]


def render() -> str:
    body = "\n".join(f"      - {p}" for p in pins())
    return (
        "# Generated from requirements.lock by scripts/environment_yml.py (make env-yml).\n"
        "# The lock file is the source of truth; tests/test_project.py checks they agree.\n"
        "name: qrnn\n"
        "channels:\n"
        "  - conda-forge\n"
        "dependencies:\n"
        "  - python=3.11\n"
        "  - pip\n"
        "  - pip:\n"
        f"{body}\n"
        "      - -e .\n"
    )


if __name__ == "__main__":
    print(render(), end="")
