#!/usr/bin/env bash
# Create .venv (if missing) with CPU PyTorch and the engine installed in editable mode, plus test tools.
set -euo pipefail
cd "$(dirname "$0")/.."
if [ ! -x .venv/bin/python ]; then
  python3 -m venv .venv
fi
. .venv/bin/activate
python -m pip install --quiet --upgrade pip
# CPU build first, so nothing later pulls CUDA wheels.
python -m pip install --quiet "torch==2.13.0"
python -m pip install --quiet -e ".[test]"
