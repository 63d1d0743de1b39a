//! The Protocol Buffers API of a real node, over raw frames: every message the server serves
//! with the fields that matter, siblings, conditional writes, quorum values, listing streams,
//! bucket and bucket-type properties, preference lists, and bad input (after each of which the
//! same connection must still answer a ping).

mod common;

use std::net::Shutdown;
use std::time::{SystemTime, UNIX_EPOCH};

use bytes::{BufMut, Bytes, BytesMut};
use common::{PbClient, TestNode, b, get_req, http, put_req};
use prost::Message;
use rill_api::pb::MessageCode;
use rill_api::pb::Request;
use rill_api::pb::riak::*;

/// Riak's symbolic quorum values on the PB wire.
const ONE: u32 = 4_294_967_294;
const QUORUM: u32 = 4_294_967_293;
const ALL: u32 = 4_294_967_292;
const DEFAULT: u32 = 4_294_967_291;

const NODE_NAME: &str = "rill@127.0.0.1";

fn text(b: &Bytes) -> &str {
    std::str::from_utf8(b).expect("UTF-8")
}

fn put(c: &mut PbClient, req: RpbPutReq) -> RpbPutResp {
    c.call(&Request::Put(req), MessageCode::PutResp)
}

fn get(c: &mut PbClient, req: RpbGetReq) -> RpbGetResp {
    c.call(&Request::Get(req), MessageCode::GetResp)
}

/// The values of every sibling, sorted.
fn values(contents: &[RpbContent]) -> Vec<String> {
    let mut v: Vec<String> = contents
        .iter()
        .map(|c| text(&c.value).to_string())
        .collect();
    v.sort();
    v
}

/// A frame built by hand: length, code, body.
fn frame(code: u8, body: &[u8]) -> Vec<u8> {
    let mut f = BytesMut::new();
    f.put_u32(body.len() as u32 + 1);
    f.put_u8(code);
    f.put_slice(body);
    f.to_vec()
}

fn error_message(body: Bytes) -> String {
    let e = RpbErrorResp::decode(body).expect("RpbErrorResp");
    String::from_utf8_lossy(&e.errmsg).into_owned()
}

/// Reads `RpbListKeysResp` frames until `done`; returns the keys and the number of frames.
fn read_key_stream(c: &mut PbClient) -> (Vec<String>, usize) {
    let mut keys = Vec::new();
    let mut frames = 0;
    loop {
        let (code, body) = c.recv();
        assert_eq!(
            code,
            MessageCode::ListKeysResp.as_u8(),
            "listing frame code"
        );
        frames += 1;
        let msg = RpbListKeysResp::decode(body).unwrap();
        keys.extend(msg.keys.iter().map(|k| text(k).to_string()));
        if msg.done == Some(true) {
            assert!(msg.keys.is_empty(), "the closing frame carries no keys");
            return (keys, frames);
        }
    }
}

fn list_keys(c: &mut PbClient, btype: Option<&str>, bucket: &str) -> (Vec<String>, usize) {
    c.send(&Request::ListKeys(RpbListKeysReq {
        bucket: b(bucket),
        timeout: None,
        r#type: btype.map(b),
    }));
    read_key_stream(c)
}

/// Writes `n` keys `{prefix}{i}` with value `v{i}`, pipelined in batches.
fn fill(c: &mut PbClient, btype: Option<&str>, bucket: &str, prefix: &str, n: usize) {
    let reqs: Vec<Request> = (0..n)
        .map(|i| {
            let mut r = put_req(bucket, &format!("{prefix}{i}"), &format!("v{i}"));
            r.r#type = btype.map(b);
            Request::Put(r)
        })
        .collect();
    for batch in reqs.chunks(200) {
        for (code, body) in c.pipeline(batch) {
            assert_eq!(code, MessageCode::PutResp.as_u8(), "{body:?}");
        }
    }
}

fn now_secs() -> u32 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_secs() as u32
}

fn set_bucket(c: &mut PbClient, btype: Option<&str>, bucket: &str, props: RpbBucketProps) {
    c.send(&Request::SetBucket(RpbSetBucketReq {
        bucket: b(bucket),
        props,
        r#type: btype.map(b),
    }));
    let (code, body) = c.recv();
    assert_eq!(code, MessageCode::SetBucketResp.as_u8(), "{body:?}");
    assert!(body.is_empty());
}

fn get_bucket(c: &mut PbClient, btype: Option<&str>, bucket: &str) -> RpbBucketProps {
    let resp: RpbGetBucketResp = c.call(
        &Request::GetBucket(RpbGetBucketReq {
            bucket: b(bucket),
            r#type: btype.map(b),
        }),
        MessageCode::GetBucketResp,
    );
    resp.props
}

#[test]
fn ping_server_info_and_client_id() {
    let node = TestNode::start(&[]);
    let mut c = node.pb();
    c.ping();

    let info: RpbGetServerInfoResp =
        c.call(&Request::GetServerInfo, MessageCode::GetServerInfoResp);
    assert_eq!(info.server_version.as_deref(), Some(&b"3.2.3"[..]));
    assert_eq!(info.node.as_deref(), Some(NODE_NAME.as_bytes()));

    let first: RpbGetClientIdResp = c.call(&Request::GetClientId, MessageCode::GetClientIdResp);
    assert_eq!(
        first.client_id.len(),
        4,
        "a fresh connection gets a 4-byte id"
    );
    c.send(&Request::SetClientId(RpbSetClientIdReq {
        client_id: b("abcd"),
    }));
    let (code, body) = c.recv();
    assert_eq!(code, MessageCode::SetClientIdResp.as_u8());
    assert!(body.is_empty());
    let now: RpbGetClientIdResp = c.call(&Request::GetClientId, MessageCode::GetClientIdResp);
    assert_eq!(now.client_id, b("abcd"));
    // The id belongs to the connection, not the node.
    let other: RpbGetClientIdResp = node
        .pb()
        .call(&Request::GetClientId, MessageCode::GetClientIdResp);
    assert_ne!(other.client_id, b("abcd"));
}

