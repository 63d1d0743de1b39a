"""Client compatibility: the unmodified Basho Python client against a Rill node.

Each test in the first part runs twice, once per transport (``http`` and
``pbc``), through the client's public API; a few reach into the client's
transport objects where the public API has no entry point (server info,
stats, the resource map, PB ``if_not_modified``). What a test expects is
what Riak KV 3.2 answers to the same request; the client-requirements study
in tests/compat/README.md explains the wire details these tests exercise.
"""

import base64
import re
from contextlib import closing

import riak_shim  # noqa: F401  (must precede every import of riak)

import pytest
from riak import ConflictError, RiakError, RiakObject
from riak.codecs import Msg
from riak.pb.riak_kv_pb2 import RpbPutReq

from conftest import make_client

VERSION_RE = re.compile(r"\d+\.\d+\.\d+")
MIN_VERSION = (2, 1, 0)  # bucket types, data types and preflists switch on here


def version_tuple(text):
    assert VERSION_RE.fullmatch(text), "version %r is not plain X.Y.Z" % text
    return tuple(int(part) for part in text.split("."))


def store_text(bucket, key, text, **kwargs):
    obj = bucket.new(key, data=text, content_type="text/plain")
    return obj.store(**kwargs)


HTTP_REFUSAL_RE = re.compile(r"Expected status \[[\d, ]+\], received (\d+)")


def refusal(excinfo, protocol):
    """What the server answered, from the RiakError the client raised for it.

    Over HTTP the client names only the status (``Expected status [...],
    received N``): returns N. Over PB it raises with RpbErrorResp.errmsg:
    returns that text. Anything else (a socket error, a client bug) fails.
    """
    message = excinfo.value.value
    if protocol == "http":
        match = HTTP_REFUSAL_RE.fullmatch(message)
        assert match, "not an HTTP status refusal: %r" % message
        return int(match.group(1))
    assert isinstance(message, str), message
    return message


def flatten(chunks):
    return [item for chunk in chunks for item in chunk]


def put_if_not_modified(client, bucket, key, text, vclock):
    """Conditional PUT on `vclock`, which riak 2.7.0 has no public API for.

    PB: RpbPutReq.if_not_modified (field 9); Riak refuses with "modified".
    HTTP: header X-Riak-If-Not-Modified (base64 vclock); Riak refuses with
    409 Conflict. Returns (accepted, detail).
    """
    obj = bucket.new(key, data=text, content_type="text/plain")
    obj.vclock = vclock
    with client._transport() as transport:
        if client.protocol == "pbc":
            codec = transport._get_pbuf_codec()
            msg = codec.encode_put(obj, return_body=False)
            req = RpbPutReq.FromString(msg.data)
            req.if_not_modified = True
            try:
                transport._request(
                    Msg(msg.msg_code, req.SerializeToString(), msg.resp_code),
                    codec,
                )
            except RiakError as err:
                return False, err.value
            return True, None
        bucket_type = transport._get_bucket_type(bucket.bucket_type)
        url = transport.object_path(bucket.name, key, bucket_type=bucket_type)
        headers = transport._build_put_headers(obj)
        headers["X-Riak-If-Not-Modified"] = vclock.encode("base64")
        status, _, _ = transport._request("PUT", url, headers, obj.encoded_data)
        return status in (200, 204), status


# --- connectivity and server identity -------------------------------------


def test_ping(client):
    assert client.ping() is True


def test_pb_server_info_version_enables_features(pb_client):
    with pb_client._transport() as transport:
        info = transport.get_server_info()
        assert info["node"], "RpbGetServerInfoResp.node is empty"
        assert version_tuple(info["server_version"]) >= MIN_VERSION
        assert transport.bucket_types()
        assert transport.preflists()
        assert transport.client_timeouts()
        assert transport.quorum_controls()
        assert transport.tombstone_vclocks()


