//! Clusters of real `rill start` processes on loopback: forming with join/plan/commit, any
//! node serving any key, cluster-wide metadata and listing, failure detection, membership
//! changes under load, handoff that resumes after the receiver is killed, and peers that
//! must prove the cluster secret.

mod common;

use std::collections::BTreeSet;
use std::io::Write;
use std::net::TcpStream;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use common::cluster::{ClusterNode, commit, form, join, sees_reachable, settle, wait_for};
use common::http;

fn put(node: &ClusterNode, bucket: &str, key: &str, value: &str) -> u16 {
    http()
        .put(&node.node.url(&format!("/buckets/{bucket}/keys/{key}")))
        .header("Content-Type", "text/plain")
        .send(value)
        .map(|r| r.status().as_u16())
        .unwrap_or(0)
}

fn get(node: &ClusterNode, path: &str) -> (u16, String) {
    let mut r = http().get(&node.node.url(path)).call().unwrap();
    (r.status().as_u16(), r.body_mut().read_to_string().unwrap())
}

fn listed_keys(node: &ClusterNode, bucket: &str) -> Vec<String> {
    let (status, body) = get(node, &format!("/buckets/{bucket}/keys?keys=true"));
    assert_eq!(status, 200, "{body}");
    let v: serde_json::Value = serde_json::from_str(&body).unwrap();
    v["keys"]
        .as_array()
        .unwrap()
        .iter()
        .map(|k| k.as_str().unwrap().to_string())
        .collect()
}

