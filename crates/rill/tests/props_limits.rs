//! Bucket properties no ring can serve, and the status of every quorum failure, on a real node
//! (ring of 16 partitions) over raw HTTP and raw PB: refused properties name the property, its
//! value and the limit, on every path that sets them; a bucket keeps serving its keys after a
//! refusal; quorums the ring cannot meet are 503s (RpbErrorResp over PB), invalid requests 400s;
//! properties stored before the check existed are reported at start and can be fixed; and for
//! random property documents and requests no response is a 500.

mod common;

use std::process::Command;

use common::{PbClient, TestNode, b, get_req, http, put_req};
use proptest::prelude::*;
use proptest::test_runner::{Config, TestRunner};
use rill_api::pb::riak::*;
use rill_api::pb::{MessageCode, Request};
use serde_json::{Value, json};

fn status_and_body(resp: ureq::http::Response<ureq::Body>) -> (u16, String) {
    let s = resp.status().as_u16();
    (s, resp.into_body().read_to_string().unwrap_or_default())
}

fn put_value(node: &TestNode, path: &str, value: &str) -> (u16, String) {
    status_and_body(
        http()
            .put(&node.url(path))
            .header("Content-Type", "text/plain")
            .send(value)
            .unwrap(),
    )
}

fn get(node: &TestNode, path: &str) -> (u16, String) {
    status_and_body(http().get(&node.url(path)).call().unwrap())
}

fn put_props(node: &TestNode, path: &str, props: &Value) -> (u16, String) {
    status_and_body(
        http()
            .put(&node.url(path))
            .header("Content-Type", "application/json")
            .send(json!({ "props": props }).to_string())
            .unwrap(),
    )
}

fn pb_get(bucket: &str, key: &str) -> Request {
    Request::Get(get_req(bucket, key))
}