def test_http_resource_map(http_client):
    with http_client._transport() as transport:
        resources = transport.resources
        # The client picks /buckets and /types URLs only when these are named,
        # and preflists need riak_kv_wm_preflist; ping/stats values are used
        # verbatim as request paths.
        for name in ("riak_kv_wm_buckets", "riak_kv_wm_bucket_type",
                     "riak_kv_wm_preflist", "riak_kv_wm_ping",
                     "riak_kv_wm_stats"):
            assert name in resources, "GET / resource map lacks %s" % name
            assert resources[name].startswith(b"/"), (name, resources[name])
        assert resources["riak_kv_wm_ping"] == b"/ping"
        assert resources["riak_kv_wm_stats"] == b"/stats"
        assert transport.bucket_types()
        assert transport.ping_path() == "/ping"


def test_http_stats_version_and_node(http_client):
    with http_client._transport() as transport:
        stats = transport.stats()
        assert isinstance(stats, dict)
        assert version_tuple(stats["riak_kv_version"]) >= MIN_VERSION
        assert transport.preflists()
        assert transport.bucket_stream()
        assert isinstance(stats["nodename"], str) and stats["nodename"]
        assert stats["nodename"] in stats["ring_members"]


def test_node_identity_agrees_across_protocols(http_client, pb_client):
    with http_client._transport() as transport:
        nodename = transport.stats()["nodename"]
    with pb_client._transport() as transport:
        assert transport.get_server_info()["node"] == nodename


# --- store / fetch / delete ------------------------------------------------


def test_store_fetch_json(client, bucket_name):
    bucket = client.bucket(bucket_name)
    value = {"name": "rill", "n": 3, "list": [1, 2.5, None, True],
             "nested": {"ü": "ß ✓"}}
    stored = bucket.new("doc", data=value).store()
    assert stored.vclock is not None

    fetched = bucket.get("doc")
    assert fetched.exists
    assert fetched.content_type == "application/json"
    assert fetched.data == value
    assert fetched.vclock.encode("binary") == stored.vclock.encode("binary")
    assert fetched.etag
    assert fetched.last_modified > 1.5e9


def test_store_fetch_text(client, bucket_name):
    bucket = client.bucket(bucket_name)
    store_text(bucket, "greeting", "hello, wörld")
    fetched = bucket.get("greeting")
    assert fetched.content_type == "text/plain"
    assert fetched.encoded_data == "hello, wörld".encode("utf-8")
    assert fetched.data == "hello, wörld"


def test_charset_roundtrip(client, bucket_name):
    bucket = client.bucket(bucket_name)
    obj = bucket.new("cs", data="ça va", content_type="text/plain")
    obj.charset = "utf-8"
    obj.store()
    fetched = bucket.get("cs")
    assert fetched.content_type == "text/plain"
    assert fetched.charset == "utf-8"
    assert fetched.data == "ça va"


def test_store_fetch_binary(client, bucket_name):
    bucket = client.bucket(bucket_name)
    payload = bytes(range(256)) * 8 + b"\x00\r\n--\xff"
    bucket.new("blob", encoded_data=payload,
               content_type="application/octet-stream").store()
    fetched = bucket.get("blob")
    assert fetched.content_type == "application/octet-stream"
    assert fetched.encoded_data == payload


def test_user_metadata(client, bucket_name):
    bucket = client.bucket(bucket_name)
    obj = bucket.new("meta", data={"x": 1})
    # Lower-case keys: over HTTP the client reads X-Riak-Meta-* header names
    # back lower-cased, so mixed case cannot round-trip on that transport.
    obj.usermeta = {"colour": "blue", "owner": "compat suite"}
    obj.store()
    fetched = bucket.get("meta")
    assert fetched.usermeta == {"colour": "blue", "owner": "compat suite"}
    assert fetched.data == {"x": 1}


def test_fetch_missing_key(client, bucket_name):
    fetched = client.bucket(bucket_name).get("never-written")
    assert fetched.exists is False
    assert fetched.siblings == []
    assert fetched.data is None


def test_server_generated_key(client, bucket_name):
    bucket = client.bucket(bucket_name)
    obj = bucket.new(data={"auto": True}).store()
    assert isinstance(obj.key, str) and obj.key
    assert bucket.get(obj.key).data == {"auto": True}
    assert bucket.get_keys() == [obj.key]


