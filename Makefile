# Two entry points, each self-sufficient on a fresh machine: `make demo` and `make test`.
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
export HF_HUB_OFFLINE ?= 1

.PHONY: install demo test lint

$(VENV)/.installed: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -e ".[dev]"
	touch $@

install: $(VENV)/.installed

# The main job: demo pretrain -> finetune -> model card, offline, on the embedded synthetic data.
demo: install
	$(VENV)/bin/accelerate launch --cpu --num_processes 1 --num_machines 1 --mixed_precision no --dynamo_backend no recipes/pretrain.py
	$(VENV)/bin/accelerate launch --cpu --num_processes 1 --num_machines 1 --mixed_precision no --dynamo_backend no recipes/finetune.py
	$(PY) recipes/push.py outputs/demo/finetune --repo_id your-org/emoreg-demo --dry_run

test: install
	$(PY) -m pytest -q -p no:cacheprovider tests

lint: install
	$(VENV)/bin/ruff check . && $(VENV)/bin/ruff format --check .
