"""Self-checks of the compatibility environment that need no server.

They prove that the shim makes riak==2.7.0 importable on this Python, that
the pinned protobuf runtime encodes what the client sends, and they pin down
two client behaviours a Rill HTTP implementation has to honour exactly (the
multipart framing of sibling responses).
"""

import collections
import collections.abc

import riak_shim  # noqa: F401  (must precede every import of riak)

import pytest
from riak import RiakClient, RiakObject
from riak.codecs.pbuf import PbufCodec, RIAKC_RW_QUORUM
from riak.pb.riak_kv_pb2 import RpbPutReq
from riak.transports.http.transport import HttpTransport


def test_shim_restores_moved_abcs():
    assert collections.Iterable is collections.abc.Iterable
    assert collections.Mapping is collections.abc.Mapping
    assert collections.Sized is collections.abc.Sized


def test_namedtuple_ignores_verbose():
    point = collections.namedtuple("Point", ["x", "y"], verbose=False)
    assert point(1, 2).y == 2


@pytest.mark.parametrize("protocol", ["http", "pbc"])
def test_client_constructs_without_connecting(protocol):
    client = RiakClient(protocol=protocol, host="127.0.0.1",
                        http_port=18098, pb_port=18087)
    assert client.protocol == protocol
    assert (client.nodes[0].http_port, client.nodes[0].pb_port) == \
        (18098, 18087)
    client.close()


def test_pb_put_encoding_roundtrip():
    client = RiakClient(protocol="pbc")
    # RiakObject directly: bucket.new() would fetch the type's props first.
    obj = RiakObject(client, client.bucket_type("t").bucket("b"), "k")
    obj.content_type = "application/json"
    obj.data = {"a": 1}
    obj.usermeta = {"m": "v"}
    codec = PbufCodec(client_timeouts=True, quorum_controls=True,
                      tombstone_vclocks=True, bucket_types=True)
    msg = codec.encode_put(obj, w="quorum", pw=2, return_body=True,
                           if_none_match=True, timeout=1500)
    req = RpbPutReq.FromString(msg.data)
    assert (msg.msg_code, msg.resp_code) == (11, 12)
    assert (req.bucket, req.key, req.type) == (b"b", b"k", b"t")
    assert req.w == RIAKC_RW_QUORUM and req.pw == 2
    assert req.return_body and req.if_none_match and req.timeout == 1500
    assert req.content.value == b'{"a": 1}'
    assert req.content.content_type == b"application/json"
    assert [(p.key, p.value) for p in req.content.usermeta] == [(b"m", b"v")]
    client.close()


def _offline_http_transport():
    """An HttpTransport that has not connected (its constructor would)."""
    return HttpTransport.__new__(HttpTransport)


def _sibling_response(body):
    headers = {"content-type": "multipart/mixed; boundary=B0und",
               "x-riak-vclock": "a85hYGBgzGDKBVIcypz/fgbX/gsA"}
    return 300, headers, body


def _part(value, vtag):
    return ("Content-Type: text/plain\r\nEtag: %s\r\n\r\n%s" % (vtag, value))


def _parse_siblings(body):
    client = RiakClient(protocol="http")
    obj = client.bucket("b").new("k")
    _offline_http_transport()._parse_body(obj, _sibling_response(body), [300])
    client.close()
    return obj


def test_multipart_siblings_in_riak_framing():
    body = ("\r\n--B0und\r\n" + _part("one", "v1") +
            "\r\n--B0und\r\n" + _part("two", "v2") +
            "\r\n--B0und--\r\n").encode()
    obj = _parse_siblings(body)
    assert [(s.data, s.etag) for s in obj.siblings] == \
        [("one", "v1"), ("two", "v2")]
    assert obj.vclock is not None


def test_multipart_without_leading_crlf_loses_a_sibling():
    # The client splits on CRLF "--boundary" CRLF and drops the text before
    # the first and after the last delimiter: a body that starts directly
    # with "--boundary" silently loses its first sibling. Rill must frame
    # sibling bodies the way Riak does (leading CRLF, trailing CRLF).
    body = ("--B0und\r\n" + _part("one", "v1") +
            "\r\n--B0und\r\n" + _part("two", "v2") +
            "\r\n--B0und--\r\n").encode()
    assert [s.data for s in _parse_siblings(body).siblings] == ["two"]