#[test]
fn put_and_get_round_trip_every_content_field() {
    let node = TestNode::start(&[]);
    let mut c = node.pb();
    let pair = |k: &str, v: &str| RpbPair {
        key: b(k),
        value: Some(b(v)),
    };
    let before = now_secs();
    let content = RpbContent {
        value: b("{\"a\":1}"),
        content_type: Some(b("application/json")),
        charset: Some(b("utf-8")),
        content_encoding: Some(b("gzip")),
        vtag: Some(b("client-vtag")),
        links: vec![RpbLink {
            bucket: Some(b("other")),
            key: Some(b("o1")),
            tag: Some(b("friend")),
        }],
        // A client's times are replaced by the write's own.
        last_mod: Some(12345),
        last_mod_usecs: Some(6),
        usermeta: vec![pair("colour", "blue"), pair("size", "xl")],
        indexes: vec![
            pair("email_bin", "a@b.c"),
            pair("age_int", "42"),
            pair("age_int", "42"),
        ],
        deleted: None,
    };
    let resp = put(
        &mut c,
        RpbPutReq {
            bucket: b("b"),
            key: Some(b("k")),
            content,
            return_body: Some(true),
            ..Default::default()
        },
    );
    let after = now_secs();
    assert_eq!(
        resp.key, None,
        "the key was the client's, so none is returned"
    );
    let vclock = resp.vclock.clone().expect("return_body carries the vclock");
    assert!(!vclock.is_empty());
    assert_eq!(resp.content.len(), 1);

    let check = |c: &RpbContent, value: &str| {
        assert_eq!(text(&c.value), value);
        assert_eq!(c.content_type.as_deref(), Some(&b"application/json"[..]));
        assert_eq!(c.charset.as_deref(), Some(&b"utf-8"[..]));
        assert_eq!(c.content_encoding.as_deref(), Some(&b"gzip"[..]));
        let vtag = c.vtag.as_ref().expect("vtag");
        assert!(!vtag.is_empty());
        assert_ne!(vtag, &b("client-vtag"), "the server assigns the vtag");
        assert_eq!(
            c.links,
            vec![RpbLink {
                bucket: Some(b("other")),
                key: Some(b("o1")),
                tag: Some(b("friend")),
            }]
        );
        let last_mod = c.last_mod.expect("last_mod");
        assert!(
            (before..=after).contains(&last_mod),
            "{before} <= {last_mod} <= {after}"
        );
        assert!(c.last_mod_usecs.expect("last_mod_usecs") < 1_000_000);
        let mut meta: Vec<(String, String)> = c
            .usermeta
            .iter()
            .map(|p| (text(&p.key).into(), text(p.value.as_ref().unwrap()).into()))
            .collect();
        meta.sort();
        assert_eq!(
            meta,
            [
                ("colour".into(), "blue".into()),
                ("size".into(), "xl".into())
            ]
        );
        // Index entries come back sorted and without the duplicate.
        let idx: Vec<(String, String)> = c
            .indexes
            .iter()
            .map(|p| (text(&p.key).into(), text(p.value.as_ref().unwrap()).into()))
            .collect();
        assert_eq!(
            idx,
            [
                ("age_int".into(), "42".into()),
                ("email_bin".into(), "a@b.c".into())
            ]
        );
        assert_eq!(c.deleted, None);
    };
    check(&resp.content[0], "{\"a\":1}");

    let got = get(&mut c, get_req("b", "k"));
    assert_eq!(got.vclock.as_ref(), Some(&vclock));
    assert_eq!(got.unchanged, None);
    assert_eq!(got.content.len(), 1);
    check(&got.content[0], "{\"a\":1}");
    assert_eq!(got.content[0].vtag, resp.content[0].vtag);

    // head: the metadata without the value.
    let head = get(
        &mut c,
        RpbGetReq {
            head: Some(true),
            ..get_req("b", "k")
        },
    );
    assert_eq!(head.vclock.as_ref(), Some(&vclock));
    assert_eq!(head.content.len(), 1);
    check(&head.content[0], "");
}

#[test]
fn put_response_shapes_and_generated_keys() {
    let node = TestNode::start(&[]);
    let mut c = node.pb();

    // Without return_body the answer is empty.
    let plain = put(&mut c, put_req("b", "k", "one"));
    assert_eq!(plain, RpbPutResp::default());

    // return_head: metadata and vclock, values empty.
    let current = get(&mut c, get_req("b", "k")).vclock;
    let head = put(
        &mut c,
        RpbPutReq {
            return_head: Some(true),
            vclock: current,
            ..put_req("b", "k", "two")
        },
    );
    assert!(head.vclock.as_ref().is_some_and(|v| !v.is_empty()));
    assert_eq!(head.content.len(), 1);
    assert!(head.content[0].value.is_empty());
    assert_eq!(
        head.content[0].content_type.as_deref(),
        Some(&b"text/plain"[..])
    );
    assert!(head.content[0].last_mod.is_some());
    // As in Riak, return_head blanks the values even when return_body is set too.
    let both = put(
        &mut c,
        RpbPutReq {
            return_head: Some(true),
            return_body: Some(true),
            vclock: head.vclock.clone(),
            ..put_req("b", "k", "three")
        },
    );
    assert_eq!(values(&both.content), [""]);
    assert!(both.vclock.is_some());
    assert_eq!(values(&get(&mut c, get_req("b", "k")).content), ["three"]);
    let body = put(
        &mut c,
        RpbPutReq {
            return_body: Some(true),
            vclock: both.vclock,
            ..put_req("b", "k", "four")
        },
    );
    assert_eq!(values(&body.content), ["four"]);

    // No key: the server makes one up and says which.
    for _ in 0..2 {
        let resp = put(
            &mut c,
            RpbPutReq {
                key: None,
                ..put_req("gen", "unused", "generated")
            },
        );
        let key = resp.key.expect("generated key returned");
        assert_eq!(key.len(), 22, "{key:?}");
        assert!(key.iter().all(u8::is_ascii_alphanumeric), "{key:?}");
        assert!(resp.content.is_empty());
        let got = get(&mut c, get_req("gen", text(&key)));
        assert_eq!(values(&got.content), ["generated"]);
    }
    let (keys, _) = list_keys(&mut c, None, "gen");
    assert_eq!(keys.len(), 2, "two distinct generated keys: {keys:?}");
    // An empty key is not an absent one: Riak refuses it.
    let err = c.call_err(&Request::Put(RpbPutReq {
        key: Some(Bytes::new()),
        ..put_req("gen", "unused", "x")
    }));
    assert!(err.contains("key"), "{err}");
    assert_eq!(list_keys(&mut c, None, "gen").0.len(), 2);
}

#[test]
fn index_entries_are_validated_and_normalised() {
    let node = TestNode::start(&[]);
    let mut c = node.pb();
    let with_index = |name: &str, value: &str| RpbPutReq {
        content: RpbContent {
            value: b("v"),
            indexes: vec![RpbPair {
                key: b(name),
                value: Some(b(value)),
            }],
            ..Default::default()
        },
        ..put_req("b", "k", "")
    };
    for (name, value, words) in [
        ("nosuffix", "x", "nosuffix"),
        ("age_int", "old", "old"),
        ("age_int", "", "integer"),
        ("", "x", "_bin or _int"),
    ] {
        let err = c.call_err(&Request::Put(with_index(name, value)));
        assert!(err.contains(words), "{name}={value}: {err}");
        c.ping();
    }
    assert_eq!(get(&mut c, get_req("b", "k")), RpbGetResp::default());

    // Riak lower-cases index names.
    put(&mut c, with_index("Email_BIN", "A@B.C"));
    put(
        &mut c,
        RpbPutReq {
            key: Some(b("k2")),
            ..with_index("Age_Int", "-42")
        },
    );
    let got = get(&mut c, get_req("b", "k"));
    assert_eq!(
        got.content[0].indexes,
        [RpbPair {
            key: b("email_bin"),
            value: Some(b("A@B.C")),
        }]
    );
    let got = get(&mut c, get_req("b", "k2"));
    assert_eq!(
        got.content[0].indexes,
        [RpbPair {
            key: b("age_int"),
            value: Some(b("-42")),
        }]
    );
}

