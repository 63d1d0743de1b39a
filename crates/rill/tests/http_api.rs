//! The HTTP API of a real node, over raw HTTP: objects and their headers, siblings, conditional
//! requests, properties, bucket types, listing, preflists, operational endpoints, and bad input.

mod common;

use base64::Engine;
use common::{TestNode, http};
use serde_json::Value;

fn json(resp: ureq::http::Response<ureq::Body>) -> Value {
    let text = resp.into_body().read_to_string().unwrap();
    serde_json::from_str(&text).unwrap_or_else(|e| panic!("not JSON ({e}): {text}"))
}

fn body(resp: ureq::http::Response<ureq::Body>) -> String {
    resp.into_body().read_to_string().unwrap()
}

fn header(resp: &ureq::http::Response<ureq::Body>, name: &str) -> Option<String> {
    resp.headers()
        .get(name)
        .map(|v| v.to_str().unwrap().to_string())
}

#[test]
fn put_then_get_round_trips_value_and_metadata() {
    let node = TestNode::start(&[]);
    let h = http();
    let url = node.url("/types/default/buckets/b/keys/k");
    let resp = h
        .put(&url)
        .header("Content-Type", "text/plain; charset=utf-8")
        .header("X-Riak-Meta-Colour", "blue")
        .header("X-Riak-Index-Email_bin", "a@b.c")
        .header("X-Riak-Index-Age_int", "42")
        .header("Link", "</buckets/other/keys/o1>; riaktag=\"friend\"")
        .send("hello")
        .unwrap();
    assert_eq!(resp.status(), 204);

    let resp = h.get(&url).call().unwrap();
    assert_eq!(resp.status(), 200);
    assert_eq!(
        header(&resp, "content-type").unwrap(),
        "text/plain; charset=utf-8"
    );
    assert_eq!(header(&resp, "x-riak-meta-colour").unwrap(), "blue");
    assert_eq!(header(&resp, "x-riak-index-email_bin").unwrap(), "a@b.c");
    assert_eq!(header(&resp, "x-riak-index-age_int").unwrap(), "42");
    let links = header(&resp, "link").unwrap();
    assert!(
        links.contains("</buckets/other/keys/o1>; riaktag=\"friend\""),
        "{links}"
    );
    assert!(links.contains("</buckets/b>; rel=\"up\""), "{links}");
    assert!(
        !links.contains("/types/default"),
        "default-type links use /buckets: {links}"
    );
    assert!(header(&resp, "etag").unwrap().starts_with('"'));
    assert!(header(&resp, "last-modified").unwrap().ends_with("GMT"));
    let vclock = header(&resp, "x-riak-vclock").unwrap();
    assert!(
        base64::engine::general_purpose::STANDARD
            .decode(&vclock)
            .is_ok()
    );
    assert_eq!(body(resp), "hello");

    // The same object under the other two URL families.
    assert_eq!(
        body(h.get(&node.url("/buckets/b/keys/k")).call().unwrap()),
        "hello"
    );
    assert_eq!(body(h.get(&node.url("/riak/b/k")).call().unwrap()), "hello");
}

#[test]
fn returnbody_post_and_missing_keys() {
    let node = TestNode::start(&[]);
    let h = http();
    let resp = h
        .put(&node.url("/buckets/b/keys/k?returnbody=true"))
        .header("Content-Type", "application/json")
        .send("{\"a\":1}")
        .unwrap();
    assert_eq!(resp.status(), 200);
    assert_eq!(header(&resp, "content-type").unwrap(), "application/json");
    assert_eq!(body(resp), "{\"a\":1}");

    let resp = h
        .post(&node.url("/buckets/b/keys"))
        .header("Content-Type", "text/plain")
        .send("generated")
        .unwrap();
    assert_eq!(resp.status(), 201);
    let location = header(&resp, "location").unwrap();
    assert!(location.starts_with("/buckets/b/keys/"), "{location}");
    assert_eq!(
        body(h.get(&node.url(&location)).call().unwrap()),
        "generated"
    );

    let resp = h.get(&node.url("/buckets/b/keys/nope")).call().unwrap();
    assert_eq!(resp.status(), 404);
    assert!(header(&resp, "x-riak-vclock").is_none());
}