fn admin(node: &TestNode, args: &[&str]) -> (bool, String) {
    let out = Command::new(env!("CARGO_BIN_EXE_rill"))
        .args(["admin", "--node", &node.http.to_string(), "bucket-type"])
        .args(args)
        .output()
        .expect("running rill admin");
    (
        out.status.success(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

#[test]
fn props_no_ring_can_serve_are_refused_on_every_path_and_the_bucket_keeps_serving() {
    let node = TestNode::start(&[]);
    assert_eq!(put_value(&node, "/buckets/b/keys/k", "v").0, 204);
    let before = get(&node, "/buckets/b/props").1;

    let cases = [
        (
            json!({"n_val": 1_000_000}),
            "n_val of 1000000 is larger than the ring's 16 partitions",
        ),
        (
            json!({"n_val": 17}),
            "n_val of 17 is larger than the ring's 16 partitions",
        ),
        (json!({"n_val": 0}), "n_val must be a positive integer"),
        (json!({"r": 4}), "r of 4 is larger than n_val (3)"),
        (json!({"w": 4}), "w of 4 is larger than n_val (3)"),
        (json!({"dw": 5}), "dw of 5 is larger than n_val (3)"),
        (json!({"pr": 4}), "pr of 4 is larger than n_val (3)"),
        (json!({"pw": 9}), "pw of 9 is larger than n_val (3)"),
        (json!({"rw": 4}), "rw of 4 is larger than n_val (3)"),
        (
            json!({"n_val": 2, "w": 3}),
            "w of 3 is larger than n_val (2)",
        ),
    ];
    for (props, message) in &cases {
        for path in [
            "/types/default/buckets/b/props",
            "/buckets/b/props",
            "/riak/b",
        ] {
            let (status, body) = put_props(&node, path, props);
            assert_eq!(status, 400, "{path} {props}: {body}");
            assert!(body.contains(message), "{path} {props}: {body}");
        }
    }
    // Nothing changed, and the bucket serves its key as before.
    assert_eq!(get(&node, "/buckets/b/props").1, before);
    assert_eq!(get(&node, "/buckets/b/keys/k"), (200, "v".into()));
    assert_eq!(put_value(&node, "/buckets/b/keys/k2", "v2").0, 204);

    // Over PB: the same refusals as RpbErrorResp, and the bucket still serves.
    let mut c = node.pb();
    for (props, message) in [
        (
            RpbBucketProps {
                n_val: Some(1_000_000),
                ..Default::default()
            },
            "n_val of 1000000 is larger than the ring's 16 partitions",
        ),
        (
            RpbBucketProps {
                r: Some(4),
                ..Default::default()
            },
            "r of 4 is larger than n_val (3)",
        ),
        (
            RpbBucketProps {
                n_val: Some(1),
                pw: Some(2),
                ..Default::default()
            },
            "pw of 2 is larger than n_val (1)",
        ),
    ] {
        let err = c.call_err(&Request::SetBucket(RpbSetBucketReq {
            bucket: b("b"),
            props: props.clone(),
            r#type: None,
        }));
        assert!(err.contains(message), "{props:?}: {err}");
    }
    let got: RpbGetResp = c.call(&pb_get("b", "k"), MessageCode::GetResp);
    assert_eq!(got.content[0].value, b("v"));

    // Bucket types: `rill admin` create and update, HTTP type props, PB SetBucketType.
    let (ok, err) = admin(&node, &["create", "wide", r#"{"props":{"n_val":64}}"#]);
    assert!(!ok);
    assert!(
        err.contains("n_val of 64 is larger than the ring's 16 partitions") && err.contains("400"),
        "{err}"
    );
    let (ok, err) = admin(&node, &["create", "five", r#"{"props":{"n_val":5}}"#]);
    assert!(ok, "{err}");
    assert!(admin(&node, &["activate", "five"]).0);
    let (ok, err) = admin(&node, &["update", "five", r#"{"props":{"n_val":20}}"#]);
    assert!(!ok);
    assert!(err.contains("n_val of 20 is larger"), "{err}");
    let (ok, err) = admin(&node, &["update", "five", r#"{"props":{"r":6}}"#]);
    assert!(!ok);
    assert!(err.contains("r of 6 is larger than n_val (5)"), "{err}");
    let (status, body) = put_props(&node, "/types/five/props", &json!({"n_val": 1000}));
    assert_eq!(status, 400, "{body}");
    let err = c.call_err(&Request::SetBucketType(RpbSetBucketTypeReq {
        r#type: b("five"),
        props: RpbBucketProps {
            n_val: Some(17),
            ..Default::default()
        },
    }));
    assert!(err.contains("n_val of 17 is larger"), "{err}");
    // A type change that would break one of its buckets names the bucket.
    let (status, body) = put_props(&node, "/types/five/buckets/all5/props", &json!({"w": 5}));
    assert_eq!(status, 204, "{body}");
    let (ok, err) = admin(&node, &["update", "five", r#"{"props":{"n_val":3}}"#]);
    assert!(!ok);
    assert!(
        err.contains("it would break bucket five/all5: w of 5 is larger than n_val (3)"),
        "{err}"
    );
    assert!(admin(&node, &["update", "five", r#"{"props":{"n_val":6}}"#]).0);
    c.ping();
}

/// Every quorum failure a single node can produce, over both protocols: unmet quorums are
/// 503 (HTTP) and RpbErrorResp (PB) with Riak's text; a request invalid on its own is 400.
#[test]
#[cfg_attr(not(feature = "failpoints"), ignore = "needs --features failpoints")]
fn unmet_quorums_are_503_and_invalid_requests_400() {
    let node = TestNode::start(&[]);
    let mut c = node.pb();
    let url = "/buckets/b/keys/k";
    assert_eq!(put_value(&node, url, "v").0, 204);

    // r_val_unsatisfied: two of three replicas fail the read.
    node.set_failpoint("vnode-get", "2*return");
    let (s, body) = get(&node, url);
    assert_eq!(s, 503, "{body}");
    assert!(body.starts_with("R-value unsatisfied: "), "{body}");
    node.set_failpoint("vnode-get", "2*return");
    assert!(
        c.call_err(&pb_get("b", "k"))
            .contains("R-value unsatisfied")
    );

    // pr_val_unsatisfied: every primary must answer, one fails.
    node.set_failpoint("vnode-get", "1*return");
    let (s, body) = get(&node, &format!("{url}?pr=3"));
    assert_eq!(s, 503, "{body}");
    assert!(body.contains("PR-value unsatisfied"), "{body}");
    node.set_failpoint("vnode-get", "1*return");
    let err = c.call_err(&Request::Get(RpbGetReq {
        pr: Some(3),
        ..RpbGetReq {
            bucket: b("b"),
            key: b("k"),
            ..Default::default()
        }
    }));
    assert!(err.contains("PR-value unsatisfied"), "{err}");

    // w_val_unsatisfied: two replicas refuse the write.
    node.set_failpoint("vnode-replica-put", "2*return");
    let (s, body) = put_value(&node, url, "w");
    assert_eq!(s, 503, "{body}");
    assert!(body.contains("-value unsatisfied"), "{body}");
    node.set_failpoint("vnode-replica-put", "2*return");
    let err = c.call_err(&Request::Put(put_req("b", "k", "w")));
    assert!(err.contains("-value unsatisfied"), "{err}");

    // pw: every primary must take the write, one refuses.
    node.set_failpoint("vnode-replica-put", "1*return");
    let (s, body) = put_value(&node, &format!("{url}?pw=3"), "w");
    assert_eq!(s, 503, "{body}");
    assert!(body.contains("-value unsatisfied"), "{body}");
    node.set_failpoint("vnode-replica-put", "1*return");
    let err = c.call_err(&Request::Put(RpbPutReq {
        pw: Some(3),
        ..put_req("b", "k", "w")
    }));
    assert!(err.contains("-value unsatisfied"), "{err}");

    // The coordinating replica fails: the storage's reason, as an availability answer.
    node.set_failpoint("vnode-coordinate-put", "1*return");
    let (s, body) = put_value(&node, url, "w");
    assert_eq!(s, 503, "{body}");
    assert!(body.contains("vnode-coordinate-put"), "{body}");
    node.set_failpoint("vnode-coordinate-put", "1*return");
    let err = c.call_err(&Request::Put(put_req("b", "k", "w")));
    assert!(err.contains("vnode-coordinate-put"), "{err}");

    // The commit of this node's replicas fails (as on a full disk): the storage's reason too,
    // not the unmet quorum it causes. (Another key: what a write whose commit failed leaves
    // readable is unspecified, and the checks below expect `k` unchanged.)
    node.set_failpoint("node-commit", "1*return");
    let (s, body) = put_value(&node, "/buckets/b/keys/kc", "w");
    assert_eq!(s, 503, "{body}");
    assert!(
        body.starts_with("storage: Io: injected fault at node-commit"),
        "{body}"
    );
    node.set_failpoint("node-commit", "1*return");
    let err = c.call_err(&Request::Put(put_req("b", "kc", "w")));
    assert!(err.contains("node-commit"), "{err}");

    // n_val_violation: a request asking for more replies than the bucket has replicas.
    for q in ["r=4", "pr=4"] {
        let (s, body) = get(&node, &format!("{url}?{q}"));
        assert_eq!(s, 400, "{q}: {body}");
        assert!(body.contains("n_val"), "{q}: {body}");
    }
    for q in ["w=4", "dw=4", "pw=4"] {
        let (s, body) = put_value(&node, &format!("{url}?{q}"), "x");
        assert_eq!(s, 400, "{q}: {body}");
    }
    let (s, _) = status_and_body(
        http()
            .delete(&node.url(&format!("{url}?rw=4")))
            .call()
            .unwrap(),
    );
    assert_eq!(s, 400);
    // And nothing is left broken.
    assert_eq!(get(&node, url), (200, "v".into()));
    c.ping();
}

/// Properties stored by a version of Rill that did not check them (here written into the data
/// directory directly, as that version stored them): the node starts, logs a warning naming the
/// bucket, answers its requests with 503 `insufficient_vnodes` rather than 500, serves every
/// other bucket, and once the properties are fixed the bucket's data is readable again.
#[test]
fn stored_props_no_ring_can_serve_are_reported_and_fixable() {
    let dir = tempfile::tempdir().unwrap();
    let mut node = TestNode::start_in(dir.path(), &[]);
    assert_eq!(put_value(&node, "/buckets/huge/keys/k", "kept").0, 204);
    assert_eq!(put_value(&node, "/buckets/fine/keys/k", "fine").0, 204);
    assert!(node.terminate());
    drop(node);
    {
        let backend = rill_storage::FjallBackend::open(dir.path(), Default::default()).unwrap();
        let bucket = rill_core::bkey::Bucket::new("default", "huge").unwrap();
        let mut key = b"bucket/".to_vec();
        key.extend_from_slice(&bucket.storage_prefix());
        use rill_storage::Backend;
        backend
            .metadata()
            .put(&key, br#"{"n_val":1000000}"#)
            .unwrap();
    }

    let node = TestNode::start_in(dir.path(), &[]);
    let warnings = node.log_lines("WARN");
    assert!(
        warnings
            .iter()
            .any(|l| l.contains("bucket huge") && l.contains("n_val of 1000000")),
        "{warnings:?}"
    );
    let (s, body) = get(&node, "/buckets/huge/keys/k");
    assert_eq!(
        (s, body.as_str()),
        (503, "Error:\n{insufficient_vnodes,16,need,500001}\n")
    );
    let (s, body) = put_value(&node, "/buckets/huge/keys/k2", "x");
    assert_eq!(s, 503, "{body}");
    let mut c = node.pb();
    assert!(
        c.call_err(&pb_get("huge", "k"))
            .contains("insufficient_vnodes")
    );
    assert_eq!(get(&node, "/buckets/fine/keys/k"), (200, "fine".into()));
    // A change that keeps the bad value is refused, naming it; the fix is taken.
    let (s, body) = put_props(&node, "/buckets/huge/props", &json!({"r": 1}));
    assert_eq!(s, 400);
    assert!(body.contains("n_val of 1000000"), "{body}");
    assert_eq!(
        put_props(&node, "/buckets/huge/props", &json!({"n_val": 3})).0,
        204
    );
    assert_eq!(get(&node, "/buckets/huge/keys/k"), (200, "kept".into()));
    let got: RpbGetResp = c.call(&pb_get("huge", "k"), MessageCode::GetResp);
    assert_eq!(got.content[0].value, b("kept"));
}

/// A JSON value of the kinds property documents carry, biased to the edges.
fn json_value() -> impl Strategy<Value = Value> {
    prop_oneof![
        4 => (0u64..6).prop_map(Value::from),
        // Around the ring's 16 partitions, and far beyond it.
        2 => (14u64..19).prop_map(Value::from),
        3 => prop::sample::select(vec![
            100u64,
            1_000_000,
            u64::from(u32::MAX) - 4,
            u64::from(u32::MAX),
            1_000_000_000_000
        ])
        .prop_map(Value::from),
        1 => Just(json!(-1)),
        1 => Just(json!(1.5)),
        2 => prop::sample::select(vec!["one", "quorum", "all", "default", "3", "x", "", "true"])
            .prop_map(Value::from),
        1 => any::<bool>().prop_map(Value::from),
        1 => Just(Value::Null),
        1 => Just(json!([{"mod": "m", "fun": "f"}])),
        1 => Just(json!({"mod": "riak_core_util", "fun": "chash_std_keyfun"})),
        1 => prop::sample::select(vec!["counter", "map", "hll", "backend"]).prop_map(Value::from),
    ]
}

fn props_document() -> impl Strategy<Value = Value> {
    let keys = prop::sample::select(vec![
        "r",
        "w",
        "dw",
        "rw",
        "pr",
        "pw",
        "node_confirms",
        "allow_mult",
        "last_write_wins",
        "dvv_enabled",
        "basic_quorum",
        "notfound_ok",
        "datatype",
        "hll_precision",
        "precommit",
        "chash_keyfun",
        "old_vclock",
        "young_vclock",
        "sync_on_write",
        "consistent",
        "write_once",
        "search_index",
    ]);
    // n_val in half the documents: it decides what every quorum means.
    (
        prop::option::of(json_value()),
        prop::collection::btree_map(keys, json_value(), 0..3),
    )
        .prop_map(|(n_val, m)| {
            let mut doc: serde_json::Map<String, Value> =
                m.into_iter().map(|(k, v)| (k.to_string(), v)).collect();
            if let Some(n) = n_val {
                doc.insert("n_val".into(), n);
            }
            Value::Object(doc)
        })
}

/// One client request with random quorum parameters.
#[derive(Debug, Clone)]
enum Op {
    HttpGet(Vec<(&'static str, String)>),
    HttpPut(Vec<(&'static str, String)>),
    HttpDelete(Vec<(&'static str, String)>),
    HttpProps,
    HttpKeys,
    HttpPreflist,
    PbGet {
        r: Option<u32>,
        pr: Option<u32>,
        n_val: Option<u32>,
    },
    PbPut {
        w: Option<u32>,
        dw: Option<u32>,
        pw: Option<u32>,
        n_val: Option<u32>,
    },
    PbBucket,
}

fn query_value() -> impl Strategy<Value = String> {
    prop::sample::select(vec![
        "0", "1", "2", "3", "4", "16", "17", "one", "quorum", "all", "default", "x",
    ])
    .prop_map(String::from)
}

fn params(names: &'static [&'static str]) -> impl Strategy<Value = Vec<(&'static str, String)>> {
    prop::collection::vec((prop::sample::select(names), query_value()), 0..3)
}

fn pb_quorum() -> impl Strategy<Value = Option<u32>> {
    prop_oneof![
        Just(None),
        (0u32..6).prop_map(Some),
        Just(Some(17)),
        Just(Some(u32::MAX - 1)),
        Just(Some(u32::MAX - 2)),
        Just(Some(u32::MAX - 3)),
        Just(Some(u32::MAX - 4)),
        Just(Some(u32::MAX)),
    ]
}

fn op() -> impl Strategy<Value = Op> {
    prop_oneof![
        params(&["r", "pr", "basic_quorum", "notfound_ok"]).prop_map(Op::HttpGet),
        params(&["w", "dw", "pw", "returnbody"]).prop_map(Op::HttpPut),
        params(&["rw", "r", "w", "pr", "pw", "dw"]).prop_map(Op::HttpDelete),
        Just(Op::HttpProps),
        Just(Op::HttpKeys),
        Just(Op::HttpPreflist),
        (pb_quorum(), pb_quorum(), pb_quorum()).prop_map(|(r, pr, n_val)| Op::PbGet {
            r,
            pr,
            n_val
        }),
        (pb_quorum(), pb_quorum(), pb_quorum(), pb_quorum())
            .prop_map(|(w, dw, pw, n_val)| Op::PbPut { w, dw, pw, n_val }),
        Just(Op::PbBucket),
    ]
}

/// Where a case sets its properties: a bucket of the default type, a bucket of a created
/// type, or the created type itself.
#[derive(Debug, Clone, Copy)]
enum Target {
    DefaultBucket,
    TypedBucket,
    Type,
}

fn query(params: &[(&str, String)]) -> String {
    let parts: Vec<String> = params.iter().map(|(k, v)| format!("{k}={v}")).collect();
    format!("?{}", parts.join("&"))
}

fn run_op(node: &TestNode, c: &mut PbClient, btype: &str, op: &Op) -> Result<(), String> {
    let base = format!("/types/{btype}/buckets/b");
    let status = match op {
        Op::HttpGet(p) => get(node, &format!("{base}/keys/k{}", query(p))),
        Op::HttpPut(p) => put_value(node, &format!("{base}/keys/k{}", query(p)), "v"),
        Op::HttpDelete(p) => status_and_body(
            http()
                .delete(&node.url(&format!("{base}/keys/gone{}", query(p))))
                .call()
                .unwrap(),
        ),
        Op::HttpProps => get(node, &format!("{base}/props")),
        Op::HttpKeys => get(node, &format!("{base}/keys?keys=true")),
        Op::HttpPreflist => get(node, &format!("{base}/keys/k/preflist")),
        Op::PbGet { r, pr, n_val } => {
            return pb_answer(
                c,
                Request::Get(RpbGetReq {
                    bucket: b("b"),
                    key: b("k"),
                    r: *r,
                    pr: *pr,
                    n_val: *n_val,
                    r#type: Some(b(btype)),
                    ..Default::default()
                }),
                MessageCode::GetResp,
            );
        }
        Op::PbPut { w, dw, pw, n_val } => {
            return pb_answer(
                c,
                Request::Put(RpbPutReq {
                    w: *w,
                    dw: *dw,
                    pw: *pw,
                    n_val: *n_val,
                    r#type: Some(b(btype)),
                    ..put_req("b", "k", "v")
                }),
                MessageCode::PutResp,
            );
        }
        Op::PbBucket => {
            return pb_answer(
                c,
                Request::GetBucket(RpbGetBucketReq {
                    bucket: b("b"),
                    r#type: Some(b(btype)),
                }),
                MessageCode::GetBucketResp,
            );
        }
    };
    match status {
        (500..=502 | 504..=599, body) => Err(format!("{op:?} answered {}: {body}", status.0)),
        _ => Ok(()),
    }
}

/// A PB request is answered with its response or an RpbErrorResp, never by a closed socket.
fn pb_answer(c: &mut PbClient, req: Request, expect: MessageCode) -> Result<(), String> {
    c.send(&req);
    let (code, _) = c.recv();
    if code == expect.as_u8() || code == MessageCode::ErrorResp.as_u8() {
        Ok(())
    } else {
        Err(format!("{req:?} answered with code {code}"))
    }
}

#[test]
fn random_props_and_requests_never_answer_500() {
    let node = TestNode::start(&[]);
    node.create_bucket_type("t", "{}");
    let c = std::cell::RefCell::new(node.pb());
    let mut runner = TestRunner::new(Config {
        cases: 256,
        failure_persistence: None,
        ..Config::default()
    });
    let target = prop_oneof![
        Just(Target::DefaultBucket),
        Just(Target::TypedBucket),
        Just(Target::Type)
    ];
    let case = (
        target,
        props_document(),
        any::<bool>(),
        prop::collection::vec(op(), 1..6),
    );
    runner
        .run(&case, |(target, doc, reset, ops)| {
            let (btype, path) = match target {
                Target::DefaultBucket => ("default", "/types/default/buckets/b/props"),
                Target::TypedBucket => ("t", "/types/t/buckets/b/props"),
                Target::Type => ("t", "/types/t/props"),
            };
            let (status, body) = put_props(&node, path, &doc);
            prop_assert!(
                status == 204 || status == 400,
                "{path} {doc}: {status} {body}"
            );
            for op in &ops {
                run_op(&node, &mut c.borrow_mut(), btype, op).map_err(TestCaseError::fail)?;
            }
            if reset {
                let resp = http().delete(&node.url(path)).call().unwrap();
                prop_assert!(resp.status().as_u16() < 500);
            }
            Ok(())
        })
        .unwrap();
    c.borrow_mut().ping();
    assert_eq!(get(&node, "/ping"), (200, "OK".into()));
}
