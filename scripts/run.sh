#!/usr/bin/env bash
# Set up (if needed) and run the main job. Extra arguments go to `ilearn`.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
. .venv/bin/activate
if [ $# -eq 0 ]; then
  set -- demo
fi
exec ilearn "$@"