#[test]
fn delete_leaves_a_tombstone_clock_on_404() {
    let node = TestNode::start(&["--delete-mode", "keep"]);
    let h = http();
    let url = node.url("/buckets/b/keys/k");
    h.put(&url)
        .header("Content-Type", "text/plain")
        .send("x")
        .unwrap();
    assert_eq!(h.delete(&url).call().unwrap().status(), 204);
    let resp = h.get(&url).call().unwrap();
    assert_eq!(resp.status(), 404);
    assert!(
        header(&resp, "x-riak-vclock").is_some(),
        "tombstone clock expected"
    );
    // Deleting what is gone is a 404.
    assert_eq!(
        h.delete(&node.url("/buckets/b/keys/never"))
            .call()
            .unwrap()
            .status(),
        404
    );
    // A write after the delete brings the key back.
    h.put(&url)
        .header("Content-Type", "text/plain")
        .send("again")
        .unwrap();
    assert_eq!(body(h.get(&url).call().unwrap()), "again");
}

/// Writes and deletes a key on a node started with `--delete-mode MODE`, then waits for the
/// tombstone to be reaped: the key leaves the listing and its 404 carries no clock.
fn tombstone_is_reaped(mode: &str) {
    let node = TestNode::start(&["--delete-mode", mode]);
    let h = http();
    let url = node.url("/buckets/reap/keys/k");
    let put = h
        .put(&url)
        .header("Content-Type", "text/plain")
        .send("x")
        .unwrap();
    assert_eq!(put.status(), 204);
    let resp = h.get(&url).call().unwrap();
    assert_eq!(resp.status(), 200);
    assert_eq!(body(resp), "x");
    assert_eq!(h.delete(&url).call().unwrap().status(), 204);
    // The reap runs in the background after the delete: the key leaves the listing.
    let listing = node.url("/buckets/reap/keys?keys=true");
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    let mut keys = json(h.get(&listing).call().unwrap());
    while keys["keys"] != serde_json::json!([]) && std::time::Instant::now() < deadline {
        std::thread::sleep(std::time::Duration::from_millis(50));
        keys = json(h.get(&listing).call().unwrap());
    }
    assert_eq!(keys["keys"], serde_json::json!([]), "delete mode {mode}");
    let resp = h.get(&url).call().unwrap();
    assert_eq!(resp.status(), 404);
    assert!(
        header(&resp, "x-riak-vclock").is_none(),
        "reaped: no tombstone left"
    );
    let stats = json(h.get(&node.url("/stats")).call().unwrap());
    assert_eq!(stats["tombstones_reaped_total"], 3, "one per replica");
}

#[test]
fn tombstones_are_reaped_with_delete_mode_immediate() {
    tombstone_is_reaped("immediate");
}

#[test]
fn tombstones_are_reaped_after_a_delete_mode_delay() {
    tombstone_is_reaped("300");
}

