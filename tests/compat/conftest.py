"""Fixtures for the Basho Python client (riak==2.7.0) compatibility suite.

The suite drives a running Rill node through the unmodified client over both
of its transports. Where the node is comes from the environment:

    RILL_HOST       (default 127.0.0.1)
    RILL_HTTP_PORT  (default 8098)
    RILL_PB_PORT    (default 8087)
    RILL_ADMIN      command prefix for bucket-type administration, e.g.
                    "rill admin --node 127.0.0.1:8098"; the suite appends
                    "bucket-type create NAME JSON" / "bucket-type activate NAME".
                    Unset: the tests that need a bucket type are skipped.

Every name the suite writes (buckets, bucket types) carries a per-run id, so a
rerun against the same node never sees a previous run's data.
"""

import itertools
import json
import os
import shlex
import socket
import subprocess
import time
import uuid

import riak_shim  # noqa: F401  (must precede every import of riak)

import pytest
from riak import RiakClient

HOST = os.environ.get("RILL_HOST", "127.0.0.1")
HTTP_PORT = int(os.environ.get("RILL_HTTP_PORT", "8098"))
PB_PORT = int(os.environ.get("RILL_PB_PORT", "8087"))
ADMIN = os.environ.get("RILL_ADMIN", "").strip()

PROTOCOLS = ["http", "pbc"]

RUN_ID = time.strftime("%Y%m%d%H%M%S") + "_" + uuid.uuid4().hex[:6]

# Activation may legitimately lag creation (Riak refuses to activate a type
# until the cluster metadata has it everywhere), so retry a bounded number
# of times before declaring the admin command broken.
ACTIVATE_ATTEMPTS = 40
ACTIVATE_PAUSE_S = 0.25


def _port_open(port):
    try:
        with socket.create_connection((HOST, port), timeout=3):
            return True
    except OSError:
        return False


@pytest.fixture(scope="session")
def node():
    """Fails every server test at once, clearly, when no node listens."""
    closed = [p for p in (HTTP_PORT, PB_PORT) if not _port_open(p)]
    if closed:
        pytest.fail(
            "no Rill node listening on %s port(s) %s (set RILL_HOST, "
            "RILL_HTTP_PORT, RILL_PB_PORT)" % (HOST, closed),
            pytrace=False,
        )
    return HOST


def make_client(protocol):
    return RiakClient(
        protocol=protocol, host=HOST, http_port=HTTP_PORT, pb_port=PB_PORT
    )


@pytest.fixture(params=PROTOCOLS)
def protocol(request):
    return request.param


@pytest.fixture
def client(node, protocol):
    """A client whose preferred transport is the test's protocol."""
    c = make_client(protocol)
    yield c
    c.close()


@pytest.fixture
def http_client(node):
    c = make_client("http")
    yield c
    c.close()


@pytest.fixture
def pb_client(node):
    c = make_client("pbc")
    yield c
    c.close()


@pytest.fixture
def bucket_name(request):
    """A bucket name unique to this run, test and protocol."""
    callspec = getattr(request.node, "callspec", None)
    proto = callspec.params.get("protocol", "x") if callspec else "x"
    return "compat_%s_%s_%s" % (RUN_ID, request.node.originalname, proto)


def _admin(*args):
    cmd = shlex.split(ADMIN) + list(args)
    return subprocess.run(cmd, capture_output=True, text=True, timeout=120)


def _create_bucket_type(name, props):
    created = _admin("bucket-type", "create", name, json.dumps({"props": props}))
    if created.returncode != 0:
        pytest.fail(
            "RILL_ADMIN bucket-type create %s failed (%d): %s%s"
            % (name, created.returncode, created.stdout, created.stderr),
            pytrace=False,
        )
    for _ in range(ACTIVATE_ATTEMPTS):
        activated = _admin("bucket-type", "activate", name)
        if activated.returncode == 0:
            return name
        time.sleep(ACTIVATE_PAUSE_S)
    pytest.fail(
        "RILL_ADMIN bucket-type activate %s kept failing (%d): %s%s"
        % (name, activated.returncode, activated.stdout, activated.stderr),
        pytrace=False,
    )


@pytest.fixture(scope="session")
def bucket_type_factory(node):
    """Creates and activates a fresh bucket type: factory(props) -> name."""
    if not ADMIN:
        pytest.skip(
            "RILL_ADMIN is not set: bucket types cannot be created, so the "
            "bucket-type tests are skipped (e.g. RILL_ADMIN='rill admin "
            "--node 127.0.0.1:8098')"
        )
    counter = itertools.count()

    def factory(props):
        name = "compat_%s_t%d" % (RUN_ID, next(counter))
        return _create_bucket_type(name, props)

    return factory


@pytest.fixture(scope="session")
def mult_type(bucket_type_factory):
    """One allow_mult bucket type shared by the tests that only write to it."""
    return bucket_type_factory({"allow_mult": True})
