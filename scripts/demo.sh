#!/usr/bin/env bash
# Set up (first run only) and register the bundled demo pair; outputs go to ./demo_output.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
.venv/bin/avsm demo -o demo_output "$@"