#[test]
fn siblings_are_kept_listed_and_resolved() {
    let node = TestNode::start(&[]);
    let h = http();
    let props = h
        .put(&node.url("/buckets/s/props"))
        .header("Content-Type", "application/json")
        .send("{\"props\":{\"allow_mult\":true}}")
        .unwrap();
    assert_eq!(props.status(), 204);
    let url = node.url("/buckets/s/keys/k");
    let first = h
        .put(&url)
        .header("Content-Type", "text/plain")
        .send("one")
        .unwrap();
    assert_eq!(first.status(), 204);
    // A write that makes siblings and asks for the body gets them all, as a GET would.
    let second = h
        .put(&format!("{url}?returnbody=true"))
        .header("Content-Type", "text/plain")
        .header("Accept", "multipart/mixed")
        .send("two")
        .unwrap();
    assert_eq!(second.status(), 300);
    let ctype = header(&second, "content-type").unwrap();
    assert!(ctype.starts_with("multipart/mixed"), "{ctype}");
    let returned = body(second);
    assert!(
        returned.contains("\r\n\r\none\r\n") && returned.contains("\r\n\r\ntwo\r\n"),
        "{returned:?}"
    );
    let resp = h.get(&url).header("Accept", "text/plain").call().unwrap();
    assert_eq!(resp.status(), 300);
    let vclock = header(&resp, "x-riak-vclock").unwrap();
    let text = body(resp);
    let vtags: Vec<&str> = text.lines().skip(1).collect();
    assert!(text.starts_with("Siblings:"), "{text}");
    assert_eq!(vtags.len(), 2);

    let resp = h
        .get(&url)
        .header("Accept", "multipart/mixed")
        .call()
        .unwrap();
    assert_eq!(resp.status(), 300);
    let ctype = header(&resp, "content-type").unwrap();
    let boundary = ctype.split("boundary=").nth(1).unwrap().to_string();
    let text = body(resp);
    let inner = text
        .strip_prefix(&format!("\r\n--{boundary}\r\n"))
        .and_then(|t| t.strip_suffix(&format!("\r\n--{boundary}--\r\n")))
        .unwrap_or_else(|| panic!("not multipart with boundary {boundary}: {text:?}"));
    // Each part: its headers (an Etag among them, the quoted vtag), a blank line, the value.
    let mut by_vtag: Vec<(String, String)> = inner
        .split(&format!("\r\n--{boundary}\r\n"))
        .map(|part| {
            let (head, value) = part.split_once("\r\n\r\n").expect("part headers");
            let etag = head
                .lines()
                .find_map(|l| l.strip_prefix("Etag: "))
                .unwrap_or_else(|| panic!("part without an Etag: {part:?}"));
            (etag.trim_matches('"').to_string(), value.to_string())
        })
        .collect();
    by_vtag.sort_by(|a, b| a.1.cmp(&b.1));
    let values: Vec<&str> = by_vtag.iter().map(|(_, v)| v.as_str()).collect();
    assert_eq!(values, ["one", "two"]);
    let mut listed = vtags.clone();
    listed.sort();
    let mut tagged: Vec<&str> = by_vtag.iter().map(|(t, _)| t.as_str()).collect();
    tagged.sort();
    assert_eq!(listed, tagged, "the text listing names the siblings' vtags");

    // `?vtag=V` answers exactly the sibling V, whichever position it has.
    for (vtag, value) in &by_vtag {
        let resp = h.get(&format!("{url}?vtag={vtag}")).call().unwrap();
        assert_eq!(resp.status(), 200);
        assert_eq!(header(&resp, "etag").unwrap(), format!("\"{vtag}\""));
        assert_eq!(header(&resp, "x-riak-vclock").unwrap(), vclock);
        assert_eq!(body(resp), *value, "sibling {vtag}");
    }
    let resp = h.get(&format!("{url}?vtag=nosuchvtag")).call().unwrap();
    assert_eq!(resp.status(), 404);

    // Writing back with the clock read resolves the siblings.
    h.put(&url)
        .header("Content-Type", "text/plain")
        .header("X-Riak-Vclock", &vclock)
        .send("merged")
        .unwrap();
    let resp = h.get(&url).call().unwrap();
    assert_eq!(resp.status(), 200);
    assert_eq!(body(resp), "merged");
}

#[test]
fn conditional_requests() {
    let node = TestNode::start(&[]);
    let h = http();
    let url = node.url("/buckets/c/keys/k");
    let put = |extra: (&str, &str)| {
        h.put(&url)
            .header("Content-Type", "text/plain")
            .header(extra.0, extra.1)
            .send("v")
            .unwrap()
            .status()
    };
    assert_eq!(put(("If-None-Match", "*")), 204, "nothing there yet");
    assert_eq!(put(("If-None-Match", "*")), 412, "now it exists");
    assert_eq!(put(("If-Match", "\"not-the-etag\"")), 412);

    let resp = h.get(&url).call().unwrap();
    let etag = header(&resp, "etag").unwrap();
    let vclock = header(&resp, "x-riak-vclock").unwrap();
    assert_eq!(
        h.get(&url)
            .header("If-None-Match", &etag)
            .call()
            .unwrap()
            .status(),
        304
    );
    assert_eq!(put(("If-Match", &etag)), 204);
    // The clock moved on: a write conditional on the old one conflicts.
    assert_eq!(put(("X-Riak-If-Not-Modified", &vclock)), 409);
    let current = header(&h.get(&url).call().unwrap(), "x-riak-vclock").unwrap();
    assert_eq!(put(("X-Riak-If-Not-Modified", &current)), 204);
}