#[test]
fn missing_deleted_and_unchanged_objects() {
    let node = TestNode::start(&["--delete-mode", "keep"]);
    let mut c = node.pb();

    let missing = get(&mut c, get_req("b", "nothing"));
    assert_eq!(
        missing,
        RpbGetResp::default(),
        "not found: no content, no vclock"
    );
    let missing = get(
        &mut c,
        RpbGetReq {
            deletedvclock: Some(true),
            ..get_req("b", "nothing")
        },
    );
    assert_eq!(
        missing,
        RpbGetResp::default(),
        "never written: no tombstone clock"
    );

    put(&mut c, put_req("b", "k", "v1"));
    let v1 = get(&mut c, get_req("b", "k")).vclock.unwrap();
    let unchanged = get(
        &mut c,
        RpbGetReq {
            if_modified: Some(v1.clone()),
            ..get_req("b", "k")
        },
    );
    assert_eq!(unchanged.unchanged, Some(true));
    assert!(unchanged.content.is_empty());
    put(
        &mut c,
        RpbPutReq {
            vclock: Some(v1.clone()),
            ..put_req("b", "k", "v2")
        },
    );
    let changed = get(
        &mut c,
        RpbGetReq {
            if_modified: Some(v1.clone()),
            ..get_req("b", "k")
        },
    );
    assert_eq!(changed.unchanged, None);
    assert_eq!(values(&changed.content), ["v2"]);
    assert_ne!(changed.vclock.as_ref(), Some(&v1));

    // Delete without a clock: the node reads it first.
    c.send(&Request::Del(RpbDelReq {
        bucket: b("b"),
        key: b("k"),
        ..Default::default()
    }));
    let (code, body) = c.recv();
    assert_eq!(code, MessageCode::DelResp.as_u8());
    assert!(body.is_empty());
    assert_eq!(get(&mut c, get_req("b", "k")), RpbGetResp::default());
    let tomb = get(
        &mut c,
        RpbGetReq {
            deletedvclock: Some(true),
            ..get_req("b", "k")
        },
    );
    assert!(tomb.content.is_empty());
    let tomb_clock = tomb.vclock.expect("the tombstone's vclock");
    assert_ne!(Some(&tomb_clock), changed.vclock.as_ref());

    // Writing with the tombstone's clock brings the key back as one value.
    put(
        &mut c,
        RpbPutReq {
            vclock: Some(tomb_clock),
            ..put_req("b", "k", "again")
        },
    );
    let again = get(&mut c, get_req("b", "k"));
    assert_eq!(values(&again.content), ["again"]);

    // Delete with the clock read, and every quorum given.
    c.send(&Request::Del(RpbDelReq {
        bucket: b("b"),
        key: b("k"),
        vclock: again.vclock,
        rw: Some(QUORUM),
        r: Some(ALL),
        w: Some(ALL),
        pr: Some(ONE),
        pw: Some(1),
        dw: Some(DEFAULT),
        ..Default::default()
    }));
    assert_eq!(c.recv().0, MessageCode::DelResp.as_u8());
    assert!(get(&mut c, get_req("b", "k")).content.is_empty());

    // Deleting what was never there succeeds, as in Riak.
    c.send(&Request::Del(RpbDelReq {
        bucket: b("b"),
        key: b("never"),
        ..Default::default()
    }));
    assert_eq!(c.recv().0, MessageCode::DelResp.as_u8());
}

#[test]
fn siblings_on_a_default_type_bucket_with_allow_mult() {
    let node = TestNode::start(&[]);
    let mut c = node.pb();
    set_bucket(
        &mut c,
        None,
        "sib",
        RpbBucketProps {
            allow_mult: Some(true),
            ..Default::default()
        },
    );
    let first = put(
        &mut c,
        RpbPutReq {
            return_body: Some(true),
            ..put_req("sib", "k", "x")
        },
    );
    let blind = put(
        &mut c,
        RpbPutReq {
            return_body: Some(true),
            ..put_req("sib", "k", "y")
        },
    );
    assert_eq!(
        values(&blind.content),
        ["x", "y"],
        "a blind write adds a sibling"
    );
    let got = get(&mut c, get_req("sib", "k"));
    assert_eq!(values(&got.content), ["x", "y"]);
    assert_eq!(got.vclock, blind.vclock);
    let vtags: std::collections::BTreeSet<_> = got.content.iter().map(|s| s.vtag.clone()).collect();
    assert_eq!(vtags.len(), 2, "each sibling has its own vtag");

    // Classic vector clocks: a write whose context covers only "x" still keeps "x" (its clock
    // does not descend the stored one), Riak's sibling explosion.
    put(
        &mut c,
        RpbPutReq {
            vclock: first.vclock,
            ..put_req("sib", "k", "x2")
        },
    );
    assert_eq!(
        values(&get(&mut c, get_req("sib", "k")).content),
        ["x", "x2", "y"]
    );

    // A write with the current clock resolves them.
    let current = get(&mut c, get_req("sib", "k")).vclock;
    put(
        &mut c,
        RpbPutReq {
            vclock: current,
            ..put_req("sib", "k", "resolved")
        },
    );
    assert_eq!(
        values(&get(&mut c, get_req("sib", "k")).content),
        ["resolved"]
    );

    // Without allow_mult the same blind writes collapse to the newest.
    put(&mut c, put_req("single", "k", "x"));
    put(&mut c, put_req("single", "k", "y"));
    assert_eq!(values(&get(&mut c, get_req("single", "k")).content), ["y"]);
}

