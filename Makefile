# One-command set-up + tests / demo. `make test` and `make demo` install what is missing first.
PY ?= python3
PIP = $(PY) -m pip
export HF_HUB_OFFLINE = 1
export HF_DATASETS_OFFLINE = 1
export TRANSFORMERS_OFFLINE = 1
export WANDB_MODE = offline
export TOKENIZERS_PARALLELISM = false

.PHONY: install test test-fast lint demo bench

# torch first: an already installed torch (e.g. your CUDA build) is kept; otherwise the CPU 2.13 wheel.
install:
	$(PY) -c "import torch" 2>/dev/null || $(PIP) install -q torch==2.13.0
	$(PIP) install -q -e ".[train,dev]"

lint: install
	$(PY) -m ruff check .
	$(PY) -m ruff format --check .

test: install lint
	$(PY) -m pytest -q

test-fast: install
	$(PY) -m pytest -q -m "not slow"

# prepare the demo's assets (tiny model, synthetic data under .demo/), then evaluate, train, evaluate
demo: install
	$(PY) scripts/prepare_demo.py
	$(PY) scripts/demo.py

bench: install
	$(PY) scripts/bench_gradcache.py
	$(PY) scripts/bench_eval.py
