# Two commands do all the set-up on a fresh machine:
#   make demo   -> .venv, dependencies, a small end-to-end pretraining, fill-mask answers
#   make test   -> .venv, dependencies, the test suite (ends with one line: optional parts skipped and how to get them)
#                  PYTEST_ARGS="tests/test_corpus.py" runs a part of it
VENV ?= .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.bertforge-installed
PYTEST_ARGS ?=

.PHONY: demo test install clean

install: $(STAMP)

$(STAMP): pyproject.toml
	python3 -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	@# Without an NVIDIA GPU take the CPU build of torch first: any other torch spec pulls several GB of CUDA wheels.
	@if ! command -v nvidia-smi >/dev/null 2>&1; then $(PY) -m pip install -q torch==2.13.0; fi
	$(PY) -m pip install -q -e ".[dev]"
	touch $(STAMP)

demo: $(STAMP)
	$(VENV)/bin/bertforge demo --out demo-run

test: $(STAMP)
	$(VENV)/bin/pytest -q -rs $(PYTEST_ARGS)

clean:
	rm -rf demo-run .pytest_cache