#[test]
fn siblings_on_a_created_type_with_dotted_version_vectors() {
    let node = TestNode::start(&[]);
    node.create_bucket_type("dvv", "{}");
    let props = http()
        .get(&node.url("/types/dvv/props"))
        .call()
        .unwrap()
        .into_body()
        .read_to_string()
        .unwrap();
    let props: serde_json::Value = serde_json::from_str(&props).unwrap();
    assert_eq!(props["props"]["dvv_enabled"], true);
    assert_eq!(props["props"]["allow_mult"], true);

    let mut c = node.pb();
    let typed = |value: &str| RpbPutReq {
        r#type: Some(b("dvv")),
        return_body: Some(true),
        ..put_req("b", "k", value)
    };
    let typed_get = || RpbGetReq {
        r#type: Some(b("dvv")),
        ..get_req("b", "k")
    };
    let first = put(&mut c, typed("x"));
    assert_eq!(values(&first.content), ["x"]);
    let second = put(&mut c, typed("y"));
    assert_eq!(values(&second.content), ["x", "y"]);
    assert_eq!(values(&get(&mut c, typed_get()).content), ["x", "y"]);

    // With dots, a write replaces exactly the siblings its context saw: "x" goes, "y" stays.
    let third = put(
        &mut c,
        RpbPutReq {
            vclock: first.vclock,
            ..typed("x2")
        },
    );
    assert_eq!(values(&third.content), ["x2", "y"]);
    assert_eq!(values(&get(&mut c, typed_get()).content), ["x2", "y"]);

    let current = get(&mut c, typed_get()).vclock;
    put(
        &mut c,
        RpbPutReq {
            vclock: current,
            ..typed("resolved")
        },
    );
    assert_eq!(values(&get(&mut c, typed_get()).content), ["resolved"]);
    // The default type's bucket of the same name is another bucket.
    assert_eq!(get(&mut c, get_req("b", "k")), RpbGetResp::default());
}

#[test]
fn asis_puts_keep_the_given_clock_and_head_gets_blank_every_sibling() {
    let node = TestNode::start(&[]);
    let mut c = node.pb();
    put(&mut c, put_req("b", "src", "original"));
    let clock = get(&mut c, get_req("b", "src")).vclock.unwrap();
    // asis stores the object with exactly the clock given (replication's write).
    put(
        &mut c,
        RpbPutReq {
            asis: Some(true),
            vclock: Some(clock.clone()),
            ..put_req("b", "copy", "copied")
        },
    );
    let copy = get(&mut c, get_req("b", "copy"));
    assert_eq!(copy.vclock, Some(clock));
    assert_eq!(values(&copy.content), ["copied"]);

    set_bucket(
        &mut c,
        None,
        "sib",
        RpbBucketProps {
            allow_mult: Some(true),
            ..Default::default()
        },
    );
    put(&mut c, put_req("sib", "k", "x"));
    put(&mut c, put_req("sib", "k", "y"));
    let head = get(
        &mut c,
        RpbGetReq {
            head: Some(true),
            ..get_req("sib", "k")
        },
    );
    assert_eq!(values(&head.content), ["", ""]);
    assert!(
        head.content
            .iter()
            .all(|s| s.vtag.is_some() && s.last_mod.is_some())
    );

    // last_write_wins: blind writes replace, even with allow_mult.
    set_bucket(
        &mut c,
        None,
        "lww",
        RpbBucketProps {
            allow_mult: Some(true),
            last_write_wins: Some(true),
            ..Default::default()
        },
    );
    put(&mut c, put_req("lww", "k", "x"));
    put(&mut c, put_req("lww", "k", "y"));
    assert_eq!(values(&get(&mut c, get_req("lww", "k")).content), ["y"]);
}

#[test]
fn conditional_puts() {
    let node = TestNode::start(&[]);
    let mut c = node.pb();
    let none_match = |value: &str| RpbPutReq {
        if_none_match: Some(true),
        ..put_req("b", "k", value)
    };
    // Nothing there yet: the write goes through.
    put(&mut c, none_match("first"));
    assert_eq!(
        c.call_err(&Request::Put(none_match("second"))),
        "match_found"
    );
    assert_eq!(values(&get(&mut c, get_req("b", "k")).content), ["first"]);

    let stale = get(&mut c, get_req("b", "k")).vclock;
    let current = put(
        &mut c,
        RpbPutReq {
            vclock: stale.clone(),
            return_head: Some(true),
            ..put_req("b", "k", "update")
        },
    )
    .vclock;
    let not_modified = |vclock: Option<Bytes>, value: &str| RpbPutReq {
        if_not_modified: Some(true),
        vclock,
        ..put_req("b", "k", value)
    };
    assert_eq!(
        c.call_err(&Request::Put(not_modified(stale, "lost"))),
        "modified"
    );
    assert_eq!(values(&get(&mut c, get_req("b", "k")).content), ["update"]);
    put(&mut c, not_modified(current, "won"));
    assert_eq!(values(&get(&mut c, get_req("b", "k")).content), ["won"]);
}

#[test]
fn conditional_put_on_a_missing_key_is_notfound() {
    let node = TestNode::start(&[]);
    let mut c = node.pb();
    let err = c.call_err(&Request::Put(RpbPutReq {
        if_not_modified: Some(true),
        ..put_req("b", "missing", "v")
    }));
    assert_eq!(err, "notfound");
}

#[test]
fn quorum_values_numbers_sentinels_and_n_val() {
    let node = TestNode::start(&[]);
    let mut c = node.pb();
    for (i, (w, dw, pw)) in [
        (1, 0, 0),
        (3, 3, 3),
        (ONE, ONE, ONE),
        (QUORUM, QUORUM, QUORUM),
        (ALL, ALL, ALL),
        (DEFAULT, DEFAULT, DEFAULT),
    ]
    .into_iter()
    .enumerate()
    {
        let resp = put(
            &mut c,
            RpbPutReq {
                w: Some(w),
                dw: Some(dw),
                pw: Some(pw),
                return_body: Some(true),
                ..put_req("b", &format!("k{i}"), &format!("v{i}"))
            },
        );
        assert_eq!(values(&resp.content), [format!("v{i}")]);
    }
    for (r, pr) in [
        (1, 0),
        (2, 2),
        (3, 3),
        (ONE, ONE),
        (QUORUM, QUORUM),
        (ALL, ALL),
        (DEFAULT, DEFAULT),
    ] {
        let got = get(
            &mut c,
            RpbGetReq {
                r: Some(r),
                pr: Some(pr),
                basic_quorum: Some(true),
                notfound_ok: Some(false),
                ..get_req("b", "k0")
            },
        );
        assert_eq!(values(&got.content), ["v0"], "r={r} pr={pr}");
    }

    // More than n_val replicas can never answer.
    for req in [
        Request::Get(RpbGetReq {
            r: Some(5),
            ..get_req("b", "k0")
        }),
        Request::Get(RpbGetReq {
            pr: Some(4),
            ..get_req("b", "k0")
        }),
        Request::Put(RpbPutReq {
            w: Some(4),
            ..put_req("b", "k0", "x")
        }),
        Request::Put(RpbPutReq {
            dw: Some(5),
            ..put_req("b", "k0", "x")
        }),
        Request::Put(RpbPutReq {
            pw: Some(4),
            ..put_req("b", "k0", "x")
        }),
        Request::Del(RpbDelReq {
            bucket: b("b"),
            key: b("k0"),
            rw: Some(4),
            ..Default::default()
        }),
    ] {
        let err = c.call_err(&req);
        assert!(err.contains("n_val"), "{err}");
    }
    assert_eq!(values(&get(&mut c, get_req("b", "k0")).content), ["v0"]);

    // A smaller n_val for one request: quorums are counted against it.
    put(
        &mut c,
        RpbPutReq {
            n_val: Some(1),
            w: Some(ALL),
            ..put_req("b", "small", "one copy")
        },
    );
    let got = get(
        &mut c,
        RpbGetReq {
            n_val: Some(1),
            r: Some(ALL),
            ..get_req("b", "small")
        },
    );
    assert_eq!(values(&got.content), ["one copy"]);
    let err = c.call_err(&Request::Get(RpbGetReq {
        n_val: Some(1),
        r: Some(2),
        ..get_req("b", "small")
    }));
    assert!(err.contains("n_val"), "{err}");
    // Larger than the bucket's is refused.
    let err = c.call_err(&Request::Get(RpbGetReq {
        n_val: Some(4),
        ..get_req("b", "small")
    }));
    assert!(err.contains("n_val"), "{err}");
}