def test_return_body(client, bucket_name):
    bucket = client.bucket(bucket_name)
    obj = bucket.new("rb", data={"v": 1}).store(return_body=True)
    assert len(obj.siblings) == 1
    assert obj.data == {"v": 1}
    assert obj.vclock is not None
    assert obj.etag

    # Without a body the HTTP client insists on 204 (PUT) exactly.
    bucket.new("no-rb", data={"v": 2}).store(return_body=False)
    assert bucket.get("no-rb").data == {"v": 2}


def test_overwrite_with_vclock_keeps_one_value(client, bucket_name):
    bucket = client.bucket(bucket_name)
    obj = store_text(bucket, "k", "v1")
    first_clock = obj.vclock.encode("binary")
    obj.data = "v2"
    obj.store()
    assert obj.vclock.encode("binary") != first_clock
    fetched = bucket.get("k")
    assert len(fetched.siblings) == 1
    assert fetched.data == "v2"


def test_blind_overwrite_without_allow_mult(client, bucket_name):
    bucket = client.bucket(bucket_name)
    store_text(bucket, "k", "first")
    store_text(bucket, "k", "second")
    fetched = bucket.get("k")
    assert len(fetched.siblings) == 1
    assert fetched.data == "second"


def test_delete_then_fetch(client, bucket_name):
    bucket = client.bucket(bucket_name)
    obj = store_text(bucket, "gone", "soon")
    assert bucket.get("gone").exists
    obj.delete()
    fetched = bucket.get("gone")
    assert fetched.exists is False
    assert fetched.data is None


def test_delete_via_bucket_and_missing_key(client, bucket_name):
    bucket = client.bucket(bucket_name)
    store_text(bucket, "x", "1")
    bucket.delete("x")
    assert bucket.get("x").exists is False
    bucket.delete("never-existed")  # deleting a missing key is not an error
    assert bucket.get("never-existed").exists is False


def test_write_after_delete(client, bucket_name):
    bucket = client.bucket(bucket_name)
    store_text(bucket, "phoenix", "old").delete()
    tomb = bucket.get("phoenix")
    assert tomb.exists is False
    reborn = bucket.new("phoenix", data="new", content_type="text/plain")
    reborn.vclock = tomb.vclock  # the tombstone's clock, when one was sent
    reborn.store()
    fetched = bucket.get("phoenix")
    assert len(fetched.siblings) == 1
    assert fetched.data == "new"


def test_pb_head_only_fetch(pb_client, bucket_name):
    # riak 2.7.0 sends head_only only over PB (RpbGetReq.head); HTTP ignores it.
    bucket = pb_client.bucket(bucket_name)
    obj = bucket.new("h", data="body", content_type="text/plain")
    obj.usermeta = {"tag": "t"}
    obj.store()
    head = bucket.get("h", head_only=True)
    assert head.exists
    assert head.content_type == "text/plain"
    assert head.usermeta == {"tag": "t"}
    assert not head.encoded_data
    assert head.vclock is not None


# --- siblings ----------------------------------------------------------------


def test_siblings_with_allow_mult_bucket_prop(client, bucket_name):
    bucket = client.bucket(bucket_name)
    bucket.set_properties({"allow_mult": True})
    assert bucket.get_properties()["allow_mult"] is True

    store_text(bucket, "k", "one")
    store_text(bucket, "k", "two")  # blind write: no vclock
    fetched = bucket.get("k")
    assert sorted(s.data for s in fetched.siblings) == ["one", "two"]
    assert len({s.etag for s in fetched.siblings}) == 2
    with pytest.raises(ConflictError):
        fetched.data

    fetched.siblings = [s for s in fetched.siblings if s.data == "two"]
    fetched.data = "merged"
    fetched.store()  # carries the vclock of the fetch: resolves both
    resolved = bucket.get("k")
    assert len(resolved.siblings) == 1
    assert resolved.data == "merged"


