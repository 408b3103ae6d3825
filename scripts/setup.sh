#!/usr/bin/env bash
# Create .venv (if missing) with CPU PyTorch and the engine installed in editable mode, plus test tools.
# Re-runs are quick: the install is skipped while pyproject.toml is unchanged since the last one.
set -euo pipefail
cd "$(dirname "$0")/.."
if [ ! -x .venv/bin/python ]; then
  python3 -m venv .venv
fi
stamp=".venv/.avsm-installed"
wanted="$(sha256sum pyproject.toml | cut -d' ' -f1)"
if [ -f "$stamp" ] && [ "$(cat "$stamp")" = "$wanted" ] && .venv/bin/python -c "import avsm, torch" 2>/dev/null; then
  exit 0
fi
. .venv/bin/activate
python -m pip install --quiet --upgrade pip
# CPU build first, so nothing later pulls CUDA wheels.
python -m pip install --quiet "torch==2.13.0"
python -m pip install --quiet -e ".[test]"
echo "$wanted" > "$stamp"
