#!/usr/bin/env bash
# The GPU tests: everything marked `gpu` (skipped by the default run), i.e. the models, every recipe, the
# learn -> gate -> promote -> rollback loop and both experiment protocols on a CUDA device in bf16.
# Needs a CUDA device; uses .venv (scripts/setup.sh) when there is one, else python3. Extra arguments go to pytest.
set -euo pipefail
cd "$(dirname "$0")/.."
PY=python3
[ -x .venv/bin/python ] && PY=.venv/bin/python
export HF_HUB_OFFLINE=1
"$PY" -c 'import torch, sys; sys.exit(0 if torch.cuda.is_available() else "no CUDA device: the gpu tests need one")'
exec "$PY" -m pytest -p no:cacheprovider -m gpu -rs tests "$@"