def test_bucket_type_siblings_and_resolver(client, mult_type, bucket_name):
    bucket = client.bucket_type(mult_type).bucket(bucket_name)
    assert bucket.get_properties()["allow_mult"] is True
    for value in ("apple", "pear", "fig"):
        store_text(bucket, "fruit", value)

    raw = bucket.get("fruit")
    assert sorted(s.data for s in raw.siblings) == ["apple", "fig", "pear"]

    def longest(obj):
        obj.siblings = [max(obj.siblings, key=lambda s: len(s.data))]

    bucket.resolver = longest
    resolved = bucket.get("fruit")
    assert len(resolved.siblings) == 1
    assert resolved.data == "apple"
    resolved.data = "apple+pear+fig"
    resolved.store()

    bucket.resolver = None
    final = bucket.get("fruit")
    assert len(final.siblings) == 1
    assert final.data == "apple+pear+fig"


def test_bucket_type_missing_key_and_isolation(client, mult_type, bucket_name):
    typed = client.bucket_type(mult_type).bucket(bucket_name)
    plain = client.bucket(bucket_name)
    assert typed.get("k").exists is False
    store_text(typed, "k", "typed")
    store_text(plain, "k", "plain")
    assert typed.get("k").data == "typed"
    assert plain.get("k").data == "plain"


# --- conditional puts ----------------------------------------------------------


def test_if_none_match(client, bucket_name, protocol):
    bucket = client.bucket(bucket_name)
    store_text(bucket, "cond", "first", if_none_match=True)  # absent: accepted
    assert bucket.get("cond").data == "first"
    with pytest.raises(RiakError) as refused:
        store_text(bucket, "cond", "second", if_none_match=True)
    # Riak: 412 Precondition Failed over HTTP, "match_found" over PB.
    assert refusal(refused, protocol) == (
        412 if protocol == "http" else "match_found")
    assert bucket.get("cond").data == "first"


def test_if_not_modified(client, bucket_name, protocol):
    bucket = client.bucket(bucket_name)
    obj = store_text(bucket, "inm", "v1")
    stale = obj.vclock
    obj.data = "v2"
    obj.store()
    current = obj.vclock

    accepted, detail = put_if_not_modified(client, bucket, "inm", "v3", stale)
    assert not accepted
    assert detail == (409 if protocol == "http" else "modified")
    assert bucket.get("inm").data == "v2"

    accepted, detail = put_if_not_modified(client, bucket, "inm", "v3", current)
    assert accepted, detail
    assert bucket.get("inm").data == "v3"


# --- quorum parameters ---------------------------------------------------------


def test_quorum_parameters_accepted(client, bucket_name):
    bucket = client.bucket(bucket_name)
    obj = bucket.new("q", data="v", content_type="text/plain")
    obj.store(w=3, dw="quorum", pw=1, timeout=5000)
    assert bucket.get("q", r="all", pr=1, timeout=5000).data == "v"
    assert bucket.get("q", r=1, pr="one").data == "v"

    # RiakObject.reload drops basic_quorum/notfound_ok; client.get sends them.
    direct = RiakObject(client, bucket, "q")
    client.get(direct, r="quorum", pr=1, basic_quorum=True,
               notfound_ok=False, timeout=5000)
    assert direct.data == "v"

    missing = RiakObject(client, bucket, "absent")
    client.get(missing, basic_quorum=True, notfound_ok=False)
    assert missing.exists is False

    client.delete(obj, rw="quorum", r=1, w="all", dw=1, pr=1, pw=1,
                  timeout=5000)
    assert bucket.get("q").exists is False


def test_quorum_above_n_val_rejected(client, bucket_name, protocol):
    bucket = client.bucket(bucket_name)
    # A 400 over HTTP; over PB the message names the parameter and the n_val.
    with pytest.raises(RiakError) as refused:
        store_text(bucket, "big", "v", w=10)
    assert refusal(refused, protocol) == (
        400 if protocol == "http"
        else "w value 10 is unsatisfiable with the bucket's n_val of 3")
    assert bucket.get("big").exists is False
    store_text(bucket, "ok", "v")
    with pytest.raises(RiakError) as refused:
        bucket.get("ok", r=10)
    assert refusal(refused, protocol) == (
        400 if protocol == "http"
        else "r value 10 is unsatisfiable with the bucket's n_val of 3")


