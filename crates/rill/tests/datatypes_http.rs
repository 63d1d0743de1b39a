//! Riak data types over raw HTTP (`/types/T/buckets/B/datatypes/K`) against the real binary:
//! Riak's JSON operations and responses, contexts, status codes and error bodies.

mod common;

use common::{TestNode, http};
use serde_json::{Value, json};

fn post(node: &TestNode, path: &str, body: Value) -> (u16, Option<String>, String) {
    let resp = http()
        .post(&node.url(path))
        .header("Content-Type", "application/json")
        .send(body.to_string())
        .unwrap();
    let status = resp.status().as_u16();
    let location = resp
        .headers()
        .get("location")
        .map(|v| v.to_str().unwrap().to_string());
    (status, location, resp.into_body().read_to_string().unwrap())
}

fn get(node: &TestNode, path: &str) -> (u16, Value) {
    let resp = http().get(&node.url(path)).call().unwrap();
    let status = resp.status().as_u16();
    let body = resp.into_body().read_to_string().unwrap();
    (status, serde_json::from_str(&body).unwrap())
}

#[test]
fn json_operations_values_and_contexts() {
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
    let dt = |t: &str, k: &str| format!("/types/{t}/buckets/b/datatypes/{k}");

    // Counters.
    assert_eq!(
        post(&node, &dt("counters", "c"), json!({"increment": 5})).0,
        204
    );
    let (s, _, body) = post(
        &node,
        &format!("{}?returnbody=true", dt("counters", "c")),
        json!({"decrement": 2}),
    );
    assert_eq!(
        (s, serde_json::from_str::<Value>(&body).unwrap()),
        (200, json!({"type": "counter", "value": 3}))
    );
    assert_eq!(
        get(&node, &dt("counters", "c")),
        (200, json!({"type": "counter", "value": 3}))
    );

    // Sets, with the context of a fetch for the remove.
    post(
        &node,
        &dt("sets", "s"),
        json!({"add_all": ["a", "b"], "add": "c"}),
    );
    let (s, v) = get(&node, &dt("sets", "s"));
    assert_eq!(
        (s, &v["type"], &v["value"]),
        (200, &json!("set"), &json!(["a", "b", "c"]))
    );
    let ctx = v["context"].as_str().unwrap().to_string();
    let (s, _, body) = post(
        &node,
        &format!("{}?returnbody=true", dt("sets", "s")),
        json!({"remove": "a", "context": ctx}),
    );
    assert_eq!(s, 200);
    assert_eq!(
        serde_json::from_str::<Value>(&body).unwrap()["value"],
        json!(["b", "c"])
    );
    let (s, _, body) = post(&node, &dt("sets", "s"), json!({"remove": "zz"}));
    assert_eq!(
        (s, body.trim()),
        (412, "{precondition,{not_present,<<\"zz\">>}}")
    );
    let (s, _, _) = post(
        &node,
        &dt("sets", "s"),
        json!({"remove": "b", "context": "!!"}),
    );
    assert_eq!(s, 400);

    // Maps: every field type, nested, and a field remove.
    let op = json!({"update": {
        "name_register": "Ann",
        "visits_counter": {"increment": 2},
        "admin_flag": "enable",
        "tags_set": {"add_all": ["x"]},
        "address_map": {"update": {"city_register": "Oslo"}}
    }});
    assert_eq!(post(&node, &dt("maps", "m"), op).0, 204);
    let (s, v) = get(&node, &dt("maps", "m"));
    assert_eq!(s, 200);
    assert_eq!(
        v["value"],
        json!({
            "address_map": {"city_register": "Oslo"},
            "admin_flag": true,
            "name_register": "Ann",
            "tags_set": ["x"],
            "visits_counter": 2
        })
    );
    let ctx = v["context"].as_str().unwrap().to_string();
    let (s, _, body) = post(
        &node,
        &format!("{}?returnbody=true", dt("maps", "m")),
        json!({"remove": ["tags_set"], "update": {"admin_flag": "disable"}, "context": ctx}),
    );
    assert_eq!(s, 200);
    let v: Value = serde_json::from_str(&body).unwrap();
    assert_eq!(v["value"]["admin_flag"], json!(false));
    assert!(v["value"].get("tags_set").is_none());

    // HLLs and gsets.
    post(&node, &dt("hlls", "h"), json!({"add_all": ["a", "b", "a"]}));
    assert_eq!(
        get(&node, &dt("hlls", "h")).1,
        json!({"type": "hll", "value": 2})
    );
    post(&node, &dt("gsets", "g"), json!({"add": "z"}));
    assert_eq!(get(&node, &dt("gsets", "g")).1["value"], json!(["z"]));

    // A server-chosen key: 201, a Location, and the value.
    let (s, location, body) = post(
        &node,
        "/types/counters/buckets/b/datatypes",
        json!({"increment": 1}),
    );
    assert_eq!(s, 201);
    let location = location.expect("Location header");
    assert!(
        location.starts_with("/types/counters/buckets/b/datatypes/"),
        "{location}"
    );
    assert_eq!(
        serde_json::from_str::<Value>(&body).unwrap()["value"],
        json!(1)
    );
    assert_eq!(get(&node, &location).1["value"], json!(1));

    // Not found, wrong types, bad bodies.
    assert_eq!(
        get(&node, &dt("sets", "nope")),
        (404, json!({"type": "set", "error": "notfound"}))
    );
    let (s, _, _) = post(&node, &dt("counters", "c"), json!({"add": "x"}));
    assert_eq!(s, 400);
    let (s, _, _) = post(&node, &dt("maps", "m"), json!({"update": {"nosuffix": 1}}));
    assert_eq!(s, 400);
    let resp = http()
        .post(&node.url(&dt("sets", "s")))
        .header("Content-Type", "application/json")
        .send("{not json")
        .unwrap();
    assert_eq!(resp.status().as_u16(), 400);
    node.create_bucket_type("plain", "{}");
    let (s, _, body) = post(&node, &dt("plain", "k"), json!({"increment": 1}));
    assert_eq!(
        (s, body.trim()),
        (400, "Bucket datatype `undefined` is not a supported type")
    );
    // A plain object PUT into a data-type bucket is refused.
    let resp = http()
        .put(&node.url("/types/sets/buckets/b/keys/k"))
        .header("Content-Type", "text/plain")
        .send("plain")
        .unwrap();
    assert_eq!(resp.status().as_u16(), 400);
}
