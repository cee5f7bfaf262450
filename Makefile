# Two entry points, each self-sufficient on a fresh machine: `make demo` and `make test`.
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
# One CPU process, every core for it: each value given, so accelerate prints no warning about defaults. -q: a
# recipe's error is shown once, without the launcher's traceback (which would repeat it twice more).
LAUNCH := $(VENV)/bin/accelerate launch -q --cpu --num_processes 1 --num_machines 1 --mixed_precision no \
	--dynamo_backend no --num_cpu_threads_per_process $(shell nproc 2>/dev/null || echo 1)
export HF_HUB_OFFLINE ?= 1

.PHONY: install install-dev demo test lint results scale-smoke

# Two installs, each the size of its job: `.` (what the recipes and the demo need) for `make demo`, and on top of
# it `.[dev]` (pytest, ruff, gradio, selenium, DeepSpeed, ...) for `make test`. Each leaves a stamp in the venv,
# so `make demo` then `make test` on a fresh clone installs each part once.
$(VENV)/.installed: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -e .
	touch $@

$(VENV)/.installed-dev: $(VENV)/.installed
	$(PY) -m pip install --quiet -e ".[dev]"
	touch $@

install: $(VENV)/.installed

install-dev: $(VENV)/.installed-dev

# The main job: demo pretrain -> finetune -> model card, offline, on the embedded synthetic data.
demo: install
	$(LAUNCH) recipes/pretrain.py
	$(LAUNCH) recipes/finetune.py
	$(PY) recipes/push.py outputs/demo/finetune --repo_id your-org/emoreg-demo --dry_run

# --durations=15: the slowest 15 tests, at the end of every run.
test: install-dev
	$(PY) -m pytest -q -p no:cacheprovider -n 2 --dist loadfile --durations=15 tests

lint: install-dev
	$(VENV)/bin/ruff check . && $(VENV)/bin/ruff format --check .

# The published studies' reports (benchmarks/results/<study>/results.*, from their records/ when they keep them,
# else from results.json) and the reference model cards of their runs (model_cards/reference/<study>/, from
# records/; a study without records is said to have none): after a change meant to change them
# (tests/test_reference_results.py and tests/test_reference_cards.py say when one is due).
results: install
	$(PY) recipes/ablate.py --report $(patsubst %/results.json,%,$(wildcard benchmarks/results/*/results.json)) \
		--cards model_cards/reference

# The real recipes at their real size (ViT-B/16, ResNet-50, ConvNeXt-T at 224 px) through the recipe scripts:
# fp32, bf16, compile, checkpointing, 2-rank DDP, 2-rank FSDP; 3 steps each, on CPU (docs/scale.md). Not in `test`.
scale-smoke: install-dev
	$(PY) benchmarks/scale_smoke.py --json outputs/scale_smoke.json
