#!/usr/bin/env bash
# Creates <repo>/.venv and installs the pinned Python test tools (tests/requirements.txt).
# Idempotent: re-running only installs what changed. Needs python3 with the venv module
# (Debian: python3-venv) and access to PyPI.
set -euo pipefail
root="$(cd "$(dirname "$0")/.." && pwd)"
venv="${ZIGRAL_VENV:-$root/.venv}"
py="${PYTHON:-python3}"
if [ ! -x "$venv/bin/python" ]; then
    "$py" -m venv "$venv"
fi
"$venv/bin/python" -m pip install --quiet --disable-pip-version-check -r "$root/tests/requirements.txt"
"$venv/bin/schemathesis" --version
