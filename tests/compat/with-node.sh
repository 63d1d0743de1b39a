#!/usr/bin/env bash
# Starts a throwaway node (fresh data directory, free loopback ports), runs the compatibility
# suite against it, and stops it. Usage: with-node.sh PATH_TO_RILL [pytest args...]
set -euo pipefail
here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
rill="$(cd "$(dirname "$1")" && pwd)/$(basename "$1")"
shift
"$here/setup.sh"

free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1]); s.close()'; }
http_port="$(free_port)"
pb_port="$(free_port)"
data="$(mktemp -d)"
log="$data/node.log"
"$rill" start --http "127.0.0.1:$http_port" --pb "127.0.0.1:$pb_port" --internode 127.0.0.1:0 --data-dir "$data/data" >"$log" 2>&1 &
node_pid=$!
cleanup() {
    kill "$node_pid" 2>/dev/null || true
    wait "$node_pid" 2>/dev/null || true
    rm -rf "$data"
}
trap cleanup EXIT

for _ in $(seq 1 100); do
    if python3 -c "import urllib.request,sys; urllib.request.urlopen('http://127.0.0.1:$http_port/ping', timeout=1)" 2>/dev/null; then
        break
    fi
    if ! kill -0 "$node_pid" 2>/dev/null; then
        echo "with-node.sh: the node exited; its log:" >&2
        cat "$log" >&2
        exit 1
    fi
    sleep 0.1
done

status=0
RILL_HOST=127.0.0.1 RILL_HTTP_PORT="$http_port" RILL_PB_PORT="$pb_port" \
RILL_ADMIN="$rill admin --node 127.0.0.1:$http_port" \
    "$here/run.sh" "$@" || status=$?
if [[ $status -ne 0 ]]; then
    echo "with-node.sh: compatibility suite failed; node log tail:" >&2
    tail -n 50 "$log" >&2
fi
exit $status
