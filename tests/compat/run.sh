#!/usr/bin/env bash
# Runs the riak==2.7.0 client compatibility suite against a running node.
# Environment (passed through): RILL_HOST, RILL_HTTP_PORT, RILL_PB_PORT,
# RILL_ADMIN (see conftest.py). Extra arguments go to pytest.
set -euo pipefail
here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
"$here/setup.sh"
cd "$here"
export PROTOCOL_BUFFERS_PYTHON_IMPLEMENTATION=python
exec "$here/.venv/bin/python" -m pytest -q "$@"