#[test]
fn bucket_props_get_set_reset_and_validation() {
    let node = TestNode::start(&[]);
    let h = http();
    let url = node.url("/buckets/p/props");
    let props = json(h.get(&url).call().unwrap());
    let p = &props["props"];
    assert_eq!(p["name"], "p");
    assert_eq!(p["n_val"], 3);
    assert_eq!(p["allow_mult"], false);
    assert_eq!(p["r"], "quorum");
    assert_eq!(p["pr"], 0);
    assert_eq!(p["notfound_ok"], true);

    let set = |b: &str| {
        h.put(&url)
            .header("Content-Type", "application/json")
            .send(b)
            .unwrap()
    };
    assert_eq!(set("{\"props\":{\"n_val\":2,\"r\":\"one\"}}").status(), 204);
    let p = json(h.get(&url).call().unwrap());
    assert_eq!(p["props"]["n_val"], 2);
    assert_eq!(p["props"]["r"], "one");

    let bad = set("{\"props\":{\"n_val\":\"three\"}}");
    assert_eq!(bad.status(), 400);
    assert!(body(bad).contains("n_val"));
    assert_eq!(set("not json").status(), 400);
    assert_eq!(set("{\"nope\":{}}").status(), 400);

    assert_eq!(h.delete(&url).call().unwrap().status(), 204);
    assert_eq!(json(h.get(&url).call().unwrap())["props"]["n_val"], 3);
}

#[test]
fn bucket_types_through_admin_and_typed_buckets() {
    let node = TestNode::start(&[]);
    let h = http();
    let unknown = h
        .get(&node.url("/types/nosuch/buckets/b/keys/k"))
        .call()
        .unwrap();
    assert_eq!(unknown.status(), 404);
    assert!(body(unknown).contains("nosuch"));

    let created = h
        .post(&node.url("/admin/bucket-types/maps"))
        .header("Content-Type", "application/json")
        .send("{\"props\":{\"n_val\":2}}")
        .unwrap();
    assert_eq!(created.status(), 201);
    // Not usable until activated.
    let inactive = h
        .put(&node.url("/types/maps/buckets/b/keys/k"))
        .header("Content-Type", "text/plain")
        .send("x")
        .unwrap();
    assert!(inactive.status().is_client_error(), "{}", inactive.status());
    assert_eq!(
        h.post(&node.url("/admin/bucket-types/maps/activate"))
            .send_empty()
            .unwrap()
            .status(),
        204
    );
    let p = json(h.get(&node.url("/types/maps/props")).call().unwrap());
    assert_eq!(p["props"]["allow_mult"], true);
    assert_eq!(p["props"]["dvv_enabled"], true);
    assert_eq!(p["props"]["n_val"], 2);

    let typed = node.url("/types/maps/buckets/b/keys/k");
    h.put(&typed)
        .header("Content-Type", "text/plain")
        .send("typed")
        .unwrap();
    assert_eq!(body(h.get(&typed).call().unwrap()), "typed");
    // The default type's bucket of the same name is a different bucket.
    assert_eq!(
        h.get(&node.url("/buckets/b/keys/k"))
            .call()
            .unwrap()
            .status(),
        404
    );
    let list = json(h.get(&node.url("/admin/bucket-types")).call().unwrap());
    let names: Vec<&str> = list["types"]
        .as_array()
        .unwrap()
        .iter()
        .map(|t| t["name"].as_str().unwrap())
        .collect();
    assert_eq!(names, ["default", "maps"]);
}

#[test]
fn listing_keys_and_buckets_streams_every_key_once() {
    let node = TestNode::start(&[]);
    let h = http();
    let mut pb = node.pb();
    for i in 0..2500 {
        let req = rill_api::pb::Request::Put(rill_api::pb::riak::RpbPutReq {
            bucket: "many".into(),
            key: Some(format!("k{i}").into()),
            content: rill_api::pb::riak::RpbContent {
                value: "v".into(),
                ..Default::default()
            },
            ..Default::default()
        });
        let _: rill_api::pb::riak::RpbPutResp = pb.call(&req, rill_api::pb::MessageCode::PutResp);
    }
    h.put(&node.url("/buckets/other/keys/x"))
        .header("Content-Type", "text/plain")
        .send("x")
        .unwrap();

    let all = json(
        h.get(&node.url("/buckets/many/keys?keys=true"))
            .call()
            .unwrap(),
    );
    let mut keys: Vec<String> = all["keys"]
        .as_array()
        .unwrap()
        .iter()
        .map(|k| k.as_str().unwrap().to_string())
        .collect();
    keys.sort();
    let mut expected: Vec<String> = (0..2500).map(|i| format!("k{i}")).collect();
    expected.sort();
    assert_eq!(keys, expected);

    let streamed = body(
        h.get(&node.url("/buckets/many/keys?keys=stream"))
            .call()
            .unwrap(),
    );
    let mut count = 0;
    for chunk in serde_json::Deserializer::from_str(&streamed).into_iter::<Value>() {
        count += chunk.unwrap()["keys"].as_array().unwrap().len();
    }
    assert_eq!(count, 2500);

    let buckets = json(h.get(&node.url("/buckets?buckets=true")).call().unwrap());
    let mut names: Vec<&str> = buckets["buckets"]
        .as_array()
        .unwrap()
        .iter()
        .map(|b| b.as_str().unwrap())
        .collect();
    names.sort();
    assert_eq!(names, ["many", "other"]);
    assert_eq!(
        h.get(&node.url("/buckets/many/keys"))
            .call()
            .unwrap()
            .status(),
        400
    );
}

