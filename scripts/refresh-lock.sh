#!/usr/bin/env bash
# Refresh requirements.lock: install the newest releases that requirements*.txt allow
# into a throwaway virtual environment, run the whole test suite there, and write the
# lock only if it passes. Review the diff of requirements.lock before committing it.
set -euo pipefail
cd "$(dirname "$0")/.."

fresh="$(mktemp -d)/venv"
python3 -m venv "$fresh"
"$fresh/bin/pip" install -q -r requirements-dev.txt  # no -c: take what the ranges allow today
echo "Running the test suite against the new versions..."
"$fresh/bin/python" -m pytest -q
{
  echo "# Exact versions the test suite passed with (Python $("$fresh/bin/python" -c 'import sys; print(f"{sys.version_info.major}.{sys.version_info.minor}")'), $(uname -s) $(uname -m))."
  echo "# Used as pip constraints by .ci/run, scripts/dev-setup.sh and the README's commands;"
  echo "# requirements.txt keeps the ranges. Refresh: bash scripts/refresh-lock.sh"
  "$fresh/bin/pip" freeze --exclude-editable | grep -v " @ "
} > requirements.lock
echo "requirements.lock updated; git diff requirements.lock shows what moved."