#[test]
fn three_nodes_serve_any_key_share_metadata_and_list_each_key_once() {
    let started = Instant::now();
    let nodes = form(3, &[]);
    println!(
        "3-node cluster formed and settled in {:?}",
        started.elapsed()
    );

    let status = nodes[0].admin(&["member-status"]);
    assert!(
        status.contains("Valid:3 / Leaving:0 / Exiting:0 / Joining:0 / Down:0"),
        "{status}"
    );
    for n in &nodes {
        let stats = n.stats();
        assert_eq!(stats["ring_members"].as_array().unwrap().len(), 3);
        assert_eq!(
            stats["connected_nodes"].as_array().unwrap().len(),
            2,
            "{}",
            n.name
        );
        assert_eq!(stats["ring_num_partitions"], 16);
    }
    let json: serde_json::Value =
        serde_json::from_str(&nodes[1].admin(&["--json", "member-status"])).unwrap();
    assert_eq!(json.as_array().unwrap().len(), 3, "{json}");
    let ring = nodes[2].admin(&["ring-status"]);
    assert!(
        ring.contains("Ring Ready: true") && ring.contains("No pending changes."),
        "{ring}"
    );

    // Written through one node, read whole through every other.
    for k in 0..120 {
        assert_eq!(put(&nodes[0], "b", &format!("k{k}"), &format!("v{k}")), 204);
    }
    for n in &nodes[1..] {
        for k in 0..120 {
            let (status, body) = get(n, &format!("/buckets/b/keys/k{k}?r=all"));
            assert_eq!(
                (status, body.as_str()),
                (200, format!("v{k}").as_str()),
                "{}",
                n.name
            );
        }
    }

    // Each key listed once, through any node; the bucket listed once.
    for n in &nodes {
        let keys = listed_keys(n, "b");
        let distinct: BTreeSet<&String> = keys.iter().collect();
        assert_eq!((keys.len(), distinct.len()), (120, 120), "{}", n.name);
        let (_, buckets) = get(n, "/buckets?buckets=true");
        assert_eq!(buckets, r#"{"buckets":["b"]}"#);
    }

    // A bucket type made on one node is usable on all of them; props set on one are seen on all.
    nodes[1].admin(&["bucket-type", "create", "t3", r#"{"props":{"n_val":2}}"#]);
    wait_for(
        "the type to reach every node",
        Duration::from_secs(10),
        || {
            !nodes[2]
                .admin(&["bucket-type", "status", "t3"])
                .contains("Not yet on")
        },
    );
    nodes[2].admin(&["bucket-type", "activate", "t3"]);
    wait_for(
        "activation to reach every node",
        Duration::from_secs(10),
        || {
            let (status, body) = get(&nodes[0], "/types/t3/props");
            status == 200 && body.contains(r#""active":true"#) && body.contains(r#""n_val":2"#)
        },
    );
    let set = http()
        .put(&nodes[2].node.url("/buckets/p/props"))
        .header("Content-Type", "application/json")
        .send(r#"{"props":{"r":1,"allow_mult":true}}"#)
        .unwrap();
    assert_eq!(set.status(), 204);
    wait_for(
        "bucket props to reach every node",
        Duration::from_secs(10),
        || {
            let (_, body) = get(&nodes[0], "/buckets/p/props");
            body.contains(r#""allow_mult":true"#) && body.contains(r#""r":1"#)
        },
    );
    let typed = http()
        .put(&nodes[0].node.url("/types/t3/buckets/x/keys/y"))
        .header("Content-Type", "text/plain")
        .send("typed")
        .unwrap();
    assert_eq!(typed.status(), 204);
    assert_eq!(
        get(&nodes[1], "/types/t3/buckets/x/keys/y?r=all"),
        (200, "typed".into())
    );

    // Data types across nodes: with n_val 1 most keys live on one node, so updates through
    // the other two are forwarded to the one that holds the replica.
    let counters = r#"{"props":{"datatype":"counter","n_val":1}}"#;
    nodes[0].admin(&["bucket-type", "create", "cnt", counters]);
    wait_for(
        "the counter type to reach every node",
        Duration::from_secs(10),
        || {
            !nodes[0]
                .admin(&["bucket-type", "status", "cnt"])
                .contains("Not yet on")
        },
    );
    nodes[0].admin(&["bucket-type", "activate", "cnt"]);
    wait_for(
        "the counter type to be active everywhere",
        Duration::from_secs(10),
        || {
            nodes
                .iter()
                .all(|n| get(n, "/types/cnt/props").1.contains(r#""active":true"#))
        },
    );
    for k in 0..10 {
        for n in &nodes {
            let r = http()
                .post(&n.node.url(&format!("/types/cnt/buckets/c/datatypes/k{k}")))
                .header("Content-Type", "application/json")
                .send(r#"{"increment":2}"#)
                .unwrap();
            assert_eq!(r.status(), 204, "{}", n.name);
        }
    }
    for n in &nodes {
        for k in 0..10 {
            let (status, body) = get(n, &format!("/types/cnt/buckets/c/datatypes/k{k}"));
            assert_eq!(
                (status, body.as_str()),
                (200, r#"{"type":"counter","value":6}"#)
            );
        }
    }
    let forwarded: u64 = nodes
        .iter()
        .map(|n| n.stats()["coord_redirs_total"].as_u64().unwrap())
        .sum();
    assert!(forwarded >= 10, "updates were forwarded {forwarded} times");
}

#[test]
fn a_killed_node_is_seen_unreachable_and_back_within_five_seconds() {
    let mut nodes = form(3, &[]);
    for k in 0..30 {
        assert_eq!(put(&nodes[0], "b", &format!("k{k}"), "v"), 204);
    }
    nodes[2].node.kill9();
    let killed = Instant::now();
    let name = nodes[2].name.clone();
    let down_after = wait_for(
        "node 3 to be seen unreachable",
        Duration::from_secs(5),
        || !sees_reachable(&nodes[0], &name) && !sees_reachable(&nodes[1], &name),
    );
    println!(
        "a kill -9'd node was seen unreachable after {:?}",
        killed.elapsed()
    );
    assert!(down_after <= Duration::from_secs(5));
    let ring = nodes[0].admin(&["ring-status"]);
    assert!(ring.contains("dev3@127.0.0.1"), "{ring}");
    // Two of three replicas still serve reads and writes at the default quorum.
    for k in 0..30 {
        assert_eq!(get(&nodes[1], &format!("/buckets/b/keys/k{k}")).0, 200);
    }
    assert_eq!(put(&nodes[1], "b", "while-down", "v"), 204);
    // Listing needs every covering partition; with one node of three gone a coverage exists.
    assert_eq!(listed_keys(&nodes[0], "b").len(), 31);

    nodes[2].restart();
    let restarted = Instant::now();
    let up_after = wait_for("node 3 to be seen again", Duration::from_secs(5), || {
        sees_reachable(&nodes[0], &name) && sees_reachable(&nodes[1], &name)
    });
    println!(
        "a restarted node was seen reachable after {:?}",
        restarted.elapsed()
    );
    assert!(up_after <= Duration::from_secs(5));
    assert_eq!(get(&nodes[2], "/buckets/b/keys/k3?r=all").0, 200);
}

#[test]
fn nodes_join_and_leave_under_load_and_no_acknowledged_write_is_lost() {
    let mut nodes = form(3, &[]);
    let stop = Arc::new(AtomicBool::new(false));
    let acked: Arc<Mutex<Vec<String>>> = Arc::default();
    let writer = {
        let (stop, acked) = (stop.clone(), acked.clone());
        let url = nodes[0].node.url("/buckets/load/keys/");
        std::thread::spawn(move || {
            let agent = http();
            let mut i = 0u64;
            while !stop.load(Ordering::Relaxed) {
                let key = format!("k{i}");
                let ok = agent
                    .put(&format!("{url}{key}"))
                    .header("Content-Type", "text/plain")
                    .send(key.as_str())
                    .is_ok_and(|r| r.status() == 204);
                if ok {
                    acked.lock().unwrap().push(key);
                }
                i += 1;
            }
        })
    };
    std::thread::sleep(Duration::from_secs(1));

    // A fourth node joins while the writer runs.
    nodes.push(ClusterNode::start(4, &[]));
    join(&nodes[3], &nodes[0]);
    commit(&nodes[0], 4);
    settle(&nodes);
    let shares = nodes[0].admin_json("/admin/member-status");
    assert!(
        shares
            .as_array()
            .unwrap()
            .iter()
            .all(|m| m["ring_pct"] == 25.0),
        "{shares}"
    );

    // Then the second leaves: it hands everything off and stops by itself.
    nodes[0].admin(&["cluster", "leave", "dev2@127.0.0.1"]);
    let plan = nodes[0].admin_json("/admin/cluster/plan");
    nodes[0].admin(&["cluster", "commit"]);
    let leaver = nodes.remove(1);
    let mut child = leaver.node;
    wait_for(
        "the leaving node to stop by itself",
        Duration::from_secs(120),
        || child.child.try_wait().unwrap().is_some(),
    );
    settle(&nodes);
    stop.store(true, Ordering::Relaxed);
    writer.join().unwrap();

    // Ownership is what the plan said.
    let ring = nodes[0].admin_json("/admin/cluster/status");
    for m in ring["members"].as_array().unwrap() {
        let name = m["node"].as_str().unwrap();
        let planned = plan["shares"][name][1].as_f64().unwrap() * 100.0 / 16.0;
        assert_eq!(m["ring_pct"].as_f64().unwrap(), planned, "{name}");
        assert_ne!(name, "dev2@127.0.0.1");
    }
    // Every acknowledged write is readable from every replica.
    let acked = acked.lock().unwrap().clone();
    println!(
        "{} writes acknowledged while a node joined and another left",
        acked.len()
    );
    assert!(acked.len() > 50, "the writer barely ran: {}", acked.len());
    for key in &acked {
        let (status, body) = get(&nodes[2], &format!("/buckets/load/keys/{key}?r=all"));
        assert_eq!((status, body.as_str()), (200, key.as_str()), "{key}");
    }
}

#[test]
fn an_interrupted_handoff_resumes_where_it_stopped() {
    // A slow sender (1 MiB/s, one transfer at a time, batches of 256 KiB) so that the transfer
    // can be cut in the middle.
    let sender = ClusterNode::start(1, &["--handoff-rate-mb", "1", "--transfer-limit", "1"]);
    let value = "x".repeat(1000);
    let keys = 3000;
    for k in 0..keys {
        assert_eq!(put(&sender, "big", &format!("k{k}"), &value), 204);
    }
    let mut receiver = ClusterNode::start(2, &[]);
    join(&receiver, &sender);
    wait_for(
        "the join to reach the claimant",
        Duration::from_secs(20),
        || {
            sender
                .admin_json("/admin/member-status")
                .as_array()
                .unwrap()
                .len()
                == 2
        },
    );
    let plan = sender.admin_json("/admin/cluster/plan");
    sender.admin(&["cluster", "commit"]);
    // The objects that must move: every replica of every key in a moving partition.
    let moving: BTreeSet<u32> = plan["moves"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| m["partition"].as_u64().unwrap() as u32)
        .collect();
    let shape = rill_core::ring::Ring::new_single(16, "x".into()).unwrap();
    let to_move: usize = (0..keys)
        .map(|k| {
            let bkey = rill_core::bkey::BKey::new(
                rill_core::bkey::Bucket::default_type("big").unwrap(),
                format!("k{k}"),
            )
            .unwrap();
            shape
                .preflist(&bkey.chash(), 3)
                .filter(|p| moving.contains(p))
                .count()
        })
        .sum();

    // Kill the receiver once it has stored a good part of the data.
    let received = |n: &ClusterNode| {
        n.stats()["handoff_objects_received_total"]
            .as_u64()
            .unwrap()
    };
    wait_for(
        "a third of the data to arrive",
        Duration::from_secs(60),
        || received(&receiver) as usize > to_move / 3,
    );
    let before_kill = received(&receiver) as usize;
    receiver.node.kill9();
    receiver.restart();
    let nodes = vec![sender, receiver];
    settle(&nodes);
    let after_restart = received(&nodes[1]) as usize;
    let resumed = nodes[0].stats()["handoff_failures_total"].as_u64().unwrap();
    println!(
        "handoff of {to_move} objects: {before_kill} stored before the receiver was killed, \
         {after_restart} sent after its restart ({resumed} interrupted attempts)"
    );
    assert!(resumed >= 1, "the kill must have interrupted a transfer");
    // Resumed, not restarted: what arrives after the restart is what was missing, plus at most
    // the two batches that were in flight (256 KiB each, about 250 objects).
    assert!(
        after_restart <= to_move - before_kill + 2 * 260,
        "{after_restart} objects sent after the restart; {} were missing",
        to_move - before_kill
    );
    for k in (0..keys).step_by(7) {
        assert_eq!(
            get(&nodes[1], &format!("/buckets/big/keys/k{k}?r=all")).0,
            200
        );
    }
}

#[test]
fn peers_must_prove_the_cluster_secret_and_garbage_is_refused() {
    let a = ClusterNode::start(1, &[]);
    let b = TestOther::start(2, "another-secret");
    let out = b.join(&a);
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("authentication failed"), "{err}");

    // Garbage, an oversized frame and a wrong handshake on the internode port: the node stays up.
    for junk in [
        &b"GET / HTTP/1.1\r\n\r\n"[..],
        &[0xFF; 64],
        &u32::MAX.to_be_bytes(),
    ] {
        let mut s = TcpStream::connect(a.node.internode).unwrap();
        let _ = s.write_all(junk);
    }
    std::thread::sleep(Duration::from_millis(200));
    assert_eq!(get(&a, "/ping"), (200, "OK".into()));
    assert_eq!(a.stats()["ring_members"].as_array().unwrap().len(), 1);
}

/// A node with its own secret, outside the test cluster.
struct TestOther(ClusterNode);

impl TestOther {
    fn start(i: usize, secret: &str) -> TestOther {
        let name = format!("dev{i}@127.0.0.1");
        let node = common::TestNode::start(&["--name", &name, "--cluster-secret", secret]);
        TestOther(ClusterNode {
            name,
            node,
            extra: Vec::new(),
        })
    }

    fn join(&self, target: &ClusterNode) -> std::process::Output {
        self.0
            .admin_raw(&["cluster", "join", &target.node.internode.to_string()])
    }
}