#[test]
fn list_keys_streams_every_key_exactly_once() {
    let node = TestNode::start(&[]);
    let mut c = node.pb();
    fill(&mut c, None, "many", "k", 2500);
    put(&mut c, put_req("other", "x", "x"));

    let (mut keys, frames) = list_keys(&mut c, None, "many");
    assert!(
        frames >= 4,
        "2500 keys come in several chunks, then done: {frames}"
    );
    assert_eq!(keys.len(), 2500, "no key twice");
    keys.sort();
    let mut expected: Vec<String> = (0..2500).map(|i| format!("k{i}")).collect();
    expected.sort();
    assert_eq!(keys, expected);

    let (empty, frames) = list_keys(&mut c, None, "empty");
    assert!(empty.is_empty());
    assert_eq!(frames, 1, "an empty bucket is just the closing frame");
    c.ping();
}

#[test]
fn list_buckets_whole_or_streamed_per_type() {
    let node = TestNode::start(&[]);
    node.create_bucket_type("typed", "{}");
    let mut c = node.pb();
    for bucket in ["b1", "b2", "b3"] {
        put(&mut c, put_req(bucket, "k", "v"));
    }
    put(
        &mut c,
        RpbPutReq {
            r#type: Some(b("typed")),
            ..put_req("t1", "k", "v")
        },
    );

    let list = |c: &mut PbClient, btype: Option<&str>, stream: Option<bool>| {
        c.send(&Request::ListBuckets(RpbListBucketsReq {
            timeout: None,
            stream,
            r#type: btype.map(b),
        }));
        let mut names = Vec::new();
        let mut frames = Vec::new();
        loop {
            let (code, body) = c.recv();
            assert_eq!(code, MessageCode::ListBucketsResp.as_u8());
            let msg = RpbListBucketsResp::decode(body).unwrap();
            names.extend(msg.buckets.iter().map(|n| text(n).to_string()));
            frames.push(msg.done);
            if stream != Some(true) || msg.done == Some(true) {
                break;
            }
        }
        names.sort();
        (names, frames)
    };

    // Not streamed: one message, no done flag; the next frame on the wire is the ping's.
    let (names, frames) = list(&mut c, None, None);
    assert_eq!(names, ["b1", "b2", "b3"]);
    assert_eq!(frames, [None]);
    c.ping();
    let (names, frames) = list(&mut c, None, Some(false));
    assert_eq!(names, ["b1", "b2", "b3"]);
    assert_eq!(frames.len(), 1);
    c.ping();

    let (names, frames) = list(&mut c, None, Some(true));
    assert_eq!(names, ["b1", "b2", "b3"]);
    assert_eq!(frames.last(), Some(&Some(true)));
    c.ping();

    let (names, _) = list(&mut c, Some("typed"), Some(true));
    assert_eq!(names, ["t1"]);
    let (names, _) = list(&mut c, Some("typed"), None);
    assert_eq!(names, ["t1"]);
    let (names, _) = list(&mut c, Some("default"), None);
    assert_eq!(names, ["b1", "b2", "b3"]);

    let (keys, _) = list_keys(&mut c, Some("typed"), "t1");
    assert_eq!(keys, ["k"]);

    // Older clients send the request code with no body at all.
    c.send_raw(&frame(MessageCode::ListBucketsReq.as_u8(), b""));
    let (code, body) = c.recv();
    assert_eq!(code, MessageCode::ListBucketsResp.as_u8());
    let mut names: Vec<String> = RpbListBucketsResp::decode(body)
        .unwrap()
        .buckets
        .iter()
        .map(|n| text(n).to_string())
        .collect();
    names.sort();
    assert_eq!(names, ["b1", "b2", "b3"]);

    let err = c.call_err(&Request::ListBuckets(RpbListBucketsReq {
        timeout: None,
        stream: Some(true),
        r#type: Some(b("nosuchtype")),
    }));
    assert!(err.contains("nosuchtype"), "{err}");
    c.ping();
}

#[test]
fn bucket_props_get_set_reset() {
    let node = TestNode::start(&[]);
    let mut c = node.pb();
    let defaults = get_bucket(&mut c, None, "b");
    assert_eq!(defaults.n_val, Some(3));
    assert_eq!(defaults.allow_mult, Some(false));
    assert_eq!(defaults.last_write_wins, Some(false));
    assert_eq!(defaults.r, Some(QUORUM));
    assert_eq!(defaults.w, Some(QUORUM));
    assert_eq!(defaults.dw, Some(QUORUM));
    assert_eq!(defaults.rw, Some(QUORUM));
    assert_eq!(defaults.pr, Some(0));
    assert_eq!(defaults.pw, Some(0));
    assert_eq!(defaults.basic_quorum, Some(false));
    assert_eq!(defaults.notfound_ok, Some(true));
    assert_eq!(defaults.old_vclock, Some(86400));
    assert_eq!(defaults.young_vclock, Some(20));
    assert_eq!(defaults.big_vclock, Some(50));
    assert_eq!(defaults.small_vclock, Some(50));
    assert_eq!(defaults.has_precommit, Some(false));
    assert_eq!(defaults.has_postcommit, Some(false));
    assert_eq!(
        defaults.chash_keyfun,
        Some(RpbModFun {
            module: b("riak_core_util"),
            function: b("chash_std_keyfun"),
        })
    );

    set_bucket(
        &mut c,
        None,
        "b",
        RpbBucketProps {
            n_val: Some(5),
            allow_mult: Some(true),
            r: Some(ONE),
            w: Some(ALL),
            dw: Some(2),
            rw: Some(ALL),
            pr: Some(QUORUM),
            pw: Some(1),
            basic_quorum: Some(true),
            notfound_ok: Some(false),
            old_vclock: Some(1000),
            big_vclock: Some(60),
            ..Default::default()
        },
    );
    let set = get_bucket(&mut c, None, "b");
    assert_eq!(set.n_val, Some(5));
    assert_eq!(set.allow_mult, Some(true));
    assert_eq!(set.r, Some(ONE));
    assert_eq!(set.w, Some(ALL));
    assert_eq!(set.dw, Some(2));
    assert_eq!(set.rw, Some(ALL));
    assert_eq!(set.pr, Some(QUORUM));
    assert_eq!(set.pw, Some(1));
    assert_eq!(set.basic_quorum, Some(true));
    assert_eq!(set.notfound_ok, Some(false));
    assert_eq!(set.old_vclock, Some(1000));
    assert_eq!(set.big_vclock, Some(60));
    // Untouched properties keep their values.
    assert_eq!(set.young_vclock, Some(20));
    assert_eq!(set.last_write_wins, Some(false));
    // Another bucket is not affected.
    assert_eq!(get_bucket(&mut c, None, "other"), defaults);

    // A second set changes only what it names.
    set_bucket(
        &mut c,
        None,
        "b",
        RpbBucketProps {
            allow_mult: Some(false),
            ..Default::default()
        },
    );
    let again = get_bucket(&mut c, None, "b");
    assert_eq!(again.allow_mult, Some(false));
    assert_eq!(again.n_val, Some(5));
    assert_eq!(again.r, Some(ONE));

    c.send(&Request::ResetBucket(RpbResetBucketReq {
        bucket: b("b"),
        r#type: None,
    }));
    let (code, body) = c.recv();
    assert_eq!(code, MessageCode::ResetBucketResp.as_u8());
    assert!(body.is_empty());
    assert_eq!(get_bucket(&mut c, None, "b"), defaults);
}

