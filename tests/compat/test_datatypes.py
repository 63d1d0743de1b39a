"""Riak data types through the unmodified Basho Python client, over both
transports: counters, sets (with the context a fetch returns for removes),
maps of registers, counters, flags, sets and nested maps, and HyperLogLogs,
in bucket types created with a ``datatype`` property.
"""

import riak_shim  # noqa: F401  (must precede every import of riak)

import pytest
from riak.datatypes import Counter, Hll, Map, Set


@pytest.fixture(scope="session")
def dt_types(bucket_type_factory):
    return {
        dt: bucket_type_factory({"datatype": dt})
        for dt in ("counter", "set", "map", "hll")
    }


def dt_bucket(client, dt_types, dt, bucket_name):
    return client.bucket_type(dt_types[dt]).bucket(bucket_name)


def test_counter(client, dt_types, bucket_name):
    bucket = dt_bucket(client, dt_types, "counter", bucket_name)
    c = Counter(bucket, "c")
    c.increment(5)
    c.store()
    c.decrement(2)
    c.store()
    fetched = bucket.get("c")
    assert isinstance(fetched, Counter)
    assert fetched.value == 3


def test_set_add_and_remove_with_context(client, dt_types, bucket_name):
    bucket = dt_bucket(client, dt_types, "set", bucket_name)
    s = Set(bucket, "s")
    for m in ("a", "b", "c"):
        s.add(m)
    s.store()
    s = bucket.get("s")
    assert s.value == frozenset({"a", "b", "c"})
    assert s.context, "a fetched set carries a context"
    s.discard("a")
    s.add("d")
    s.store()
    assert bucket.get("s").value == frozenset({"b", "c", "d"})


def test_set_missing_key_is_empty(client, dt_types, bucket_name):
    bucket = dt_bucket(client, dt_types, "set", bucket_name)
    s = bucket.get("nothing-here")
    assert s.value == frozenset()


def test_map_fields_nested_maps_and_field_removal(client, dt_types, bucket_name):
    bucket = dt_bucket(client, dt_types, "map", bucket_name)
    m = Map(bucket, "m")
    m.registers["name"].assign("Ann")
    m.counters["visits"].increment(3)
    m.flags["admin"].enable()
    m.sets["tags"].add("x")
    m.maps["address"].registers["city"].assign("Oslo")
    m.store()
    m = bucket.get("m")
    assert m.registers["name"].value == "Ann"
    assert m.counters["visits"].value == 3
    assert m.flags["admin"].value is True
    assert m.sets["tags"].value == frozenset({"x"})
    assert m.maps["address"].registers["city"].value == "Oslo"
    del m.sets["tags"]
    m.counters["visits"].increment(1)
    m.store()
    m = bucket.get("m")
    assert "tags" not in m.sets
    assert m.counters["visits"].value == 4


def test_hll_estimates_distinct_members(client, dt_types, bucket_name):
    bucket = dt_bucket(client, dt_types, "hll", bucket_name)
    h = Hll(bucket, "h")
    for m in ("a", "b", "a", "c"):
        h.add(m)
    h.store()
    assert bucket.get("h").value == 3


def test_legacy_counters_on_an_allow_mult_bucket(client, bucket_name):
    bucket = client.bucket(bucket_name)
    bucket.set_property("allow_mult", True)
    assert bucket.get_counter("hits") is None
    bucket.update_counter("hits", 5)
    bucket.update_counter("hits", -2)
    assert bucket.get_counter("hits") == 3
