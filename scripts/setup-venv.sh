#!/usr/bin/env bash
# Installs the pinned Python tools (moto, cfn-lint, SAM CLI) into .venv/, and only when the pins
# in tools/requirements-dev.txt differ from the ones the venv was last built from.
set -euo pipefail

root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
venv="${VENV:-$root/.venv}"
requirements="$root/tools/requirements-dev.txt"
stamp="$venv/.requirements-dev.txt"
python="${PYTHON:-$(command -v python3.11 || command -v python3)}"

if [[ -x "$venv/bin/python" ]] && cmp -s "$requirements" "$stamp"; then
    echo "setup: $venv is up to date with tools/requirements-dev.txt"
    exit 0
fi

echo "setup: installing tools/requirements-dev.txt into $venv (with $python)"
"$python" -m venv "$venv"
"$venv/bin/python" -m pip install --quiet --disable-pip-version-check --upgrade pip
"$venv/bin/python" -m pip install --quiet --disable-pip-version-check -r "$requirements"
cp "$requirements" "$stamp"
echo "setup: done"