# --- bucket properties ---------------------------------------------------------


DEFAULT_PROPS = {
    "n_val": 3, "allow_mult": False, "last_write_wins": False,
    "notfound_ok": True, "basic_quorum": False,
    "r": "quorum", "w": "quorum", "dw": "quorum", "rw": "quorum",
    "pr": 0, "pw": 0,
}


def assert_props(props, expected):
    got = {name: props.get(name) for name in expected}
    assert got == expected


def test_bucket_props_get_set_reset(client, bucket_name):
    bucket = client.bucket(bucket_name)
    assert_props(bucket.get_properties(), DEFAULT_PROPS)

    bucket.set_properties({"n_val": 2, "allow_mult": True, "r": 1,
                           "notfound_ok": False, "dw": "all"})
    changed = dict(DEFAULT_PROPS, n_val=2, allow_mult=True, r=1,
                   notfound_ok=False, dw="all")
    assert_props(bucket.get_properties(), changed)
    assert bucket.get_property("n_val") == 2

    assert bucket.clear_properties() is True
    assert_props(bucket.get_properties(), DEFAULT_PROPS)


def test_bucket_type_props(client, bucket_type_factory, bucket_name):
    btype = client.bucket_type(
        bucket_type_factory({"n_val": 2, "allow_mult": True}))
    assert_props(btype.get_properties(), {"n_val": 2, "allow_mult": True})
    assert btype.datatype is None

    btype.set_properties({"r": 1, "notfound_ok": False})
    assert_props(btype.get_properties(),
                 {"n_val": 2, "allow_mult": True, "r": 1,
                  "notfound_ok": False})

    bucket = btype.bucket(bucket_name)
    assert_props(bucket.get_properties(),
                 {"n_val": 2, "allow_mult": True, "r": 1,
                  "notfound_ok": False})
    bucket.set_properties({"basic_quorum": True})
    assert bucket.get_property("basic_quorum") is True
    assert btype.get_properties()["basic_quorum"] is False


# --- listing -------------------------------------------------------------------


def test_list_keys(client, bucket_name):
    bucket = client.bucket(bucket_name)
    keys = sorted("key-%02d" % i for i in range(25))
    for key in keys:
        store_text(bucket, key, key, return_body=False)

    assert sorted(bucket.get_keys()) == keys
    with closing(client.stream_keys(bucket)) as stream:
        streamed = flatten(stream)
    assert sorted(streamed) == keys  # also: no key twice


def test_list_keys_empty_bucket(client, bucket_name):
    bucket = client.bucket(bucket_name)
    assert bucket.get_keys() == []
    with closing(client.stream_keys(bucket)) as stream:
        assert flatten(stream) == []


def test_list_buckets(client, bucket_name):
    names = {bucket_name + "_a", bucket_name + "_b"}
    for name in names:
        store_text(client.bucket(name), "k", "v")

    listed = [b.name for b in client.get_buckets()]
    assert names <= set(listed)
    assert len(listed) == len(set(listed))
    with closing(client.stream_buckets()) as stream:
        streamed = [b.name for b in flatten(stream)]
    assert names <= set(streamed)
    assert len(streamed) == len(set(streamed))


def test_bucket_type_listing(client, bucket_type_factory, bucket_name):
    btype = client.bucket_type(bucket_type_factory({"allow_mult": True}))
    names = sorted([bucket_name + "_x", bucket_name + "_y"])
    for name in names:
        for key in ("a", "b"):
            store_text(btype.bucket(name), key, key)

    assert sorted(b.name for b in btype.get_buckets()) == names
    with closing(btype.stream_buckets()) as stream:
        assert sorted(b.name for b in flatten(stream)) == names
    assert sorted(btype.bucket(names[0]).get_keys()) == ["a", "b"]
    with closing(client.stream_keys(btype.bucket(names[1]))) as stream:
        assert sorted(flatten(stream)) == ["a", "b"]

    default_names = {b.name for b in client.get_buckets()}
    assert not default_names & set(names)