#[test]
fn preflist_ping_stats_and_resource_map() {
    let node = TestNode::start(&[]);
    let h = http();
    let pl = json(
        h.get(&node.url("/buckets/b/keys/k/preflist"))
            .call()
            .unwrap(),
    );
    let entries = pl["preflist"].as_array().unwrap();
    assert_eq!(entries.len(), 3);
    let first = entries[0]["partition"].as_u64().unwrap();
    for (i, e) in entries.iter().enumerate() {
        assert_eq!(e["partition"].as_u64().unwrap(), (first + i as u64) % 16);
        assert_eq!(e["primary"], true);
        assert_eq!(e["node"], "rill@127.0.0.1");
    }

    assert_eq!(body(h.get(&node.url("/ping")).call().unwrap()), "OK");
    h.put(&node.url("/buckets/b/keys/k"))
        .header("Content-Type", "text/plain")
        .send("x")
        .unwrap();
    h.get(&node.url("/buckets/b/keys/k")).call().unwrap();
    let stats = json(h.get(&node.url("/stats")).call().unwrap());
    assert_eq!(stats["riak_kv_version"], "3.2.3");
    assert_eq!(stats["nodename"], "rill@127.0.0.1");
    assert_eq!(stats["ring_creation_size"], 16);
    assert!(stats["node_gets_total"].as_u64().unwrap() >= 1);
    assert!(stats["node_puts_total"].as_u64().unwrap() >= 1);
    assert!(stats["rill_version"].is_string());
    assert!(
        stats["object_cache_bytes"].as_u64().unwrap() > 0,
        "the object read is cached"
    );
    assert!(
        stats["storage_journal_bytes"].as_u64().unwrap() > 0,
        "the write is journaled"
    );
    for k in [
        "storage_write_buffer_bytes",
        "storage_block_cache_bytes",
        "storage_fsyncs_total",
        "storage_journal_batches_total",
        "storage_journal_flushes_total",
        "storage_tables",
        "storage_l0_tables",
        "storage_sealed_memtables",
        "storage_l0_tables_max",
        "storage_compactions_total",
        "storage_compaction_ms_total",
    ] {
        assert!(stats[k].is_u64(), "{k}");
    }
    for k in [
        "node_get_fsm_time_mean",
        "node_get_fsm_time_median",
        "node_get_fsm_time_95",
        "node_get_fsm_time_99",
        "node_get_fsm_time_100",
    ] {
        assert!(stats[k].is_u64(), "{k}");
    }

    let map = json(
        h.get(&node.url("/"))
            .header("Accept", "application/json")
            .call()
            .unwrap(),
    );
    for k in [
        "riak_kv_wm_buckets",
        "riak_kv_wm_bucket_type",
        "riak_kv_wm_preflist",
        "riak_kv_wm_stats",
        "riak_kv_wm_ping",
    ] {
        assert!(map[k].is_string(), "{k}");
    }
}

