#!/usr/bin/env bash
# Set up everything the tests need on a fresh Debian/Ubuntu machine:
# system packages (a browser for the page test, espeak-ng/sox/ffmpeg for test speech)
# and a virtual environment in .venv with the app and test requirements.
set -euo pipefail
cd "$(dirname "$0")/.."

packages=(chromium chromium-driver espeak-ng sox ffmpeg fonts-noto-cjk)
missing=()
for package in "${packages[@]}"; do
  dpkg-query -W -f='${Status}' "$package" 2>/dev/null | grep -q "install ok installed" || missing+=("$package")
done
if [ ${#missing[@]} -gt 0 ]; then
  as_root=()
  [ "$(id -u)" -eq 0 ] || as_root=(sudo)
  echo "Installing system packages: ${missing[*]}"
  "${as_root[@]}" apt-get update -qq
  DEBIAN_FRONTEND=noninteractive "${as_root[@]}" apt-get install -y -qq "${missing[@]}"
fi

[ -x .venv/bin/python ] || python3 -m venv .venv
# The lock pins every package to the versions the suite passed with (scripts/refresh-lock.sh).
.venv/bin/pip install -q -r requirements-dev.txt -c requirements.lock

# ESLint for the page's scripts in mmchat/web/static/ (tests/test_structure.py), pinned by
# package-lock.json; the machine's own Node.js and npm install it into node_modules/.
if [ -f package-lock.json ]; then
  if command -v npm >/dev/null; then
    npm ci --no-audit --no-fund --loglevel=error >/dev/null
  else
    echo "npm not found: the ESLint test is skipped here (and fails under CI). Node.js 20.19 or newer brings it." >&2
  fi
fi
