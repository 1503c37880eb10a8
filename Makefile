# dmv-fast: `make demo` and `make test` set everything up on a fresh machine.
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
PIP := $(PY) -m pip
# The CPU build of PyTorch (export step only); an unpinned torch would pull a multi-GB CUDA build.
TORCH ?= torch==2.13.0
STAMP := $(VENV)/.dmv-fast-installed

.PHONY: setup demo test test-gpu bench lint clean gpu-check

setup: $(STAMP)

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(PIP) install -q --upgrade pip
	$(PIP) install -q "$(TORCH)"
	$(PIP) install -q -e ".[cpu,export,dev,ray,plot,osc,window,ndi]"
	# Compile the analysis and trajectory kernels into numba's cache now, not on the first render.
	$(VENV)/bin/dmv-fast warm-up --quiet
	touch $(STAMP)

demo: setup
	$(VENV)/bin/dmv-fast demo --output demo.mp4

test: setup
	$(PY) -m pytest -q

test-gpu: setup
	$(PY) -m pytest -q -m cuda

bench: setup
	$(PY) benchmarks/bench_analysis.py
	$(PY) benchmarks/macs.py
	$(PY) benchmarks/bench_generator.py
	$(PY) benchmarks/bench_aspect.py
	$(VENV)/bin/dmv-fast bench

lint: setup
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .
	$(VENV)/bin/mypy

clean:
	rm -rf $(VENV) build dist *.egg-info .pytest_cache .ruff_cache .mypy_cache

# On a GPU server (NVIDIA driver, CUDA 13 + cuDNN 9 for onnxruntime-gpu 1.31+): the GPU
# checks and timings in one command, results under benchmarks/results/gpu/.
gpu-check:
	$(PYTHON) -m venv .venv-gpu
	.venv-gpu/bin/python -m pip install -q --upgrade pip
	.venv-gpu/bin/python -m pip install -q "$(TORCH)"
	.venv-gpu/bin/python -m pip install -q -e ".[gpu,export,dev]"
	.venv-gpu/bin/python benchmarks/gpu_check.py benchmarks/results/gpu
