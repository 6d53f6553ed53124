#!/usr/bin/env bash
# Optional: install the Debian packages whose pictures scripts/make_real_images.py turns into labelled object
# folders (icon themes, OpenClipart, emoji fonts, GCompris's photos, rsvg-convert), then build the sets
# (docs/real-images.md).
# About 460 MB to download, 1.5 GB installed; not part of scripts/setup.sh, which stays fast.
#   sudo bash scripts/setup_real_images.sh [OUT]      # OUT defaults to data/real (git-ignored)
set -euo pipefail
cd "$(dirname "$0")/.."
PY=python3
[ -x .venv/bin/python ] && PY=.venv/bin/python
read -r -a packages <<< "$("$PY" scripts/make_real_images.py --packages)"
missing=()
for p in "${packages[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if [ ${#missing[@]} -gt 0 ]; then
  apt-get update -qq
  DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends "${missing[@]}"
fi
"$PY" scripts/make_real_images.py --out "${1:-data/real}"
