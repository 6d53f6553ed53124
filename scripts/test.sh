#!/usr/bin/env bash
# Set up (if needed) and run the default test suite: lint, then the fast tests (slow and GPU tests are marked).
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
. .venv/bin/activate
ruff check src tests benchmarks
python -m pytest "$@"
