# One-command set-up + tests / demo. `make test` and `make demo` install what is missing first.
PY ?= python3
PIP = $(PY) -m pip
export HF_HUB_OFFLINE = 1
export HF_DATASETS_OFFLINE = 1
export TRANSFORMERS_OFFLINE = 1
export WANDB_MODE = offline
export TOKENIZERS_PARALLELISM = false

.PHONY: install test test-slow lint demo bench

# torch first: an already installed torch (e.g. your CUDA build) is kept; otherwise the CPU 2.13 wheel.
install:
	$(PY) -c "import torch" 2>/dev/null || $(PIP) install -q torch==2.13.0
	$(PIP) install -q -e ".[train,dev]"

lint: install
	$(PY) -m ruff check .
	$(PY) -m ruff format --check .

# the suite on 2 processes (pytest-xdist); multi-process and end-to-end checks are marked slow and run
# by `make test-slow` (CI runs both: .ci/run)
test: install lint
	$(PY) -m pytest -q -n 2 -m "not slow"

test-slow: install
	$(PY) -m pytest -q -n 2 -m slow

# prepare the demo's assets (tiny model, synthetic data under .demo/), then evaluate, train, evaluate
demo: install
	$(PY) scripts/prepare_demo.py
	$(PY) scripts/demo.py

bench: install
	$(PY) scripts/bench_gradcache.py
	$(PY) scripts/bench_eval.py
