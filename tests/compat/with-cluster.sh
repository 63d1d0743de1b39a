#!/usr/bin/env bash
# Starts a throwaway 3-node `rill dev` cluster (fresh directory, ports from a free base), runs the
# compatibility suite against its second node, and stops the cluster. Usage:
# with-cluster.sh PATH_TO_RILL [pytest args...]
set -euo pipefail
here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
rill="$(cd "$(dirname "$1")" && pwd)/$(basename "$1")"
shift
"$here/setup.sh"

# A base port whose 30 ports above it are free (the devrel layout uses base+17 .. base+39).
base=""
for _ in $(seq 1 20); do
    candidate=$(( 20000 + (RANDOM % 400) * 100 ))
    if python3 - "$candidate" <<'PY'
import socket, sys
b = int(sys.argv[1])
for p in range(b + 10, b + 40):
    s = socket.socket()
    try:
        s.bind(("127.0.0.1", p))
    except OSError:
        sys.exit(1)
    finally:
        s.close()
PY
    then base=$candidate; break; fi
done
[[ -n "$base" ]] || { echo "with-cluster.sh: no free port range" >&2; exit 1; }

data="$(mktemp -d)"
log="$data/dev.log"
"$rill" dev --nodes 3 --data-dir "$data/dev" --base-port "$base" >"$log" 2>&1 &
dev_pid=$!
cleanup() {
    kill "$dev_pid" 2>/dev/null || true
    wait "$dev_pid" 2>/dev/null || true
    rm -rf "$data"
}
trap cleanup EXIT

for _ in $(seq 1 600); do
    grep -q "formed and settled" "$log" && break
    if ! kill -0 "$dev_pid" 2>/dev/null; then
        echo "with-cluster.sh: rill dev exited; its output:" >&2
        cat "$log" >&2
        exit 1
    fi
    sleep 0.1
done
grep -q "formed and settled" "$log" || { echo "with-cluster.sh: the cluster did not form" >&2; cat "$log" >&2; exit 1; }
head -1 "$log"

http_port=$(( base + 28 ))
pb_port=$(( base + 27 ))
status=0
RILL_HOST=127.0.0.1 RILL_HTTP_PORT="$http_port" RILL_PB_PORT="$pb_port" \
RILL_ADMIN="$rill admin --node 127.0.0.1:$http_port" \
    "$here/run.sh" "$@" || status=$?
if [[ $status -ne 0 ]]; then
    echo "with-cluster.sh: compatibility suite failed against dev2; node logs:" >&2
    tail -n 30 "$data"/dev/dev*/node.log >&2
fi
exit $status