#[test]
fn bad_input_gets_clear_errors() {
    let node = TestNode::start(&["--object-size-max", "100000"]);
    let h = http();
    let url = node.url("/buckets/b/keys/k");
    let status_and_body = |resp: ureq::http::Response<ureq::Body>| {
        let s = resp.status().as_u16();
        (s, body(resp))
    };
    let (s, b) = status_and_body(h.get(&format!("{url}?r=lots")).call().unwrap());
    assert_eq!(s, 400);
    assert!(b.contains("r query parameter"), "{b}");
    let (s, b) = status_and_body(h.get(&format!("{url}?r=5")).call().unwrap());
    assert_eq!(s, 400, "{b}");
    let (s, _) = status_and_body(
        h.put(&format!("{url}?w=7"))
            .header("Content-Type", "text/plain")
            .send("x")
            .unwrap(),
    );
    assert_eq!(s, 400);
    let (s, b) = status_and_body(
        h.put(&url)
            .header("Content-Type", "text/plain")
            .header("X-Riak-Vclock", "!!!")
            .send("x")
            .unwrap(),
    );
    assert_eq!(s, 400);
    assert!(b.contains("X-Riak-Vclock"), "{b}");
    let (s, b) = status_and_body(h.put(&url).send("no content type").unwrap());
    assert_eq!(s, 400);
    assert!(b.contains("Content-Type"), "{b}");
    let (s, _) = status_and_body(
        h.put(&url)
            .header("Content-Type", "text/plain")
            .header("X-Riak-Index-bad", "x")
            .send("x")
            .unwrap(),
    );
    assert_eq!(s, 400);
    let big = vec![b'x'; 200_000];
    let (s, _) = status_and_body(
        h.put(&url)
            .header("Content-Type", "text/plain")
            .send(&big[..])
            .unwrap(),
    );
    assert_eq!(s, 413);
    let (s, _) = status_and_body(h.get(&node.url("/nothing/here")).call().unwrap());
    assert_eq!(s, 404);
    let (s, _) = status_and_body(h.patch(&url).send("x").unwrap());
    assert_eq!(s, 405);
    // The node still serves after all that.
    assert_eq!(body(h.get(&node.url("/ping")).call().unwrap()), "OK");
}

/// Replicas failing through fault-injection points: the quorum errors reach the client as
/// Riak's 503s naming the unmet quorum, and a quorum that can still be met succeeds.
#[test]
#[cfg_attr(not(feature = "failpoints"), ignore = "needs --features failpoints")]
fn failing_replicas_give_503s_naming_the_unmet_quorum() {
    let node = TestNode::start(&[]);
    let h = http();
    let url = node.url("/buckets/b/keys/k");
    h.put(&url)
        .header("Content-Type", "text/plain")
        .send("v")
        .unwrap();
    let fail = |point: &str, action: &str| node.set_failpoint(point, action);

    // Two of three replicas fail the read: R = 2 cannot be met.
    fail("vnode-get", "2*return");
    let resp = h.get(&url).call().unwrap();
    assert_eq!(resp.status(), 503);
    assert!(body(resp).contains("R-value unsatisfied"));
    // One failing replica still leaves a quorum.
    fail("vnode-get", "1*return");
    assert_eq!(body(h.get(&url).call().unwrap()), "v");

    // Two replicas refuse the write: W = 2 cannot be met; with one refusal it can.
    fail("vnode-replica-put", "2*return");
    let resp = h
        .put(&url)
        .header("Content-Type", "text/plain")
        .send("w")
        .unwrap();
    assert_eq!(resp.status(), 503);
    let text = body(resp);
    assert!(text.contains("-value unsatisfied"), "{text}");
    fail("vnode-replica-put", "1*return");
    let resp = h
        .put(&url)
        .header("Content-Type", "text/plain")
        .send("w2")
        .unwrap();
    assert_eq!(resp.status(), 204);
    assert_eq!(
        h.delete(&node.url("/admin/failpoints/vnode-replica-put"))
            .call()
            .unwrap()
            .status(),
        204
    );
}

#[test]
fn a_key_listing_timeout_ends_a_slow_stream_with_an_error() {
    let node = TestNode::start(&[]);
    let h = http();
    for i in 0..300 {
        let resp = h
            .put(&node.url(&format!("/buckets/slow/keys/k{i}")))
            .header("Content-Type", "text/plain")
            .send("v")
            .unwrap();
        assert_eq!(resp.status(), 204);
    }
    let set = |action: &str| node.set_failpoint("vnode-fold-keys", action);
    // Each key now takes 10 ms to scan: the whole listing would take 3 s.
    set("sleep(10)");
    for mode in ["stream", "true"] {
        let started = std::time::Instant::now();
        let resp = h
            .get(&node.url(&format!("/buckets/slow/keys?keys={mode}&timeout=200")))
            .call()
            .unwrap();
        assert_eq!(resp.status(), 200);
        let read = resp.into_body().read_to_string();
        assert!(
            read.is_err(),
            "{mode}: a timed-out listing read whole: {read:?}"
        );
        assert!(
            started.elapsed() < std::time::Duration::from_secs(2),
            "{mode}: {:?}",
            started.elapsed()
        );
    }
    set("off");
    let all = json(
        h.get(&node.url("/buckets/slow/keys?keys=true&timeout=5000"))
            .call()
            .unwrap(),
    );
    assert_eq!(all["keys"].as_array().unwrap().len(), 300);
}
