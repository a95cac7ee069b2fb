#!/usr/bin/env bash
# Runs a command against a private moto server (DynamoDB, SQS, Secrets Manager) on a free
# 127.0.0.1 port: starts moto_server from .venv/, waits until it answers, exports
# AWS_ENDPOINT_URL, dummy credentials and a region, runs the command, and stops moto on every
# exit path (success, failure, Ctrl-C). The command's exit status is the script's.
#
# Usage: scripts/with-moto.sh CMD [ARGS...]
set -euo pipefail

if [[ $# -eq 0 ]]; then
    echo "usage: $0 CMD [ARGS...]" >&2
    exit 2
fi

root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
venv="${VENV:-$root/.venv}"
moto_server="$venv/bin/moto_server"
python="$venv/bin/python"

if [[ ! -x "$moto_server" ]]; then
    echo "with-moto: $moto_server not found; run 'make setup' first" >&2
    exit 1
fi

log="$(mktemp -t moto.XXXXXX.log)"
moto_pid=""

stop_moto() {
    if [[ -n "$moto_pid" ]] && kill -0 "$moto_pid" 2>/dev/null; then
        kill "$moto_pid" 2>/dev/null || true
        wait "$moto_pid" 2>/dev/null || true
    fi
    moto_pid=""
}
trap stop_moto EXIT
trap 'stop_moto; exit 130' INT
trap 'stop_moto; exit 143' TERM

free_port() {
    "$python" -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1]); s.close()'
}

answers() {
    "$python" - "$1" <<'PY'
import sys, urllib.request
try:
    urllib.request.urlopen(f"http://127.0.0.1:{sys.argv[1]}/moto-api/data.json", timeout=1).read()
except Exception:
    sys.exit(1)
PY
}

# Another process may take the free port between the probe and moto's bind: try a few ports.
port=""
for _attempt in 1 2 3; do
    candidate="$(free_port)"
    "$moto_server" -H 127.0.0.1 -p "$candidate" >"$log" 2>&1 &
    moto_pid=$!
    for _ in $(seq 1 150); do
        if ! kill -0 "$moto_pid" 2>/dev/null; then
            break
        fi
        if answers "$candidate"; then
            port="$candidate"
            break
        fi
        sleep 0.1
    done
    if [[ -n "$port" ]]; then
        break
    fi
    stop_moto
done

if [[ -z "$port" ]]; then
    echo "with-moto: moto_server did not start; its log:" >&2
    cat "$log" >&2
    exit 1
fi

export AWS_ENDPOINT_URL="http://127.0.0.1:$port"
export AWS_ACCESS_KEY_ID="testing"
export AWS_SECRET_ACCESS_KEY="testing"
unset AWS_SESSION_TOKEN AWS_PROFILE
export AWS_REGION="${AWS_REGION:-us-east-1}"
export AWS_DEFAULT_REGION="$AWS_REGION"
echo "with-moto: moto listening on $AWS_ENDPOINT_URL (pid $moto_pid, log $log)"

# The command runs as its own job (process group) so an interrupt or termination of this script
# reaches it and everything it started (cargo and its test binaries) before moto is stopped.
set -m
"$@" &
command_pid=$!
set +m

forward() {
    kill "-$1" -- "-$command_pid" 2>/dev/null || true
    wait "$command_pid" 2>/dev/null || true
    stop_moto
    exit "$2"
}
trap 'forward INT 130' INT
trap 'forward TERM 143' TERM

status=0
wait "$command_pid" || status=$?
stop_moto
rm -f "$log"
exit "$status"