# --- preflists ----------------------------------------------------------------


def assert_preflist(preflist, n_val):
    assert len(preflist) == n_val
    for entry in preflist:
        assert set(entry) == {"partition", "node", "primary"}
        assert isinstance(entry["partition"], int)
        assert 0 <= entry["partition"] < 1024  # a partition number, not a hash
        assert isinstance(entry["node"], str) and entry["node"]
        assert entry["primary"] is True
    partitions = [entry["partition"] for entry in preflist]
    # Consecutive partitions clockwise from the key (wrapping to 0).
    for prev, nxt in zip(partitions, partitions[1:]):
        assert nxt == prev + 1 or nxt == 0, partitions


def test_preflist(client, bucket_name):
    bucket = client.bucket(bucket_name)
    preflist = bucket.get_preflist("some-key")
    assert_preflist(preflist, 3)
    assert bucket.get_preflist("some-key") == preflist
    others = {tuple(e["partition"] for e in bucket.get_preflist("k%d" % i))
              for i in range(20)}
    assert len(others) > 1, "every key maps to the same preflist"

    narrow = client.bucket(bucket_name + "_n1")
    narrow.set_properties({"n_val": 1})
    assert_preflist(narrow.get_preflist("some-key"), 1)


def test_preflist_nodes_are_ring_members(http_client, pb_client, bucket_name):
    with http_client._transport() as transport:
        members = set(transport.stats()["ring_members"])
    for c in (http_client, pb_client):
        preflist = c.bucket(bucket_name).get_preflist("k")
        assert {entry["node"] for entry in preflist} <= members


def test_bucket_type_preflist(client, bucket_type_factory, bucket_name):
    btype = client.bucket_type(bucket_type_factory({"n_val": 2}))
    assert_preflist(btype.bucket(bucket_name).get_preflist("k"), 2)


# --- across transports --------------------------------------------------------


SPECIAL_KEYS = ["with space", "with/slash", "plus+sign", "ünïcödé-ключ",
                "percent%41", "q?uery&amp=1"]


def test_cross_protocol_roundtrip(http_client, pb_client, bucket_name):
    name = bucket_name + " sp/ü"
    via_http = http_client.bucket(name)
    via_pb = pb_client.bucket(name)

    for i, key in enumerate(SPECIAL_KEYS):
        writer, reader = (via_http, via_pb) if i % 2 else (via_pb, via_http)
        obj = writer.new(key, data={"key": key, "i": i})
        obj.usermeta = {"writer": "w%d" % i}
        obj.store()
        fetched = reader.get(key)
        assert fetched.data == {"key": key, "i": i}, key
        assert fetched.usermeta == {"writer": "w%d" % i}, key
        assert fetched.content_type == "application/json"
        assert fetched.vclock.encode("binary") == obj.vclock.encode("binary")

    assert sorted(via_http.get_keys()) == sorted(SPECIAL_KEYS)
    assert sorted(via_pb.get_keys()) == sorted(SPECIAL_KEYS)
    assert name in {b.name for b in http_client.get_buckets()}
    assert name in {b.name for b in pb_client.get_buckets()}


def test_http_vclock_header_is_base64_of_pb_vclock(http_client, pb_client,
                                                   bucket_name):
    obj = store_text(pb_client.bucket(bucket_name), "vc", "v")
    with http_client._transport() as transport:
        url = transport.object_path(bucket_name, "vc")
        status, headers, _ = transport._request("GET", url)
    assert status == 200
    assert base64.b64decode(headers["x-riak-vclock"]) == \
        obj.vclock.encode("binary")


def test_fresh_client_per_protocol_sees_same_data(protocol, node, bucket_name):
    other = "pbc" if protocol == "http" else "http"
    writer, reader = make_client(protocol), make_client(other)
    try:
        store_text(writer.bucket(bucket_name), "k", "shared")
        assert reader.bucket(bucket_name).get("k").data == "shared"
    finally:
        writer.close()
        reader.close()