#[test]
fn invalid_bucket_props_are_refused_and_leave_props_unchanged() {
    let node = TestNode::start(&[]);
    let mut c = node.pb();
    set_bucket(
        &mut c,
        None,
        "b",
        RpbBucketProps {
            allow_mult: Some(true),
            ..Default::default()
        },
    );
    let before = get_bucket(&mut c, None, "b");
    for props in [
        RpbBucketProps {
            n_val: Some(0),
            ..Default::default()
        },
        RpbBucketProps {
            r: Some(5),
            ..Default::default()
        },
        // `default` means "the bucket's value" in a request; a bucket cannot defer to itself.
        RpbBucketProps {
            dw: Some(DEFAULT),
            ..Default::default()
        },
        RpbBucketProps {
            // Valid with the change to allow_mult, invalid with w: nothing at all changes.
            allow_mult: Some(false),
            w: Some(4),
            ..Default::default()
        },
    ] {
        let err = c.call_err(&Request::SetBucket(RpbSetBucketReq {
            bucket: b("b"),
            props: props.clone(),
            r#type: None,
        }));
        assert!(!err.is_empty(), "{props:?}");
        assert_eq!(get_bucket(&mut c, None, "b"), before, "{props:?}");
    }
    let err = c.call_err(&Request::SetBucket(RpbSetBucketReq {
        bucket: b("b"),
        props: RpbBucketProps {
            allow_mult: Some(true),
            ..Default::default()
        },
        r#type: Some(b("nosuchtype")),
    }));
    assert!(err.contains("nosuchtype"), "{err}");
    let err = c.call_err(&Request::GetBucket(RpbGetBucketReq {
        bucket: b("b"),
        r#type: Some(b("nosuchtype")),
    }));
    assert!(err.contains("nosuchtype"), "{err}");
    c.ping();
}

