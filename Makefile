# Two commands on a fresh machine: `make book` and `make test`.
# Both create .venv from requirements.lock (exact pins, the source of truth) when needed.
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.qrnn-installed

.PHONY: book test lint format lock env-yml bench clean

$(STAMP): requirements.lock pyproject.toml
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -r requirements.lock
	$(PY) -m pip install --quiet --no-deps --no-build-isolation -e .
	$(PY) -m pip check
	touch $@

venv: $(STAMP)

book: $(STAMP)
	$(VENV)/bin/jupyter-book build . -W -n --keep-going

test: $(STAMP)
	$(PY) -m pytest

lint: $(STAMP)
	$(VENV)/bin/ruff check . && $(VENV)/bin/ruff format --check .

format: $(STAMP)
	$(VENV)/bin/ruff check --fix . && $(VENV)/bin/ruff format .

bench: $(STAMP)
	$(PY) bench/bench_layers.py

# Re-resolve the lock from pyproject.toml in a scratch venv, then regenerate environment.yml.
lock:
	rm -rf .lockenv && $(PYTHON) -m venv .lockenv
	.lockenv/bin/pip install --quiet --upgrade pip
	.lockenv/bin/pip install --quiet ".[book,dask,dev]"
	.lockenv/bin/pip freeze --exclude qrnn | sed -e 's/+cpu$$//' > requirements.lock
	rm -rf .lockenv
	$(MAKE) env-yml

env-yml:
	$(PYTHON) scripts/environment_yml.py > environment.yml

clean:
	rm -rf _build .pytest_cache .ruff_cache
