#!/usr/bin/env bash
# A local S3 server for tests: moto_server (PyPI moto[server]) in the project's own
# virtual environment, on 127.0.0.1 and a free port.
#
#   scripts/s3/moto.sh install        # venv in .venv-moto/ (idempotent)
#   scripts/s3/moto.sh start DIR      # starts it; DIR/env.sh exports AWS_* for curate; DIR/pid
#   scripts/s3/moto.sh stop DIR
set -euo pipefail
root="$(cd "$(dirname "$0")/../.." && pwd)"
venv="${CURATE_MOTO_VENV:-$root/.venv-moto}"
cmd="${1:-}"
case "$cmd" in
install)
    if [ -x "$venv/bin/moto_server" ]; then
        exit 0
    fi
    python3 -m venv "$venv"
    "$venv/bin/pip" install --quiet --disable-pip-version-check 'moto[server]==5.1.*'
    ;;
start)
    dir="$(mkdir -p "${2:?usage: start DIR}" && cd "$2" && pwd)"
    port="$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')"
    "$venv/bin/moto_server" -H 127.0.0.1 -p "$port" >"$dir/moto.log" 2>&1 &
    echo $! >"$dir/pid"
    cat >"$dir/env.sh" <<ENV
export AWS_ENDPOINT_URL=http://127.0.0.1:$port
export AWS_ALLOW_HTTP=true
export AWS_ACCESS_KEY_ID=testing
export AWS_SECRET_ACCESS_KEY=testing
export AWS_REGION=us-east-1
ENV
    for _ in $(seq 1 100); do
        if curl -s -o /dev/null "http://127.0.0.1:$port/"; then
            echo "http://127.0.0.1:$port"
            exit 0
        fi
        sleep 0.2
    done
    echo "moto_server did not start; see $dir/moto.log" >&2
    exit 1
    ;;
stop)
    dir="${2:?usage: stop DIR}"
    if [ -s "$dir/pid" ]; then
        kill "$(cat "$dir/pid")" 2>/dev/null || true
    fi
    ;;
*)
    echo "usage: $0 install | start DIR | stop DIR" >&2
    exit 2
    ;;
esac
