# Two commands on a fresh machine: `make book` and `make test`.
# Both create .venv from requirements.lock (exact pins, the source of truth) when needed.
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.qrnn-installed

.PHONY: book test lint format lock env-yml bench clean lab notebooks

$(STAMP): requirements.lock pyproject.toml
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -r requirements.lock
	$(PY) -m pip install --quiet --no-deps --no-build-isolation -e .
	$(PY) -m pip check
	touch $@

venv: $(STAMP)

# viewcode keeps a stale source page when a module changes: rebuild those pages each time
book: $(STAMP)
	rm -rf _build/html/_modules
	$(VENV)/bin/jupyter-book build . -W -n --keep-going

test: $(STAMP)
	$(PY) -m pytest

lint: $(STAMP)
	$(VENV)/bin/ruff check . && $(VENV)/bin/ruff format --check .

format: $(STAMP)
	$(VENV)/bin/ruff check --fix . && $(VENV)/bin/ruff format .

bench: $(STAMP)
	$(PY) bench/bench_layers.py

# JupyterLab on notebooks/, offline: the notebooks open from their text sources
# (notebooks/*.py, jupytext; notebooks/.lab/overrides.json makes a double click open them as
# notebooks), the generated .ipynb copies are hidden, the kernel is this environment's python3
# (its kernelspec comes first on JUPYTER_PATH), no news or update checks, no extension index.
# Extra options: make lab LAB_ARGS="--no-browser --port=8899"
LAB_ROOT := $(if $(filter 0,$(shell id -u)),--allow-root)  # containers often run as root
LAB_HIDE := ["__pycache__", "*.pyc", ".ipynb_checkpoints", "train.ipynb", "jacobian.ipynb", "results.ipynb"]
lab: $(STAMP)
	JUPYTER_PATH=$(abspath $(VENV))/share/jupyter $(VENV)/bin/jupyter lab \
	  --ServerApp.root_dir=notebooks --ServerApp.ip=127.0.0.1 \
	  --LabApp.app_settings_dir=notebooks/.lab --LabApp.news_url=None \
	  --LabApp.check_for_updates_class=jupyterlab.NeverCheckForUpdate \
	  --LabApp.extension_manager=readonly \
	  '--ContentsManager.hide_globs=$(LAB_HIDE)' $(LAB_ROOT) $(LAB_ARGS)

# notebooks/*.ipynb from their one source each, notebooks/*.py (jupytext percent format)
notebooks: $(STAMP)
	$(PY) scripts/notebook_util.py

# Re-resolve the lock from pyproject.toml in a scratch venv, then regenerate environment.yml.
lock:
	rm -rf .lockenv && $(PYTHON) -m venv .lockenv
	.lockenv/bin/pip install --quiet --upgrade pip
	.lockenv/bin/pip install --quiet ".[book,dask,dev,lab]"
	.lockenv/bin/pip freeze --exclude qrnn | sed -e 's/+cpu$$//' > requirements.lock
	rm -rf .lockenv
	$(MAKE) env-yml

env-yml:
	$(PYTHON) scripts/environment_yml.py > environment.yml

clean:
	rm -rf _build .pytest_cache .ruff_cache
