#!/usr/bin/env bash
# Set up (if needed) and run the main job: the pharmacy learning experiment (a rerun resumes or reprints it).
# With arguments, runs `ilearn ARGS` instead.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
. .venv/bin/activate
if [ $# -eq 0 ]; then
  set -- experiment pharmacy --report reports/pharmacy
fi
exec ilearn "$@"
