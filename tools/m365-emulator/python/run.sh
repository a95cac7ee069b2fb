#!/usr/bin/env bash
# Independent-client suite for the m365-emulator: Microsoft's Python Graph SDK (msgraph-sdk) and a
# schema check of responses against tests/data/graph-v1.0-identity-subset.openapi.yaml.
# Builds the emulator (honours CARGO_TARGET_DIR), installs the pinned venv (.venv-msgraph) if needed,
# runs pytest. Extra arguments go to pytest (e.g. `-k groups`). Exits non-zero on any failure.
set -euo pipefail
here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
crate="$(dirname "$here")"
workspace="$(cd "$crate/../.." && pwd)"

t0=$(date +%s)
(cd "$workspace" && cargo build --quiet -p m365-emulator --bin m365-emulator)
target="${CARGO_TARGET_DIR:-$workspace/target}"
case "$target" in /*) ;; *) target="$workspace/$target" ;; esac
t1=$(date +%s)
"$here/setup-venv.sh"
t2=$(date +%s)

export M365_EMULATOR_BIN="$target/debug/m365-emulator"
export M365_EMULATOR_SEED="${M365_EMULATOR_SEED:-$crate/seeds/example.json}"
status=0
"$here/.venv-msgraph/bin/python" -m pytest -p no:cacheprovider -q --rootdir "$here" "$here" "$@" || status=$?
t3=$(date +%s)
echo "msgraph suite: build $((t1 - t0))s, venv $((t2 - t1))s, tests $((t3 - t2))s"
exit "$status"