#[test]
fn bucket_type_props_get_and_set() {
    let node = TestNode::start(&[]);
    node.create_bucket_type("two", "{\"n_val\":2}");
    let mut c = node.pb();
    let get_type = |c: &mut PbClient, name: &str| -> RpbBucketProps {
        let resp: RpbGetBucketResp = c.call(
            &Request::GetBucketType(RpbGetBucketTypeReq { r#type: b(name) }),
            MessageCode::GetBucketResp,
        );
        resp.props
    };
    let props = get_type(&mut c, "two");
    assert_eq!(props.n_val, Some(2));
    assert_eq!(
        props.allow_mult,
        Some(true),
        "created types default to siblings"
    );
    assert_eq!(props.r, Some(QUORUM));

    let default = get_type(&mut c, "default");
    assert_eq!(default.n_val, Some(3));
    assert_eq!(default.allow_mult, Some(false));

    c.send(&Request::SetBucketType(RpbSetBucketTypeReq {
        r#type: b("two"),
        props: RpbBucketProps {
            r: Some(ONE),
            notfound_ok: Some(false),
            ..Default::default()
        },
    }));
    let (code, body) = c.recv();
    assert_eq!(code, MessageCode::SetBucketResp.as_u8(), "{body:?}");
    let props = get_type(&mut c, "two");
    assert_eq!(props.r, Some(ONE));
    assert_eq!(props.notfound_ok, Some(false));
    assert_eq!(props.n_val, Some(2));
    // A bucket of the type inherits them, overrides them, and a reset returns it to them.
    let bucket = get_bucket(&mut c, Some("two"), "b");
    assert_eq!(bucket.r, Some(ONE));
    assert_eq!(bucket.n_val, Some(2));
    set_bucket(
        &mut c,
        Some("two"),
        "b",
        RpbBucketProps {
            r: Some(ALL),
            ..Default::default()
        },
    );
    assert_eq!(get_bucket(&mut c, Some("two"), "b").r, Some(ALL));
    assert_eq!(
        get_type(&mut c, "two").r,
        Some(ONE),
        "the type is untouched"
    );
    c.send(&Request::ResetBucket(RpbResetBucketReq {
        bucket: b("b"),
        r#type: Some(b("two")),
    }));
    assert_eq!(c.recv().0, MessageCode::ResetBucketResp.as_u8());
    assert_eq!(
        get_bucket(&mut c, Some("two"), "b"),
        get_type(&mut c, "two")
    );

    let err = c.call_err(&Request::SetBucketType(RpbSetBucketTypeReq {
        r#type: b("nosuchtype"),
        props: RpbBucketProps {
            r: Some(ONE),
            ..Default::default()
        },
    }));
    assert!(err.contains("nosuchtype"), "{err}");
    let err = c.call_err(&Request::GetBucketType(RpbGetBucketTypeReq {
        r#type: b("nosuchtype"),
    }));
    assert!(err.contains("nosuchtype"), "{err}");
    // A created type is unusable until activated.
    let created = http()
        .post(&node.url("/admin/bucket-types/later"))
        .header("Content-Type", "application/json")
        .send("{\"props\":{}}")
        .unwrap();
    assert_eq!(created.status(), 201);
    let err = c.call_err(&Request::Put(RpbPutReq {
        r#type: Some(b("later")),
        ..put_req("b", "k", "v")
    }));
    assert!(err.contains("later") && err.contains("not active"), "{err}");
    let inactive = get_type(&mut c, "later");
    assert_eq!(inactive.allow_mult, Some(true), "its props are readable");
    // An invalid change to a type is refused and changes nothing.
    let err = c.call_err(&Request::SetBucketType(RpbSetBucketTypeReq {
        r#type: b("two"),
        props: RpbBucketProps {
            n_val: Some(0),
            ..Default::default()
        },
    }));
    assert!(!err.is_empty());
    assert_eq!(get_type(&mut c, "two").n_val, Some(2));
    c.ping();
}

#[test]
fn preflists_are_n_consecutive_primary_partitions() {
    let node = TestNode::start(&[]);
    node.create_bucket_type("two", "{\"n_val\":2}");
    let mut c = node.pb();
    let preflist = |c: &mut PbClient, btype: Option<&str>, key: &str| {
        let resp: RpbGetBucketKeyPreflistResp = c.call(
            &Request::GetBucketKeyPreflist(RpbGetBucketKeyPreflistReq {
                bucket: b("b"),
                key: b(key),
                r#type: btype.map(b),
            }),
            MessageCode::GetBucketKeyPreflistResp,
        );
        resp.preflist
    };
    let check = |list: &[RpbBucketKeyPreflistItem], n: usize| {
        assert_eq!(list.len(), n);
        let first = list[0].partition;
        assert!((0..16).contains(&first), "{first}");
        for (i, e) in list.iter().enumerate() {
            assert_eq!(e.partition, (first + i as i64) % 16);
            assert!(e.primary);
            assert_eq!(text(&e.node), NODE_NAME);
        }
    };
    let mut firsts = std::collections::BTreeSet::new();
    for i in 0..40 {
        let list = preflist(&mut c, None, &format!("k{i}"));
        check(&list, 3);
        firsts.insert(list[0].partition);
    }
    assert!(firsts.len() > 1, "keys spread over the ring");
    check(&preflist(&mut c, Some("two"), "k"), 2);
    set_bucket(
        &mut c,
        None,
        "b",
        RpbBucketProps {
            n_val: Some(5),
            ..Default::default()
        },
    );
    check(&preflist(&mut c, None, "k"), 5);
}

#[test]
fn bad_frames_are_answered_and_the_connection_stays_usable() {
    let node = TestNode::start(&[]);
    let mut c = node.pb();
    let expect_error = |c: &mut PbClient, raw: &[u8], words: &str| {
        c.send_raw(raw);
        let (code, body) = c.recv();
        assert_eq!(code, MessageCode::ErrorResp.as_u8(), "for {raw:?}");
        let msg = error_message(body);
        assert!(msg.contains(words), "{msg:?} should mention {words:?}");
        c.ping();
    };
    expect_error(&mut c, &frame(150, b""), "unknown message code 150");
    expect_error(
        &mut c,
        &frame(105, b"\x01\x02\x03"),
        "unknown message code 105",
    );
    // Defined by Riak (time series), not served here.
    expect_error(&mut c, &frame(200, b""), "RpbRTEReq");
    // A response code sent as a request.
    expect_error(&mut c, &frame(10, b""), "RpbGetResp");
    expect_error(&mut c, &frame(0, b""), "RpbErrorResp");
    // Not protobuf.
    expect_error(&mut c, &frame(9, &[0xff, 0xff, 0xff, 0xff]), "RpbGetReq");
    expect_error(&mut c, &frame(11, b"\x0a\x05ab"), "RpbPutReq");
    // Length 0: no room for the code.
    expect_error(&mut c, &[0, 0, 0, 0], "empty frame");
    // Riak messages this server does not serve.
    let mapred = RpbMapRedReq {
        request: b("{}"),
        content_type: b("application/json"),
    };
    expect_error(&mut c, &frame(23, &mapred.encode_to_vec()), "RpbMapRedReq");
    expect_error(&mut c, &frame(255, b""), "RpbStartTls");

    // Requests that decode but make no sense.
    let bad = |c: &mut PbClient, req: Request, words: &str| {
        let err = c.call_err(&req);
        assert!(err.contains(words), "{err:?} should mention {words:?}");
        c.ping();
    };
    bad(&mut c, Request::Get(get_req("", "k")), "bucket");
    bad(&mut c, Request::Get(get_req("b", "")), "key");
    bad(&mut c, Request::Put(put_req("", "k", "v")), "bucket");
    bad(
        &mut c,
        Request::Del(RpbDelReq {
            bucket: b("b"),
            key: Bytes::new(),
            ..Default::default()
        }),
        "key",
    );
    bad(
        &mut c,
        Request::ListKeys(RpbListKeysReq {
            bucket: Bytes::new(),
            timeout: None,
            r#type: None,
        }),
        "bucket",
    );
    bad(
        &mut c,
        Request::Get(RpbGetReq {
            r#type: Some(b("nosuchtype")),
            ..get_req("b", "k")
        }),
        "nosuchtype",
    );
    bad(
        &mut c,
        Request::Put(RpbPutReq {
            r#type: Some(b("nosuchtype")),
            ..put_req("b", "k", "v")
        }),
        "nosuchtype",
    );
    bad(
        &mut c,
        Request::ListKeys(RpbListKeysReq {
            bucket: b("b"),
            timeout: None,
            r#type: Some(b("nosuchtype")),
        }),
        "nosuchtype",
    );
    // An empty type is not the default type (Riak: "Type cannot be zero-length").
    bad(
        &mut c,
        Request::Get(RpbGetReq {
            r#type: Some(Bytes::new()),
            ..get_req("b", "k")
        }),
        "Type",
    );
    bad(
        &mut c,
        Request::Put(RpbPutReq {
            r#type: Some(Bytes::new()),
            ..put_req("b", "k", "v")
        }),
        "Type",
    );
    bad(
        &mut c,
        Request::Put(RpbPutReq {
            vclock: Some(b("not a clock")),
            ..put_req("b", "k", "v")
        }),
        "vclock",
    );
    bad(
        &mut c,
        Request::Get(RpbGetReq {
            if_modified: Some(b("not a clock")),
            ..get_req("b", "k")
        }),
        "vclock",
    );
    // Nothing above was written.
    assert_eq!(get(&mut c, get_req("b", "k")), RpbGetResp::default());
}

#[test]
fn an_empty_vclock_is_a_fresh_one() {
    // Riak reads a zero-length vclock as "no context" (some clients send one for new objects).
    let node = TestNode::start(&[]);
    let mut c = node.pb();
    put(
        &mut c,
        RpbPutReq {
            vclock: Some(Bytes::new()),
            ..put_req("b", "k", "v")
        },
    );
    assert_eq!(values(&get(&mut c, get_req("b", "k")).content), ["v"]);
    let got = get(
        &mut c,
        RpbGetReq {
            if_modified: Some(Bytes::new()),
            ..get_req("b", "k")
        },
    );
    assert_eq!(values(&got.content), ["v"], "an empty clock never matches");
}

#[test]
fn pipelined_requests_are_answered_in_order() {
    let node = TestNode::start(&[]);
    let mut c = node.pb();
    let replies = c.pipeline(&[
        Request::Put(put_req("b", "k", "v")),
        Request::Ping,
        Request::Get(get_req("b", "k")),
        Request::Get(get_req("", "k")),
        Request::Get(get_req("b", "missing")),
        Request::GetServerInfo,
    ]);
    let codes: Vec<u8> = replies.iter().map(|(code, _)| *code).collect();
    assert_eq!(
        codes,
        [
            MessageCode::PutResp,
            MessageCode::PingResp,
            MessageCode::GetResp,
            MessageCode::ErrorResp,
            MessageCode::GetResp,
            MessageCode::GetServerInfoResp,
        ]
        .map(MessageCode::as_u8)
    );
    let got = RpbGetResp::decode(replies[2].1.clone()).unwrap();
    assert_eq!(values(&got.content), ["v"]);
    let missing = RpbGetResp::decode(replies[4].1.clone()).unwrap();
    assert!(missing.content.is_empty());
}

#[cfg(target_os = "linux")]
#[test]
fn pipelined_reads_of_a_large_object_are_not_all_buffered() {
    let node = TestNode::start(&[]);
    let mut c = node.pb();
    let big = "x".repeat(1 << 20);
    put(&mut c, put_req("b", "big", &big));
    let before = common::rss_kib(node.child.id());
    let peak = common::PeakRss::start(node.child.id());
    // 300 reads of 1 MiB arrive in one write: 300 MiB of replies if they were all held.
    let reqs: Vec<Request> = (0..300)
        .map(|_| Request::Get(get_req("b", "big")))
        .collect();
    for (code, body) in c.pipeline(&reqs) {
        assert_eq!(code, MessageCode::GetResp.as_u8());
        assert_eq!(
            RpbGetResp::decode(body).unwrap().content[0].value.len(),
            1 << 20
        );
    }
    let grown_mib = peak.finish().saturating_sub(before) / 1024;
    assert!(
        grown_mib < 64,
        "the node's peak memory grew by {grown_mib} MiB"
    );
}

#[test]
fn oversized_frames_and_objects_are_refused_without_closing() {
    // Object limit 100 000 bytes: frames up to 100 000 + 1 MiB are read.
    let node = TestNode::start(&["--object-size-max", "100000"]);
    let mut c = node.pb();
    let claimed: u32 = 5 * 1024 * 1024;
    let mut raw = Vec::with_capacity(claimed as usize + 4);
    raw.extend_from_slice(&claimed.to_be_bytes());
    raw.push(MessageCode::PutReq.as_u8());
    raw.resize(claimed as usize + 4, b'x');
    c.send_raw(&raw);
    let (code, body) = c.recv();
    assert_eq!(code, MessageCode::ErrorResp.as_u8());
    let msg = error_message(body);
    assert!(msg.contains(&claimed.to_string()), "{msg}");
    assert!(msg.contains("limit"), "{msg}");
    // The whole 5 MB body was skipped: the next frame is read as a frame.
    c.ping();

    // Fits the frame limit, exceeds the object limit.
    let big = "x".repeat(200_000);
    let err = c.call_err(&Request::Put(put_req("b", "big", &big)));
    assert!(
        err.to_lowercase().contains("too large") || err.contains("100000"),
        "{err}"
    );
    c.ping();
    assert_eq!(get(&mut c, get_req("b", "big")), RpbGetResp::default());
    // Just under the object limit is fine.
    let fits = "y".repeat(90_000);
    put(&mut c, put_req("b", "fits", &fits));
    assert_eq!(
        get(&mut c, get_req("b", "fits")).content[0].value.len(),
        90_000
    );
}

#[test]
fn a_client_leaving_mid_frame_does_not_hurt_the_node() {
    let node = TestNode::start(&[]);
    {
        let mut half = node.pb();
        let whole = frame(9, &get_req("b", "k").encode_to_vec());
        half.send_raw(&whole[..whole.len() / 2]);
        half.stream.shutdown(Shutdown::Both).unwrap();
    }
    {
        // Only part of the length prefix.
        let mut half = node.pb();
        half.send_raw(&[0, 0]);
    }
    let mut c = node.pb();
    c.ping();
    put(&mut c, put_req("b", "k", "v"));
    assert_eq!(values(&get(&mut c, get_req("b", "k")).content), ["v"]);
}

#[test]
fn a_client_leaving_mid_listing_does_not_hurt_the_node() {
    let node = TestNode::start(&[]);
    let mut c = node.pb();
    // Long keys, so the listing is far larger than the socket buffers and the server is
    // still writing when the client goes.
    let long = "x".repeat(400);
    let reqs: Vec<Request> = (0..6000)
        .map(|i| Request::Put(put_req("big", &format!("{long}{i}"), "v")))
        .collect();
    for batch in reqs.chunks(200) {
        for (code, _) in c.pipeline(batch) {
            assert_eq!(code, MessageCode::PutResp.as_u8());
        }
    }
    {
        let mut leaving = node.pb();
        leaving.send(&Request::ListKeys(RpbListKeysReq {
            bucket: b("big"),
            timeout: None,
            r#type: None,
        }));
        let (code, body) = leaving.recv();
        assert_eq!(code, MessageCode::ListKeysResp.as_u8());
        assert!(!RpbListKeysResp::decode(body).unwrap().keys.is_empty());
        // Dropped here with the rest of the stream unread.
    }
    let mut fresh = node.pb();
    fresh.ping();
    let (keys, _) = list_keys(&mut fresh, None, "big");
    assert_eq!(keys.len(), 6000);
    // The first connection is still fine too.
    c.ping();
}

#[test]
fn a_key_listing_timeout_ends_a_slow_stream_with_an_error() {
    let node = TestNode::start(&[]);
    let mut c = node.pb();
    fill(&mut c, None, "slow", "k", 300);
    let set = |action: &str| node.set_failpoint("vnode-fold-keys", action);
    // Each key now takes 10 ms to scan: the whole listing would take 3 s.
    set("sleep(10)");
    let started = std::time::Instant::now();
    c.send(&Request::ListKeys(RpbListKeysReq {
        bucket: b("slow"),
        timeout: Some(200),
        r#type: None,
    }));
    let err = loop {
        let (code, body) = c.recv();
        if code == MessageCode::ErrorResp.as_u8() {
            break error_message(body);
        }
        assert_eq!(code, MessageCode::ListKeysResp.as_u8());
        let msg = RpbListKeysResp::decode(body).unwrap();
        assert_ne!(msg.done, Some(true), "the slow listing must not complete");
    };
    assert_eq!(err, "timeout");
    assert!(
        started.elapsed() < std::time::Duration::from_secs(2),
        "{:?}",
        started.elapsed()
    );
    set("off");
    c.ping();
    assert_eq!(list_keys(&mut c, None, "slow").0.len(), 300);
}
