#!/usr/bin/env bash
# Creates tests/compat/.venv (Python 3.11) with the pinned Basho client and
# pytest. Idempotent: when the venv already matches requirements.txt it only
# checks a stamp and returns.
set -euo pipefail
here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
venv="$here/.venv"
python="${PYTHON:-python3}"
stamp="$venv/.requirements.sha256"
want="$(sha256sum "$here/requirements.txt" | cut -d' ' -f1)"

if [[ -x "$venv/bin/python" && -f "$stamp" && "$(cat "$stamp")" == "$want" ]]; then
    exit 0
fi

case "$("$python" -c 'import sys; print("%d.%d" % sys.version_info[:2])')" in
    3.11) ;;
    *) echo "setup.sh: $python is not Python 3.11 (set PYTHON=...)" >&2; exit 1 ;;
esac

[[ -x "$venv/bin/python" ]] || "$python" -m venv "$venv"
"$venv/bin/python" -m pip install --quiet --disable-pip-version-check \
    -r "$here/requirements.txt"
# The only protobuf runtime riak 2.7.0 can use here is python3_protobuf's
# pure-Python one; riak_shim forces it, this proves the venv imports.
PROTOCOL_BUFFERS_PYTHON_IMPLEMENTATION=python \
    "$venv/bin/python" -c "import sys; sys.path.insert(0, '$here'); import riak_shim, riak; riak.RiakClient(protocol='pbc').close()"
echo "$want" > "$stamp"
