//! `rill admin bucket-type ...` against a running node, as an operator would type it.

mod common;

use std::process::Command;

use common::TestNode;

fn admin(node: &TestNode, args: &[&str]) -> (bool, String, String) {
    let out = Command::new(env!("CARGO_BIN_EXE_rill"))
        .arg("admin")
        .arg("--node")
        .arg(node.http.to_string())
        .args(args)
        .output()
        .expect("running rill admin");
    (
        out.status.success(),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

#[test]
fn bucket_type_lifecycle() {
    let node = TestNode::start(&[]);
    let (ok, out, err) = admin(
        &node,
        &[
            "bucket-type",
            "create",
            "counters",
            r#"{"props":{"datatype":"counter"}}"#,
        ],
    );
    assert!(ok, "{err}");
    assert_eq!(out.trim(), "counters created");

    let (_, out, _) = admin(&node, &["bucket-type", "list"]);
    assert_eq!(out, "default (active)\ncounters (not active)\n");
    let (_, out, _) = admin(&node, &["bucket-type", "status", "counters"]);
    assert!(out.starts_with("counters is not active"), "{out}");
    assert!(out.contains("datatype: \"counter\""), "{out}");
    assert!(out.contains("allow_mult: true"), "{out}");

    let (ok, out, _) = admin(&node, &["bucket-type", "activate", "counters"]);
    assert!(ok);
    assert_eq!(out.trim(), "counters has been activated");
    let (_, out, _) = admin(&node, &["bucket-type", "list"]);
    assert!(out.contains("counters (active)"), "{out}");

    let (ok, _, _) = admin(
        &node,
        &[
            "bucket-type",
            "update",
            "counters",
            r#"{"props":{"n_val":5}}"#,
        ],
    );
    assert!(ok);
    let (_, out, _) = admin(&node, &["bucket-type", "status", "counters"]);
    assert!(out.contains("n_val: 5"), "{out}");

    // Refusals come back with the node's reason and a failing exit status.
    let (ok, _, err) = admin(
        &node,
        &[
            "bucket-type",
            "update",
            "counters",
            r#"{"props":{"datatype":"set"}}"#,
        ],
    );
    assert!(!ok);
    assert!(err.contains("datatype"), "{err}");
    let (ok, _, err) = admin(&node, &["bucket-type", "status", "nosuch"]);
    assert!(!ok);
    assert!(err.contains("nosuch"), "{err}");
    let (ok, _, err) = admin(&node, &["bucket-type", "create", "bad", "not json"]);
    assert!(!ok);
    assert!(err.contains("JSON"), "{err}");
}

#[test]
fn unreachable_node_is_a_clear_error() {
    let out = Command::new(env!("CARGO_BIN_EXE_rill"))
        .args(["admin", "--node", "127.0.0.1:1", "bucket-type", "list"])
        .output()
        .unwrap();
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("cannot reach the node"));
}
