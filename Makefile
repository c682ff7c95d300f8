# Two commands for a new user: `make demo` runs the engine, `make test` runs every test.
# Each sets itself up: a virtual environment in .venv, and the model pulled on first use.
PY ?= python3
VENV := .venv
STAMP := $(VENV)/.installed-$(shell cksum pyproject.toml | cut -d' ' -f1)
PROMPT ?= What is the capital of France? Answer in one sentence.

.PHONY: demo test bench setup clean

setup: $(STAMP)

$(STAMP): pyproject.toml
	$(PY) -m venv $(VENV)
	# the CPU build of torch first, so nothing later can pull a multi-GB CUDA build
	$(VENV)/bin/pip install -q torch==2.13.0
	$(VENV)/bin/pip install -q -e '.[test]'
	rm -f $(VENV)/.installed-*
	touch $@

demo: $(STAMP)
	$(VENV)/bin/minfer generate "$(PROMPT)"

test: $(STAMP)
	$(VENV)/bin/python -m pytest

bench: $(STAMP)
	$(VENV)/bin/minfer bench

clean:
	rm -rf $(VENV) .pytest_cache
