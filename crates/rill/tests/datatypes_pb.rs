//! Riak data types over raw Protocol Buffers frames (DtFetchReq/DtUpdateReq) against the real
//! binary: every type and op, contexts, Riak's errors, concurrent clients merged without
//! siblings, deletes, and `kill -9` with a restart.

mod common;

use bytes::Bytes;
use common::{PbClient, TestNode};
use rill_api::pb::MessageCode;
use rill_api::pb::Request;
use rill_api::pb::riak::map_field::MapFieldType;
use rill_api::pb::riak::map_update::FlagOp;
use rill_api::pb::riak::*;

fn b(s: &str) -> Bytes {
    Bytes::copy_from_slice(s.as_bytes())
}

fn start() -> TestNode {
    let node = TestNode::start(&[]);
    for (name, dt) in [
        ("counters", "counter"),
        ("sets", "set"),
        ("maps", "map"),
        ("hlls", "hll"),
        ("gsets", "gset"),
    ] {
        node.create_bucket_type(name, &format!(r#"{{"datatype":"{dt}"}}"#));
    }
    node
}

fn fetch_req(btype: &str, key: &str) -> DtFetchReq {
    DtFetchReq {
        bucket: b("b"),
        key: b(key),
        r#type: b(btype),
        ..Default::default()
    }
}

fn fetch(c: &mut PbClient, btype: &str, key: &str) -> DtFetchResp {
    c.call(
        &Request::DtFetch(fetch_req(btype, key)),
        MessageCode::DtFetchResp,
    )
}

fn update_req(btype: &str, key: &str, op: DtOp, context: Option<Bytes>) -> DtUpdateReq {
    DtUpdateReq {
        bucket: b("b"),
        key: Some(b(key)),
        r#type: b(btype),
        context,
        op,
        return_body: Some(true),
        ..Default::default()
    }
}

fn update(c: &mut PbClient, req: DtUpdateReq) -> DtUpdateResp {
    c.call(&Request::DtUpdate(req), MessageCode::DtUpdateResp)
}

fn set_op(adds: &[&str], removes: &[&str]) -> SetOp {
    SetOp {
        adds: adds.iter().map(|s| b(s)).collect(),
        removes: removes.iter().map(|s| b(s)).collect(),
    }
}

fn texts(v: &[Bytes]) -> Vec<&str> {
    v.iter().map(|m| std::str::from_utf8(m).unwrap()).collect()
}

fn field(name: &str, t: MapFieldType) -> MapField {
    MapField {
        name: b(name),
        r#type: t as i32,
    }
}

#[test]
fn every_type_and_op_with_contexts_and_return_bodies() {
    let node = start();
    let mut c = node.pb();

    // Counters: increments (absent amount = 1), decrements, fetch.
    let inc = |n: Option<i64>| DtOp {
        counter_op: Some(CounterOp { increment: n }),
        ..Default::default()
    };
    let r = update(&mut c, update_req("counters", "c", inc(Some(5)), None));
    assert_eq!(r.counter_value, Some(5));
    assert_eq!(r.context, None, "counters have no context");
    update(&mut c, update_req("counters", "c", inc(None), None));
    update(&mut c, update_req("counters", "c", inc(Some(-2)), None));
    let f = fetch(&mut c, "counters", "c");
    assert_eq!(f.r#type, dt_fetch_resp::DataType::Counter as i32);
    assert_eq!(f.value.unwrap().counter_value, Some(4));

    // Sets: adds, a remove with the fetched context, a remove without one of an absent member.
    let set = |adds: &[&str], removes: &[&str]| DtOp {
        set_op: Some(set_op(adds, removes)),
        ..Default::default()
    };
    let r = update(
        &mut c,
        update_req("sets", "s", set(&["a", "b", "c"], &[]), None),
    );
    assert_eq!(texts(&r.set_value), ["a", "b", "c"]);
    let f = fetch(&mut c, "sets", "s");
    let ctx = f.context.clone().expect("sets have a context");
    let r = update(
        &mut c,
        update_req("sets", "s", set(&["d"], &["a"]), Some(ctx)),
    );
    assert_eq!(texts(&r.set_value), ["b", "c", "d"]);
    let err = c.call_err(&Request::DtUpdate(update_req(
        "sets",
        "s",
        set(&[], &["zz"]),
        None,
    )));
    assert_eq!(err, "{precondition,{not_present,<<\"zz\">>}}");
    let err = c.call_err(&Request::DtUpdate(update_req(
        "sets",
        "s",
        set(&[], &["b"]),
        Some(b("not a context")),
    )));
    assert!(err.contains("context"), "{err}");
    // include_context = false and return_body = false shape the response.
    let mut quiet = update_req("sets", "s", set(&["e"], &[]), None);
    quiet.return_body = Some(false);
    let r = update(&mut c, quiet);
    assert!(r.set_value.is_empty() && r.context.is_none() && r.key.is_none());
    let mut no_ctx = fetch_req("sets", "s");
    no_ctx.include_context = Some(false);
    let f: DtFetchResp = c.call(&Request::DtFetch(no_ctx), MessageCode::DtFetchResp);
    assert_eq!(f.context, None);
    assert_eq!(texts(&f.value.unwrap().set_value), ["b", "c", "d", "e"]);

    // Maps: every field type, nested maps, field removes.
    let upd = |f: MapField| MapUpdate {
        field: f,
        ..Default::default()
    };
    let map = |removes: Vec<MapField>, updates: Vec<MapUpdate>| DtOp {
        map_op: Some(MapOp { removes, updates }),
        ..Default::default()
    };
    let updates = vec![
        MapUpdate {
            register_op: Some(b("Ann")),
            ..upd(field("name", MapFieldType::Register))
        },
        MapUpdate {
            counter_op: Some(CounterOp { increment: Some(3) }),
            ..upd(field("visits", MapFieldType::Counter))
        },
        MapUpdate {
            flag_op: Some(FlagOp::Enable as i32),
            ..upd(field("admin", MapFieldType::Flag))
        },
        MapUpdate {
            set_op: Some(set_op(&["x", "y"], &[])),
            ..upd(field("tags", MapFieldType::Set))
        },
        MapUpdate {
            map_op: Some(MapOp {
                removes: vec![],
                updates: vec![MapUpdate {
                    register_op: Some(b("Oslo")),
                    ..upd(field("city", MapFieldType::Register))
                }],
            }),
            ..upd(field("address", MapFieldType::Map))
        },
    ];
    let r = update(&mut c, update_req("maps", "m", map(vec![], updates), None));
    assert_eq!(r.map_value.len(), 5);
    let f = fetch(&mut c, "maps", "m");
    let v = f.value.unwrap();
    let entry = |name: &str| v.map_value.iter().find(|e| e.field.name == name).unwrap();
    assert_eq!(entry("name").register_value, Some(b("Ann")));
    assert_eq!(entry("visits").counter_value, Some(3));
    assert_eq!(entry("admin").flag_value, Some(true));
    assert_eq!(texts(&entry("tags").set_value), ["x", "y"]);
    let address = entry("address");
    assert_eq!(address.field.r#type, MapFieldType::Map as i32);
    assert_eq!(address.map_value[0].register_value, Some(b("Oslo")));
    let r = update(
        &mut c,
        update_req(
            "maps",
            "m",
            map(vec![field("tags", MapFieldType::Set)], vec![]),
            f.context,
        ),
    );
    assert_eq!(r.map_value.len(), 4, "the removed field is gone");
    let err = c.call_err(&Request::DtUpdate(update_req(
        "maps",
        "m",
        map(vec![field("nope", MapFieldType::Flag)], vec![]),
        None,
    )));
    assert_eq!(
        err,
        "{precondition,{not_present,{<<\"nope\">>,riak_dt_od_flag}}}"
    );

    // HyperLogLogs and grow-only sets.
    let hll = DtOp {
        hll_op: Some(HllOp {
            adds: vec![b("a"), b("b"), b("a"), b("c")],
        }),
        ..Default::default()
    };
    assert_eq!(
        update(&mut c, update_req("hlls", "h", hll, None)).hll_value,
        Some(3)
    );
    assert_eq!(fetch(&mut c, "hlls", "h").value.unwrap().hll_value, Some(3));
    let gset = DtOp {
        gset_op: Some(GSetOp {
            adds: vec![b("q"), b("p")],
        }),
        ..Default::default()
    };
    update(&mut c, update_req("gsets", "g", gset, None));
    assert_eq!(
        texts(&fetch(&mut c, "gsets", "g").value.unwrap().gset_value),
        ["p", "q"]
    );

    // A server-chosen key comes back in the response.
    let mut keyless = update_req("counters", "", inc(Some(1)), None);
    keyless.key = None;
    let r = update(&mut c, keyless);
    let key = r.key.expect("generated key");
    assert_eq!(
        fetch(&mut c, "counters", std::str::from_utf8(&key).unwrap())
            .value
            .unwrap()
            .counter_value,
        Some(1)
    );

    // Not found: the type, no value, no context.
    let f = fetch(&mut c, "sets", "missing");
    assert_eq!(f.r#type, dt_fetch_resp::DataType::Set as i32);
    assert!(f.value.is_none() && f.context.is_none());
    c.ping();
}

#[test]
fn riaks_errors_for_mismatched_types_plain_puts_and_prop_changes() {
    let node = start();
    let mut c = node.pb();
    let counter = DtOp {
        counter_op: Some(CounterOp { increment: Some(1) }),
        ..Default::default()
    };
    let err = c.call_err(&Request::DtUpdate(update_req(
        "sets",
        "k",
        counter.clone(),
        None,
    )));
    assert_eq!(
        err,
        "Operation type is `counter` but  bucket type is `set`."
    );
    node.create_bucket_type("plain", "{}");
    let err = c.call_err(&Request::DtUpdate(update_req("plain", "k", counter, None)));
    assert_eq!(err, "Bucket datatype `undefined` is not a supported type");
    let err = c.call_err(&Request::DtFetch(fetch_req("plain", "k")));
    assert_eq!(err, "`undefined` is not a supported type");
    let err = c.call_err(&Request::DtFetch(fetch_req("nosuchtype", "k")));
    assert!(err.contains("nosuchtype"), "{err}");

    let err = c.call_err(&Request::Put(RpbPutReq {
        bucket: b("b"),
        key: Some(b("k")),
        r#type: Some(b("sets")),
        content: RpbContent {
            value: b("plain value"),
            ..Default::default()
        },
        ..Default::default()
    }));
    assert!(err.contains("data type"), "{err}");

    let err = c.call_err(&Request::SetBucketType(RpbSetBucketTypeReq {
        r#type: b("sets"),
        props: RpbBucketProps {
            datatype: Some(b("map")),
            ..Default::default()
        },
    }));
    assert!(err.contains("datatype"), "{err}");
    c.ping();
}

#[test]
fn concurrent_clients_merge_without_siblings_and_deletes_reset_the_type() {
    let node = start();
    let clients = 4;
    let per_client = 50;
    let handles: Vec<_> = (0..clients)
        .map(|t| {
            let mut c = node.pb();
            std::thread::spawn(move || {
                for i in 0..per_client {
                    let m = format!("c{t}-{i}");
                    let op = DtOp {
                        set_op: Some(set_op(&[&m], &[])),
                        ..Default::default()
                    };
                    let mut req = update_req("sets", "shared", op, None);
                    req.return_body = Some(false);
                    update(&mut c, req);
                    let inc = DtOp {
                        counter_op: Some(CounterOp { increment: Some(1) }),
                        ..Default::default()
                    };
                    update(&mut c, update_req("counters", "shared", inc, None));
                }
            })
        })
        .collect();
    for h in handles {
        h.join().unwrap();
    }
    let mut c = node.pb();
    let f = fetch(&mut c, "sets", "shared");
    assert_eq!(f.value.unwrap().set_value.len(), clients * per_client);
    assert_eq!(
        fetch(&mut c, "counters", "shared")
            .value
            .unwrap()
            .counter_value,
        Some((clients * per_client) as i64)
    );
    // The KV view of the key: one content, Riak's content type.
    let got: RpbGetResp = c.call(
        &Request::Get(RpbGetReq {
            bucket: b("b"),
            key: b("shared"),
            r#type: Some(b("sets")),
            ..Default::default()
        }),
        MessageCode::GetResp,
    );
    assert_eq!(got.content.len(), 1, "no siblings");
    assert_eq!(got.content[0].content_type, Some(b("application/riak_set")));

    // A delete removes the set; adds afterwards start from empty.
    c.send(&Request::Del(RpbDelReq {
        bucket: b("b"),
        key: b("shared"),
        r#type: Some(b("sets")),
        ..Default::default()
    }));
    assert_eq!(c.recv().0, MessageCode::DelResp.as_u8());
    assert!(fetch(&mut c, "sets", "shared").value.is_none());
    let op = DtOp {
        set_op: Some(set_op(&["fresh"], &[])),
        ..Default::default()
    };
    let r = update(&mut c, update_req("sets", "shared", op, None));
    assert_eq!(texts(&r.set_value), ["fresh"]);
}

#[test]
fn data_types_survive_kill_9_and_restart() {
    let dir = tempfile::tempdir().unwrap();
    let mut node = TestNode::start_in(dir.path(), &[]);
    node.create_bucket_type("sets", r#"{"datatype":"set"}"#);
    node.create_bucket_type("counters", r#"{"datatype":"counter"}"#);
    let mut c = node.pb();
    for i in 0..100 {
        let m = format!("m{i}");
        let op = DtOp {
            set_op: Some(set_op(&[&m], &[])),
            ..Default::default()
        };
        update(&mut c, update_req("sets", "s", op, None));
        let inc = DtOp {
            counter_op: Some(CounterOp { increment: Some(2) }),
            ..Default::default()
        };
        update(&mut c, update_req("counters", "c", inc, None));
    }
    node.kill9();
    let node = TestNode::start_in(dir.path(), &[]);
    let mut c = node.pb();
    assert_eq!(
        fetch(&mut c, "sets", "s").value.unwrap().set_value.len(),
        100
    );
    assert_eq!(
        fetch(&mut c, "counters", "c").value.unwrap().counter_value,
        Some(200)
    );
    // Updates go on from the recovered state.
    let f = fetch(&mut c, "sets", "s");
    let op = DtOp {
        set_op: Some(set_op(&[], &["m0"])),
        ..Default::default()
    };
    let r = update(&mut c, update_req("sets", "s", op, f.context));
    assert_eq!(r.set_value.len(), 99);
}

#[test]
fn legacy_counters_live_in_allow_mult_buckets() {
    let node = TestNode::start(&[]);
    let mut c = node.pb();
    let inc = |amount: i64, returnvalue: bool| {
        Request::CounterUpdate(RpbCounterUpdateReq {
            bucket: b("legacy"),
            key: b("hits"),
            amount,
            returnvalue: Some(returnvalue),
            ..Default::default()
        })
    };
    let get = Request::CounterGet(RpbCounterGetReq {
        bucket: b("legacy"),
        key: b("hits"),
        ..Default::default()
    });
    let err = c.call_err(&inc(1, false));
    assert_eq!(err, "Counters require bucket property 'allow_mult=true'");
    c.send(&Request::SetBucket(RpbSetBucketReq {
        bucket: b("legacy"),
        props: RpbBucketProps {
            allow_mult: Some(true),
            ..Default::default()
        },
        r#type: None,
    }));
    assert_eq!(c.recv().0, MessageCode::SetBucketResp.as_u8());
    let missing: RpbCounterGetResp = c.call(&get, MessageCode::CounterGetResp);
    assert_eq!(missing.value, None);
    let quiet: RpbCounterUpdateResp = c.call(&inc(5, false), MessageCode::CounterUpdateResp);
    assert_eq!(quiet.value, None);
    let r: RpbCounterUpdateResp = c.call(&inc(-2, true), MessageCode::CounterUpdateResp);
    assert_eq!(r.value, Some(3));
    let got: RpbCounterGetResp = c.call(&get, MessageCode::CounterGetResp);
    assert_eq!(got.value, Some(3));
    // The same counter over HTTP.
    let h = common::http();
    let resp = h
        .post(&node.url("/buckets/legacy/counters/hits?returnvalue=true"))
        .send("4")
        .unwrap();
    assert_eq!(resp.status().as_u16(), 200);
    assert_eq!(resp.into_body().read_to_string().unwrap(), "7");
    let resp = h
        .get(&node.url("/buckets/legacy/counters/hits"))
        .call()
        .unwrap();
    assert_eq!(resp.into_body().read_to_string().unwrap(), "7");
    let resp = h
        .get(&node.url("/buckets/legacy/counters/nope"))
        .call()
        .unwrap();
    assert_eq!(resp.status().as_u16(), 404);
    let resp = h
        .post(&node.url("/buckets/legacy/counters/hits"))
        .send("x")
        .unwrap();
    assert_eq!(resp.status().as_u16(), 400);
}
